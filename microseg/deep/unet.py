"""A small, configurable U-Net for pixel classification on the CPU.

Levels are named ``enc0 .. enc{D-1}`` (``enc{D-1}`` is the bottleneck) and
``dec{D-2} .. dec0``; :mod:`microseg.deep.inspect` hooks these names.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass

import torch
from torch import nn

from microseg.errors import InputError


@dataclass
class UNetConfig:
    """Architecture of a :class:`UNet`.

    Parameters
    ----------
    in_channels : int
        Input channels (1 for grey, 3 for colour).
    n_classes : int
        Output class logits K.
    depth : int
        Number of resolution levels (including the bottleneck).
    base : int
        Channels of the first level; level ``l`` has ``base * 2**l``.
    norm : str
        ``"batch"``, ``"group"`` or ``"none"``.
    residual : bool
        Add a 1x1 shortcut around each double convolution.
    """

    in_channels: int = 1
    n_classes: int = 2
    depth: int = 4
    base: int = 8
    norm: str = "batch"
    residual: bool = False

    def __post_init__(self) -> None:
        if self.depth < 1 or self.base < 1 or self.in_channels < 1 or self.n_classes < 2:
            raise InputError(f"Invalid U-Net architecture {asdict(self)}.")
        if self.norm not in ("batch", "group", "none"):
            raise InputError(f"Unknown normalisation '{self.norm}'; use batch, group or none.")

    @property
    def multiple(self) -> int:
        """Image sides must be a multiple of this (2 ** (depth - 1))."""
        return 2 ** (self.depth - 1)

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side that influence one output pixel (an upper bound)."""
        d = self.depth
        inner = sum(4 * 2**lv + 2 * 2**lv for lv in range(d - 1))
        return inner + 2 * 2 ** (d - 1) + 2

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """Inverse of :meth:`to_dict` (unknown keys are refused)."""
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise InputError(f"Unknown U-Net architecture keys: {', '.join(sorted(extra))}.")
        return cls(**d)


def _norm(kind: str, ch: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(ch)
    if kind == "group":
        return nn.GroupNorm(min(8, ch), ch)
    return nn.Identity()


class DoubleConv(nn.Module):
    """Two 3x3 convolution + normalisation + ReLU layers (optional 1x1 shortcut)."""

    def __init__(self, cin: int, cout: int, norm: str, residual: bool) -> None:
        super().__init__()
        bias = norm == "none"
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=bias)
        self.norm1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=bias)
        self.norm2 = _norm(norm, cout)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = nn.Conv2d(cin, cout, 1, bias=False) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.act(y)


class UNet(nn.Module):
    """U-Net returning K class logits at the input resolution.

    Input sides must be multiples of ``config.multiple`` (tiled inference pads).
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        chans = [c.base * 2**lv for lv in range(c.depth)]
        self.encoders = nn.ModuleList()
        cin = c.in_channels
        for ch in chans:
            self.encoders.append(DoubleConv(cin, ch, c.norm, c.residual))
            cin = ch
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for lv in range(c.depth - 2, -1, -1):
            self.ups.append(nn.ConvTranspose2d(chans[lv + 1], chans[lv], 2, stride=2))
            self.decoders.append(DoubleConv(2 * chans[lv], chans[lv], c.norm, c.residual))
        self.head = nn.Conv2d(chans[0], c.n_classes, 1)

    def level_names(self) -> list[str]:
        """Names of the encoder and decoder levels, input side first."""
        d = self.config.depth
        return [f"enc{lv}" for lv in range(d)] + [f"dec{lv}" for lv in range(d - 2, -1, -1)]

    def level_modules(self) -> dict[str, nn.Module]:
        """Module producing each level's feature maps."""
        names = self.level_names()
        mods = list(self.encoders) + list(self.decoders)
        return dict(zip(names, mods, strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, enc in enumerate(self.encoders):
            if i > 0:
                x = self.pool(x)
            x = enc(x)
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.ups, self.decoders, strict=True):
            x = up(x)
            x = dec(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters of the encoder path (frozen when fine-tuning with a frozen encoder)."""
        return [p for enc in self.encoders for p in enc.parameters()]


def _fuse(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding, bias=True
    )
    std = torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight / std
    fused.weight.data = conv.weight.data * scale[:, None, None, None]
    bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data = (bias - bn.running_mean) * scale + bn.bias
    return fused


def fused_for_inference(net: UNet) -> UNet:
    """Return an eval-mode copy with BatchNorm folded into the convolutions (same outputs)."""
    out = copy.deepcopy(net).eval()
    if out.config.norm != "batch":
        return out
    for block in list(out.encoders) + list(out.decoders):
        block.conv1 = _fuse(block.conv1, block.norm1)
        block.norm1 = nn.Identity()
        block.conv2 = _fuse(block.conv2, block.norm2)
        block.norm2 = nn.Identity()
    return out


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` picks :func:`default_device`."""
    if device is None or device == "auto":
        return default_device()
    return torch.device(device)

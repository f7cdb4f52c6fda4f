"""Batch augmentation on crops: geometry, intensity, noise and blur.

Intensity changes (scale, offset, gamma) make a model hold across a time
series whose brightness drifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Strength of each augmentation (probabilities and ranges).

    ``channel_jitter`` scales each colour channel by its own factor in
    ``1 ± channel_jitter`` (a tint shift, for colour-etched micrographs); 0 = off.
    ``texture`` multiplies a share ``texture_p`` of the crops by ``exp(a z)``, ``z`` a
    smooth random field (Gaussian noise blurred at a sigma drawn from ``texture_sigma``,
    unit standard deviation) and ``a`` up to ``texture``: uneven staining inside objects,
    such as chromatin spots in nuclei; 0 = off.
    """

    flips: bool = True
    scale: tuple[float, float] = (0.7, 1.4)
    offset: float = 0.1
    gamma: tuple[float, float] = (0.7, 1.5)
    noise: float = 0.05
    blur_p: float = 0.25
    blur_sigma: tuple[float, float] = (0.5, 1.5)
    grey_p: float = 0.2
    channel_jitter: float = 0.0
    texture: float = 0.0
    texture_p: float = 0.5
    texture_sigma: tuple[float, float] = (1.0, 4.0)


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=sigma.device)
    k = torch.exp(-0.5 * (x[None] / sigma[:, None]) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def _smooth(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of each image of ``x`` (n, C, H, W) at its own ``sigma`` (n,)."""
    n, c = x.shape[:2]
    r = int(torch.ceil(2.5 * sigma.max()).item())
    kk = _gaussian_kernels(sigma, r).repeat_interleave(c, dim=0)  # (n * c, 2r + 1)
    xb = x.reshape(1, n * c, *x.shape[-2:])
    xb = F.pad(xb, (r, r, r, r), mode="reflect")
    xb = F.conv2d(xb, kk[:, None, None, :], groups=n * c)
    xb = F.conv2d(xb, kk[:, None, :, None], groups=n * c)
    return xb.reshape(n, c, *x.shape[-2:])


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment images ``x`` (B, C, H, W) and targets ``y`` (B, H, W) together.

    Geometry (flips, 90-degree rotations; square crops) applies to both;
    intensity, noise and blur to the image only.
    """
    b, c = x.shape[:2]

    def rnd(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen).to(x.device)

    if cfg.flips:
        xs, ys = [], []
        codes = torch.randint(0, 8, (b,), generator=gen).tolist()
        for i, code in enumerate(codes):
            xi, yi = x[i], y[i]
            if code & 1:
                xi, yi = xi.flip(-1), yi.flip(-1)
            if x.shape[-1] == x.shape[-2] and code >> 1:
                xi = torch.rot90(xi, code >> 1, (-2, -1))
                yi = torch.rot90(yi, code >> 1, (-2, -1))
            xs.append(xi)
            ys.append(yi)
        x, y = torch.stack(xs), torch.stack(ys)
    x = x.clone()
    if c > 1 and cfg.channel_jitter > 0:
        x = x * (1 + (rnd(b, c) * 2 - 1) * cfg.channel_jitter).view(b, c, 1, 1)
    if c > 1 and cfg.grey_p > 0:
        grey = rnd(b) < cfg.grey_p
        if grey.any():
            x[grey] = x[grey].mean(dim=1, keepdim=True).expand(-1, c, -1, -1)
    if cfg.texture > 0:
        sel = rnd(b) < cfg.texture_p
        if sel.any():
            n = int(sel.sum())
            tlo, thi = cfg.texture_sigma
            z = torch.randn((n, 1, *x.shape[-2:]), generator=gen).to(x.device)
            z = _smooth(z, tlo + rnd(n) * (thi - tlo))
            z = z / z.std(dim=(-2, -1), keepdim=True).clamp(min=1e-6)
            amp = (rnd(n) * cfg.texture).view(n, 1, 1, 1)
            x[sel] = x[sel] * torch.exp(amp * z)
    lo, hi = cfg.gamma
    g = torch.exp(torch.log(torch.tensor(lo)) + rnd(b) * (torch.log(torch.tensor(hi / lo))))
    g = g.view(b, 1, 1, 1)
    pos = x.clamp(min=0.0)
    x = torch.where(x > 0, pos.clamp(min=1e-6) ** g, x)
    slo, shi = cfg.scale
    s = (slo + rnd(b) * (shi - slo)).view(b, 1, 1, 1)
    o = ((rnd(b) * 2 - 1) * cfg.offset).view(b, 1, 1, 1)
    x = x * s + o
    if cfg.blur_p > 0:
        sel = rnd(b) < cfg.blur_p
        if sel.any():
            blo, bhi = cfg.blur_sigma
            x[sel] = _smooth(x[sel], blo + rnd(int(sel.sum())) * (bhi - blo))
    if cfg.noise > 0:
        sd = (rnd(b) * cfg.noise).view(b, 1, 1, 1)
        x = x + sd * torch.randn(x.shape, generator=gen).to(x.device)
    return x.contiguous(), y.contiguous()

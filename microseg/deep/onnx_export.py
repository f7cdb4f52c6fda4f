"""ONNX export of a U-Net, checked against PyTorch with ONNX Runtime."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from microseg.deep.segmenter import UNetSegmenter
from microseg.deep.unet import fused_for_inference


def export_onnx(
    model: UNetSegmenter, path: str | Path, opset: int = 17, check: bool = True
) -> Path:
    """Write the network as ONNX: input ``image`` (N, C, H, W) normalised float32, output
    ``logits`` (N, K, H, W); H and W are dynamic (multiples of ``2**(depth-1)``).

    The model's metadata (classes, normalisation, training scale) goes into the ONNX
    metadata properties as JSON. With ``check``, ONNX Runtime's output on a random
    input is compared with PyTorch's (raises ``RuntimeError`` when they differ).
    """
    import json

    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = fused_for_inference(model.net.cpu()).float()
    m = net.config.multiple
    dummy = torch.randn(1, net.config.in_channels, 4 * m, 4 * m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net,
            (dummy,),
            str(path),
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key = "microseg"
    entry.value = json.dumps(model.metadata)
    onnx.save(proto, str(path))
    if check:
        diff = onnx_max_difference(model, path)
        if diff > 1e-3:
            raise RuntimeError(f"ONNX Runtime output differs from PyTorch by {diff:.2g}.")
    return path


def onnx_max_difference(model: UNetSegmenter, path: str | Path, size: int = 64) -> float:
    """Largest absolute difference of logits between ONNX Runtime and PyTorch."""
    import onnxruntime as ort

    m = model.net.config.multiple
    side = max(m, size // m * m)
    rng = np.random.default_rng(0)
    x = rng.random((1, model.net.config.in_channels, side, side + m), np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = sess.run(["logits"], {"image": x})[0]
    with torch.inference_mode():
        ref = model.net.cpu().eval()(torch.from_numpy(x)).numpy()
    return float(np.abs(out - ref).max())

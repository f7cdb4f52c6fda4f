"""U-Net model, tiled inference, model files, ONNX export and inspection."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from microseg.deep import UNet, UNetConfig, UNetSegmenter, predict_proba_tiled, predict_stack
from microseg.deep.inspect import (
    conv_layer_names,
    feature_maps,
    first_layer_kernels,
    layer_kernels,
    strongest_channels,
)
from microseg.deep.unet import fused_for_inference
from microseg.errors import InputError, ModelFileError
from microseg.image import MicroImage
from microseg.modelfile import load_model, save_model
from microseg.segmenter import Segmenter


def _model(in_channels: int = 1, seed: int = 0, **arch) -> UNetSegmenter:
    m = UNetSegmenter.new(
        "nuclei", ["background", "nucleus", "border"], in_channels, seed=seed, **arch
    )
    # non-trivial BatchNorm statistics, so that folding them is really tested
    with torch.no_grad():
        for mod in m.net.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
    m.net.eval()
    return m


def test_unet_output_shape_and_levels():
    net = UNet(UNetConfig(in_channels=2, n_classes=4, depth=3, base=4, norm="group"))
    out = net(torch.zeros(2, 2, 32, 40))
    assert out.shape == (2, 4, 32, 40)
    assert net.level_names() == ["enc0", "enc1", "enc2", "dec1", "dec0"]
    with pytest.raises(InputError):
        UNetConfig(norm="layer")


def test_fused_network_matches():
    m = _model()
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        a = m.net(x)
        b = fused_for_inference(m.net)(x)
    assert torch.allclose(a, b, atol=1e-4)


def test_predict_proba_protocol_and_dtypes():
    m = _model()
    assert isinstance(m, Segmenter)
    img = (np.random.default_rng(0).random((50, 70)) * 4000).astype(np.uint16)
    p = m.predict_proba(img)
    assert p.shape == (3, 50, 70) and p.dtype == np.float32
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-4)
    cls = m.predict_classes(img)
    assert cls.min() >= 1 and cls.max() <= 3


def test_tiled_equals_whole_away_from_borders_and_no_seams():
    m = _model()
    net = m.inference_net()
    rng = np.random.default_rng(1)
    from scipy import ndimage as ndi

    x = ndi.gaussian_filter(rng.random((1, 200, 232)).astype(np.float32), (0, 2, 2)) * 5
    whole = predict_proba_tiled(net, x, tile=1024)
    calls = []
    tiled = predict_proba_tiled(net, x, tile=64, overlap=16, progress=calls.append)
    assert len(calls) > 4 and calls[-1] == pytest.approx(1.0)
    r = 64
    np.testing.assert_allclose(tiled[:, r:-r, r:-r], whole[:, r:-r, r:-r], atol=2e-4)
    # with the same context at the image border, tiled equals whole everywhere
    whole_m = predict_proba_tiled(net, x, tile=1024, margin=64)
    np.testing.assert_allclose(tiled, whole_m, atol=2e-4)
    # direct whole-image forward, no tiling code involved: equal in the interior
    with torch.inference_mode():
        direct = torch.softmax(net(torch.from_numpy(x[:, :192, :224])[None]), 1)[0].numpy()
    np.testing.assert_allclose(tiled[:, r : 192 - r, r : 224 - r], direct[:, r:-r, r:-r], atol=2e-4)
    # no seams: neighbouring-column differences at tile edges look like anywhere else
    grad = np.abs(np.diff(tiled[1], axis=1))
    assert grad[:, 60:70].max() <= grad.max() + 1e-6


def test_tiling_stop_event():
    import threading

    from microseg.deep.tiling import Stopped

    ev = threading.Event()
    ev.set()
    with pytest.raises(Stopped):
        predict_proba_tiled(_model().inference_net(), np.zeros((1, 64, 64), np.float32), stop=ev)


def test_save_load_round_trip(tmp_path):
    m = _model(in_channels=3, seed=3)
    m.metadata["object_diameter_px"] = 12.0
    img = np.random.default_rng(2).random((3, 48, 40)).astype(np.float32)
    path = m.save(tmp_path / "m.safetensors")
    m2 = UNetSegmenter.load(path)
    assert m2.classes == m.classes and m2.task == "nuclei"
    assert m2.metadata["architecture"] == m.config.to_dict()
    np.testing.assert_array_equal(m.predict_proba(img), m2.predict_proba(img))
    # a grey image is replicated to the model's three channels; RGB (Y, X, 3) is accepted
    assert m2.predict_proba(img[0]).shape == (3, 48, 40)
    assert m2.predict_proba(np.moveaxis(img, 0, -1)).shape == (3, 48, 40)


def test_wrong_shape_file_refused(tmp_path):
    m = _model()
    path = m.save(tmp_path / "m.safetensors")
    tensors, meta = load_model(path)
    key = "encoders.0.conv1.weight"
    tensors[key] = np.zeros((5, 1, 3, 3), np.float32)
    save_model(tmp_path / "bad.safetensors", tensors, meta)
    with pytest.raises(ModelFileError, match="shape"):
        UNetSegmenter.load(tmp_path / "bad.safetensors")
    del tensors[key]
    save_model(tmp_path / "missing.safetensors", tensors, meta)
    with pytest.raises(ModelFileError, match="missing"):
        UNetSegmenter.load(tmp_path / "missing.safetensors")


def test_pickle_file_refused(tmp_path):
    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ModelFileError, match="pickle"):
        UNetSegmenter.load(path)
    torch.save({"w": torch.zeros(3)}, tmp_path / "t.pt")
    with pytest.raises(ModelFileError):
        UNetSegmenter.load(tmp_path / "t.pt")


def test_rescaling_by_object_diameter():
    m = _model()
    m.metadata["object_diameter_px"] = 20.0
    assert m.rescale_factor(object_diameter_px=40) == pytest.approx(0.5)
    m.metadata["pixel_size_um"] = 0.5
    assert m.rescale_factor(pixel_size_um=1.0) == pytest.approx(2.0)
    img = np.random.default_rng(0).random((60, 50)).astype(np.float32)
    p = m.predict_proba(img, object_diameter_px=40)
    assert p.shape == (3, 60, 50)
    assert not np.allclose(p, m.predict_proba(img))
    with pytest.raises(InputError):
        m.rescale_factor(object_diameter_px=-3)
    with pytest.raises(InputError):
        m.predict_proba(img, object_diameter_px="big")


@pytest.mark.parametrize("diameter", [0.001, 1e-30, 1.0, 1e9])
def test_an_absurd_object_diameter_is_one_sentence_not_a_huge_array(diameter):
    m = _model()
    m.metadata["object_diameter_px"] = 20.0
    img = np.zeros((60, 50), np.float32)
    with pytest.raises(InputError, match=r"this model works for diameters between 1.25 and 640 px"):
        m.predict_proba(img, object_diameter_px=diameter)


def test_a_rescaled_image_over_the_pixel_bound_is_refused():
    from microseg.deep.segmenter import MAX_RESCALED_PX

    m = _model()
    m.metadata["object_diameter_px"] = 20.0
    side = int((MAX_RESCALED_PX / 16) ** 0.5) + 10  # 4x up makes it too large
    img = np.zeros((side, side), np.uint8)
    with pytest.raises(InputError, match="megapixels"):
        m.predict_proba(img, object_diameter_px=5.0)


def test_auto_diameter_of_tiny_measured_objects_stays_in_range(monkeypatch):
    m = _model()
    m.metadata["object_diameter_px"] = 20.0
    monkeypatch.setattr(m, "estimate_object_diameter", lambda proba: 0.01)  # e.g. specks
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    # the nearest end of the model's range (16x up), not an error and not 2000x
    expected = m.predict_proba(img, object_diameter_px=20.0 / 16)
    np.testing.assert_allclose(m.predict_proba(img, object_diameter_px="auto"), expected)


def test_auto_diameter_measures_objects():
    m = _model()
    m.metadata["object_diameter_px"] = 20.0
    proba = np.zeros((3, 120, 120), np.float32)
    proba[0] = 1
    yy, xx = np.mgrid[:120, :120]
    for cy, cx in ((30, 30), (30, 80), (85, 55)):
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= 15**2
        proba[1][disk], proba[0][disk] = 1, 0
    d = m.estimate_object_diameter(proba)
    assert 28 < d < 40
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    assert m.predict_proba(img, object_diameter_px="auto").shape == (3, 64, 64)


def test_predict_stack_all_frames():
    m = _model()
    data = np.random.default_rng(0).random((3, 40, 48)).astype(np.float32)
    img = MicroImage.from_array(data, axes="TYX")
    seen = []
    out = predict_stack(m, img, progress=seen.append)
    assert out.shape == (3, 3, 40, 48)
    np.testing.assert_allclose(out[1], m.predict_proba(data[1]), atol=1e-6)
    assert seen[-1] == pytest.approx(1.0)


def test_onnx_export_matches_torch(tmp_path):
    import onnxruntime as ort

    from microseg.deep import export_onnx
    from microseg.deep.onnx_export import onnx_max_difference

    m = _model(depth=3, base=4)
    path = export_onnx(m, tmp_path / "m.onnx")
    assert onnx_max_difference(m, path, size=48) < 1e-3
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    assert "nucleus" in meta["microseg"]


def test_kernels_and_feature_maps():
    m = _model(depth=3, base=4)
    k = first_layer_kernels(m)
    assert k.shape == (4, 3, 3)
    names = conv_layer_names(m)
    assert names[0] == "enc0.conv1" and names[-1] == "dec0.conv2"
    assert layer_kernels(m, "enc2.conv2").shape == (16, 3, 3)
    with pytest.raises(InputError):
        layer_kernels(m, "nope.conv1")
    maps = feature_maps(m, np.random.default_rng(0).random((30, 45)))
    assert list(maps) == ["enc0", "enc1", "enc2", "dec1", "dec0"]
    assert maps["enc0"].shape == (4, 28, 44) and maps["enc2"].shape == (16, 7, 11)
    strong = strongest_channels(maps["enc1"], 3)
    act = np.abs(maps["enc1"]).mean(axis=(1, 2))
    assert strong[0] == int(np.argmax(act)) and len(strong) == 3


def test_test_time_augmentation_is_orientation_invariant():
    m = _model(seed=3)
    img = (np.random.default_rng(1).random((40, 56)) * 4000).astype(np.uint16)
    plain = m.predict_proba(img)
    aug = m.predict_proba(img, augment=True)
    assert aug.shape == plain.shape and aug.dtype == np.float32
    np.testing.assert_allclose(aug.sum(0), 1.0, atol=1e-4)
    assert not np.allclose(aug, plain, atol=1e-3)  # a random network is not symmetric
    # the average over all orientations does not depend on the input's orientation
    turned = m.predict_proba(np.ascontiguousarray(np.rot90(img)[:, ::-1]), augment=True)
    back = np.rot90(turned[:, :, ::-1], -1, axes=(1, 2))
    np.testing.assert_allclose(back, aug, atol=1e-4)
    seen = []
    m.predict_proba(img, augment=True, progress=seen.append)
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)


def _rewritten(tmp_path, name, tensors=None, **meta_changes):
    """A saved small model with its tensors or metadata replaced (a hostile file)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    src = _model().save(tmp_path / "src.safetensors")
    with safe_open(str(src), "pt") as f:
        meta = json.loads(f.metadata()["microseg"])
        t = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(meta_changes)
    out = tmp_path / name
    save_file(tensors(t) if tensors else t, str(out), metadata={"microseg": json.dumps(meta)})
    return out


def test_nan_weights_are_refused_not_an_empty_result(tmp_path):
    def nan(t):
        return {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                for k, v in t.items()}  # fmt: skip

    with pytest.raises(ModelFileError, match="holds NaN or infinite weights"):
        UNetSegmenter.load(_rewritten(tmp_path, "nan.safetensors", tensors=nan))


@pytest.mark.parametrize(
    ("architecture", "says"),
    [
        ("huge", "is inconsistent"),  # the file's own architecture with 10 million channels
        ("[[[[", "not a mapping"),
        (None, "not a mapping"),
        ({"in_channels": "x"}, "invalid U-Net description"),
    ],
)
def test_a_hostile_architecture_is_refused_before_allocating(tmp_path, architecture, says):
    if architecture == "huge":
        architecture = {**_model().metadata["architecture"], "base": 10**7}
    path = _rewritten(tmp_path, "hostile.safetensors", architecture=architecture)
    with pytest.raises(ModelFileError, match=says):
        UNetSegmenter.load(path)

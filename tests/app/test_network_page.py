"""AppTest: the Inside-the-network page with a tiny U-Net, without one, and its render helpers."""

from __future__ import annotations

import numpy as np
import pytest

from microseg.deep import UNetSegmenter
from tests.apphelpers import new_app
from webui import network_view as nv

pytestmark = pytest.mark.timeout(300)
PAGE = "pages/3_Inside_the_network.py"


def _tiny_unet() -> UNetSegmenter:
    return UNetSegmenter.new(
        "nuclei", ["background", "nucleus", "border"], in_channels=1, depth=3, base=4
    )


def _captions(at) -> list[str]:
    return [c for img in at.image for c in img.captions]


def _no_builtins(monkeypatch) -> None:
    monkeypatch.setattr("webui.models.builtin_available", lambda name: False)
    monkeypatch.setattr(nv, "builtin_available", lambda name: False)


def test_page_shows_kernels_and_feature_maps_of_session_unet():
    at = new_app()
    at.button(key="open_synthetic-nuclei-series").click().run()
    at.session_state["models"] = {"deep": _tiny_unet()}
    at.switch_page(PAGE).run()
    assert not at.exception
    assert not at.error, at.error[0].value
    assert at.selectbox(key="net_model").value == "Deep learning (U-Net, trained here)"
    caps = _captions(at)
    # first conv layer: 4 kernels of 3x3 from a 1-channel input
    assert any(c.startswith("enc0.conv1: 4 kernels of 3×3") for c in caps), caps
    # the progression row: every level with its shape, next to the input
    for level, shape in [("enc0", "4×256×256"), ("enc1", "8×128×128"), ("enc2", "16×64×64"),
                         ("dec1", "8×128×128"), ("dec0", "4×256×256")]:  # fmt: skip
        assert any(c.startswith(f"{level} · {shape}") for c in caps), (level, caps)
    # the engineered filter bank: 8 features of the six families at sigma 1.6
    bank = [c for c in caps if c.startswith(("Gaussian", "Laplacian", "Difference", "Structure",
                                             "Hessian"))]  # fmt: skip
    assert len(bank) == 8, bank
    assert any("Hessian of Gaussian eigenvalues max 1.6" == c for c in bank)
    text = " ".join(c.value for c in at.caption)
    assert "enc0: 4 channels × 256×256 px" in text

    # another level and another conv layer
    at.selectbox(key="net_maps_lv").set_value("enc2").run()
    assert not at.exception
    assert "enc2: 16 channels × 64×64 px" in " ".join(c.value for c in at.caption)
    at.selectbox(key="net_kernels_layer").set_value("enc1.conv2").run()
    assert not at.exception
    assert any(c.startswith("enc1.conv2: 8 kernels of 3×3 averaged over 8") for c in _captions(at))
    at.radio(key="net_kernels_mode").set_value("first").run()
    assert not at.exception
    assert any("first 8 of 8 input channels" in c for c in _captions(at))
    # the feature maps are cached per session under a ("network", ...) key
    keys = [k for k in at.session_state["predictions"] if k[0] == "network"]
    assert any(k[1] == "maps" for k in keys) and any(k[1] == "bank" for k in keys)


def test_region_of_a_larger_image_and_errors_as_one_sentence(monkeypatch):
    at = new_app()
    at.button(key="open_synthetic-grains").click().run()
    at.session_state["models"] = {"deep": _tiny_unet()}
    at.switch_page(PAGE).run()
    assert not at.exception and not at.error
    text = " ".join(c.value for c in at.caption)
    assert "enc0: 4 channels × 256×256 px" in text  # 512 px image: a 256 px region by default
    at.select_slider(key="net_region_size").set_value(128).run()
    assert not at.exception
    assert "enc0: 4 channels × 128×128 px" in " ".join(c.value for c in at.caption)
    assert any("(128×128 px)" in c for c in _captions(at))

    def broken(*args, **kwargs):
        raise RuntimeError("boom\nTraceback")

    monkeypatch.setattr("microseg.deep.inspect.feature_maps", broken)
    at.select_slider(key="net_region_size").set_value(512).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Could not compute the feature maps (RuntimeError)."]


def test_page_without_network_points_to_annotate(monkeypatch):
    _no_builtins(monkeypatch)
    at = new_app()
    at.button(key="open_synthetic-nuclei-series").click().run()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert any("train a U-Net on the Annotate page first" in i.value for i in at.info)
    # the engineered filter bank is still shown
    assert any(c.startswith("Gaussian smoothing") for c in _captions(at))


def test_page_without_image_asks_for_one():
    at = new_app()
    at.switch_page(PAGE).run()
    assert not at.exception
    assert any("home page" in i.value for i in at.info)


def test_kernel_grid_is_symmetric_and_tiled():
    k = np.zeros((5, 3, 3), np.float32)
    k[:, 1, 1] = [1.0, -2.0, 0.5, 3.0, -1.0]
    k[:, 0, 0] = [-1.0, 2.0, -0.5, 0.0, 0.0]
    grid = nv.kernel_grid(k, cols=3, cell=9, gap=2)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 9 + 3 * 2, 3 * 9 + 4 * 2, 3)
    assert (grid[0, 0] == nv.GAP_VALUE).all() and (grid[-1, -1] == nv.GAP_VALUE).all()
    first = grid[2:11, 2:11]
    # nearest-neighbour: 3x3 blocks of one colour; centre +1 → darkest red, corner -1 → blue
    assert (first[3:6, 3:6] == first[4, 4]).all()
    assert first[4, 4, 0] > 90 and first[4, 4, 2] < 40
    assert first[1, 1, 2] > first[1, 1, 0]
    # zero weights are the neutral middle colour
    assert tuple(first[1, 7]) == (247, 247, 247)
    # a kernel scaled by any positive factor looks the same
    assert (nv.kernel_grid(k * 7.5, cols=3, cell=9, gap=2) == grid).all()


def test_filter_bank_families_and_signs():
    yy, xx = np.mgrid[:64, :64]
    blob = np.exp(-((yy - 32) ** 2 + (xx - 32) ** 2) / 40.0).astype(np.float32)
    feats, names = nv.filter_bank(blob, 1.6)
    assert feats.shape == (8, 64, 64)
    assert names == ["gaussian 1.6", "log 1.6", "gradient 1.6", "dog 1.6", "structure max 1.6",
                     "structure min 1.6", "hessian max 1.6", "hessian min 1.6"]  # fmt: skip
    assert feats[1, 32, 32] < 0  # a bright blob has a negative Laplacian at its centre
    tiles, captions = nv.bank_tiles(feats, names)
    assert captions[1] == "Laplacian of Gaussian 1.6"
    assert all(t.shape[:2] == (128, 128) for t in tiles)  # 64 px enlarged x2
    # signed features in diverging colours: the blob centre of the LoG is blue
    assert tiles[1][64, 64, 2] > tiles[1][64, 64, 0]


def test_feature_map_tiles_pick_given_channels():
    maps = np.zeros((4, 16, 16), np.float32)
    maps[2, 4:8, 4:8] = 5.0
    tiles, captions = nv.feature_map_tiles(maps, [2, 0])
    assert captions[0].startswith("channel 2 · mean 0.312")
    assert tiles[0].shape == (128, 128) and tiles[0].max() == 255
    assert tiles[1].max() == 0

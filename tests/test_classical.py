"""Random-forest segmenter: training from strokes, prediction, model files, helpers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from microseg.classical import (
    RandomForestSegmenter,
    apply_to_stack,
    area_fractions,
    probabilities_to_classes,
    suggest_regions,
    uncertainty,
)
from microseg.errors import InputError, ModelFileError
from microseg.features import FeatureSet, compute_features
from microseg.image import MicroImage
from microseg.modelfile import load_model, read_metadata, save_model

SMALL = FeatureSet.grid(("gaussian", "gradient", "hessian"), (0.7, 1.6, 3.5))


def blobs(size: int = 96, seed: int = 0, gain: float = 1.0):
    """Bright disks on a noisy background; returns image, ground truth, strokes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = np.zeros((size, size), bool)
    strokes = np.zeros((size, size), np.uint8)
    f = size / 96
    for cy, cx, r in ((25, 25, 10), (60, 30, 12), (35, 70, 9), (75, 75, 11)):
        cy, cx, r = int(cy * f), int(cx * f), max(3, int(r * f))
        truth |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        strokes[cy, cx - r // 2 : cx + r // 2] = 2
    img = gain * (40.0 * truth + rng.normal(10.0, 6.0, (size, size)))
    strokes[int(5 * f), int(5 * f) : int(90 * f)] = 1
    strokes[int(90 * f), int(5 * f) : int(60 * f)] = 1
    strokes[int(48 * f), int(45 * f) : int(55 * f)] = 1
    return np.clip(img, 0, None).astype(np.uint16), truth, strokes


def f1(pred: np.ndarray, truth: np.ndarray) -> float:
    return 2 * np.sum(pred & truth) / (pred.sum() + truth.sum())


@pytest.fixture(scope="module")
def trained():
    img, truth, strokes = blobs()
    model = RandomForestSegmenter(workers=2).fit(
        img, strokes, task="nuclei", feature_set=SMALL, n_estimators=16, seed=0
    )
    return model, img, truth, strokes


def test_learns_two_classes_from_strokes(trained):
    model, img, truth, _ = trained
    proba = model.predict_proba(img)
    assert proba.shape == (2, *img.shape) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(0), 1.0, atol=1e-5)
    classes = probabilities_to_classes(proba)
    assert set(np.unique(classes)) <= {1, 2}
    assert f1(classes == 2, truth) > 0.9
    assert model.classes == ["background", "nucleus"]
    assert model.metadata["training"]["stroke_pixels"]["nucleus"] > 0
    from microseg.segmenter import Segmenter, predict_classes

    assert isinstance(model, Segmenter)
    np.testing.assert_array_equal(predict_classes(model, img), classes)


def test_generalises_to_another_image_with_other_brightness(trained):
    model, _, _, _ = trained
    img2, truth2, _ = blobs(seed=7, gain=3.0)  # per-image normalisation absorbs the gain
    assert f1(model.predict(img2) == 2, truth2) > 0.9


def test_precomputed_features_and_preview(trained):
    model, img, _, strokes = trained
    feats = compute_features(img, SMALL)
    again = RandomForestSegmenter(workers=1).fit(
        None, strokes, task="nuclei", feature_set=SMALL, n_estimators=16, seed=0, features=feats
    )
    np.testing.assert_array_equal(
        again.predict_proba(None, features=feats), model.predict_proba(img)
    )
    preview = model.predict_proba(None, features=feats[:, ::2, ::2])
    assert preview.shape == (2, 48, 48)
    np.testing.assert_array_equal(preview, model.predict_proba(img)[:, ::2, ::2])


def test_save_load_round_trip_identical(trained, tmp_path):
    model, img, _, _ = trained
    path = model.save(tmp_path / "rf.safetensors")
    meta = read_metadata(path)
    assert meta["kind"] == "rf" and meta["task"] == "nuclei"
    assert meta["feature_key"] == SMALL.key() and meta["n_channels"] == 1
    assert meta["normalisation"]["method"] == "percentile"
    loaded = RandomForestSegmenter.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(img), model.predict_proba(img))
    assert loaded.classes == model.classes and loaded.feature_set == SMALL
    from microseg.segmenter import load_segmenter

    via = load_segmenter(path)
    assert isinstance(via, RandomForestSegmenter)
    np.testing.assert_array_equal(via.predict_proba(img), model.predict_proba(img))


def test_loaded_model_refuses_other_feature_set_and_channels(trained, tmp_path):
    model, img, _, _ = trained
    loaded = RandomForestSegmenter.load(model.save(tmp_path / "rf.safetensors"))
    other = FeatureSet()
    with pytest.raises(InputError, match="feature"):
        loaded.predict_proba(None, features=compute_features(img, other))
    with pytest.raises(InputError, match="features"):
        loaded.predict_proba(None, features=compute_features(img, SMALL), feature_set=other)
    with pytest.raises(InputError, match="1-channel"):
        loaded.predict_proba(np.stack([img, img]))


def test_model_file_with_changed_feature_key_refused(trained, tmp_path):
    model, _, _, _ = trained
    tensors, meta = load_model(model.save(tmp_path / "rf.safetensors"))
    meta["feature_key"] = "f1-0000000000000000"
    save_model(tmp_path / "other.safetensors", tensors, meta)
    with pytest.raises(ModelFileError, match="retrain"):
        RandomForestSegmenter.load(tmp_path / "other.safetensors")


def test_damaged_forest_arrays_refused(trained, tmp_path):
    model, _, _, _ = trained
    tensors, meta = load_model(model.save(tmp_path / "rf.safetensors"))
    bad = dict(tensors)
    left = bad["children_left"].copy()
    left[0] = 10**6  # would send the traversal out of bounds
    bad["children_left"] = left
    save_model(tmp_path / "bad.safetensors", bad, meta)
    with pytest.raises(ModelFileError):
        RandomForestSegmenter.load(tmp_path / "bad.safetensors")
    bad = dict(tensors)
    feat = bad["feature"].copy()
    feat[bad["children_left"] != -1] = 999
    bad["feature"] = feat
    save_model(tmp_path / "bad2.safetensors", bad, meta)
    with pytest.raises(ModelFileError, match="different number of features"):
        RandomForestSegmenter.load(tmp_path / "bad2.safetensors")
    save_model(
        tmp_path / "unet.safetensors", {"w": np.zeros(3, np.float32)}, {**meta, "kind": "unet"}
    )
    with pytest.raises(ModelFileError, match="not a random forest"):
        RandomForestSegmenter.load(tmp_path / "unet.safetensors")


def test_bad_strokes_refused_with_clear_messages():
    img, _, strokes = blobs(48)
    model = RandomForestSegmenter(workers=1)
    with pytest.raises(InputError, match="no strokes"):
        model.fit(img, np.zeros_like(strokes), task="nuclei", feature_set=SMALL)
    one = np.where(strokes == 2, 2, 0).astype(np.uint8)
    with pytest.raises(InputError, match="paint at least two classes"):
        model.fit(img, one, task="nuclei", feature_set=SMALL)
    with pytest.raises(InputError, match="outside the image"):
        model.fit(img, np.pad(strokes, ((0, 4), (0, 0))), task="nuclei", feature_set=SMALL)
    with pytest.raises(InputError, match="only 2 classes"):
        model.fit(img, strokes * 2, task="nuclei", classes=["a", "b"], feature_set=SMALL)
    with pytest.raises(InputError, match="not trained"):
        model.predict_proba(img)


def test_several_images_each_with_one_class():
    img, truth, strokes = blobs(64)
    only_bg = np.where(strokes == 1, 1, 0).astype(np.uint8)
    only_fg = np.where(strokes == 2, 2, 0).astype(np.uint8)
    model = RandomForestSegmenter(workers=1).fit(
        [img, img], [only_bg, only_fg], task="nuclei", feature_set=SMALL, n_estimators=8
    )
    assert f1(model.predict(img) == 2, truth) > 0.85
    assert model.metadata["training"]["n_images"] == 2


def test_three_classes_with_one_unpainted_and_multichannel():
    img, truth, strokes = blobs(48)
    rgb = np.stack([img, img // 2, img[::-1]])
    model = RandomForestSegmenter(workers=1).fit(
        rgb, strokes, classes=["bg", "fg", "edge"], feature_set=SMALL, n_estimators=8
    )
    proba = model.predict_proba(rgb)
    assert proba.shape == (3, 48, 48)
    assert np.all(proba[2] == 0)
    assert model.metadata["training"]["unpainted_classes"] == ["edge"]
    assert model.n_features == 3 * SMALL.n_features(1)


def test_balanced_cap_on_training_pixels():
    img, _, _ = blobs(64)
    dense = np.where(img > 30, 2, 1).astype(np.uint8)
    model = RandomForestSegmenter(workers=1).fit(
        img, dense, task="nuclei", feature_set=SMALL, n_estimators=4, max_per_class=100
    )
    assert model.metadata["training"]["samples"] == {"background": 100, "nucleus": 100}


def test_uncertainty_margin_and_entropy():
    p = np.array([[[0.5, 0.9, 1.0]], [[0.5, 0.1, 0.0]]], np.float32)
    np.testing.assert_allclose(uncertainty(p)[0], [1.0, 0.2, 0.0], atol=1e-6)
    ent = uncertainty(p, "entropy")[0]
    assert ent[0] == pytest.approx(1.0) and ent[2] == pytest.approx(0.0, abs=1e-6)
    assert 0 < ent[1] < 1
    p3 = np.array([[[0.5]], [[0.3]], [[0.2]]], np.float32)
    assert uncertainty(p3)[0, 0] == pytest.approx(0.8)
    with pytest.raises(InputError):
        uncertainty(p, "variance")


def test_suggest_regions_finds_least_sure_places():
    u = np.zeros((200, 300), np.float32)
    u[20:40, 250:280] = 1.0
    u[150:170, 30:50] = 0.6
    boxes = suggest_regions(u, n=3, size=32)
    assert len(boxes) >= 2
    y0, x0, y1, x1 = boxes[0]
    assert y1 - y0 == 32 and x1 - x0 == 32
    assert y0 <= 25 and y1 >= 35 and x0 <= 255 and x1 >= 275
    y0, x0, y1, x1 = boxes[1]
    assert y0 <= 155 and y1 >= 165 and x0 <= 35 and x1 >= 45
    for a in boxes:
        for b in boxes:
            if a != b:  # no overlaps
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    painted = np.zeros_like(u, np.uint8)
    painted[20:40, 250:280] = 1
    first = suggest_regions(u, n=1, size=32, exclude=painted)[0]
    assert first[0] >= 120  # the painted place is no longer suggested first


def test_area_fractions():
    cm = np.array([[1, 1, 2, 2], [2, 2, 2, 3]], np.uint8)
    fr = area_fractions(cm, 3)
    assert fr == {1: 0.25, 2: 0.625, 3: 0.125}
    assert area_fractions(np.zeros((2, 2), np.uint8), 2) == {1: 0.0, 2: 0.0}


def test_apply_to_stack_progress_and_stop(trained):
    model, img, truth, _ = trained
    stack = np.stack([img, (img * 2).astype(np.uint16), img])
    micro = MicroImage.from_array(stack, axes="TYX")
    calls = []
    maps = apply_to_stack(model, micro, progress=lambda d, t: calls.append((d, t)))
    assert maps.shape == (3, *img.shape) and maps.dtype == np.uint8
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert all(f1(m == 2, truth) > 0.9 for m in maps)
    stop = threading.Event()

    def progress(done, total):
        if done == 1:
            stop.set()

    assert apply_to_stack(model, micro, progress=progress, stop=stop).shape[0] == 1


def test_feature_importances_named(trained):
    model, _, _, _ = trained
    imp = model.feature_importances
    assert len(imp) == SMALL.n_features(1)
    assert sum(imp.values()) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.data
def test_gowt1_frame_021_f1(shared_data):
    import tifffile

    base = shared_data / "timelapse" / "ctc_gowt1_01"
    img = tifffile.imread(base / "01" / "t021.tif")
    strokes = tifffile.imread(
        shared_data / "strokes" / "timelapse" / "ctc_gowt1_01" / "t021_strokes.tif"
    )
    truth = tifffile.imread(base / "01_GT" / "SEG" / "man_seg021.tif") > 0
    model = RandomForestSegmenter(workers=2).fit(img, strokes, task="nuclei")
    assert f1(model.predict(img) == 2, truth) >= 0.85


def test_default_class_names_follow_the_task():
    img, _, strokes = blobs(48)
    s3 = strokes.copy()
    s3[20, 2:6] = 3
    model = RandomForestSegmenter(workers=1).fit(
        img, s3, task="nuclei", feature_set=SMALL, n_estimators=4
    )
    assert model.classes == ["background", "nucleus", "border"]
    s3[21, 2:6] = 4
    with pytest.raises(InputError, match="label 4 but there are only 3 classes"):
        RandomForestSegmenter(workers=1).fit(img, s3, task="nuclei", feature_set=SMALL)
    sem = RandomForestSegmenter(workers=1).fit(
        img, s3, task="semantic", feature_set=SMALL, n_estimators=4
    )
    assert sem.classes == ["class 1", "class 2", "class 3", "class 4"]
    with pytest.raises(InputError, match="Unknown task"):
        RandomForestSegmenter(workers=1).fit(img, strokes, task="cells", feature_set=SMALL)


def test_forest_arrays_of_wrong_type_refused(trained, tmp_path):
    model, _, _, _ = trained
    tensors, meta = load_model(model.save(tmp_path / "rf.safetensors"))
    bad = dict(tensors, tree_offsets=tensors["tree_offsets"].astype(np.float32))
    save_model(tmp_path / "bad.safetensors", bad, meta)
    with pytest.raises(ModelFileError, match="wrong type"):
        RandomForestSegmenter.load(tmp_path / "bad.safetensors")
    missing = {k: v for k, v in tensors.items() if k != "threshold"}
    save_model(tmp_path / "missing.safetensors", missing, meta)
    with pytest.raises(ModelFileError, match="threshold"):
        RandomForestSegmenter.load(tmp_path / "missing.safetensors")

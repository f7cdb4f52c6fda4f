"""Built-in models: names, clear errors, and (when committed) sensible predictions."""

from __future__ import annotations

import numpy as np
import pytest

from microseg import zoo
from microseg.errors import ModelFileError


def test_unknown_builtin_is_a_clear_error():
    with pytest.raises(ModelFileError, match="no built-in model 'cells'"):
        zoo.builtin_path("cells")


def test_missing_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(zoo, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ModelFileError, match="python -m microseg.zoo train nuclei"):
        zoo.builtin_path("nuclei")


def test_builtin_info_is_documented():
    for info in zoo.BUILTINS.values():
        assert info["citation"] and info["data"] and info["held_out"]
        assert info["task"] in ("nuclei", "grains")
    assert zoo.builtin_names() == ["grains", "nuclei"]


def test_held_out_splits_are_disjoint(shared_data):
    from microseg.zoo.train_builtin import grains_split, nuclei_split

    n = nuclei_split(shared_data)
    assert not set(n["train"]) & set(n["test"]) and not set(n["val"]) & set(n["test"])
    assert not set(n["train"]) & set(n["val"]) and len(n["test"]) >= 50
    g = grains_split(shared_data)
    assert all(int(t.split("-")[0]) >= 18 for t in g["test"])
    assert all(10 <= int(t.split("-")[0]) <= 17 for t in g["train"] + g["val"])


def _weights(name: str):
    try:
        return zoo.builtin_path(name)
    except ModelFileError:
        pytest.skip(f"builtin:{name} weights are not trained yet")


def test_builtin_nuclei_predicts_dsb_sample(shared_data):
    import tifffile

    from microseg.segmenter import load_segmenter

    _weights("nuclei")
    model = load_segmenter("builtin:nuclei")
    assert model.task == "nuclei" and model.classes == ["background", "nucleus", "border"]
    assert model.metadata["object_diameter_px"] > 0 and "Caicedo" in model.metadata["citation"]
    root = shared_data / "nuclei" / "dsb_sample"
    image = tifffile.imread(root / "image.tif")[:256, :256]
    labels = tifffile.imread(root / "labels.tif")[:256, :256]
    proba = model.predict_proba(image)
    assert proba.shape == (3, 256, 256)
    fg = proba[1] + proba[2] > 0.5
    gt = labels > 0
    dice = 2 * (fg & gt).sum() / (fg.sum() + gt.sum())
    assert dice > 0.8


def test_builtin_grains_predicts_tbm_tile(shared_data):
    from skimage import io

    from microseg.metrics import boundary_f1
    from microseg.segmenter import load_segmenter

    _weights("grains")
    model = load_segmenter("builtin:grains")
    assert model.task == "grains" and model.classes == ["grain interior", "grain boundary"]
    root = shared_data / "grains" / "tbm" / "tiles256"
    image = io.imread(root / "images" / "18-0-0.png")[..., :3]
    gt = io.imread(root / "masks" / "18-0-0.png") > 128
    proba = model.predict_proba(image)
    assert proba.shape == (2, 256, 256)
    pred = np.argmax(proba, 0) == 1
    assert 0.05 < pred.mean() < 0.5
    assert boundary_f1(gt, pred, 2).f1 > 0.5


def test_training_script_checkpoints_and_resumes(shared_data, tmp_path):
    import torch

    from microseg.deep import UNetSegmenter
    from microseg.zoo.train_builtin import Recipe, train

    kw = {"data": shared_data, "threads": 1, "checkpoints": tmp_path / "ck", "out": tmp_path / "w"}
    kw.update(recipe=Recipe(batch=2, crop=64, n_synth=0))
    path = train("grains", 0.03, False, **kw)
    first = torch.load(tmp_path / "ck" / "grains.pt", weights_only=True)["step"]
    train("grains", 0.06, True, **kw)
    second = torch.load(tmp_path / "ck" / "grains.pt", weights_only=True)["step"]
    assert second > first > 0
    model = UNetSegmenter.load(path)
    meta = model.metadata
    assert meta["name"] == "builtin:grains" and "18-20" in meta["held_out"]
    assert meta["training"]["steps"] == second and meta["split"]["test"] == 10


def test_training_script_fine_tunes_from_given_weights(shared_data, tmp_path):
    from microseg.deep import UNetSegmenter
    from microseg.zoo.train_builtin import Recipe, train

    recipe = Recipe(batch=2, crop=64, n_synth=0, texture=0.5, init=zoo.builtin_path("grains"))
    path = train("grains", 0.03, False, shared_data, 1, tmp_path / "ck", tmp_path / "w", recipe)
    meta = UNetSegmenter.load(path).metadata
    assert meta["init"] == "builtin:grains" and meta["training"]["finetuned"]
    assert meta["training"]["lr"] == 5e-4  # the fine-tuning default of the recipe
    assert meta["recipe"]["texture"] == 0.5 and meta["recipe"]["init"].endswith(
        "grains.safetensors"
    )
    assert meta["training"]["config"]["augment_config"]["texture"] == 0.5


def test_calibrate_stores_instance_settings_chosen_on_validation_images(shared_data, tmp_path):
    import shutil

    from microseg.deep import UNetSegmenter
    from microseg.nuclei import FrameSegmenter
    from microseg.zoo.train_builtin import calibrate_nuclei

    path = tmp_path / "nuclei.safetensors"
    shutil.copy(zoo.builtin_path("nuclei"), path)
    chosen = calibrate_nuclei(path, shared_data, limit=2)
    assert 0.5 <= chosen["threshold"] <= 0.9 and chosen["n_images"] == 2
    assert chosen["ap"] >= chosen["ap_default"]
    assert "validation split" in chosen["chosen_on"]
    model = UNetSegmenter.load(path)
    assert model.metadata["instances"]["threshold"] == chosen["threshold"]
    settings = FrameSegmenter(model).settings()["instance_settings"]
    assert settings == {"threshold": chosen["threshold"], "h_fraction": chosen["h_fraction"]}


def test_styled_images_join_training_and_validation_and_stats_are_recorded(shared_data, tmp_path):
    from microseg.deep import UNetSegmenter
    from microseg.deep.familiarity import unfamiliarity
    from microseg.zoo.train_builtin import build, record_stats, styled_grain_data

    images, masks = styled_grain_data(7, side=96)
    assert len(images) == 7 and all(im.shape == (3, 96, 96) for im in images)
    assert all(m.shape == (96, 96) and set(np.unique(m)) <= {0, 1} for m in masks)
    d = build("grains", shared_data, n_synth=0, n_styled=6, tbm_repeat=2, styled_val=2)
    assert d["split"]["styled"] == 6 and d["split"]["styled_val"] == 2
    assert len(d["images"]) == 2 * d["split"]["train"] + 6
    assert len(d["val_images"]) == d["split"]["val"] + 2
    # --tbm-repeat 0 leaves the TBM tiles out of training and of model selection
    d0 = build("grains", shared_data, n_synth=0, n_styled=6, tbm_repeat=0, styled_val=2)
    assert len(d0["images"]) == 6 and len(d0["val_images"]) == 2
    assert d0["split"]["tbm_repeat"] == 0 and d0["split"]["train"] == d0["split"]["val"] == 0
    with pytest.raises(SystemExit, match="styled validation images"):
        build("grains", shared_data, n_synth=0, n_styled=0, tbm_repeat=0)
    # the committed built-in records its feature statistics: its own training tiles are
    # familiar to it
    path = tmp_path / "g.safetensors"
    path.write_bytes(zoo.builtin_path("grains").read_bytes())
    stats = record_stats(path, shared_data, n_styled=0)
    assert stats["n_images"] >= 27 and stats["scale"] > 0
    model = UNetSegmenter.load(path)
    assert unfamiliarity(model, d["images"][0]) < 1.5


def test_training_script_refuses_a_file_as_output_folder_before_training(
    shared_data, tmp_path, capsys
):
    from microseg.zoo.train_builtin import main

    taken = tmp_path / "grains.safetensors"
    taken.write_bytes(b"x")
    code = main(["train", "grains", "--data", str(shared_data), "--out", str(taken)])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"--out must be a folder; {taken} is a file."
    assert taken.read_bytes() == b"x"

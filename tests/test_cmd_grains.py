"""``microseg grains`` on a synthetic grain sample: grain map TIFF, grain table, summary JSON
with ASTM G values, stacks, provenance and one-sentence errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from microseg.astm import grain_summary
from microseg.cli import main
from microseg.io import read_provenance
from microseg.modelfile import file_hash
from tests.conftest import ROOT
from tests.test_cmd_predict_train import grain_strokes

pytestmark = pytest.mark.timeout(300)

SUMMARY_KEYS = {"n_grains", "mean_area", "mean_ecd", "mean_intercept", "astm_g_planimetric",
                "astm_g_intercept", "unit"}  # fmt: skip


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    d = tmp_path_factory.mktemp("grains")
    assert main(["synth", "--kind", "grains", "--out", str(d), "--seed", "0"]) == 0
    bnd = tifffile.imread(d / "boundaries.tif")
    tifffile.imwrite(d / "strokes.tif", grain_strokes(bnd))
    model = d / "rf.safetensors"
    rc = main(["train", "--method", "rf", "--task", "grains", "--out", str(model),
               "--images", str(d / "image.tif"), "--labels", str(d / "strokes.tif")])  # fmt: skip
    assert rc == 0
    truth = json.loads((d / "truth.json").read_text())
    return d, model, truth


@pytest.fixture(scope="module")
def grains_run(sample, tmp_path_factory):
    d, model, _ = sample
    out = tmp_path_factory.mktemp("out")
    rc = main(["grains", "--model", str(model), "--out", str(out), "--pixel-size", "0.5",
               str(d / "image.tif")])  # fmt: skip
    assert rc == 0
    return out


def test_grain_map_tiff(grains_run, sample):
    labels = tifffile.imread(grains_run / "image_grains.tif")
    assert labels.shape == (512, 512) and labels.dtype == np.uint16
    ids = np.unique(labels)
    assert ids[0] == 0 and np.array_equal(ids[1:], np.arange(1, ids.size))  # 1..N, 0 = boundary
    # the synthetic microstructure has 160 grains; a random forest gets the right magnitude
    assert 60 < ids.size - 1 < 400
    prov = read_provenance(grains_run / "image_grains.tif")
    assert prov["model_sha256"] == file_hash(sample[1])
    assert prov["parameters"]["pixel_size_um"] == 0.5


def test_grain_table_one_row_per_grain(grains_run):
    labels = tifffile.imread(grains_run / "image_grains.tif")
    table = pd.read_csv(grains_run / "image_grains.csv")
    assert len(table) == int(labels.max())
    assert sorted(table["label"]) == list(range(1, int(labels.max()) + 1))
    assert "touches_border" in table.columns
    edge = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
    flagged = set(table.loc[table["touches_border"].astype(bool), "label"])
    assert (edge - {0}) <= flagged
    np.testing.assert_allclose(table["area_um2"], table["area_px"] * 0.25)
    side = json.loads((grains_run / "image_grains.json").read_text())
    assert side["microseg_version"] and side["model_sha256"]


def test_summary_matches_the_grain_map(grains_run):
    summary = json.loads((grains_run / "image_summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["unit"] == "um"
    labels = tifffile.imread(grains_run / "image_grains.tif")
    ref = grain_summary(labels, pixel_size_um=0.5)
    assert summary["n_grains"] == ref["n_grains"] == int(labels.max())
    for key in ("mean_area", "mean_intercept", "astm_g_planimetric", "astm_g_intercept"):
        assert summary[key] == pytest.approx(ref[key])
    lo, hi = summary["astm_g_planimetric_ci"]
    assert lo < summary["astm_g_planimetric"] < hi
    # E112: the planimetric and intercept G of an equiaxed structure agree within a unit
    assert abs(summary["astm_g_planimetric"] - summary["astm_g_intercept"]) < 1.0
    assert summary["provenance"]["model_sha256"]


def test_g_close_to_ground_truth(grains_run, sample):
    d = sample[0]
    truth_labels = tifffile.imread(d / "grain_labels.tif")
    ref = grain_summary(truth_labels, pixel_size_um=0.5)
    summary = json.loads((grains_run / "image_summary.json").read_text())
    # faint boundaries make a random forest merge grains: G within 1.5 of the truth
    assert abs(summary["astm_g_intercept"] - ref["astm_g_intercept"]) < 1.5


def test_no_pixel_size_gives_px_and_null_g(sample, tmp_path):
    d, model, _ = sample
    png = tmp_path / "plain.png"
    Image.fromarray(tifffile.imread(d / "image.tif")[:200, :256]).save(png)
    assert main(["grains", "--model", str(model), "--out", str(tmp_path / "o"), str(png)]) == 0
    summary = json.loads((tmp_path / "o" / "plain_summary.json").read_text())
    assert summary["unit"] == "px"
    assert summary["astm_g_planimetric"] is None and summary["astm_g_intercept"] is None
    assert summary["mean_area"] > 0 and summary["mean_intercept"] > 0
    table = pd.read_csv(tmp_path / "o" / "plain_grains.csv")
    assert table["area_um2"].isna().all()


def test_stack_is_measured_per_frame(sample, tmp_path):
    d, model, _ = sample
    img = tifffile.imread(d / "image.tif")
    stack = np.stack([img[:160, :192], img[300:460, 200:392]])
    tifffile.imwrite(tmp_path / "fields.tif", stack, imagej=True, metadata={"axes": "TYX"})
    out = tmp_path / "o"
    assert main(["grains", "--model", str(model), "--out", str(out), "--pixel-size", "0.5",
                 str(tmp_path / "fields.tif")]) == 0  # fmt: skip
    labels = tifffile.imread(out / "fields_grains.tif")
    assert labels.shape == (2, 160, 192)
    table = pd.read_csv(out / "fields_grains.csv")
    assert set(table["frame"]) == {0, 1}
    for t in (0, 1):
        assert (table["frame"] == t).sum() == int(labels[t].max())
    summary = json.loads((out / "fields_summary.json").read_text())
    assert len(summary["planes"]) == 2
    assert summary["n_grains"] == sum(p["n_grains"] for p in summary["planes"])
    gs = [p["astm_g_intercept"] for p in summary["planes"]]
    assert min(gs) - 0.5 < summary["astm_g_intercept"] < max(gs) + 0.5


def test_model_without_boundary_class_exit_2(sample, tmp_path, capsys):
    d, _, _ = sample
    model = tmp_path / "phases.safetensors"
    assert main(["train", "--method", "rf", "--task", "semantic", "--classes", "ferrite,pearlite",
                 "--out", str(model), "--images", str(d / "image.tif"),
                 "--labels", str(d / "strokes.tif")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["grains", "--model", str(model), "--out", str(tmp_path / "o"),
                 str(d / "image.tif")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "grain boundary class" in err and "Traceback" not in err


def test_bad_pixel_size_and_missing_builtin_exit_2(sample, tmp_path, capsys):
    d, model, _ = sample
    assert main(["grains", "--model", str(model), "--out", str(tmp_path), "--pixel-size", "-1",
                 str(d / "image.tif")]) == 2  # fmt: skip
    assert "--pixel-size" in capsys.readouterr().err
    assert main(["grains", "--model", "builtin:nothing", "--out", str(tmp_path),
                 str(d / "image.tif")]) == 2  # fmt: skip
    assert "built-in" in capsys.readouterr().err


def test_python_m_microseg_grains(sample, tmp_path):
    d, model, _ = sample
    img = tifffile.imread(d / "image.tif")[:192, :192]
    tifffile.imwrite(tmp_path / "crop.tif", img)
    proc = subprocess.run(
        [sys.executable, "-m", "microseg", "grains", "--model", str(model), "--out",
         str(tmp_path / "o"), "--pixel-size", "0.5", str(tmp_path / "crop.tif")],
        capture_output=True, text=True, cwd=ROOT, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "grains" in proc.stderr  # progress on stderr
    result = json.loads(proc.stdout)
    assert result["outputs"][0]["n_grains"] > 0
    for suffix in ("_grains.tif", "_grains.csv", "_summary.json"):
        assert (tmp_path / "o" / f"crop{suffix}").is_file()


def test_threshold_and_min_grain_area_options(sample, grains_run, tmp_path):
    d, model, _ = sample
    out = tmp_path / "opts"
    rc = main(["grains", "--model", str(model), "--out", str(out), "--pixel-size", "0.5",
               "--threshold", "0.3", "--min-grain-area", "400", str(d / "image.tif")])  # fmt: skip
    assert rc == 0
    labels = tifffile.imread(out / "image_grains.tif")
    areas = np.bincount(labels.ravel())[1:]
    assert areas.min() >= 400  # no grain under the size given
    default = tifffile.imread(grains_run / "image_grains.tif")
    assert np.bincount(default.ravel())[1:].min() < 400  # (the default keeps smaller ones)
    prov = json.loads((out / "image_summary.json").read_text())["provenance"]
    assert prov["parameters"]["grain_map"] == {
        "function": "microseg.grains.grain_map",
        "threshold": 0.3,
        "min_grain_area_px": 400,
    }
    assert prov["parameters"]["test_time_augmentation"] is False


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--threshold", "1.5"], "--threshold must lie between 0 and 1"),
        (["--min-grain-area", "0"], "--min-grain-area must be a positive number of pixels"),
        (["--augment"], "Test-time augmentation needs a deep-learning (U-Net) model."),
    ],
)
def test_grain_option_errors(sample, tmp_path, capsys, extra, says):
    d, model, _ = sample
    rc = main(["grains", "--model", str(model), "--out", str(tmp_path / "bad"), *extra,
               str(d / "image.tif")])  # fmt: skip
    assert rc == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "bad" / "image_grains.tif").exists()


def test_specimen_pools_every_field_of_every_image(sample, tmp_path, capsys):
    from microseg.astm import g_from_na

    d, model, _ = sample
    img = tifffile.imread(d / "image.tif")
    tifffile.imwrite(tmp_path / "a.tif", img[:256, :256])
    tifffile.imwrite(tmp_path / "b.tif", np.stack([img[256:, :256], img[256:, 256:]]),
                     imagej=True, metadata={"axes": "TYX"})  # fmt: skip
    out = tmp_path / "o"
    args = ["grains", "--model", str(model), "--out", str(out), "--pixel-size", "0.5"]
    assert main([*args, "--specimen", "steel-1", str(tmp_path / "a.tif"),
                 str(tmp_path / "b.tif")]) == 0  # fmt: skip
    spec = json.loads((out / "steel-1_specimen.json").read_text())
    assert spec["n_fields"] == 3 and [f["field"] for f in spec["fields"]][0] == "a.tif"
    per_field = [f["n_a"] for f in spec["fields"]]
    assert spec["astm_g_planimetric"] == pytest.approx(g_from_na(np.mean(per_field)))
    lo, hi = spec["astm_g_planimetric_ci"]
    assert lo < spec["astm_g_planimetric"] < hi
    assert spec["n_grains"] == sum(f["n_grains"] for f in spec["fields"])
    assert spec["provenance"]["microseg_version"]
    # the per-image outputs are written as without --specimen
    assert (out / "a_summary.json").is_file() and (out / "b_summary.json").is_file()
    # a name with a path in it is refused before anything is measured
    bad = tmp_path / "bad"
    assert main([*args[:4], str(bad), "--specimen", "../x", str(tmp_path / "a.tif")]) == 2
    assert "--specimen must be a plain name" in capsys.readouterr().err
    assert not (bad / "a_summary.json").exists()


@pytest.fixture(scope="module")
def barred(sample, tmp_path_factory):
    """The synthetic micrograph as 8-bit, with a 48-row data bar under it."""
    from tests.test_roi import with_bar

    d = tmp_path_factory.mktemp("barred")
    img = tifffile.imread(sample[0] / "image.tif").astype(float)
    lo, hi = np.percentile(img, [0.5, 99.5])
    img8 = np.clip(1 + 253 * (img - lo) / (hi - lo), 1, 254).astype(np.uint8)
    tifffile.imwrite(d / "clean.tif", img8)
    tifffile.imwrite(d / "sem.tif", with_bar(img8, 48, 0, 255))
    return d


def test_drop_data_bar_measures_the_micrograph_only(sample, barred, tmp_path, capsys):
    _, model, _ = sample
    args = ["grains", "--model", str(model), "--pixel-size", "0.5"]
    assert main([*args, "--out", str(tmp_path / "clean"), str(barred / "clean.tif")]) == 0
    assert main([*args, "--out", str(tmp_path / "kept"), str(barred / "sem.tif")]) == 0
    assert main([*args, "--out", str(tmp_path / "drop"), "--drop-data-bar",
                 str(barred / "sem.tif")]) == 0  # fmt: skip
    assert "the data bar at the bottom (rows 510-559) left out" in (capsys.readouterr().err)
    labels = tifffile.imread(tmp_path / "drop" / "sem_grains.tif")
    assert labels.shape == (510, 512)
    summary = json.loads((tmp_path / "drop" / "sem_summary.json").read_text())
    assert summary["region"] == {"y0": 0, "y1": 510, "x0": 0, "x1": 512,
                                 "source": "the data bar at the bottom (rows 510-559) left out",
                                 "image_shape": [560, 512]}  # fmt: skip
    table = pd.read_csv(tmp_path / "drop" / "sem_grains.csv", comment="#")
    assert table["y"].max() < 510
    n = {k: json.loads((tmp_path / k / f"{s}_summary.json").read_text())["n_grains"]
         for k, s in (("clean", "clean"), ("kept", "sem"), ("drop", "sem"))}  # fmt: skip
    # the bar's text makes grains of its own; without it the count is the clean image's
    # (less the grains that lay only in the 2-row margin)
    assert n["kept"] > n["clean"] + 3
    assert abs(n["drop"] - n["clean"]) <= 3
    whole = json.loads((tmp_path / "kept" / "sem_summary.json").read_text())["region"]
    assert whole["source"] == "whole image" and whole["y1"] == 560


def test_region_option(sample, barred, tmp_path, capsys):
    _, model, _ = sample
    args = ["grains", "--model", str(model), "--out", str(tmp_path)]
    assert main([*args, "--region", "100:356,:-12", str(barred / "clean.tif")]) == 0
    labels = tifffile.imread(tmp_path / "clean_grains.tif")
    assert labels.shape == (256, 500)
    summary = json.loads((tmp_path / "clean_summary.json").read_text())
    assert (summary["region"]["y0"], summary["region"]["x1"]) == (100, 500)
    capsys.readouterr()
    for extra, says in ((["--region", "10:20"], "A region is written Y0:Y1,X0:X1"),
                        (["--region", ":-64,:", "--drop-data-bar"], "not both"),
                        (["--region", "0:8,:"], "under 16 pixels")):  # fmt: skip
        assert main([*args[:4], str(tmp_path / "bad"), *extra, str(barred / "clean.tif")]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err
    assert not (tmp_path / "bad" / "clean_grains.tif").exists()


def test_batch_drop_data_bar(sample, barred, tmp_path):
    _, model, _ = sample
    assert main(["batch", "--model", str(model), "--task", "grains", "--out", str(tmp_path),
                 "--drop-data-bar", str(barred / "sem.tif")]) == 0  # fmt: skip
    assert tifffile.imread(tmp_path / "sem_grains.tif").shape == (510, 512)


def test_an_sem_tiff_gives_its_pixel_size_and_its_data_bar(sample, barred, tmp_path):
    from tests.test_io import FEI_HEADER

    _, model, _ = sample
    img = tifffile.imread(barred / "sem.tif")
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, img, resolution=(72, 72),
                     extratags=[(34682, "s", 0, FEI_HEADER.format(w="5e-7", h="5e-7"), True)])  # fmt: skip
    out = tmp_path / "o"
    assert main(["grains", "--model", str(model), "--out", str(out), "--drop-data-bar",
                 str(path)]) == 0  # fmt: skip
    summary = json.loads((out / "fei_summary.json").read_text())
    assert summary["unit"] == "um" and summary["astm_g_planimetric"] is not None
    assert summary["provenance"]["parameters"]["pixel_size_um"] == pytest.approx(0.5)
    assert summary["provenance"]["parameters"]["pixel_size_source"] == "file (FEI SEM)"
    assert summary["region"]["y1"] == 510


def test_summary_carries_a_quality_verdict(grains_run):
    s = json.loads((grains_run / "image_summary.json").read_text())
    q = s["quality"]
    assert q["verdict"] in ("ok", "check", "do_not_trust")
    assert isinstance(q["reasons"], list) and isinstance(q["checks"], dict)
    assert q["checks"]["n_grains"] == s["n_grains"]
    assert q["checks"]["unfamiliarity"] is None  # a random forest records no feature statistics
    assert 3 <= q["checks"]["median_neighbours"] <= 7  # a tessellation


def test_a_grain_model_on_a_nuclei_image_is_not_trusted(tmp_path, capsys):
    """The built-in grain model on fluorescence nuclei: flagged in the summary and on stderr."""
    nuclei = ROOT.parent / "shared" / "data" / "nuclei" / "dsb_sample" / "image.tif"
    if not nuclei.is_file():
        pytest.skip("shared data not available")
    rc = main(["grains", "--model", "builtin:grains", "--out", str(tmp_path), str(nuclei)])
    assert rc == 0
    q = json.loads((tmp_path / "image_summary.json").read_text())["quality"]
    assert q["verdict"] == "do_not_trust", q
    # the generalist grain model has seen blob-like renderings, so the image need not look
    # unfamiliar to it; the map itself gives it away: isolated blobs, not a tessellation
    assert q["checks"]["median_neighbours"] < 4
    assert q["next_steps"]
    err = capsys.readouterr().err
    assert "quality: do not trust" in err and "isolated blobs" in err


@pytest.mark.parametrize("ps", ["1e200", "nan", "0", "1e-9"])
def test_an_impossible_pixel_size_is_exit_2_with_one_sentence(tmp_path, capsys, ps):
    from microseg.synth import synth_grains

    img = tmp_path / "g.tif"
    tifffile.imwrite(img, synth_grains(shape=(96, 96), seed=0).image)
    rc = main(["grains", "--model", "builtin:grains", "--pixel-size", ps, "--out",
               str(tmp_path / "out"), str(img)])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("microseg: error: --pixel-size must be a number of µm per pixel")
    assert not (tmp_path / "out" / "g_summary.json").exists()


def test_tile_by_tile_gives_the_whole_image_grains_and_g(sample, grains_run, tmp_path):
    import zarr
    from ome_zarr_models.v04 import ImageLabel

    d, model, _ = sample
    out = tmp_path / "tiled"
    rc = main(["grains", "--model", str(model), "--out", str(out), "--pixel-size", "0.5",
               "--ome-zarr", "--tile", "128", str(d / "image.tif")])  # fmt: skip
    assert rc == 0
    whole = json.loads((grains_run / "image_summary.json").read_text())
    tiled = json.loads((out / "image_summary.json").read_text())
    assert tiled["tiled"]["windows"] == 16 and tiled["tiled"]["cut_by_margin"] == 0
    # only grains at the image edge may differ (sliver merging sees less context there)
    assert tiled["n_interior_grains"] == pytest.approx(whole["n_interior_grains"], abs=2)
    assert tiled["n_grains"] == pytest.approx(whole["n_grains"], rel=0.03)
    for key in ("astm_g_planimetric", "astm_g_intercept", "astm_g_mean_area"):
        assert tiled[key] == pytest.approx(whole[key], abs=0.05), key
    assert tiled["astm_g_intercept_circles"] is None
    labels = tifffile.imread(out / "image_grains.tif")
    table = pd.read_csv(out / "image_grains.csv")
    assert len(table) == labels.max() == tiled["n_grains"] and table["label"].is_unique
    assert set(np.unique(labels)) == set(range(labels.max() + 1))
    g = zarr.open_group(out / "image.ome.zarr", mode="r")
    ImageLabel.from_zarr(g["labels/grains"])
    assert not any(p.name.startswith(".") for p in out.iterdir())


def test_a_region_on_a_tiled_run_gets_one_sentence(sample, tmp_path, capsys):
    d, model, _ = sample
    rc = main(["grains", "--model", str(model), "--out", str(tmp_path / "o"), "--ome-zarr",
               "--region", "0:100,0:100", str(d / "image.tif")])  # fmt: skip
    assert rc != 0
    assert "--region and --drop-data-bar are not available there" in capsys.readouterr().err

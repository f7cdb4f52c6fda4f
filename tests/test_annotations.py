"""Masks drawn in other tools (QuPath GeoJSON, ImageJ ROIs, NumPy label arrays) read as
the dense masks ``train --masks`` takes, and the command line round trip: outputs
written with ``--geojson`` train a model again."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from roifile import ROI_TYPE, ImagejRoi, roiwrite

from microseg.annotations import boundary_map, read_mask
from microseg.cli import main
from microseg.errors import InputError
from microseg.exports import write_imagej_rois
from microseg.geojson import write_geojson
from tests.test_geojson import _grain_map

pytestmark = pytest.mark.timeout(300)


def _nuclei_labels() -> np.ndarray:
    lab = np.zeros((48, 48), np.uint16)
    yy, xx = np.mgrid[:48, :48]
    for i, (y, x, r) in enumerate([(10, 10, 5), (10, 30, 6), (32, 20, 7), (36, 38, 4)], start=1):
        lab[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = i
    return lab


def test_roiset_of_microseg_reads_back_as_the_same_objects(tmp_path):
    lab = _nuclei_labels()
    path = write_imagej_rois(lab, tmp_path / "RoiSet.zip")
    assert np.array_equal(read_mask(path, lab.shape, "nuclei"), lab)


def test_roi_shapes_fiji_users_draw(tmp_path):
    rect = ImagejRoi.frompoints([[2, 2], [8, 2], [8, 6], [2, 6]])
    rect.roitype = ROI_TYPE.RECT  # by its bounds
    rect.left, rect.top, rect.right, rect.bottom = 2, 2, 8, 6
    poly = ImagejRoi.frompoints(np.array([[20, 20], [30, 20], [30, 30], [20, 30]], np.float32))
    line = ImagejRoi.frompoints(np.array([[0, 40.5], [47, 40.5]], np.float32))
    line.roitype = ROI_TYPE.POLYLINE  # a traced boundary
    other_plane = ImagejRoi.frompoints(np.array([[40, 2], [46, 2], [46, 8]], np.float32))
    other_plane.position = 3
    roiwrite(tmp_path / "set.zip", [rect, poly, line, other_plane])
    labels = read_mask(tmp_path / "set.zip", (48, 48), "nuclei")
    assert (labels == 1).sum() == 24 and labels[3, 3] == 1  # 6 x 4 rectangle
    assert (labels == 2).sum() == 100
    assert labels.max() == 2  # the ROI of plane 3 is left out
    bnd = read_mask(tmp_path / "set.zip", (48, 48), "grains")
    assert bnd[40].all()  # the line is boundary


def test_grain_outlines_become_the_boundary_map(tmp_path):
    lab = _grain_map(30, 120)
    path = write_geojson(tmp_path / "g.geojson", lab, class_name="Grain", color=(0, 0, 0))
    bnd = read_mask(path, lab.shape, "grains")
    assert np.array_equal(bnd, (lab == 0).astype(np.uint8))


def test_grains_that_share_an_edge_stay_apart():
    lab = np.zeros((6, 8), np.uint16)
    lab[:, :4], lab[:, 4:] = 1, 2  # QuPath polygons that tile without a gap
    bnd = boundary_map(lab)
    assert bnd[:, 4].all() and bnd.sum() == 6  # one pixel thick, on the higher id's side


def test_npy_labels_and_refusals(tmp_path):
    lab = _nuclei_labels()
    np.save(tmp_path / "masks.npy", lab)
    assert np.array_equal(read_mask(tmp_path / "masks.npy", lab.shape, "nuclei"), lab)
    np.save(tmp_path / "float.npy", lab.astype(np.float32))
    with pytest.raises(InputError, match="integer label image"):
        read_mask(tmp_path / "float.npy", lab.shape, "nuclei")
    (tmp_path / "img_seg.npy").write_bytes(b"\x93NUMPY fake pickle")
    with pytest.raises(InputError, match="Cellpose") as err:
        read_mask(tmp_path / "img_seg.npy", lab.shape, "nuclei")
    assert "Save masks" in str(err.value)
    with pytest.raises(InputError, match="nuclei or grains"):
        read_mask(tmp_path / "masks.npy", lab.shape, "semantic")
    with pytest.raises(InputError, match="does not exist"):
        read_mask(tmp_path / "none.geojson", lab.shape, "nuclei")


def test_lines_alone_cannot_label_nuclei(tmp_path):
    path = tmp_path / "l.geojson"
    path.write_text(json.dumps({"type": "LineString", "coordinates": [[0, 1], [9, 1]]}))
    with pytest.raises(InputError, match="no nucleus"):
        read_mask(path, (10, 10), "nuclei")
    assert read_mask(path, (10, 10), "grains")[0].all()


@pytest.fixture(scope="module")
def grains_sample(tmp_path_factory):
    from tests.test_cmd_predict_train import grain_strokes

    d = tmp_path_factory.mktemp("gj")
    assert main(["synth", "--kind", "grains", "--out", str(d), "--seed", "1"]) == 0
    tifffile.imwrite(d / "strokes.tif", grain_strokes(tifffile.imread(d / "boundaries.tif")))
    model = d / "rf.safetensors"
    assert main(["train", "--method", "rf", "--task", "grains", "--out", str(model), "--images",
                 str(d / "image.tif"), "--labels", str(d / "strokes.tif")]) == 0  # fmt: skip
    return d, model


def test_grains_geojson_matches_the_grain_map_and_trains_again(grains_sample, tmp_path):
    d, model = grains_sample
    out = tmp_path / "out"
    assert main(["grains", "--model", str(model), "--out", str(out), "--geojson",
                 "--pixel-size", "0.5", "--region", "40:296,20:", str(d / "image.tif")]) == 0  # fmt: skip
    grains = tifffile.imread(out / "image_grains.tif")
    doc = json.loads((out / "image.geojson").read_text())
    assert len(doc["features"]) == grains.max()
    assert doc["microseg"]["model"] == str(model)  # provenance
    first = doc["features"][0]["properties"]
    assert first["classification"]["name"] == "Grain" and "area_um2" in first["measurements"]
    # outlines are in the whole image's pixels: the measured region starts at row 40, col 20
    whole = tifffile.imread(d / "image.tif").shape
    bnd = read_mask(out / "image.geojson", whole, "grains")
    inside = bnd[40:296, 20:]
    assert np.array_equal(inside, (grains == 0).astype(np.uint8))
    assert bnd[:40].all()  # outside the region no grain: boundary
    # a model trains from the GeoJSON as from a label image
    m2 = tmp_path / "again.safetensors"
    assert main(["train", "--method", "rf", "--task", "grains", "--out", str(m2), "--images",
                 str(d / "image.tif"), "--masks", str(out / "image.geojson")]) == 0  # fmt: skip
    assert m2.stat().st_size > 0


def test_nuclei_geojson_of_a_series(tmp_path):
    from tests.nuclei_fixtures import small_series, train_rf_model, write_series

    series = small_series()
    image = write_series(tmp_path, series)
    model = train_rf_model(tmp_path, series)
    out = tmp_path / "out"
    assert main(["nuclei", "--model", str(model), "--out", str(out), "--geojson", str(image)]) == 0
    labels = tifffile.imread(out / f"{image.name.split('.')[0]}_labels.tif")
    doc = json.loads((out / f"{image.name.split('.')[0]}.geojson").read_text())
    per_frame = [len(np.unique(f[f > 0])) for f in labels]
    frames = [ft["properties"]["frame"] for ft in doc["features"]]
    assert [frames.count(t) for t in range(len(labels))] == per_frame
    from microseg.geojson import read_geojson

    back, _, _ = read_geojson(out / f"{image.name.split('.')[0]}.geojson", labels.shape[1:],
                              plane=(2, 0))  # fmt: skip
    assert np.array_equal(back, labels[2])


def test_training_labels_from_outlines():
    from microseg.annotations import training_labels

    lab = _nuclei_labels()
    full = training_labels(lab, "nuclei", 3)
    assert set(np.unique(full)) == {1, 2, 3}  # background, nucleus, border
    assert ((full >= 2) == (lab > 0)).all()
    two = training_labels(lab, "nuclei", 2)
    assert set(np.unique(two)) == {1, 2}  # no border class: borders are nucleus
    partial = training_labels(lab, "nuclei", 3, everywhere=False, ring_px=2)
    assert (partial[lab > 0] > 0).all() and (partial == 0).any()
    ring = (partial == 1).sum()
    assert 0 < ring < (full == 1).sum()
    grains = training_labels(boundary_map(_grain_map(10, 60)), "grains", 2)
    assert set(np.unique(grains)) == {1, 2}


def test_ilastik_hdf5_exports(tmp_path):
    import h5py

    lab = _nuclei_labels()
    tags = json.dumps({"axes": [{"key": "x"}, {"key": "y"}, {"key": "c"}]})
    with h5py.File(tmp_path / "objects.h5", "w") as f:  # ilastik's layout, x before y
        ds = f.create_dataset("exported_data", data=lab.T[..., None])
        ds.attrs["axistags"] = tags
        f.create_dataset("other", data=np.zeros((4, 4), np.uint8))
    assert np.array_equal(read_mask(tmp_path / "objects.h5", lab.shape, "nuclei"), lab)
    bnd = np.zeros((48, 48), np.uint8)
    bnd[20] = 1
    with h5py.File(tmp_path / "seg.h5", "w") as f:  # one array, no axistags: yx
        f.create_dataset("data", data=bnd)
    assert np.array_equal(read_mask(tmp_path / "seg.h5", bnd.shape, "grains"), bnd)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f.create_dataset("a", data=lab)
        f.create_dataset("b", data=lab)
    with pytest.raises(InputError, match="several label arrays"):
        read_mask(tmp_path / "two.h5", lab.shape, "nuclei")
    with h5py.File(tmp_path / "stack.h5", "w") as f:
        f.create_dataset("exported_data", data=np.stack([lab, lab]))
        f["exported_data"].attrs["axistags"] = json.dumps(
            {"axes": [{"key": "z"}, {"key": "y"}, {"key": "x"}]}
        )
    with pytest.raises(InputError, match="2 entries along its 'z' axis"):
        read_mask(tmp_path / "stack.h5", lab.shape, "nuclei")
    (tmp_path / "fake.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not an HDF5 file"):
        read_mask(tmp_path / "fake.h5", lab.shape, "nuclei")


def test_a_boundary_map_array_stays_a_boundary_map(tmp_path):
    bnd = np.zeros((30, 30), np.uint8)
    bnd[:, 15] = 1
    np.save(tmp_path / "b.npy", bnd)
    assert np.array_equal(read_mask(tmp_path / "b.npy", bnd.shape, "grains"), bnd)

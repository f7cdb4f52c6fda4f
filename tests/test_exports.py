"""Exports read back by tifffile, roifile and pandas with the same content."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.draw import disk, polygon2mask

from microseg import __version__
from microseg.errors import InputError
from microseg.exports import (
    provenance,
    write_ctc_tracks,
    write_imagej_rois,
    write_label_stack,
    write_table_csv,
    write_tracks_napari_csv,
    write_tracks_trackmate_csv,
)
from microseg.tracking import read_ctc_lineage, read_ctc_tracks

SHAPE = (40, 50)


def label_stack() -> np.ndarray:
    """(3, Y, X) uint16: two discs per frame, ids 1 and 2, moving right."""
    out = np.zeros((3, *SHAPE), np.uint16)
    for t in range(3):
        out[t][disk((12, 10 + 3 * t), 5, shape=SHAPE)] = 1
        out[t][disk((28, 30), 6, shape=SHAPE)] = 2
    out[2, 2:5, 40:46] = 7  # a rectangle with a gap in the ids
    return out


def tracks_fixture() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Track 1 (3 frames) divides into tracks 2 and 3 at frame 3."""
    links = pd.DataFrame(
        {
            "track_id": [1, 1, 1, 2, 3],
            "frame": [0, 1, 2, 3, 3],
            "label": [1, 1, 1, 1, 2],
            "parent_track_id": [0, 0, 0, 1, 1],
        }
    )
    table = pd.DataFrame(
        {
            "frame": [0, 1, 2, 3, 3],
            "label": [1, 1, 1, 1, 2],
            "y": [10.0, 11.0, 12.0, 8.0, 16.0],
            "x": [20.0, 21.0, 22.0, 22.0, 22.0],
            "area_px": [100.0, 110.0, 120.0, 60.0, 62.0],
            "mean_intensity": [5.0, 6.0, 7.0, 8.0, 9.0],
            "mean_intensity_1": [1.0, 1.0, 1.0, 2.0, 2.0],
        }
    )
    lineage = pd.DataFrame(
        {"track_id": [1, 2, 3], "start": [0, 3, 3], "end": [2, 3, 3], "parent": [0, 1, 1]}
    )
    return links, table, lineage


def test_provenance_records_model_hash(tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"abc")
    rec = provenance(model, {"pixel_size_um": 0.5})
    assert rec["microseg_version"] == __version__
    assert rec["model_sha256"] == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    assert rec["parameters"] == {"pixel_size_um": 0.5}
    assert provenance("builtin:nuclei")["model"] == "builtin:nuclei"


def test_label_stack_imagej(tmp_path):
    labels = label_stack()
    prov = provenance(parameters={"min_area": 10})
    path = write_label_stack(tmp_path / "a_labels.tif", labels, 0.25, prov)
    with tifffile.TiffFile(path) as tif:
        assert tif.is_imagej
        assert np.array_equal(tif.asarray(), labels)
        assert tif.series[0].axes == "TYX"
        ij = tif.imagej_metadata
        assert ij["frames"] == 3 and ij["unit"] == "um"
        info = json.loads(ij["Info"])
        assert info["parameters"] == {"min_area": 10}
        assert info["microseg_version"] == __version__
        num, den = tif.pages[0].tags["XResolution"].value
        assert num / den == pytest.approx(4.0)
    two_d = write_label_stack(tmp_path / "b.tif", labels[0])
    assert np.array_equal(tifffile.imread(two_d), labels[0])


def test_label_stack_ome_and_wide_ids(tmp_path):
    labels = label_stack().astype(np.int32)
    path = write_label_stack(tmp_path / "a.ome.tif", labels, 0.5, {"model": "x"})
    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome
        back = tif.asarray()
        assert back.dtype == np.uint16 and np.array_equal(back, labels)
        assert tif.series[0].axes == "TYX"
        root = ElementTree.fromstring(tif.ome_metadata)
        ns = {"ome": root.tag.split("}")[0][1:]}
        assert float(root.find(".//ome:Pixels", ns).get("PhysicalSizeX")) == 0.5
        assert json.loads(root.find(".//ome:Description", ns).text)["model"] == "x"
    wide = label_stack().astype(np.uint32) * 10000
    p2 = write_label_stack(tmp_path / "wide.tif", wide)
    back = tifffile.imread(p2)
    assert back.dtype == np.uint32 and np.array_equal(back, wide)
    with pytest.raises(InputError):
        write_label_stack(tmp_path / "f.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(InputError):
        write_label_stack(tmp_path / "n.tif", -np.ones((4, 4), np.int16))


def test_table_csv_with_sidecar(tmp_path):
    _, table, _ = tracks_fixture()
    csv, side = write_table_csv(table, tmp_path / "a_objects.csv", {"model_sha256": "ff"})
    assert side.name == "a_objects.json"
    pd.testing.assert_frame_equal(pd.read_csv(csv), table)
    meta = json.loads(side.read_text())
    assert meta["model_sha256"] == "ff" and meta["n_rows"] == 5
    assert meta["microseg_version"] == __version__
    assert meta["columns"] == list(table.columns)


def test_trackmate_csv(tmp_path):
    links, table, _ = tracks_fixture()
    spots_p, edges_p, side = write_tracks_trackmate_csv(
        links, table, tmp_path / "tm.csv", pixel_size_um=0.5, frame_interval=2.0
    )
    spots = pd.read_csv(spots_p)
    for col in ("LABEL", "ID", "TRACK_ID", "QUALITY", "POSITION_X", "POSITION_Y", "POSITION_T"):
        assert col in spots.columns
    for col in ("FRAME", "AREA", "MEAN_INTENSITY_CH1", "MEAN_INTENSITY_CH2", "TREE_ID"):
        assert col in spots.columns
    assert spots["ID"].is_unique
    assert np.allclose(spots["POSITION_X"], table["x"] * 0.5)
    assert np.allclose(spots["POSITION_T"], table["frame"] * 2.0)
    assert np.allclose(spots["AREA"], table["area_px"] * 0.25)
    assert spots["MEAN_INTENSITY_CH2"].tolist() == [1.0, 1.0, 1.0, 2.0, 2.0]
    assert spots["TREE_ID"].tolist() == [1] * 5
    edges = pd.read_csv(edges_p)
    pairs = set(zip(edges["SPOT_SOURCE_ID"], edges["SPOT_TARGET_ID"], strict=True))
    assert pairs == {(0, 1), (1, 2), (2, 3), (2, 4)}  # the mother's last spot has two edges
    assert json.loads(side.read_text())["spatial_units"] == "um"


def test_napari_csv(tmp_path):
    links, table, _ = tracks_fixture()
    csv, graph = write_tracks_napari_csv(links, table, tmp_path / "nap.csv")
    df = pd.read_csv(csv)
    assert list(df.columns) == ["track_id", "t", "y", "x"]
    assert df[["track_id", "t"]].values.tolist() == [[1, 0], [1, 1], [1, 2], [2, 3], [3, 3]]
    assert np.allclose(df["y"], table["y"])
    assert json.loads(graph.read_text()) == {"2": [1], "3": [1]}


def test_imagej_rois(tmp_path):
    from roifile import ROI_TYPE, roiread

    labels = label_stack()
    path = write_imagej_rois(labels, tmp_path / "rois.zip")
    rois = roiread(path)
    assert len(rois) == 7  # 2 + 2 + 3 objects
    names = [r.name for r in rois]
    assert names[:2] == ["F0001-L00001", "F0001-L00002"] and names[-1] == "F0003-L00007"
    assert [r.position for r in rois] == [1, 1, 2, 2, 3, 3, 3]
    assert [r.t_position for r in rois] == [1, 1, 2, 2, 3, 3, 3]
    for roi in rois:
        assert roi.roitype == ROI_TYPE.POLYGON
        t, lab = int(roi.name[1:5]) - 1, int(roi.name[-5:])
        xy = roi.coordinates()
        # ImageJ pixel-edge coordinates -> pixel-centre rows/cols, then rasterise
        mask = polygon2mask(SHAPE, np.stack([xy[:, 1] - 0.5, xy[:, 0] - 0.5], axis=1))
        truth = labels[t] == lab
        iou = (mask & truth).sum() / (mask | truth).sum()
        assert iou > 0.8, (roi.name, iou)
    single = roiread(write_imagej_rois(labels[0], tmp_path / "one.zip"))
    assert len(single) == 2 and single[0].position == 0
    empty = write_imagej_rois(np.zeros(SHAPE, np.uint16), tmp_path / "none.zip")
    assert empty.is_file()


def test_ctc_tracks_round_trip(tmp_path):
    _, _, lineage = tracks_fixture()
    path = write_ctc_tracks(lineage, tmp_path / "TRA" / "man_track.txt")
    assert path.read_text().splitlines() == ["1 0 2 0", "2 3 3 1", "3 3 3 1"]
    pd.testing.assert_frame_equal(read_ctc_lineage(path), lineage)
    tifffile.imwrite(tmp_path / "TRA" / "man_track000.tif", label_stack()[0])
    lin, load = read_ctc_tracks(tmp_path)  # the folder holding TRA
    assert lin.equals(read_ctc_lineage(path))
    assert np.array_equal(load(0), label_stack()[0])
    with pytest.raises(InputError):
        load(5)
    with pytest.raises(InputError):
        read_ctc_tracks(tmp_path / "nowhere")

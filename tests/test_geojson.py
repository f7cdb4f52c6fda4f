"""GeoJSON objects as QuPath reads them: exact round trips label image → polygons →
label image, holes and pieces, measurements, planes, offsets, and hostile files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from skimage.measure import label as connected
from skimage.segmentation import find_boundaries, watershed

from microseg.errors import InputError
from microseg.geojson import features_from_labels, read_geojson, write_geojson


def _grain_map(n: int = 60, size: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    markers = np.zeros((size, size), int)
    pts = rng.integers(0, size, (n, 2))
    markers[pts[:, 0], pts[:, 1]] = np.arange(1, n + 1)
    lab = watershed(np.zeros((size, size)), markers)
    lab[find_boundaries(lab, mode="inner")] = 0
    return lab.astype(np.uint16)


def _round_trip(lab: np.ndarray) -> np.ndarray:
    feats = list(features_from_labels(lab, class_name="Grain", color=(1, 2, 3)))
    back, _, _ = read_geojson(json.dumps(feats).encode(), lab.shape)
    return back


def test_a_grain_map_comes_back_pixel_for_pixel():
    lab = _grain_map()
    back = _round_trip(lab)
    # ids follow the features' order, which is the label order: identical images
    assert np.array_equal(back, lab)


def test_holes_and_diagonal_pieces_come_back():
    lab = np.zeros((30, 30), np.uint16)
    lab[2:12, 2:12] = 1
    lab[5:8, 5:8] = 0  # a hole
    lab[20, 20] = lab[21, 21] = 2  # two pixels touching at a corner only
    feats = list(features_from_labels(lab, class_name="Nucleus", color=(255, 0, 0)))
    kinds = {f["properties"]["label"]: f["geometry"]["type"] for f in feats}
    assert kinds == {1: "Polygon", 2: "MultiPolygon"}
    assert len(feats[0]["geometry"]["coordinates"]) == 2  # exterior + hole
    back, _, _ = read_geojson(
        json.dumps({"type": "FeatureCollection", "features": feats}).encode(), (30, 30)
    )
    assert np.array_equal(back, lab)


def test_random_sparse_objects_come_back():
    rng = np.random.default_rng(3)
    lab = connected(rng.random((120, 120)) > 0.9, connectivity=2).astype(np.uint32)
    assert np.array_equal(_round_trip(lab), lab)


def test_coordinates_are_pixel_corners():
    lab = np.zeros((10, 10), np.uint8)
    lab[4, 6] = 1
    (feat,) = features_from_labels(lab, class_name="N", color=(0, 0, 0))
    xy = np.asarray(feat["geometry"]["coordinates"][0])
    # pixel (row 4, col 6) covers x 6..7, y 4..5 in QuPath's convention
    assert xy[:, 0].min() == 6 and xy[:, 0].max() == 7
    assert xy[:, 1].min() == 4 and xy[:, 1].max() == 5


def test_properties_are_what_qupath_reads():
    lab = np.zeros((20, 20), np.uint16)
    lab[2:6, 2:6], lab[10:15, 10:15] = 1, 2
    table = pd.DataFrame(
        {"label": [1, 2], "area_px": [16.0, 25.0], "area_um2": [np.nan, 6.25],
         "touches_border": [False, True], "note": ["a", "b"]}
    )  # fmt: skip
    feats = list(features_from_labels(lab, class_name="Grain", color=(40, 160, 220), table=table))
    props = [f["properties"] for f in feats]
    assert [p["label"] for p in props] == [1, 2]
    assert props[0]["objectType"] == "detection"
    assert props[0]["classification"] == {"name": "Grain", "color": [40, 160, 220]}
    assert props[0]["measurements"] == {
        "area_px": 16.0,
        "touches_border": 0.0,
    }  # NaN, text left out
    assert props[1]["measurements"]["area_um2"] == 6.25
    assert len({f["id"] for f in feats}) == 2
    again = list(features_from_labels(lab, class_name="Grain", color=(40, 160, 220), table=table))
    assert [f["id"] for f in again] == [f["id"] for f in feats]  # reproducible UUIDs


def test_a_stack_writes_planes_and_reads_one(tmp_path):
    stack = np.zeros((3, 16, 16), np.uint16)
    stack[0, 2:5, 2:5] = 1
    stack[2, 8:12, 8:12] = 1
    stack[2, 1:3, 10:14] = 2
    table = pd.DataFrame({"frame": [0, 2, 2], "label": [1, 1, 2], "area_px": [9, 16, 8]})
    path = write_geojson(tmp_path / "s.geojson", stack, class_name="Nucleus", color=(9, 9, 9),
                         table=table, axes="TYX", provenance={"model": "m"})  # fmt: skip
    doc = json.loads(path.read_text())
    assert doc["microseg"] == {"model": "m"}
    frames = [f["properties"]["frame"] for f in doc["features"]]
    assert frames == [0, 2, 2]
    assert doc["features"][1]["geometry"]["plane"] == {"c": -1, "z": 0, "t": 2}
    assert doc["features"][2]["properties"]["measurements"]["area_px"] == 8
    for t in range(3):
        back, _, _ = read_geojson(path, (16, 16), plane=(t, 0)) if stack[t].any() else (None,) * 3
        if back is not None:
            assert np.array_equal(back, stack[t])


def test_offset_places_a_region_in_the_whole_image(tmp_path):
    lab = np.zeros((10, 10), np.uint16)
    lab[2:5, 3:6] = 1
    path = write_geojson(tmp_path / "r.geojson", lab, class_name="Grain", color=(1, 1, 1),
                         offset=(100, 50))  # fmt: skip
    back, _, _ = read_geojson(path, (120, 80))
    assert np.array_equal(np.argwhere(back), np.argwhere(lab) + [100, 50])


def test_qupath_shapes_read(tmp_path):
    """A QuPath export without FEATURE_COLLECTION (a list), a cell with its nucleus, an
    unclassified polygon and a traced line."""
    cell = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates":
            [[[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]]]},
            "properties": {"objectType": "cell", "classification": {"name": "Tumor"},
                           "nucleusGeometry": {"type": "Polygon", "coordinates":
                                               [[[2, 2], [5, 2], [5, 5], [2, 5], [2, 2]]]}}}  # fmt: skip
    plain = {"type": "Feature", "geometry": {"type": "Polygon", "coordinates":
             [[[12, 12], [15, 12], [15, 15], [12, 15], [12, 12]]]}, "properties": {}}  # fmt: skip
    line = {
        "type": "Feature",
        "geometry": {"type": "LineString", "coordinates": [[0, 18.5], [20, 18.5]]},
    }
    labels, lines, classes = read_geojson(json.dumps([cell, plain, line]).encode(), (20, 20))
    assert classes == ["Tumor", ""]
    assert (labels == 1).sum() == 9 and labels[3, 3] == 1  # the nucleus, not the cell
    assert (labels == 2).sum() == 9
    assert lines[18].all() and lines.sum() == 20


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "empty"),
        (b"\xff\xfe\x00", "UTF-8"),
        (b"{not json", "not valid GeoJSON"),
        (b"[" * 50_000 + b"]" * 50_000, "GeoJSON"),
        (b'{"type": "Topology"}', "not GeoJSON"),
        (b'{"type": "FeatureCollection", "features": {}}', "not a list"),
        (
            b'{"type": "Polygon", "coordinates": [[[0, 0], [Infinity, 1], [1, 1], [0, 0]]]}',
            "Infinity",
        ),
        (b'{"type": "Polygon", "coordinates": [[[0, 0], [1e400, 1], [1, 1], [0, 0]]]}', "finite"),
        (b'{"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}', "not a list of x, y"),
        (
            b'{"type": "Polygon", "coordinates": [[[0, 0], [{"a": 1}, 1], [1, 1], [0, 0]]]}',
            "not numbers",
        ),
        (b'{"type": "MultiPoint", "coordinates": [[1, 1]]}', "no polygon"),
        (
            b'{"type": "Polygon", "coordinates": [[[-50, -50], [-40, -50], [-40, -40], [-50, -50]]]}',
            "no object inside",
        ),
    ],
)
def test_bad_geojson_is_one_sentence(data, says):
    with pytest.raises(InputError) as err:
        read_geojson(data, (32, 32), name="a.geojson")
    assert says in str(err.value) and "a.geojson" in str(err.value)


def test_too_many_vertices_refused(monkeypatch):
    import microseg.geojson as gj

    monkeypatch.setattr(gj, "MAX_VERTICES", 10)
    ring = [[i, 0] for i in range(12)] + [[0, 5], [0, 0]]
    with pytest.raises(InputError, match="more than 10 vertices"):
        read_geojson(json.dumps({"type": "Polygon", "coordinates": [ring]}).encode(), (32, 32))


def test_objects_of_a_real_grain_map_keep_their_area():
    """The outlines cut each corner by half a pixel's diagonal, nothing more."""
    from skimage.measure import regionprops

    lab = _grain_map(20, 120, seed=1)
    feats = {
        f["properties"]["label"]: f
        for f in features_from_labels(lab, class_name="G", color=(0, 0, 0))
    }
    for rp in regionprops(lab):
        ring = np.asarray(feats[rp.label]["geometry"]["coordinates"][0])
        x, y = ring[:, 0], ring[:, 1]
        area = 0.5 * abs(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))
        assert rp.area - 0.5 * len(ring) <= area <= rp.area
    assert ndi.label(lab > 0)[1] >= 1

"""Tracking: links, divisions, relabelling, per-track values and CTC link recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from skimage.draw import disk
from skimage.measure import regionprops_table

from microseg.errors import InputError
from microseg.tracking import (
    LinkScore,
    Tracks,
    link_recovery,
    per_track_measurements,
    read_ctc_tracks,
    track_objects,
)

SHAPE = (96, 128)
N_FRAMES = 6
DIVISION_FRAME = 3


def _truth() -> list[dict[str, tuple[float, float]]]:
    """Per frame: ground-truth track name -> disc centre.

    A moves 3 px/frame right, B 3 px/frame down, M (mother) stays until frame 2 and
    divides into D1/D2 at frame 3, which then move apart 3 px/frame.
    """
    frames = []
    for t in range(N_FRAMES):
        objs = {"A": (15.0, 12.0 + 3 * t), "B": (20.0 + 3 * t, 100.0)}
        if t < DIVISION_FRAME:
            objs["M"] = (65.0, 60.0)
        else:
            k = t - DIVISION_FRAME
            objs["D1"] = (65.0, 52.0 - 3 * k)
            objs["D2"] = (65.0, 68.0 + 3 * k)
        frames.append(objs)
    return frames


GT_TRACK = {"A": 1, "B": 2, "M": 3, "D1": 4, "D2": 5}
GT_PARENT = {"D1": "M", "D2": "M"}


def make_series(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[dict[str, int]]]:
    """Labels (ids shuffled per frame), GT track-id stack and name -> label per frame."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((N_FRAMES, *SHAPE), np.uint16)
    gt = np.zeros_like(labels)
    names = []
    for t, objs in enumerate(_truth()):
        ids = rng.permutation(len(objs)) + 1 + 10 * t  # ids unrelated to tracks
        name_to_label = {}
        for (name, (cy, cx)), lab in zip(objs.items(), ids, strict=True):
            rr, cc = disk((cy, cx), 6 if name in ("A", "B", "M") else 4.5, shape=SHAPE)
            labels[t, rr, cc] = lab
            gt[t, rr, cc] = GT_TRACK[name]
            name_to_label[name] = int(lab)
        names.append(name_to_label)
    return labels, gt, names


def table_of(labels: np.ndarray) -> pd.DataFrame:
    rows = []
    for t, frame in enumerate(labels):
        d = pd.DataFrame(regionprops_table(frame, properties=("label", "centroid", "area")))
        d = d.rename(columns={"centroid-0": "y", "centroid-1": "x", "area": "area_px"})
        d.insert(0, "frame", t)
        d["mean_intensity"] = 100.0 + t
        rows.append(d)
    return pd.concat(rows, ignore_index=True)


def gt_lineage() -> pd.DataFrame:
    rows = []
    for name, tid in GT_TRACK.items():
        frames = [t for t, objs in enumerate(_truth()) if name in objs]
        parent = GT_TRACK[GT_PARENT[name]] if name in GT_PARENT else 0
        rows.append((tid, min(frames), max(frames), parent))
    return pd.DataFrame(rows, columns=["track_id", "start", "end", "parent"])


@pytest.fixture(scope="module")
def tracked():
    labels, gt, names = make_series()
    table = table_of(labels)
    return labels, gt, names, table, track_objects(table)


def _track_of(tracks: Tracks, t: int, label: int) -> int:
    row = tracks.links[(tracks.links["frame"] == t) & (tracks.links["label"] == label)]
    assert len(row) == 1
    return int(row["track_id"].iloc[0])


def test_links_and_division_recovered(tracked):
    labels, _, names, _, tracks = tracked
    assert tracks.n_tracks == 5
    by_name: dict[str, set[int]] = {}
    for t, name_to_label in enumerate(names):
        for name, lab in name_to_label.items():
            by_name.setdefault(name, set()).add(_track_of(tracks, t, lab))
    assert all(len(v) == 1 for v in by_name.values()), by_name
    tid = {k: v.pop() for k, v in by_name.items()}
    assert len(set(tid.values())) == 5
    div = tracks.divisions
    assert len(div) == 2
    assert set(div["child_track_id"]) == {tid["D1"], tid["D2"]}
    assert set(div["parent_track_id"]) == {tid["M"]}
    assert set(div["frame"]) == {DIVISION_FRAME}
    lin = tracks.lineage.set_index("track_id")
    assert (lin.loc[tid["M"], "start"], lin.loc[tid["M"], "end"]) == (0, DIVISION_FRAME - 1)
    assert lin.loc[tid["A"], "parent"] == 0 and lin.loc[tid["A"], "end"] == N_FRAMES - 1
    links = tracks.links.set_index("track_id")
    assert (links.loc[tid["D1"], "parent_track_id"] == tid["M"]).all()
    # cutoff derived from size: mean equivalent diameter of the discs
    assert 8 < tracks.params["max_distance_px"] < 13


def test_no_division_when_disabled(tracked):
    *_, table, _ = tracked
    tracks = track_objects(table, divisions=False)
    assert tracks.divisions.empty
    assert (tracks.lineage["parent"] == 0).all()


def test_relabel_gives_track_ids(tracked):
    labels, gt, names, _, tracks = tracked
    rel = tracks.relabel(labels)
    assert rel.shape == labels.shape and rel.dtype == np.uint16
    assert np.array_equal(rel > 0, labels > 0)
    for t, name_to_label in enumerate(names):
        for lab in name_to_label.values():
            vals = np.unique(rel[t][labels[t] == lab])
            assert vals.tolist() == [_track_of(tracks, t, lab)]
    # one-to-one with the ground-truth tracks over the whole stack
    pairs = np.unique(np.stack([gt[gt > 0], rel[gt > 0]]), axis=1)
    assert pairs.shape[1] == 5
    # an offset window and a single frame
    assert np.array_equal(tracks.relabel(labels[2:4], first_frame=2), rel[2:4])
    assert np.array_equal(tracks.relabel(labels[4], first_frame=4), rel[4])


def test_per_track_measurements(tracked):
    labels, _, names, table, tracks = tracked
    per = per_track_measurements(table, tracks).set_index("track_id")
    a = _track_of(tracks, 0, names[0]["A"])
    m = _track_of(tracks, 0, names[0]["M"])
    d1 = _track_of(tracks, DIVISION_FRAME, names[DIVISION_FRAME]["D1"])
    assert per.loc[a, "n_frames"] == N_FRAMES
    assert per.loc[a, "displacement_px"] == pytest.approx(3.0 * (N_FRAMES - 1), abs=1e-6)
    assert per.loc[a, "speed_px_per_frame"] == pytest.approx(3.0, abs=1e-6)
    area_a = table[table["label"].isin([n["A"] for n in names])]["area_px"].mean()
    assert per.loc[a, "mean_area_px"] == pytest.approx(area_a)
    assert per.loc[a, "mean_intensity"] == pytest.approx(100.0 + np.mean(range(N_FRAMES)))
    assert per.loc[m, "n_frames"] == DIVISION_FRAME
    assert per.loc[m, "displacement_px"] == pytest.approx(0.0, abs=1e-6)
    assert per.loc[d1, "parent_track_id"] == m
    assert per.loc[d1, "start"] == DIVISION_FRAME


def test_gap_closing(tracked):
    labels, _, names, table, _ = tracked
    gone = (table["frame"] == 3) & (table["label"] == names[3]["A"])
    gap_table = table[~gone]
    bridged = track_objects(gap_table, gap_frames=1)
    a0 = _track_of(bridged, 0, names[0]["A"])
    assert _track_of(bridged, 4, names[4]["A"]) == a0
    assert bridged.divisions.shape[0] == 2
    broken = track_objects(gap_table, gap_frames=0)
    assert _track_of(broken, 4, names[4]["A"]) != _track_of(broken, 0, names[0]["A"])


def test_explicit_distance_too_small_breaks_links(tracked):
    *_, table, _ = tracked
    tracks = track_objects(table, max_distance_px=2.0, gap_frames=0, divisions=False)
    # 3 px moves exceed the 2 px cutoff: only the resting mother keeps her links
    assert tracks.n_tracks == len(table) - (DIVISION_FRAME - 1)


def test_bad_table_is_refused():
    with pytest.raises(InputError):
        track_objects(pd.DataFrame({"frame": [0], "label": [1], "y": [1.0]}))
    dup = pd.DataFrame({"frame": [0, 0], "label": [1, 1], "y": [1.0, 2.0], "x": [1.0, 2.0]})
    with pytest.raises(InputError):
        track_objects(dup)
    empty = track_objects(pd.DataFrame({"frame": [], "label": [], "y": [], "x": []}))
    assert empty.n_tracks == 0 and empty.links.empty


def test_link_recovery_perfect_and_broken(tracked):
    labels, gt, _, _, tracks = tracked
    rel = tracks.relabel(labels)
    # links: A 5, B 5, M 2, D1 2, D2 2 continuations + 2 division links
    score = link_recovery(gt, gt_lineage(), rel, tracks.lineage)
    assert isinstance(score, LinkScore)
    assert score == LinkScore(18, 18, 1.0, 2, 2)
    # swap two tracks in the last frame: A and B lose one link each
    swapped = rel.copy()
    ta, tb = np.unique(rel[-1][gt[-1] == 1])[0], np.unique(rel[-1][gt[-1] == 2])[0]
    swapped[-1][rel[-1] == ta], swapped[-1][rel[-1] == tb] = tb, ta
    assert link_recovery(gt, gt_lineage(), swapped, tracks.lineage).n_recovered == 16
    # a tracking without divisions keeps continuations but no mother-daughter link
    plain = track_objects(table_of(labels), divisions=False)
    s = link_recovery(gt, gt_lineage(), plain.relabel(labels), plain.lineage)
    assert (s.n_recovered, s.division_links, s.division_recovered) == (16, 2, 0)


def test_link_recovery_needs_half_marker_overlap():
    markers = np.zeros((2, 10, 10), np.uint16)
    markers[:, 2:6, 2:6] = 1
    pred = np.zeros_like(markers)
    pred[0, 2:6, 2:6] = 7
    pred[1, 2:4, 2:5] = 7  # 6 of 16 marker pixels: no match
    lin = pd.DataFrame({"track_id": [1], "start": [0], "end": [1], "parent": [0]})
    plin = pd.DataFrame({"track_id": [7], "start": [0], "end": [1], "parent": [0]})
    assert link_recovery(markers, lin, pred, plin).n_recovered == 0
    pred[1, 2:6, 2:5] = 7  # 12 of 16
    assert link_recovery(markers, lin, pred, plin) == LinkScore(1, 1, 1.0, 0, 0)


@pytest.mark.data
def test_sim_plus_link_recovery(shared_data):
    import tifffile

    gt_dir = shared_data / "timelapse" / "ctc_sim_plus_01" / "01_GT"
    lineage, load_markers = read_ctc_tracks(gt_dir / "TRA")
    first, last = 8, 12  # five frames holding three divisions
    segs = np.stack(
        [tifffile.imread(gt_dir / "SEG" / f"man_seg{t:03d}.tif") for t in range(first, last + 1)]
    )
    table = table_of(segs)
    table["frame"] += first
    tracks = track_objects(table)
    rel = tracks.relabel(segs, first_frame=first)
    markers = np.stack([load_markers(t) for t in range(first, last + 1)])
    score = link_recovery(markers, lineage, rel, tracks.lineage, first_frame=first)
    print(f"SIM+ frames {first}-{last}: {score}")
    assert score.n_gt_links > 100
    assert score.fraction >= 0.9
    assert score.division_links >= 4
    assert score.division_recovered >= 0.9 * score.division_links

"""Tracking: link instance labels across frames, with gap closing and divisions.

Linking uses laptrack (Jaqaman-style linear assignment: frame-to-frame links,
then gap closing and splitting between track segments). Distance cutoffs are
derived from the objects' size unless given. Link recovery against Cell
Tracking Challenge ground truth (``man_track.txt`` plus ``man_trackTTT.tif``
markers) measures how many true links a tracking keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.sparse.csgraph import connected_components

from microseg.errors import InputError

LINK_COLUMNS = ["track_id", "frame", "label", "parent_track_id"]
LINEAGE_COLUMNS = ["track_id", "start", "end", "parent"]


def _empty_links() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in LINK_COLUMNS})


def _empty_lineage() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=np.int64) for c in LINEAGE_COLUMNS})


@dataclass
class Tracks:
    """Objects linked over time.

    Attributes
    ----------
    links : DataFrame
        One row per object: ``track_id`` (1..N), ``frame``, ``label`` (its id in that
        frame's label image) and ``parent_track_id`` (0 = none).
    lineage : DataFrame
        One row per track, Cell Tracking Challenge style: ``track_id``, ``start``,
        ``end`` (first and last frame) and ``parent`` (0 = none).
    params : dict
        The cutoffs used (for provenance).
    """

    links: pd.DataFrame
    lineage: pd.DataFrame
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tracks(self) -> int:
        """Number of tracks."""
        return int(len(self.lineage))

    @property
    def divisions(self) -> pd.DataFrame:
        """``parent_track_id, child_track_id, frame`` (the daughter's first frame)."""
        kids = self.lineage[self.lineage["parent"] > 0]
        return pd.DataFrame(
            {
                "parent_track_id": kids["parent"].to_numpy(np.int64),
                "child_track_id": kids["track_id"].to_numpy(np.int64),
                "frame": kids["start"].to_numpy(np.int64),
            }
        )

    def relabel(self, labels_stack: np.ndarray, first_frame: int = 0) -> np.ndarray:
        """Replace each object's id by its track id.

        Parameters
        ----------
        labels_stack : ndarray
            ``(T, Y, X)`` instance labels (or one ``(Y, X)`` frame); index ``i`` holds
            frame ``first_frame + i``.
        first_frame : int
            Frame number of ``labels_stack[0]``.

        Returns
        -------
        ndarray
            Same shape, ``label == track_id``; objects without a track become 0.
            uint16, or uint32 when there are more than 65535 tracks.
        """
        stack = np.asarray(labels_stack)
        single = stack.ndim == 2
        if single:
            stack = stack[None]
        if stack.ndim != 3:
            raise InputError(f"Expected a (T, Y, X) label stack, got shape {stack.shape}.")
        top = int(self.links["track_id"].max()) if len(self.links) else 0
        dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
        out = np.zeros(stack.shape, dtype)
        by_frame = {
            int(f): g for f, g in self.links.groupby("frame", sort=False)[["label", "track_id"]]
        }
        for i in range(stack.shape[0]):
            rows = by_frame.get(first_frame + i)
            if rows is None:
                continue
            labels = rows["label"].to_numpy(np.int64)
            size = max(int(stack[i].max()), int(labels.max())) + 1
            lut = np.zeros(size, dtype)
            lut[labels] = rows["track_id"].to_numpy()
            out[i] = lut[stack[i]]
        return out[0] if single else out


def _default_distance(table: pd.DataFrame) -> float:
    """Mean equivalent diameter, else the median nearest-neighbour distance."""
    if "area_px" in table.columns and table["area_px"].notna().any():
        diam = 2.0 * np.sqrt(table["area_px"].to_numpy(np.float64) / np.pi)
        return float(np.nanmean(diam))
    from scipy.spatial import cKDTree

    nn = []
    for _, g in table.groupby("frame"):
        if len(g) > 1:
            d, _ = cKDTree(g[["y", "x"]].to_numpy()).query(g[["y", "x"]].to_numpy(), k=2)
            nn.append(d[:, 1])
    if nn:
        return float(np.median(np.concatenate(nn)))
    return 10.0


def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("frame", "label", "y", "x") if c not in table.columns]
    if missing:
        raise InputError(f"The object table lacks the column(s) {', '.join(missing)}.")
    t = table[np.isfinite(table["y"].to_numpy(float)) & np.isfinite(table["x"].to_numpy(float))]
    if t.duplicated(["frame", "label"]).any():
        raise InputError("The object table lists the same label twice in one frame.")
    return t.sort_values(["frame", "label"], kind="stable").reset_index(drop=True)


def track_objects(
    table: pd.DataFrame,
    max_distance_px: float | None = None,
    gap_frames: int = 1,
    divisions: bool = True,
    division_distance_px: float | None = None,
) -> Tracks:
    """Link objects across frames into tracks, with gap closing and divisions.

    Parameters
    ----------
    table : DataFrame
        One row per object: ``frame``, ``label``, centroid ``y``, ``x`` (pixels) and
        optionally ``area_px``.
    max_distance_px : float or None
        Largest displacement between linked objects; ``None`` uses the mean
        equivalent diameter of the objects (or the median nearest-neighbour distance
        without ``area_px``).
    gap_frames : int
        Missing frames a track may bridge (0 = no gap closing).
    divisions : bool
        Detect divisions (a track ending in two daughter tracks).
    division_distance_px : float or None
        Largest distance from a mother's last position to a daughter's first; default
        ``1.5 * max_distance_px`` (daughters separate by about a diameter and keep
        moving).

    Returns
    -------
    Tracks
        Links, lineage and the parameters used.
    """
    from laptrack import LapTrack

    t = _check_table(table)
    dist = float(max_distance_px) if max_distance_px else _default_distance(t)
    div_dist = float(division_distance_px) if division_distance_px else 1.5 * dist
    if dist <= 0 or div_dist <= 0:
        raise InputError("The tracking distance must be a positive number of pixels.")
    params = {
        "max_distance_px": dist,
        "gap_frames": int(gap_frames),
        "divisions": bool(divisions),
        "division_distance_px": div_dist if divisions else None,
        "linker": "laptrack",
    }
    if t.empty:
        return Tracks(_empty_links(), _empty_lineage(), params)

    frames = t["frame"].to_numpy(np.int64)
    f0 = int(frames.min())
    n_frames = int(frames.max()) - f0 + 1
    yx = t[["y", "x"]].to_numpy(np.float64)
    starts = np.searchsorted(frames, np.arange(f0, f0 + n_frames + 1))
    coords = [yx[starts[i] : starts[i + 1]] for i in range(n_frames)]
    coords = [c if len(c) else np.zeros((0, 2)) for c in coords]

    n = len(t)
    src: list[int] = []
    dst: list[int] = []
    if n_frames > 1:
        lt = LapTrack(
            metric="sqeuclidean",
            cutoff=dist**2,
            gap_closing_metric="sqeuclidean",
            gap_closing_cutoff=dist**2 if gap_frames > 0 else False,
            gap_closing_max_frame_count=max(1, int(gap_frames) + 1),
            splitting_metric="sqeuclidean",
            splitting_cutoff=div_dist**2 if divisions else False,
            merging_cutoff=False,
            # accept any candidate inside its cutoff (the assignment settles conflicts);
            # costs estimated from candidate percentiles are unstable with few objects
            segment_start_cost=1.05 * max(dist, div_dist) ** 2,
            segment_end_cost=1.05 * max(dist, div_dist) ** 2,
            no_splitting_cost=1.05 * div_dist**2,
            no_merging_cost=1.05 * div_dist**2,
        )
        tree = lt.predict(coords)
        for (fa, ia), (fb, ib) in tree.edges():
            src.append(int(starts[fa] + ia))
            dst.append(int(starts[fb] + ib))
    src_a = np.asarray(src, np.int64)
    dst_a = np.asarray(dst, np.int64)
    # A node with two successors is a division: its out-edges separate the tracks.
    out_deg = np.bincount(src_a, minlength=n)
    in_deg = np.bincount(dst_a, minlength=n)
    keep = (out_deg[src_a] <= 1) & (in_deg[dst_a] <= 1)
    graph = sparse.coo_matrix((np.ones(int(keep.sum())), (src_a[keep], dst_a[keep])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)

    # Track ids 1..N ordered by first frame, then label.
    comp_start = np.full(comp.max() + 1, np.iinfo(np.int64).max)
    np.minimum.at(comp_start, comp, np.arange(n))  # rows are sorted by frame, label
    order = np.argsort(comp_start, kind="stable")
    track_of_comp = np.empty_like(order)
    track_of_comp[order] = np.arange(1, len(order) + 1)
    track = track_of_comp[comp]

    parent = np.zeros(len(order) + 1, np.int64)
    split = (out_deg[src_a] > 1) & (in_deg[dst_a] <= 1)
    parent[track[dst_a[split]]] = track[src_a[split]]

    links = pd.DataFrame(
        {
            "track_id": track.astype(np.int64),
            "frame": frames,
            "label": t["label"].to_numpy(np.int64),
        }
    )
    links["parent_track_id"] = parent[links["track_id"].to_numpy()]
    links = links.sort_values(["track_id", "frame"], kind="stable").reset_index(drop=True)
    g = links.groupby("track_id", sort=True)["frame"]
    lineage = pd.DataFrame(
        {
            "track_id": g.min().index.to_numpy(np.int64),
            "start": g.min().to_numpy(np.int64),
            "end": g.max().to_numpy(np.int64),
        }
    )
    lineage["parent"] = parent[lineage["track_id"].to_numpy()]
    return Tracks(links, lineage, params)


def per_track_measurements(table: pd.DataFrame, tracks: Tracks) -> pd.DataFrame:
    """Summarise every track from the per-object table.

    Parameters
    ----------
    table : DataFrame
        Per-object table with ``frame``, ``label``, ``y``, ``x`` and optionally
        ``area_px``, ``area_um2``, ``mean_intensity``.
    tracks : Tracks
        Result of :func:`track_objects` on that table.

    Returns
    -------
    DataFrame
        One row per track: ``track_id, parent_track_id, n_frames, start, end``,
        ``mean_area_px`` / ``mean_area_um2`` / ``mean_intensity`` (when measured),
        ``displacement_px`` (first to last centroid), ``path_length_px`` and
        ``speed_px_per_frame`` (path length over elapsed frames; NaN for one frame).
    """
    cols = ["frame", "label", "y", "x"] + [
        c for c in ("area_px", "area_um2", "mean_intensity") if c in table.columns
    ]
    m = tracks.links.merge(table[cols], on=["frame", "label"], how="left")
    m = m.sort_values(["track_id", "frame"], kind="stable").reset_index(drop=True)
    same = m["track_id"].to_numpy()[1:] == m["track_id"].to_numpy()[:-1]
    step = np.hypot(np.diff(m["y"].to_numpy(float)), np.diff(m["x"].to_numpy(float)))
    m["step"] = np.concatenate([[0.0], np.where(same, step, 0.0)])
    g = m.groupby("track_id", sort=True)
    out = pd.DataFrame(
        {
            "track_id": g.size().index.to_numpy(np.int64),
            "parent_track_id": g["parent_track_id"].first().to_numpy(np.int64),
            "n_frames": g.size().to_numpy(np.int64),
            "start": g["frame"].min().to_numpy(np.int64),
            "end": g["frame"].max().to_numpy(np.int64),
        }
    )
    for c in ("area_px", "area_um2", "mean_intensity"):
        if c in m.columns:
            name = c if c == "mean_intensity" else f"mean_{c}"
            out[name] = g[c].mean().to_numpy(float)
    first, last = g[["y", "x"]].first(), g[["y", "x"]].last()
    out["displacement_px"] = np.hypot(
        (last["y"] - first["y"]).to_numpy(float), (last["x"] - first["x"]).to_numpy(float)
    )
    out["path_length_px"] = g["step"].sum().to_numpy(float)
    elapsed = (out["end"] - out["start"]).to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["speed_px_per_frame"] = np.where(elapsed > 0, out["path_length_px"] / elapsed, np.nan)
    return out


# ------------------------------------------------------------------ CTC ground truth


class LinkScore(NamedTuple):
    """Ground-truth links kept by a tracking.

    ``fraction`` = ``n_recovered / n_gt_links`` (all links, divisions included);
    ``division_links`` / ``division_recovered`` count mother-to-daughter links only.
    """

    n_gt_links: int
    n_recovered: int
    fraction: float
    division_links: int
    division_recovered: int


def read_ctc_lineage(path: str | Path) -> pd.DataFrame:
    """Read a ``man_track.txt`` / ``res_track.txt`` file (``L B E P`` per line)."""
    path = Path(path)
    try:
        arr = np.loadtxt(path, dtype=np.int64, ndmin=2)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path.name} is not a readable 'L B E P' track file.") from exc
    if arr.size and arr.shape[1] != 4:
        raise InputError(f"{path.name} must have four integer columns (L B E P).")
    arr = arr.reshape(-1, 4)
    return pd.DataFrame(arr, columns=LINEAGE_COLUMNS)


def read_ctc_tracks(directory: str | Path) -> tuple[pd.DataFrame, Callable[[int], np.ndarray]]:
    """Read Cell Tracking Challenge TRA ground truth.

    Parameters
    ----------
    directory : str or Path
        The ``TRA`` folder (``man_track.txt`` and ``man_trackTTT.tif``), or the
        ``XX_GT`` folder holding it.

    Returns
    -------
    (DataFrame, callable)
        Lineage (``track_id, start, end, parent``) and ``load(t) -> (Y, X)`` marker
        image of frame ``t`` (marker value = track id).
    """
    d = Path(directory)
    if not (d / "man_track.txt").is_file() and (d / "TRA" / "man_track.txt").is_file():
        d = d / "TRA"
    if not (d / "man_track.txt").is_file():
        raise InputError(f"{directory} holds no man_track.txt.")
    lineage = read_ctc_lineage(d / "man_track.txt")

    def load(t: int) -> np.ndarray:
        import tifffile

        for name in (f"man_track{t:03d}.tif", f"man_track{t:04d}.tif"):
            if (d / name).is_file():
                return np.asarray(tifffile.imread(d / name))
        raise InputError(f"{d} has no marker image for frame {t}.")

    return lineage, load


def _match_markers(markers: np.ndarray, pred: np.ndarray) -> dict[int, int]:
    """Marker id -> predicted id covering more than half of the marker (CTC TRA rule)."""
    m = markers.ravel().astype(np.int64)
    sel = m > 0
    m = m[sel]
    if m.size == 0:
        return {}
    p = pred.ravel()[sel].astype(np.int64)
    size = np.bincount(m)
    key = m * (int(p.max()) + 1) + p
    uk, cnt = np.unique(key, return_counts=True)
    mk, pk = uk // (int(p.max()) + 1), uk % (int(p.max()) + 1)
    ok = (pk > 0) & (2 * cnt > size[mk])
    return dict(zip(mk[ok].tolist(), pk[ok].tolist(), strict=True))


def _parents(lineage: pd.DataFrame) -> dict[int, int]:
    col = "parent" if "parent" in lineage.columns else "parent_track_id"
    return dict(
        zip(
            lineage["track_id"].astype(int).tolist(),
            lineage[col].astype(int).tolist(),
            strict=True,
        )
    )


def link_recovery(
    gt_markers: np.ndarray | Sequence[np.ndarray],
    gt_lineage: pd.DataFrame,
    pred_labels: np.ndarray | Sequence[np.ndarray],
    pred_lineage: pd.DataFrame,
    first_frame: int = 0,
) -> LinkScore:
    """Fraction of ground-truth links that the predicted tracks keep.

    A ground-truth link joins an object at ``t`` to the same track at ``t + 1``, or
    a mother's last position to a daughter's first. Each GT marker is matched to the
    predicted object covering more than half of it. A continuation is recovered when
    both ends match the same predicted track; a mother-daughter link when the
    daughter's predicted track has the mother's predicted track as parent.

    Parameters
    ----------
    gt_markers : ndarray or sequence of ndarray
        ``(T, Y, X)`` TRA markers (value = GT track id); index ``i`` is frame
        ``first_frame + i``.
    gt_lineage : DataFrame
        ``track_id, start, end, parent`` (see :func:`read_ctc_tracks`).
    pred_labels : ndarray or sequence of ndarray
        ``(T, Y, X)`` predicted labels relabelled to track ids
        (:meth:`Tracks.relabel`), same frames as ``gt_markers``.
    pred_lineage : DataFrame
        ``track_id, start, end, parent`` of the prediction (``Tracks.lineage``).
    first_frame : int
        Frame number of index 0.

    Returns
    -------
    LinkScore
    """
    n = len(gt_markers)
    if len(pred_labels) != n:
        raise InputError("Ground-truth markers and predicted labels cover different frames.")
    match: dict[tuple[int, int], int] = {}
    present: set[tuple[int, int]] = set()
    for i in range(n):
        mk = np.asarray(gt_markers[i])
        pr = np.asarray(pred_labels[i])
        if mk.shape != pr.shape:
            raise InputError(f"Frame {first_frame + i}: markers and labels differ in shape.")
        t = first_frame + i
        present.update((t, int(v)) for v in np.unique(mk) if v > 0)
        match.update({(t, k): v for k, v in _match_markers(mk, pr).items()})

    pred_parent = _parents(pred_lineage)
    pred_children: dict[int, int] = {}
    for p in pred_parent.values():
        if p > 0:
            pred_children[p] = pred_children.get(p, 0) + 1
    gt = gt_lineage.astype(int)
    gt_children = gt[gt["parent"] > 0].groupby("parent").size().to_dict()
    ends = dict(zip(gt["track_id"].tolist(), gt["end"].tolist(), strict=True))
    last = first_frame + n - 1

    def same_track(a: int, b: int) -> bool:
        # one track, or a mother continued by her only daughter (a CTC-style gap)
        return a == b or (pred_parent.get(b, 0) == a and pred_children.get(a, 0) == 1)

    n_links = n_rec = n_div = n_div_rec = 0
    for lab, b, e, p in gt[["track_id", "start", "end", "parent"]].itertuples(index=False):
        for t in range(max(b, first_frame), min(e, last)):
            if (t, lab) not in present or (t + 1, lab) not in present:
                continue
            n_links += 1
            a_, b_ = match.get((t, lab), 0), match.get((t + 1, lab), 0)
            n_rec += int(a_ > 0 and b_ > 0 and same_track(a_, b_))
        if p <= 0 or p not in ends:
            continue
        tp = ends[p]
        if not (first_frame <= tp <= last and first_frame <= b <= last):
            continue
        if (tp, p) not in present or (b, lab) not in present:
            continue
        a_, b_ = match.get((tp, p), 0), match.get((b, lab), 0)
        division = gt_children.get(p, 0) >= 2
        n_links += 1
        if division:
            n_div += 1
            ok = a_ > 0 and b_ > 0 and a_ != b_ and pred_parent.get(b_, 0) == a_
            n_div_rec += int(ok)
        else:
            ok = a_ > 0 and b_ > 0 and same_track(a_, b_)
        n_rec += int(ok)
    frac = n_rec / n_links if n_links else float("nan")
    return LinkScore(n_links, n_rec, frac, n_div, n_div_rec)

"""Export nuclei results in formats Fiji, TrackMate, napari and the CTC tools read.

Every writer returns the path(s) it wrote. Provenance (microseg version, model
hash, parameters) goes into the file's metadata (TIFF) or a sidecar
``<name>.json`` beside a CSV.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from microseg.errors import InputError


def provenance(
    model_path: str | Path | None = None,
    parameters: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build a provenance record: microseg version, model file and hash, parameters.

    Parameters
    ----------
    model_path : str, Path or None
        Model file used (its SHA-256 is recorded); a ``builtin:NAME`` string is kept
        as given.
    parameters : dict or None
        Settings of the run (pixel size, channel, tracking cutoffs, ...).
    **extra
        Further JSON-serialisable fields.
    """
    from microseg import __version__

    rec: dict[str, Any] = {
        "microseg_version": __version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if model_path is not None:
        p = Path(str(model_path))
        rec["model"] = str(model_path)
        if p.is_file():
            from microseg.modelfile import file_hash

            rec["model_sha256"] = file_hash(p)
    rec["parameters"] = dict(parameters or {})
    rec.update(extra)
    return rec


def _full_provenance(prov: dict[str, Any] | None) -> dict[str, Any]:
    from microseg import __version__

    rec = dict(prov or {})
    rec.setdefault("microseg_version", __version__)
    return rec


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default, indent=1)


def _sidecar(path: Path, prov: dict[str, Any] | None, **fields: Any) -> Path:
    side = path.with_suffix(".json")
    rec = _full_provenance(prov)
    rec.update(fields)
    side.write_text(_dumps(rec), encoding="utf-8")
    return side


def _prepare(path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _label_dtype(labels: np.ndarray) -> np.ndarray:
    if labels.dtype.kind not in "iub":
        raise InputError(f"Label images must hold integers, not {labels.dtype}.")
    if labels.size and labels.min() < 0:
        raise InputError("Label images must not hold negative ids.")
    top = int(labels.max()) if labels.size else 0
    target = (
        np.uint16
        if top <= np.iinfo(np.uint16).max
        else np.uint32
        if top <= np.iinfo(np.uint32).max
        else None
    )
    if target is None:
        raise InputError("Label ids above 4294967295 cannot be written to TIFF.")
    if labels.dtype == np.uint8 or labels.dtype == target:
        return labels
    return labels.astype(target)


def write_label_stack(
    path: str | Path,
    labels: np.ndarray,
    pixel_size_um: float | None = None,
    provenance: dict[str, Any] | None = None,
    ome: bool | None = None,
) -> Path:
    """Write instance labels ``(Y, X)`` or ``(T, Y, X)`` as an ImageJ TIFF or OME-TIFF.

    Parameters
    ----------
    path : str or Path
        Destination; a name ending in ``.ome.tif``/``.ome.tiff`` gives OME-TIFF.
    labels : ndarray
        Integer labels, 0 = background; stored uint16 (uint32 when an id exceeds
        65535, which ImageJ hyperstacks cannot hold: then a plain TIFF with the same
        metadata is written).
    pixel_size_um : float or None
        Pixel size recorded as resolution (ImageJ) or PhysicalSizeX/Y (OME).
    provenance : dict or None
        Stored as JSON in the ImageJ ``Info`` property or the OME ``Description``.
    ome : bool or None
        Force OME-TIFF (True) or ImageJ TIFF (False); ``None`` decides by the name.

    Returns
    -------
    Path
    """
    import tifffile

    path = _prepare(path)
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3):
        raise InputError(f"Expected labels of shape (Y, X) or (T, Y, X), got {arr.shape}.")
    arr = _label_dtype(arr)
    axes = "TYX" if arr.ndim == 3 else "YX"
    info = json.dumps(_full_provenance(provenance), default=_json_default)
    if ome is None:
        ome = path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    ps = float(pixel_size_um) if pixel_size_um else None
    if ome:
        meta: dict[str, Any] = {"axes": axes, "Description": info}
        if ps:
            meta.update(
                PhysicalSizeX=ps,
                PhysicalSizeXUnit="µm",
                PhysicalSizeY=ps,
                PhysicalSizeYUnit="µm",
            )
        tifffile.imwrite(
            path, arr, ome=True, photometric="minisblack", metadata=meta, compression="zlib"
        )
        return path
    kw: dict[str, Any] = {}
    if ps:
        kw["resolution"] = (1.0 / ps, 1.0 / ps)
    if arr.dtype == np.uint32:
        tifffile.imwrite(
            path,
            arr,
            photometric="minisblack",
            metadata={"axes": axes, "unit": "um" if ps else "pixel", "provenance": info},
            compression="zlib",
            **kw,
        )
        return path
    meta = {"axes": axes, "Info": info}
    if ps:
        meta["unit"] = "um"
    tifffile.imwrite(path, arr, imagej=True, metadata=meta, compression="zlib", **kw)
    return path


def write_table_csv(
    df: pd.DataFrame, path: str | Path, provenance: dict[str, Any] | None = None
) -> tuple[Path, Path]:
    """Write a table as CSV plus a sidecar ``<name>.json`` with its provenance.

    Returns
    -------
    (Path, Path)
        The CSV and the JSON sidecar.
    """
    path = _prepare(path)
    df.to_csv(path, index=False)
    side = _sidecar(path, provenance, table=path.name, n_rows=len(df), columns=list(df.columns))
    return path, side


def _spots(links: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    for name, df, cols in (
        ("track links", links, ("track_id", "frame", "label")),
        ("object table", table, ("frame", "label", "y", "x")),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise InputError(f"The {name} lack the column(s) {', '.join(missing)}.")
    extra = [c for c in table.columns if c not in links.columns or c in ("frame", "label")]
    m = links.merge(table[extra], on=["frame", "label"], how="left")
    if "parent_track_id" not in m.columns:
        m["parent_track_id"] = 0
    return m.sort_values(["track_id", "frame"], kind="stable").reset_index(drop=True)


def _roots(links: pd.DataFrame) -> dict[int, int]:
    parent = links.groupby("track_id")["parent_track_id"].first().astype(int).to_dict()
    roots: dict[int, int] = {}
    for tid in parent:
        r, seen = tid, set()
        while parent.get(r, 0) > 0 and r not in seen:
            seen.add(r)
            r = parent[r]
        roots[tid] = r
    return roots


def write_tracks_trackmate_csv(
    links: pd.DataFrame,
    table: pd.DataFrame,
    path: str | Path,
    pixel_size_um: float | None = None,
    frame_interval: float = 1.0,
    provenance: dict[str, Any] | None = None,
) -> tuple[Path, Path, Path]:
    """Write tracks as TrackMate-style spot and edge tables.

    The spots CSV has TrackMate's column names: ``LABEL, ID, TRACK_ID, TREE_ID,
    QUALITY, POSITION_X, POSITION_Y, POSITION_Z, POSITION_T, FRAME, RADIUS,
    VISIBILITY, AREA, MEAN_INTENSITY_CH1`` (further channels ``_CH2`` ...), and
    ``MICROSEG_LABEL`` (the object's id in its frame). ``TRACK_ID`` is the
    unbranched track; ``TREE_ID`` the lineage it belongs to (the root track).
    Positions and area are in µm when the pixel size is given, else pixels;
    ``POSITION_T`` is ``FRAME * frame_interval``. ``<name>_edges.csv`` holds
    ``SPOT_SOURCE_ID, SPOT_TARGET_ID, TRACK_ID, EDGE_TIME`` including mother to
    daughter edges; ``<name>.json`` the provenance and units.

    Returns
    -------
    (Path, Path, Path)
        Spots CSV, edges CSV and the JSON sidecar.
    """
    path = _prepare(path)
    m = _spots(links, table)
    ps = float(pixel_size_um) if pixel_size_um else 1.0
    roots = _roots(m)
    ids = np.arange(len(m), dtype=np.int64)
    spots = pd.DataFrame(
        {
            "LABEL": [f"ID{i}" for i in ids],
            "ID": ids,
            "TRACK_ID": m["track_id"].to_numpy(np.int64),
            "TREE_ID": m["track_id"].map(roots).to_numpy(np.int64),
            "QUALITY": 1.0,
            "POSITION_X": m["x"].to_numpy(float) * ps,
            "POSITION_Y": m["y"].to_numpy(float) * ps,
            "POSITION_Z": 0.0,
            "POSITION_T": m["frame"].to_numpy(float) * float(frame_interval),
            "FRAME": m["frame"].to_numpy(np.int64),
        }
    )
    if "area_px" in m.columns:
        area = m["area_px"].to_numpy(float)
        spots["RADIUS"] = np.sqrt(area / np.pi) * ps
    spots["VISIBILITY"] = 1
    if "area_px" in m.columns:
        spots["AREA"] = m["area_px"].to_numpy(float) * ps * ps
    ch = [c for c in m.columns if c == "mean_intensity" or c.startswith("mean_intensity_")]
    for c in ch:
        idx = 1 if c == "mean_intensity" else int(c.rsplit("_", 1)[1]) + 1
        spots[f"MEAN_INTENSITY_CH{idx}"] = m[c].to_numpy(float)
    spots["MICROSEG_LABEL"] = m["label"].to_numpy(np.int64)
    spots.to_csv(path, index=False)

    # edges: consecutive spots of a track, then mother's last spot to daughter's first
    tid = m["track_id"].to_numpy()
    same = tid[1:] == tid[:-1]
    src, dst = ids[:-1][same], ids[1:][same]
    first = m.groupby("track_id").head(1)
    last = m.groupby("track_id").tail(1)
    last_id = pd.Series(last.index.to_numpy(np.int64), index=last["track_id"].to_numpy())
    kids = first[first["parent_track_id"].isin(last_id.index)]
    src = np.concatenate([src, last_id.loc[kids["parent_track_id"]].to_numpy(np.int64)])
    dst = np.concatenate([dst, kids.index.to_numpy(np.int64)])
    edges = pd.DataFrame(
        {
            "SPOT_SOURCE_ID": src,
            "SPOT_TARGET_ID": dst,
            "TRACK_ID": spots["TREE_ID"].to_numpy()[src],
            "EDGE_TIME": (spots["POSITION_T"].to_numpy()[src] + spots["POSITION_T"].to_numpy()[dst])
            / 2.0,
        }
    )
    edges_path = path.with_name(path.stem + "_edges.csv")
    edges.to_csv(edges_path, index=False)
    side = _sidecar(
        path,
        provenance,
        spatial_units="um" if pixel_size_um else "pixel",
        time_units="frame" if frame_interval == 1.0 else "as given by frame_interval",
        frame_interval=float(frame_interval),
        edges=edges_path.name,
    )
    return path, edges_path, side


def write_tracks_napari_csv(
    links: pd.DataFrame, table: pd.DataFrame, path: str | Path
) -> tuple[Path, Path]:
    """Write tracks for a napari Tracks layer.

    The CSV has ``track_id, t, y, x`` (pixels), sorted by track then time, ready for
    ``viewer.add_tracks(df.values, graph=graph)``; ``<name>_graph.json`` maps each
    daughter track id to its parents (``{"5": [2]}``).

    Returns
    -------
    (Path, Path)
        CSV and graph JSON.
    """
    path = _prepare(path)
    m = _spots(links, table)
    out = pd.DataFrame(
        {
            "track_id": m["track_id"].to_numpy(np.int64),
            "t": m["frame"].to_numpy(np.int64),
            "y": m["y"].to_numpy(float),
            "x": m["x"].to_numpy(float),
        }
    )
    out.to_csv(path, index=False)
    par = m.groupby("track_id")["parent_track_id"].first()
    graph = {str(int(k)): [int(v)] for k, v in par.items() if v > 0}
    gpath = path.with_name(path.stem + "_graph.json")
    gpath.write_text(json.dumps(graph, indent=1), encoding="utf-8")
    return path, gpath


def _ring_area(xy: np.ndarray) -> float:
    """Area enclosed by a closed x/y ring (shoelace)."""
    x, y = xy[:, 0], xy[:, 1]
    return abs(float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1]))) / 2


def write_imagej_rois(labels: np.ndarray, path_zip: str | Path) -> Path:
    """Write one polygon ROI per object to an ImageJ RoiSet ZIP.

    Outlines are :func:`microseg.geojson.object_rings` (the largest piece's exterior) in
    ImageJ pixel-edge coordinates. Names are ``F<frame+1>-L<label>``; in a
    ``(T, Y, X)`` stack each ROI's position is ``frame + 1`` (stack position and
    hyperstack T).

    An image without objects gives an empty ZIP.

    Returns
    -------
    Path
    """
    from roifile import ROI_TYPE, ImagejRoi, roiwrite
    from scipy import ndimage as ndi

    from microseg.geojson import object_rings

    path = _prepare(path_zip)
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3) or arr.dtype.kind not in "iub":
        raise InputError(f"Expected integer labels (Y, X) or (T, Y, X), got {arr.shape}.")
    stack = arr[None] if arr.ndim == 2 else arr
    rois = []
    for t, frame in enumerate(stack):
        for i, sl in enumerate(ndi.find_objects(frame)):
            if sl is None:
                continue
            lab = i + 1
            polygons = object_rings(frame[sl] == lab, sl[0].start, sl[1].start)
            if not polygons:
                continue
            # the outline of the largest piece (shoelace area)
            xy = max((p[0] for p in polygons), key=_ring_area)
            xy = xy[:-1]
            roi = ImagejRoi.frompoints(
                xy.astype(np.float32),
                name=f"F{t + 1:04d}-L{lab:05d}",
                position=t if arr.ndim == 3 else None,
                t=t if arr.ndim == 3 else None,
            )
            roi.roitype = ROI_TYPE.POLYGON
            rois.append(roi)
    if rois:
        roiwrite(path, rois, mode="w")
    else:
        import zipfile

        zipfile.ZipFile(path, "w").close()
    return path


def write_ctc_tracks(lineage: pd.DataFrame, path: str | Path) -> Path:
    """Write a Cell Tracking Challenge ``res_track.txt``: one ``L B E P`` line per track.

    ``lineage`` has ``track_id, start, end, parent`` (``Tracks.lineage``). A track
    with gaps is written as one line; the CTC evaluators expect gaps to start a new
    track, so relabel before scoring when tracks were gap-closed.
    """
    path = _prepare(path)
    missing = [c for c in ("track_id", "start", "end", "parent") if c not in lineage.columns]
    if missing:
        raise InputError(f"The lineage lacks the column(s) {', '.join(missing)}.")
    arr = lineage[["track_id", "start", "end", "parent"]].to_numpy(np.int64)
    np.savetxt(path, arr, fmt="%d", delimiter=" ")
    return path

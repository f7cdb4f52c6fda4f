"""Objects as GeoJSON the way QuPath reads and writes them: label images to polygon
features with measurements, and GeoJSON annotations back to label images.

Coordinates are pixels with the origin at the top-left corner of the image (QuPath's
convention): pixel ``(row, col)`` covers ``[col, col + 1] x [row, row + 1]``. Outlines
are traced through the midpoints of the object's edge pixels
(:func:`skimage.measure.find_contours`), so rasterising a polygon back by pixel
centres gives the object's pixels again.

A feature is ``{"type": "Feature", "id": UUID, "geometry": Polygon | MultiPolygon,
"properties": {"objectType", "name", "label", "classification": {"name", "color"},
"measurements": {...}}}``; in a stack each feature's plane is
``geometry.plane = {"c": -1, "z": Z, "t": T}`` and ``properties.frame`` / ``slice``.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from microseg.errors import InputError

MAX_BYTES = 512 * 1024**2
"""Largest GeoJSON file read (bytes)."""
MAX_VERTICES = 50_000_000
"""Most polygon vertices read from one file."""
OBJECT_TYPES = ("detection", "annotation")
NUCLEUS_COLOR = (230, 60, 60)
"""QuPath colour of the "Nucleus" class microseg writes."""
GRAIN_COLOR = (40, 160, 220)
"""QuPath colour of the "Grain" class microseg writes."""
_NAMESPACE = uuid.UUID("6f1c1a52-6d2b-4a36-9a59-3b1f0c9a1e53")
_SKIP_COLUMNS = {"label", "frame", "slice"}


# ------------------------------------------------------------------ writing
def object_rings(mask: np.ndarray, y0: int = 0, x0: int = 0) -> list[list[np.ndarray]]:
    """Polygons (exterior ring, then holes) of a boolean mask, as closed ``(N, 2)`` x/y
    rings in corner coordinates (QuPath's and ImageJ's) offset by ``(y0, x0)``."""
    from skimage.measure import find_contours, points_in_poly

    padded = np.pad(mask, 1).astype(np.uint8)
    contours = find_contours(padded, 0.5, positive_orientation="high")
    outer, holes = [], []
    for c in contours:
        if len(c) < 4:
            continue
        c = _drop_collinear(c)
        # shoelace area in (row, col): islands of high values wind counter-clockwise
        r, k = c[:, 0], c[:, 1]
        area = 0.5 * float(np.dot(r[:-1], k[1:]) - np.dot(k[:-1], r[1:]))
        xy = np.stack([c[:, 1] + x0 - 0.5, c[:, 0] + y0 - 0.5], axis=1)
        (outer if area > 0 else holes).append(xy)
    polygons = [[ring] for ring in outer]
    for hole in holes:
        for poly in polygons:
            if len(polygons) == 1 or points_in_poly(hole[:1], poly[0])[0]:
                poly.append(hole)
                break
    return polygons


def _drop_collinear(ring: np.ndarray) -> np.ndarray:
    """A closed ring without the vertices that lie on a straight run (kept closed)."""
    pts = ring[:-1]
    prev, nxt = np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0)
    cross = (pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - pts[:, 1]) - (pts[:, 1] - prev[:, 1]) * (
        nxt[:, 0] - pts[:, 0]
    )
    kept = pts[np.abs(cross) > 1e-9]
    return np.vstack([kept, kept[:1]]) if len(kept) >= 3 else ring


def _geometry(polygons: list[list[np.ndarray]]) -> dict[str, Any]:
    def ring(xy: np.ndarray) -> list[list[float]]:
        pts = [[round(float(x), 3), round(float(y), 3)] for x, y in xy]
        if pts[0] != pts[-1]:
            pts.append(pts[0])
        return pts

    coords = [[ring(r) for r in poly] for poly in polygons]
    if len(coords) == 1:
        return {"type": "Polygon", "coordinates": coords[0]}
    return {"type": "MultiPolygon", "coordinates": coords}


def _measurements(row: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in (row or {}).items():
        if key in _SKIP_COLUMNS or isinstance(value, str):
            continue
        try:
            v = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v):
            out[str(key)] = v
    return out


def features_from_labels(
    labels: np.ndarray,
    *,
    class_name: str,
    color: tuple[int, int, int],
    table: pd.DataFrame | None = None,
    object_type: str = "detection",
    frame: int | None = None,
    z_slice: int | None = None,
    offset: tuple[int, int] = (0, 0),
    id_seed: str = "",
) -> Iterator[dict[str, Any]]:
    """GeoJSON features, one per object of a 2-D label image (0 = background).

    Parameters
    ----------
    labels : ndarray
        ``(Y, X)`` integer labels.
    class_name, color : str, (int, int, int)
        QuPath classification of every object.
    table : DataFrame, optional
        Measurements with a ``label`` column (and ``frame``/``slice`` for stacks); the
        numeric columns of an object's row become its ``measurements``.
    object_type : str
        ``"detection"`` (QuPath's read-only results) or ``"annotation"``.
    frame, z_slice : int, optional
        The plane of a stack the labels are.
    offset : (int, int)
        ``(row, col)`` of the labels' top-left pixel in the image (a measured region).
    id_seed : str
        Makes the features' UUIDs reproducible per file.
    """
    from scipy import ndimage as ndi

    if object_type not in OBJECT_TYPES:
        raise ValueError(object_type)
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.dtype.kind not in "iub":
        raise InputError(f"Expected a 2-D integer label image, got {lab.shape} {lab.dtype}.")
    rows: dict[int, Mapping[str, Any]] = {}
    if table is not None and len(table) and "label" in table.columns:
        sub = table
        if frame is not None and "frame" in table.columns:
            sub = sub[sub["frame"] == frame]
        if z_slice is not None and "slice" in table.columns:
            sub = sub[sub["slice"] == z_slice]
        rows = {int(r["label"]): r for r in sub.to_dict("records")}
    plane = None
    if frame or z_slice:
        plane = {"c": -1, "z": int(z_slice or 0), "t": int(frame or 0)}
    for i, sl in enumerate(ndi.find_objects(lab)):
        if sl is None:
            continue
        value = i + 1
        polygons = object_rings(lab[sl] == value, sl[0].start + offset[0], sl[1].start + offset[1])
        if not polygons:
            continue
        geometry = _geometry(polygons)
        if plane is not None:
            geometry["plane"] = plane
        props: dict[str, Any] = {
            "objectType": object_type,
            "name": f"{class_name} {value}",
            "label": value,
            "classification": {"name": class_name, "color": [int(c) for c in color]},
            "isLocked": object_type == "detection",
            "measurements": _measurements(rows.get(value)),
        }
        if frame is not None:
            props["frame"] = int(frame)
        if z_slice is not None:
            props["slice"] = int(z_slice)
        key = f"{id_seed}/{frame or 0}/{z_slice or 0}/{value}"
        yield {
            "type": "Feature",
            "id": str(uuid.uuid5(_NAMESPACE, key)),
            "geometry": geometry,
            "properties": props,
        }


def geojson_bytes(
    labels: np.ndarray,
    *,
    class_name: str,
    color: tuple[int, int, int],
    table: pd.DataFrame | None = None,
    object_type: str = "detection",
    axes: str = "YX",
    offset: tuple[int, int] = (0, 0),
    provenance: dict[str, Any] | None = None,
    id_seed: str = "",
) -> bytes:
    """The objects of a label image (``YX``, ``TYX``, ``ZYX`` or ``TZYX``) as a GeoJSON
    FeatureCollection that QuPath opens (File → Import objects from file); the
    parameters are those of :func:`features_from_labels`, ``provenance`` is kept under
    the top-level key ``"microseg"``."""
    lab = np.asarray(labels)
    axes = axes.upper()
    if lab.ndim != len(axes) or not axes.endswith("YX") or lab.ndim > 4:
        raise InputError(f"Labels of shape {lab.shape} do not match axes {axes}.")
    nt = lab.shape[axes.index("T")] if "T" in axes else 1
    nz = lab.shape[axes.index("Z")] if "Z" in axes else 1
    planes = lab.reshape(nt, nz, *lab.shape[-2:])
    features: list[dict[str, Any]] = []
    for t in range(nt):
        for z in range(nz):
            features.extend(
                features_from_labels(
                    planes[t, z],
                    class_name=class_name,
                    color=color,
                    table=table,
                    object_type=object_type,
                    frame=t if "T" in axes else None,
                    z_slice=z if "Z" in axes else None,
                    offset=offset,
                    id_seed=id_seed,
                )
            )
    doc: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if provenance is not None:
        doc["microseg"] = provenance
    return json.dumps(doc, separators=(",", ":"), default=str).encode("utf-8")


def write_geojson(path: str | os.PathLike, labels: np.ndarray, **kw: Any) -> Path:
    """Write :func:`geojson_bytes` of ``labels`` to ``path`` (replaced whole, never
    left half-written); feature ids are seeded by the file name.

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = geojson_bytes(labels, id_seed=kw.pop("id_seed", path.stem), **kw)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------ reading
def _load(source: str | os.PathLike | bytes | IO[bytes], name: str) -> Any:
    if isinstance(source, bytes | bytearray):
        raw = bytes(source)
    elif hasattr(source, "read"):
        raw = source.read(MAX_BYTES + 1)
    else:
        p = Path(source)
        if p.stat().st_size > MAX_BYTES:
            raise InputError(f"'{name}' is larger than {MAX_BYTES // 1024**2} MB of GeoJSON.")
        raw = p.read_bytes()
    if len(raw) > MAX_BYTES:
        raise InputError(f"'{name}' is larger than {MAX_BYTES // 1024**2} MB of GeoJSON.")
    if not raw.strip():
        raise InputError(f"'{name}' is empty.")
    try:
        return json.loads(raw.decode("utf-8-sig"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise InputError(f"'{name}' is not GeoJSON (it is not UTF-8 text).") from None
    except RecursionError:
        raise InputError(f"'{name}' is nested too deeply to be GeoJSON.") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise InputError(f"'{name}' is not valid GeoJSON ({exc}).") from None


def _no_constant(word: str) -> None:
    raise ValueError(f"{word} is not a number GeoJSON allows")


def _features(doc: Any, name: str) -> list[dict[str, Any]]:
    """The features of a FeatureCollection, a list of features (QuPath's export without
    FEATURE_COLLECTION) or one feature or geometry."""
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection":
        feats = doc.get("features")
    elif isinstance(doc, list):
        feats = doc
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        feats = [doc]
    elif isinstance(doc, dict) and "coordinates" in doc:
        feats = [{"type": "Feature", "geometry": doc, "properties": {}}]
    else:
        raise InputError(f"'{name}' is JSON but not GeoJSON (no features or geometry).")
    if not isinstance(feats, list):
        raise InputError(f"'{name}' has a 'features' entry that is not a list.")
    return [f for f in feats if isinstance(f, dict)]


def _ring(coords: Any, name: str) -> np.ndarray:
    try:
        xy = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"'{name}' has a polygon whose coordinates are not numbers.") from None
    if xy.ndim != 2 or xy.shape[1] < 2 or len(xy) < 3:
        raise InputError(f"'{name}' has a polygon ring that is not a list of x, y points.")
    xy = xy[:, :2]
    if not np.isfinite(xy).all():
        raise InputError(f"'{name}' has a polygon with a coordinate that is not finite.")
    return xy


def _shapes(geometry: Any, name: str) -> tuple[list[list[np.ndarray]], list[np.ndarray]]:
    """Polygons (exterior then holes) and lines of one geometry."""
    if not isinstance(geometry, dict):
        return [], []
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "GeometryCollection":
        polys, lines = [], []
        for g in geometry.get("geometries") or []:
            p, ln = _shapes(g, name)
            polys += p
            lines += ln
        return polys, lines
    if not isinstance(coords, list):
        return [], []
    if kind == "Polygon":
        return [[_ring(r, name) for r in coords]] if coords else [], []
    if kind == "MultiPolygon":
        return [[_ring(r, name) for r in poly] for poly in coords if poly], []
    if kind == "LineString":
        return [], [_line(coords, name)]
    if kind == "MultiLineString":
        return [], [_line(c, name) for c in coords]
    return [], []


def _line(coords: Any, name: str) -> np.ndarray:
    try:
        xy = np.asarray(coords, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"'{name}' has a line whose coordinates are not numbers.") from None
    if xy.ndim != 2 or xy.shape[1] < 2 or len(xy) < 2 or not np.isfinite(xy[:, :2]).all():
        raise InputError(f"'{name}' has a line that is not a list of finite x, y points.")
    return xy[:, :2]


def paint_line(mask: np.ndarray, xy: np.ndarray) -> None:
    """Set the pixels of a polyline (``(N, 2)`` x/y in corner coordinates) in ``mask``;
    the parts outside it are cut off."""
    from skimage.draw import line as draw_line

    h, w = mask.shape
    for (x0, y0), (x1, y1) in zip(xy[:-1] - 0.5, xy[1:] - 0.5, strict=True):
        rr, cc = draw_line(int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
        ok = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        mask[rr[ok], cc[ok]] = True


def polygon_pixels(
    polygon: list[np.ndarray], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the pixels whose centres lie in the polygon (exterior
    ring, then holes; x/y corner coordinates), within ``shape``."""
    from skimage.draw import polygon as draw_polygon

    inside = np.zeros(shape, bool)
    for k, ring in enumerate(polygon):
        rr, cc = draw_polygon(ring[:, 1] - 0.5, ring[:, 0] - 0.5, shape)
        inside[rr, cc] = k == 0
    return np.nonzero(inside)


def read_geojson(
    source: str | os.PathLike | bytes | IO[bytes],
    shape_yx: tuple[int, int],
    *,
    name: str | None = None,
    plane: tuple[int, int] | None = (0, 0),
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read GeoJSON annotations (QuPath, microseg or any polygon GeoJSON) as labels.

    Parameters
    ----------
    source : path, bytes or binary file
    shape_yx : (int, int)
        The image's size; objects outside it are cut off.
    name : str, optional
        The file name used in messages.
    plane : (t, z) or None
        Keep only features on this plane (features without a plane are on (0, 0));
        ``None``: all features.

    Returns
    -------
    labels : ndarray
        ``(Y, X)`` uint32 object ids 1..N in the order of the features (a QuPath cell's
        nucleus outline where it has one); later objects are painted over earlier ones.
    lines : ndarray
        ``(Y, X)`` bool, pixels on the file's lines (traced boundaries).
    classes : list of str
        Each object's classification name ("" when unclassified).

    Raises
    ------
    InputError
        A file that is not GeoJSON, too large, or holds no polygon or line inside the
        image, with one sentence.
    """
    label = name or (Path(source).name if isinstance(source, str | os.PathLike) else "GeoJSON")
    h, w = (int(v) for v in shape_yx)
    feats = _features(_load(source, label), label)
    labels = np.zeros((h, w), np.uint32)
    lines = np.zeros((h, w), bool)
    classes: list[str] = []
    vertices = 0
    n_shapes = 0
    for feat in feats:
        props = feat.get("properties") if isinstance(feat.get("properties"), dict) else {}
        geometry = props.get("nucleusGeometry") or feat.get("geometry")
        if plane is not None and not _on_plane(feat, props, plane):
            continue
        polygons, strokes = _shapes(geometry, label)
        vertices += sum(len(r) for p in polygons for r in p) + sum(len(s) for s in strokes)
        if vertices > MAX_VERTICES:
            raise InputError(f"'{label}' holds more than {MAX_VERTICES:,} vertices.")
        n_shapes += len(polygons) + len(strokes)
        for s in strokes:
            paint_line(lines, s)
        if not polygons:
            continue
        idx = len(classes) + 1
        painted = False
        for poly in polygons:
            rr, cc = polygon_pixels(poly, (h, w))
            if rr.size:
                labels[rr, cc] = idx
                painted = True
        if painted:
            cls = props.get("classification")
            classes.append(str(cls.get("name", "")) if isinstance(cls, dict) else "")
    if n_shapes == 0:
        raise InputError(f"'{label}' holds no polygon or line (points cannot label pixels).")
    if not classes and not lines.any():
        raise InputError(f"'{label}' has no object inside the {w}x{h} image.")
    return labels, lines, classes


def _on_plane(feat: dict, props: dict, plane: tuple[int, int]) -> bool:
    geometry = feat.get("geometry") if isinstance(feat.get("geometry"), dict) else {}
    where = geometry.get("plane") if isinstance(geometry.get("plane"), dict) else {}
    try:
        t = int(where.get("t", props.get("frame", 0)) or 0)
        z = int(where.get("z", props.get("slice", 0)) or 0)
    except (TypeError, ValueError):
        return False
    return (t, z) == tuple(plane)

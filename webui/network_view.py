"""Render helpers for the Inside-the-network page: kernels, feature maps, filter bank."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import streamlit as st

from microseg.errors import MicrosegError
from microseg.image import MicroImage
from webui import state
from webui.models import SESSION_MODELS, builtin_available, get_model

NO_NETWORK = "No U-Net to look inside yet: train a U-Net on the Annotate page first."
EXPLANATION = (
    "The U-Net's first layer learns small 3×3 kernels (red positive, blue negative weights) "
    "that pick out edges, spots and intensity steps, much like the engineered filters on the "
    "right. Deeper levels combine these at half the resolution each, so their feature maps "
    "respond to ever larger structures, and the decoder brings them back to full resolution to "
    "decide every pixel's class. The classical random forest instead sees a fixed, hand-designed "
    "filter bank: compare what both see in the same region of the current image."
)
BANK_SCALES: tuple[float, ...] = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
SIGNED_FAMILIES = ("log", "dog", "hessian")
GAP_VALUE = 64
MAX_KERNELS = 64
CACHE_ENTRIES = 2

# RdBu-like diverging colour map: blue (negative) - near white (0) - red (positive)
_DIVERGING = np.array(
    [
        [5, 48, 97],
        [33, 102, 172],
        [146, 197, 222],
        [247, 247, 247],
        [244, 165, 130],
        [178, 24, 43],
        [103, 0, 31],
    ],
    np.float32,
)


# ----------------------------------------------------------------------------- pure helpers


def diverging_rgb(values: np.ndarray) -> np.ndarray:
    """Map values in [-1, 1] to a blue-white-red colour map; returns uint8 ``(..., 3)``."""
    v = np.clip(np.nan_to_num(np.asarray(values, np.float32)), -1.0, 1.0)
    pos = (v + 1.0) * 0.5 * (len(_DIVERGING) - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, len(_DIVERGING) - 1)
    frac = (pos - lo)[..., None]
    rgb = _DIVERGING[lo] * (1.0 - frac) + _DIVERGING[hi] * frac
    return np.round(rgb).astype(np.uint8)


def signed_to_rgb(a: np.ndarray, percentile: float | None = None) -> np.ndarray:
    """Scale symmetrically around 0 (by max |a| or a percentile of |a|) and colour-map it."""
    a = np.asarray(a, np.float32)
    mag = np.abs(a)
    ref = float(np.percentile(mag, percentile)) if percentile is not None else float(mag.max())
    if not np.isfinite(ref) or ref <= 0:
        ref = 1.0
    return diverging_rgb(a / ref)


def grey_uint8(a: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Percentile contrast stretch to uint8 (a constant image becomes black)."""
    a = np.asarray(a, np.float32)
    lo, hi = np.percentile(a, [low, high])
    if not hi > lo:
        return np.zeros(a.shape, np.uint8)
    return np.round(np.clip((a - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def as_rgb(a: np.ndarray) -> np.ndarray:
    """Grey ``(Y, X)`` uint8 to ``(Y, X, 3)``; RGB is returned as is."""
    return a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2)


def upscale(a: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by an integer factor along the first two axes."""
    f = max(1, int(factor))
    return a if f == 1 else np.repeat(np.repeat(a, f, axis=0), f, axis=1)


def upscale_to(a: np.ndarray, min_side: int = 128, max_factor: int = 16) -> np.ndarray:
    """Nearest-neighbour enlargement so that the shorter side reaches about ``min_side``."""
    side = min(a.shape[0], a.shape[1])
    return upscale(a, min(max_factor, max(1, -(-min_side // max(side, 1)))))


def tile_grid(
    tiles: Sequence[np.ndarray], cols: int, gap: int = 3, gap_value: int = GAP_VALUE
) -> np.ndarray:
    """Tile equally sized ``(h, w, 3)`` uint8 images row by row, ``gap`` pixels apart."""
    if not tiles:
        raise ValueError("no tiles")
    h, w = tiles[0].shape[:2]
    cols = max(1, min(int(cols), len(tiles)))
    rows = -(-len(tiles) // cols)
    out = np.full(
        (rows * h + (rows + 1) * gap, cols * w + (cols + 1) * gap, 3), gap_value, np.uint8
    )
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        out[y : y + h, x : x + w] = as_rgb(t)
    return out


def kernel_grid(
    kernels: np.ndarray, cols: int | None = None, cell: int = 48, gap: int = 3
) -> np.ndarray:
    """Kernels ``(n, kh, kw)`` as one RGB image: each normalised symmetrically around 0,
    diverging colours, enlarged to ``cell`` pixels by nearest neighbour, tiled with gaps."""
    k = np.asarray(kernels, np.float32)
    if k.ndim != 3 or k.shape[0] == 0:
        raise ValueError("kernels must be (n, kh, kw) with n > 0")
    factor = max(1, cell // max(k.shape[1:]))
    tiles = [upscale(signed_to_rgb(kk), factor) for kk in k]
    if cols is None:
        cols = 4 if len(tiles) <= 8 else 8
    return tile_grid(tiles, cols, gap)


def layer_weights(model: Any, layer: str) -> np.ndarray:
    """Raw weights ``(out, in, kh, kw)`` float32 of a U-Net convolution such as ``enc1.conv2``."""
    net = getattr(model, "net", model)
    level, _, conv = layer.partition(".")
    return getattr(net.level_modules()[level], conv).weight.detach().cpu().float().numpy()


def level_label(level: str, depth: int) -> str:
    """``enc2`` → ``enc2 — encoder, 1/4 resolution`` (bottleneck and decoder likewise)."""
    kind, lv = level[:3], int(level[3:])
    where = "decoder" if kind == "dec" else ("bottleneck" if lv == depth - 1 else "encoder")
    res = "full resolution" if lv == 0 else f"1/{2**lv} resolution"
    return f"{level} — {where}, {res}"


def feature_map_tiles(
    maps: np.ndarray, channels: Sequence[int], min_side: int = 128
) -> tuple[list[np.ndarray], list[str]]:
    """Grey tiles (enlarged by nearest neighbour) and captions for the given channels."""
    tiles, captions = [], []
    for c in channels:
        m = maps[c]
        tiles.append(upscale_to(grey_uint8(m, 0.0, 99.5), min_side))
        captions.append(f"channel {c} · mean {float(np.abs(m).mean()):.3g}")
    return tiles, captions


def filter_bank(
    plane: np.ndarray, scale: float, derivatives: str = "fd"
) -> tuple[np.ndarray, list[str]]:
    """Every engineered feature family of one channel ``(Y, X)`` at one scale.

    Returns ``(F, Y, X)`` float32 and the feature names (Gaussian, LoG, gradient, DoG,
    structure-tensor and Hessian eigenvalues).
    """
    from microseg.features import FAMILIES, FeatureSet, compute_features, feature_names

    fs = FeatureSet.grid(FAMILIES, [scale], derivatives=derivatives)
    feats = compute_features(np.asarray(plane), fs, workers=1)
    return feats, feature_names(fs, 1)


def bank_tiles(
    feats: np.ndarray, names: Sequence[str], min_side: int = 128
) -> tuple[list[np.ndarray], list[str]]:
    """Tiles of engineered features: signed families in diverging colours, others grey."""
    from microseg.features import FAMILY_LABELS

    tiles, captions = [], []
    for f, name in zip(feats, names, strict=True):
        fam = name.split(" ")[0]
        signed = fam in SIGNED_FAMILIES
        img = signed_to_rgb(f, 99.5) if signed else grey_uint8(f)
        tiles.append(upscale_to(img, min_side))
        rest = name[len(fam) :].strip()
        captions.append(f"{FAMILY_LABELS.get(fam, fam)} {rest}".strip())
    return tiles, captions


# ----------------------------------------------------------------------------- streamlit


def _one_sentence(what: str, exc: Exception) -> str:
    if isinstance(exc, MicrosegError):
        return str(exc)
    return f"Could not {what} ({type(exc).__name__})."


def safely(what: str, fn: Callable[[], Any]) -> Any:
    """Run ``fn``; on failure show one ``st.error`` sentence and return None."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - every failure becomes one sentence
        st.error(_one_sentence(what, exc))
        return None


def network_options() -> dict[str, str]:
    """Label → model id of every U-Net that can be inspected now."""
    options: dict[str, str] = {}
    if state.get("models").get("deep") is not None:
        options[SESSION_MODELS["deep"]] = "deep"
    for name in ("nuclei", "grains"):
        if builtin_available(name):
            options[f"Built-in {name} model (U-Net)"] = f"builtin:{name}"
    return options


def pick_network() -> tuple[str, Any] | None:
    """Sidebar choice of the U-Net to inspect; None (with one sentence) when there is none."""
    options = network_options()
    if not options:
        job = state.get("training_job")
        if job is not None and getattr(job, "running", False):
            st.info("A U-Net is training on the Annotate page; it appears here when it finishes.")
        else:
            st.info(NO_NETWORK)
        st.page_link("pages/2_Annotate.py", label="Go to the Annotate page", icon="✏️")
        return None
    labels = list(options)
    preferred = f"builtin:{state.get('task')}"
    ids = list(options.values())
    index = (
        ids.index("deep") if "deep" in ids else (ids.index(preferred) if preferred in ids else 0)
    )
    label = st.sidebar.selectbox("Network", labels, index=index, key="net_model")
    model_id = options[label]
    model = safely("load the model", lambda: get_model(model_id))
    if model is None:
        return None
    if not hasattr(model, "net"):
        st.error("The chosen model is not a U-Net, so it has no layers to show.")
        return None
    return model_id, model


def region_controls(shape_yx: tuple[int, int], key: str) -> tuple[int, int, int, int]:
    """A square region of at most 512 px (the whole image when it is at most 256 px)."""
    h, w = shape_yx
    side = max(h, w)
    if side <= 256:
        return 0, h, 0, w
    sizes = [s for s in (128, 256, 512) if s < side] + ([side] if side <= 512 else [])
    with st.sidebar.expander("Region", expanded=True):
        size = st.select_slider(
            "Region size (px)", sizes, value=256 if 256 in sizes else sizes[-1], key=f"{key}_size"
        )
        cy = st.slider("Centre y", 0, h - 1, h // 2, key=f"{key}_cy")
        cx = st.slider("Centre x", 0, w - 1, w // 2, key=f"{key}_cx")
    sy, sx = min(size, h), min(size, w)
    y0 = int(min(max(cy - sy // 2, 0), h - sy))
    x0 = int(min(max(cx - sx // 2, 0), w - sx))
    return y0, y0 + sy, x0, x0 + sx


def _cache(key: tuple, compute: Callable[[], Any]) -> Any:
    """Per-session cache inside ``state.get("predictions")`` under ``("network", ...)`` keys."""
    store = state.get("predictions")
    if key in store:
        return store[key]
    value = compute()
    mine = [k for k in store if isinstance(k, tuple) and k[:2] == key[:2]]
    for old in mine[: max(0, len(mine) - CACHE_ENTRIES + 1)]:
        store.pop(old, None)
    store[key] = value
    return value


def _snapshot(model: Any) -> Any:
    """A copy of the model with its own network, so hooks and eval() never touch the original."""
    snap = copy.copy(model)
    snap.net = copy.deepcopy(model.net)
    return snap


def cached_feature_maps(
    model_id: str, model: Any, plane: np.ndarray, region_key: tuple
) -> dict[str, np.ndarray]:
    """Feature maps of every level for a cropped ``(C, Y, X)`` plane (cached per session)."""
    from microseg.deep.inspect import feature_maps

    key = ("network", "maps", model_id, id(model), *region_key)
    entry = _cache(key, lambda: (model, feature_maps(_snapshot(model), plane, max_side=512)))
    if entry[0] is not model:  # a different model object reused the id: recompute
        state.get("predictions").pop(key, None)
        return cached_feature_maps(model_id, model, plane, region_key)
    return entry[1]


def cached_filter_bank(
    plane: np.ndarray, scale: float, derivatives: str, region_key: tuple
) -> tuple[np.ndarray, list[str]]:
    """:func:`filter_bank` of a cropped ``(Y, X)`` plane (cached per session)."""
    key = ("network", "bank", scale, derivatives, *region_key)
    return _cache(key, lambda: filter_bank(plane, scale, derivatives))


def render_input(image_u8: np.ndarray, region: tuple[int, int, int, int]) -> None:
    """The input region, enlarged when small."""
    y0, y1, x0, x1 = region
    st.image(
        upscale_to(image_u8, 256, 4),
        caption=f"Input: y {y0}–{y1}, x {x0}–{x1} ({y1 - y0}×{x1 - x0} px)",
        width="stretch",
    )


def render_kernels(model: Any, key: str = "net_kernels") -> None:
    """Kernels of a chosen convolution layer (the first by default) as a colour grid."""
    from microseg.deep.inspect import conv_layer_names, layer_kernels

    names = conv_layer_names(model)
    layer = st.selectbox("Convolution layer", names, index=0, key=f"{key}_layer")
    w = layer_weights(model, layer)
    n_out, n_in = w.shape[:2]
    mode = "averaged"
    if n_in > 1:
        mode = st.radio(
            "Kernels",
            ["averaged", "first"],
            format_func=lambda m: (
                "Averaged over input channels" if m == "averaged" else "First input channels"
            ),
            horizontal=True,
            key=f"{key}_mode",
        )
    if mode == "averaged":
        k = layer_kernels(model, layer)[:MAX_KERNELS]
        grid = kernel_grid(k)
        caption = (
            f"{layer}: {n_out} kernels of {w.shape[2]}×{w.shape[3]}"
            + (f" averaged over {n_in} input channels" if n_in > 1 else "")
            + (f", first {len(k)} shown" if len(k) < n_out else "")
        )
    else:
        n = min(n_in, 8)
        rows = min(n_out, 16)
        k = w[:rows, :n].reshape(rows * n, *w.shape[2:])
        grid = kernel_grid(k, cols=n, cell=30)
        caption = (
            f"{layer}: first {rows} of {n_out} output channels (rows) × "
            f"first {n} of {n_in} input channels (columns), {w.shape[2]}×{w.shape[3]} each"
        )
    st.image(grid, caption=caption, width="stretch")


def render_feature_maps(maps: dict[str, np.ndarray], depth: int, key: str = "net_maps") -> None:
    """The strongest channels of a chosen level."""
    from microseg.deep.inspect import strongest_channels

    levels = list(maps)
    level = st.selectbox(
        "Level", levels, index=0, format_func=lambda lv: level_label(lv, depth), key=f"{key}_lv"
    )
    a = maps[level]
    k = st.slider("Strongest channels", 1, min(16, a.shape[0]), min(8, a.shape[0]), key=f"{key}_k")
    chans = strongest_channels(a, k)
    tiles, captions = feature_map_tiles(a, chans)
    st.caption(
        f"{level}: {a.shape[0]} channels × {a.shape[1]}×{a.shape[2]} px — "
        f"the {len(chans)} strongest by mean activation"
    )
    st.image(tiles, caption=captions, width=150)


def render_progression(input_u8: np.ndarray, maps: dict[str, np.ndarray]) -> None:
    """Input and the strongest channel of every level, side by side."""
    from microseg.deep.inspect import strongest_channels

    tiles = [upscale_to(input_u8, 128, 4)]
    captions = ["input"]
    for level, a in maps.items():
        c = strongest_channels(a, 1)[0]
        tiles.append(upscale_to(grey_uint8(a[c], 0.0, 99.5), 128))
        captions.append(f"{level} · {a.shape[0]}×{a.shape[1]}×{a.shape[2]} · ch {c}")
    for col, tile, caption in zip(st.columns(len(tiles)), tiles, captions, strict=True):
        col.image(tile, caption=caption, width="stretch")


def classical_feature_note() -> str:
    """Which features the session's classical model uses, if there is one."""
    model = state.get("models").get("classical")
    fs = getattr(model, "feature_set", None) if model is not None else None
    if fs is None:
        return "No classical model trained yet; these are the features it would compute."
    describe = getattr(fs, "describe", None)
    return f"The classical model trained here uses: {describe() if describe else fs}."


def render_filter_bank(
    image: MicroImage, t: int, z: int | str, channel: int | None, region: tuple, key: str
) -> None:
    """The engineered features of the region at a chosen scale, with labels."""
    scale = st.select_slider("Scale σ (px)", BANK_SCALES, value=1.6, key=f"{key}_scale")
    c = 0 if channel is None else channel
    y0, y1, x0, x1 = region
    plane = image.plane(t, z)[c, y0:y1, x0:x1]
    result = safely(
        "compute the engineered features",
        lambda: cached_filter_bank(
            plane, float(scale), "fd", (state.get("image_id"), t, z, c, region)
        ),
    )
    if result is None:
        return
    feats, names = result
    tiles, captions = bank_tiles(feats, names)
    chan = f", channel {image.channel_names[c]}" if image.n_channels > 1 else ""
    st.caption(
        f"{len(names)} features at σ = {scale:g} px{chan}, {feats.shape[1]}×{feats.shape[2]} px "
        f"each — blue/red: negative/positive. {classical_feature_note()}"
    )
    st.image(tiles, caption=captions, width=150)

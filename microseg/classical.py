"""Random-forest pixel classifier on engineered features (the "classical ML" model).

Training uses the painted pixels only (balanced per class, capped), so refitting
after every stroke is fast; features are computed once per image and can be
passed in (``features=``) for the live loop. Prediction walks the trees with
scikit-learn's compiled traversal directly on the ``(F, Y, X)`` feature stack,
in chunks spread over threads.

Model files hold the forest as plain arrays (per node: children, feature,
threshold, class fractions) plus JSON metadata; loading rebuilds scikit-learn
trees from those arrays after checking them, and never unpickles anything.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from microseg.errors import InputError, ModelFileError
from microseg.features import FeatureSet, compute_features, feature_names
from microseg.preprocess import as_channels
from microseg.strokes import validate_strokes
from microseg.tasks import TASKS, task_spec

KIND = "rf"
NORMALISATION = {"method": "percentile", "low": 1.0, "high": 99.8, "per": "image"}
DEFAULT_N_ESTIMATORS = 24
DEFAULT_MAX_DEPTH = 12
DEFAULT_MAX_PER_CLASS = 10_000
_CHUNK = 32_768
_TREE_KEYS = (
    "tree_offsets",
    "children_left",
    "children_right",
    "feature",
    "threshold",
    "missing_left",
    "value",
)


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


class RandomForestSegmenter:
    """Pixel classifier: ilastik-style features and a random forest.

    Create it untrained and call :meth:`fit`, or :meth:`load` a model file.

    Attributes
    ----------
    classes : list of str
        Class names; class k (1..K) is ``classes[k-1]``.
    task : str
        ``"nuclei"``, ``"grains"`` or ``"semantic"``.
    feature_set : FeatureSet
        Features the forest was trained on.
    n_channels : int
        Channels of the training images.
    metadata : dict
        What the model file's header holds.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or _default_workers()
        self.classes: list[str] = []
        self.task = "semantic"
        self.feature_set = FeatureSet()
        self.n_channels = 1
        self.metadata: dict[str, Any] = {}
        self._arrays: dict[str, np.ndarray] = {}
        self._trees: list[Any] = []
        self._leaf_values: list[np.ndarray] = []

    # ------------------------------------------------------------------ properties

    @property
    def is_trained(self) -> bool:
        """Whether the model holds a forest."""
        return bool(self._trees)

    @property
    def n_features(self) -> int:
        """Number of feature images the forest reads."""
        return self.feature_set.n_features(self.n_channels)

    @property
    def feature_importances(self) -> dict[str, float]:
        """Mean decrease in impurity per feature name (from training)."""
        imp = self._arrays.get("feature_importances")
        if imp is None:
            return {}
        return dict(
            zip(feature_names(self.feature_set, self.n_channels), imp.tolist(), strict=True)
        )

    # ------------------------------------------------------------------ training

    def fit(
        self,
        image: np.ndarray | Sequence[np.ndarray] | None,
        strokes: np.ndarray | Sequence[np.ndarray],
        classes: Sequence[str] | None = None,
        task: str = "semantic",
        feature_set: FeatureSet | None = None,
        n_estimators: int = DEFAULT_N_ESTIMATORS,
        max_depth: int | None = DEFAULT_MAX_DEPTH,
        seed: int = 0,
        features: np.ndarray | Sequence[np.ndarray] | None = None,
        max_per_class: int = DEFAULT_MAX_PER_CLASS,
    ) -> RandomForestSegmenter:
        """Train on the painted pixels of one or more images.

        Parameters
        ----------
        image : ndarray or list of ndarray
            ``(Y, X)`` or ``(C, Y, X)`` image(s), any dtype; may be ``None`` when
            ``features`` are given.
        strokes : ndarray or list of ndarray
            ``(Y, X)`` labels per image: 0 unlabelled, k class k.
        classes : list of str, optional
            Class names (default: the task's classes, or as many as the largest label).
        task : str
            ``"nuclei"``, ``"grains"`` or ``"semantic"``.
        feature_set : FeatureSet, optional
            Features to compute (default :class:`FeatureSet`); ignored for the
            feature count check when ``features`` are given, which must have been
            computed with it.
        n_estimators, max_depth : int
            Forest size. Few strokes give small trees; ``max_depth`` bounds the
            prediction cost on large stroke sets.
        seed : int
            Seed for pixel sampling and the forest.
        features : ndarray or list of ndarray, optional
            Precomputed ``compute_features(image, feature_set)`` per image (cache them
            for the live loop).
        max_per_class : int
            At most this many painted pixels per class are drawn (balanced classes).
            Fit time grows with it (and with how mixed the classes are); a live loop
            on large painted areas may pass a few thousand.

        Returns
        -------
        RandomForestSegmenter
            ``self``, trained.
        """
        t0 = time.perf_counter()
        task_spec(task)
        fs = feature_set or FeatureSet()
        stroke_list = _as_list(strokes)
        images = _as_list(image) if image is not None else [None] * len(stroke_list)
        feats = _as_list(features) if features is not None else [None] * len(stroke_list)
        if len(images) != len(stroke_list) or len(feats) != len(stroke_list):
            raise InputError(
                f"Got {len(images)} images, {len(feats)} feature stacks and "
                f"{len(stroke_list)} stroke images; give one stroke image per image."
            )
        if any(im is None and f is None for im, f in zip(images, feats, strict=True)):
            raise InputError("Give the image (or its precomputed features) to train on.")
        max_label = max(int(np.max(s)) if np.size(s) else 0 for s in stroke_list)
        names = _class_names(classes, task, max_label)
        n_classes = len(names)

        n_channels: int | None = None
        per_image: list[tuple[np.ndarray, np.ndarray]] = []  # (features 2-D view, strokes flat)
        for im, s, f in zip(images, stroke_list, feats, strict=True):
            if f is None:
                chans = as_channels(np.asarray(im))
                c = chans.shape[0]
                shape = chans.shape[-2:]
            else:
                f = np.asarray(f)
                if f.ndim != 3:
                    raise InputError(f"Features must be (F, Y, X), got shape {f.shape}.")
                if f.shape[0] % max(1, fs.n_features(1)) != 0:
                    raise InputError(
                        f"The features have {f.shape[0]} images, which does not fit the "
                        f"feature set ({fs.n_features(1)} per channel)."
                    )
                c = f.shape[0] // fs.n_features(1)
                shape = f.shape[-2:]
                if im is not None and as_channels(np.asarray(im)).shape[-2:] != shape:
                    raise InputError("The precomputed features do not match the image size.")
            if n_channels is None:
                n_channels = c
            elif c != n_channels:
                raise InputError(
                    f"All training images need the same number of channels ({n_channels}), "
                    f"got one with {c}."
                )
            validate_strokes(
                np.asarray(s), shape, n_classes, names, min_classes=2 if len(images) == 1 else 0
            )
            if f is None:
                f = compute_features(im, fs, workers=self.workers)
            per_image.append((f.reshape(f.shape[0], -1), np.asarray(s).ravel()))

        # every image alone may show one class; together at least two are needed
        counts = np.zeros(n_classes + 1, np.int64)
        for _, s in per_image:
            counts += np.bincount(s, minlength=n_classes + 1)[: n_classes + 1]
        painted = [k for k in range(1, n_classes + 1) if counts[k] > 0]
        if len(painted) < 2:
            raise InputError("Paint at least two classes before training.")

        rng = np.random.default_rng(seed)
        xs, ys = [], []
        total = counts[1:].astype(np.float64)
        for f2, s in per_image:
            idx = np.flatnonzero(s)
            lab = s[idx]
            take = []
            for k in painted:
                pick = idx[lab == k]
                if pick.size == 0:
                    continue
                # share of the per-class cap proportional to this image's pixels of class k
                quota = int(np.ceil(max_per_class * pick.size / total[k - 1]))
                if pick.size > quota:
                    pick = rng.choice(pick, quota, replace=False)
                take.append(pick)
            sel = np.sort(np.concatenate(take))
            xs.append(np.ascontiguousarray(f2[:, sel].T, dtype=np.float32))
            ys.append(s[sel].astype(np.int64))
        x = np.concatenate(xs)
        y = np.concatenate(ys)

        trees = _fit_trees(x, y, int(n_estimators), max_depth, int(seed), self.workers)
        t_fit = time.perf_counter() - t0

        self.classes = list(names)
        self.task = task
        self.feature_set = fs
        self.n_channels = int(n_channels or 1)
        self._arrays = _forest_to_arrays(trees, n_classes)
        imp = np.mean([t.feature_importances_ for t in trees], axis=0)
        self._arrays["feature_importances"] = (imp / max(imp.sum(), 1e-12)).astype(np.float32)
        self._build_trees()
        n_nodes = int(self._arrays["tree_offsets"][-1])
        self.metadata = self._make_metadata(
            {
                "n_images": len(per_image),
                "stroke_pixels": {names[k - 1]: int(counts[k]) for k in range(1, n_classes + 1)},
                "samples": {names[k - 1]: int((y == k).sum()) for k in range(1, n_classes + 1)},
                "unpainted_classes": [
                    names[k - 1] for k in range(1, n_classes + 1) if counts[k] == 0
                ],
                "n_estimators": int(n_estimators),
                "max_depth": max_depth,
                "max_per_class": int(max_per_class),
                "seed": int(seed),
                "n_nodes": n_nodes,
                "seconds": round(t_fit, 3),
                "algorithm": "random forest (bootstrap, sqrt features, gini)",
            }
        )
        return self

    # ------------------------------------------------------------------ prediction

    def features(self, image: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """Compute this model's features for ``image`` (cache them for repeated calls);
        ``reference``: see :func:`~microseg.features.compute_features`."""
        self._check_image(image)
        return compute_features(image, self.feature_set, workers=self.workers, reference=reference)

    def predict_proba(
        self,
        image: np.ndarray | None,
        features: np.ndarray | None = None,
        feature_set: FeatureSet | None = None,
        reference: np.ndarray | None = None,
    ) -> np.ndarray:
        """Class probabilities ``(K, Y, X)`` float32.

        Parameters
        ----------
        image : ndarray or None
            ``(Y, X)`` or ``(C, Y, X)``, any dtype. May be ``None`` when ``features``
            are given.
        features : ndarray, optional
            ``(F, Y', X')`` from :meth:`features` / :func:`compute_features` with this
            model's feature set; a strided view such as ``features[:, ::2, ::2]``
            gives a quick low-resolution preview of shape ``(K, Y', X')``.
        feature_set : FeatureSet, optional
            The set ``features`` were computed with; refused unless it is the model's.
        reference : ndarray, optional
            ``(C, N)`` values the normalisation percentiles are taken from (the whole
            image's sample when ``image`` is one tile of it).
        """
        self._require_trained()
        if feature_set is not None:
            self.check_compatible(feature_set=feature_set)
        if features is None:
            if image is None:
                raise InputError("Give an image (or its features) to predict.")
            features = self.features(image, reference)
        else:
            features = np.asarray(features)
            if image is not None:
                self._check_image(image)
                if as_channels(np.asarray(image)).shape[-2:] != features.shape[-2:]:
                    raise InputError("The features do not match the image size.")
            self._check_features(features)
        return self._predict_features(features)

    def check_compatible(
        self, feature_set: FeatureSet | None = None, n_channels: int | None = None
    ) -> None:
        """Raise :class:`InputError` unless features/images of this kind suit the model."""
        if feature_set is not None and feature_set.key() != self.feature_set.key():
            raise InputError(
                f"The model was trained on the features '{self.feature_set.describe()}' but "
                f"these are '{feature_set.describe()}'; use the model's feature set or retrain."
            )
        if n_channels is not None and int(n_channels) != self.n_channels:
            raise InputError(
                f"The model was trained on {self.n_channels}-channel images but this image "
                f"has {n_channels} channel{'s' if n_channels != 1 else ''}."
            )

    def predict(self, image: np.ndarray | None, features: np.ndarray | None = None) -> np.ndarray:
        """Most probable class per pixel, ``(Y, X)`` uint8 with values 1..K."""
        return probabilities_to_classes(self.predict_proba(image, features))

    def _predict_features(self, features: np.ndarray) -> np.ndarray:
        f, ny, nx = features.shape
        if features.dtype != np.float32:
            features = features.astype(np.float32)
        n = ny * nx
        flat = features.reshape(f, n)  # a view for a C-ordered stack, else a copy
        x = flat.T  # (N, F) strided view: the tree traversal reads it in place
        k = len(self.classes)
        out = np.empty((k, n), np.float32)
        trees, leaf_values = self._trees, self._leaf_values
        inv = np.float32(1.0 / len(trees))

        def run(start: int) -> None:
            stop = min(start + _CHUNK, n)
            xc = x[start:stop]
            # class fractions of each leaf sum to 1: accumulate K - 1, the last is the rest
            acc = np.zeros((k - 1, stop - start), np.float32)
            for tree, vals in zip(trees, leaf_values, strict=True):
                leaves = tree.apply(xc)
                for c in range(k - 1):
                    acc[c] += vals[c].take(leaves)
            o = out[:, start:stop]
            np.multiply(acc, inv, out=o[: k - 1])
            np.subtract(np.float32(1.0), o[: k - 1].sum(axis=0), out=o[k - 1])
            np.maximum(o[k - 1], 0.0, out=o[k - 1])

        starts = range(0, n, _CHUNK)
        if self.workers <= 1 or n <= _CHUNK:
            for s in starts:
                run(s)
        else:
            with ThreadPoolExecutor(max_workers=self.workers) as ex:
                list(ex.map(run, starts))
        return out.reshape(k, ny, nx)

    # ------------------------------------------------------------------ helpers for the UI

    def area_fractions(self, class_map: np.ndarray) -> dict[str, float]:
        """Fraction of the image per class name (see :func:`area_fractions`)."""
        fr = area_fractions(class_map, len(self.classes))
        return {name: fr[k] for k, name in enumerate(self.classes, start=1)}

    # ------------------------------------------------------------------ files

    def save(self, path: str | Path) -> Path:
        """Write the forest (arrays) and its metadata to one safetensors file."""
        from microseg.modelfile import save_model

        self._require_trained()
        return save_model(path, dict(self._arrays), self.metadata)

    @classmethod
    def load(cls, path: str | Path, workers: int | None = None) -> RandomForestSegmenter:
        """Load a model file written by :meth:`save`.

        Raises
        ------
        ModelFileError
            When the file is not a random-forest model or its arrays are inconsistent.
        """
        from microseg.modelfile import load_model

        path = Path(path)
        tensors, meta = load_model(path)
        if meta.get("kind") != KIND:
            raise ModelFileError(
                f"{path.name} holds a '{meta.get('kind')}' model, not a random forest."
            )
        model = cls(workers=workers)
        try:
            model.feature_set = FeatureSet.from_dict(meta["feature_set"])
            model.classes = [str(c) for c in meta["classes"]]
            model.task = str(meta["task"])
            model.n_channels = int(meta["n_channels"])
        except (KeyError, TypeError, ValueError, InputError) as exc:
            raise ModelFileError(
                f"{path.name} has incomplete random-forest metadata ({exc})."
            ) from None
        if meta.get("feature_key") not in (None, model.feature_set.key()):
            raise ModelFileError(
                f"{path.name} was trained on features this microseg computes differently; "
                "retrain the model."
            )
        model.metadata = dict(meta)
        model._arrays = {k: np.asarray(v) for k, v in tensors.items()}
        _check_forest_arrays(model._arrays, model.n_features, len(model.classes), path.name)
        model._build_trees()
        return model

    # ------------------------------------------------------------------ internals

    def _make_metadata(self, training: dict[str, Any]) -> dict[str, Any]:
        spec = TASKS.get(self.task)
        return {
            "kind": KIND,
            "task": self.task,
            "classes": list(self.classes),
            "colours": list(spec.colours[: len(self.classes)]) if spec else [],
            "feature_set": self.feature_set.to_dict(),
            "feature_key": self.feature_set.key(),
            "feature_names": feature_names(self.feature_set, self.n_channels),
            "n_channels": self.n_channels,
            "n_features": self.n_features,
            "normalisation": dict(NORMALISATION),
            "training": training,
        }

    def _build_trees(self) -> None:
        self._trees, self._leaf_values = _arrays_to_trees(
            self._arrays, self.n_features, len(self.classes)
        )

    def _require_trained(self) -> None:
        if not self._trees:
            raise InputError("The classifier is not trained yet; paint strokes and train it first.")

    def _check_image(self, image: np.ndarray) -> None:
        self.check_compatible(n_channels=as_channels(np.asarray(image)).shape[0])

    def _check_features(self, features: np.ndarray) -> None:
        if features.ndim != 3 or features.shape[0] != self.n_features:
            got = features.shape[0] if features.ndim == 3 else features.shape
            raise InputError(
                f"The model expects {self.n_features} feature images "
                f"({self.feature_set.describe()}, {self.n_channels} channel(s)) but got {got}; "
                "compute the features with the model's feature set."
            )


# ---------------------------------------------------------------------- forest <-> arrays


def _fit_trees(
    x: np.ndarray, y: np.ndarray, n_trees: int, max_depth: int | None, seed: int, workers: int
) -> list[Any]:
    """A random forest: trees on bootstrap samples, sqrt(F) candidate features per split.

    The same algorithm as scikit-learn's ``RandomForestClassifier`` (bootstrap as
    sample weights), without its per-tree bookkeeping, which dominates on the few
    thousand pixels of a stroke set; trees are built in threads.
    """
    from sklearn.tree import DecisionTreeClassifier

    if n_trees < 1:
        raise InputError("A forest needs at least one tree.")
    n = len(y)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, n_trees)
    weights = [
        np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64) for _ in range(n_trees)
    ]
    yf = y.astype(np.float64)

    def grow(i: int) -> Any:
        tree = DecisionTreeClassifier(
            max_depth=max_depth, max_features="sqrt", random_state=int(seeds[i])
        )
        return tree.fit(x, yf, sample_weight=weights[i], check_input=False)

    if workers <= 1 or n_trees == 1:
        return [grow(i) for i in range(n_trees)]
    with ThreadPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(grow, range(n_trees)))


def _forest_to_arrays(trees: Sequence[Any], n_classes: int) -> dict[str, np.ndarray]:
    """Concatenate the trees' node arrays; class fractions are mapped to classes 1..K."""
    lefts, rights, feats, thrs, miss, vals, offsets = [], [], [], [], [], [], [0]
    for est in trees:
        cols = np.asarray(est.classes_, np.int64) - 1
        t = est.tree_
        lefts.append(t.children_left.astype(np.int32))
        rights.append(t.children_right.astype(np.int32))
        feats.append(t.feature.astype(np.int32))
        thrs.append(t.threshold.astype(np.float64))
        miss.append(t.missing_go_to_left.astype(np.uint8))
        v = t.value[:, 0, :].astype(np.float64)
        v /= np.maximum(v.sum(axis=1, keepdims=True), 1e-300)
        full = np.zeros((t.node_count, n_classes), np.float64)
        full[:, cols] = v
        vals.append(full)
        offsets.append(offsets[-1] + t.node_count)
    return {
        "tree_offsets": np.asarray(offsets, np.int64),
        "children_left": np.concatenate(lefts),
        "children_right": np.concatenate(rights),
        "feature": np.concatenate(feats),
        "threshold": np.concatenate(thrs),
        "missing_left": np.concatenate(miss),
        "value": np.concatenate(vals),
    }


def _check_forest_arrays(
    arrays: dict[str, np.ndarray], n_features: int, n_classes: int, name: str
) -> None:
    """Refuse arrays that could send the tree traversal out of bounds."""
    missing = [k for k in _TREE_KEYS if k not in arrays]
    if missing:
        raise ModelFileError(f"{name} lacks the forest arrays {', '.join(missing)}.")
    integer = ("tree_offsets", "children_left", "children_right", "feature", "missing_left")
    if not all(np.issubdtype(arrays[k].dtype, np.integer) for k in integer) or not all(
        np.issubdtype(arrays[k].dtype, np.floating) for k in ("threshold", "value")
    ):
        raise ModelFileError(f"{name} has forest arrays of the wrong type.")
    off = arrays["tree_offsets"]
    total = int(off[-1]) if off.ndim == 1 and off.size >= 2 else -1
    ok = (
        off.ndim == 1
        and off.size >= 2
        and off[0] == 0
        and bool(np.all(np.diff(off) > 0))
        and all(arrays[k].shape[:1] == (total,) for k in _TREE_KEYS[1:])
        and arrays["value"].shape == (total, n_classes)
    )
    if not ok:
        raise ModelFileError(f"{name} has inconsistent forest arrays.")
    left, right, feat = arrays["children_left"], arrays["children_right"], arrays["feature"]
    local = np.arange(total) - np.repeat(off[:-1], np.diff(off))
    size = np.repeat(np.diff(off), np.diff(off))
    leaf = left == -1
    internal_ok = (left > local) & (left < size) & (right > local) & (right < size)
    if not (
        np.all(leaf == (right == -1))
        and np.all(internal_ok | leaf)
        and np.all((feat[~leaf] >= 0) & (feat[~leaf] < n_features))
        and np.all(np.isfinite(arrays["value"]))
    ):
        raise ModelFileError(
            f"{name} has a damaged forest or one made for a different number of features."
        )


def _arrays_to_trees(
    arrays: dict[str, np.ndarray], n_features: int, n_classes: int
) -> tuple[list[Any], list[np.ndarray]]:
    """Rebuild scikit-learn ``Tree`` objects (for their compiled traversal) from arrays."""
    from sklearn.tree._tree import NODE_DTYPE, Tree

    off = arrays["tree_offsets"]
    trees, leaf_values = [], []
    for i in range(off.size - 1):
        a, b = int(off[i]), int(off[i + 1])
        n = b - a
        nodes = np.zeros(n, dtype=NODE_DTYPE)
        nodes["left_child"] = arrays["children_left"][a:b]
        nodes["right_child"] = arrays["children_right"][a:b]
        nodes["feature"] = np.where(arrays["children_left"][a:b] == -1, -2, arrays["feature"][a:b])
        nodes["threshold"] = np.where(
            arrays["children_left"][a:b] == -1, -2.0, arrays["threshold"][a:b]
        )
        nodes["missing_go_to_left"] = arrays["missing_left"][a:b]
        nodes["n_node_samples"] = 1
        nodes["weighted_n_node_samples"] = 1.0
        value = np.ascontiguousarray(arrays["value"][a:b], np.float64)
        tree = Tree(n_features, np.array([n_classes], np.intp), 1)
        tree.__setstate__(
            {
                "max_depth": _depth(arrays["children_left"][a:b], arrays["children_right"][a:b]),
                "node_count": n,
                "nodes": nodes,
                "values": value[:, None, :],
            }
        )
        trees.append(tree)
        leaf_values.append(np.ascontiguousarray(value.T, np.float32))
    return trees, leaf_values


def _depth(left: np.ndarray, right: np.ndarray) -> int:
    """Depth of a tree (root only: 0), walking it level by level."""
    frontier = np.zeros(1, np.int64)
    depth = -1
    while frontier.size and depth < left.size:
        depth += 1
        inner = frontier[left[frontier] != -1]
        frontier = np.concatenate([left[inner], right[inner]]).astype(np.int64)
    return depth


# ---------------------------------------------------------------------- functions


def probabilities_to_classes(proba: np.ndarray) -> np.ndarray:
    """Most probable class per pixel: ``(K, Y, X)`` -> ``(Y, X)`` uint8 with values 1..K."""
    return (np.argmax(proba, axis=0) + 1).astype(np.uint8)


def uncertainty(proba: np.ndarray, method: str = "margin") -> np.ndarray:
    """How unsure the model is per pixel, ``(Y, X)`` float32 in [0, 1].

    Parameters
    ----------
    proba : ndarray
        ``(K, Y, X)`` class probabilities.
    method : {"margin", "entropy"}
        ``"margin"``: 1 - (largest - second largest probability);
        ``"entropy"``: entropy divided by log K.
    """
    proba = np.asarray(proba, np.float32)
    if proba.ndim != 3 or proba.shape[0] < 1:
        raise InputError(f"Probabilities must be (K, Y, X), got shape {proba.shape}.")
    k = proba.shape[0]
    if k == 1:
        return np.zeros(proba.shape[1:], np.float32)
    if method == "margin":
        if k == 2:
            out = np.abs(proba[0] - proba[1])
        else:
            top2 = np.partition(proba, k - 2, axis=0)[k - 2 :]
            out = top2[1] - top2[0]
        np.subtract(np.float32(1.0), out, out=out)
        return np.clip(out, 0.0, 1.0, out=out)
    if method == "entropy":
        p = np.clip(proba, 1e-12, 1.0)
        ent = -(p * np.log(p)).sum(axis=0) / np.float32(np.log(k))
        return np.clip(ent, 0.0, 1.0).astype(np.float32)
    raise InputError(f"Unknown uncertainty method '{method}'; choose 'margin' or 'entropy'.")


def suggest_regions(
    uncertainty_map: np.ndarray,
    n: int = 5,
    size: int | None = None,
    exclude: np.ndarray | None = None,
) -> list[tuple[int, int, int, int]]:
    """Where to paint next: the ``n`` square regions of highest mean uncertainty.

    Parameters
    ----------
    uncertainty_map : ndarray
        ``(Y, X)`` from :func:`uncertainty`.
    n : int
        Number of regions (fewer when the image has no room for more).
    size : int, optional
        Edge of a region in pixels (default: an eighth of the shorter side, 16 to 128).
    exclude : ndarray, optional
        ``(Y, X)`` strokes or mask; regions over already painted pixels score lower.

    Returns
    -------
    list of (y0, x0, y1, x1)
        Non-overlapping boxes, most uncertain first (``y1``/``x1`` exclusive).
    """
    u = np.asarray(uncertainty_map, np.float64)
    if u.ndim != 2:
        raise InputError(f"The uncertainty map must be 2-D, got shape {u.shape}.")
    ny, nx = u.shape
    if size is None:
        size = int(np.clip(min(ny, nx) // 8, 16, 128))
    size = int(max(1, min(size, ny, nx)))
    if exclude is not None:
        ex = np.asarray(exclude) > 0
        if ex.shape != u.shape:
            raise InputError("The exclusion mask does not match the uncertainty map.")
        u = np.where(ex, 0.0, u)
    # mean over every size x size window from an integral image, at a stride
    step = max(1, size // 4)
    ii = np.zeros((ny + 1, nx + 1), np.float64)
    np.cumsum(np.cumsum(u, axis=0), axis=1, out=ii[1:, 1:])
    ys = np.arange(0, ny - size + 1, step)
    xs = np.arange(0, nx - size + 1, step)
    if ys[-1] != ny - size:
        ys = np.append(ys, ny - size)
    if xs[-1] != nx - size:
        xs = np.append(xs, nx - size)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    score = (ii[y0 + size, x0 + size] - ii[y0, x0 + size] - ii[y0 + size, x0] + ii[y0, x0]) / (
        size * size
    )
    order = np.argsort(score, axis=None, kind="stable")[::-1]
    cy, cx = y0.ravel()[order], x0.ravel()[order]
    sc = score.ravel()[order]
    chosen: list[tuple[int, int, int, int]] = []
    taken = np.zeros(len(order), bool)
    for i in range(len(order)):  # over candidate windows until n are found
        if len(chosen) >= n:
            break
        if taken[i] or sc[i] <= 1e-6:
            continue
        by, bx = int(cy[i]), int(cx[i])
        chosen.append((by, bx, by + size, bx + size))
        taken |= (np.abs(cy - by) < size) & (np.abs(cx - bx) < size)
    return chosen


def area_fractions(class_map: np.ndarray, n_classes: int) -> dict[int, float]:
    """Fraction of classified pixels per class ``{k: fraction}`` for k = 1..K.

    Pixels with 0 (not classified) are left out; fractions sum to 1 when any pixel
    is classified (all 0 otherwise).
    """
    cm = np.asarray(class_map)
    counts = np.bincount(cm.ravel().astype(np.intp), minlength=n_classes + 1)[1 : n_classes + 1]
    total = counts.sum()
    return {k + 1: (float(c) / float(total) if total else 0.0) for k, c in enumerate(counts)}


def apply_to_stack(
    model: Any,
    micro_image: Any,
    progress: Callable[[int, int], None] | None = None,
    stop: threading.Event | None = None,
    z: int | str = 0,
) -> np.ndarray:
    """Classify every frame of a :class:`~microseg.image.MicroImage`.

    Each frame is normalised on its own (robust to brightness drift).

    Parameters
    ----------
    model : Segmenter
        A trained model (random forest or U-Net).
    micro_image : MicroImage
        The stack (T frames).
    progress : callable, optional
        Called as ``progress(done, total)`` after each frame.
    stop : threading.Event, optional
        When set, the loop ends after the current frame.
    z : int or "max"
        Which z slice to classify (or a maximum projection).

    Returns
    -------
    ndarray
        ``(T, Y, X)`` uint8 class maps 1..K; fewer frames when stopped early.
    """
    n_t = micro_image.n_frames
    ny, nx = micro_image.shape_yx
    out = np.zeros((n_t, ny, nx), np.uint8)
    done = 0
    for t in range(n_t):
        if stop is not None and stop.is_set():
            break
        proba = model.predict_proba(micro_image.frame(t, z))
        out[t] = probabilities_to_classes(proba)
        done = t + 1
        if progress is not None:
            progress(done, n_t)
    return out[:done]


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, (list, tuple)):
        return list(value)
    return [np.asarray(value)]


def _class_names(classes: Sequence[str] | None, task: str, max_label: int) -> list[str]:
    if classes is not None:
        names = [str(c) for c in classes]
    else:
        spec = task_spec(task)
        names = list(spec.classes)
        if max_label > len(names):
            if task == "semantic":
                names += [f"class {k}" for k in range(len(names) + 1, min(max_label, 254) + 1)]
            else:  # optional roles (nuclei: border); larger labels are refused later
                names += list(spec.optional[: max_label - len(names)])
    if len(names) < 2:
        raise InputError("A classifier needs at least two classes.")
    if len(set(names)) != len(names):
        raise InputError("Class names must be unique.")
    if len(names) > 254:
        raise InputError("At most 254 classes are supported.")
    return names

"""Property-based tests (hypothesis) of the image readers, the stroke/label conversion
and the metrics: any input gives a result with the stated properties, or one sentence."""

from __future__ import annotations

import io

import numpy as np
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from microseg.errors import InputError
from microseg.io import read_image
from microseg.metrics import average_precision, boundary_f1, ctc_seg, match_instances, pixel_f1

PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

SUFFIXES = st.sampled_from(["x.tif", "x.png", "x.jpg", "x.czi", "x.bin", "x"])
HEADERS = st.sampled_from([b"", b"II*\x00", b"MM\x00*", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff",
                           b"ZISRAWFILE", b"II+\x00\x08\x00\x00\x00"])  # fmt: skip


def _one_sentence(exc: InputError) -> None:
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text and len(text) < 400


@PROPERTY
@given(head=HEADERS, body=st.binary(max_size=600), name=SUFFIXES)
def test_any_bytes_read_as_an_image_or_one_sentence(head, body, name):
    try:
        image = read_image(head + body, name=name)
    except InputError as exc:
        _one_sentence(exc)
    else:
        assert image.data.ndim == 5 and np.isfinite(image.data).all()


ARRAYS = hnp.arrays(
    dtype=st.sampled_from([np.uint8, np.uint16, np.int16, np.float32, np.float64, np.bool_]),
    shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=24),
)


@PROPERTY
@given(array=ARRAYS, nan=st.booleans())
def test_any_tiff_array_reads_finite_with_its_plane_or_is_one_sentence(array, nan):
    if nan and array.dtype.kind == "f" and array.size:
        array = array.copy()
        array.flat[0] = np.nan
    buf = io.BytesIO()
    tifffile.imwrite(buf, array)
    try:
        image = read_image(buf.getvalue(), name="a.tif")
    except InputError as exc:
        _one_sentence(exc)
    else:
        assert np.isfinite(image.data).all()
        assert image.shape_yx[0] >= 8 and image.shape_yx[1] >= 8
        assert image.data.size <= array.size * 3  # at most grey to RGB, never more


LABELS = hnp.arrays(np.int32, st.tuples(st.integers(1, 20), st.integers(1, 20)),
                    elements=st.integers(0, 5))  # fmt: skip


@PROPERTY
@given(gt=LABELS, data=st.data())
def test_instance_scores_are_bounded_and_perfect_on_identity(gt, data):
    pred = data.draw(hnp.arrays(np.int32, gt.shape, elements=st.integers(0, 5)))
    m = match_instances(gt, pred)
    assert m.tp + m.fn == len(np.unique(gt[gt > 0]))
    assert m.tp + m.fp == len(np.unique(pred[pred > 0]))
    for v in (m.precision, m.recall, m.f1, m.ap):
        assert 0.0 <= v <= 1.0
    ap = average_precision(gt, pred)
    assert all(
        a >= b - 1e-12 for a, b in zip(ap.ap, ap.ap[1:], strict=False)
    )  # stricter IoU, lower AP
    assert 0.0 <= ctc_seg(gt, pred) <= 1.0
    same = match_instances(gt, gt)
    assert same.ap == 1.0 and ctc_seg(gt, gt) == 1.0
    # a relabelling of the same objects scores the same
    perm = np.concatenate([[0], np.random.default_rng(0).permutation(np.arange(1, 6)) + 10])
    assert match_instances(gt, perm[pred]).ap == m.ap


MASKS = hnp.arrays(np.bool_, st.tuples(st.integers(1, 24), st.integers(1, 24)))


@PROPERTY
@given(gt=MASKS, data=st.data(), tol=st.floats(0, 4))
def test_boundary_and_pixel_f1_are_bounded_symmetric_and_monotone_in_tolerance(gt, data, tol):
    pred = data.draw(hnp.arrays(np.bool_, gt.shape))
    b = boundary_f1(gt, pred, tol)
    assert 0.0 <= b.precision <= 1.0 and 0.0 <= b.recall <= 1.0 and 0.0 <= b.f1 <= 1.0
    swapped = boundary_f1(pred, gt, tol)
    assert abs(swapped.f1 - b.f1) < 1e-12 and abs(swapped.precision - b.recall) < 1e-12
    assert boundary_f1(gt, pred, tol + 1).f1 >= b.f1 - 1e-12
    assert boundary_f1(gt, gt, tol).f1 == 1.0
    assert 0.0 <= pixel_f1(gt, pred) <= 1.0 and pixel_f1(gt, gt) == 1.0


@PROPERTY
@given(gt=MASKS, tol=st.floats(-5, -1e-6) | st.just(float("nan")))
def test_a_bad_tolerance_is_one_sentence(gt, tol):
    try:
        boundary_f1(gt, gt, tol)
    except InputError as exc:
        _one_sentence(exc)
    else:
        raise AssertionError(f"tolerance {tol} was accepted")


COLOURS = ["#ff0000", "#00ff00", "#0000ff"]
POINT = st.tuples(st.floats(-50, 150, allow_nan=False), st.floats(-50, 150, allow_nan=False))
PATHS = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.just("path"),
            "stroke": st.sampled_from(COLOURS + ["#123456", "not a colour", ""]),
            "strokeWidth": st.floats(-2, 30) | st.just(float("nan")),
            "path": st.lists(
                st.tuples(st.just("L"), *[st.floats(-50, 150)] * 2).map(list), max_size=6
            ).map(lambda p: [["M", 10.0, 10.0], *p]),
        }
    ),  # fmt: skip
    max_size=4,
)


@PROPERTY
@given(objects=PATHS, out=st.tuples(st.integers(8, 40), st.integers(8, 40)))
def test_any_canvas_paths_give_class_labels_of_the_image_shape_or_one_sentence(objects, out):
    from microseg.strokes import merge_strokes, strokes_from_paths

    try:
        labels = strokes_from_paths(objects, COLOURS, (100, 100), out)
    except InputError as exc:
        _one_sentence(exc)
        return
    assert labels.shape == out and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    merged = merge_strokes(None, labels)
    assert np.array_equal(merged, labels) and merged is not labels


@PROPERTY
@given(mask=hnp.arrays(np.int32, st.tuples(st.integers(8, 24), st.integers(8, 24)),
                       elements=st.integers(0, 6)))  # fmt: skip
def test_dense_masks_become_targets_that_label_every_pixel(mask):
    from microseg.deep.train import targets_from_masks

    nuclei = targets_from_masks(mask, "nuclei")
    assert nuclei.shape == mask.shape and set(np.unique(nuclei)) <= {1, 2, 3}
    assert ((nuclei == 1) == (mask == 0)).all()  # background stays background
    binary = (mask > 2).astype(np.uint8)  # a boundary map: nonzero = boundary
    grains = targets_from_masks(binary, "grains")
    assert set(np.unique(grains)) <= {1, 2} and ((grains == 2) == (binary != 0)).all()

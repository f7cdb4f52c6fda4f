"""Engineered features against scipy / scikit-image on small arrays."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from microseg.errors import InputError
from microseg.features import (
    DEFAULT_FAMILIES,
    DEFAULT_SCALES,
    FAMILIES,
    SCALES,
    FeatureSet,
    compute_features,
    eigvals_sym2,
    feature_names,
    gaussian,
)


def smooth_image(shape=(64, 72), seed=0) -> np.ndarray:
    """A few broad blobs plus a ridge: smooth enough for derivative comparisons."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float64)
    img = np.zeros(shape)
    for _ in range(5):
        cy, cx = rng.uniform(10, shape[0] - 10), rng.uniform(10, shape[1] - 10)
        s = rng.uniform(4, 8)
        img += rng.uniform(0.5, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    img += 0.5 * np.exp(-((yy - 0.6 * xx - 5) ** 2) / 18.0)
    return img.astype(np.float32)


def one_feature(img: np.ndarray, family: str, scale: float, derivatives: str = "fd"):
    fs = FeatureSet(((family, scale),), derivatives)
    return compute_features(img, fs, normalise=False)


@pytest.mark.parametrize("sigma", [0.3, 0.35, 0.5, 0.7, 0.8, 1.0, 1.6, 3.5])
def test_gaussian_equals_scipy(sigma):
    a = np.random.default_rng(1).random((37, 45), dtype=np.float32)
    ours = gaussian(a, sigma)
    ref = ndi.gaussian_filter(a, sigma, mode="reflect", truncate=4.0)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_gaussian_small_image_falls_back():
    a = np.random.default_rng(2).random((3, 40), dtype=np.float32)
    np.testing.assert_allclose(gaussian(a, 1.0), ndi.gaussian_filter(a, 1.0), atol=1e-6)


def test_gaussian_feature_is_scipy_of_normalised_image():
    from microseg.preprocess import normalize_percentile

    img = (smooth_image() * 200).astype(np.uint8)
    f = compute_features(img, FeatureSet((("gaussian", 1.6),)))
    ref = ndi.gaussian_filter(normalize_percentile(img)[0], 1.6)
    np.testing.assert_allclose(f[0], ref, atol=1e-5)


def test_eigvals_sym2_match_skimage():
    from skimage.feature import hessian_matrix_eigvals

    rng = np.random.default_rng(3)
    a, b, d = (rng.normal(size=(20, 30)).astype(np.float32) for _ in range(3))
    ours = eigvals_sym2(a, b, d)
    ref = hessian_matrix_eigvals([a, b, d])
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert np.all(ours[0] >= ours[1])


@pytest.mark.parametrize("derivatives,tol", [("exact", 0.01), ("fd", 0.03)])
def test_hessian_eigenvalues_match_skimage(derivatives, tol):
    from skimage.feature import hessian_matrix, hessian_matrix_eigvals

    img = smooth_image()
    ours = one_feature(img, "hessian", 3.5, derivatives)
    h = hessian_matrix(img, sigma=3.5, mode="reflect", use_gaussian_derivatives=True)
    ref = hessian_matrix_eigvals(h)
    scale = np.abs(ref).max()
    assert np.abs(ours - ref)[:, 8:-8, 8:-8].max() < tol * scale


@pytest.mark.parametrize("derivatives", ["exact", "fd"])
def test_structure_tensor_matches_skimage(derivatives):
    from skimage.feature import structure_tensor, structure_tensor_eigenvalues

    img = smooth_image()
    sigma = 3.5
    ours = one_feature(img, "structure", sigma, derivatives)
    # skimage: Sobel derivatives (8x a unit derivative) of the image smoothed at the inner scale
    smoothed = ndi.gaussian_filter(img, sigma)
    ref = (
        structure_tensor_eigenvalues(
            structure_tensor(smoothed, sigma=0.5 * sigma, mode="reflect", order="rc")
        )
        / 64.0
    )
    scale = np.abs(ref).max()
    assert np.abs(ours - ref)[:, 8:-8, 8:-8].max() < 0.06 * scale


@pytest.mark.parametrize("derivatives,tol", [("exact", 0.01), ("fd", 0.03)])
def test_log_and_gradient_match_scipy(derivatives, tol):
    img = smooth_image()
    log = one_feature(img, "log", 3.5, derivatives)[0]
    ref = ndi.gaussian_laplace(img, 3.5)
    assert np.abs(log - ref)[8:-8, 8:-8].max() < tol * np.abs(ref).max()
    ggm = one_feature(img, "gradient", 3.5, derivatives)[0]
    ref = ndi.gaussian_gradient_magnitude(img, 3.5)
    assert np.abs(ggm - ref)[8:-8, 8:-8].max() < tol * np.abs(ref).max()


def test_dog_is_difference_of_gaussians():
    img = smooth_image()
    dog = one_feature(img, "dog", 1.6)[0]
    ref = ndi.gaussian_filter(img, 1.6) - ndi.gaussian_filter(img, 0.66 * 1.6)
    np.testing.assert_allclose(dog, ref, atol=1e-6)


def test_shapes_dtypes_names_multichannel():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 4000, (2, 40, 50)).astype(np.uint16)
    fs = FeatureSet()
    f = compute_features(img, fs)
    names = feature_names(fs, 2)
    assert f.dtype == np.float32
    assert f.shape == (fs.n_features(2), 40, 50) == (len(names), 40, 50)
    assert len(set(names)) == len(names)
    assert names[0].startswith("ch0 ") and names[-1].startswith("ch1 ")
    # channel 1's block equals the features of channel 1 alone
    alone = compute_features(img[1], fs)
    np.testing.assert_allclose(f[fs.n_features(1) :], alone, atol=1e-6)
    assert np.isfinite(f).all()


def test_default_selection():
    fs = FeatureSet()
    assert fs.families == DEFAULT_FAMILIES
    assert fs.scales == DEFAULT_SCALES
    assert fs.scales_of("structure") == (0.7, 1.0, 1.6)
    # two outputs each for structure and hessian
    assert fs.n_features(1) == len(DEFAULT_SCALES) * 7 - 2


def test_full_grid_skips_undefined_cells():
    fs = FeatureSet.grid(FAMILIES, SCALES)
    assert ("gaussian", 0.3) in fs.selection
    assert ("log", 0.3) not in fs.selection
    assert fs.n_features(1) == 7 + 6 * 5 + 6 * 2


def test_normalisation_makes_features_invariant_to_gain_and_offset():
    img = (smooth_image() * 100).astype(np.float32)
    a = compute_features(img)
    b = compute_features(3.0 * img + 50.0)
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_threads_give_identical_results():
    img = np.random.default_rng(5).random((48, 40), dtype=np.float32)
    fs = FeatureSet.grid(FAMILIES, (0.7, 1.6, 5.0))
    np.testing.assert_array_equal(
        compute_features(img, fs, workers=1), compute_features(img, fs, workers=3)
    )


def test_feature_set_dict_round_trip_and_key():
    fs = FeatureSet.grid(("hessian", "gaussian"), (3.5, 0.7))
    same = FeatureSet((("gaussian", 0.7), ("hessian", 3.5), ("gaussian", 3.5), ("hessian", 0.7)))
    assert fs == same and fs.key() == same.key()
    back = FeatureSet.from_dict(fs.to_dict())
    assert back == fs and back.key() == fs.key()
    assert FeatureSet.grid(("gaussian",), (0.7,)).key() != fs.key()
    assert FeatureSet(fs.selection, "exact").key() != fs.key()
    assert fs.key().startswith("f1-")


@pytest.mark.parametrize(
    "selection",
    [(("sobel", 1.0),), (("gaussian", 2.0),), (("log", 0.3),), ()],
)
def test_invalid_selection_refused(selection):
    with pytest.raises(InputError):
        FeatureSet(selection)


def test_from_dict_refuses_damaged_description():
    with pytest.raises(InputError):
        FeatureSet.from_dict({"families": "gaussian"})
    with pytest.raises(InputError):
        FeatureSet.from_dict({"version": 99, "families": {"gaussian": [0.7]}})


def test_bad_image_shape_refused():
    with pytest.raises(InputError):
        compute_features(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(InputError):
        compute_features(np.zeros((1, 10), np.float32))


def test_strips_equal_whole_image(monkeypatch):
    import microseg.features as mf

    img = np.random.default_rng(6).random((150, 64), dtype=np.float32)
    fs = FeatureSet.grid(FAMILIES, (0.7, 1.6, 3.5))
    for derivatives in ("fd", "exact"):
        fsd = FeatureSet(fs.selection, derivatives)
        monkeypatch.setattr(mf, "_STRIP_PIXELS", 0)
        whole = compute_features(img, fsd, workers=1)
        monkeypatch.setattr(mf, "_STRIP_PIXELS", 32 * 64)  # 32-row strips
        strips = compute_features(img, fsd, workers=2)
        np.testing.assert_allclose(strips, whole, atol=1e-6)

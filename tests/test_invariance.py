"""Tests for cnnlib.analysis.invariance: shifts, equivariance of convolution, (partial)
shift invariance of pooling and its aliasing, and what pooling keeps.
"""

import zlib

import numpy as np
import pytest

from cnnlib.analysis.invariance import (
    equivariance_error,
    pooling_information,
    pooling_invariance,
    shift_image,
)
from cnnlib.ops.conv import conv2d
from cnnlib.ops.pool import avg_pool2d, max_pool2d


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# ----------------------------------------------------------------------------
# shift_image
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dx,dy", [(0, 0), (1, 0), (0, -2), (3, 2), (-1, -4), (7, 0), (9, -9)])
def test_shift_image_matches_loops(dx, dy):
    x = rng_for("shift", dx, dy).standard_normal((2, 5, 7))
    got = shift_image(x, dx, dy)
    want = np.zeros_like(x)
    for i in range(5):
        for j in range(7):
            if 0 <= i - dy < 5 and 0 <= j - dx < 7:
                want[:, i, j] = x[:, i - dy, j - dx]
    np.testing.assert_array_equal(got, want)
    wrapped = shift_image(x, dx, dy, mode="wrap")
    for i in range(5):
        for j in range(7):
            np.testing.assert_array_equal(wrapped[:, i, j], x[:, (i - dy) % 5, (j - dx) % 7])
    assert got.dtype == x.dtype and got.shape == x.shape


def test_shift_image_bad_input():
    with pytest.raises(ValueError, match="image"):
        shift_image(np.zeros(4), 1, 0)
    with pytest.raises(TypeError, match="image"):
        shift_image(np.zeros((4, 4), dtype=np.int32), 1, 0)
    with pytest.raises(TypeError, match="dx"):
        shift_image(np.zeros((4, 4)), 1.5, 0)
    with pytest.raises(ValueError, match="mode"):
        shift_image(np.zeros((4, 4)), 1, 0, mode="reflect")


# ----------------------------------------------------------------------------
# Equivariance of convolution
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shift", [1, (0, 1), (2, -3), (-1, 2)])
def test_conv_is_equivariant_in_the_interior(shift, dtype):
    rng = rng_for("equi", shift, dtype)
    x = rng.standard_normal((1, 3, 20, 18)).astype(dtype)
    w = rng.standard_normal((4, 3, 5, 5)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)

    def conv(v):
        return conv2d(v, w, b, padding="same")

    err = equivariance_error(conv, x, shift, border=2)
    assert err < (1e-6 if dtype == np.float32 else 1e-14)
    if 1 in np.abs(np.atleast_1d(shift)):  # wider shifts already hide the 2-pixel padding band
        assert equivariance_error(conv, x, shift, border=0) > 1e-3


def test_pooling_is_not_equivariant():
    """Stride-2 pooling changes the size, so equivariance_error refuses it;
    a pooled-then-upsampled map is far from equivariant for a 1-pixel shift."""
    x = rng_for("pool-equi").standard_normal((1, 1, 16, 16))
    with pytest.raises(ValueError, match="spatial size"):
        equivariance_error(lambda v: max_pool2d(v, 2), x, 1)

    def pool_up(v):
        return np.repeat(np.repeat(max_pool2d(v, 2), 2, axis=2), 2, axis=3)

    assert equivariance_error(pool_up, x, 1, border=2) > 0.1
    assert equivariance_error(pool_up, x, 2, border=2) < 1e-15


def test_equivariance_error_bad_input():
    x = np.zeros((8, 8))
    with pytest.raises(TypeError, match="f must be callable"):
        equivariance_error(None, x, 1)
    with pytest.raises(TypeError, match="shift"):
        equivariance_error(lambda v: v, x, 1.0)
    with pytest.raises(ValueError, match="border"):
        equivariance_error(lambda v: v, x, 1, border=-1)
    with pytest.raises(ValueError, match="interior"):
        equivariance_error(lambda v: v, x, 3, border=1)
    assert equivariance_error(lambda v: v, x, 1) == 0.0


# ----------------------------------------------------------------------------
# Invariance of pooling
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("pool", [max_pool2d, avg_pool2d])
@pytest.mark.parametrize("k", [2, 3])
def test_shift_by_stride_shifts_pooled_output_exactly(pool, k):
    """pool(S_{k a, k b} x) = S_{a, b} pool(x), away from the borders."""
    rng = rng_for("stride-shift", pool.__name__, k)
    x = rng.standard_normal((2, 3, 8 * k, 7 * k))
    for a, b in [(1, 0), (0, 1), (-1, 2), (2, -1)]:
        got = pool(shift_image(x, k * a, k * b), k)
        want = shift_image(pool(x, k), a, b)
        inner = (Ellipsis, slice(abs(b), 8 - abs(b)), slice(abs(a), 7 - abs(a)))
        np.testing.assert_array_equal(got[inner], want[inner])


def test_pooling_invariance_reports_the_maps():
    rng = rng_for("report")
    image = rng.random((3, 16, 16))
    w = rng.standard_normal((4, 3, 3, 3))
    res = pooling_invariance(image, [0, 2, (1, 1)], "max", 2, conv_weight=w)
    assert res["features"].shape == (3, 4, 16, 16) and res["pooled"].shape == (3, 4, 8, 8)
    np.testing.assert_array_equal(res["shifts"], [[0, 0], [2, 0], [1, 1]])
    want = np.maximum(conv2d(shift_image(image[None], 1, 1), w, padding="same"), 0)
    np.testing.assert_array_equal(res["features"][2], want[0])
    np.testing.assert_array_equal(res["pooled"][2], max_pool2d(want, 2)[0])
    assert res["relative_change"][0] == 0 and res["cosine"][0] == pytest.approx(1, abs=1e-15)
    assert res["feature_change"][0] == 0
    # a shift by the stride moves the pooled map: the interior equals the moved map
    np.testing.assert_array_equal(res["pooled"][1][:, 1:-1, 2:-1],
                                  shift_image(res["pooled"][0], 1, 0)[:, 1:-1, 2:-1])
    assert np.all(res["relative_change"][1:] > 0)


def test_max_pooling_absorbs_a_shift_inside_the_window():
    """A lone bright pixel moving within its 2x2 window leaves the max-pooled map
    unchanged (score 0) although the features change completely."""
    image = np.zeros((8, 8))
    image[2, 4] = 1.0
    res = pooling_invariance(image, [1, (0, 1), (1, 1)], "max")
    np.testing.assert_array_equal(res["relative_change"], 0)
    np.testing.assert_allclose(res["cosine"], 1, atol=1e-15)
    np.testing.assert_allclose(res["feature_change"], np.sqrt(2))
    avg = pooling_invariance(image, [1], "avg")
    assert avg["relative_change"][0] == 0  # the average of the window does not change either


def test_one_pixel_shift_aliases_max_pooling():
    """A 2-pixel bar straddling two windows: max pooling sees it in both; shifted by
    one pixel it falls into one window and the pooled map loses a whole unit,
    which no shift of the old pooled map can explain (aliasing)."""
    image = np.zeros((8, 8))
    image[:, 1:3] = 1.0  # columns 1 and 2: windows 0 and 1 both light up
    res = pooling_invariance(image, [1], "max")
    before, after = res["pooled"][0][0], max_pool2d(image[None, None], 2)[0, 0]
    np.testing.assert_array_equal(after[0], [1, 1, 0, 0])
    np.testing.assert_array_equal(before[0], [0, 1, 0, 0])
    assert before.sum() == after.sum() / 2
    assert res["relative_change"][0] == pytest.approx(np.sqrt(0.5))
    for a in range(-3, 4):  # not any shift of the unshifted pooled map
        assert not np.array_equal(before, shift_image(after, a, 0))


def test_stochastic_pooling_invariance_is_deterministic_for_a_seed():
    rng = rng_for("stoch-inv")
    image = rng.random((12, 12))
    w = rng.standard_normal((2, 1, 3, 3))
    a = pooling_invariance(image, [0, 1, 2], "stochastic", conv_weight=w, rng=4)
    b = pooling_invariance(image, [0, 1, 2], "stochastic", conv_weight=w, rng=4)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["relative_change"][0] > 0  # sampling noise even without a shift
    c = pooling_invariance(image, [0, 1], "stochastic", conv_weight=w, rng=4, training=False)
    assert c["relative_change"][0] == 0


def test_pooling_invariance_bad_input():
    image = np.ones((8, 8))
    with pytest.raises(ValueError, match="pool"):
        pooling_invariance(image, [1], "median")
    with pytest.raises(TypeError, match="shifts"):
        pooling_invariance(image, 1)
    with pytest.raises(TypeError, match=r"shifts\[1\]"):
        pooling_invariance(image, [1, "a"])
    with pytest.raises(ValueError, match="shifts"):
        pooling_invariance(image, [])
    with pytest.raises(ValueError, match="image"):
        pooling_invariance(np.ones((1, 1, 8, 8)), [1])
    with pytest.raises(ValueError, match="conv_weight"):
        pooling_invariance(image, [1], conv_weight=np.ones((2, 3, 3, 3)))
    with pytest.raises(TypeError, match="conv_weight"):
        pooling_invariance(image, [1], conv_weight=np.ones((2, 1, 3, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        pooling_invariance(-image, [1], "stochastic")
    with pytest.raises(ValueError, match="kernel_size"):
        pooling_invariance(image, [1], kernel_size=0)


# ----------------------------------------------------------------------------
# What pooling keeps
# ----------------------------------------------------------------------------

def test_pooling_information_gaussian_pixels():
    """i.i.d. Gaussian pixels: average pooling leaves 1 - 1/k^2 of the variance
    (each pixel's best predictor is the block mean itself); max pooling leaves
    about 0.873 for 2x2 (cov = 1/4, var(max of 4) = 0.4917)."""
    images = rng_for("gauss").standard_normal((400, 16, 16))
    avg = pooling_information(images, "avg", 2)
    mx = pooling_information(images, "max", 2)
    assert avg["reconstruction_error"] == pytest.approx(0.75, abs=0.01)
    np.testing.assert_allclose(avg["weight"], 1.0, atol=0.03)
    assert mx["reconstruction_error"] == pytest.approx(1 - 1 / 16 / 0.4917, abs=0.01)
    assert avg["corr_block_mean"] == pytest.approx(1.0)
    assert mx["corr_block_max"] == pytest.approx(1.0)
    assert mx["corr_block_mean"] < 0.9 and avg["corr_block_max"] < 0.9
    three = pooling_information(images, "avg", 3)
    assert three["reconstruction_error"] == pytest.approx(1 - 1 / 9, abs=0.01)


def test_pooling_information_matches_lstsq():
    rng = rng_for("lstsq")
    images = np.maximum(rng.standard_normal((20, 2, 9, 7)), 0)
    res = pooling_information(images, "max", (3, 2))
    crop = images[:, :, :9, :6]
    m = max_pool2d(crop, (3, 2))
    sse = sst = 0.0
    for p in range(3):
        for q in range(2):
            xv = crop[:, :, p::3, q::2].ravel()
            design = np.stack([m.ravel(), np.ones(m.size)], axis=1)
            coef, *_ = np.linalg.lstsq(design, xv, rcond=None)
            np.testing.assert_allclose([res["weight"][p, q], res["bias"][p, q]], coef, atol=1e-12)
            sse += np.sum((design @ coef - xv) ** 2)
            sst += np.sum((xv - xv.mean()) ** 2)
            np.testing.assert_allclose(res["reconstruction"][:, :, p::3, q::2].ravel(),
                                       design @ coef, atol=1e-12)
    assert res["reconstruction_error"] == pytest.approx(sse / sst, rel=1e-12)


def test_pooling_information_blocky_images_are_kept_exactly():
    blocks = rng_for("blocky").standard_normal((10, 1, 4, 4))
    images = np.repeat(np.repeat(blocks, 2, axis=2), 2, axis=3).astype(np.float32)
    for pool in ("max", "avg"):
        res = pooling_information(images, pool)
        assert res["reconstruction_error"] < 1e-10
        np.testing.assert_allclose(res["reconstruction"], images, atol=1e-5)


def test_pooling_information_bad_input():
    with pytest.raises(ValueError, match="images"):
        pooling_information(np.zeros((4, 4)), "max")
    with pytest.raises(ValueError, match="pool"):
        pooling_information(np.zeros((2, 4, 4)), "stochastic")
    with pytest.raises(ValueError, match="kernel_size"):
        pooling_information(np.zeros((2, 4, 4)), "max", 5)
    with pytest.raises(TypeError, match="images"):
        pooling_information(np.zeros((2, 4, 4), dtype=np.int8), "avg")

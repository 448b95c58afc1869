"""The speed paths of issue 10, each against the references it replaced.

* the "wide" convolution kernels (unit stride, few channels: LeNet-5's layers)
  against the loop reference in ``naive.py``, finite differences and the
  im2col + GEMM path, with 4, 2 and 1 channels per task;
* ``max_pool2d(..., return_indices=True)``, its 2x2 fast path and the backward
  from indices, against the loop reference and the search;
* ReLU as one compiled pass, against NumPy's ``maximum`` and ``where``.
"""

import naive
import numpy as np
import pytest

from cnnlib import functional as F
from cnnlib import nn
from cnnlib.ops import conv, pool

DTYPES = [np.float32, np.float64]


def assert_close(got, want, dtype):
    """float32: 1e-5 of the output's scale; float64: 1e-12 (as test_functional)."""
    want = np.asarray(want, dtype=np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    scale = max(np.abs(want).max(initial=0), 1.0)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


# (x shape, weight shape, settings): out- and in-channels per group of 4, 2
# and 1 (the kernels' three block sizes), groups, dilation, every padding
# kind, odd and non-square planes, batch 1 to 3, bias or none.
WIDE_CASES = {
    "lenet-conv1": ((2, 1, 12, 12), (6, 1, 5, 5), dict(padding=2)),
    "lenet-conv2": ((3, 6, 14, 13), (16, 6, 5, 5), {}),
    "blocks-of-4": ((2, 8, 9, 11), (8, 8, 3, 3), dict(padding=1)),
    "groups-dilation": ((3, 8, 9, 11), (8, 4, 3, 3), dict(padding=1, dilation=2, groups=2)),
    "same-even-kernel": ((1, 4, 7, 7), (8, 4, 3, 2), dict(padding="same")),
    "wide-padding": ((2, 2, 5, 6), (4, 2, 2, 3), dict(padding=(1, 2))),
    "depthwise": ((2, 3, 8, 8), (3, 1, 3, 3), dict(padding=1, groups=3)),
    "pointwise-groups": ((2, 8, 6, 9), (12, 2, 1, 1), dict(groups=4)),
    "pair-padding-dilation": ((2, 16, 7, 7), (16, 16, 3, 3), dict(padding=(2, 1), dilation=(2, 1))),
    "no-bias": ((1, 2, 6, 6), (6, 2, 3, 3), dict(padding=1, bias=False)),
}


def wide_arrays(name, dtype):
    x_shape, w_shape, kw = WIDE_CASES[name]
    kw = dict(kw)
    rng = np.random.default_rng(sorted(WIDE_CASES).index(name))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if kw.pop("bias", True) else None
    return x, w, b, kw


@pytest.mark.parametrize("name", WIDE_CASES)
def test_the_cases_take_the_wide_path(name):
    x, w, _, kw = wide_arrays(name, np.float64)
    groups = kw.get("groups", 1)
    assert conv.conv_path(w.shape[1], w.shape[0] // groups) == "wide"


def test_conv_path_choices():
    assert conv.conv_path(1, 6) == "wide"          # LeNet-5's first layer
    assert conv.conv_path(6, 16) == "wide"         # and its second
    assert conv.conv_path(64, 64) == "gemm"        # VGG-scale
    assert conv.conv_path(1, 1, (2, 2)) == "direct"  # strided depthwise
    assert conv.conv_path(6, 16, (2, 1)) == "gemm"   # strided, several channels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", WIDE_CASES)
def test_wide_forward_matches_the_loops(name, dtype):
    x, w, b, kw = wide_arrays(name, dtype)
    y = F.conv2d(x, w, b, **kw)
    assert y.dtype == dtype and y.flags.c_contiguous
    assert_close(y, naive.conv2d(x, w, b, **kw), dtype)


@pytest.mark.parametrize("name", WIDE_CASES)
def test_wide_backward_matches_finite_differences(name):
    x, w, b, kw = wide_arrays(name, np.float64)
    gy = np.random.default_rng(7).standard_normal(F.conv2d(x, w, b, **kw).shape)
    gx, gw, gb = F.conv2d_backward(gy, x, w, b, **kw)
    num_gx = naive.numerical_gradient(lambda v: F.conv2d(v, w, b, **kw), x, gy)
    num_gw = naive.numerical_gradient(lambda v: F.conv2d(x, v, b, **kw), w, gy)
    np.testing.assert_allclose(gx, num_gx, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw, num_gw, rtol=1e-6, atol=1e-7)
    if b is not None:
        np.testing.assert_allclose(gb, gy.sum(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", WIDE_CASES)
def test_wide_path_agrees_with_the_gemm_path(name, dtype, monkeypatch):
    x, w, b, kw = wide_arrays(name, dtype)
    gy = np.random.default_rng(8).standard_normal(F.conv2d(x, w, b, **kw).shape).astype(dtype)
    wide = (F.conv2d(x, w, b, **kw), *F.conv2d_backward(gy, x, w, b, **kw))
    monkeypatch.setattr(conv, "_WIDE_MAX_CHANNELS", 0)  # every layer to im2col + GEMM (or direct)
    assert conv.conv_path(6, 16) == "gemm"
    other = (F.conv2d(x, w, b, **kw), *F.conv2d_backward(gy, x, w, b, **kw))
    for got, want in zip(wide, other):
        if want is None:
            assert got is None
        else:
            assert got.dtype == dtype and got.shape == want.shape
            assert_close(got, want, dtype)


def test_wide_kernels_are_deterministic():
    x, w, b, kw = wide_arrays("lenet-conv2", np.float32)
    gy = np.ones(F.conv2d(x, w, b, **kw).shape, np.float32)
    first = F.conv2d_backward(gy, x, w, b, **kw)
    for _ in range(3):
        for a, c in zip(first, F.conv2d_backward(gy, x, w, b, **kw)):
            np.testing.assert_array_equal(a, c)


# ----------------------------------------------------------------------------
# Max pooling with indices
# ----------------------------------------------------------------------------

POOL_CASES = {  # x shape, kernel, stride, padding, dilation, ceil_mode
    "2x2 (fast path)": ((2, 3, 8, 6), 2, None, 0, 1, False),
    "2x2 odd size": ((2, 3, 7, 5), 2, None, 0, 1, False),
    "2x2 ceil": ((1, 2, 7, 5), 2, 2, 0, 1, True),
    "3x3 s2 p1": ((2, 2, 9, 9), 3, 2, 1, 1, False),
    "overlapping": ((1, 2, 6, 7), 3, 1, 0, 1, False),
    "dilated": ((1, 1, 9, 8), 2, 2, 1, 3, False),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", POOL_CASES)
def test_max_pool_indices_point_at_the_maxima(name, dtype):
    shape, k, s, p, d, ceil = POOL_CASES[name]
    x = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    y, idx = F.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    np.testing.assert_array_equal(y, naive.max_pool2d(x, k, s, p, d, ceil))
    np.testing.assert_array_equal(y, F.max_pool2d(x, k, s, p, d, ceil))
    assert idx.dtype == np.int64 and idx.shape == y.shape
    planes = x.reshape(shape[0], shape[1], -1)
    np.testing.assert_array_equal(np.take_along_axis(planes, idx.reshape(*shape[:2], -1), 2),
                                  y.reshape(*shape[:2], -1))


@pytest.mark.parametrize("name", POOL_CASES)
def test_backward_from_indices_equals_the_search(name):
    shape, k, s, p, d, ceil = POOL_CASES[name]
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, shape).astype(np.float64)  # ties: the first maximum must win
    y, idx = F.max_pool2d(x, k, s, p, d, ceil, return_indices=True)
    gy = rng.standard_normal(y.shape)
    searched = F.max_pool2d_backward(gy, x, k, s, p, d, ceil)
    from_indices = F.max_pool2d_backward(gy, x, k, s, p, d, ceil, indices=idx)
    np.testing.assert_array_equal(from_indices, searched)


def test_max_pool_2x2_follows_pytorchs_tie_and_nan_rules():
    x = np.array([[[[1.0, 1.0, np.nan, 2.0],
                    [0.0, 1.0, np.nan, 3.0]]]])
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert y[0, 0, 0, 0] == 1.0 and idx[0, 0, 0, 0] == 0      # the first maximum wins
    assert np.isnan(y[0, 0, 0, 1]) and idx[0, 0, 0, 1] == 6   # the last NaN wins
    general_y, general_idx = pool._max_pool_forward(x, 2, 2, 2, 2, 0, 0, 1, 1, 1, 2)
    np.testing.assert_array_equal(idx, general_idx)
    np.testing.assert_array_equal(y, general_y)


def test_all_padding_windows_get_index_minus_one_and_no_gradient():
    x = np.ones((1, 1, 2, 2))
    y, idx = F.max_pool2d(x, 2, padding=1, dilation=3, return_indices=True)
    assert (idx == -1).any()
    gx = F.max_pool2d_backward(np.ones_like(y), x, 2, padding=1, dilation=3, indices=idx)
    np.testing.assert_array_equal(gx, F.max_pool2d_backward(np.ones_like(y), x, 2, padding=1,
                                                            dilation=3))


@pytest.mark.parametrize("indices, error, match", [
    (np.zeros((1, 1, 2, 2)), TypeError, "^indices must be an integer numpy.ndarray"),
    (np.zeros((1, 1, 2, 3), np.int64), ValueError, r"^indices must have shape \(1, 1, 2, 2\)"),
    (np.full((1, 1, 2, 2), 16), ValueError, r"^indices must lie in \[-1, 16\)"),
    (np.full((1, 1, 2, 2), -2), ValueError, r"^indices must lie in \[-1, 16\)"),
])
def test_bad_indices_raise(indices, error, match):
    x = np.zeros((1, 1, 4, 4))
    with pytest.raises(error, match=match):
        F.max_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2, indices=indices)


def test_return_indices_must_be_a_bool():
    with pytest.raises(TypeError, match="^return_indices must be a bool"):
        F.max_pool2d(np.zeros((1, 1, 4, 4)), 2, return_indices=1)


def test_the_layer_keeps_the_indices_and_gives_the_functional_gradient():
    x = np.random.default_rng(3).standard_normal((2, 3, 6, 6)).astype(np.float32)
    layer = nn.MaxPool2d(2)
    y = layer(x)
    saved_x, idx = layer.saved()
    assert saved_x is x and idx.shape == y.shape
    gy = np.ones_like(y)
    np.testing.assert_array_equal(layer.backward(gy), F.max_pool2d_backward(gy, x, 2))


# ----------------------------------------------------------------------------
# ReLU
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_is_numpys_maximum_bit_for_bit(dtype):
    x = np.array([-0.0, 0.0, np.nan, -1, 2, np.inf, -np.inf, 1e-45], dtype=dtype)
    x = np.concatenate([x, np.random.default_rng(4).standard_normal(1000).astype(dtype)])
    want = np.maximum(x, dtype(0))
    got = F.relu(x.reshape(2, -1, 4))
    assert got.dtype == dtype and got.shape == (2, x.size // 8, 4)
    np.testing.assert_array_equal(got.ravel(), want)
    np.testing.assert_array_equal(np.signbit(got.ravel()), np.signbit(want))


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_passes_the_gradient_where_the_input_is_positive(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5)).astype(dtype)
    x[0, 0, :3] = [0.0, -0.0, np.nan]
    gy = rng.standard_normal(x.shape).astype(dtype)
    got = F.relu_backward(gy, x)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, np.where(x > 0, gy, dtype(0)))


def test_relu_of_a_non_contiguous_view():
    x = np.random.default_rng(6).standard_normal((4, 6))
    np.testing.assert_array_equal(F.relu(x[:, ::2]), np.maximum(x[:, ::2], 0))
    np.testing.assert_array_equal(F.relu(x.T), np.maximum(x.T, 0))

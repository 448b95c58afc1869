"""Tests for cnnlib.functional: each kernel against the slow references in
``naive.py``, central-difference checks of every backward, identities, and
clear errors on bad input.  Comparisons with PyTorch live in test_vs_torch.py.
"""

import zlib

import naive
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import correlate2d
from scipy.special import expit

from cnnlib import functional as F

DTYPES = [np.float32, np.float64]
SETTINGS = settings(max_examples=40, derandomize=True, deadline=None, database=None)
GRAD_TOL = 1e-6


def rng_for(*key):
    """A generator seeded from the test's parameters, so every case is reproducible."""
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def distinct(rng, shape):
    """Float64 array of distinct values 1/size apart: no ties for max pooling."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) / size - 0.5).astype(np.float64)


def assert_close(got, want, dtype):
    """float32: relative 1e-5 of the output's scale; float64: 1e-12."""
    want = np.asarray(want, dtype=np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    scale = max(np.abs(want[np.isfinite(want)]).max(initial=0), 1.0)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale)


# ----------------------------------------------------------------------------
# Cases shared with test_vs_torch.py
# ----------------------------------------------------------------------------

CONV_CASES = {
    "default": dict(x=(2, 3, 7, 7), w=(4, 3, 3, 3)),
    "stride2-pad1": dict(x=(2, 3, 7, 8), w=(4, 3, 3, 3), stride=2, padding=1),
    "stride-pair-pad-pair": dict(x=(1, 2, 9, 7), w=(3, 2, 2, 3), stride=(2, 1), padding=(1, 0)),
    "same-even-kernel": dict(x=(2, 2, 6, 6), w=(3, 2, 2, 2), padding="same"),
    "same-dilated-odd-total": dict(x=(1, 2, 7, 6), w=(2, 2, 4, 3), padding="same", dilation=(1, 3)),
    "valid": dict(x=(1, 2, 5, 5), w=(2, 2, 3, 3), padding="valid"),
    "dilation2": dict(x=(2, 3, 9, 9), w=(2, 3, 3, 3), dilation=2),
    "dilation-pair-stride-pair": dict(x=(1, 2, 10, 9), w=(2, 2, 3, 2), stride=(1, 2), padding=2,
                                      dilation=(2, 3)),
    "groups2": dict(x=(2, 4, 6, 6), w=(6, 2, 3, 3), groups=2, padding=1),
    "depthwise": dict(x=(2, 4, 6, 6), w=(4, 1, 3, 3), groups=4, padding=1),
    "depthwise-multiplier": dict(x=(1, 3, 7, 7), w=(6, 1, 3, 3), groups=3, stride=2),
    "one-input-channel": dict(x=(1, 1, 6, 6), w=(3, 1, 5, 5), padding=2),
    "1x1": dict(x=(2, 3, 5, 5), w=(4, 3, 1, 1), bias=False),
    "groups3-all-settings": dict(x=(1, 6, 7, 7), w=(3, 2, 2, 2), groups=3, stride=2, padding=1,
                                 dilation=2),
    "kernel-larger-than-input": dict(x=(1, 2, 4, 4), w=(2, 2, 5, 5), padding=1),
    "non-square-1x5": dict(x=(1, 2, 3, 8), w=(2, 2, 1, 5), padding=(0, 2), bias=False),
}

# (input shape, kernel_size, stride, padding, dilation, ceil_mode)
MAX_POOL_CASES = {
    "k2": ((2, 3, 6, 6), 2, None, 0, 1, False),
    "k3-s2-p1": ((1, 2, 7, 7), 3, 2, 1, 1, False),
    "k3-s2-ceil": ((1, 2, 7, 8), 3, 2, 0, 1, True),
    "k3-s2-p1-ceil": ((1, 2, 6, 6), 3, 2, 1, 1, True),
    "ceil-drops-window-in-padding": ((1, 1, 5, 5), 2, 2, 1, 1, True),
    "dilation2-p1": ((1, 2, 9, 9), 3, 1, 1, 2, False),
    "pairs": ((1, 2, 8, 9), (2, 3), (1, 2), (1, 1), (2, 1), False),
    "non-square-ceil": ((1, 1, 5, 7), (3, 2), (2, 3), 0, 1, True),
    "k1-s2": ((1, 1, 4, 5), 1, 2, 0, 1, False),
    "whole-input": ((2, 1, 5, 5), 5, None, 0, 1, False),
    "k4-s3-p2-ceil": ((1, 2, 7, 8), 4, 3, 2, 1, True),
}

# (input shape, kernel_size, stride, padding, ceil_mode)
AVG_POOL_CASES = {
    "k2": ((2, 3, 6, 6), 2, None, 0, False),
    "k3-s2-p1": ((1, 2, 7, 7), 3, 2, 1, False),
    "k3-s2-p1-ceil": ((1, 2, 6, 5), 3, 2, 1, True),
    "ceil-drops-window-in-padding": ((1, 1, 5, 5), 2, 2, 1, True),
    "pairs": ((1, 2, 8, 7), (2, 3), (1, 2), (1, 1), False),
    "non-square-ceil": ((1, 1, 5, 7), (3, 2), (2, 3), 0, True),
    "k1-s2": ((1, 1, 4, 5), 1, 2, 0, False),
    "k4-s3-p2-ceil": ((1, 2, 7, 8), 4, 3, 2, True),
}


def conv_arrays(case, dtype, rng):
    x = randn(rng, case["x"], dtype)
    w = randn(rng, case["w"], dtype)
    b = randn(rng, case["w"][0], dtype) if case.get("bias", True) else None
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups") if k in case}
    return x, w, b, kw


def expected_conv_shape(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1):
    sh, sw = naive._pair(stride)
    dh, dw = naive._pair(dilation)
    ph, pw = naive.conv_padding(padding, w_shape[2:], (dh, dw))
    return (x_shape[0], w_shape[0],
            F.conv_output_size(x_shape[2], w_shape[2], sh, ph, dh),
            F.conv_output_size(x_shape[3], w_shape[3], sw, pw, dw))


def expected_pool_shape(x_shape, k, s, p, d, ceil_mode):
    k, p, d = naive._pair(k), naive._pair(p), naive._pair(d)
    s = k if s is None else naive._pair(s)
    return x_shape[:2] + tuple(F.pool_output_size(x_shape[2 + a], k[a], s[a], p[a], d[a], ceil_mode)
                               for a in range(2))


# ----------------------------------------------------------------------------
# Forward against the references
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CONV_CASES)
def test_conv2d_matches_naive(name, dtype):
    case = CONV_CASES[name]
    x, w, b, kw = conv_arrays(case, dtype, rng_for(name, dtype))
    y = F.conv2d(x, w, b, **kw)
    assert y.dtype == dtype
    assert y.shape == expected_conv_shape(x.shape, w.shape, **kw)
    assert_close(y, naive.conv2d(x, w, b, **kw), dtype)


@st.composite
def conv_settings(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in = groups * draw(st.integers(1, 3))
    c_out = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    padding = draw(st.sampled_from(["int", "pair", "valid", "same"]))
    if padding == "same":
        sh = sw = 1
    else:
        sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if padding == "int":
        padding = draw(st.integers(0, 3))
    elif padding == "pair":
        padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    ph, pw = naive.conv_padding(padding, (kh, kw), (dh, dw))
    h_min = max(1, dh * (kh - 1) + 1 - sum(ph))  # the kernel must fit the padded input
    w_min = max(1, dw * (kw - 1) + 1 - sum(pw))
    h, w = draw(st.integers(h_min, h_min + 6)), draw(st.integers(w_min, w_min + 6))
    n = draw(st.integers(1, 2))
    kwargs = dict(stride=(sh, sw) if sh != sw else sh, padding=padding,
                  dilation=(dh, dw) if dh != dw else dh, groups=groups)
    return (n, c_in, h, w), (c_out, c_in // groups, kh, kw), draw(st.booleans()), kwargs


@SETTINGS
@given(conv_settings(), st.sampled_from(DTYPES), st.integers(0, 2**32 - 1))
def test_conv2d_matches_naive_random_settings(setting, dtype, seed):
    x_shape, w_shape, has_bias, kw = setting
    rng = np.random.default_rng(seed)
    x, w = randn(rng, x_shape, dtype), randn(rng, w_shape, dtype)
    b = randn(rng, w_shape[0], dtype) if has_bias else None
    y = F.conv2d(x, w, b, **kw)
    assert y.dtype == dtype
    assert y.shape == expected_conv_shape(x_shape, w_shape, **kw)
    assert_close(y, naive.conv2d(x, w, b, **kw), dtype)


@pytest.mark.parametrize("padding", [0, 2, (1, 0), "valid", "same"])
@pytest.mark.parametrize("kernel", [(1, 1), (3, 3), (2, 4), (5, 3)])
def test_conv2d_matches_scipy_correlate2d(kernel, padding):
    rng = rng_for(kernel, padding)
    x, w, b = randn(rng, (2, 3, 6, 7)), randn(rng, (2, 3) + kernel), randn(rng, 2)
    np.testing.assert_allclose(F.conv2d(x, w, b, padding=padding),
                               naive.conv2d_scipy(x, w, b, padding=padding), rtol=1e-12, atol=1e-12)


def test_naive_conv_agrees_with_scipy():
    """The two references agree with each other (guards the references themselves)."""
    rng = rng_for("refs")
    x, w = randn(rng, (1, 2, 6, 5)), randn(rng, (3, 2, 2, 3))
    np.testing.assert_allclose(naive.conv2d(x, w, padding="same"),
                               naive.conv2d_scipy(x, w, padding="same"), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MAX_POOL_CASES)
def test_max_pool2d_matches_naive(name, dtype):
    shape, k, s, p, d, ceil_mode = MAX_POOL_CASES[name]
    x = randn(rng_for(name, dtype), shape, dtype)
    y = F.max_pool2d(x, k, s, p, d, ceil_mode)
    assert y.dtype == dtype
    assert y.shape == expected_pool_shape(shape, k, s, p, d, ceil_mode)
    assert_close(y, naive.max_pool2d(x, k, s, p, d, ceil_mode), dtype)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", AVG_POOL_CASES)
def test_avg_pool2d_matches_naive(name, dtype, count_include_pad):
    shape, k, s, p, ceil_mode = AVG_POOL_CASES[name]
    x = randn(rng_for(name, dtype), shape, dtype)
    y = F.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad)
    assert y.dtype == dtype
    assert y.shape == expected_pool_shape(shape, k, s, p, 1, ceil_mode)
    assert_close(y, naive.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad), dtype)


@st.composite
def pool_settings(draw, dilation=True):
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = tuple(draw(st.integers(0, ki // 2)) for ki in k)
    d = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1)
    lows = [max(1, di * (ki - 1) + 1 - 2 * pi) for ki, pi, di in zip(k, p, d)]
    hw = tuple(draw(st.integers(low, low + 6)) for low in lows)
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3))) + hw
    stride = draw(st.sampled_from([s, None]))
    return shape, k, stride, p, d, draw(st.booleans())


@SETTINGS
@given(pool_settings(), st.sampled_from(DTYPES), st.integers(0, 2**32 - 1))
def test_max_pool2d_matches_naive_random_settings(setting, dtype, seed):
    shape, k, s, p, d, ceil_mode = setting
    x = randn(np.random.default_rng(seed), shape, dtype)
    y = F.max_pool2d(x, k, s, p, d, ceil_mode)
    assert y.dtype == dtype
    assert y.shape == expected_pool_shape(shape, k, s, p, d, ceil_mode)
    assert_close(y, naive.max_pool2d(x, k, s, p, d, ceil_mode), dtype)


@SETTINGS
@given(pool_settings(dilation=False), st.booleans(), st.sampled_from(DTYPES),
       st.integers(0, 2**32 - 1))
def test_avg_pool2d_matches_naive_random_settings(setting, count_include_pad, dtype, seed):
    shape, k, s, p, _, ceil_mode = setting
    x = randn(np.random.default_rng(seed), shape, dtype)
    y = F.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad)
    assert y.dtype == dtype
    assert y.shape == expected_pool_shape(shape, k, s, p, 1, ceil_mode)
    assert_close(y, naive.avg_pool2d(x, k, s, p, ceil_mode, count_include_pad), dtype)


def test_max_pool2d_window_of_padding_only_gives_minus_inf():
    """Dilation 3 with padding 1 over 2 rows: the window's rows (-1, 2) are both padding."""
    y = F.max_pool2d(np.ones((1, 1, 2, 2)), 2, padding=1, dilation=3)
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == -np.inf
    np.testing.assert_array_equal(y, naive.max_pool2d(np.ones((1, 1, 2, 2)), 2, padding=1, dilation=3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_propagates_nan(dtype):
    x = np.arange(16, dtype=dtype).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    x[0, 0, 3, 3] = np.nan
    y = F.max_pool2d(x, 2)
    np.testing.assert_array_equal(y, [[[[np.nan, 7], [13, np.nan]]]])
    np.testing.assert_array_equal(y, naive.max_pool2d(x, 2))


@pytest.mark.parametrize("dtype", DTYPES)
def test_activations_match_formulas(dtype):
    x = randn(rng_for("act", dtype), (3, 4, 5), dtype) * 4
    x64 = x.astype(np.float64)
    for f, want in ((F.relu, np.where(x64 > 0, x64, 0.0)), (F.sigmoid, expit(x64)),
                    (F.tanh, np.tanh(x64))):
        y = f(x)
        assert y.dtype == dtype and y.shape == x.shape
        assert_close(y, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_saturates_without_overflow(dtype):
    x = np.array([-1e4, -100.0, 0.0, 100.0, 1e4], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        y = F.sigmoid(x)
        g = F.sigmoid_backward(np.ones_like(x), x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, expit(x.astype(np.float64)), rtol=1e-6, atol=1e-30)
    assert np.all(np.isfinite(g))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape", [(5,), (4, 5), (2, 3, 5)])
def test_linear_matches_naive(x_shape, dtype):
    rng = rng_for(x_shape, dtype)
    x, w, b = randn(rng, x_shape, dtype), randn(rng, (3, 5), dtype), randn(rng, 3, dtype)
    for bias in (b, None):
        y = F.linear(x, w, bias)
        assert y.dtype == dtype and y.shape == x_shape[:-1] + (3,)
        assert_close(y, naive.linear(x, w, bias), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_softmax_and_log_softmax_match_naive(dim, dtype):
    x = randn(rng_for(dim, dtype), (3, 4, 5), dtype) * 3
    for f, ref in ((F.softmax, naive.softmax), (F.log_softmax, naive.log_softmax)):
        y = f(x, dim)
        assert y.dtype == dtype and y.shape == x.shape
        assert_close(y, ref(x, dim), dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5), (2, 3, 2, 2)])
def test_cross_entropy_matches_naive(shape, dtype, reduction):
    rng = rng_for(shape, dtype, reduction)
    x = randn(rng, shape, dtype) * 2
    target = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    loss = F.cross_entropy(x, target, reduction)
    assert np.asarray(loss).dtype == dtype
    assert np.shape(loss) == (target.shape if reduction == "none" else ())
    assert_close(loss, naive.cross_entropy(x, target, reduction), dtype)


# ----------------------------------------------------------------------------
# Gradient checks (float64, central differences)
# ----------------------------------------------------------------------------

GRAD_CONV_CASES = {
    "default": dict(x=(2, 3, 5, 5), w=(2, 3, 3, 3)),
    "stride2-pad1": dict(x=(2, 2, 6, 5), w=(3, 2, 3, 3), stride=2, padding=1),
    "same-even-kernel": dict(x=(1, 2, 5, 6), w=(2, 2, 2, 4), padding="same"),
    "same-dilated": dict(x=(1, 2, 6, 6), w=(2, 2, 3, 2), padding="same", dilation=2),
    "dilation2-stride-pair": dict(x=(1, 2, 8, 7), w=(2, 2, 3, 3), dilation=2, stride=(1, 2),
                                  padding=(1, 0)),
    "groups2": dict(x=(2, 4, 5, 5), w=(4, 2, 3, 3), groups=2, stride=2, padding=1),
    "depthwise-multiplier": dict(x=(1, 2, 5, 5), w=(4, 1, 3, 2), groups=2, padding=1, dilation=(2, 1)),
    "no-bias": dict(x=(1, 2, 4, 4), w=(3, 2, 2, 2), bias=False),
}


@pytest.mark.parametrize("name", GRAD_CONV_CASES)
def test_conv2d_backward_matches_numerical_gradient(name):
    case = GRAD_CONV_CASES[name]
    x, w, b, kw = conv_arrays(case, np.float64, rng_for("grad", name))
    gy = randn(rng_for("gy", name), F.conv2d(x, w, b, **kw).shape)
    gx, gw, gb = F.conv2d_backward(gy, x, w, b, **kw)
    assert gx.shape == x.shape and gw.shape == w.shape
    assert naive.rel_error(gx, naive.numerical_gradient(lambda v: F.conv2d(v, w, b, **kw), x, gy)) < GRAD_TOL
    assert naive.rel_error(gw, naive.numerical_gradient(lambda v: F.conv2d(x, v, b, **kw), w, gy)) < GRAD_TOL
    if b is None:
        assert gb is None
    else:
        assert gb.shape == b.shape
        assert naive.rel_error(gb, naive.numerical_gradient(lambda v: F.conv2d(x, w, v, **kw), b, gy)) < GRAD_TOL


GRAD_MAX_POOL_CASES = {name: MAX_POOL_CASES[name] for name in
                       ("k2", "k3-s2-p1", "k3-s2-ceil", "k3-s2-p1-ceil", "ceil-drops-window-in-padding",
                        "dilation2-p1", "pairs", "k4-s3-p2-ceil")}


@pytest.mark.parametrize("name", GRAD_MAX_POOL_CASES)
def test_max_pool2d_backward_matches_numerical_gradient(name):
    shape, k, s, p, d, ceil_mode = GRAD_MAX_POOL_CASES[name]
    x = distinct(rng_for("grad", name), shape)
    gy = randn(rng_for("gy", name), F.max_pool2d(x, k, s, p, d, ceil_mode).shape)
    gx = F.max_pool2d_backward(gy, x, k, s, p, d, ceil_mode)
    num = naive.numerical_gradient(lambda v: F.max_pool2d(v, k, s, p, d, ceil_mode), x, gy)
    assert gx.shape == x.shape
    assert naive.rel_error(gx, num) < GRAD_TOL


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("name", AVG_POOL_CASES)
def test_avg_pool2d_backward_matches_numerical_gradient(name, count_include_pad):
    shape, k, s, p, ceil_mode = AVG_POOL_CASES[name]
    x = randn(rng_for("grad", name), shape)
    args = (k, s, p, ceil_mode, count_include_pad)
    gy = randn(rng_for("gy", name), F.avg_pool2d(x, *args).shape)
    gx = F.avg_pool2d_backward(gy, x, *args)
    assert gx.shape == x.shape
    assert naive.rel_error(gx, naive.numerical_gradient(lambda v: F.avg_pool2d(v, *args), x, gy)) < GRAD_TOL


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activation_backward_matches_numerical_gradient(name):
    forward, backward = getattr(F, name), getattr(F, name + "_backward")
    rng = rng_for("grad", name)
    x = randn(rng, (3, 4, 5)) * 2
    x[np.abs(x) < 0.1] = 0.5  # relu: no kinks within reach of the finite difference
    gy = randn(rng, x.shape)
    gx = backward(gy, x)
    assert gx.shape == x.shape and gx.dtype == x.dtype
    assert naive.rel_error(gx, naive.numerical_gradient(forward, x, gy)) < GRAD_TOL


@pytest.mark.parametrize("x_shape", [(5,), (4, 5), (2, 3, 5)])
@pytest.mark.parametrize("has_bias", [True, False])
def test_linear_backward_matches_numerical_gradient(x_shape, has_bias):
    rng = rng_for("grad", x_shape, has_bias)
    x, w = randn(rng, x_shape), randn(rng, (3, 5))
    b = randn(rng, 3) if has_bias else None
    gy = randn(rng, x_shape[:-1] + (3,))
    gx, gw, gb = F.linear_backward(gy, x, w, b)
    assert naive.rel_error(gx, naive.numerical_gradient(lambda v: F.linear(v, w, b), x, gy)) < GRAD_TOL
    assert naive.rel_error(gw, naive.numerical_gradient(lambda v: F.linear(x, v, b), w, gy)) < GRAD_TOL
    if has_bias:
        assert naive.rel_error(gb, naive.numerical_gradient(lambda v: F.linear(x, w, v), b, gy)) < GRAD_TOL
    else:
        assert gb is None


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_backward_matches_numerical_gradient(name, dim):
    forward, backward = getattr(F, name), getattr(F, name + "_backward")
    rng = rng_for("grad", name, dim)
    x, gy = randn(rng, (3, 4, 5)), randn(rng, (3, 4, 5))
    gx = backward(gy, x, dim)
    assert naive.rel_error(gx, naive.numerical_gradient(lambda v: forward(v, dim), x, gy)) < GRAD_TOL


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 3), (2, 3, 2, 2)])
def test_cross_entropy_backward_matches_numerical_gradient(shape, reduction):
    rng = rng_for("grad", shape, reduction)
    x = randn(rng, shape)
    target = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    df = np.ones(target.shape) if reduction == "none" else 1.0
    gx = F.cross_entropy_backward(x, target, reduction)
    num = naive.numerical_gradient(lambda v: F.cross_entropy(v, target, reduction), x, df)
    assert gx.shape == x.shape
    assert naive.rel_error(gx, num) < GRAD_TOL


# ----------------------------------------------------------------------------
# Identities and properties
# ----------------------------------------------------------------------------

@SETTINGS
@given(conv_settings(), st.integers(0, 2**32 - 1))
def test_conv2d_backward_is_the_adjoint(setting, seed):
    """<conv(x, w), g> = <x, grad_input(g)> = <w, grad_weight(g)> (conv is bilinear)."""
    x_shape, w_shape, _, kw = setting
    rng = np.random.default_rng(seed)
    x, w = randn(rng, x_shape), randn(rng, w_shape)
    y = F.conv2d(x, w, **kw)
    g = randn(rng, y.shape)
    gx, gw, _ = F.conv2d_backward(g, x, w, **kw)
    lhs = np.sum(y * g)
    np.testing.assert_allclose(np.sum(x * gx), lhs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.sum(w * gw), lhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kw", [dict(), dict(dilation=2), dict(groups=2), dict(stride=2)],
                         ids=["plain", "dilation2", "groups2", "stride2"])
@pytest.mark.parametrize("shift", [(2, 0), (0, 4), (2, 2)])
def test_conv2d_is_translation_equivariant(shift, kw):
    """Without padding, shifting the input by (a, b) (multiples of the stride)
    shifts the output by (a, b) / stride."""
    rng = rng_for("equivariance", shift, kw)
    x, w = randn(rng, (1, 4, 14, 14)), randn(rng, (2, 4 // kw.get("groups", 1), 3, 3))
    a, b = shift
    s = kw.get("stride", 1)
    full = F.conv2d(x, w, **kw)
    shifted = F.conv2d(x[:, :, a:, b:], w, **kw)
    np.testing.assert_allclose(shifted, full[:, :, a // s:, b // s:], rtol=1e-12, atol=1e-12)


def test_conv2d_same_padding_is_equivariant_in_the_interior():
    """'same' keeps the size; away from the border a rolled input gives a rolled output."""
    rng = rng_for("same-roll")
    x, w = randn(rng, (1, 2, 12, 12)), randn(rng, (3, 2, 3, 4))
    a, b = 2, 3
    y = F.conv2d(x, w, padding="same")
    y_rolled = F.conv2d(np.roll(x, (a, b), axis=(2, 3)), w, padding="same")
    assert y.shape == (1, 3, 12, 12)
    interior = (slice(None), slice(None), slice(a + 2, 12 - 2), slice(b + 3, 12 - 3))
    np.testing.assert_allclose(y_rolled[interior], np.roll(y, (a, b), axis=(2, 3))[interior],
                               rtol=1e-12, atol=1e-12)


def test_max_pool2d_is_translation_equivariant_by_the_stride():
    x = randn(rng_for("pool-shift"), (1, 2, 12, 12))
    np.testing.assert_array_equal(F.max_pool2d(x[:, :, 2:, 4:], 3, 2), F.max_pool2d(x, 3, 2)[:, :, 1:, 2:])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_is_a_distribution_and_shift_invariant(dim, dtype):
    x = randn(rng_for("softmax", dim, dtype), (3, 4, 5), dtype) * 10
    s = F.softmax(x, dim)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(s.sum(axis=dim), 1.0, rtol=tol)
    assert np.all((s >= 0) & (s <= 1))
    np.testing.assert_allclose(F.softmax(x + dtype(100), dim), s, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=tol)
    np.testing.assert_allclose(np.exp(F.log_softmax(x, dim)), s, rtol=tol * 10, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_huge_logits_is_finite(dtype):
    big = 1e30 if dtype == np.float32 else 1e300
    x = np.array([[big, 0, -big], [0, big, 0]], dtype=dtype)
    target = np.array([1, 1])
    loss = F.cross_entropy(x, target, "none")
    assert np.all(np.isfinite(loss))
    np.testing.assert_allclose(loss, [big, 0], rtol=1e-6)
    g = F.cross_entropy_backward(x, target)
    assert np.all(np.isfinite(g))
    assert np.all(np.isfinite(F.softmax(x, 1))) and np.all(np.isfinite(F.log_softmax(x, 1)))


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_an_empty_batch(dtype):
    """As in PyTorch: the mean of no losses is NaN, their sum 0, the gradient empty."""
    x, target = np.zeros((0, 5), dtype), np.zeros(0, np.int64)
    mean = F.cross_entropy(x, target)
    assert np.isnan(mean) and np.asarray(mean).dtype == dtype
    assert F.cross_entropy(x, target, "sum") == 0 and F.cross_entropy(x, target, "none").shape == (0,)
    for reduction in ("mean", "sum", "none"):
        g = F.cross_entropy_backward(x, target, reduction)
        assert g.shape == (0, 5) and g.dtype == dtype


def test_cross_entropy_backward_rows_sum_to_zero():
    x = randn(rng_for("ce-rows"), (4, 5, 3))
    target = rng_for("ce-t").integers(0, 5, size=(4, 3))
    np.testing.assert_allclose(F.cross_entropy_backward(x, target, "sum").sum(axis=1), 0, atol=1e-14)


def test_inputs_are_not_modified_and_views_are_accepted():
    rng = rng_for("views")
    x = randn(rng, (1, 2, 7, 6)).transpose(0, 1, 3, 2)  # non-contiguous view
    w, b = randn(rng, (3, 2, 3, 3)), randn(rng, 3)
    copies = [a.copy() for a in (x, w, b)]
    y = F.conv2d(x, w, b, padding=1)
    F.conv2d_backward(np.ones_like(y), x, w, b, padding=1)
    F.max_pool2d_backward(np.ones((1, 2, 3, 3)), x, 2)
    F.avg_pool2d_backward(np.ones((1, 2, 3, 3)), x, 2)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(y, naive.conv2d(x, w, b, padding=1), rtol=1e-12)


def test_pool_accepts_numpy_integer_stride():
    """Settings computed with NumPy (np.int64) are ints too, as for kernel_size."""
    x = randn(rng_for("np-int"), (1, 1, 4, 4))
    np.testing.assert_array_equal(F.max_pool2d(x, np.int64(2), stride=np.int64(2)), F.max_pool2d(x, 2))
    np.testing.assert_array_equal(F.avg_pool2d(x, np.int64(2), stride=np.int64(2)), F.avg_pool2d(x, 2))


# ----------------------------------------------------------------------------
# Bad input: exactly ValueError/TypeError, with a message that names the argument
# ----------------------------------------------------------------------------

X = np.zeros((1, 2, 5, 5))
W = np.zeros((3, 2, 3, 3))
Y = np.zeros((1, 3, 3, 3))  # conv2d(X, W)'s output shape
P = np.zeros((1, 2, 2, 2))  # pool(X, 2)'s output shape
T = np.array([0, 1, 2])
L = np.zeros((3, 4))

BAD_INPUTS = {
    # conv2d
    "conv input 3-d": (lambda: F.conv2d(X[0], W), ValueError, r"^input must be 4-d"),
    "conv weight 3-d": (lambda: F.conv2d(X, W[0]), ValueError, r"^weight must be 4-d"),
    "conv int input": (lambda: F.conv2d(X.astype(int), W), TypeError, r"^input must have dtype float"),
    "conv int weight": (lambda: F.conv2d(X, W.astype(np.int32)), TypeError, r"^weight must have dtype"),
    "conv float16 input": (lambda: F.conv2d(X.astype(np.float16), W), TypeError, r"^input .*float16"),
    "conv mixed dtypes": (lambda: F.conv2d(X.astype(np.float32), W), TypeError, r"^weight .*float32.*float64"),
    "conv bias mixed dtype": (lambda: F.conv2d(X, W, np.zeros(3, np.float32)), TypeError, r"^bias .*dtype"),
    "conv list input": (lambda: F.conv2d(X.tolist(), W), TypeError, r"^input must be a numpy.ndarray, got list"),
    "conv channel mismatch": (lambda: F.conv2d(X, np.zeros((3, 3, 3, 3))), ValueError, r"weight\.shape\[1\]=3"),
    "conv groups not dividing input channels": (lambda: F.conv2d(np.zeros((1, 3, 5, 5)), np.zeros((2, 1, 3, 3)),
                                                                 groups=2), ValueError, r"^groups=2 .*input channels \(3\)"),
    "conv groups not dividing output channels": (lambda: F.conv2d(X, np.zeros((3, 1, 3, 3)), groups=2),
                                                 ValueError, r"^groups=2 .*output channels"),
    "conv groups 0": (lambda: F.conv2d(X, W, groups=0), ValueError, r"^groups .*got 0"),
    "conv groups float": (lambda: F.conv2d(X, W, groups=1.0), ValueError, r"^groups .*1\.0"),
    "conv kernel larger than padded input": (lambda: F.conv2d(X, np.zeros((3, 2, 8, 3)), padding=1),
                                             ValueError, r"kernel .*larger than the padded input height"),
    "conv dilated kernel larger than input": (lambda: F.conv2d(X, W, dilation=(1, 3)), ValueError,
                                              r"kernel \(effective size 7 with dilation 3\).*width"),
    "conv stride 0": (lambda: F.conv2d(X, W, stride=0), ValueError, r"^stride must be positive, got 0"),
    "conv stride negative": (lambda: F.conv2d(X, W, stride=(1, -1)), ValueError, r"^stride must be positive"),
    "conv stride float": (lambda: F.conv2d(X, W, stride=1.5), TypeError, r"^stride must be an int"),
    "conv dilation 0": (lambda: F.conv2d(X, W, dilation=0), ValueError, r"^dilation must be positive"),
    "conv negative padding": (lambda: F.conv2d(X, W, padding=-1), ValueError, r"^padding must be >= 0"),
    "conv padding triple": (lambda: F.conv2d(X, W, padding=(1, 1, 1)), TypeError, r"^padding must be an int"),
    "conv same with stride 2": (lambda: F.conv2d(X, W, stride=2, padding="same"), ValueError,
                                r"^padding='same' requires stride 1"),
    "conv unknown padding string": (lambda: F.conv2d(X, W, padding="circular"), ValueError, r"^padding .*'circular'"),
    "conv bias wrong shape": (lambda: F.conv2d(X, W, np.zeros(2)), ValueError, r"^bias must have shape \(3,\)"),
    "conv bias 2-d": (lambda: F.conv2d(X, W, np.zeros((3, 1))), ValueError, r"^bias must be 1-d"),
    "conv grad_output wrong shape": (lambda: F.conv2d_backward(np.zeros((1, 3, 4, 4)), X, W), ValueError,
                                     r"^grad_output must have shape \(1, 3, 3, 3\)"),
    "conv grad_output wrong dtype": (lambda: F.conv2d_backward(Y.astype(np.float32), X, W), TypeError,
                                     r"^grad_output .*dtype"),
    "conv grad_output 3-d": (lambda: F.conv2d_backward(Y[0], X, W), ValueError, r"^grad_output must be 4-d"),
    "conv backward checks settings": (lambda: F.conv2d_backward(Y, X, W, stride=0), ValueError, r"^stride"),
    # pooling
    "max_pool input 3-d": (lambda: F.max_pool2d(X[0], 2), ValueError, r"^input must be 4-d"),
    "max_pool int input": (lambda: F.max_pool2d(X.astype(int), 2), TypeError, r"^input must have dtype"),
    "max_pool list input": (lambda: F.max_pool2d(X.tolist(), 2), TypeError, r"^input must be a numpy.ndarray"),
    "max_pool padding more than half kernel": (lambda: F.max_pool2d(X, 3, padding=2), ValueError,
                                               r"padding should be at most half of kernel_size"),
    "avg_pool padding more than half kernel": (lambda: F.avg_pool2d(X, (2, 4), padding=(2, 0)), ValueError,
                                               r"padding should be at most half of kernel_size"),
    "max_pool kernel larger than input": (lambda: F.max_pool2d(X, 6), ValueError,
                                          r"^kernel_size .*larger than the padded input height"),
    "avg_pool kernel larger than input": (lambda: F.avg_pool2d(X, (1, 7), padding=(0, 0)), ValueError,
                                          r"^kernel_size .*width"),
    "max_pool dilated kernel larger than input": (lambda: F.max_pool2d(X, 3, dilation=3), ValueError,
                                                  r"^kernel_size \(effective size 7 with dilation 3\)"),
    "max_pool kernel_size 0": (lambda: F.max_pool2d(X, 0), ValueError, r"^kernel_size must be positive"),
    "max_pool stride 0": (lambda: F.max_pool2d(X, 2, stride=0), ValueError, r"^stride must be positive"),
    "avg_pool stride negative": (lambda: F.avg_pool2d(X, 2, stride=-1), ValueError, r"^stride must be positive"),
    "max_pool dilation 0": (lambda: F.max_pool2d(X, 2, dilation=0), ValueError, r"^dilation must be positive"),
    "max_pool negative padding": (lambda: F.max_pool2d(X, 2, padding=-1), ValueError, r"^padding must be >= 0"),
    "max_pool ceil_mode not bool": (lambda: F.max_pool2d(X, 2, ceil_mode=1), TypeError, r"^ceil_mode must be a bool"),
    "avg_pool ceil_mode not bool": (lambda: F.avg_pool2d(X, 2, ceil_mode="yes"), TypeError, r"^ceil_mode"),
    "avg_pool count_include_pad not bool": (lambda: F.avg_pool2d(X, 2, count_include_pad=0), TypeError,
                                            r"^count_include_pad must be a bool"),
    "max_pool grad_output wrong shape": (lambda: F.max_pool2d_backward(np.zeros((1, 2, 3, 3)), X, 2), ValueError,
                                         r"^grad_output must have shape \(1, 2, 2, 2\)"),
    "max_pool grad_output wrong dtype": (lambda: F.max_pool2d_backward(P.astype(np.float32), X, 2), TypeError,
                                         r"^grad_output"),
    "avg_pool grad_output wrong shape": (lambda: F.avg_pool2d_backward(np.zeros((1, 2, 3, 3)), X, 2), ValueError,
                                         r"^grad_output must have shape \(1, 2, 2, 2\)"),
    "avg_pool grad_output int": (lambda: F.avg_pool2d_backward(P.astype(int), X, 2), TypeError, r"^grad_output"),
    # activations
    "relu int input": (lambda: F.relu(np.arange(3)), TypeError, r"^input must have dtype"),
    "sigmoid list input": (lambda: F.sigmoid([0.0, 1.0]), TypeError, r"^input must be a numpy.ndarray"),
    "tanh bool input": (lambda: F.tanh(np.array([True])), TypeError, r"^input must have dtype"),
    "relu_backward shape mismatch": (lambda: F.relu_backward(np.zeros(3), np.zeros(4)), ValueError,
                                     r"^grad_output must have shape \(4,\)"),
    "sigmoid_backward mixed dtypes": (lambda: F.sigmoid_backward(np.zeros(3, np.float32), np.zeros(3)), TypeError,
                                      r"^grad_output .*dtype"),
    "tanh_backward int grad_output": (lambda: F.tanh_backward(np.zeros(3, int), np.zeros(3)), TypeError,
                                      r"^grad_output"),
    # linear
    "linear in_features mismatch": (lambda: F.linear(np.zeros((2, 4)), np.zeros((3, 5))), ValueError,
                                    r"^input's last dimension \(4.*in_features \(5\)"),
    "linear weight 3-d": (lambda: F.linear(np.zeros((2, 5)), np.zeros((1, 3, 5))), ValueError, r"^weight must be 2-d"),
    "linear 0-d input": (lambda: F.linear(np.zeros(()), np.zeros((3, 1))), ValueError, r"^input must have at least 1"),
    "linear int input": (lambda: F.linear(np.zeros((2, 5), int), np.zeros((3, 5))), TypeError, r"^input"),
    "linear mixed dtypes": (lambda: F.linear(np.zeros((2, 5)), np.zeros((3, 5), np.float32)), TypeError,
                            r"^weight .*dtype"),
    "linear bias wrong shape": (lambda: F.linear(np.zeros((2, 5)), np.zeros((3, 5)), np.zeros(5)), ValueError,
                                r"^bias must have shape \(3,\)"),
    "linear grad_output wrong shape": (lambda: F.linear_backward(np.zeros((2, 4)), np.zeros((2, 5)),
                                                                 np.zeros((3, 5))),
                                       ValueError, r"^grad_output must have shape \(2, 3\)"),
    # softmax
    "softmax dim out of range": (lambda: F.softmax(L, 2), IndexError, r"^dim must be in \[-2, 1\].*got 2"),
    "softmax negative dim out of range": (lambda: F.softmax(L, -3), IndexError, r"^dim .*got -3"),
    "log_softmax dim out of range": (lambda: F.log_softmax(L, 5), IndexError, r"^dim"),
    "softmax dim float": (lambda: F.softmax(L, 1.0), TypeError, r"^dim must be an int"),
    "softmax 0-d input": (lambda: F.softmax(np.zeros(()), 0), ValueError, r"^input must have at least 1"),
    "softmax int input": (lambda: F.softmax(np.zeros(3, int), 0), TypeError, r"^input"),
    "softmax_backward dim out of range": (lambda: F.softmax_backward(L, L, 2), IndexError, r"^dim"),
    "log_softmax_backward shape mismatch": (lambda: F.log_softmax_backward(L[:2], L, 1), ValueError,
                                            r"^grad_output must have shape \(3, 4\)"),
    # cross-entropy
    "cross_entropy float targets": (lambda: F.cross_entropy(L, T.astype(float)), TypeError,
                                    r"^target must hold integer class indices, got dtype float64"),
    "cross_entropy list targets": (lambda: F.cross_entropy(L, [0, 1, 2]), TypeError, r"^target must be a numpy"),
    "cross_entropy negative target": (lambda: F.cross_entropy(L, np.array([0, -1, 2])), ValueError,
                                      r"^target values must be in \[0, 3\].*got -1"),
    "cross_entropy target equal to C": (lambda: F.cross_entropy(L, np.array([0, 4, 2])), ValueError,
                                        r"^target values must be in \[0, 3\].*got 4"),
    "cross_entropy target wrong shape": (lambda: F.cross_entropy(L, T[:, None]), ValueError,
                                         r"^target must have shape \(3,\)"),
    "cross_entropy 1-d input": (lambda: F.cross_entropy(L[0], T[:1]), ValueError, r"^input must have at least 2"),
    "cross_entropy unknown reduction": (lambda: F.cross_entropy(L, T, "avg"), ValueError,
                                        r"^reduction must be .*'avg'"),
    "cross_entropy_backward unknown reduction": (lambda: F.cross_entropy_backward(L, T, None), ValueError,
                                                 r"^reduction"),
    "cross_entropy_backward target out of range": (lambda: F.cross_entropy_backward(L, T + 2), ValueError,
                                                   r"^target values"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(name):
    call, exc_type, pattern = BAD_INPUTS[name]
    with pytest.raises(exc_type, match=pattern) as info:
        call()
    assert type(info.value) is exc_type  # not a subclass such as a Numba typing error


@SETTINGS
@given(st.integers(-1, 3), st.integers(-1, 3), st.integers(0, 3), st.integers(0, 3), st.integers(1, 7),
       st.integers(1, 4), st.sampled_from([0, 1, "same", "valid", (0, 2)]))
def test_conv2d_random_settings_either_work_or_raise_cleanly(stride, pad, dilation, groups, k, h, padding):
    """Any combination of settings gives the reference result or a ValueError/TypeError."""
    padding = pad if padding == 0 else padding
    x, w = np.ones((1, 2, h, 4)), np.ones((2, 2 // max(groups, 1) or 1, k, 3))
    try:
        y = F.conv2d(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)
    except Exception as e:  # noqa: BLE001 - the type is the point of the test
        assert type(e) in (ValueError, TypeError), repr(e)
        return
    np.testing.assert_allclose(y, naive.conv2d(x, w, stride=stride, padding=padding, dilation=dilation,
                                               groups=groups))


@SETTINGS
@given(st.integers(0, 6), st.integers(-1, 3), st.integers(-1, 3), st.integers(0, 3), st.booleans(),
       st.integers(1, 5))
def test_pool_random_settings_either_work_or_raise_cleanly(k, stride, padding, dilation, ceil_mode, h):
    x = np.arange(2 * h * 4, dtype=np.float64).reshape(1, 2, h, 4)
    for f, ref, kw in ((F.max_pool2d, naive.max_pool2d, dict(dilation=dilation)), (F.avg_pool2d, naive.avg_pool2d, {})):
        try:
            y = f(x, k, stride, padding, ceil_mode=ceil_mode, **kw)
        except Exception as e:  # noqa: BLE001
            assert type(e) in (ValueError, TypeError), repr(e)
            continue
        np.testing.assert_allclose(y, ref(x, k, stride, padding, ceil_mode=ceil_mode, **kw))


@pytest.mark.parametrize("k,d", [(3, 1), (2, 1), (3, 2)])
def test_full_padding_gives_the_full_convolution_size(k, d):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 1, 6, 7))
    w = rng.standard_normal((1, 1, k, k))
    y = F.conv2d(x, w, padding="full", dilation=d)
    span = d * (k - 1) + 1
    assert y.shape == (1, 1, 6 + span - 1, 7 + span - 1)
    assert y.shape[2] == F.conv_output_size(6, k, 1, "full", d)
    ref = naive.conv2d(x, w, padding=d * (k - 1), dilation=d)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    if d == 1:  # full cross-correlation, as scipy defines it
        np.testing.assert_allclose(y[0, 0], correlate2d(x[0, 0], w[0, 0], mode="full"), atol=1e-12)


def test_padding_amounts_for_each_mode():
    assert F.padding_amounts("valid", 3) == (0, 0)
    assert F.padding_amounts("same", 4) == (1, 2)
    assert F.padding_amounts("full", 3, dilation=2) == (4, 4)
    assert F.padding_amounts(2, 5) == (2, 2)
    with pytest.raises(ValueError, match="padding"):
        F.padding_amounts("circular", 3)


@pytest.mark.parametrize("padding, stride, dilation, kernel, expected", [
    (1, (1, 1), (1, 1), (3, 3), ((1, 1), (1, 1))),
    ((2, 0), (2, 2), (1, 1), (3, 3), ((2, 2), (0, 0))),
    ("valid", (1, 1), (1, 1), (5, 5), ((0, 0), (0, 0))),
    ("same", (1, 1), (1, 1), (4, 3), ((1, 2), (1, 1))),   # the extra row at the bottom
    ("same", (1, 1), (2, 2), (3, 3), ((2, 2), (2, 2))),
    ("full", (1, 1), (1, 1), (3, 2), ((2, 2), (1, 1))),
])
def test_resolve_padding(padding, stride, dilation, kernel, expected):
    assert F.resolve_padding(padding, stride, dilation, kernel) == expected
    (t, b), (l, r) = expected           # conv2d's output size agrees with the amounts
    out = F.conv2d(np.zeros((1, 1, 9, 9)), np.zeros((1, 1) + kernel), stride=stride,
                   padding=padding, dilation=dilation)
    assert out.shape[2:] == tuple((9 + p - d * (k - 1) - 1) // s + 1 for p, d, k, s in
                                  zip((t + b, l + r), dilation, kernel, stride))
    with pytest.raises(ValueError, match="stride 1"):
        F.resolve_padding("same", (2, 2), (1, 1), (3, 3))

"""Tests for cnnlib.ops.conv_variants and cnnlib.nn.conv_layers: true convolution
against scipy.signal.convolve2d and its algebra, separable convolutions against
the full-kernel conv2d and the loop references of naive.py, central-difference
gradient checks, cost formulas, the DepthwiseSeparableConv2d layer, bad input.
"""

import zlib

import naive
import numpy as np
import pytest
from scipy.signal import convolve2d as scipy_convolve2d

from cnnlib import functional as F
from cnnlib import nn
from cnnlib.nn.conv_layers import DepthwiseSeparableConv2d
from cnnlib.ops import conv_variants as CV

DTYPES = [np.float32, np.float64]
GRAD_TOL = 1e-6


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def randn(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


def tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


def flip(w):
    return w[..., ::-1, ::-1]


# ----------------------------------------------------------------------------
# True convolution
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["valid", "full", "same"])
@pytest.mark.parametrize("kernel", [(3, 3), (2, 4), (4, 3), (1, 5), (2, 2)])
def test_convolve2d_equals_scipy_convolve2d(dtype, mode, kernel):
    rng = rng_for("scipy", mode, kernel)
    x, w = randn(rng, (1, 1, 7, 8), dtype), randn(rng, (1, 1, *kernel), dtype)
    y = CV.convolve2d(x, w, padding=mode)
    want = scipy_convolve2d(x[0, 0].astype(np.float64), w[0, 0].astype(np.float64), mode=mode)
    assert y.dtype == dtype and y.shape == (1, 1, *want.shape)
    np.testing.assert_allclose(y[0, 0], want, **tol(dtype))


CONVOLVE_CASES = {
    "default": dict(x=(2, 3, 6, 6), w=(4, 3, 3, 3)),
    "stride-pad": dict(x=(1, 2, 7, 8), w=(3, 2, 3, 2), stride=(2, 1), padding=(1, 2)),
    "dilation-groups": dict(x=(1, 4, 9, 8), w=(6, 2, 3, 3), dilation=(2, 1), groups=2, padding=1),
    "depthwise-full": dict(x=(2, 3, 5, 5), w=(3, 1, 2, 3), groups=3, padding="full"),
    "same-even-dilated": dict(x=(1, 2, 6, 7), w=(2, 2, 2, 4), padding="same", dilation=(3, 1)),
    "same-no-bias": dict(x=(2, 2, 5, 5), w=(3, 2, 4, 4), padding="same", bias=False),
}


def convolve_arrays(case, dtype, rng):
    x, w = randn(rng, case["x"], dtype), randn(rng, case["w"], dtype)
    b = None if case.get("bias") is False else randn(rng, (case["w"][0],), dtype)
    kw = {k: v for k, v in case.items() if k not in ("x", "w", "bias")}
    return x, w, b, kw


def reference_convolve(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """Loop reference: naive cross-correlation with the flipped kernel; 'full' pads
    d*(k-1) on each side and 'same' keeps the centre of 'full' (scipy's definition)."""
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    th, tw = dh * (w.shape[2] - 1), dw * (w.shape[3] - 1)
    if padding not in ("full", "same"):
        return naive.conv2d(x, flip(w), b, stride, padding, (dh, dw), groups)
    full = naive.conv2d(x, flip(w), b, stride, (th, tw), (dh, dw), groups)
    if padding == "full":
        return full
    top, left = th // 2, tw // 2
    return full[:, :, top:top + x.shape[2], left:left + x.shape[3]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CONVOLVE_CASES)
def test_convolve2d_matches_the_loop_reference(name, dtype):
    x, w, b, kw = convolve_arrays(CONVOLVE_CASES[name], dtype, rng_for("flip", name))
    y = CV.convolve2d(x, w, b, **kw)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, reference_convolve(x, w, b, **kw), **tol(dtype))


def test_same_padding_differs_from_conv2d_only_for_even_kernels():
    rng = rng_for("same-even")
    x = randn(rng, (1, 1, 6, 6))
    odd, even = randn(rng, (1, 1, 3, 3)), randn(rng, (1, 1, 2, 2))
    np.testing.assert_allclose(CV.convolve2d(x, odd, padding="same"),
                               F.conv2d(x, flip(odd), padding="same"), atol=1e-12)
    # Even kernel: conv2d (PyTorch) puts the odd zero row/column at the bottom/right,
    # the centre of the full convolution needs it at the top/left: a one-pixel shift.
    ours = CV.convolve2d(x, even, padding="same")
    torchs = F.conv2d(x, flip(even), padding="same")
    assert not np.allclose(ours, torchs)
    np.testing.assert_allclose(ours[..., 1:, 1:], torchs[..., :-1, :-1], atol=1e-12)


@pytest.mark.parametrize("mode", ["valid", "full", "same"])
@pytest.mark.parametrize("d", [2, 3])
def test_dilated_convolution_equals_convolution_with_a_zero_stuffed_kernel(mode, d):
    rng = rng_for("stuffed", mode, d)
    x, w = randn(rng, (1, 2, 11, 10)), randn(rng, (3, 2, 3, 2))
    stuffed = np.zeros((3, 2, d * 2 + 1, d + 1))
    stuffed[:, :, ::d, ::d] = w
    np.testing.assert_allclose(CV.convolve2d(x, w, padding=mode, dilation=d),
                               CV.convolve2d(x, stuffed, padding=mode), atol=1e-12)


def full(f, g, op=CV.convolve2d):
    """2-D single-channel 'full' convolution (or correlation) of two plain 2-D arrays."""
    return op(f[None, None], g[None, None], padding="full")[0, 0]


@pytest.mark.parametrize("shapes", [((4, 5), (3, 3)), ((3, 3), (6, 2)), ((1, 4), (5, 1)), ((2, 2), (2, 2))])
def test_true_convolution_is_commutative(shapes):
    rng = rng_for("commute", shapes)
    f, g = randn(rng, shapes[0]), randn(rng, shapes[1])
    np.testing.assert_allclose(full(f, g), full(g, f), atol=1e-12)
    np.testing.assert_allclose(full(f, g), scipy_convolve2d(f, g), atol=1e-12)


@pytest.mark.parametrize("shapes", [((4, 5), (3, 3), (2, 4)), ((3, 3), (1, 2), (5, 1)), ((2, 2),) * 3])
def test_true_convolution_is_associative(shapes):
    rng = rng_for("associate", shapes)
    f, g, h = (randn(rng, s) for s in shapes)
    np.testing.assert_allclose(full(full(f, g), h), full(f, full(g, h)), atol=1e-12)


def test_cross_correlation_is_not_commutative():
    f = np.array([[1.0, 2.0, 3.0]])
    g = np.array([[0.0, 1.0]])
    fg, gf = full(f, g, F.conv2d), full(g, f, F.conv2d)
    # corr(f, g)[j] = sum_q f[j - 1 + q] g[q]: [1, 2, 3, 0] ; corr(g, f) is its mirror image.
    np.testing.assert_array_equal(fg, [[1.0, 2.0, 3.0, 0.0]])
    np.testing.assert_array_equal(gf, [[0.0, 3.0, 2.0, 1.0]])
    assert not np.array_equal(fg, gf)
    np.testing.assert_array_equal(gf, fg[::-1, ::-1])  # corr(g, f) = flip(corr(f, g))


def test_cross_correlation_is_not_associative():
    rng = rng_for("corr-assoc")
    f, g, h = randn(rng, (3, 4)), randn(rng, (2, 3)), randn(rng, (3, 2))
    left = full(full(f, g, F.conv2d), h, F.conv2d)
    right = full(f, full(g, h, F.conv2d), F.conv2d)
    assert not np.allclose(left, right)


def test_convolution_and_correlation_agree_for_a_symmetric_kernel():
    rng = rng_for("symmetric")
    x, w = randn(rng, (1, 2, 6, 6)), randn(rng, (2, 2, 3, 3))
    w = w + flip(w)
    np.testing.assert_allclose(CV.convolve2d(x, w, padding=1), F.conv2d(x, w, padding=1), atol=1e-12)


@pytest.mark.parametrize("name", CONVOLVE_CASES)
def test_convolve2d_backward_matches_numerical_gradient(name):
    x, w, b, kw = convolve_arrays(CONVOLVE_CASES[name], np.float64, rng_for("grad", name))
    gy = randn(rng_for("gy", name), CV.convolve2d(x, w, b, **kw).shape)
    gx, gw, gb = CV.convolve2d_backward(gy, x, w, b, **kw)
    assert gx.shape == x.shape and gw.shape == w.shape
    assert naive.rel_error(gx, naive.numerical_gradient(lambda v: CV.convolve2d(v, w, b, **kw), x, gy)) < GRAD_TOL
    assert naive.rel_error(gw, naive.numerical_gradient(lambda v: CV.convolve2d(x, v, b, **kw), w, gy)) < GRAD_TOL
    if b is None:
        assert gb is None
    else:
        assert naive.rel_error(gb, naive.numerical_gradient(lambda v: CV.convolve2d(x, w, v, **kw), b, gy)) < GRAD_TOL


# ----------------------------------------------------------------------------
# Spatially separable convolution
# ----------------------------------------------------------------------------

def gaussian(k, sigma=1.0):
    t = np.arange(k) - (k - 1) / 2
    g = np.exp(-t**2 / (2 * sigma**2))
    return g / g.sum()


@pytest.mark.parametrize("dtype", DTYPES)
def test_separable_factors_recover_rank_one_kernels(dtype):
    sobel = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=dtype)
    blur = np.outer(gaussian(5), gaussian(3, 0.7)).astype(dtype)
    for kernel in (sobel, blur, -blur):
        col, row, s = CV.separable_factors(kernel)
        assert col.shape == (kernel.shape[0],) and row.shape == (kernel.shape[1],)
        assert col.dtype == row.dtype == s.dtype == dtype
        np.testing.assert_allclose(np.outer(col, row), kernel, **tol(dtype))
        assert col[np.argmax(np.abs(col))] > 0
        assert s[1:].max() <= 1e-6 * s[0]
    col, _, _ = CV.separable_factors(sobel)
    np.testing.assert_allclose(col / col[0], [1, 2, 1], rtol=1e-5)  # Sobel = [1 2 1]^T [1 0 -1]


def test_separable_factors_rejects_a_full_rank_kernel_and_approximates_it():
    kernel = randn(rng_for("rank"), (4, 3))
    with pytest.raises(ValueError, match=r"^kernel has rank > 1"):
        CV.separable_factors(kernel)
    col, row, s, err = CV.separable_factors(kernel, rank1_approx=True)
    _, s_ref, _ = np.linalg.svd(kernel)
    np.testing.assert_allclose(s, s_ref, atol=1e-12)
    actual = np.linalg.norm(kernel - np.outer(col, row)) / np.linalg.norm(kernel)
    assert err == pytest.approx(actual, rel=1e-10)
    # Eckart-Young: no other rank-1 kernel does better (try some).
    rng = rng_for("eckart")
    for _ in range(20):
        a, b = col + 0.1 * rng.standard_normal(4), row + 0.1 * rng.standard_normal(3)
        assert np.linalg.norm(kernel - np.outer(a, b)) >= np.linalg.norm(kernel - np.outer(col, row))
    # A rank-1 kernel plus tiny noise passes with a looser tolerance.
    noisy = np.outer(gaussian(3), gaussian(3)) + 1e-9 * kernel[:3, :3]
    CV.separable_factors(noisy, tol=1e-6)
    with pytest.raises(ValueError):
        CV.separable_factors(noisy, tol=1e-12)


def test_separable_factors_of_zero_and_vector_kernels():
    col, row, s = CV.separable_factors(np.zeros((3, 3)))
    np.testing.assert_array_equal(np.outer(col, row), 0)
    col, row, _ = CV.separable_factors(np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(np.outer(col, row), [[1, 2, 3]], atol=1e-12)


SEPARABLE_CASES = {
    "default": dict(kernel=(3, 3)),
    "same": dict(kernel=(5, 3), padding="same"),
    "full": dict(kernel=(2, 3), padding="full"),
    "stride-padding-pair": dict(kernel=(3, 4), stride=(2, 3), padding=(1, 2)),
    "valid-stride": dict(kernel=(3, 3), stride=2, padding="valid"),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("name", SEPARABLE_CASES)
def test_spatially_separable_conv2d_equals_the_full_kernel(name, per_channel, dtype):
    case = dict(SEPARABLE_CASES[name])
    kh, kw = case.pop("kernel")
    rng = rng_for("sep", name, per_channel)
    x = randn(rng, (2, 3, 9, 10), dtype)
    col = randn(rng, (3, kh) if per_channel else (kh,), dtype)
    row = randn(rng, (3, kw) if per_channel else (kw,), dtype)
    y = CV.spatially_separable_conv2d(x, col, row, **case)
    kernels = np.einsum("ci,cj->cij", np.broadcast_to(col, (3, kh)), np.broadcast_to(row, (3, kw)))
    want = F.conv2d(x, np.ascontiguousarray(kernels[:, None]), groups=3, **case)
    assert y.shape == want.shape and y.dtype == dtype
    np.testing.assert_allclose(y, want, **tol(dtype))
    if case.get("padding") not in ("same", "full"):
        np.testing.assert_allclose(y, naive.conv2d(x, kernels[:, None], groups=3, **case), **tol(dtype))


def test_spatially_separable_pipeline_from_svd():
    x = randn(rng_for("pipeline"), (1, 1, 8, 8))
    kernel = np.outer(gaussian(5), gaussian(5))
    col, row, _ = CV.separable_factors(kernel)
    np.testing.assert_allclose(CV.spatially_separable_conv2d(x, col, row, padding=2),
                               F.conv2d(x, kernel[None, None], padding=2), atol=1e-12)


# ----------------------------------------------------------------------------
# Depthwise-separable convolution
# ----------------------------------------------------------------------------

DS_CASES = {
    "default": dict(x=(2, 3, 6, 6), k=3, m=1, c_out=4),
    "multiplier-stride-pad": dict(x=(1, 2, 7, 8), k=3, m=2, c_out=5, stride=2, padding=1),
    "dilation-same": dict(x=(2, 3, 7, 7), k=(3, 2), m=1, c_out=2, padding="same", dilation=2),
    "no-bias-pairs": dict(x=(1, 4, 6, 9), k=(2, 3), m=3, c_out=3, stride=(1, 2), padding=(1, 0), bias=False),
}


def ds_arrays(case, dtype, rng):
    n, c, h, w = case["x"]
    kh, kw = (case["k"], case["k"]) if isinstance(case["k"], int) else case["k"]
    x = randn(rng, case["x"], dtype)
    wd = randn(rng, (c * case["m"], 1, kh, kw), dtype)
    wp = randn(rng, (case["c_out"], c * case["m"], 1, 1), dtype)
    b = None if case.get("bias") is False else randn(rng, (case["c_out"],), dtype)
    kw_ = {k: case[k] for k in ("stride", "padding", "dilation") if k in case}
    return x, wd, wp, b, kw_


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", DS_CASES)
def test_depthwise_separable_conv2d_matches_two_reference_convolutions(name, dtype):
    x, wd, wp, b, kw = ds_arrays(DS_CASES[name], dtype, rng_for("ds", name))
    y = CV.depthwise_separable_conv2d(x, wd, wp, b, **kw)
    z = naive.conv2d(x, wd, groups=x.shape[1], **{**kw, "padding": kw.get("padding", 0)})
    want = naive.conv2d(z, wp, b)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, want, rtol=1e-4 if dtype == np.float32 else 1e-12,
                               atol=1e-4 if dtype == np.float32 else 1e-12)


def test_depthwise_separable_is_a_conv2d_with_a_factored_weight():
    """Composing the two steps gives one conv2d whose weight is W[o, c] = sum_j w_p[o, j] w_d[j]."""
    x, wd, wp, b, kw = ds_arrays(DS_CASES["multiplier-stride-pad"], np.float64, rng_for("factored"))
    m = wd.shape[0] // x.shape[1]
    dense = np.einsum("ocm,cmpq->ocpq", wp[:, :, 0, 0].reshape(wp.shape[0], x.shape[1], m),
                      wd[:, 0].reshape(x.shape[1], m, *wd.shape[2:]))
    np.testing.assert_allclose(CV.depthwise_separable_conv2d(x, wd, wp, b, **kw),
                               F.conv2d(x, np.ascontiguousarray(dense), b, **kw), atol=1e-12)


@pytest.mark.parametrize("name", DS_CASES)
def test_depthwise_separable_backward_matches_numerical_gradient(name):
    x, wd, wp, b, kw = ds_arrays(DS_CASES[name], np.float64, rng_for("ds-grad", name))
    f = CV.depthwise_separable_conv2d
    gy = randn(rng_for("ds-gy", name), f(x, wd, wp, b, **kw).shape)
    gx, gwd, gwp, gb = CV.depthwise_separable_conv2d_backward(gy, x, wd, wp, b, **kw)
    assert (gx.shape, gwd.shape, gwp.shape) == (x.shape, wd.shape, wp.shape)
    assert naive.rel_error(gx, naive.numerical_gradient(lambda v: f(v, wd, wp, b, **kw), x, gy)) < GRAD_TOL
    assert naive.rel_error(gwd, naive.numerical_gradient(lambda v: f(x, v, wp, b, **kw), wd, gy)) < GRAD_TOL
    assert naive.rel_error(gwp, naive.numerical_gradient(lambda v: f(x, wd, v, b, **kw), wp, gy)) < GRAD_TOL
    if b is None:
        assert gb is None
    else:
        assert naive.rel_error(gb, naive.numerical_gradient(lambda v: f(x, wd, wp, v, **kw), b, gy)) < GRAD_TOL


# ----------------------------------------------------------------------------
# Costs
# ----------------------------------------------------------------------------

def counted_macs(y_shape, w_shape):
    """Multiplications a dense conv2d performs: each output element reads C_in/groups * kH * kW taps."""
    return int(np.prod(y_shape[1:])) * int(np.prod(w_shape[1:]))


@pytest.mark.parametrize("c_in,c_out,k,groups,stride,padding",
                         [(3, 8, 3, 1, 1, 1), (4, 6, (3, 5), 2, 2, 0), (6, 6, 3, 6, 1, "same"), (1, 4, 1, 1, 1, 0)])
def test_conv2d_cost_counts_the_multiplications_of_conv2d(c_in, c_out, k, groups, stride, padding):
    kh, kw = (k, k) if isinstance(k, int) else k
    x, w = np.zeros((1, c_in, 9, 10)), np.zeros((c_out, c_in // groups, kh, kw))
    y = F.conv2d(x, w, stride=stride, padding=padding, groups=groups)
    cost = CV.conv2d_cost(c_in, c_out, k, y.shape[2:], groups=groups)
    assert cost["macs"] == counted_macs(y.shape, w.shape)
    assert cost["params"] == w.size + c_out
    assert cost["flops"] == 2 * cost["macs"]
    assert CV.conv2d_cost(c_in, c_out, k, y.shape[2:], groups=groups, bias=False)["params"] == w.size


@pytest.mark.parametrize("c_in,c_out,k,size", [(32, 64, 3, 56), (3, 16, 5, 28), (128, 128, 3, 7), (8, 1, 7, 5)])
def test_depthwise_separable_cost_ratio_is_one_over_c_out_plus_one_over_k_squared(c_in, c_out, k, size):
    standard = CV.conv2d_cost(c_in, c_out, k, size, bias=False)
    separable = CV.depthwise_separable_cost(c_in, c_out, k, size, bias=False)
    for key in ("params", "macs", "flops"):
        assert separable[key] / standard[key] == pytest.approx(1 / c_out + 1 / k**2, rel=1e-12)


def test_depthwise_separable_cost_counts_both_convolutions_and_the_layer():
    layer = DepthwiseSeparableConv2d(3, 5, 3, stride=2, padding=1, depth_multiplier=2, rng=0)
    x = np.zeros((1, 3, 9, 9), dtype=np.float32)
    z = layer.depthwise(x)
    y = layer.pointwise(z)
    cost = CV.depthwise_separable_cost(3, 5, 3, y.shape[2:], depth_multiplier=2)
    assert cost["params"] == layer.num_parameters() == 6 * 9 + 5 * 6 + 5
    assert cost["macs"] == counted_macs(z.shape, layer.depthwise.weight.shape) + \
        counted_macs(y.shape, layer.pointwise.weight.shape)


@pytest.mark.parametrize("k,size,stride,padding", [((3, 3), (8, 8), 1, "same"), ((5, 3), (9, 10), (2, 1), 1),
                                                    ((3, 3), (7, 7), 1, "valid"), ((2, 4), (6, 7), 2, "full")])
def test_spatially_separable_cost_counts_both_passes(k, size, stride, padding):
    rng = rng_for("sep-cost", k, size)
    x = randn(rng, (1, 2, *size))
    col, row = randn(rng, (k[0],)), randn(rng, (k[1],))
    y = CV.spatially_separable_conv2d(x, col, row, stride=stride, padding=padding)
    cost = CV.spatially_separable_cost(2, k, size, stride, padding)
    # first pass: (H_out, W) outputs of kH taps each; second: (H_out, W_out) outputs of kW taps
    assert cost["macs"] == 2 * (k[0] * y.shape[2] * size[1] + k[1] * y.shape[2] * y.shape[3])
    assert cost["params"] == 2 * (k[0] + k[1])
    if padding == "same":
        full_kernel = CV.conv2d_cost(2, 2, k, y.shape[2:], groups=2, bias=False)
        assert cost["macs"] / full_kernel["macs"] == pytest.approx((k[0] + k[1]) / (k[0] * k[1]))


# ----------------------------------------------------------------------------
# The DepthwiseSeparableConv2d layer
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_forward_equals_the_functional_and_backward_accumulates(dtype):
    layer = DepthwiseSeparableConv2d(2, 3, 3, stride=1, padding=1, dilation=2, depth_multiplier=2,
                                     dtype=dtype, rng=1)
    assert [n for n, _ in layer.named_parameters()] == ["depthwise.weight", "pointwise.weight", "pointwise.bias"]
    assert layer.depthwise.weight.shape == (4, 1, 3, 3) and layer.pointwise.weight.shape == (3, 4, 1, 1)
    rng = rng_for("layer", dtype)
    x = randn(rng, (2, 2, 7, 7), dtype)
    args = (layer.depthwise.weight.data, layer.pointwise.weight.data, layer.pointwise.bias.data)
    y = layer(x)
    settings = dict(padding=1, dilation=2)
    np.testing.assert_allclose(y, CV.depthwise_separable_conv2d(x, *args, **settings), **tol(dtype))
    gy = randn(rng, y.shape, dtype)
    gx = layer.backward(gy)
    want = CV.depthwise_separable_conv2d_backward(gy, x, *args, **settings)
    got = (gx, layer.depthwise.weight.grad, layer.pointwise.weight.grad, layer.pointwise.bias.grad)
    for g, w in zip(got, want):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, w, **tol(dtype))
    layer(x)
    layer.backward(gy)
    np.testing.assert_allclose(layer.pointwise.weight.grad, 2 * want[2], **tol(dtype))


def test_layer_gradients_match_numerical_gradients():
    layer = DepthwiseSeparableConv2d(2, 2, (3, 2), stride=2, padding=1, dtype=np.float64, rng=3)
    rng = rng_for("layer-grad")
    x = randn(rng, (1, 2, 6, 5))
    gy = randn(rng, layer(x).shape)
    layer.zero_grad()
    layer(x)
    gx = layer.backward(gy)
    assert naive.rel_error(gx, naive.numerical_gradient(layer.forward, x, gy)) < GRAD_TOL
    for _, p in layer.named_parameters():
        num = naive.numerical_gradient(lambda v: layer.forward(x), p.data, gy)
        assert naive.rel_error(p.grad, num) < GRAD_TOL


def test_layer_initialisation_follows_torch_for_each_part():
    layer = DepthwiseSeparableConv2d(16, 32, 5, depth_multiplier=2, rng=0)
    dw, pw, pb = (p.data for p in layer.parameters())
    assert dw.dtype == np.float32
    # torch.nn.Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = (C_in/groups) * kH * kW
    for array, fan_in in ((dw, 1 * 5 * 5), (pw, 32), (pb, 32)):
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(array).max() <= bound
        assert np.abs(array).max() > 0.9 * bound  # the whole range is used
    # Exactly two Conv2d layers drawn one after the other from one generator.
    rng = np.random.default_rng(0)
    depthwise = nn.Conv2d(16, 32, 5, groups=16, bias=False, rng=rng)
    pointwise = nn.Conv2d(32, 32, 1, rng=rng)
    np.testing.assert_array_equal(dw, depthwise.weight.data)
    np.testing.assert_array_equal(pw, pointwise.weight.data)
    np.testing.assert_array_equal(pb, pointwise.bias.data)


def test_layer_matches_torch():
    torch = pytest.importorskip("torch")
    layer = DepthwiseSeparableConv2d(3, 4, 3, stride=2, padding=1, depth_multiplier=2, dtype=np.float64, rng=0)
    dw = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3, bias=False).double()
    pw = torch.nn.Conv2d(6, 4, 1).double()
    with torch.no_grad():
        dw.weight.copy_(torch.from_numpy(layer.depthwise.weight.data))
        pw.weight.copy_(torch.from_numpy(layer.pointwise.weight.data))
        pw.bias.copy_(torch.from_numpy(layer.pointwise.bias.data))
    x = randn(rng_for("torch"), (2, 3, 8, 7))
    xt = torch.from_numpy(x).requires_grad_()
    yt = pw(dw(xt))
    gy = randn(rng_for("torch-gy"), tuple(yt.shape))
    yt.backward(torch.from_numpy(gy))
    np.testing.assert_allclose(layer(x), yt.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(layer.backward(gy), xt.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(layer.depthwise.weight.grad, dw.weight.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(layer.pointwise.bias.grad, pw.bias.grad.numpy(), atol=1e-12)


def test_layer_repr_and_bad_settings():
    layer = DepthwiseSeparableConv2d(2, 3, 3, padding=1, depth_multiplier=2, bias=False)
    assert repr(layer).startswith("DepthwiseSeparableConv2d(2, 3, kernel_size=(3, 3), stride=(1, 1), "
                                  "padding=(1, 1), depth_multiplier=2, bias=False")
    assert layer.pointwise.bias is None
    with pytest.raises(ValueError, match="^depth_multiplier must be a positive int"):
        DepthwiseSeparableConv2d(2, 3, 3, depth_multiplier=0)
    with pytest.raises(ValueError, match="^in_channels"):
        DepthwiseSeparableConv2d(0, 3, 3)
    with pytest.raises(ValueError, match="^out_channels"):
        DepthwiseSeparableConv2d(2, -1, 3)
    with pytest.raises(ValueError, match="^stride must be positive"):
        DepthwiseSeparableConv2d(2, 3, 3, stride=0)
    with pytest.raises(TypeError, match="^dtype"):
        DepthwiseSeparableConv2d(2, 3, 3, dtype=np.int32)
    with pytest.raises(TypeError, match="^bias must be a bool"):
        DepthwiseSeparableConv2d(2, 3, 3, bias=None)
    with pytest.raises(RuntimeError, match="before forward"):
        DepthwiseSeparableConv2d(2, 3, 3).backward(np.zeros((1, 3, 1, 1), np.float32))


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------

X = np.zeros((1, 2, 5, 5))
W = np.zeros((3, 2, 3, 3))
WD, WP = np.zeros((2, 1, 3, 3)), np.zeros((4, 2, 1, 1))
K = np.zeros((3, 3))

BAD_INPUTS = {
    "convolve2d 3-d input": (lambda: CV.convolve2d(X[0], W), ValueError, r"^input must be 4-d"),
    "convolve2d int weight": (lambda: CV.convolve2d(X, W.astype(int)), TypeError, r"^weight must have dtype"),
    "convolve2d list weight": (lambda: CV.convolve2d(X, [[1.0]]), TypeError, r"^weight must be a numpy"),
    "convolve2d dtype mismatch": (lambda: CV.convolve2d(X, W.astype(np.float32)),
                                  TypeError, r"^weight must have the same dtype"),
    "convolve2d stride 0": (lambda: CV.convolve2d(X, W, stride=0), ValueError, r"^stride must be positive"),
    "convolve2d negative padding": (lambda: CV.convolve2d(X, W, padding=-1),
                                    ValueError, r"^padding must be >= 0"),
    "convolve2d same with stride": (lambda: CV.convolve2d(X, W, stride=2, padding="same"),
                                    ValueError, r"^padding='same' requires stride 1"),
    "convolve2d unknown mode": (lambda: CV.convolve2d(X, W, padding="circular"),
                                ValueError, r"^padding must be"),
    "convolve2d groups": (lambda: CV.convolve2d(X, W, groups=2), ValueError, r"^groups=2 must divide"),
    "convolve2d kernel too large": (lambda: CV.convolve2d(X, np.zeros((1, 2, 7, 7))),
                                    ValueError, r"^kernel .* is larger"),
    "convolve2d_backward grad shape": (lambda: CV.convolve2d_backward(np.zeros((1, 3, 2, 2)), X, W),
                                       ValueError, r"^grad_output must have shape"),
    "convolve2d_backward same grad shape": (lambda: CV.convolve2d_backward(np.zeros((1, 3, 3, 3)), X, W, padding="same"),
                                            ValueError, r"^grad_output must have shape"),
    "separable_factors 3-d": (lambda: CV.separable_factors(W[0]), ValueError, r"^kernel must be 2-d"),
    "separable_factors int": (lambda: CV.separable_factors(np.eye(3, dtype=int)),
                              TypeError, r"^kernel must have dtype"),
    "separable_factors rank 3": (lambda: CV.separable_factors(np.eye(3)),
                                 ValueError, r"^kernel has rank > 1"),
    "separable_factors nan": (lambda: CV.separable_factors(np.full((2, 2), np.nan)),
                              ValueError, r"^kernel must be finite"),
    "separable_factors tol": (lambda: CV.separable_factors(K, tol=-1), ValueError, r"^tol must be"),
    "separable_factors flag": (lambda: CV.separable_factors(K, rank1_approx=1),
                               TypeError, r"^rank1_approx must be a bool"),
    "spatially col 3-d": (lambda: CV.spatially_separable_conv2d(X, np.zeros((1, 1, 3)), np.zeros(3)),
                          ValueError, r"^col must be 1-d or 2-d"),
    "spatially row channels": (lambda: CV.spatially_separable_conv2d(X, np.zeros(3), np.zeros((3, 3))),
                               ValueError, r"^row must have shape \(k,\) or \(2, k\)"),
    "spatially col dtype": (lambda: CV.spatially_separable_conv2d(X, np.zeros(3, np.float32), np.zeros(3)),
                            TypeError, r"^col must have the same dtype"),
    "spatially empty row": (lambda: CV.spatially_separable_conv2d(X, np.zeros(3), np.zeros(0)),
                            ValueError, r"^row must not be empty"),
    "spatially same stride": (lambda: CV.spatially_separable_conv2d(X, np.zeros(3), np.zeros(3), 2, "same"),
                              ValueError, r"^padding='same' requires"),
    "spatially bad mode": (lambda: CV.spatially_separable_conv2d(X, np.zeros(3), np.zeros(3), 1, "reflect"),
                           ValueError, r"^padding must be"),
    "spatially kernel too large": (lambda: CV.spatially_separable_conv2d(X, np.zeros(7), np.zeros(3)),
                                   ValueError, r"^kernel .* is larger"),
    "depthwise 2nd dim": (lambda: CV.depthwise_separable_conv2d(X, np.zeros((2, 2, 3, 3)), WP),
                          ValueError, r"^depthwise_weight must have shape \(C_in\*m, 1"),
    "depthwise not a multiple": (lambda: CV.depthwise_separable_conv2d(X, np.zeros((3, 1, 3, 3)), WP),
                                 ValueError, r"^depthwise_weight must have shape"),
    "pointwise shape": (lambda: CV.depthwise_separable_conv2d(X, WD, np.zeros((4, 2, 3, 3))),
                        ValueError, r"^pointwise_weight must have shape \(C_out, 2, 1, 1\)"),
    "pointwise dtype": (lambda: CV.depthwise_separable_conv2d(X, WD, WP.astype(np.float32)),
                        TypeError, r"^pointwise_weight must have the same dtype"),
    "depthwise bias shape": (lambda: CV.depthwise_separable_conv2d(X, WD, WP, np.zeros(3)),
                             ValueError, r"^bias must have shape \(4,\)"),
    "depthwise dilation 0": (lambda: CV.depthwise_separable_conv2d(X, WD, WP, dilation=0),
                             ValueError, r"^dilation must be positive"),
    "depthwise backward grad": (lambda: CV.depthwise_separable_conv2d_backward(np.zeros((1, 4, 5, 5)), X, WD, WP),
                                ValueError, r"^grad_output must have shape"),
    "conv2d_cost groups": (lambda: CV.conv2d_cost(4, 6, 3, 5, groups=4),
                           ValueError, r"^groups=4 must divide"),
    "conv2d_cost zero channels": (lambda: CV.conv2d_cost(0, 6, 3, 5),
                                  ValueError, r"^in_channels must be positive"),
    "conv2d_cost float channels": (lambda: CV.conv2d_cost(2.0, 6, 3, 5),
                                   TypeError, r"^in_channels must be an int"),
    "conv2d_cost kernel": (lambda: CV.conv2d_cost(2, 6, 0, 5), ValueError, r"^kernel_size must be positive"),
    "conv2d_cost output": (lambda: CV.conv2d_cost(2, 6, 3, (5, 0)),
                           ValueError, r"^output_size must be positive"),
    "conv2d_cost bias": (lambda: CV.conv2d_cost(2, 6, 3, 5, bias="yes"), TypeError, r"^bias must be a bool"),
    "depthwise_cost multiplier": (lambda: CV.depthwise_separable_cost(2, 6, 3, 5, depth_multiplier=0),
                                  ValueError, r"^depth_multiplier must be positive"),
    "spatially_cost too small": (lambda: CV.spatially_separable_cost(2, 5, 3),
                                 ValueError, r"^kernel_size \(5, 5\) is larger"),
    "spatially_cost same stride": (lambda: CV.spatially_separable_cost(2, 3, 8, 2, "same"),
                                   ValueError, r"^padding='same' requires"),
    "spatially_cost bad mode": (lambda: CV.spatially_separable_cost(2, 3, 8, 1, "wrap"),
                                ValueError, r"^padding must be"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(name):
    call, exc_type, pattern = BAD_INPUTS[name]
    with pytest.raises(exc_type, match=pattern) as info:
        call()
    assert type(info.value) is exc_type

"""cnnlib.functional against torch.nn.functional, forward and backward (autograd),
on the cases of test_functional.py, in float32 and float64.

Skipped as a whole when PyTorch is not installed.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from test_functional import (
    AVG_POOL_CASES,
    CONV_CASES,
    DTYPES,
    MAX_POOL_CASES,
    SETTINGS,
    assert_close,
    conv_arrays,
    conv_settings,
    distinct,
    expected_pool_shape,
    pool_settings,
    randn,
    rng_for,
)

from cnnlib import functional as F

torch = pytest.importorskip("torch", reason="PyTorch not installed: reference comparisons skipped")
TF = torch.nn.functional


def tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(a.dtype.kind == "f")


def torch_forward_backward(f, arrays, grad_output=None):
    """Run ``f`` on tensors made from ``arrays``; return the output and the
    gradient of sum(output * grad_output) for each array (None where unused)."""
    ts = [None if a is None else tensor(a) for a in arrays]
    y = f(*ts)
    if grad_output is None:
        y.backward()
    else:
        y.backward(torch.from_numpy(grad_output))
    return y.detach().numpy(), [None if t is None or t.grad is None else t.grad.numpy() for t in ts]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", CONV_CASES)
def test_conv2d(name, dtype):
    x, w, b, kw = conv_arrays(CONV_CASES[name], dtype, rng_for("torch", name, dtype))
    y = F.conv2d(x, w, b, **kw)
    gy = randn(rng_for("torch-gy", name, dtype), y.shape, dtype)
    y_t, grads_t = torch_forward_backward(lambda *t: TF.conv2d(*t, **kw), [x, w, b], gy)
    assert y.shape == y_t.shape and y.dtype == y_t.dtype
    assert_close(y, y_t, dtype)
    for got, want in zip(F.conv2d_backward(gy, x, w, b, **kw), grads_t):
        assert (got is None) == (want is None)
        if got is not None:
            assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", MAX_POOL_CASES)
def test_max_pool2d(name, dtype):
    shape, k, s, p, d, ceil_mode = MAX_POOL_CASES[name]
    x = distinct(rng_for("torch", name), shape).astype(dtype)
    args = (k, s, p, d, ceil_mode)
    y = F.max_pool2d(x, *args)
    gy = randn(rng_for("torch-gy", name, dtype), y.shape, dtype)
    y_t, (gx_t,) = torch_forward_backward(
        lambda t: TF.max_pool2d(t, k, s if s is not None else k, p, d, ceil_mode), [x], gy)
    assert y.shape == y_t.shape and y.dtype == y_t.dtype
    assert_close(y, y_t, dtype)
    assert_close(F.max_pool2d_backward(gy, x, *args), gx_t, dtype)
    # the indices are torch's, and the backward from them is the same gradient
    y2, idx = F.max_pool2d(x, *args, return_indices=True)
    _, idx_t = TF.max_pool2d(tensor(x), k, s if s is not None else k, p, d, ceil_mode,
                             return_indices=True)
    np.testing.assert_array_equal(idx, idx_t.numpy())
    assert_close(F.max_pool2d_backward(gy, x, *args, indices=idx), gx_t, dtype)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", AVG_POOL_CASES)
def test_avg_pool2d(name, dtype, count_include_pad):
    shape, k, s, p, ceil_mode = AVG_POOL_CASES[name]
    x = randn(rng_for("torch", name, dtype), shape, dtype)
    args = (k, s, p, ceil_mode, count_include_pad)
    y = F.avg_pool2d(x, *args)
    gy = randn(rng_for("torch-gy", name, dtype), y.shape, dtype)
    y_t, (gx_t,) = torch_forward_backward(
        lambda t: TF.avg_pool2d(t, k, s if s is not None else k, p, ceil_mode, count_include_pad), [x], gy)
    assert y.shape == y_t.shape and y.dtype == y_t.dtype
    assert_close(y, y_t, dtype)
    assert_close(F.avg_pool2d_backward(gy, x, *args), gx_t, dtype)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@SETTINGS
@given(conv_settings(), st.sampled_from(DTYPES), st.integers(0, 2**32 - 1))
def test_conv2d_random_settings(setting, dtype, seed):
    x_shape, w_shape, has_bias, kw = setting
    rng = np.random.default_rng(seed)
    x, w = randn(rng, x_shape, dtype), randn(rng, w_shape, dtype)
    b = randn(rng, w_shape[0], dtype) if has_bias else None
    y = F.conv2d(x, w, b, **kw)
    gy = randn(rng, y.shape, dtype)
    y_t, grads_t = torch_forward_backward(lambda *t: TF.conv2d(*t, **kw), [x, w, b], gy)
    assert_close(y, y_t, dtype)
    for got, want in zip(F.conv2d_backward(gy, x, w, b, **kw), grads_t):
        if got is not None:
            assert_close(got, want, dtype)


def has_window_of_padding_only(shape, k, s, p, d, ceil_mode):
    """True when some pooling window covers no input cell (PyTorch 2.13's CPU
    max_pool2d aborts the process with 'double free or corruption' on those)."""
    k, p, d = (np.broadcast_to(v, 2) for v in (k, p, d))
    s = k if s is None else np.broadcast_to(s, 2)
    out = expected_pool_shape(shape, tuple(k), tuple(s), tuple(p), tuple(d), ceil_mode)[2:]
    return any(not any(0 <= i * s[a] - p[a] + t * d[a] < shape[2 + a] for t in range(k[a]))
               for a in range(2) for i in range(out[a]))


@SETTINGS
@given(pool_settings(), st.booleans(), st.sampled_from(DTYPES), st.integers(0, 2**32 - 1))
def test_pools_random_settings(setting, count_include_pad, dtype, seed):
    shape, k, s, p, d, ceil_mode = setting
    assume(not has_window_of_padding_only(shape, k, s, p, d, ceil_mode))
    rng = np.random.default_rng(seed)
    x = distinct(rng, shape).astype(dtype)
    y = F.max_pool2d(x, k, s, p, d, ceil_mode)
    gy = randn(rng, y.shape, dtype)
    y_t, (gx_t,) = torch_forward_backward(lambda t: TF.max_pool2d(t, k, s or k, p, d, ceil_mode), [x], gy)
    assert_close(y, y_t, dtype)
    assert_close(F.max_pool2d_backward(gy, x, k, s, p, d, ceil_mode), gx_t, dtype)
    args = (k, s, p, ceil_mode, count_include_pad)
    y = F.avg_pool2d(x, *args)
    gy = randn(rng, y.shape, dtype)
    y_t, (gx_t,) = torch_forward_backward(lambda t: TF.avg_pool2d(t, k, s or k, p, ceil_mode, count_include_pad),
                                          [x], gy)
    assert_close(y, y_t, dtype)
    assert_close(F.avg_pool2d_backward(gy, x, *args), gx_t, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_pool2d_propagates_nan_like_torch(dtype):
    """One NaN per window: the output is NaN and the window's gradient goes to the NaN."""
    x = distinct(rng_for("nan"), (1, 2, 6, 6)).astype(dtype)
    x[0, 0, 0, 1] = x[0, 1, 4, 4] = x[0, 1, 3, 0] = np.nan
    gy = randn(rng_for("nan-gy"), (1, 2, 3, 3), dtype)
    y_t, (gx_t,) = torch_forward_backward(lambda t: TF.max_pool2d(t, 2), [x], gy)
    np.testing.assert_array_equal(F.max_pool2d(x, 2), y_t)
    np.testing.assert_array_equal(F.max_pool2d_backward(gy, x, 2), gx_t)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(idx, TF.max_pool2d(tensor(x), 2, return_indices=True)[1].numpy())
    np.testing.assert_array_equal(F.max_pool2d_backward(gy, x, 2, indices=idx), gx_t)


def test_max_pool2d_backward_with_two_nans_in_a_window_like_torch():
    """PyTorch's CPU kernel keeps the *last* NaN of a window as its argmax."""
    x = np.array([[[[np.nan, 1.0, np.nan, 0.0]]]])
    _, (gx_t,) = torch_forward_backward(lambda t: TF.max_pool2d(t, (1, 4)), [x], np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(F.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, (1, 4)), gx_t)


def test_max_pool2d_backward_of_an_all_minus_inf_window_like_torch():
    """A window whose values are all -inf still passes its gradient on (to its
    first element, as PyTorch does) instead of dropping it."""
    x = np.array([[[[-np.inf, -np.inf, 1.0, 2.0]]]])
    gy = np.array([[[[3.0, 5.0]]]])
    y_t, (gx_t,) = torch_forward_backward(lambda t: TF.max_pool2d(t, (1, 2)), [x], gy)
    np.testing.assert_array_equal(F.max_pool2d(x, (1, 2)), y_t)
    np.testing.assert_array_equal(F.max_pool2d_backward(gy, x, (1, 2)), gx_t)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh"])
def test_activations(name, dtype):
    x = randn(rng_for("torch", name, dtype), (2, 3, 4, 5), dtype) * 3
    x[0, 0, 0, :3] = [0.0, 40.0, -40.0]  # relu's subgradient at 0; saturation
    gy = randn(rng_for("torch-gy", name, dtype), x.shape, dtype)
    y_t, (gx_t,) = torch_forward_backward(getattr(torch, name), [x], gy)
    y = getattr(F, name)(x)
    assert y.dtype == y_t.dtype
    assert_close(y, y_t, dtype)
    assert_close(getattr(F, name + "_backward")(gy, x), gx_t, dtype)


@pytest.mark.parametrize("has_bias", [True, False])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape", [(5,), (4, 5), (2, 3, 5)])
def test_linear(x_shape, dtype, has_bias):
    rng = rng_for("torch", x_shape, dtype, has_bias)
    x, w = randn(rng, x_shape, dtype), randn(rng, (3, 5), dtype)
    b = randn(rng, 3, dtype) if has_bias else None
    gy = randn(rng, x_shape[:-1] + (3,), dtype)
    y_t, grads_t = torch_forward_backward(TF.linear, [x, w, b], gy)
    assert_close(F.linear(x, w, b), y_t, dtype)
    for got, want in zip(F.linear_backward(gy, x, w, b), grads_t):
        assert (got is None) == (want is None)
        if got is not None:
            assert_close(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax(name, dim, dtype):
    rng = rng_for("torch", name, dim, dtype)
    x, gy = randn(rng, (3, 4, 5), dtype) * 5, randn(rng, (3, 4, 5), dtype)
    y_t, (gx_t,) = torch_forward_backward(lambda t: getattr(TF, name)(t, dim), [x], gy)
    assert_close(getattr(F, name)(x, dim), y_t, dtype)
    assert_close(getattr(F, name + "_backward")(gy, x, dim), gx_t, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5), (2, 3, 2, 2)])
def test_cross_entropy(shape, reduction, dtype):
    rng = rng_for("torch", shape, reduction, dtype)
    x = randn(rng, shape, dtype) * 3
    target = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    x_t = tensor(x)
    loss_t = TF.cross_entropy(x_t, torch.from_numpy(target), reduction=reduction)
    loss_t.sum().backward()
    loss = F.cross_entropy(x, target, reduction)
    assert np.asarray(loss).dtype == dtype and np.shape(loss) == tuple(loss_t.shape)
    assert_close(loss, loss_t.detach().numpy(), dtype)
    assert_close(F.cross_entropy_backward(x, target, reduction), x_t.grad.numpy(), dtype)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_of_an_empty_batch(reduction):
    x, target = np.zeros((0, 3), np.float32), np.zeros(0, np.int64)
    loss_t = TF.cross_entropy(tensor(x), torch.from_numpy(target), reduction=reduction)
    np.testing.assert_array_equal(F.cross_entropy(x, target, reduction), loss_t.detach().numpy())


@pytest.mark.parametrize("call", [
    lambda lib, x: lib.softmax(x, 2), lambda lib, x: lib.log_softmax(x, -3),
])
def test_dim_out_of_range_is_an_index_error(call):
    x = np.zeros((2, 3), np.float32)
    with pytest.raises(IndexError):
        call(TF, tensor(x))
    with pytest.raises(IndexError):
        call(F, x)


@pytest.mark.parametrize("dtype", DTYPES)
def test_output_sizes(dtype):
    """conv_output_size and pool_output_size agree with the shapes PyTorch returns."""
    x = torch.zeros((1, 1, 11, 11), dtype=getattr(torch, np.dtype(dtype).name))
    for k in range(1, 6):
        for s in range(1, 4):
            for p in range(0, k // 2 + 1):
                for d in (1, 2):
                    if 11 + 2 * p < d * (k - 1) + 1:
                        continue
                    conv = TF.conv2d(x, torch.zeros((1, 1, k, k), dtype=x.dtype), stride=s, padding=p, dilation=d)
                    assert conv.shape[-1] == F.conv_output_size(11, k, s, p, d)
                    for ceil_mode in (False, True):
                        pool = TF.max_pool2d(x, k, s, p, d, ceil_mode)
                        assert pool.shape[-1] == F.pool_output_size(11, k, s, p, d, ceil_mode), (k, s, p, d, ceil_mode)

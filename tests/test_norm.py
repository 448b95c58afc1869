"""Tests for normalisation: local response norm and batch norm, functional and layers.

Forward and backward are compared with plain loop references, with PyTorch
(forward + autograd), and checked with float64 central differences.
"""

import re

import numpy as np
import pytest
try:
    import torch
except ImportError:  # the comparisons with PyTorch skip, saying why
    torch = None
from naive import numerical_gradient, rel_error

from cnnlib.nn.norm_layers import BatchNorm2d, LocalResponseNorm
from cnnlib.ops.norm import batch_norm, batch_norm_backward, local_response_norm, local_response_norm_backward

TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-10, atol=1e-12)}


def randn(rng, shape, dtype=np.float64, scale=1.0, shift=0.0):
    return (rng.standard_normal(shape) * scale + shift).astype(dtype)


# ----------------------------------------------------------------------------
# Plain references
# ----------------------------------------------------------------------------

def lrn_reference(x, size, alpha, beta, k):
    """Loop over channels: the window of channel c is c - size//2 .. c + (size-1)//2."""
    x = np.asarray(x, dtype=np.float64)
    c_total = x.shape[1]
    y = np.empty_like(x)
    for c in range(c_total):
        lo, hi = max(0, c - size // 2), min(c_total, c + (size - 1) // 2 + 1)
        sq = np.sum(x[:, lo:hi] ** 2, axis=1)
        y[:, c] = x[:, c] / (k + alpha / size * sq) ** beta
    return y


def bn_reference(x, mean, var, weight, bias, eps):
    """One channel at a time: (x - mean) / sqrt(var + eps) * weight + bias."""
    x = np.asarray(x, dtype=np.float64)
    y = np.empty_like(x)
    for c in range(x.shape[1]):
        w = 1.0 if weight is None else weight[c]
        b = 0.0 if bias is None else bias[c]
        y[:, c] = (x[:, c] - mean[c]) / np.sqrt(var[c] + eps) * w + b
    return y


requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed: reference comparison skipped")


def torch_grads(fn, arrays, grad_output):
    """Run fn on torch copies of ``arrays`` (None stays None); return output and gradients."""
    ts = [None if a is None else torch.tensor(a, requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(torch.tensor(grad_output))
    return out.detach().numpy(), [None if t is None else t.grad.numpy() for t in ts]


# ----------------------------------------------------------------------------
# Local response normalisation
# ----------------------------------------------------------------------------

LRN_CASES = [
    ((2, 7, 3, 4), 5, 1e-4, 0.75, 1.0),   # AlexNet's size, torch's defaults
    ((2, 7, 3, 4), 5, 2.0, 0.75, 2.0),    # AlexNet's k = 2, a large alpha to matter
    ((3, 6, 5), 4, 0.5, 0.6, 1.5),        # 3-d input, even size
    ((1, 5, 2, 2, 3), 3, 1.0, 1.2, 0.5),  # 5-d input
    ((2, 3, 4, 4), 1, 0.3, 0.75, 1.0),    # size 1: only the channel itself
    ((2, 4, 3, 3), 11, 0.7, 0.5, 1.0),    # window wider than the channels
]


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, size, alpha, beta, k", LRN_CASES)
def test_lrn_matches_reference_and_torch(shape, size, alpha, beta, k, dtype):
    rng = np.random.default_rng(0)
    x = randn(rng, shape, dtype, scale=2.0)
    g = randn(rng, shape, dtype)
    y = local_response_norm(x, size, alpha, beta, k)
    assert y.shape == x.shape and y.dtype == dtype
    np.testing.assert_allclose(y, lrn_reference(x, size, alpha, beta, k), **TOL[dtype])
    want, (dx_want,) = torch_grads(
        lambda t: torch.nn.functional.local_response_norm(t, size, alpha, beta, k), [x], g)
    np.testing.assert_allclose(y, want, **TOL[dtype])
    dx = local_response_norm_backward(g, x, size, alpha, beta, k)
    assert dx.dtype == dtype
    np.testing.assert_allclose(dx, dx_want, **TOL[dtype])


@pytest.mark.parametrize("shape, size, alpha, beta, k", LRN_CASES)
def test_lrn_gradient_check(shape, size, alpha, beta, k):
    rng = np.random.default_rng(1)
    x = randn(rng, shape, scale=2.0)
    g = randn(rng, shape)
    num = numerical_gradient(lambda v: local_response_norm(v, size, alpha, beta, k), x, g)
    assert rel_error(local_response_norm_backward(g, x, size, alpha, beta, k), num) < 1e-7


@requires_torch
def test_lrn_defaults_and_layer_match_torch():
    rng = np.random.default_rng(2)
    x = randn(rng, (2, 8, 5, 5), np.float32, scale=30.0)  # large enough for alpha = 1e-4 to matter
    g = randn(rng, x.shape, np.float32)
    layer = LocalResponseNorm(5)
    want, (dx_want,) = torch_grads(torch.nn.LocalResponseNorm(5), [x], g)
    np.testing.assert_allclose(layer(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.backward(g), dx_want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(layer(x), local_response_norm(x, 5))
    assert not list(layer.parameters()) and not layer.state_dict()
    assert repr(layer) == "LocalResponseNorm(5, alpha=0.0001, beta=0.75, k=1.0)"


def test_lrn_bad_input():
    x = np.ones((2, 3, 4, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="input must have at least 3 dimensions"):
        local_response_norm(np.ones((2, 3), dtype=np.float32), 2)
    with pytest.raises(TypeError, match="input must have dtype float32 or float64, got int64"):
        local_response_norm(np.ones((2, 3, 4), dtype=np.int64), 2)
    with pytest.raises(TypeError, match="input must be a numpy.ndarray"):
        local_response_norm([[[1.0]]], 1)
    for size in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="size must be a positive int"):
            local_response_norm(x, size)
    with pytest.raises(ValueError, match="alpha must be non-negative"):
        local_response_norm(x, 3, alpha=-1.0)
    with pytest.raises(ValueError, match="k must be positive"):
        local_response_norm(x, 3, k=0.0)
    with pytest.raises(TypeError, match="beta must be a finite real"):
        local_response_norm(x, 3, beta=float("nan"))
    with pytest.raises(ValueError, match=re.escape("grad_output must have shape (2, 3, 4, 4)")):
        local_response_norm_backward(np.ones((2, 3, 4, 5), np.float32), x, 3)
    with pytest.raises(TypeError, match="grad_output must have the same dtype"):
        local_response_norm_backward(x.astype(np.float64), x, 3)
    with pytest.raises(ValueError, match="size must be a positive int"):
        LocalResponseNorm(0)
    with pytest.raises(ValueError, match="k must be positive"):
        LocalResponseNorm(3, k=-1.0)


# ----------------------------------------------------------------------------
# Batch normalisation, functional
# ----------------------------------------------------------------------------

BN_SHAPES = [(6, 3), (4, 3, 5), (3, 4, 5, 2), (2, 2, 3, 3)]


def bn_arrays(rng, shape, dtype, affine=True):
    c = shape[1]
    x = randn(rng, shape, dtype, scale=2.0, shift=1.5)
    weight = randn(rng, c, dtype) if affine else None
    bias = randn(rng, c, dtype) if affine else None
    running_mean = randn(rng, c, dtype)
    running_var = (rng.random(c) + 0.5).astype(dtype)
    return x, weight, bias, running_mean, running_var


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", BN_SHAPES)
def test_batch_norm_matches_reference_and_torch(shape, training, affine, dtype):
    rng = np.random.default_rng(3)
    x, w, b, rm, rv = bn_arrays(rng, shape, dtype, affine)
    g = randn(rng, shape, dtype)
    momentum, eps = 0.3, 1e-3
    rm_ours, rv_ours = rm.copy(), rv.copy()
    y = batch_norm(x, rm_ours, rv_ours, w, b, training, momentum, eps)
    assert y.shape == x.shape and y.dtype == dtype

    axes = (0,) + tuple(range(2, x.ndim))
    x64 = x.astype(np.float64)
    mean, var = (x64.mean(axis=axes), x64.var(axis=axes)) if training else (rm, rv)
    np.testing.assert_allclose(y, bn_reference(x, mean, var, w, b, eps), **TOL[dtype])

    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    want, grads = torch_grads(
        lambda xt, wt, bt: torch.nn.functional.batch_norm(xt, rm_t, rv_t, wt, bt, training,
                                                          momentum, eps), [x, w, b], g)
    np.testing.assert_allclose(y, want, **TOL[dtype])
    np.testing.assert_allclose(rm_ours, rm_t.numpy(), **TOL[dtype])
    np.testing.assert_allclose(rv_ours, rv_t.numpy(), **TOL[dtype])

    before = rm_ours.copy(), rv_ours.copy()
    got = batch_norm_backward(g, x, w, b, rm, rv, training, eps)
    for ours, theirs in zip(got, grads):
        if theirs is None:
            assert ours is None
        else:
            assert ours.dtype == dtype
            np.testing.assert_allclose(ours, theirs, rtol=TOL[dtype]["rtol"] * 10,
                                       atol=TOL[dtype]["atol"] * 10)
    np.testing.assert_array_equal(rm_ours, before[0])  # backward leaves running stats alone
    np.testing.assert_array_equal(rv_ours, before[1])


def test_batch_norm_training_updates_running_stats_in_place_with_unbiased_var():
    rng = np.random.default_rng(4)
    x = randn(rng, (5, 2, 3, 3), shift=2.0)
    rm, rv = np.zeros(2), np.ones(2)
    ids = id(rm), id(rv)
    batch_norm(x, rm, rv, training=True, momentum=0.25)
    assert (id(rm), id(rv)) == ids
    n = 5 * 3 * 3
    np.testing.assert_allclose(rm, 0.25 * x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(rv, 0.75 + 0.25 * x.var(axis=(0, 2, 3)) * n / (n - 1), rtol=1e-12)
    # Without running statistics, training mode just normalises with the batch's.
    y = batch_norm(x, None, None, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-4)
    # Evaluation mode changes nothing.
    batch_norm(x, rm, rv, training=False)
    np.testing.assert_allclose(rm, 0.25 * x.mean(axis=(0, 2, 3)), rtol=1e-12)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (3, 2, 3, 2)])
def test_batch_norm_gradient_check(shape, training):
    rng = np.random.default_rng(5)
    x, w, b, rm, rv = bn_arrays(rng, shape, np.float64)
    g = randn(rng, shape)
    eps = 1e-3

    def f():
        return batch_norm(x, rm.copy(), rv.copy(), w, b, training, 0.1, eps)

    dx, dw, db = batch_norm_backward(g, x, w, b, rm, rv, training, eps)
    assert rel_error(dx, numerical_gradient(lambda _: f(), x, g)) < 1e-7
    assert rel_error(dw, numerical_gradient(lambda _: f(), w, g)) < 1e-7
    assert rel_error(db, numerical_gradient(lambda _: f(), b, g)) < 1e-7


def test_batch_norm_bad_input():
    x = np.ones((4, 3, 2, 2), dtype=np.float32)
    c3 = np.ones(3, dtype=np.float32)
    with pytest.raises(ValueError, match=re.escape("running_mean must have shape (3,)")):
        batch_norm(x, np.zeros(4, np.float32), c3)
    with pytest.raises(ValueError, match=re.escape("weight must have shape (3,)")):
        batch_norm(x, c3, c3, weight=np.ones(2, np.float32))
    with pytest.raises(ValueError, match=re.escape("running_var must have shape (3,)")):
        batch_norm_backward(x, x, running_mean=c3, running_var=np.ones((3, 1), np.float32))
    with pytest.raises(TypeError, match="running_var must have the same dtype as input"):
        batch_norm(x, c3, c3.astype(np.float64))
    with pytest.raises(TypeError, match="running_mean must be a numpy.ndarray or None"):
        batch_norm(x, [0.0, 0.0, 0.0], c3)
    with pytest.raises(ValueError, match="input must have at least 2 dimensions"):
        batch_norm(np.ones(3, np.float32), c3, c3)
    with pytest.raises(TypeError, match="input must have dtype float32 or float64"):
        batch_norm(np.ones((4, 3), np.int32), c3, c3)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        batch_norm(x, c3, c3, eps=-1e-5)
    with pytest.raises(ValueError, match="eps must be non-negative"):
        batch_norm_backward(x, x, running_mean=c3, running_var=c3, eps=-1.0)
    with pytest.raises(ValueError, match=re.escape("momentum must be in [0, 1]")):
        batch_norm(x, c3, c3, training=True, momentum=1.5)
    with pytest.raises(TypeError, match="training must be a bool"):
        batch_norm(x, c3, c3, training="yes")
    with pytest.raises(ValueError, match="evaluation mode .* needs running_mean"):
        batch_norm(x, None, None)
    with pytest.raises(ValueError, match="evaluation mode .* needs running_mean"):
        batch_norm_backward(x, x)
    with pytest.raises(ValueError, match="both be arrays or both be None"):
        batch_norm(x, c3, None, training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        batch_norm(np.ones((1, 3), np.float32), c3, c3, training=True)
    frozen = c3.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean must be writeable"):
        batch_norm(x, frozen, c3.copy(), training=True)
    batch_norm(x, frozen, frozen)  # evaluation mode only reads them
    with pytest.raises(ValueError, match=re.escape("grad_output must have shape (4, 3, 2, 2)")):
        batch_norm_backward(np.ones((4, 3, 2, 1), np.float32), x, training=True)


# ----------------------------------------------------------------------------
# BatchNorm2d against torch.nn.BatchNorm2d
# ----------------------------------------------------------------------------

def to_torch_state(state):
    return {k: torch.tensor(v) for k, v in state.items()}


@requires_torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("settings", [
    dict(), dict(momentum=None), dict(affine=False), dict(track_running_stats=False),
    dict(eps=1e-3, momentum=0.5),
], ids=str)
def test_batchnorm2d_matches_torch_over_several_steps(settings, dtype):
    rng = np.random.default_rng(6)
    ours = BatchNorm2d(3, dtype=dtype, **settings)
    theirs = torch.nn.BatchNorm2d(3, **settings).to(torch.float64 if dtype == np.float64 else torch.float32)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if ours.affine:  # non-trivial affine parameters, the same in both
        ours.weight.data[...] = randn(rng, 3, dtype)
        ours.bias.data[...] = randn(rng, 3, dtype)
        theirs.load_state_dict(to_torch_state(ours.state_dict()))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    for step in range(5):
        training = step < 3 or step == 4
        ours.train(training), theirs.train(training)
        x = randn(rng, (4, 3, 5, 5), dtype, scale=step + 1.0, shift=step)
        g = randn(rng, x.shape, dtype)
        ours.zero_grad()
        want, (dx_want,) = torch_grads(theirs, [x], g)
        np.testing.assert_allclose(ours(x), want, **tol)
        np.testing.assert_allclose(ours.backward(g), dx_want, **tol)
        if ours.affine:
            np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), **tol)
            np.testing.assert_allclose(ours.bias.grad, theirs.bias.grad.numpy(), **tol)
            theirs.zero_grad()
        for key, value in theirs.state_dict().items():
            np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), **tol, err_msg=key)


@requires_torch
def test_batchnorm2d_state_dict_round_trips_with_torch():
    theirs = torch.nn.BatchNorm2d(4)
    theirs(torch.randn(8, 4, 3, 3) * 3 + 1)
    theirs(torch.randn(8, 4, 3, 3))
    ours = BatchNorm2d(4)
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    assert int(ours.num_batches_tracked) == 2
    assert ours.running_mean.dtype == np.float32 and ours.num_batches_tracked.dtype == np.int64
    theirs.eval(), ours.eval()
    x = np.random.default_rng(7).standard_normal((2, 4, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), rtol=1e-5, atol=1e-6)
    ours.reset_running_stats()
    assert not ours.running_mean.any() and (ours.running_var == 1).all()
    assert int(ours.num_batches_tracked) == 0


def test_batchnorm2d_init_buffers_and_repr():
    bn = BatchNorm2d(3)
    assert [n for n, _ in bn.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in bn.named_buffers()] == ["running_mean", "running_var", "num_batches_tracked"]
    np.testing.assert_array_equal(bn.weight.data, np.ones(3, np.float32))
    np.testing.assert_array_equal(bn.bias.data, np.zeros(3, np.float32))
    assert repr(bn) == "BatchNorm2d(3, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)"
    bare = BatchNorm2d(3, affine=False, track_running_stats=False, dtype=np.float64)
    assert not bare.state_dict() and bare.weight is None and bare.running_mean is None
    with pytest.raises(RuntimeError, match="before forward"):
        bn.backward(np.ones((1, 3, 1, 1), np.float32))


def test_batchnorm2d_bad_input():
    bn = BatchNorm2d(3)
    with pytest.raises(ValueError, match=re.escape("input must have 3 channels (num_features)")):
        bn(np.ones((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match="input must be 4-d"):
        bn(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn(np.ones((1, 3, 1, 1), np.float32))
    assert int(bn.num_batches_tracked) == 0  # a failed forward counts no batch
    with pytest.raises(TypeError, match="same dtype as input"):
        bn(np.ones((2, 3, 2, 2), np.float64))
    with pytest.raises(ValueError, match="num_features must be a positive int"):
        BatchNorm2d(0)
    with pytest.raises(ValueError, match="eps must be a non-negative number"):
        BatchNorm2d(3, eps=-1.0)
    with pytest.raises(ValueError, match="momentum must be a number in"):
        BatchNorm2d(3, momentum=2.0)
    with pytest.raises(TypeError, match="affine must be a bool"):
        BatchNorm2d(3, affine=1)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        BatchNorm2d(3, dtype=np.int32)

"""Adaptive pooling and the batched matrix product (cnnlib.ops.adaptive_pool, cnnlib.ops.matmul):
against loops, torch, central differences, and bad input."""

import math

import numpy as np
import pytest
from naive import numerical_gradient, rel_error

from cnnlib import functional as F

SIZES = [  # (H, W, output_size)
    (7, 5, 1), (7, 5, (3, 2)), (6, 6, 3), (5, 7, (5, 7)), (4, 5, (6, 8)), (9, 4, (4, None)),
    (1, 1, 1), (3, 8, (2, 3)),
]


def naive_adaptive(x, output_size, reduce):
    """Loops over bins with start = floor(i*H/out), end = ceil((i+1)*H/out), as torch."""
    n, c, h, w = x.shape
    ho, wo = (output_size, output_size) if isinstance(output_size, int) else output_size
    ho, wo = ho or h, wo or w
    out = np.empty((n, c, ho, wo), dtype=x.dtype)
    for i in range(ho):
        r0, r1 = math.floor(i * h / ho), math.ceil((i + 1) * h / ho)
        for j in range(wo):
            c0, c1 = math.floor(j * w / wo), math.ceil((j + 1) * w / wo)
            out[:, :, i, j] = reduce(x[:, :, r0:r1, c0:c1], axis=(2, 3))
    return out


def distinct(shape, rng, dtype=np.float64):
    """Values without ties (a random permutation, scaled), for max-type ops."""
    return (rng.permutation(math.prod(shape)).reshape(shape) / 7.0 - 3.0).astype(dtype)


@pytest.mark.parametrize("h, w, output_size", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_pools_match_loops(h, w, output_size, dtype):
    rng = np.random.default_rng(h * 10 + w)
    x = distinct((2, 3, h, w), rng, dtype)
    avg = F.adaptive_avg_pool2d(x, output_size)
    assert avg.dtype == dtype
    np.testing.assert_allclose(avg, naive_adaptive(x, output_size, np.mean), rtol=1e-6, atol=1e-6)
    mx, idx = F.adaptive_max_pool2d(x, output_size, return_indices=True)
    np.testing.assert_array_equal(mx, naive_adaptive(x, output_size, np.max))
    flat = x.reshape(2, 3, -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, idx.reshape(2, 3, -1), axis=2),
                                  mx.reshape(2, 3, -1))


def test_bins_cover_the_input_and_follow_torchs_rule():
    for size in range(1, 12):
        for out in range(1, 15):
            start, end = F.adaptive_bins(size, out)
            assert start[0] == 0 and end[-1] == size
            assert np.all(end > start) and np.all(start[1:] <= end[:-1])  # no gaps
            assert list(start) == [i * size // out for i in range(out)]
            assert list(end) == [-(-(i + 1) * size // out) for i in range(out)]


def test_global_pools_are_mean_and_max():
    x = np.random.default_rng(0).standard_normal((3, 4, 6, 5))
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, 1)[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-12)
    np.testing.assert_array_equal(F.adaptive_max_pool2d(x, 1)[..., 0, 0], x.max(axis=(2, 3)))


@pytest.mark.parametrize("h, w, output_size", SIZES)
def test_adaptive_pool_gradients(h, w, output_size):
    rng = np.random.default_rng(1)
    x = distinct((2, 2, h, w), rng)
    y = F.adaptive_avg_pool2d(x, output_size)
    g = rng.standard_normal(y.shape)
    num = numerical_gradient(lambda a: F.adaptive_avg_pool2d(a, output_size), x, g)
    assert rel_error(F.adaptive_avg_pool2d_backward(g, x, output_size), num) < 1e-8
    y, idx = F.adaptive_max_pool2d(x, output_size, return_indices=True)
    num = numerical_gradient(lambda a: F.adaptive_max_pool2d(a, output_size), x, g)
    for indices in (None, idx):
        assert rel_error(F.adaptive_max_pool2d_backward(g, x, output_size, indices=indices), num) < 1e-8


def test_adaptive_max_pool_nan_and_inf_rules():
    x = np.array([[[[1.0, np.nan, 3.0, np.nan]]]])
    y, idx = F.adaptive_max_pool2d(x, (1, 1), return_indices=True)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 3  # the last NaN wins, as in torch
    y, idx = F.adaptive_max_pool2d(np.full((1, 1, 2, 2), -np.inf), 1, return_indices=True)
    assert y[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == 0


@pytest.mark.parametrize("n, m, p", [(1, 1, 1), (3, 4, 5), (6, 2, 1)])
def test_bmm_and_its_gradients(n, m, p):
    rng = np.random.default_rng(n + m + p)
    a, b = rng.standard_normal((2, n, m)), rng.standard_normal((2, m, p))
    out = F.bmm(a, b)
    loops = np.array([[[sum(a[k, i, t] * b[k, t, j] for t in range(m)) for j in range(p)]
                       for i in range(n)] for k in range(2)])
    np.testing.assert_allclose(out, loops, rtol=1e-12, atol=1e-12)
    assert F.bmm(a.astype(np.float32), b.astype(np.float32)).dtype == np.float32
    g = rng.standard_normal(out.shape)
    ga, gb = F.bmm_backward(g, a, b)
    assert rel_error(ga, numerical_gradient(lambda z: F.bmm(z, b), a, g)) < 1e-8
    assert rel_error(gb, numerical_gradient(lambda z: F.bmm(a, z), b, g)) < 1e-8


def test_bad_input():
    x = np.zeros((1, 2, 4, 4))
    for fn in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
        with pytest.raises(ValueError, match="4-d"):
            fn(np.zeros((2, 4, 4)), 1)
        with pytest.raises(TypeError, match="dtype"):
            fn(np.zeros((1, 2, 4, 4), dtype=np.int64), 1)
        with pytest.raises(TypeError, match="numpy.ndarray"):
            fn([[[[1.0]]]], 1)
        with pytest.raises(ValueError, match="output_size must be positive"):
            fn(x, 0)
        with pytest.raises(TypeError, match="output_size"):
            fn(x, (1, 2, 3))
        with pytest.raises(TypeError, match="output_size"):
            fn(x, 1.5)
        with pytest.raises(ValueError, match="non-empty"):
            fn(np.zeros((1, 2, 0, 4)), 1)
    with pytest.raises(ValueError, match="grad_output must have shape"):
        F.adaptive_avg_pool2d_backward(np.zeros((1, 2, 2, 2)), x, 1)
    with pytest.raises(TypeError, match="same dtype"):
        F.adaptive_max_pool2d_backward(np.zeros((1, 2, 1, 1), np.float32), x, 1)
    with pytest.raises(ValueError, match="indices must lie"):
        F.adaptive_max_pool2d_backward(np.zeros((1, 2, 1, 1)), x, 1, indices=np.full((1, 2, 1, 1), 16))
    with pytest.raises(TypeError, match="return_indices"):
        F.adaptive_max_pool2d(x, 1, return_indices=1)
    with pytest.raises(ValueError, match="positive int"):
        F.adaptive_bins(0, 1)
    a = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="3-d"):
        F.bmm(np.zeros((3, 4)), a)
    with pytest.raises(ValueError, match="batch size"):
        F.bmm(a, np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="columns"):
        F.bmm(a, np.zeros((2, 3, 5)))
    with pytest.raises(TypeError, match="same dtype"):
        F.bmm(a, np.zeros((2, 4, 5), np.float32))
    with pytest.raises(ValueError, match="grad_output must have shape"):
        F.bmm_backward(np.zeros((2, 3, 4)), a, np.zeros((2, 4, 5)))


# ----------------------------------------------------------------------------
# Against torch
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch not installed: reference comparisons skipped")


@pytest.mark.parametrize("h, w, output_size", SIZES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adaptive_pools_match_torch(torch, h, w, output_size, dtype):
    rng = np.random.default_rng(3)
    x = distinct((2, 3, h, w), rng, dtype)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        xt = torch.tensor(x, requires_grad=True)
        yt = getattr(torch.nn.functional, name)(xt, output_size)
        y = getattr(F, name)(x, output_size)
        g = rng.standard_normal(y.shape).astype(dtype)
        yt.backward(torch.tensor(g))
        np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
        np.testing.assert_allclose(getattr(F, name + "_backward")(g, x, output_size), xt.grad.numpy(),
                                   **tol)
    _, idx = F.adaptive_max_pool2d(x, output_size, return_indices=True)
    _, idx_t = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), output_size, return_indices=True)
    np.testing.assert_array_equal(idx, idx_t.numpy())


def test_bmm_matches_torch(torch):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 5, 2))
    at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    out = torch.bmm(at, bt)
    g = rng.standard_normal(out.shape)
    out.backward(torch.tensor(g))
    np.testing.assert_allclose(F.bmm(a, b), out.detach().numpy(), rtol=1e-12)
    ga, gb = F.bmm_backward(g, a, b)
    np.testing.assert_allclose(ga, at.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(gb, bt.grad.numpy(), rtol=1e-12)

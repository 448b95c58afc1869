"""Tests for cnnlib.ops.pool_variants and cnnlib.nn.pool_layers: fractional max
pooling (against plain loops and, exactly, against PyTorch) and stochastic
pooling (against plain loops, statistically, and by gradient checks).
"""

import zlib

import naive
import numpy as np
import pytest
from scipy.stats import chisquare

from cnnlib.nn.pool_layers import FractionalMaxPool2d, StochasticPool2d
from cnnlib.ops.pool_variants import (
    fractional_intervals,
    fractional_max_pool2d,
    fractional_max_pool2d_backward,
    fractional_output_size,
    stochastic_pool2d,
    stochastic_pool2d_backward,
)

DTYPES = [np.float32, np.float64]
GRAD_TOL = 1e-6


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def distinct(rng, shape):
    """Float64 values 1/size apart: no ties, and wider apart than the difference step."""
    size = int(np.prod(shape))
    return (rng.permutation(size).reshape(shape) / size - 0.5).astype(np.float64)


# ----------------------------------------------------------------------------
# Plain references
# ----------------------------------------------------------------------------

def ref_sequence(u, total, count):
    """PyTorch's generate_intervals, one element at a time, in u's precision."""
    t = type(u)
    if count == 0:
        return [total]
    alpha = t(total) / t(count)
    return [int((t(i) + u) * alpha) - int(u * alpha) for i in range(count)] + [total]


def ref_fractional(x, k, out, samples, overlapping=True):
    """Loops: windows from ref_sequence, first maximum of each (no NaN here)."""
    n_, c_, h, w = x.shape
    y = np.zeros((n_, c_) + out)
    idx = np.zeros((n_, c_) + out, dtype=np.int64)
    for n in range(n_):
        for c in range(c_):
            win = []
            for size, ki, oi, u in ((h, k[0], out[0], samples[n, c, 1]),
                                    (w, k[1], out[1], samples[n, c, 0])):
                if overlapping:
                    b = ref_sequence(u, size - ki, oi - 1)
                    win.append([(s, s + ki) for s in b])
                else:
                    b = ref_sequence(u, size, oi)
                    win.append(list(zip(b[:-1], b[1:])))
            for i, (r0, r1) in enumerate(win[0]):
                for j, (c0, c1) in enumerate(win[1]):
                    block = x[n, c, r0:r1, c0:c1]
                    p, q = np.unravel_index(np.argmax(block), block.shape)
                    y[n, c, i, j] = block[p, q]
                    idx[n, c, i, j] = (r0 + p) * w + c0 + q
    return y, idx


def ref_stochastic(x, k, s, u=None):
    """Loops: test-time sum(a^2)/sum(a), or the element where the running sum
    first exceeds u * sum(a) (first element for an all-zero window)."""
    n_, c_, h, w = x.shape
    ho, wo = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    y = np.zeros((n_, c_, ho, wo))
    idx = np.zeros((n_, c_, ho, wo), dtype=np.int64)
    for n, c, i, j in np.ndindex(n_, c_, ho, wo):
        a = x[n, c, i * s[0]:i * s[0] + k[0], j * s[1]:j * s[1] + k[1]].astype(np.float64)
        total = a.sum()
        pick = 0
        if u is None:
            y[n, c, i, j] = (a * a).sum() / total if total > 0 else 0.0
        elif total > 0:
            pick = int(np.argmax(np.cumsum(a.ravel()) > u[n, c, i, j] * total))
            y[n, c, i, j] = a.ravel()[pick]
        p, q = divmod(pick, k[1])
        idx[n, c, i, j] = (i * s[0] + p) * w + j * s[1] + q
    return y, idx


def scatter(gy, idx, shape):
    gx = np.zeros(shape)
    for n, c, i, j in np.ndindex(gy.shape):
        gx[n, c].flat[idx[n, c, i, j]] += gy[n, c, i, j]
    return gx


# ----------------------------------------------------------------------------
# Fractional max pooling: forward
# ----------------------------------------------------------------------------

def random_case(rng, dtype):
    n, c = rng.integers(1, 3), rng.integers(1, 4)
    h, w = (int(v) for v in rng.integers(2, 25, size=2))
    kh, kw = min(int(rng.integers(1, 5)), h), min(int(rng.integers(1, 5)), w)
    out = (int(rng.integers(1, h - kh + 2)), int(rng.integers(1, w - kw + 2)))
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    u = rng.random((n, c, 2)).astype(dtype)
    return x, (kh, kw), out, u


@pytest.mark.parametrize("dtype", DTYPES)
def test_fractional_matches_loops(dtype):
    rng = rng_for("loops", dtype)
    for _ in range(60):
        x, k, out, u = random_case(rng, dtype)
        y, idx = fractional_max_pool2d(x, k, out, return_indices=True, random_samples=u)
        want_y, want_idx = ref_fractional(x, k, out, u)
        assert y.dtype == dtype and idx.dtype == np.int64
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_array_equal(idx, want_idx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fractional_disjoint_matches_loops(dtype):
    rng = rng_for("disjoint", dtype)
    for _ in range(40):
        x, k, _, u = random_case(rng, dtype)
        out = (int(rng.integers(1, x.shape[2] + 1)), int(rng.integers(1, x.shape[3] + 1)))
        y, idx = fractional_max_pool2d(x, k, out, return_indices=True, random_samples=u,
                                       overlapping=False)
        want_y, want_idx = ref_fractional(x, k, out, u, overlapping=False)
        np.testing.assert_array_equal(y, want_y)
        np.testing.assert_array_equal(idx, want_idx)


def test_output_ratio_rule():
    assert fractional_output_size((7, 10), output_ratio=0.75) == (5, 7)
    assert fractional_output_size((7, 10), output_ratio=(0.5, 0.31)) == (3, 3)
    assert fractional_output_size((7, 10), output_size=4) == (4, 4)
    x = rng_for("ratio").standard_normal((1, 2, 9, 11))
    assert fractional_max_pool2d(x, 2, output_ratio=0.7, rng=0).shape == (1, 2, 6, 7)


@pytest.mark.parametrize("sequence", ["pseudo", "random"])
@pytest.mark.parametrize("overlapping", [True, False])
def test_intervals_structure(sequence, overlapping):
    """Starts begin at 0; increments are floor/ceil of total/count; windows stay inside;
    disjoint windows tile the axis exactly."""
    rng = rng_for("intervals", sequence, overlapping)
    for _ in range(100):
        size = int(rng.integers(2, 40))
        k = int(rng.integers(1, 4)) if overlapping else 2
        k = min(k, size)
        out = int(rng.integers(1, size - k + 2)) if overlapping else int(rng.integers(1, size + 1))
        sample = float(rng.random()) if sequence == "pseudo" else None
        starts, stops = fractional_intervals(size, out, k, sample, sequence=sequence,
                                             overlapping=overlapping, rng=rng)
        assert len(starts) == len(stops) == out
        assert np.all(starts >= 0) and np.all(stops <= size) and np.all(stops > starts)
        total, count = (size - k, out - 1) if overlapping else (size, out)
        if count == 0:
            continue
        steps = np.diff(np.append(starts, size - k) if not overlapping else starts)
        if overlapping:
            assert starts[0] == 0 and starts[-1] == size - k
            assert np.all(stops - starts == k)
        else:
            assert starts[0] == 0 and stops[-1] == size
            np.testing.assert_array_equal(starts[1:], stops[:-1])
            steps = stops - starts
        assert set(np.unique(steps)) <= {total // count, -(-total // count)}


def test_random_sequence_is_graham_mix_of_ones_and_twos():
    """Ratio 25/16 in (1, 2), disjoint: 9 increments of 2 and 7 of 1, in random order."""
    orders = set()
    for seed in range(20):
        starts, stops = fractional_intervals(25, 16, sequence="random", overlapping=False, rng=seed)
        steps = stops - starts
        assert sorted(steps.tolist()) == [1] * 7 + [2] * 9
        orders.add(tuple(steps))
    assert len(orders) > 10


@pytest.mark.parametrize("sequence", ["pseudo", "random"])
@pytest.mark.parametrize("overlapping", [True, False])
def test_intervals_are_the_pooling_windows(sequence, overlapping):
    """On an increasing input each window's maximum is its bottom-right corner."""
    h, w, out = 13, 11, (7, 6)
    x = np.arange(h * w, dtype=np.float64).reshape(1, 1, h, w)
    kwargs = dict(sequence=sequence, overlapping=overlapping)
    if sequence == "pseudo":
        u = np.array([[[0.37, 0.81]]])
        _, idx = fractional_max_pool2d(x, 3, out, return_indices=True, random_samples=u, **kwargs)
        rows = fractional_intervals(h, out[0], 3, 0.81, **kwargs)
        cols = fractional_intervals(w, out[1], 3, 0.37, **kwargs)
        want = (rows[1][:, None] - 1) * w + cols[1][None, :] - 1
        np.testing.assert_array_equal(idx[0, 0], want)
    else:
        _, idx = fractional_max_pool2d(x, 3, out, return_indices=True, rng=5, **kwargs)
        rows, cols = np.divmod(idx[0, 0], w)
        assert np.all(np.diff(rows[:, 0]) > 0) and np.all(np.diff(cols[0]) > 0)
        assert np.all(rows == rows[:, :1]) and np.all(cols == cols[:1])


def test_fractional_seeding():
    x = rng_for("seed").standard_normal((2, 3, 12, 12)).astype(np.float32)
    a = fractional_max_pool2d(x, 2, 7, rng=3)
    np.testing.assert_array_equal(a, fractional_max_pool2d(x, 2, 7, rng=3))
    u = np.random.default_rng(3).random((2, 3, 2), dtype=np.float32)
    np.testing.assert_array_equal(a, fractional_max_pool2d(x, 2, 7, random_samples=u))
    r = fractional_max_pool2d(x, 2, 7, sequence="random", rng=3)
    np.testing.assert_array_equal(r, fractional_max_pool2d(x, 2, 7, sequence="random", rng=3))
    assert not np.array_equal(r, fractional_max_pool2d(x, 2, 7, sequence="random", rng=4))


def test_fractional_nan_wins_like_torch():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    y, idx = fractional_max_pool2d(x, 2, 2, return_indices=True,
                                   random_samples=np.zeros((1, 1, 2)), overlapping=False)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1


# ----------------------------------------------------------------------------
# Fractional max pooling: backward
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_fractional_backward_matches_loops(dtype):
    rng = rng_for("fbackward", dtype)
    for _ in range(30):
        x, k, out, u = random_case(rng, dtype)
        gy = rng.standard_normal(x.shape[:2] + out).astype(dtype)
        _, idx = ref_fractional(x, k, out, u)
        want = scatter(gy.astype(np.float64), idx, x.shape)
        got = fractional_max_pool2d_backward(gy, x, k, out, random_samples=u)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        _, got_idx = fractional_max_pool2d(x, k, out, return_indices=True, random_samples=u)
        np.testing.assert_array_equal(
            fractional_max_pool2d_backward(gy, x, k, out, indices=got_idx), got)


GRAD_CASES = [
    dict(kernel_size=2, output_size=(5, 4), overlapping=True),
    dict(kernel_size=(3, 2), output_ratio=0.6, overlapping=True),
    dict(kernel_size=2, output_size=(5, 6), overlapping=False),
    dict(kernel_size=1, output_size=(7, 3), overlapping=False),
]


@pytest.mark.parametrize("sequence", ["pseudo", "random"])
@pytest.mark.parametrize("case", range(len(GRAD_CASES)))
def test_fractional_gradient_check(case, sequence):
    kwargs = dict(GRAD_CASES[case], sequence=sequence)
    rng = rng_for("fgrad", case, sequence)
    x = distinct(rng, (2, 2, 9, 8))
    if sequence == "pseudo":
        kwargs["random_samples"] = rng.random((2, 2, 2))
    else:
        kwargs["rng"] = 11  # the same seed gives the same random windows in every call
    y, idx = fractional_max_pool2d(x, return_indices=True, **kwargs)
    gy = rng.standard_normal(y.shape)
    num = naive.numerical_gradient(lambda v: fractional_max_pool2d(v, **kwargs), x, gy)
    kwargs.pop("rng", None)
    got = fractional_max_pool2d_backward(gy, x, indices=idx, **kwargs)
    assert naive.rel_error(got, num) < GRAD_TOL


# ----------------------------------------------------------------------------
# Fractional max pooling: against PyTorch
# ----------------------------------------------------------------------------

def torch_fractional(x, k, out=None, ratio=None, u=None):
    """PyTorch's (input tensor, output, indices); skips the test without PyTorch."""
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(x).requires_grad_(True)
    if isinstance(ratio, float):
        ratio = (ratio, ratio)  # F.fractional_max_pool2d calls len() on it in torch 2.x
    y, idx = torch.nn.functional.fractional_max_pool2d(
        t, k, output_size=out, output_ratio=ratio, return_indices=True,
        _random_samples=torch.from_numpy(u))
    return t, y, idx


@pytest.mark.parametrize("dtype", DTYPES)
def test_fractional_equals_torch_exactly(dtype):
    """Same samples -> same values and same argmax indices, over many settings,
    including samples at 0 and just below 1 and outputs that fill the input."""
    rng = rng_for("torch", dtype)
    for trial in range(150):
        x, k, out, u = random_case(rng, dtype)
        if trial % 10 == 1:
            u[...] = np.nextafter(dtype(1), dtype(0))
        elif trial % 10 == 2:
            u[...] = 0
        elif trial % 10 == 3:
            out = (x.shape[2] - k[0] + 1, x.shape[3] - k[1] + 1)
        _, ty, tidx = torch_fractional(x, k, out, None, u)
        y, idx = fractional_max_pool2d(x, k, out, return_indices=True, random_samples=u)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())
    for _ in range(40):  # long axes, where float32 rounding of (i + u) * alpha shows
        h, k = int(rng.integers(50, 300)), int(rng.integers(1, 4))
        out = int(rng.integers(2, h - k + 2))
        x = rng.standard_normal((1, 2, h, h // 2 + k)).astype(dtype)
        u = rng.random((1, 2, 2)).astype(dtype)
        out = (out, int(rng.integers(1, h // 2 + 2)))
        _, ty, tidx = torch_fractional(x, k, out, None, u)
        y, idx = fractional_max_pool2d(x, k, out, return_indices=True, random_samples=u)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ratio", [0.5, 0.7, (0.75, 0.6), 0.9, 0.33])
def test_fractional_ratio_and_backward_equal_torch(ratio, dtype):
    rng = rng_for("torch-ratio", ratio, dtype)
    for size in [(10, 10), (17, 12), (32, 29)]:
        x = rng.standard_normal((2, 3) + size).astype(dtype)
        u = rng.random((2, 3, 2)).astype(dtype)
        try:
            t, ty, tidx = torch_fractional(x, 2, None, ratio, u)
        except RuntimeError:  # torch rejects this size: so must we
            with pytest.raises(ValueError):
                fractional_max_pool2d(x, 2, output_ratio=ratio, random_samples=u)
            continue
        y, idx = fractional_max_pool2d(x, 2, output_ratio=ratio, return_indices=True,
                                       random_samples=u)
        np.testing.assert_array_equal(y, ty.detach().numpy())
        np.testing.assert_array_equal(idx, tidx.numpy())
        gy = rng.standard_normal(y.shape).astype(dtype)
        ty.backward(ty.new_tensor(gy))
        got = fractional_max_pool2d_backward(gy, x, 2, output_ratio=ratio, random_samples=u)
        np.testing.assert_array_equal(got, t.grad.numpy())


# ----------------------------------------------------------------------------
# Fractional max pooling: bad input
# ----------------------------------------------------------------------------

def test_fractional_bad_input():
    x = np.zeros((1, 2, 8, 8))
    u = np.zeros((1, 2, 2))
    cases = [
        (TypeError, "input", dict(input=x.astype(np.int32))),
        (ValueError, "input", dict(input=x[0])),
        (ValueError, "exactly one", dict(output_size=None)),
        (ValueError, "exactly one", dict(output_ratio=0.5)),
        (ValueError, "output_ratio", dict(output_size=None, output_ratio=1.0)),
        (TypeError, "output_ratio", dict(output_size=None, output_ratio="half")),
        (ValueError, "output_ratio", dict(output_size=None, output_ratio=0.1)),
        (ValueError, "kernel_size", dict(kernel_size=0)),
        (ValueError, "output_size", dict(output_size=0)),
        (ValueError, "at least", dict(output_size=7, kernel_size=3)),
        (ValueError, "larger than the input", dict(output_size=9, overlapping=False)),
        (ValueError, "sequence", dict(sequence="quasi")),
        (TypeError, "overlapping", dict(overlapping="yes")),
        (TypeError, "return_indices", dict(return_indices=1)),
        (ValueError, "random_samples", dict(random_samples=np.zeros((1, 3, 2)))),
        (TypeError, "random_samples", dict(random_samples=u.astype(np.float32))),
        (ValueError, "random_samples", dict(random_samples=u + 1)),
        (ValueError, "random_samples", dict(random_samples=u * np.nan)),
        (ValueError, "random_samples", dict(random_samples=u, sequence="random")),
        (TypeError, "rng", dict(rng="seed")),
    ]
    for error, words, change in cases:
        kwargs = dict(input=x, kernel_size=2, output_size=5)
        kwargs.update(change)
        with pytest.raises(error, match=words):
            fractional_max_pool2d(**kwargs)


def test_fractional_backward_bad_input():
    x = np.zeros((1, 2, 8, 8))
    gy = np.zeros((1, 2, 5, 5))
    idx = np.zeros((1, 2, 5, 5), dtype=np.int64)
    with pytest.raises(ValueError, match="needs indices"):
        fractional_max_pool2d_backward(gy, x, 2, 5)
    with pytest.raises(ValueError, match="needs indices"):
        fractional_max_pool2d_backward(gy, x, 2, 5, sequence="random")
    with pytest.raises(ValueError, match="grad_output"):
        fractional_max_pool2d_backward(gy[:, :, :4], x, 2, 5, indices=idx)
    with pytest.raises(TypeError, match="grad_output"):
        fractional_max_pool2d_backward(gy.astype(np.float32), x, 2, 5, indices=idx)
    with pytest.raises(TypeError, match="indices"):
        fractional_max_pool2d_backward(gy, x, 2, 5, indices=idx.astype(np.float64))
    with pytest.raises(ValueError, match="indices"):
        fractional_max_pool2d_backward(gy, x, 2, 5, indices=idx + 64)
    with pytest.raises(ValueError, match="indices"):
        fractional_max_pool2d_backward(gy, x, 2, 5, indices=idx[..., :3])


def test_fractional_intervals_bad_input():
    with pytest.raises(ValueError, match="input_size"):
        fractional_intervals(5, 5, 2, 0.5)
    with pytest.raises(TypeError, match="output_size"):
        fractional_intervals(5, 2.0, 2, 0.5)
    with pytest.raises(ValueError, match="sample"):
        fractional_intervals(5, 3, 2, 1.0)
    with pytest.raises(ValueError, match="sample"):
        fractional_intervals(5, 3, 2, 0.5, sequence="random")
    with pytest.raises(ValueError, match="sequence"):
        fractional_intervals(5, 3, 2, 0.5, sequence="other")


# ----------------------------------------------------------------------------
# Stochastic pooling
# ----------------------------------------------------------------------------

STOCH_CASES = [dict(kernel_size=2), dict(kernel_size=3, stride=1), dict(kernel_size=(2, 3), stride=(1, 2)),
               dict(kernel_size=(3, 2), stride=(3, 1))]


def with_zeros(rng, shape, dtype):
    """Non-negative input with some exact zeros and one all-zero 3x3 corner."""
    x = np.maximum(rng.standard_normal(shape), 0).astype(dtype)
    x[:, :, :3, :3] = 0
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", range(len(STOCH_CASES)))
def test_stochastic_matches_loops(case, dtype):
    kw = STOCH_CASES[case]
    k = (kw["kernel_size"],) * 2 if isinstance(kw["kernel_size"], int) else kw["kernel_size"]
    s = kw.get("stride", k)
    s = (s, s) if isinstance(s, int) else s
    rng = rng_for("stoch", case, dtype)
    x = with_zeros(rng, (2, 3, 9, 10), dtype)
    y, idx = stochastic_pool2d(x, **kw, return_indices=True, rng=7)
    u = np.random.default_rng(7).random(y.shape)
    want_y, want_idx = ref_stochastic(x, k, s, u)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(y, want_y.astype(dtype))
    np.testing.assert_array_equal(y, np.take_along_axis(x.reshape(2, 3, -1), idx.reshape(2, 3, -1),
                                                        2).reshape(y.shape))
    assert np.all(x.reshape(2, 3, -1)[np.arange(2)[:, None, None], np.arange(3)[None, :, None],
                                      idx.reshape(2, 3, -1)][y.reshape(2, 3, -1) > 0] > 0)
    test_y = stochastic_pool2d(x, **kw, training=False)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(test_y, ref_stochastic(x, k, s)[0], rtol=tol, atol=tol)
    assert test_y.dtype == y.dtype == dtype


def test_stochastic_all_zero_window():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 2:, 2:] = [[0, 3], [0, 1]]
    y, idx = stochastic_pool2d(x, 2, return_indices=True, rng=0)
    np.testing.assert_array_equal(y[0, 0], [[0, 0], [0, x[0, 0].flat[idx[0, 0, 1, 1]]]])
    np.testing.assert_array_equal(idx[0, 0, 0], [0, 2])  # first element of each zero window
    assert idx[0, 0, 1, 1] in (11, 15)  # never a zero-probability element
    assert stochastic_pool2d(x, 2, training=False)[0, 0, 0, 0] == 0
    g = stochastic_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2, training=False)
    assert np.all(g[0, 0, :2, :] == 0) and np.all(g[0, 0, :, :2] == 0)
    g = stochastic_pool2d_backward(np.ones((1, 1, 2, 2)), x, 2, indices=idx)
    assert g[0, 0, 0, 0] == 1 and g[0, 0, 0, 2] == 1


def test_stochastic_frequencies_and_expectation():
    """Window (1, 2, 3, 4) repeated 40000 times: frequencies match a_i / sum (chi-square),
    and the mean sampled output matches the test-time output 30/10 = 3."""
    m = 40000
    x = np.tile(np.array([[1.0, 2.0], [3.0, 4.0]]), (1, m)).reshape(1, 1, 2, 2 * m)
    for dtype in DTYPES:
        y, idx = stochastic_pool2d(x.astype(dtype), 2, return_indices=True, rng=2024)
        rows, cols = np.divmod(idx.ravel(), 2 * m)
        pos = rows * 2 + cols % 2
        counts = np.bincount(pos, minlength=4)
        assert chisquare(counts, m * np.array([0.1, 0.2, 0.3, 0.4])).pvalue > 1e-3
        test_y = stochastic_pool2d(x.astype(dtype), 2, training=False)
        np.testing.assert_allclose(test_y, 3.0, rtol=1e-6)
        assert abs(y.mean() - 3.0) < 5 * 1.0 / np.sqrt(m)  # variance of one draw is 1


def test_stochastic_expectation_on_random_windows():
    rng = rng_for("expect")
    x = np.maximum(rng.standard_normal((1, 2, 6, 6)), 0) + 0.01
    draws = np.stack([stochastic_pool2d(x, 3, rng=seed) for seed in range(3000)])
    np.testing.assert_allclose(draws.mean(axis=0), stochastic_pool2d(x, 3, training=False),
                               atol=0.05)


def test_stochastic_seeding():
    x = np.abs(rng_for("sseed").standard_normal((2, 2, 8, 8)))
    a = stochastic_pool2d(x, 2, return_indices=True, rng=5)[1]
    np.testing.assert_array_equal(a, stochastic_pool2d(x, 2, return_indices=True, rng=5)[1])
    assert not np.array_equal(a, stochastic_pool2d(x, 2, return_indices=True, rng=6)[1])


@pytest.mark.parametrize("case", range(len(STOCH_CASES)))
def test_stochastic_gradient_checks(case):
    kw = STOCH_CASES[case]
    rng = rng_for("sgrad", case)
    x = rng.random((2, 2, 7, 8)) + 0.1
    y, idx = stochastic_pool2d(x, **kw, return_indices=True, rng=1)
    gy = rng.standard_normal(y.shape)
    # test mode: the exact gradient of sum(a^2) / sum(a), overlapping windows included
    num = naive.numerical_gradient(lambda v: stochastic_pool2d(v, **kw, training=False), x, gy)
    got = stochastic_pool2d_backward(gy, x, **kw, training=False)
    assert naive.rel_error(got, num) < GRAD_TOL
    # training: the sample held fixed, y = x.flat[idx]
    flat = idx.reshape(2, 2, -1)
    num = naive.numerical_gradient(
        lambda v: np.take_along_axis(v.reshape(2, 2, -1), flat, 2).reshape(y.shape), x, gy)
    got = stochastic_pool2d_backward(gy, x, **kw, indices=idx)
    assert naive.rel_error(got, num) < GRAD_TOL
    np.testing.assert_allclose(got, scatter(gy, idx, x.shape), rtol=1e-12, atol=1e-12)


def test_stochastic_bad_input():
    x = np.ones((1, 1, 4, 4))
    neg = x.copy()
    neg[0, 0, 1, 1] = -0.5
    with pytest.raises(ValueError, match="input must be finite and non-negative.*-0.5"):
        stochastic_pool2d(neg, 2)
    with pytest.raises(ValueError, match="input"):
        stochastic_pool2d(x * np.nan, 2)
    with pytest.raises(ValueError, match="input"):
        stochastic_pool2d(x * np.inf, 2)
    with pytest.raises(TypeError, match="input"):
        stochastic_pool2d(x.astype(np.int64), 2)
    with pytest.raises(ValueError, match="input"):
        stochastic_pool2d(x[0], 2)
    with pytest.raises(ValueError, match="kernel_size"):
        stochastic_pool2d(x, 5)
    with pytest.raises(ValueError, match="stride"):
        stochastic_pool2d(x, 2, stride=0)
    with pytest.raises(TypeError, match="training"):
        stochastic_pool2d(x, 2, training="no")
    with pytest.raises(ValueError, match="return_indices"):
        stochastic_pool2d(x, 2, training=False, return_indices=True)
    gy = np.ones((1, 1, 2, 2))
    idx = np.zeros((1, 1, 2, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="indices"):
        stochastic_pool2d_backward(gy, x, 2)
    with pytest.raises(ValueError, match="indices"):
        stochastic_pool2d_backward(gy, x, 2, training=False, indices=idx)
    with pytest.raises(ValueError, match="own pooling window"):
        stochastic_pool2d_backward(gy, x, 2, indices=idx)
    with pytest.raises(ValueError, match="grad_output"):
        stochastic_pool2d_backward(gy[..., :1], x, 2, training=False)
    with pytest.raises(ValueError, match="non-negative"):
        stochastic_pool2d_backward(gy, neg, 2, training=False)


# ----------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------

def test_fractional_layer():
    x = rng_for("flayer").standard_normal((2, 3, 11, 11))
    layer = FractionalMaxPool2d(2, output_ratio=0.6, rng=0)
    y1 = layer(x)
    u1 = layer.last_random_samples
    np.testing.assert_array_equal(y1, fractional_max_pool2d(x, 2, output_ratio=0.6, random_samples=u1))
    gy = rng_for("flayer-g").standard_normal(y1.shape)
    np.testing.assert_array_equal(layer.backward(gy), fractional_max_pool2d_backward(
        gy, x, 2, output_ratio=0.6, random_samples=u1))
    layer(x)
    assert not np.array_equal(layer.last_random_samples, u1)  # fresh windows every forward
    again = FractionalMaxPool2d(2, output_ratio=0.6, rng=0)
    np.testing.assert_array_equal(again(x), y1)  # a seeded layer replays
    rand = FractionalMaxPool2d((2, 3), output_size=(6, 5), sequence="random", overlapping=False,
                               rng=1)
    y = rand(x)
    assert y.shape == (2, 3, 6, 5) and rand.last_random_samples is None
    g = rand.backward(np.ones_like(y))
    assert g.sum() == y.size and set(np.unique(g)) <= {0.0, 1.0}  # disjoint: one winner each
    assert "output_ratio=(0.6, 0.6)" in repr(layer)


def test_fractional_layer_bad_settings():
    with pytest.raises(ValueError, match="exactly one"):
        FractionalMaxPool2d(2)
    with pytest.raises(ValueError, match="output_ratio"):
        FractionalMaxPool2d(2, output_ratio=1.5)
    with pytest.raises(ValueError, match="sequence"):
        FractionalMaxPool2d(2, 3, sequence="x")
    with pytest.raises(RuntimeError, match="before forward"):
        FractionalMaxPool2d(2, 3).backward(np.zeros((1, 1, 3, 3)))
    with pytest.raises(TypeError, match="input"):
        FractionalMaxPool2d(2, 3)([[1.0]])


def test_stochastic_layer():
    x = np.abs(rng_for("slayer").standard_normal((2, 3, 8, 8)))
    layer = StochasticPool2d(2, rng=0)
    y = layer(x)
    _, idx = stochastic_pool2d(x, 2, return_indices=True, rng=0)
    np.testing.assert_array_equal(y, stochastic_pool2d(x, 2, rng=0))
    gy = np.ones_like(y)
    np.testing.assert_array_equal(layer.backward(gy), stochastic_pool2d_backward(gy, x, 2, indices=idx))
    assert not np.array_equal(layer(x), y)  # a fresh draw
    layer.eval()
    np.testing.assert_array_equal(layer(x), stochastic_pool2d(x, 2, training=False))
    np.testing.assert_array_equal(layer.backward(gy),
                                  stochastic_pool2d_backward(gy, x, 2, training=False))
    with pytest.raises(ValueError, match="stride"):
        StochasticPool2d(2, stride=0)
    with pytest.raises(ValueError, match="non-negative"):
        StochasticPool2d(2)(-x)

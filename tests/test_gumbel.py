"""Gumbel-softmax: torch's formula for given noise, its backward (float64 central differences),
the straight-through hard sample, the Gumbel-max law (chi-square) and tau -> 0."""

import numpy as np
import pytest
from naive import numerical_gradient, rel_error
from scipy import stats

from cnnlib import functional as F


def test_soft_sample_is_the_softmax_of_perturbed_logits():
    rng = np.random.default_rng(0)
    logits, g = rng.standard_normal((3, 5)), F.sample_gumbel((3, 5), rng=1)
    y = F.gumbel_softmax(logits, 0.5, gumbels=g)
    z = (logits + g) / 0.5
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    assert np.allclose(y, expected, rtol=1e-12)
    assert np.allclose(F.gumbel_softmax(logits, 0.5, dim=0, gumbels=g).sum(axis=0), 1)


def test_noise_is_minus_log_of_exponential():
    g = F.sample_gumbel(200_000, rng=2)
    # standard Gumbel: mean = Euler's gamma, variance = pi^2 / 6
    assert abs(g.mean() - np.euler_gamma) < 0.01
    assert abs(g.var() - np.pi ** 2 / 6) < 0.02
    assert stats.kstest(g[:5000], stats.gumbel_r.cdf).pvalue > 1e-3
    assert F.sample_gumbel((2, 3), np.float32, rng=0).dtype == np.float32


@pytest.mark.parametrize("tau,dim", [(1.0, -1), (0.3, 0), (2.5, 1)])
def test_backward_matches_central_differences(tau, dim):
    rng = np.random.default_rng(3)
    logits = rng.standard_normal((4, 3, 5))
    g = F.sample_gumbel(logits.shape, rng=4)
    dy = rng.standard_normal(logits.shape)
    grad = F.gumbel_softmax_backward(dy, logits, g, tau, dim=dim)
    num = numerical_gradient(lambda v: F.gumbel_softmax(v, tau, dim=dim, gumbels=g), logits, dy)
    assert rel_error(grad, num) < 1e-7


def test_hard_is_one_hot_forward_with_the_soft_gradient():
    rng = np.random.default_rng(5)
    logits, g = rng.standard_normal((6, 4)), F.sample_gumbel((6, 4), rng=6)
    soft = F.gumbel_softmax(logits, 0.7, gumbels=g)
    hard = F.gumbel_softmax(logits, 0.7, hard=True, gumbels=g)
    assert set(np.unique(hard)) == {0.0, 1.0} and np.all(hard.sum(axis=1) == 1)
    assert np.array_equal(hard.argmax(axis=1), soft.argmax(axis=1))
    assert np.array_equal(hard.argmax(axis=1), (logits + g).argmax(axis=1))
    dy = rng.standard_normal(logits.shape)
    assert np.array_equal(F.gumbel_softmax_backward(dy, logits, g, 0.7, hard=True),
                          F.gumbel_softmax_backward(dy, logits, g, 0.7))


def test_gumbel_max_frequencies_follow_softmax():
    logits = np.array([1.0, 0.0, -1.0, 0.5, 2.0])
    n = 100_000
    y = F.gumbel_softmax(np.tile(logits, (n, 1)), 1.0, hard=True, rng=7)
    counts = y.sum(axis=0)
    p = F.softmax(logits, 0)
    chi2 = stats.chisquare(counts, n * p)
    assert chi2.pvalue > 1e-3
    # and the test can fail: frequencies of a uniform distribution are rejected
    assert stats.chisquare(counts, np.full(5, n / 5)).pvalue < 1e-10


def test_small_tau_approaches_one_hot():
    rng = np.random.default_rng(8)
    logits = rng.standard_normal((1000, 6))
    g = F.sample_gumbel(logits.shape, rng=9)
    maxes = [F.gumbel_softmax(logits, tau, gumbels=g).max(axis=1).mean() for tau in (10, 1, 0.1, 0.01)]
    assert np.all(np.diff(maxes) > 0)
    assert maxes[-1] > 0.99
    assert maxes[0] < 0.3  # large tau: close to uniform (1/6)


def test_seeded_draws_are_reproducible():
    logits = np.zeros((2, 3))
    assert np.array_equal(F.gumbel_softmax(logits, rng=1), F.gumbel_softmax(logits, rng=1))


def test_same_formula_as_torch_for_the_same_noise():
    torch = pytest.importorskip("torch", reason="torch is needed for the reference comparison")
    rng = np.random.default_rng(10)
    logits, g = rng.standard_normal((3, 7)), F.sample_gumbel((3, 7), rng=11)
    e = np.exp(-g)  # the Exponential(1) draws that give this noise
    orig = torch.Tensor.exponential_

    def fixed(self, *args, **kwargs):
        return self.copy_(torch.from_numpy(e))

    torch.Tensor.exponential_ = fixed
    try:
        for hard in (False, True):
            t_logits = torch.tensor(logits, requires_grad=True)
            ty = torch.nn.functional.gumbel_softmax(t_logits, tau=0.6, hard=hard)
            dy = rng.standard_normal(logits.shape)
            ty.backward(torch.from_numpy(dy))
            assert np.allclose(ty.detach().numpy(), F.gumbel_softmax(logits, 0.6, hard=hard, gumbels=g))
            grad = F.gumbel_softmax_backward(dy, logits, g, 0.6, hard=hard)
            assert np.allclose(t_logits.grad.numpy(), grad)
    finally:
        torch.Tensor.exponential_ = orig


def test_bad_input():
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match="tau"):
        F.gumbel_softmax(x, tau=0)
    with pytest.raises(TypeError, match="logits"):
        F.gumbel_softmax([1.0, 2.0])
    with pytest.raises(TypeError, match="logits"):
        F.gumbel_softmax(np.zeros(3, dtype=np.int64))
    with pytest.raises(IndexError, match="dim"):
        F.gumbel_softmax(x, dim=2)
    with pytest.raises(ValueError, match="gumbels"):
        F.gumbel_softmax(x, gumbels=np.zeros((3, 2)))
    with pytest.raises(TypeError, match="hard"):
        F.gumbel_softmax(x, hard="yes")
    with pytest.raises(TypeError, match="gumbels"):
        F.gumbel_softmax_backward(x, x, None)
    with pytest.raises(TypeError, match="dtype"):
        F.sample_gumbel(3, np.int32)

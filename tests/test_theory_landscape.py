"""Tests of cnnlib.theory: Hessians by central differences, Hutchinson, critical
points, the barrier, and the mode-connectivity curves."""

from math import comb

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.analysis.sharpness import flat_parameters, model_loss_grad, set_flat_parameters
from cnnlib.experiments import landscape as exl
from cnnlib.theory import curves, landscape


def toy(theta):
    return exl.toy_loss_grad(theta)


def quadratic(a, b):
    def loss_grad(theta):
        return 0.5 * theta @ a @ theta + b @ theta, a @ theta + b
    return loss_grad


def test_toy_saddle_has_eigenvalues_plus_and_minus_two():
    h = landscape.hessian(toy, np.zeros(2))
    np.testing.assert_allclose(h, [[0, -2], [-2, 0]], atol=1e-9)
    np.testing.assert_allclose(landscape.spectrum(h), [-2, 2], atol=1e-9)
    assert landscape.index(landscape.spectrum(h)) == 0.5


def test_hessian_of_a_quadratic_is_its_matrix():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((7, 7))
    a = m + m.T
    b = rng.standard_normal(7)
    h = landscape.hessian(quadratic(a, b), rng.standard_normal(7))
    np.testing.assert_allclose(h, a, atol=1e-8)
    # a plain gradient (not a pair) works too
    h2 = landscape.hessian(lambda t: a @ t + b, np.ones(7))
    np.testing.assert_allclose(h2, a, atol=1e-8)


def test_step_size_tradeoff_truncation_and_rounding():
    """L = sum(exp(theta)): H = diag(exp(theta)); the default step beats a much
    larger (truncation) and a much smaller (rounding) one."""
    theta = np.linspace(-1, 1, 5)

    def loss_grad(t):
        return float(np.exp(t).sum()), np.exp(t)

    exact = np.diag(np.exp(theta))
    err = {eps: np.abs(landscape.hessian(loss_grad, theta, eps) - exact).max()
           for eps in (1e-2, landscape.FD_STEP, 1e-11)}
    assert err[landscape.FD_STEP] < 1e-9
    assert err[1e-2] > 10 * err[landscape.FD_STEP]
    assert err[1e-11] > 10 * err[landscape.FD_STEP]


def test_hutchinson_converges_to_the_trace():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((20, 20))
    a = m @ m.T / 20 + np.diag(np.arange(20.0))
    est, running = landscape.hutchinson_trace(quadratic(a, np.zeros(20)), np.zeros(20),
                                              num_samples=2000, rng=0)
    # standard error sqrt(2 sum_{i!=j} a_ij^2 / n)
    off = a - np.diag(np.diag(a))
    se = np.sqrt(2 * (off ** 2).sum() / 2000)
    assert abs(est - np.trace(a)) < 4 * se
    assert running.shape == (2000,)
    # a diagonal matrix: every sample is exact
    est_d, _ = landscape.hutchinson_trace(quadratic(np.diag(np.arange(5.0)), np.zeros(5)),
                                          np.ones(5), num_samples=3, rng=0)
    assert est_d == pytest.approx(10.0, abs=1e-8)


def test_find_critical_point_finds_the_toy_saddle_and_a_minimum():
    theta, norms = landscape.find_critical_point(toy, np.array([0.05, -0.03]), steps=50)
    assert norms[-1] < 1e-10
    np.testing.assert_allclose(theta, 0, atol=1e-8)      # Newton on g = 0 is drawn to the saddle
    theta, norms = landscape.find_critical_point(toy, np.array([1.2, 0.7]), steps=50)
    assert norms[-1] < 1e-10 and theta[0] * theta[1] == pytest.approx(1, abs=1e-8)


def test_gradient_descent_plateaus_at_the_saddle_then_escapes():
    _, losses, norms = landscape.gradient_descent(toy, np.array([1e-4, 0.0]), lr=0.1, steps=200)
    assert losses[0] == pytest.approx(1.0)
    assert losses[20] > 0.99           # still on the plateau
    assert losses[-1] < 1e-6           # escaped to the valley ab = 1
    assert norms.shape == (201,)


def test_barrier():
    assert landscape.barrier([1.0, 3.0, 2.0]) == 1.0
    assert landscape.barrier([1.0, 0.5, 2.0]) == 0.0
    with pytest.raises(ValueError, match="losses"):
        landscape.barrier([1.0])


def test_hessian_matches_torch_on_a_tiny_mlp():
    torch = pytest.importorskip("torch", reason="torch is the optional reference")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3))
    y = rng.integers(0, 2, 12)
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64, rng=0), nn.Tanh(),
                          nn.Linear(4, 2, dtype=np.float64, rng=1))
    theta = flat_parameters(model)
    h = landscape.hessian(model_loss_grad(model, x, y), theta)

    xt, yt = torch.tensor(x), torch.tensor(y)

    def f(t):
        w1, b1 = t[:12].reshape(4, 3), t[12:16]
        w2, b2 = t[16:24].reshape(2, 4), t[24:26]
        return torch.nn.functional.cross_entropy(torch.tanh(xt @ w1.T + b1) @ w2.T + b2, yt)

    ref = torch.autograd.functional.hessian(f, torch.tensor(theta)).numpy()
    np.testing.assert_allclose(h, ref, atol=1e-8)


def test_bad_input():
    with pytest.raises(TypeError, match="grad_fn"):
        landscape.hessian(3, np.zeros(2))
    with pytest.raises(ValueError, match="theta"):
        landscape.hessian(toy, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="v must"):
        landscape.hvp(toy, np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="eps"):
        landscape.hvp(toy, np.zeros(2), np.ones(2), eps=0)
    with pytest.raises(ValueError, match="gradient of shape"):
        landscape.hessian(lambda t: np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="symmetric"):
        landscape.spectrum(np.array([[0.0, 1.0], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="eigenvalues"):
        landscape.index([])
    with pytest.raises(ValueError, match="num_samples"):
        landscape.hutchinson_trace(toy, np.zeros(2), num_samples=0)
    with pytest.raises(TypeError, match="loss, grad"):
        landscape.gradient_descent(lambda t: t, np.ones(2), 0.1, 2)


# --- curves ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bezier", "polychain"])
@pytest.mark.parametrize("n", [2, 3, 5])
def test_coefficients_sum_to_one_and_hit_the_ends(kind, n):
    for t in np.linspace(0, 1, 61):
        c = curves.coefficients(kind, t, n)
        assert c.shape == (n,) and np.all(c >= 0)
        assert c.sum() == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_array_equal(curves.coefficients(kind, 0.0, n), np.eye(n)[0])
    np.testing.assert_array_equal(curves.coefficients(kind, 1.0, n), np.eye(n)[-1])


def test_coefficients_closed_forms():
    t = 0.3
    np.testing.assert_allclose(curves.bezier_coefficients(t, 3), [0.49, 0.42, 0.09])
    np.testing.assert_allclose(curves.bezier_coefficients(t, 4),
                               [comb(3, k) * t ** k * (1 - t) ** (3 - k) for k in range(4)])
    np.testing.assert_allclose(curves.polychain_coefficients(t, 3), [0.4, 0.6, 0.0])
    np.testing.assert_allclose(curves.polychain_coefficients(0.5, 3), [0, 1, 0])
    np.testing.assert_allclose(curves.coefficients("line", t, 2), [0.7, 0.3])


def test_curve_endpoints_reproduce_the_models_exactly():
    m0, m1 = exl.small_cnn(0), exl.small_cnn(1)
    w0, w1 = flat_parameters(m0), flat_parameters(m1)
    rng = np.random.default_rng(0)
    bends = np.array([w0, rng.standard_normal(w0.size), w1])
    x = rng.standard_normal((4, 1, 14, 14)).astype(np.float32)
    m0.eval()
    m1.eval()
    probe = exl.small_cnn(2)
    probe.eval()
    for kind in ("bezier", "polychain"):
        for t, ref in ((0.0, m0), (1.0, m1)):
            set_flat_parameters(probe, curves.curve_point(bends, curves.coefficients(kind, t, 3)))
            np.testing.assert_array_equal(probe(x), ref(x))
    mid = curves.curve_point(bends, curves.bezier_coefficients(0.5, 3))
    np.testing.assert_allclose(mid, 0.25 * w0 + 0.5 * bends[1] + 0.25 * w1, rtol=1e-6)


def test_curve_bad_input():
    with pytest.raises(ValueError, match="t must"):
        curves.bezier_coefficients(1.5, 3)
    with pytest.raises(ValueError, match="num_bends"):
        curves.polychain_coefficients(0.5, 1)
    with pytest.raises(ValueError, match="kind"):
        curves.coefficients("spline", 0.5, 3)
    with pytest.raises(ValueError, match="2 bends"):
        curves.coefficients("line", 0.5, 3)
    with pytest.raises(ValueError, match="coeffs"):
        curves.curve_point(np.zeros((3, 4)), [0.5, 0.5])


def test_recompute_bn_gives_the_statistics_of_the_data():
    model = exl.small_cnn(0)
    x = np.random.default_rng(0).standard_normal((300, 1, 14, 14)).astype(np.float32)
    exl.recompute_bn(model, x, batch_size=100)
    conv = model[0]
    z = conv(x)
    bn = model[1]
    np.testing.assert_allclose(bn.running_mean, z.mean(axis=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training


def test_rank_correlation_with_ties():
    assert exl.rank_correlation([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert exl.rank_correlation([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    # average ranks: a -> (1, 2, 3, 4), b -> (1.5, 1.5, 3, 4)
    ra, rb = np.array([1, 2, 3, 4.0]), np.array([1.5, 1.5, 3, 4])
    expected = np.corrcoef(ra, rb)[0, 1]
    assert exl.rank_correlation([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 2]) == pytest.approx(expected)
    scipy_stats = pytest.importorskip("scipy.stats", reason="scipy is the optional reference")
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 4, 30), rng.standard_normal(30)
    assert exl.rank_correlation(a, b) == pytest.approx(scipy_stats.spearmanr(a, b)[0])
    with pytest.raises(ValueError, match="constant"):
        exl.rank_correlation([1, 1], [1, 2])


def test_bn_statistics_are_copies():
    model = exl.small_cnn(0)
    stats = exl.bn_statistics(model)
    assert len(stats) == 1
    stats[0][0][...] = 5
    assert np.all(model[1].running_mean == 0)

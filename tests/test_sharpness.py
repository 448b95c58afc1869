"""Tests for cnnlib.analysis.sharpness: quadratics with known Hessians, softmax regression, bad input."""

import itertools

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.analysis import sharpness


def quadratic(A, b=None):
    b = np.zeros(len(A)) if b is None else b

    def loss_grad(theta):
        return 0.5 * theta @ A @ theta + b @ theta, A @ theta + b
    return loss_grad


def spd_matrix(eigenvalues, seed=0):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues),) * 2))
    return q @ np.diag(eigenvalues) @ q.T, q


def test_hvp_is_exact_on_a_quadratic():
    rng = np.random.default_rng(0)
    A, _ = spd_matrix([3.0, 1.0, 0.2, -0.5, 2.0])
    b = rng.standard_normal(5)
    theta, v = rng.standard_normal(5), rng.standard_normal(5)
    hv = sharpness.hessian_vector_product(quadratic(A, b), theta, v)
    np.testing.assert_allclose(hv, A @ v, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(sharpness.hessian_vector_product(quadratic(A), theta, 0 * v), 0)


@pytest.mark.parametrize("eigenvalues", [[5.0, 2.0, 1.0, 0.5, 0.1, 0.0],
                                         [40.0, 39.0, 3.0, 1.0, 0.01, 0.0, 0.0, 2.0]])
def test_power_iteration_finds_the_top_eigenvalue(eigenvalues):
    A, q = spd_matrix(eigenvalues, seed=1)
    theta = np.random.default_rng(2).standard_normal(len(A))
    lam, v, history = sharpness.top_hessian_eigenvalue(quadratic(A), theta, iters=500, tol=1e-10,
                                                       rng=0)
    assert lam == pytest.approx(max(eigenvalues), rel=1e-6)
    top = q[:, int(np.argmax(eigenvalues))]
    assert abs(v @ top) == pytest.approx(1.0, abs=1e-3)
    assert len(history) <= 500 and history[-1] == lam


def test_power_iteration_stops_at_tol():
    A, _ = spd_matrix([5.0, 1.0, 0.5])
    _, _, history = sharpness.top_hessian_eigenvalue(quadratic(A), np.zeros(3), iters=100,
                                                     tol=1e-3, rng=0)
    assert 2 <= len(history) < 100
    assert abs(history[-1] - history[-2]) <= 1e-3 * abs(history[-1])


def softmax_regression(seed=0, n=40, d=5, c=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rng.integers(0, c, n)
    model = nn.Linear(d, c, bias=False, dtype=np.float64, rng=seed)
    return model, x, y


def softmax_regression_hessian(W, x, y):
    """H[(c,d),(c',d')] = mean_n (p_c delta_cc' - p_c p_c') x_d x_d' (row-major vec(W))."""
    z = x @ W.T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    H = 0
    for pn, xn in zip(p, x):
        H = H + np.kron(np.diag(pn) - np.outer(pn, pn), np.outer(xn, xn))
    return H / len(x)


def test_hvp_and_top_eigenvalue_on_softmax_regression():
    model, x, y = softmax_regression()
    theta = sharpness.flat_parameters(model)
    H = softmax_regression_hessian(model.weight.data, x, y)
    loss_grad = sharpness.model_loss_grad(model, x, y)
    v = np.random.default_rng(3).standard_normal(theta.shape)
    np.testing.assert_allclose(sharpness.hessian_vector_product(loss_grad, theta, v), H @ v,
                               rtol=1e-6, atol=1e-8)
    lam, _, _ = sharpness.top_hessian_eigenvalue(loss_grad, theta, iters=300, tol=1e-9, rng=0)
    assert lam == pytest.approx(np.linalg.eigvalsh(H).max(), rel=1e-4)


def test_model_loss_grad_matches_finite_differences():
    model = nn.Sequential(nn.Linear(4, 6, dtype=np.float64, rng=0), nn.Tanh(),
                          nn.Linear(6, 3, dtype=np.float64, rng=1))
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 4)), rng.integers(0, 3, 10)
    loss_grad = sharpness.model_loss_grad(model, x, y)
    theta = sharpness.flat_parameters(model)
    _, g = loss_grad(theta)
    h = 1e-6
    numeric = np.array([(loss_grad(theta + h * e)[0] - loss_grad(theta - h * e)[0]) / (2 * h)
                        for e in np.eye(len(theta))])
    np.testing.assert_allclose(g, numeric, rtol=1e-6, atol=1e-9)


def test_flat_parameters_round_trip():
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Linear(4, 2, rng=1))
    theta = sharpness.flat_parameters(model)
    assert theta.dtype == np.float64 and theta.shape == (3 * 4 + 4 + 4 * 2 + 2,)
    sharpness.set_flat_parameters(model, np.arange(len(theta), dtype=np.float64))
    assert model[0].weight.dtype == np.float32
    np.testing.assert_array_equal(sharpness.flat_parameters(model), np.arange(len(theta)))


def test_epsilon_sharpness_on_a_diagonal_quadratic_is_exact():
    # At theta = 0 the box is |z_i| <= eps; every corner gives 0.5 * sum(a) * eps^2.
    a = np.array([4.0, 1.0, 0.25, 2.0])
    eps = 1e-2
    est = sharpness.epsilon_sharpness(quadratic(np.diag(a)), np.zeros(4), eps=eps, num_samples=3,
                                      rng=0)
    assert est == pytest.approx(100 * 0.5 * a.sum() * eps ** 2)


def test_epsilon_sharpness_is_a_lower_bound_that_corners_reach():
    A, _ = spd_matrix([3.0, 1.0, 0.5, 0.2, 0.1, 2.0], seed=4)
    theta = np.random.default_rng(5).standard_normal(6)
    f = quadratic(A)
    eps = 0.05
    box = eps * (np.abs(theta) + 1)
    f0 = f(theta)[0]
    # a convex function attains its maximum over a box at a corner: try all 64
    true = max(f(theta + box * np.array(s))[0] for s in itertools.product([-1, 1], repeat=6))
    true = 100 * (true - f0) / (1 + f0)
    few = sharpness.epsilon_sharpness(f, theta, eps, num_samples=4, rng=0)
    many = sharpness.epsilon_sharpness(f, theta, eps, num_samples=2000, rng=0)
    ascent = sharpness.epsilon_sharpness(f, theta, eps, num_samples=0, ascent_steps=5)
    assert few <= many <= true + 1e-12
    assert many == pytest.approx(true)
    assert 0 < ascent <= true + 1e-12


def test_epsilon_sharpness_ascent_solves_a_linear_loss():
    g = np.array([1.0, -2.0, 0.5])
    theta = np.array([0.3, -1.0, 2.0])
    eps = 1e-3
    est = sharpness.epsilon_sharpness(lambda t: (g @ t, g), theta, eps, num_samples=0,
                                      ascent_steps=1)
    f0 = g @ theta
    assert est == pytest.approx(100 * eps * np.sum(np.abs(g) * (np.abs(theta) + 1)) / (1 + f0))


@pytest.mark.parametrize("call, err", [
    (lambda: sharpness.hessian_vector_product(None, np.zeros(3), np.ones(3)), TypeError),
    (lambda: sharpness.hessian_vector_product(quadratic(np.eye(3)), np.zeros(3), np.ones(2)),
     ValueError),
    (lambda: sharpness.hessian_vector_product(quadratic(np.eye(3)), np.zeros((3, 1)), np.ones(3)),
     ValueError),
    (lambda: sharpness.hessian_vector_product(quadratic(np.eye(3)), np.zeros(3), np.ones(3), r=0),
     ValueError),
    (lambda: sharpness.top_hessian_eigenvalue(quadratic(np.eye(3)), np.zeros(3), iters=0),
     ValueError),
    (lambda: sharpness.top_hessian_eigenvalue(quadratic(np.eye(3)), np.arange(3), iters=3),
     ValueError),
    (lambda: sharpness.epsilon_sharpness(quadratic(np.eye(3)), np.zeros(3), eps=0), ValueError),
    (lambda: sharpness.epsilon_sharpness(quadratic(np.eye(3)), np.zeros(3), num_samples=0),
     ValueError),
    (lambda: sharpness.epsilon_sharpness(lambda t: 0.0, np.zeros(3), num_samples=0,
                                         ascent_steps=1), TypeError),
    (lambda: sharpness.epsilon_sharpness("f", np.zeros(3)), TypeError),
    (lambda: sharpness.flat_parameters("model"), TypeError),
    (lambda: sharpness.set_flat_parameters(nn.Linear(2, 2), np.zeros(5)), ValueError),
    (lambda: sharpness.model_loss_grad(nn.Linear(2, 2), np.zeros((3, 2)), np.zeros(2, int)),
     ValueError),
])
def test_bad_input(call, err):
    with pytest.raises(err):
        call()

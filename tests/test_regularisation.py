"""Tests for cnnlib.experiments.regularisation: the L2 penalty, coupled vs decoupled decay, the toys."""

import numpy as np
import pytest

from cnnlib import optim
from cnnlib.experiments import regularisation as R
from cnnlib.models.zoo import LeNet5
from cnnlib.nn import Conv2d, Flatten, Linear, Parameter, ReLU, Sequential
from cnnlib.nn.dropout import Dropout


def small_net(seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return Sequential(Conv2d(1, 3, 3, dtype=dtype, rng=rng), ReLU(), Flatten(),
                      Linear(3 * 4 * 4, 5, dtype=dtype, rng=rng))


def data(n=96, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 6, 6)).astype(dtype), rng.integers(0, 5, n)


# ----------------------------------------------------------------------------
# l2_penalty
# ----------------------------------------------------------------------------

def test_l2_penalty_value_and_gradient():
    net = small_net()
    for p in net.parameters():
        p.grad[...] = 1.0
    value = R.l2_penalty(net, 0.3)
    ref = 0.15 * sum(float((p.data ** 2).sum()) for p in net.parameters())
    assert value == pytest.approx(ref, rel=1e-12)
    for p in net.parameters():
        np.testing.assert_allclose(p.grad, 1.0 + 0.3 * p.data)
    assert R.weight_norm(net) == pytest.approx(np.sqrt(ref / 0.15))


def test_l2_penalty_gradient_is_the_derivative_of_its_value():
    p = Parameter(np.array([0.3, -1.2, 2.0]))
    R.l2_penalty([p], 0.7)
    for i in range(3):
        e = np.zeros(3)
        e[i] = 1e-6
        plus = R.l2_penalty([Parameter(p.data + e)], 0.7)
        minus = R.l2_penalty([Parameter(p.data - e)], 0.7)
        assert p.grad[i] == pytest.approx((plus - minus) / 2e-6, rel=1e-6)


def test_l2_penalty_zero_and_bad_input():
    p = Parameter(np.ones(2))
    assert R.l2_penalty(p, 0.0) == 0.0 and np.all(p.grad == 0)
    with pytest.raises(ValueError, match="weight_decay"):
        R.l2_penalty(p, -1.0)
    with pytest.raises(TypeError, match="weight_decay must be a number"):
        R.l2_penalty(p, "0.1")
    with pytest.raises(TypeError, match="Module or an iterable"):
        R.l2_penalty(3, 0.1)
    with pytest.raises(TypeError, match=r"model\[1\] must be a Parameter"):
        R.l2_penalty([p, np.ones(2)], 0.1)


# ----------------------------------------------------------------------------
# Coupled vs decoupled
# ----------------------------------------------------------------------------

def run(make_opt, l2=0.0, steps=2, dtype=np.float64):
    net = small_net(dtype=dtype)
    x, y = data(dtype=dtype)
    R.train_steps(net, make_opt(net.parameters()), x, y, epochs=steps, batch_size=16, l2=l2,
                  rng=np.random.default_rng(1))
    return [p.data.copy() for p in net.parameters()]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_with_l2_in_the_loss_equals_sgd_weight_decay(momentum, dtype):
    a = run(lambda ps: optim.SGD(ps, lr=0.05, momentum=momentum, weight_decay=0.01), dtype=dtype)
    b = run(lambda ps: optim.SGD(ps, lr=0.05, momentum=momentum), l2=0.01, dtype=dtype)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)  # the same arithmetic, bit for bit
    c = run(lambda ps: optim.SGD(ps, lr=0.05, momentum=momentum), dtype=dtype)
    assert max(np.abs(wa - wc).max() for wa, wc in zip(a, c)) > 1e-4


def test_adam_with_l2_equals_adam_weight_decay_but_not_adamw():
    a = run(lambda ps: optim.Adam(ps, lr=1e-2, weight_decay=0.1))
    b = run(lambda ps: optim.Adam(ps, lr=1e-2), l2=0.1)
    w = run(lambda ps: optim.AdamW(ps, lr=1e-2, weight_decay=0.1))
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)
    assert max(np.abs(wa - ww).max() for wa, ww in zip(a, w)) > 1e-3


def test_train_steps_reports_the_penalised_loss():
    net = small_net()
    x, y = data()
    loss = R.train_steps(net, optim.SGD(net.parameters(), lr=0.0), x, y, 1, batch_size=96, l2=2.0)
    net2 = small_net()
    ce = R.train_steps(net2, optim.SGD(net2.parameters(), lr=0.0), x, y, 1, batch_size=96)
    assert loss[0] == pytest.approx(ce[0] + R.l2_penalty(net, 2.0), rel=1e-10)
    with pytest.raises(ValueError, match="same length"):
        R.train_steps(net, optim.SGD(net.parameters(), lr=0.1), x, y[:3])
    with pytest.raises(ValueError, match="epochs"):
        R.train_steps(net, optim.SGD(net.parameters(), lr=0.1), x, y, epochs=0)


# ----------------------------------------------------------------------------
# Toys
# ----------------------------------------------------------------------------

def test_shrinkage_paths():
    w0 = np.array([1.0, -0.1, 0.01])
    lr, wd, t = 0.01, 0.5, 50
    geometric = w0 * (1 - lr * wd) ** np.arange(t + 1)[:, None]
    sgd = R.shrinkage_path(lambda ps: optim.SGD(ps, lr=lr, weight_decay=wd), w0, t)
    sgd_l2 = R.shrinkage_path(lambda ps: optim.SGD(ps, lr=lr), w0, t, l2=wd)
    adamw = R.shrinkage_path(lambda ps: optim.AdamW(ps, lr=lr, weight_decay=wd), w0, t)
    np.testing.assert_allclose(sgd, geometric, rtol=1e-12)
    np.testing.assert_array_equal(sgd, sgd_l2)
    np.testing.assert_allclose(adamw, geometric, rtol=1e-12)
    # Adam + L2 normalises the decay gradient: the first step is lr * sign(w),
    # whatever the size of w or of weight_decay.
    adam = R.shrinkage_path(lambda ps: optim.Adam(ps, lr=lr, eps=0.0), w0, 1, l2=wd)
    np.testing.assert_allclose(adam[1], w0 - lr * np.sign(w0), rtol=1e-12, atol=1e-15)
    assert adam.shape == (2, 3) and sgd.shape == (t + 1, 3)


def test_shrinkage_with_gradient_noise_decoupled_ignores_gradient_size():
    w0 = np.ones(3)
    scale = np.array([1e-3, 1.0, 1e3])
    make_w = lambda ps: optim.AdamW(ps, lr=1e-3, weight_decay=1.0)  # noqa: E731
    make_l2 = lambda ps: optim.Adam(ps, lr=1e-3)  # noqa: E731
    adamw = R.shrinkage_path(make_w, w0, 2000, grad_scale=scale)[-1]
    adam_l2 = R.shrinkage_path(make_l2, w0, 2000, l2=1.0, grad_scale=scale)[-1]
    # AdamW: the same shrinkage for every gradient size (up to the oscillation)
    assert np.ptp(adamw) < 0.02
    # Adam + L2: weights with large gradients keep (almost) all their size
    assert adam_l2[2] > 0.99 and adam_l2[0] < adamw[0]


def test_shrinkage_path_bad_input():
    make = lambda ps: optim.SGD(ps, lr=0.1)  # noqa: E731
    with pytest.raises(ValueError, match="w0 must be 1-d"):
        R.shrinkage_path(make, np.ones((2, 2)), 3)
    with pytest.raises(ValueError, match="steps"):
        R.shrinkage_path(make, np.ones(2), 0)
    with pytest.raises(ValueError, match="l2"):
        R.shrinkage_path(make, np.ones(2), 3, l2=-1)


def test_ridge_map_is_the_bayesian_posterior_mean():
    rng = np.random.default_rng(0)
    n, d, noise, prior = 40, 5, 0.5, 0.3
    X = rng.standard_normal((n, d))
    y = X @ rng.standard_normal(d) + noise * rng.standard_normal(n)
    lam = R.prior_variance_to_weight_decay(noise, prior, n)
    assert lam == pytest.approx(noise**2 / (n * prior**2))
    posterior_mean = np.linalg.solve(X.T @ X / noise**2 + np.eye(d) / prior**2, X.T @ y / noise**2)
    np.testing.assert_allclose(R.ridge_map(X, y, lam), posterior_mean, rtol=1e-10)
    np.testing.assert_allclose(R.ridge_map(X, y, 0.0), np.linalg.lstsq(X, y, rcond=None)[0],
                               rtol=1e-10)


def test_gradient_descent_with_weight_decay_converges_to_the_map():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((50, 4))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.1 * rng.standard_normal(50)
    w_map = R.ridge_map(X, y, 0.2)
    w, losses = R.fit_least_squares(X, y, lambda ps: optim.SGD(ps, lr=0.3, weight_decay=0.2), 500)
    np.testing.assert_allclose(w, w_map, rtol=1e-9)
    w2, _ = R.fit_least_squares(X, y, lambda ps: optim.SGD(ps, lr=0.3), 500, l2=0.2)
    np.testing.assert_array_equal(w, w2)
    assert losses.shape == (500,) and losses[-1] < losses[0]


def test_toy_bad_input():
    with pytest.raises(ValueError, match="X must be"):
        R.ridge_map(np.ones((3, 2)), np.ones(4), 0.1)
    with pytest.raises(TypeError, match="X must be a numpy"):
        R.ridge_map([[1.0]], np.ones(1), 0.1)
    with pytest.raises(ValueError, match="prior_std must be > 0"):
        R.prior_variance_to_weight_decay(1.0, 0.0, 10)
    with pytest.raises(ValueError, match="n must be"):
        R.prior_variance_to_weight_decay(1.0, 1.0, 0)


# ----------------------------------------------------------------------------
# LeNet-5 with dropout and the training run
# ----------------------------------------------------------------------------

def test_dropout_lenet5():
    model = R.lenet5_dropout(0.3, rng=np.random.default_rng(0))
    plain = LeNet5(rng=np.random.default_rng(0))
    for a, b in zip(model.parameters(), plain.parameters()):
        np.testing.assert_array_equal(a.data, b.data)  # same weights as the plain LeNet-5
    drops = [m for m in model if isinstance(m, Dropout)]
    assert len(drops) == 3 and all(d.p == 0.3 for d in drops) and model.p == (0.3,) * 3
    assert [d.p for d in R.lenet5_dropout((0.1, 0.0, 0.5)) if isinstance(d, Dropout)] == [0.1, 0, 0.5]
    with pytest.raises(ValueError, match="triple"):
        R.lenet5_dropout((0.1, 0.2))
    with pytest.raises(ValueError, match="between 0 and 1"):
        R.lenet5_dropout(1.2)
    assert len({id(d.rng) for d in drops}) == 3
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    model.eval()
    np.testing.assert_array_equal(model.logits(images), plain.logits(images))
    model.train()
    assert not np.array_equal(model.logits(images), plain.logits(images))
    first = R.lenet5_dropout(0.3, rng=np.random.default_rng(0)).logits(images)
    second = R.lenet5_dropout(0.3, rng=np.random.default_rng(0)).logits(images)
    np.testing.assert_array_equal(first, second)  # masks seeded too


def fake_mnist(split, data_dir=None):
    rng = np.random.default_rng(0 if split == "train" else 1)
    n = 120 if split == "train" else 60
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 50, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):  # a learnable signal: a bright bar per class
        images[i, 2 * c + 4:2 * c + 6, 4:24] = 255
    return images, labels


@pytest.mark.parametrize("cfg", [dict(), dict(dropout=0.3, weight_decay=1e-3),
                                 dict(optimizer="adam", weight_decay=1e-3),
                                 dict(optimizer="adamw", weight_decay=1e-2)])
def test_train_regularised(monkeypatch, cfg):
    monkeypatch.setattr(R, "load_mnist", fake_mnist)
    model, rec = R.train_regularised(n_train=100, epochs=2, batch_size=20, seed=3, **cfg)
    assert set(rec) == {"train_loss", "train_accuracy", "test_accuracy", "weight_norm", "seconds"}
    assert len(rec["train_loss"]) == 2
    assert 0 <= rec["test_accuracy"] <= 1 and rec["weight_norm"] > 0
    _, rec2 = R.train_regularised(n_train=100, epochs=2, batch_size=20, seed=3, **cfg)
    assert rec2["train_loss"] == rec["train_loss"]  # seeded
    assert isinstance(model, LeNet5)


def test_train_regularised_bad_input():
    with pytest.raises(ValueError, match="optimizer"):
        R.train_regularised(optimizer="rmsprop")
    with pytest.raises(ValueError, match="n_train"):
        R.train_regularised(n_train=0)


def test_figures():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    path = R.shrinkage_path(lambda ps: optim.AdamW(ps, lr=0.1, weight_decay=0.1), np.ones(2), 5)
    fig = R.plot_shrinkage_paths({"AdamW": path, "again": path}, ["a", "b"], title="t")
    assert isinstance(fig, Figure) and len(fig.axes[0].get_lines()) == 4
    plt.close(fig)
    with pytest.raises(ValueError, match="shape"):
        R.plot_shrinkage_paths({"AdamW": path}, ["a"])
    with pytest.raises(ValueError, match="non-empty dict"):
        R.plot_shrinkage_paths({}, ["a"])
    fig = R.plot_weight_histograms([small_net(0), small_net(1)], ["x", "y"])
    assert isinstance(fig, Figure)
    plt.close(fig)
    with pytest.raises(ValueError, match="same length"):
        R.plot_weight_histograms([small_net(0)], ["x", "y"])

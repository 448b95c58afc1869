"""Tests for cnnlib.optim.lr_finder: smoothing, the reading rule on known curves, the range test."""

import numpy as np
import pytest

from cnnlib import nn, optim
from cnnlib.optim import lr_finder, schedules


def plain_ema(losses, beta):
    avg, out = 0.0, []
    for t, v in enumerate(losses):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** (t + 1)))
    return np.array(out)


def test_smooth_matches_a_plain_loop_and_keeps_constants():
    losses = np.random.default_rng(0).random(50)
    np.testing.assert_allclose(lr_finder.smooth(losses, 0.9), plain_ema(losses, 0.9))
    np.testing.assert_allclose(lr_finder.smooth(np.full(20, 2.5), 0.98), 2.5)
    np.testing.assert_allclose(lr_finder.smooth(losses, 0.0), losses)
    assert lr_finder.smooth(losses, 0.9)[0] == losses[0]


def synthetic_curve(n=400):
    """A sigmoid drop centred at lr = 1e-2, then a rise back above the start after lr = 1."""
    lrs = np.logspace(-5, 1, n)
    u = np.log10(lrs)
    drop = 2.0 - 1.5 / (1 + np.exp(-3 * (u + 2)))      # from 2 to 0.5, steepest at u = -2
    rise = np.where(u > 0, 3.0 * u ** 2, 0.0)            # climbs after lr = 1
    return lrs, drop + rise


def test_suggest_reads_a_known_curve():
    lrs, loss = synthetic_curve()
    s = lr_finder.suggest(lrs, loss, skip_start=0)
    assert s["steepest"] == pytest.approx(1e-2, rel=0.05)
    assert 0.2 < s["minimum"] <= 1.0
    # back above the start value 2.0 where 0.5 + 3 u^2 > 2, u > 1/sqrt(2)
    assert s["divergence"] == pytest.approx(10 ** (1 / np.sqrt(2)), rel=0.05)
    assert s["max_lr"] == pytest.approx(s["minimum"] / 2)
    assert s["base_lr"] == pytest.approx(s["max_lr"] / 4)


def test_suggest_without_divergence_and_with_nan():
    lrs, loss = synthetic_curve()
    keep = lrs < 3
    assert lr_finder.suggest(lrs[keep], loss[keep])["divergence"] is None
    loss = loss.copy()
    loss[-5:] = np.nan
    s = lr_finder.suggest(lrs, loss)
    assert s["divergence"] is not None and s["divergence"] <= lrs[-5]


def make_problem(seed=0, n=256, d=8, classes=3):
    rng = np.random.default_rng(seed)
    centres = 0.7 * rng.standard_normal((classes, d))   # overlapping classes: the loss cannot reach 0
    y = rng.integers(0, classes, n)
    x = (centres[y] + rng.standard_normal((n, d))).astype(np.float32)
    model = nn.Sequential(nn.Linear(d, 16, rng=seed), nn.ReLU(), nn.Linear(16, classes, rng=seed))
    return model, x, y.astype(np.int64)


def test_range_test_sweeps_geometrically_and_restores_everything():
    model, x, y = make_problem()
    opt = optim.SGD(model.parameters(), lr=0.123, momentum=0.9)
    # give the optimiser some state first
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x[:32]), y[:32])
    model.backward(loss_fn.backward())
    opt.step()
    before = model.state_dict()
    buffers = [s["momentum_buffer"].copy() for s in opt.state]
    result = lr_finder.range_test(model, opt, x, y, 1e-4, 1e2, num_steps=120, batch_size=32,
                                  stop_early=False, rng=0)
    assert len(result.lrs) == len(result.losses) == 120 and not result.diverged
    np.testing.assert_allclose(result.lrs, schedules.sample(schedules.Exponential(1e-4, 1e2, 120), 120))
    np.testing.assert_allclose(result.smoothed, lr_finder.smooth(result.losses, 0.9))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    for s, b in zip(opt.state, buffers):
        np.testing.assert_array_equal(s["momentum_buffer"], b)
    assert opt.lr == 0.123
    s = result.suggestion
    assert s["steepest"] < s["minimum"]
    assert result.losses[:5].mean() > 2 * result.smoothed.min()   # the loss did fall


def test_range_test_stops_at_divergence_and_is_deterministic():
    model, x, y = make_problem()
    opt = optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    a = lr_finder.range_test(model, opt, x, y, 1e-4, 1e4, num_steps=200, batch_size=32, rng=1)
    b = lr_finder.range_test(model, opt, x, y, 1e-4, 1e4, num_steps=200, batch_size=32, rng=1)
    assert a.diverged and len(a.lrs) < 200
    np.testing.assert_array_equal(a.losses, b.losses)
    assert a.suggestion["divergence"] is not None


def test_range_test_linear_mode():
    model, x, y = make_problem()
    opt = optim.SGD(model.parameters(), lr=0.0)
    r = lr_finder.range_test(model, opt, x, y, 1e-3, 1.0, num_steps=20, mode="linear",
                             stop_early=False, rng=0)
    np.testing.assert_allclose(np.diff(r.lrs), (1.0 - 1e-3) / 19)


@pytest.mark.parametrize("kwargs, err", [
    (dict(min_lr=0.0), ValueError),
    (dict(min_lr=1.0, max_lr=0.1), ValueError),
    (dict(num_steps=1), ValueError),
    (dict(batch_size=0), ValueError),
    (dict(mode="log"), ValueError),
    (dict(beta=1.0), ValueError),
    (dict(num_steps=10.5), TypeError),
])
def test_range_test_bad_settings(kwargs, err):
    model, x, y = make_problem()
    opt = optim.SGD(model.parameters(), lr=0.0)
    with pytest.raises(err):
        lr_finder.range_test(model, opt, x, y, **kwargs)


def test_range_test_bad_arguments():
    model, x, y = make_problem()
    opt = optim.SGD(model.parameters(), lr=0.0)
    with pytest.raises(TypeError, match="model"):
        lr_finder.range_test(lambda v: v, opt, x, y)
    with pytest.raises(TypeError, match="optimizer"):
        lr_finder.range_test(model, None, x, y)
    with pytest.raises(ValueError, match="same length"):
        lr_finder.range_test(model, opt, x, y[:-1])
    with pytest.raises(TypeError):
        lr_finder.range_test(model, opt, list(x), y)


@pytest.mark.parametrize("call, err", [
    (lambda: lr_finder.smooth(np.ones((2, 2))), ValueError),
    (lambda: lr_finder.smooth([1.0], beta=-0.1), ValueError),
    (lambda: lr_finder.suggest([1, 2, 3], [1, 2]), ValueError),
    (lambda: lr_finder.suggest(np.logspace(-3, 0, 5), np.ones(5), skip_start=5), ValueError),
    (lambda: lr_finder.suggest(np.linspace(1, 0.1, 10), np.ones(10)), ValueError),
    (lambda: lr_finder.suggest(np.logspace(-3, 0, 10), np.full(10, np.nan)), ValueError),
])
def test_suggest_and_smooth_bad_input(call, err):
    with pytest.raises(err):
        call()

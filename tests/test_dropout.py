"""Tests for dropout: cnnlib.ops.dropout and cnnlib.nn.dropout (regularisation chapter)."""

import numpy as np
import pytest

from cnnlib.nn import Linear, ReLU, Sequential
from cnnlib.nn.dropout import Dropout, Dropout2d
from cnnlib.ops.dropout import dropout, dropout2d, dropout_backward


def rand(shape, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# ----------------------------------------------------------------------------
# Functional
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 0.9])
def test_kept_elements_scaled_dropped_zero(p, dtype):
    x = rand((4, 3, 5, 6), dtype) + 3  # no zeros in x
    y, mask = dropout(x, p, rng=1, return_mask=True)
    assert y.dtype == dtype and y.shape == x.shape and mask.dtype == np.bool_
    scale = dtype(1 / (1 - p))
    np.testing.assert_array_equal(y[mask], x[mask] * scale)
    assert np.all(y[~mask] == 0)
    np.testing.assert_array_equal(mask, y != 0)


def test_mask_is_rng_random_at_least_p():
    # The documented draw: one uniform per element, kept when >= p.
    x = np.ones((3, 7))
    _, mask = dropout(x, 0.3, rng=np.random.default_rng(5), return_mask=True)
    np.testing.assert_array_equal(mask, np.random.default_rng(5).random((3, 7)) >= 0.3)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_mean_preserved_and_drop_rate(p):
    n = 400_000
    x = np.full(n, 2.0)
    y, mask = dropout(x, p, rng=0, return_mask=True)
    # keep fraction ~ Binomial(n, 1-p)/n: standard error sqrt(p(1-p)/n) < 1e-3
    assert abs(mask.mean() - (1 - p)) < 5e-3
    # E[y] = x: the standard error of the mean of y is 2 sqrt(p/(1-p)/n)
    assert abs(y.mean() - 2.0) < 5 * 2 * np.sqrt(p / (1 - p) / n)


def test_eval_is_identity_and_draws_nothing():
    x = rand((2, 3))
    gen = np.random.default_rng(0)
    state = gen.bit_generator.state
    y = dropout(x, 0.5, training=False, rng=gen)
    assert y is x  # as torch: no copy
    assert gen.bit_generator.state == state
    y, mask = dropout(x, 0.5, training=False, return_mask=True)
    assert mask is None


def test_p_zero_and_p_one():
    x = rand((3, 4))
    np.testing.assert_array_equal(dropout(x, 0.0, rng=0), x)
    y, mask = dropout(x, 1.0, rng=0, return_mask=True)
    assert np.all(y == 0) and not mask.any()
    np.testing.assert_array_equal(dropout_backward(np.ones_like(x), mask, 1.0), np.zeros_like(x))


def test_determinism_with_seed():
    x = rand((5, 6))
    np.testing.assert_array_equal(dropout(x, 0.4, rng=3), dropout(x, 0.4, rng=3))
    assert not np.array_equal(dropout(x, 0.4, rng=3), dropout(x, 0.4, rng=4))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_is_mask_times_scale_times_grad(dtype):
    x, g = rand((3, 4, 5), dtype), rand((3, 4, 5), dtype, seed=1)
    _, mask = dropout(x, 0.25, rng=2, return_mask=True)
    gx = dropout_backward(g, mask, 0.25)
    assert gx.dtype == dtype
    np.testing.assert_array_equal(gx, g * mask * dtype(1 / 0.75))
    np.testing.assert_array_equal(dropout_backward(g, None, 0.25, training=False), g)


def test_backward_gradient_check():
    # With the mask held fixed, dropout is linear: check against central differences.
    x = rand((2, 3, 4))
    _, mask = dropout(x, 0.5, rng=0, return_mask=True)
    w = rand((2, 3, 4), seed=1)

    def f(z):
        return float(np.sum(w * z * mask / 0.5))
    num = np.zeros_like(x)
    h = 1e-6
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        num[i] = (f(x + e) - f(x - e)) / (2 * h)
    np.testing.assert_allclose(dropout_backward(w, mask, 0.5), num, rtol=1e-6, atol=1e-8)


def test_dropout2d_drops_whole_channels():
    x = rand((8, 16, 3, 4)) + 5
    y, mask = dropout2d(x, 0.5, rng=0, return_mask=True)
    assert mask.shape == (8, 16, 1, 1)
    np.testing.assert_array_equal(y, x * mask * 2.0)
    zero_maps = np.all(y == 0, axis=(2, 3))
    np.testing.assert_array_equal(zero_maps, ~mask[:, :, 0, 0])
    g = rand(x.shape, seed=1)
    np.testing.assert_array_equal(dropout_backward(g, mask, 0.5), g * mask * 2.0)


@pytest.mark.parametrize("bad_p", [-0.1, 1.5, float("nan")])
def test_bad_p(bad_p):
    with pytest.raises(ValueError, match="between 0 and 1"):
        dropout(rand((2, 2)), bad_p)
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(bad_p)


def test_bad_input():
    with pytest.raises(TypeError, match="p must be a number"):
        dropout(rand((2, 2)), "0.5")
    with pytest.raises(TypeError, match="p must be a number"):
        Dropout(True)
    with pytest.raises(TypeError, match="input must be a numpy.ndarray"):
        dropout([1.0, 2.0])
    with pytest.raises(TypeError, match="dtype float32 or float64"):
        dropout(np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match="training must be a bool"):
        dropout(rand((2, 2)), 0.5, training=1)
    with pytest.raises(ValueError, match="input must be 4-d"):
        dropout2d(rand((2, 3, 4)))
    with pytest.raises(TypeError, match="rng must be"):
        dropout(rand((2, 2)), 0.5, rng="seed")
    g = rand((2, 3))
    with pytest.raises(TypeError, match="keep-mask"):
        dropout_backward(g, None, 0.5)
    with pytest.raises(TypeError, match="boolean"):
        dropout_backward(g, np.ones((2, 3)), 0.5)
    with pytest.raises(ValueError, match="does not broadcast"):
        dropout_backward(g, np.ones((3, 2), bool), 0.5)


# ----------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------

def test_layer_train_and_eval():
    layer = Dropout(0.5, rng=0)
    x = rand((4, 10)) + 3
    y = layer(x)
    mask = y != 0
    np.testing.assert_array_equal(y[mask], x[mask] * 2)
    g = rand((4, 10), seed=1)
    np.testing.assert_array_equal(layer.backward(g), g * mask * 2)
    layer.eval()
    assert layer(x) is x
    np.testing.assert_array_equal(layer.backward(g), g)
    assert repr(layer) == "Dropout(p=0.5)"
    assert layer.num_parameters() == 0


def test_layer_draws_from_its_own_generator():
    # The convention the gradient-checkpointing wrapper relies on: rewinding
    # self.rng replays the same mask.
    layer = Dropout(0.3, rng=7)
    assert isinstance(layer.rng, np.random.Generator)
    x = rand((6, 6))
    state = layer.rng.bit_generator.state
    y1 = layer(x)
    layer.rng.bit_generator.state = state
    np.testing.assert_array_equal(layer(x), y1)
    np.testing.assert_array_equal(Dropout(0.3, rng=7)(x), y1)


def test_dropout2d_layer():
    layer = Dropout2d(0.5, rng=0)
    x = rand((3, 4, 2, 2)) + 5
    y = layer(x)
    kept = np.all(y != 0, axis=(2, 3))
    np.testing.assert_array_equal(kept | np.all(y == 0, axis=(2, 3)), True)
    g = rand(x.shape, seed=1)
    np.testing.assert_array_equal(layer.backward(g), g * kept[:, :, None, None] * 2)
    assert repr(layer) == "Dropout2d(p=0.5)"


def test_backward_through_a_network_matches_finite_differences():
    rng = np.random.default_rng(0)
    net = Sequential(Linear(5, 7, dtype=np.float64, rng=rng), ReLU(), Dropout(0.4, rng=1),
                     Linear(7, 3, dtype=np.float64, rng=rng))
    x = rng.standard_normal((4, 5))
    w = rng.standard_normal((4, 3))
    state = net[2].rng.bit_generator.state

    def f(z):
        net[2].rng.bit_generator.state = state  # the same mask every time
        return float(np.sum(w * net(z)))
    f(x)
    gx = net.backward(w)
    num = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = 1e-6
        num[i] = (f(x + e) - f(x - e)) / 2e-6
    np.testing.assert_allclose(gx, num, rtol=1e-5, atol=1e-8)


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        Dropout().backward(np.ones(3))


# ----------------------------------------------------------------------------
# Against PyTorch
# ----------------------------------------------------------------------------

def test_semantics_match_torch():
    torch = pytest.importorskip("torch", reason="PyTorch not installed: reference comparison skipped")
    x = np.linspace(1, 2, 200_000).reshape(400, 500)
    tx = torch.from_numpy(x)
    for p in (0.0, 0.3, 1.0):
        ty = torch.nn.functional.dropout(tx, p, training=True).numpy()
        y = dropout(x, p, rng=0)
        # Same set of values (0 and x / (1 - p)) and statistically the same drop rate.
        assert abs((ty == 0).mean() - (y == 0).mean()) < 0.01
        if p < 1:
            np.testing.assert_allclose(y[y != 0], x[y != 0] / (1 - p))
            np.testing.assert_allclose(ty[ty != 0], x[ty != 0] / (1 - p))
        else:
            assert np.all(ty == 0) and np.all(y == 0)
    assert torch.nn.functional.dropout(tx, 0.5, training=False) is tx
    with pytest.raises(ValueError, match="between 0 and 1") as ours:
        dropout(x, 1.5)
    with pytest.raises(ValueError, match="between 0 and 1"):
        torch.nn.functional.dropout(tx, 1.5)
    assert "1.5" in str(ours.value)

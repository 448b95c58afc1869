"""Tests for cnnlib.training.checkpoint: gradient checkpointing (memory chapter, Part III)."""

import copy

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.training.checkpoint import (
    Checkpointed,
    checkpoint_sweep,
    held_activation_bytes,
    measure_memory_and_time,
    optimal_segments,
    predicted_peak_bytes,
    segment_bounds,
)


def deep_convnet(depth=6, channels=3, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    layers = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, rng=rng, dtype=dtype), nn.ReLU()]
    return nn.Sequential(*layers)


def mixed_net(seed=0, dtype=np.float64):
    """Conv, batch norm, stochastic pooling, a nested Sequential, flatten and linear."""
    rng = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, rng=rng, dtype=dtype),
        nn.BatchNorm2d(4, dtype=dtype),
        nn.ReLU(),
        nn.StochasticPool2d(2, rng=np.random.default_rng(seed + 1)),
        nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, rng=rng, dtype=dtype), nn.ReLU()),
        nn.StochasticPool2d(2, rng=np.random.default_rng(seed + 2)),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 5, rng=rng, dtype=dtype),
    )


def generator_states(model):
    """bit_generator states of every Generator attribute of every module (generic)."""
    return [value.bit_generator.state for _, m in model.named_modules()
            for value in vars(m).values() if isinstance(value, np.random.Generator)]


def run(net, x, g, model):
    model.zero_grad()
    y = net(x)
    dx = net.backward(g)
    return y, dx, [p.grad.copy() for p in model.parameters()]


# ----------------------------------------------------------------------------
# Same results as the plain model
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("segments", [1, 2, 3, 5, 12])
def test_gradients_equal_the_plain_model(segments):
    plain = deep_convnet()
    ckpt_model = copy.deepcopy(plain)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    g = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    y0, dx0, grads0 = run(plain, x, g, plain)
    net = Checkpointed(ckpt_model, segments)
    y1, dx1, grads1 = run(net, x, g, ckpt_model)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-6, atol=1e-7)
    for a, b in zip(grads1, grads0):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert net.recomputed_layers == len(plain)


@pytest.mark.parametrize("segments", [1, 2, 4, 8])
def test_random_layers_replay_exactly(segments):
    """Stochastic pooling (and any layer with a Generator attribute) recomputes the same draws,
    and the generators end where the plain model leaves them."""
    plain = mixed_net()
    model = copy.deepcopy(plain)          # same weights, generators in the same states
    assert generator_states(model) == generator_states(plain)
    assert len(generator_states(model)) == 2
    net = Checkpointed(model, segments)
    rng = np.random.default_rng(2)
    for _ in range(3):                     # successive steps draw different numbers
        x = rng.standard_normal((3, 2, 8, 8))
        g = rng.standard_normal((3, 5))
        y0, dx0, grads0 = run(plain, x, g, plain)
        y1, dx1, grads1 = run(net, x, g, model)
        np.testing.assert_array_equal(y1, y0)
        np.testing.assert_allclose(dx1, dx0, rtol=1e-12, atol=1e-14)
        for a, b in zip(grads1, grads0):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
        assert generator_states(model) == generator_states(plain)
    # batch norm's running statistics moved once per step, as in the plain model
    for (name, a), (_, b) in zip(model.named_buffers(), plain.named_buffers()):
        np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=name)


def test_without_replay_the_gradients_would_differ():
    """The replay matters: re-drawing stochastic pooling in backward changes the gradients."""
    model = mixed_net()
    x = np.random.default_rng(3).standard_normal((3, 2, 8, 8))
    y = model(x)
    model.zero_grad()
    g0 = model.backward(np.ones_like(y))
    model(x)                               # a fresh draw, as a naive recomputation would do
    model.zero_grad()
    g1 = model.backward(np.ones_like(y))
    assert not np.allclose(g0, g1)


def test_shared_default_generator_is_rewound_and_restored():
    """Layers drawing from one shared generator: replay still exact, stream unchanged."""
    shared = np.random.default_rng(7)
    def make():
        gen = copy.deepcopy(shared)
        return nn.Sequential(nn.ReLU(), nn.StochasticPool2d(2, rng=gen), nn.ReLU(),
                             nn.StochasticPool2d(2, rng=gen)), gen
    plain, gp = make()
    model, gm = make()
    x = np.random.default_rng(0).random((2, 1, 8, 8))
    g = np.ones((2, 1, 2, 2))
    y0, dx0, _ = run(plain, x, g, plain)
    net = Checkpointed(model, 2)
    y1, dx1, _ = run(net, x, g, model)
    np.testing.assert_array_equal(y1, y0)
    np.testing.assert_array_equal(dx1, dx0)
    assert gm.random() == gp.random()


# ----------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------

def test_held_activation_bytes_counts_buffers_once():
    model = deep_convnet(depth=2, channels=2)
    x = np.zeros((1, 2, 4, 4), dtype=np.float32)
    assert held_activation_bytes(model) == 0
    model(x)
    a = x.nbytes
    assert held_activation_bytes(model) == 4 * a   # conv, relu, conv, relu inputs
    # a view counts as its whole buffer, once
    flat = nn.Sequential(nn.Flatten(), nn.Linear(32, 3))
    flat(x)
    assert held_activation_bytes(flat) == a
    assert held_activation_bytes(model, flat) == 4 * a   # x itself is shared
    with pytest.raises(TypeError, match="modules"):
        held_activation_bytes(x)


@pytest.mark.parametrize("segments", [1, 2, 3, 4, 6, 12])
def test_peak_matches_the_prediction(segments):
    model = deep_convnet(depth=6)
    x = np.ones((1, 3, 5, 5), dtype=np.float32)
    a = x.nbytes
    r = measure_memory_and_time(model, x, segments, repeats=1)
    assert r["peak_bytes"] == predicted_peak_bytes([a] * 12, segments)
    plain = measure_memory_and_time(model, x, None, repeats=1)
    assert plain["peak_bytes"] == 12 * a
    # equal segments: (k - 1) boundaries + n / k layers
    if 12 % segments == 0:
        assert r["peak_bytes"] == (segments - 1 + 12 // segments) * a


def test_checkpointed_releases_memory_after_forward_and_backward():
    model = deep_convnet(depth=8)
    x = np.ones((1, 3, 4, 4), dtype=np.float32)
    net = Checkpointed(model, 4)
    y = net(x)
    assert held_activation_bytes(net) == 4 * x.nbytes     # the four boundaries only
    net.backward(np.ones_like(y))
    assert held_activation_bytes(net) == 0
    with pytest.raises(RuntimeError, match="forward"):
        net.backward(np.ones_like(y))


def test_sqrt_rule_minimises_the_measured_peak():
    n = 16
    model = deep_convnet(depth=n // 2)
    x = np.ones((1, 3, 4, 4), dtype=np.float32)
    ks = list(range(1, n + 1))
    r = checkpoint_sweep(model, x, ks, repeats=1)
    assert r["plain_peak_bytes"] == n * x.nbytes
    np.testing.assert_array_equal(r["layer_bytes"], [x.nbytes] * n)
    best = r["peak_bytes"].min()
    assert r["peak_bytes"][ks.index(optimal_segments(n))] == best
    assert best == (2 * 4 - 1) * x.nbytes                 # 2 sqrt(n) - 1 arrays
    assert r["peak_bytes"][0] == r["peak_bytes"][-1] == n * x.nbytes
    np.testing.assert_array_equal(r["recomputed_layers"], [n] * n)


def test_segment_helpers():
    assert segment_bounds(10, 3) == [0, 4, 7, 10]
    assert segment_bounds(4, 4) == [0, 1, 2, 3, 4]
    assert optimal_segments(64) == 8 and optimal_segments(1) == 1
    assert predicted_peak_bytes([1] * 64, 8) == 15
    assert predicted_peak_bytes([5, 1, 1, 1], 2) == 5 + 1 + 1
    for bad in (0, 11, 2.0):
        with pytest.raises(ValueError, match="segments"):
            segment_bounds(10, bad)
    with pytest.raises(ValueError, match="n_layers"):
        segment_bounds(0, 1)
    with pytest.raises(ValueError, match="n_layers"):
        optimal_segments(-1)
    with pytest.raises(ValueError, match="layer_bytes"):
        predicted_peak_bytes([], 1)


def test_bad_input():
    with pytest.raises(TypeError, match="Sequential"):
        Checkpointed(nn.ReLU(), 1)
    with pytest.raises(ValueError, match="at least one"):
        Checkpointed(nn.Sequential(), 1)
    with pytest.raises(ValueError, match="segments"):
        Checkpointed(deep_convnet(depth=1), 3)
    x = np.ones((1, 3, 4, 4), dtype=np.float32)
    with pytest.raises(TypeError, match="model"):
        measure_memory_and_time(nn.ReLU(), x)
    with pytest.raises(ValueError, match="segments"):
        measure_memory_and_time(deep_convnet(depth=1), x, segments=0)
    with pytest.raises(ValueError, match="repeats"):
        measure_memory_and_time(deep_convnet(depth=1), x, repeats=0)
    with pytest.raises(ValueError, match="segments"):
        checkpoint_sweep(deep_convnet(depth=1), x, [])


def test_parameters_are_shared_and_repr():
    model = deep_convnet(depth=2)
    net = Checkpointed(model, 2)
    assert [id(p) for p in net.parameters()] == [id(p) for p in model.parameters()]
    assert "segments=2" in repr(net)

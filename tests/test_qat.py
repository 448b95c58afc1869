"""Low-bit weights: fake-quantised layers and their straight-through gradients, post-training
quantisation, the distillation loss and its gradient, model size."""

import math

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.models import zoo
from cnnlib.quant import qat as Q


def num_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def rel_err(a, b):
    return np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))


@pytest.mark.parametrize("bits, expected", [(2, (-1, 1)), (3, (-3, 3)), (4, (-7, 7)), (8, (-127, 127))])
def test_weight_range(bits, expected):
    assert Q.weight_range(bits) == expected


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_fake_quantize_weight_lies_on_the_grid(bits, per_channel):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 3, 5, 5)) * rng.uniform(0.1, 1, (6, 1, 1, 1))
    wq = Q.fake_quantize_weight(w, bits, per_channel)
    qmax = 2 ** (bits - 1) - 1
    flat, fq = w.reshape(6, -1), wq.reshape(6, -1)
    amax = np.abs(flat).max(axis=1, keepdims=True) if per_channel else np.abs(w).max()
    s = np.float32(amax) / np.float32(qmax)
    k = fq / s.astype(np.float64)
    np.testing.assert_allclose(k, np.rint(k), atol=1e-4)
    assert np.abs(k).max() <= qmax + 1e-4
    assert np.all(np.abs(fq - flat) <= s / 2 * (1 + 1e-5))
    assert len(np.unique(np.rint(k))) <= 2 * qmax + 1


def test_per_channel_error_is_smaller_for_channels_of_different_size():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((8, 100)) * np.logspace(-2, 0, 8)[:, None]
    err = {pc: np.abs(Q.fake_quantize_weight(w, 4, pc) - w).mean() for pc in (True, False)}
    assert err[True] < err[False] / 2


@pytest.mark.parametrize("layer", [nn.Conv2d(3, 4, 3, padding=1, dtype=np.float64, rng=0),
                                   nn.Conv2d(2, 4, 3, stride=2, groups=2, dtype=np.float64, rng=1),
                                   nn.Linear(7, 5, dtype=np.float64, rng=2)])
def test_fake_quant_layer_gradients_are_the_straight_through_estimator(layer):
    """By hand: dL/dx is the gradient of the layer with the quantised weight (central
    differences), dL/dW is the gradient w.r.t. the quantised weight itself (the STE), db exact."""
    rng = np.random.default_rng(3)
    fq = Q.FakeQuantWeight(layer, bits=3, per_channel=True)
    x = rng.standard_normal((2, layer.in_channels, 6, 6) if isinstance(layer, nn.Conv2d) else (2, 7))
    y = fq(x)
    gy = rng.standard_normal(y.shape)
    dx = fq.backward(gy)
    wq = fq.quantized_weight()
    ref = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                    padding=layer.padding, groups=layer.groups, dtype=np.float64) \
        if isinstance(layer, nn.Conv2d) else nn.Linear(7, 5, dtype=np.float64)
    ref.weight.data[...] = wq
    ref.bias.data[...] = layer.bias.data
    np.testing.assert_array_equal(y, ref(x))
    assert rel_err(dx, num_grad(lambda: np.sum(ref.forward(x) * gy), x)) < 1e-7
    dwq = num_grad(lambda: np.sum(ref.forward(x) * gy), ref.weight.data)
    assert rel_err(layer.weight.grad, dwq) < 1e-7
    assert rel_err(layer.bias.grad, num_grad(lambda: np.sum(ref.forward(x) * gy), ref.bias.data)) < 1e-7


def test_quantize_weights_wraps_every_layer_and_leaves_the_original():
    model = zoo.lenet5(pretrained=True)
    w0 = model[0].weight.data.copy()
    q = Q.quantize_weights(model, 4, per_channel=False)
    assert isinstance(q, zoo.LeNet5)
    assert sum(isinstance(m, Q.FakeQuantWeight) for m in q) == 5
    np.testing.assert_array_equal(model[0].weight.data, w0)
    x = np.zeros((2, 28, 28), np.uint8)
    assert q.predict(x).shape == (2,)
    assert len(list(q.parameters())) == 10


@pytest.mark.parametrize("T, alpha", [(1.0, 0.5), (4.0, 0.9), (2.5, 1.0), (3.0, 0.0)])
def test_distillation_loss_gradient_by_central_differences(T, alpha):
    rng = np.random.default_rng(4)
    s = rng.standard_normal((5, 10)) * 3
    t = rng.standard_normal((5, 10)) * 3
    y = rng.integers(0, 10, 5)
    g = Q.distillation_loss_backward(s, t, y, T, alpha)
    ng = num_grad(lambda: Q.distillation_loss(s, t, y, T, alpha), s, eps=1e-5)
    assert np.linalg.norm(g - ng) / (np.linalg.norm(g) + np.linalg.norm(ng)) < 1e-8


def test_distillation_loss_by_hand():
    s = np.array([[1.0, 2.0, 0.5]])
    t = np.array([[0.0, 3.0, 1.0]])
    T = 2.0

    def sm(z):
        e = np.exp(z - z.max())
        return e / e.sum()
    ps, pt = sm(s[0] / T), sm(t[0] / T)
    kl = np.sum(pt * np.log(pt / ps))
    ce = -np.log(sm(s[0])[1])
    assert math.isclose(Q.distillation_loss(s, t, [1], T, 0.7), 0.7 * T * T * kl + 0.3 * ce, rel_tol=1e-12)
    assert Q.distillation_loss(t, t, [1], T, 1.0) == pytest.approx(0.0, abs=1e-15)


def test_train_steps_lowers_the_loss():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 10)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = nn.Sequential(nn.Linear(10, 2, rng=0))
    q = Q.quantize_weights(model, 4)
    losses = Q.train_steps(q, x, y, 60, batch_size=16, lr=0.1, rng=0)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    t = rng.standard_normal((64, 2)).astype(np.float32)
    assert len(Q.train_steps(q, x, y, 3, teacher_logits=t, rng=0)) == 3


def test_model_size_formula():
    model = zoo.lenet5()
    n_w, n_b = 61706 - 236, 236
    assert Q.model_size_bytes(model) == 4 * 61706
    assert Q.model_size_bytes(model, 8) == n_w + 4 * n_b + 4 * 236
    assert Q.model_size_bytes(model, 4, per_channel=False) == math.ceil(n_w / 2) + 4 * n_b + 4 * 5
    assert Q.model_size_bytes(Q.quantize_weights(model, 2), 2) == math.ceil(n_w / 4) + 4 * n_b + 4 * 236
    ratio = Q.model_size_bytes(model) / Q.model_size_bytes(model, 2)
    assert 12 < ratio < 16


@pytest.mark.parametrize("call, error", [
    (lambda: Q.weight_range(1), ValueError),
    (lambda: Q.weight_range(2.0), TypeError),
    (lambda: Q.fake_quantize_weight(np.ones(3, np.int32), 4), TypeError),
    (lambda: Q.FakeQuantWeight(nn.ReLU(), 4), TypeError),
    (lambda: Q.quantize_weights(nn.ReLU(), 4), TypeError),
    (lambda: Q.distillation_loss(np.ones((2, 3)), np.ones((2, 4)), [0, 1]), ValueError),
    (lambda: Q.distillation_loss(np.ones((2, 3)), np.ones((2, 3)), [0, 3]), ValueError),
    (lambda: Q.distillation_loss(np.ones((2, 3)), np.ones((2, 3)), [0, 1], temperature=0), ValueError),
    (lambda: Q.distillation_loss(np.ones((2, 3)), np.ones((2, 3)), [0, 1], alpha=1.5), ValueError),
    (lambda: Q.model_size_bytes(zoo.lenet5(), 33), ValueError),
    (lambda: Q.model_size_bytes("model"), TypeError),
    (lambda: Q.train_steps(nn.Linear(2, 2), np.ones((4, 2), np.float32), np.zeros(4, int), 0), ValueError),
])
def test_bad_input(call, error):
    with pytest.raises(error):
        call()

"""Tests for cnnlib.experiments.fc_vs_cnn (the chapter "CNN vs fully connected")."""

import math

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.analysis.invariance import equivariance_error
from cnnlib.analysis.summary import count_parameters
from cnnlib.experiments import fc_vs_cnn as fc
from cnnlib.models import zoo

# --- builders and counts ----------------------------------------------------

@pytest.mark.parametrize("sizes", [[784, 78, 10], [784, 300, 100, 10], [5, 3], [4, 7, 7, 7, 2]])
def test_mlp_params_matches_built_model(sizes):
    model = fc.mlp(sizes, rng=0)
    assert count_parameters(model) == fc.mlp_params(sizes)
    x = np.zeros((3, sizes[0]), np.float32)
    assert model(x).shape == (3, sizes[-1])


def test_mlp_takes_images_and_is_seeded():
    a, b = fc.mlp([16, 5, 3], rng=1), fc.mlp([16, 5, 3], rng=1)
    x = np.random.default_rng(0).standard_normal((2, 1, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(a(x), b(x))
    assert isinstance(fc.mlp([4, 2], activation="tanh")[1], nn.Linear)
    assert isinstance(fc.mlp([4, 3, 2], activation="sigmoid")[2], nn.Sigmoid)


def test_mlp_matches_plain_numpy():
    model = fc.mlp([6, 4, 3], rng=0, dtype=np.float64)
    x = np.random.default_rng(1).standard_normal((5, 6))
    l1, l2 = model[1], model[3]
    h = np.maximum(x @ l1.weight.data.T + l1.bias.data, 0)
    np.testing.assert_allclose(model(x), h @ l2.weight.data.T + l2.bias.data, rtol=1e-12)


def test_mlp_gradient_check():
    model = fc.mlp([5, 4, 3], activation="tanh", rng=0, dtype=np.float64)
    x = np.random.default_rng(2).standard_normal((2, 5))
    g = np.random.default_rng(3).standard_normal((2, 3))
    model(x)
    dx = model.backward(g)
    num = np.zeros_like(x)
    eps = 1e-6
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num[idx] = np.sum((model(xp) - model(xm)) * g) / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("target,n_in,n_out,k", [(61_706, 784, 10, 1), (80_000_000, 784, 10, 2),
                                                  (1000, 10, 10, 3), (1, 784, 10, 1)])
def test_mlp_width_for_params_is_closest(target, n_in, n_out, k):
    h = fc.mlp_width_for_params(target, n_in, n_out, k)

    def count(w):
        return fc.mlp_params([n_in] + [w] * k + [n_out])

    assert h >= 1
    for other in (h - 1, h + 1):
        if other >= 1:
            assert abs(count(h) - target) <= abs(count(other) - target)


def test_lenet5_like_is_lenet5_at_28():
    model = fc.lenet5_like(28, rng=0)
    assert count_parameters(model) == count_parameters(zoo.lenet5()) == 61_706
    assert fc.lenet5_like(40, rng=0)(np.zeros((2, 1, 40, 40), np.float32)).shape == (2, 10)
    outline = fc.lenet5_like(28, rng=0, conv1_padding=0)
    assert count_parameters(outline) == 44_426
    assert outline(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)
    assert fc.lenet5_like(16, conv1_padding=0)(np.zeros((1, 1, 16, 16), np.float32)).shape == (1, 10)


def test_dense_equivalent_lenet5_by_hand():
    d = fc.dense_equivalent_params(zoo.lenet5(), (1, 28, 28))
    assert d.params == 61_706
    # conv1 784 -> 4704, pool 4704 -> 1176, conv2 1176 -> 1600, pool 1600 -> 400
    by_hand = sum(n * m + m for n, m in [(784, 4704), (4704, 1176), (1176, 1600), (1600, 400)])
    assert d.dense_params == by_hand + 48_120 + 10_164 + 850
    assert d.macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert d.dense_macs == sum(n * m for n, m in [(784, 4704), (4704, 1176), (1176, 1600),
                                                  (1600, 400), (400, 120), (120, 84), (84, 10)])
    convs = fc.dense_equivalent_params(zoo.lenet5(), (1, 28, 28), include_pooling=False)
    assert [r.type for r in convs.rows] == ["Conv2d", "Conv2d", "Linear", "Linear", "Linear"]
    assert convs.dense_params == 784 * 4704 + 4704 + 1176 * 1600 + 1600 + 59_134


def test_dense_equivalent_of_an_mlp_is_itself():
    model = fc.mlp([784, 78, 10], rng=0)
    d = fc.dense_equivalent_params(model, (1, 28, 28))
    assert d.params == d.dense_params == 62_020
    assert d.macs == d.dense_macs == 784 * 78 + 78 * 10


def test_forward_flops():
    assert fc.forward_flops(zoo.lenet5(), (1, 28, 28)) == 2 * 416_520
    assert fc.forward_flops(fc.mlp([784, 78, 10]), (784,)) == 2 * (784 * 78 + 780)


# --- a convolution as a dense layer ----------------------------------------

@pytest.mark.parametrize("kw", [dict(), dict(padding=1), dict(stride=2, padding=2),
                                dict(padding="same", dilation=2), dict(groups=2, bias=False)])
def test_conv_as_dense_reproduces_conv(kw):
    conv = nn.Conv2d(2, 4, 3, dtype=np.float64, rng=0, **kw)
    shape = (2, 7, 6)
    w, b = fc.conv_as_dense(conv, shape)
    x = np.random.default_rng(1).standard_normal((3, *shape))
    y = conv(x)
    assert w.shape == (y[0].size, math.prod(shape))
    np.testing.assert_allclose(x.reshape(3, -1) @ w.T + b, y.reshape(3, -1), rtol=1e-12,
                               atol=1e-12)


def test_conv_as_dense_against_loops():
    """Plain reference: entry (o, i) is the kernel weight linking input i to output o."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False, dtype=np.float64, rng=0)
    h = w = 4
    k = conv.weight.data[0, 0]
    ref = np.zeros((h * w, h * w))
    for r in range(h):
        for c in range(w):
            for a in range(3):
                for b in range(3):
                    rr, cc = r + a - 1, c + b - 1
                    if 0 <= rr < h and 0 <= cc < w:
                        ref[r * w + c, rr * w + cc] = k[a, b]
    np.testing.assert_array_equal(fc.conv_as_dense(conv, (1, h, w))[0], ref)


def test_same_function_dense_matches_lenet5():
    model = zoo.lenet5(rng=0)
    dense = fc.same_function_dense(model, (1, 28, 28))
    assert not any(isinstance(m, nn.Conv2d) for m in dense)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(dense(x), model(x), rtol=1e-4, atol=1e-5)
    assert count_parameters(dense) == fc.dense_equivalent_params(
        model, (1, 28, 28), include_pooling=False).dense_params
    g = np.ones((4, 10), np.float32)
    model(x)
    ref = model.backward(g)
    dense(x)
    np.testing.assert_allclose(dense.backward(g), ref, rtol=1e-4, atol=1e-5)


def test_equivariance_conv_yes_dense_no():
    rng = np.random.default_rng(0)
    image = np.zeros((1, 1, 16, 16))
    image[0, 0, 5:10, 4:9] = rng.random((5, 5))
    conv = nn.Conv2d(1, 1, 3, padding="same", dtype=np.float64, rng=0)
    dense = nn.Linear(256, 256, dtype=np.float64, rng=0)
    w, b = fc.conv_as_dense(conv, (1, 16, 16))
    as_matrix = nn.Linear(256, 256, dtype=np.float64, rng=0)
    as_matrix.weight.data[...], as_matrix.bias.data[...] = w, b

    def through(layer):
        return lambda z: layer(z.reshape(1, -1)).reshape(z.shape)

    assert equivariance_error(conv, image, (2, 1), border=1) < 1e-12
    assert equivariance_error(through(as_matrix), image, (2, 1), border=1) < 1e-12
    assert equivariance_error(through(dense), image, (2, 1), border=1) > 0.3


# --- data and training -------------------------------------------------------

def test_translated_mnist():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 256, size=(20, 5, 4), dtype=np.uint8)
    square = rng.integers(1, 256, size=(20, 5, 5), dtype=np.uint8)
    labels = np.arange(20) % 10
    out, lab, off = fc.translated_mnist(images, labels, 9, rng=0)
    assert out.shape == (20, 9, 9) and out.dtype == np.uint8
    np.testing.assert_array_equal(lab, labels)
    for i, (r, c) in enumerate(off):
        assert 0 <= r <= 4 and 0 <= c <= 5
        np.testing.assert_array_equal(out[i, r:r + 5, c:c + 4], images[i])
        assert out[i].astype(int).sum() == images[i].astype(int).sum()
    again = fc.translated_mnist(images, labels, 9, rng=0)
    np.testing.assert_array_equal(again[0], out)
    same, _, off0 = fc.translated_mnist(square, labels, 5, rng=0)  # no room
    assert (off0 == 0).all() and same.tolist() == square.tolist()


def test_to_input():
    x = fc.to_input(np.full((2, 3, 3), 255, np.uint8))
    assert x.shape == (2, 1, 3, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x, (1 - zoo.MNIST_MEAN) / zoo.MNIST_STD, rtol=1e-6)


def _toy_data(n, rng):
    """Bright square at the top (class 0) or bottom (class 1) of an 8x8 image."""
    y = rng.integers(0, 2, n)
    x = np.zeros((n, 8, 8), np.uint8)
    for i in range(n):
        r = 0 if y[i] == 0 else 5
        x[i, r:r + 3, 2:6] = 200
    return x, y


def test_fit_classifier_learns_and_is_seeded():
    x, y = _toy_data(200, np.random.default_rng(0))
    runs = []
    for _ in range(2):
        model = fc.mlp([64, 8, 2], rng=0)
        hist = fc.fit_classifier(model, x, y, x, y, epochs=2, batch_size=16, lr=0.05, seed=3)
        runs.append((hist, model(fc.to_input(x[:5]))))
    assert runs[0][0]["test_accuracy"][-1] == 1.0
    assert runs[0][0]["train_loss"] == runs[1][0]["train_loss"]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert len(runs[0][0]["epoch_seconds"]) == 2
    assert fc.evaluate(model, x, y) == 1.0
    assert fc.evaluate(model, fc.to_input(x), y) == 1.0


def test_forward_times_shape():
    models = {"mlp": fc.mlp([16, 4, 2], rng=0), "cnn": nn.Sequential(nn.Conv2d(1, 1, 3),
                                                                       nn.Flatten())}
    out = fc.forward_times(models, (1, 4, 4), batch_sizes=[1, 3], repeats=1)
    assert set(out) == {"mlp", "cnn"}
    assert all(set(v) == {1, 3} and all(t > 0 for t in v.values()) for v in out.values())


# --- bad input ----------------------------------------------------------------

def test_bad_input():
    with pytest.raises(ValueError, match="sizes"):
        fc.mlp([784])
    with pytest.raises(TypeError, match="sizes"):
        fc.mlp(784)
    with pytest.raises(ValueError, match=r"sizes\[1\]"):
        fc.mlp([784, 0, 10])
    with pytest.raises(ValueError, match="activation"):
        fc.mlp([4, 2, 2], activation="gelu")
    with pytest.raises(ValueError, match="target"):
        fc.mlp_width_for_params(0, 784, 10)
    with pytest.raises(ValueError, match="image_size"):
        fc.lenet5_like(8)
    with pytest.raises(ValueError, match="conv1_padding"):
        fc.lenet5_like(28, conv1_padding=3)
    with pytest.raises(TypeError, match="model"):
        fc.dense_equivalent_params(nn.Linear(3, 2), (3,))
    with pytest.raises(ValueError, match="input_shape"):
        fc.dense_equivalent_params(zoo.lenet5(), (1, 0, 28))
    with pytest.raises(TypeError, match="include_pooling"):
        fc.dense_equivalent_params(zoo.lenet5(), (1, 28, 28), include_pooling="yes")
    with pytest.raises(TypeError, match="conv"):
        fc.conv_as_dense(nn.Linear(3, 2), (3,))
    with pytest.raises(ValueError, match="input_shape"):
        fc.conv_as_dense(nn.Conv2d(2, 1, 3), (1, 5, 5))
    with pytest.raises(TypeError, match="images"):
        fc.translated_mnist(np.zeros((2, 4, 4)), [0, 1], 6)
    with pytest.raises(ValueError, match="canvas"):
        fc.translated_mnist(np.zeros((2, 4, 4), np.uint8), [0, 1], 3)
    with pytest.raises(ValueError, match="labels"):
        fc.translated_mnist(np.zeros((2, 4, 4), np.uint8), [0], 6)
    with pytest.raises(TypeError, match="images"):
        fc.to_input(np.zeros((2, 4, 4)))
    x, y = _toy_data(10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="y_train"):
        fc.fit_classifier(fc.mlp([64, 2]), x, y[:5], x, y)
    with pytest.raises(ValueError, match="lr"):
        fc.fit_classifier(fc.mlp([64, 2]), x, y, x, y, lr=0)
    with pytest.raises(ValueError, match="epochs"):
        fc.fit_classifier(fc.mlp([64, 2]), x, y, x, y, epochs=0)
    with pytest.raises(TypeError, match="model"):
        fc.evaluate("mlp", x, y)
    with pytest.raises(TypeError, match="models"):
        fc.forward_times({}, (4,))

"""Cluttered MNIST (cnnlib.data.cluttered), the adaptive pooling layers, the summary's
own_macs hook and the attention chapter's driver (cnnlib.experiments.attention)."""

import numpy as np
import pytest
from naive import numerical_gradient, rel_error

from cnnlib import nn
from cnnlib.analysis.summary import summary
from cnnlib.data.cluttered import cluttered_mnist
from cnnlib.experiments import attention as A


def digits(n=6, seed=0):
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 4:24, 10:18] = rng.integers(1, 256, (n, 20, 8))
    return images, np.arange(n) % 10


def test_cluttered_mnist_places_the_digit_and_the_clutter():
    images, labels = digits()
    canvases, out_labels, corners = cluttered_mnist(images, labels, size=40, n_clutter=0, rng=0)
    assert canvases.shape == (6, 40, 40) and canvases.dtype == np.uint8
    np.testing.assert_array_equal(out_labels, labels)
    for canvas, image, (r, c) in zip(canvases, images, corners):
        assert 0 <= r <= 12 and 0 <= c <= 12
        np.testing.assert_array_equal(canvas[r:r + 28, c:c + 28], image)
        assert canvas.sum() == image.sum()  # nothing outside the frame
    cluttered, _, corners2 = cluttered_mnist(images, labels, size=40, n_clutter=3, rng=0)
    np.testing.assert_array_equal(corners2, corners)  # positions drawn first, same seed
    assert np.all(cluttered >= canvases)  # clutter only adds ink (pixel-wise maximum)
    assert (cluttered > canvases).any()
    for canvas, image, (r, c) in zip(cluttered, images, corners):
        assert np.all(canvas[r:r + 28, c:c + 28] >= image)


def test_cluttered_mnist_is_seeded():
    images, labels = digits()
    a = cluttered_mnist(images, labels, rng=5)
    b = cluttered_mnist(images, labels, rng=np.random.default_rng(5))
    c = cluttered_mnist(images, labels, rng=6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_cluttered_mnist_bad_input():
    images, labels = digits()
    with pytest.raises(TypeError, match="uint8"):
        cluttered_mnist(images.astype(np.float32), labels)
    with pytest.raises(ValueError, match="labels"):
        cluttered_mnist(images, labels[:3])
    with pytest.raises(ValueError, match="size"):
        cluttered_mnist(images, labels, size=20)
    with pytest.raises(ValueError, match="patch"):
        cluttered_mnist(images, labels, patch=29)
    with pytest.raises(ValueError, match="n_clutter"):
        cluttered_mnist(images, labels, n_clutter=-1)
    with pytest.raises(ValueError, match="other images"):
        cluttered_mnist(images[:1], labels[:1], n_clutter=1)


@pytest.mark.parametrize("cls", [nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d])
@pytest.mark.parametrize("output_size", [1, (2, 3), (None, 2)])
def test_adaptive_pool_layers(cls, output_size):
    rng = np.random.default_rng(0)
    x = rng.permutation(2 * 3 * 5 * 4).reshape(2, 3, 5, 4) / 10.0
    layer = cls(output_size)
    y = layer(x)
    g = rng.standard_normal(y.shape)
    assert rel_error(layer.backward(g), numerical_gradient(lambda z: cls(output_size)(z), x, g)) < 1e-8
    with pytest.raises(ValueError, match="positive"):
        cls(0)
    with pytest.raises(TypeError, match="output_size"):
        cls("1")


def test_summary_counts_the_non_local_products():
    block = nn.NonLocal2d(8, sub_sample=True)
    rows = {r.name: r for r in summary(nn.Sequential(block), (8, 6, 4)).rows}
    assert rows["0"].type == "NonLocal2d" and rows["0"].parameters == 0
    assert rows["0"].macs == 2 * 24 * 6 * 4 == block.own_macs((8, 6, 4))  # L=24, M=3*2, C'=4
    assert rows["0.theta"].macs == 24 * 8 * 4
    flat = nn.NonLocal2d(8, sub_sample=False)
    assert flat.own_macs((8, 6, 4)) == 2 * 24 * 24 * 4


@pytest.mark.parametrize("block", A.BLOCKS)
def test_attention_cnn_shapes_and_gradients(block):
    model = A.attention_cnn(block, dtype=np.float64, rng=0)
    images = np.random.default_rng(1).integers(0, 256, (2, 12, 12)).astype(np.uint8)
    x = model.preprocess(images)
    assert x.shape == (2, 1, 12, 12)
    out = model(x)
    assert out.shape == (2, 10) and model.predict(images).shape == (2,)
    assert (model.block is None) == (block == "none")
    g = np.random.default_rng(2).standard_normal(out.shape)
    model.zero_grad()
    dx = model.backward(g)
    state = model.state_dict()

    def f(z):
        y = model(z)
        model.load_state_dict(state)
        return y
    assert rel_error(dx, numerical_gradient(f, x, g)) < 1e-5


def test_attention_maps_and_non_local_by_hand():
    images = np.random.default_rng(3).integers(0, 256, (3, 36, 36)).astype(np.uint8)
    maps = A.attention_maps(A.attention_cnn("cbam", rng=0), images)
    assert maps["spatial"].shape == (3, 9, 9) and maps["channel"].shape == (3, 16)
    assert A.attention_maps(A.attention_cnn("se", rng=0), images)["channel"].shape == (3, 16)
    maps = A.attention_maps(A.attention_cnn("nonlocal", rng=0), images, query=(2, 3))
    assert maps["row"].shape == (3, 4, 4) and np.allclose(maps["row"].sum(axis=(1, 2)), 1, rtol=1e-5)
    np.testing.assert_array_equal(maps["query"], [[2, 3]] * 3)
    with pytest.raises(ValueError, match="block"):
        A.attention_maps(A.attention_cnn("none"), images)
    rng = np.random.default_rng(4)
    for mode in nn.NonLocal2d.MODES:
        block = nn.NonLocal2d(4, mode=mode, sub_sample=False, bn_layer=False, dtype=np.float64, rng=0)
        block.W.weight.data[...] = rng.standard_normal(block.W.weight.shape)
        x = rng.standard_normal((2, 4, 3, 5))
        z, a = A.non_local_by_hand(block, x)
        np.testing.assert_allclose(block(x), z, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(block.last_attention, a, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="sub_sample=False"):
        A.non_local_by_hand(nn.NonLocal2d(4), x)
    with pytest.raises(ValueError, match="block must be one of"):
        A.attention_cnn("transformer")


@pytest.mark.mnist
def test_cluttered_data_is_seeded_and_a_short_training_runs():
    a = A.cluttered_data(n_train=64, n_test=32, seed=3)
    b = A.cluttered_data(n_train=64, n_test=32, seed=3)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["train_images"].shape == (64, 36, 36) and a["test_images"].shape == (32, 36, 36)
    m1, r1 = A.train_attention_model("se", a, epochs=1, batch_size=32, seed=1)
    m2, r2 = A.train_attention_model("se", a, epochs=1, batch_size=32, seed=1)
    assert r1["train_loss"] == r2["train_loss"] and r1["test_accuracy"] == r2["test_accuracy"]
    assert r1["parameters"] == sum(p.size for p in m1.parameters())
    assert r1["macs"] > 0


def test_frame_ratio():
    maps = np.ones((2, 9, 9))
    np.testing.assert_allclose(A.frame_ratio(maps, [[0, 0], [8, 4]]), 1)
    inside = np.zeros((1, 9, 9))
    inside[0, :7, :7] = 1  # exactly the frame at corner (0, 0): 28 pixels = 7 cells of 4
    np.testing.assert_allclose(A.frame_ratio(inside, [[0, 0]]), 36 ** 2 / 28 ** 2)
    with pytest.raises(ValueError, match="dividing"):
        A.frame_ratio(np.ones((1, 5, 5)), [[0, 0]])
    with pytest.raises(ValueError, match="corners"):
        A.frame_ratio(maps, [[0, 0]])


def test_non_local_row_on_grid_keeps_the_weights():
    images = np.random.default_rng(5).integers(0, 256, (2, 36, 36)).astype(np.uint8)
    maps = A.attention_maps(A.attention_cnn("nonlocal", rng=1), images)
    assert maps["row_on_grid"].shape == (2, 9, 9)
    np.testing.assert_allclose(maps["row_on_grid"].sum(axis=(1, 2)), 1, rtol=1e-5)
    assert np.all(maps["row_on_grid"][:, 8] == 0) and np.all(maps["row_on_grid"][:, :, 8] == 0)

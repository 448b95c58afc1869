"""Tests for cnnlib.analysis.interpret: feature maps against the model's own forward,
occlusion sensitivity against a direct loop (one occluded image at a time),
on a small random network and on the pretrained LeNet-5; and bad input.
"""

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.analysis import interpret
from cnnlib.functional import softmax
from cnnlib.models import zoo


def small_model(dtype=np.float64):
    rng = np.random.default_rng(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, dtype=dtype, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(3 * 5 * 5, 4, dtype=dtype, rng=rng))


def direct_occlusion(model, images, labels, patch, stride, fill):
    """The plain loop: one image, one patch position, one forward pass at a time."""
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    n, _, h, w = images.shape
    out = np.zeros((n, (h - ph) // sh + 1, (w - pw) // sw + 1))
    for t in range(n):
        p0 = softmax(model(images[t:t + 1]), dim=1)[0, labels[t]]
        for a in range(out.shape[1]):
            for b in range(out.shape[2]):
                x = images[t:t + 1].copy()
                x[..., a * sh:a * sh + ph, b * sw:b * sw + pw] = fill
                out[t, a, b] = p0 - softmax(model(x), dim=1)[0, labels[t]]
    return out


def test_feature_maps_follow_the_forward_pass():
    model = small_model()
    x = np.random.default_rng(1).standard_normal((3, 2, 10, 10))
    maps = interpret.feature_maps(model, x)
    assert [name for name, _ in maps] == ["0 Conv2d", "1 ReLU", "2 MaxPool2d", "3 Flatten", "4 Linear"]
    assert [a.shape for _, a in maps] == [(3, 3, 10, 10), (3, 3, 10, 10), (3, 3, 5, 5), (3, 75), (3, 4)]
    np.testing.assert_array_equal(maps[-1][1], model(x))
    np.testing.assert_array_equal(maps[1][1], np.maximum(maps[0][1], 0))
    np.testing.assert_array_equal(maps[0][1], model[0](x))


def test_feature_maps_of_lenet5():
    model = zoo.lenet5(pretrained=True)
    x = model.preprocess(np.zeros((2, 28, 28), np.uint8))
    shapes = [a.shape[1:] for _, a in interpret.feature_maps(model, x)]
    assert shapes[:6] == [(6, 28, 28), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 10, 10), (16, 5, 5)]
    assert shapes[-1] == (10,)


@pytest.mark.parametrize("patch,stride,fill", [(3, 1, 0.0), (4, 2, -1.0), ((2, 5), (3, 1), 0.5), (10, 1, 0.0)])
@pytest.mark.parametrize("batch_size", [1, 7, 512])
def test_occlusion_matches_direct_loop(patch, stride, fill, batch_size):
    model = small_model()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 2, 10, 10))
    y = np.array([0, 3, 1])
    got = interpret.occlusion_sensitivity(model, x, y, patch, stride, fill, batch_size=batch_size)
    want = direct_occlusion(model, x, y, patch, stride, fill)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_occlusion_lenet5_matches_loop_and_finds_the_digit():
    model = zoo.lenet5(pretrained=True)
    images = np.zeros((2, 28, 28), np.uint8)
    images[0, 6:22, 12:16] = 255          # a "1"
    images[1, 6:22, 8:20] = 255           # a block
    x = model.preprocess(images)
    y = model.predict(images)
    bg = float(-zoo.MNIST_MEAN / zoo.MNIST_STD)
    got = interpret.occlusion_sensitivity(model, x, y, patch=6, stride=3, fill=bg)
    want = direct_occlusion(model, x, y, 6, 3, np.float32(bg))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # covering empty background changes nothing: the patch is already the background there
    assert np.abs(got[:, 0, 0]).max() < 1e-6


def test_occlusion_accepts_3d_images_and_callables():
    model = small_model()
    x = np.random.default_rng(3).standard_normal((2, 1, 10, 10))
    one_channel = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, dtype=np.float64, rng=0), nn.ReLU(),
                                nn.MaxPool2d(2), nn.Flatten(), nn.Linear(75, 4, dtype=np.float64, rng=0))
    a = interpret.occlusion_sensitivity(one_channel, x, [1, 2], 3, 2)
    b = interpret.occlusion_sensitivity(lambda z: one_channel(z), x[:, 0], np.array([1, 2]), 3, 2)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 4, 4)
    del model


def test_occlusion_restores_training_modes():
    model = small_model()
    model.train()
    model[0].eval()
    x = np.random.default_rng(4).standard_normal((1, 2, 10, 10))
    interpret.occlusion_sensitivity(model, x, [0], 4, 3)
    assert model.training and not model[0].training and model[1].training


def test_occlusion_positions():
    rows, cols = interpret.occlusion_positions((28, 20), patch=(6, 4), stride=(2, 8))
    np.testing.assert_array_equal(rows, np.arange(0, 23, 2))
    np.testing.assert_array_equal(cols, [0, 8, 16])


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(labels=[0, 1]), ValueError, "labels"),
    (dict(labels=[0.0]), TypeError, "labels"),
    (dict(labels=[9]), ValueError, "labels"),
    (dict(patch=11), ValueError, "patch"),
    (dict(patch=0), ValueError, "patch"),
    (dict(stride=0), ValueError, "stride"),
    (dict(fill="grey"), TypeError, "fill"),
    (dict(fill=float("nan")), ValueError, "fill"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(images=np.zeros((1, 2, 10, 10), np.int64)), TypeError, "images"),
    (dict(images=np.zeros((2, 10, 10, 1, 1))), ValueError, "images"),
    (dict(model="lenet"), TypeError, "model"),
    (dict(model=lambda z: z.sum(axis=(1, 2, 3))), ValueError, "logits"),
])
def test_occlusion_bad_input(kwargs, err, match):
    args = dict(model=small_model(), images=np.zeros((1, 2, 10, 10)), labels=[0])
    args.update(kwargs)
    with pytest.raises(err, match=match):
        interpret.occlusion_sensitivity(args.pop("model"), args.pop("images"), args.pop("labels"), **args)


def test_feature_maps_bad_input():
    with pytest.raises(TypeError, match="model"):
        interpret.feature_maps(nn.ReLU(), np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match="model"):
        interpret.feature_maps(nn.Sequential(), np.zeros((1, 1, 2, 2)))
    with pytest.raises(TypeError, match="x"):
        interpret.feature_maps(small_model(), [[1.0]])


def test_plots_return_figures():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = small_model()
    x = np.random.default_rng(5).standard_normal((2, 2, 10, 10))
    maps = interpret.feature_maps(model, x)
    figs = [interpret.plot_feature_maps(maps, index=1, max_channels=2),
            interpret.plot_filters(model[0].weight.data, ncols=4, title="conv"),
            interpret.plot_occlusion(x[:, 0], interpret.occlusion_sensitivity(model, x, [0, 1], 4, 3),
                                     4, 3, titles=["a", "b"])]
    for fig in figs:
        assert isinstance(fig, matplotlib.figure.Figure)
        plt.close(fig)
    assert len(figs[0].axes) == 3 * 2          # three 4-d maps, two channels each
    with pytest.raises(ValueError, match="4-d"):
        interpret.plot_feature_maps(maps[3:])
    with pytest.raises(ValueError, match="weight"):
        interpret.plot_filters(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="sensitivity"):
        interpret.plot_occlusion(x[:, 0], np.zeros((2, 2, 2)), 4, 3)

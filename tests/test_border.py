"""Tests for cnnlib.analysis.border: padding modes against np.pad + a plain correlation
loop (and PyTorch's padding_mode where torch is installed), their gradients
by central differences, border distances, ring means, the power-law image,
and bad input.
"""

import itertools

import numpy as np
import pytest

from cnnlib import functional as F
from cnnlib.analysis import border as B

NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def naive_padded_conv(x, w, b, pads, mode, stride=1, dilation=1):
    """np.pad, then a loop cross-correlation (one group)."""
    (t, bo), (l, r) = pads
    xp = np.pad(x, ((0, 0), (0, 0), (t, bo), (l, r)), mode=NP_MODE[mode])
    n, c, hp, wp = xp.shape
    co, _, kh, kw = w.shape
    ho = (hp - dilation * (kh - 1) - 1) // stride + 1
    wo = (wp - dilation * (kw - 1) - 1) // stride + 1
    y = np.zeros((n, co, ho, wo))
    for i, j in itertools.product(range(ho), range(wo)):
        patch = xp[:, :, i * stride:i * stride + dilation * (kh - 1) + 1:dilation,
                   j * stride:j * stride + dilation * (kw - 1) + 1:dilation]
        y[:, :, i, j] = np.einsum("ncpq,ocpq->no", patch, w)
    return y + (0 if b is None else b[None, :, None, None])


CASES = [  # (padding, resolved pads, stride, dilation, kernel)
    ("same", ((1, 1), (1, 1)), 1, 1, (3, 3)),
    ("same", ((1, 2), (0, 1)), 1, 1, (4, 2)),
    ("same", ((2, 2), (2, 2)), 1, 2, (3, 3)),
    ("full", ((2, 2), (2, 2)), 1, 1, (3, 3)),
    (1, ((1, 1), (1, 1)), 2, 1, (3, 3)),
    ((2, 1), ((2, 2), (1, 1)), 1, 1, (3, 2)),
    ("valid", ((0, 0), (0, 0)), 1, 1, (3, 3)),
]


@pytest.mark.parametrize("mode", B.PADDING_MODES)
@pytest.mark.parametrize("padding,pads,stride,dilation,kernel", CASES)
def test_forward_matches_np_pad(mode, padding, pads, stride, dilation, kernel):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 7))
    w = rng.standard_normal((4, 3, *kernel))
    b = rng.standard_normal(4)
    y = B.conv2d_padding_mode(x, w, b, stride, padding, dilation, padding_mode=mode)
    ref = naive_padded_conv(x, w, b, pads, mode, stride, dilation)
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)


def test_zeros_mode_is_conv2d():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
    y = B.conv2d_padding_mode(x, w, None, 1, "same", 1, groups=2)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, F.conv2d(x, w, None, 1, "same", 1, 2), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", B.PADDING_MODES)
def test_matches_torch(mode):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 7, 6))
    w = rng.standard_normal((3, 2, 3, 3))
    layer = torch.nn.Conv2d(2, 3, 3, padding=2, dilation=2, bias=False, padding_mode=mode).double()
    layer.weight.data = torch.from_numpy(w)
    ref = layer(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(B.conv2d_padding_mode(x, w, padding=2, dilation=2, padding_mode=mode),
                               ref, rtol=1e-10, atol=1e-10)


def numerical_gradient(f, a, g, eps=1e-6):
    grad = np.zeros_like(a)
    for idx in np.ndindex(a.shape):
        old = a[idx]
        a[idx] = old + eps
        plus = np.sum(f() * g)
        a[idx] = old - eps
        minus = np.sum(f() * g)
        a[idx] = old
        grad[idx] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("mode", B.PADDING_MODES)
@pytest.mark.parametrize("padding,stride,dilation,groups", [("same", 1, 1, 1), (2, 2, 1, 2),
                                                            ("full", 1, 2, 1), ((1, 2), 1, 1, 2)])
def test_gradients(mode, padding, stride, dilation, groups):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 6))
    w = rng.standard_normal((2, 4 // groups, 3, 2))
    b = rng.standard_normal(2)
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    try:
        y = B.conv2d_padding_mode(x, w, b, **args)
    except ValueError:   # e.g. reflect padding wider than the input
        pytest.skip("setting invalid for this mode")
    g = rng.standard_normal(y.shape)
    gx, gw, gb = B.conv2d_padding_mode_backward(g, x, w, b, **args)
    fwd = lambda: B.conv2d_padding_mode(x, w, b, **args)  # noqa: E731
    for analytic, array in ((gx, x), (gw, w), (gb, b)):
        numeric = numerical_gradient(fwd, array, g)
        err = np.abs(analytic - numeric).max() / max(1e-8, np.abs(numeric).max())
        assert err < 1e-7


def test_border_distance():
    d = B.border_distance((4, 5))
    expected = np.array([[0, 0, 0, 0, 0],
                         [0, 1, 1, 1, 0],
                         [0, 1, 1, 1, 0],
                         [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(d, expected)
    assert B.border_distance(3)[1, 1] == 1


def test_mean_by_border_distance_against_loop():
    rng = np.random.default_rng(4)
    v = rng.standard_normal((3, 2, 7, 9))
    means = B.mean_by_border_distance(v)
    dist = B.border_distance((7, 9))
    assert means.shape == (4,)
    for t in range(4):
        np.testing.assert_allclose(means[t], v[..., dist == t].mean())
    np.testing.assert_allclose(B.mean_by_border_distance(v, max_distance=1), means[:2])


def test_constant_image_profile_of_box_filter():
    # A 5x5 box filter on a constant image, zero 'same' padding: the response
    # at distance t < 2 from one edge (far from the others) is (3 + t) / 5.
    x = np.ones((1, 1, 41, 41))
    box = np.full((1, 1, 5, 5), 1 / 25)
    y = F.conv2d(x, box, padding="same")[0, 0]
    np.testing.assert_allclose(y[20, :3], [3 / 5, 4 / 5, 1])
    np.testing.assert_allclose(y[0, 0], 9 / 25)
    for mode in ("reflect", "replicate", "circular"):
        np.testing.assert_allclose(B.conv2d_padding_mode(x, box, padding_mode=mode), 1)


def test_power_law_image():
    a = B.power_law_image((32, 48), alpha=1.0, rng=0)
    b = B.power_law_image((32, 48), alpha=1.0, rng=0)
    assert a.shape == (32, 48) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert a.min() == 0 and a.max() == 1
    # Larger alpha: smoother, so neighbouring pixels are more alike.
    rough = B.power_law_image(64, alpha=0.0, rng=1)
    smooth = B.power_law_image(64, alpha=2.0, rng=1)
    assert np.abs(np.diff(smooth, axis=1)).mean() < np.abs(np.diff(rough, axis=1)).mean()
    # Not periodic: the two opposite edges differ more than neighbouring columns.
    assert np.abs(smooth[:, 0] - smooth[:, -1]).mean() > 3 * np.abs(np.diff(smooth, axis=1)).mean()


def test_bad_input():
    x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
    with pytest.raises(ValueError, match="padding_mode"):
        B.conv2d_padding_mode(x, w, padding_mode="mirror")
    with pytest.raises(ValueError, match="reflect"):
        B.conv2d_padding_mode(x, w, padding=4, padding_mode="reflect")
    with pytest.raises(ValueError, match="circular"):
        B.conv2d_padding_mode(x, w, padding=5, padding_mode="circular")
    with pytest.raises(ValueError, match="stride"):
        B.conv2d_padding_mode(x, w, stride=2, padding="same")
    with pytest.raises(ValueError, match="padding"):
        B.conv2d_padding_mode(x, w, padding=-1)
    with pytest.raises(TypeError, match="input"):
        B.conv2d_padding_mode(x.astype(int), w)
    with pytest.raises(ValueError, match="input"):
        B.conv2d_padding_mode(x[0], w)
    with pytest.raises(ValueError, match="shape"):
        B.border_distance(0)
    with pytest.raises(ValueError, match="values"):
        B.mean_by_border_distance(np.ones(5))
    with pytest.raises(TypeError, match="values"):
        B.mean_by_border_distance(np.array([["a"]]))
    with pytest.raises(ValueError, match="max_distance"):
        B.mean_by_border_distance(np.ones((5, 5)), max_distance=3)
    with pytest.raises(ValueError, match="alpha"):
        B.power_law_image(8, alpha=-1)
    with pytest.raises(ValueError, match="size"):
        B.power_law_image(1)
    with pytest.raises(TypeError, match="rng"):
        B.power_law_image(8, rng="seed")

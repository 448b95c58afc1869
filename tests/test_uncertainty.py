"""Tests for cnnlib.analysis.uncertainty (MC dropout) and cnnlib.data.transforms (rotation, noise)."""

import numpy as np
import pytest

from cnnlib.analysis.uncertainty import (
    expected_entropy,
    mc_predict,
    mutual_information,
    predictive_entropy,
    uncertainty_sweep,
)
from cnnlib.data import transforms
from cnnlib.nn import BatchNorm2d, Conv2d, Flatten, Linear, ReLU, Sequential
from cnnlib.nn.dropout import Dropout


def small_net(p=0.5, seed=0, bn=False):
    rng = np.random.default_rng(seed)
    layers = [Conv2d(1, 3, 3, dtype=np.float64, rng=rng)]
    if bn:
        layers.append(BatchNorm2d(3, dtype=np.float64))
    layers += [ReLU(), Flatten(), Dropout(p, rng=seed + 1), Linear(3 * 4 * 4, 8, dtype=np.float64, rng=rng),
               ReLU(), Dropout(p, rng=seed + 2), Linear(8, 4, dtype=np.float64, rng=rng)]
    return Sequential(*layers)


def inputs(n=10, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 1, 6, 6))


# ----------------------------------------------------------------------------
# Entropies
# ----------------------------------------------------------------------------

def entropy_loops(p):
    return -sum(v * np.log(v) for v in p if v > 0)


def test_entropies_against_loops():
    rng = np.random.default_rng(0)
    samples = rng.dirichlet(np.ones(5) * 0.5, size=(7, 3))  # (T=7, N=3, K=5)
    samples[0, 0] = [1, 0, 0, 0, 0]  # a zero probability
    mean = samples.mean(axis=0)
    for n in range(3):
        h = entropy_loops(mean[n])
        eh = np.mean([entropy_loops(samples[t, n]) for t in range(7)])
        assert predictive_entropy(mean)[n] == pytest.approx(h, rel=1e-12)
        assert expected_entropy(samples)[n] == pytest.approx(eh, rel=1e-12)
        assert mutual_information(samples)[n] == pytest.approx(h - eh, rel=1e-10)


def test_entropy_bounds_and_mutual_information_zero_when_samples_agree():
    k = 10
    assert predictive_entropy(np.full(k, 1 / k)) == pytest.approx(np.log(k))
    assert predictive_entropy(np.eye(k)).max() == 0
    p = np.random.default_rng(0).dirichlet(np.ones(k), size=4)
    same = np.stack([p] * 6)
    np.testing.assert_allclose(mutual_information(same), 0, atol=1e-12)
    # Confident but disagreeing samples: MI = H[mean], expected entropy 0.
    split = np.stack([np.eye(k)[[0]], np.eye(k)[[1]]])
    assert mutual_information(split)[0] == pytest.approx(np.log(2))
    assert expected_entropy(split)[0] == 0


def test_entropy_bad_input():
    with pytest.raises(TypeError, match="numpy.ndarray"):
        predictive_entropy([0.5, 0.5])
    with pytest.raises(ValueError, match="probability vectors"):
        predictive_entropy(np.array([0.5, 0.6]))
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        mutual_information(np.array([0.5, 0.5]))
    with pytest.raises(TypeError, match="floating-point"):
        predictive_entropy(np.array([1, 0]))


# ----------------------------------------------------------------------------
# mc_predict
# ----------------------------------------------------------------------------

def test_mc_predict_against_a_plain_loop():
    net, x = small_net(), inputs()
    pred = mc_predict(net, x, n_samples=5, rng=3, return_samples=True)
    # Reference: the same generator drives both dropout layers, T passes in training mode.
    gen = np.random.default_rng(3)
    net[3].rng, net[6].rng, own = gen, gen, (net[3].rng, net[6].rng)
    net.train()
    ref = []
    for _ in range(5):
        z = net(x)
        e = np.exp(z - z.max(axis=1, keepdims=True))
        ref.append(e / e.sum(axis=1, keepdims=True))
    net[3].rng, net[6].rng = own
    ref = np.array(ref)
    np.testing.assert_allclose(pred.samples, ref, rtol=1e-12)
    np.testing.assert_allclose(pred.probs, ref.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(pred.entropy, predictive_entropy(ref.mean(axis=0)), rtol=1e-12)
    np.testing.assert_allclose(pred.mutual_information, mutual_information(ref), atol=1e-12)
    np.testing.assert_allclose(pred.expected_entropy, expected_entropy(ref), rtol=1e-12)
    assert pred.probs.shape == (10, 4) and pred.entropy.shape == (10,)


def test_split_batches_and_seed_give_the_same_answer():
    net, x = small_net(), inputs(25)
    a = mc_predict(net, x, 4, rng=0, return_samples=True)
    b = mc_predict(net, x, 4, rng=0, split=False, return_samples=True)
    np.testing.assert_allclose(a.samples, b.samples, rtol=1e-12)
    c = mc_predict(net, x, 4, rng=1)
    assert not np.allclose(a.probs, c.probs)
    # Different batch sizes draw the masks in a different order, but a
    # single batch covering everything is the reference above.
    d = mc_predict(net, x, 4, rng=0, batch_size=25, return_samples=True)
    np.testing.assert_array_equal(a.samples, d.samples)
    assert mc_predict(net, x, 4, rng=0, batch_size=7).probs.shape == (25, 4)


def test_modes_and_generators_restored():
    net = small_net(bn=True)
    net.train()
    own = [m.rng for m in net if isinstance(m, Dropout)]
    states = [g.bit_generator.state for g in own]
    mc_predict(net, inputs(), 3, rng=0)
    assert all(m.training for _, m in net.named_modules())
    assert [m.rng for m in net if isinstance(m, Dropout)] == own
    assert [g.bit_generator.state for g in own] == states  # rng given: own streams untouched
    net.eval()
    mc_predict(net, inputs(), 3)  # rng=None: the layers' own generators advance
    assert not any(m.training for _, m in net.named_modules())
    assert [g.bit_generator.state for g in own] != states


def test_batch_norm_stays_in_eval_mode():
    net = small_net(bn=True)
    bn = net[1]
    running = bn.running_mean.copy()
    net.train()
    mc_predict(net, inputs(), 2, rng=0)
    np.testing.assert_array_equal(bn.running_mean, running)  # no update: BN in eval mode


def test_no_dropout_means_no_uncertainty_and_p_zero():
    net = Sequential(Flatten(), Linear(36, 3, dtype=np.float64, rng=0))
    with pytest.raises(ValueError, match="no Dropout"):
        mc_predict(net, inputs(), 3)
    pred = mc_predict(small_net(p=0.0), inputs(), 4, rng=0)
    np.testing.assert_allclose(pred.mutual_information, 0, atol=1e-12)


def test_mc_predict_bad_input():
    net, x = small_net(), inputs()
    with pytest.raises(TypeError, match="model must be"):
        mc_predict(lambda z: z, x)
    with pytest.raises(TypeError, match="x must be"):
        mc_predict(net, list(x))
    with pytest.raises(ValueError, match="n_samples"):
        mc_predict(net, x, 0)
    with pytest.raises(ValueError, match="batch_size"):
        mc_predict(net, x, 2, batch_size=0)
    with pytest.raises(ValueError, match="at least one input"):
        mc_predict(net, x[:0])


def test_uncertainty_sweep_and_plot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from cnnlib.analysis.uncertainty import plot_uncertainty_sweep
    net = small_net()
    images = inputs(12)
    labels = np.arange(12) % 4
    sweep = uncertainty_sweep(net, images, labels, [0, 1, 2],
                              lambda im, s: transforms.add_gaussian_noise(im, s, rng=0),
                              n_samples=3, rng=0)
    assert set(sweep) == {"levels", "accuracy", "accuracy_eval", "entropy", "expected_entropy",
                          "mutual_information"}
    assert all(v.shape == (3,) for v in sweep.values())
    np.testing.assert_allclose(sweep["entropy"],
                               sweep["expected_entropy"] + sweep["mutual_information"])
    # level 0 adds no noise: the MC result equals mc_predict on the clean input
    pred = mc_predict(net, images, 3, rng=np.random.default_rng(0))
    assert sweep["entropy"][0] == pytest.approx(pred.entropy.mean())
    again = uncertainty_sweep(net, images, labels, [0, 1, 2],
                              lambda im, s: transforms.add_gaussian_noise(im, s, rng=0),
                              n_samples=3, rng=0)
    for k in sweep:
        np.testing.assert_array_equal(sweep[k], again[k])
    fig = plot_uncertainty_sweep([sweep, sweep], xlabels=["a", "b"], titles=["x", "y"])
    assert isinstance(fig, Figure)
    plt.close(fig)
    with pytest.raises(TypeError, match="corrupt"):
        uncertainty_sweep(net, images, labels, [0], None)
    with pytest.raises(ValueError, match="labels"):
        uncertainty_sweep(net, images, labels[:3], [0], lambda im, s: im)
    with pytest.raises(ValueError, match="levels is empty"):
        uncertainty_sweep(net, images, labels, [], lambda im, s: im)


# ----------------------------------------------------------------------------
# transforms
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 7, 7), (2, 6, 9), (2, 1, 5, 8)])
@pytest.mark.parametrize("angle", [17.0, -50.0, 123.4, 90.0, 180.0])
def test_bilinear_rotation_matches_scipy(shape, angle):
    ndimage = pytest.importorskip("scipy.ndimage", reason="SciPy not installed")
    x = np.random.default_rng(0).random(shape)
    ours = transforms.rotate(x, angle, order=1)
    # scipy.ndimage.rotate over the last two axes with reshape=False and
    # "grid-constant" (interpolate with the fill value beyond the edges)
    ref = ndimage.rotate(x, angle, axes=(x.ndim - 2, x.ndim - 1), reshape=False, order=1,
                         mode="grid-constant", cval=0.0)
    np.testing.assert_allclose(ours, ref, atol=1e-7)


def test_bilinear_rotation_against_loops():
    x = np.random.default_rng(1).random((5, 6))
    angle, fill = 33.0, 0.25
    ours = transforms.rotate(x, angle, fill=fill)
    a = np.radians(angle)
    ci, cj = 2.0, 2.5
    for i in range(5):
        for j in range(6):
            si = ci + (i - ci) * np.cos(a) + (j - cj) * np.sin(a)
            sj = cj - (i - ci) * np.sin(a) + (j - cj) * np.cos(a)
            i0, j0 = int(np.floor(si)), int(np.floor(sj))
            val = 0.0
            for di in (0, 1):
                for dj in (0, 1):
                    wi = (si - i0) if di else (1 - (si - i0))
                    wj = (sj - j0) if dj else (1 - (sj - j0))
                    ii, jj = i0 + di, j0 + dj
                    v = x[ii, jj] if 0 <= ii < 5 and 0 <= jj < 6 else fill
                    val += wi * wj * v
            assert ours[i, j] == pytest.approx(val, abs=1e-7)


@pytest.mark.parametrize("order", [0, 1])
def test_quarter_turns_are_exact(order):
    x = np.random.default_rng(0).random((3, 6, 6))
    np.testing.assert_allclose(transforms.rotate(x, 90, order), np.rot90(x, 1, axes=(1, 2)),
                               atol=1e-12)
    np.testing.assert_allclose(transforms.rotate(x, -90, order), np.rot90(x, -1, axes=(1, 2)),
                               atol=1e-12)
    np.testing.assert_allclose(transforms.rotate(x, 180, order), x[:, ::-1, ::-1], atol=1e-12)
    np.testing.assert_array_equal(transforms.rotate(x, 0, order), x)


def test_nearest_rotation_picks_input_values_and_uint8():
    x = np.random.default_rng(0).integers(0, 256, (2, 9, 9), dtype=np.uint8)
    y = transforms.rotate(x, 30, order=0)
    assert y.dtype == np.uint8
    assert set(np.unique(y)) <= set(np.unique(x)) | {0}
    z = transforms.rotate(x, 30, order=1)
    assert z.dtype == np.uint8
    assert transforms.rotate(x.astype(np.float32), 30).dtype == np.float32


def test_rotation_preserves_a_centred_disc():
    yy, xx = np.mgrid[:21, :21]
    disc = ((yy - 10) ** 2 + (xx - 10) ** 2 <= 36).astype(np.float64)
    for angle in (10, 37, 71):
        rotated = transforms.rotate(disc, angle)
        # only the pixelated rim may change, and bilinear interpolation keeps the mass
        assert ((rotated > 0.5) != disc).sum() <= 0.15 * disc.sum()
        assert rotated.sum() == pytest.approx(disc.sum(), rel=0.01)


def test_gaussian_noise():
    x = np.full((200, 200), 0.5)
    y = transforms.add_gaussian_noise(x, 0.1, rng=0)
    assert y.dtype == np.float64
    assert abs((y - x).std() - 0.1) < 0.002 and abs((y - x).mean()) < 0.002
    np.testing.assert_array_equal(y, transforms.add_gaussian_noise(x, 0.1, rng=0))
    np.testing.assert_array_equal(transforms.add_gaussian_noise(x, 0.0, rng=0), x)
    u = transforms.add_gaussian_noise(np.full((100, 100), 128, np.uint8), 0.2, rng=1)
    assert u.dtype == np.uint8
    assert abs(u.astype(float).std() - 0.2 * 255) < 2
    assert transforms.add_gaussian_noise(np.zeros((50, 50), np.uint8), 1.0, rng=1).min() == 0


def test_transforms_bad_input():
    with pytest.raises(TypeError, match="images must be a numpy.ndarray"):
        transforms.rotate([[1.0]], 10)
    with pytest.raises(TypeError, match="dtype uint8"):
        transforms.rotate(np.ones((3, 3), np.int32), 10)
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        transforms.rotate(np.ones(3), 10)
    with pytest.raises(ValueError, match="order"):
        transforms.rotate(np.ones((3, 3)), 10, order=3)
    with pytest.raises(ValueError, match="angle must be finite"):
        transforms.rotate(np.ones((3, 3)), float("inf"))
    with pytest.raises(TypeError, match="angle must be a number"):
        transforms.rotate(np.ones((3, 3)), "10")
    with pytest.raises(ValueError, match="std must be >= 0"):
        transforms.add_gaussian_noise(np.ones((3, 3)), -1)
    with pytest.raises(TypeError, match="dtype uint8"):
        transforms.add_gaussian_noise(np.ones((3, 3), bool), 0.1)

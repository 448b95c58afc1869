"""Tests for cnnlib.widgets.pooling: the measurements behind the pooling chapter's
figures and its "pooling invariance" widget."""

import zlib

import matplotlib
import numpy as np
import pytest

from cnnlib.analysis.invariance import pooling_invariance, shift_image
from cnnlib.ops.pool import avg_pool2d, max_pool2d
from cnnlib.widgets import pooling as wp

matplotlib.use("Agg")


def rng_for(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


def blob_image(seed, size=16, frame=4, dtype=np.float64):
    """A random non-negative image with an empty frame, so small shifts lose nothing."""
    x = np.zeros((size, size), dtype=dtype)
    x[frame:-frame, frame:-frame] = rng_for("blob", seed).random((size - 2 * frame,) * 2)
    return x


# ----------------------------------------------------------------------------
# invariance_curves
# ----------------------------------------------------------------------------

def test_invariance_curves_is_the_mean_of_pooling_invariance():
    images = np.stack([blob_image(i) for i in range(3)])
    w = rng_for("w").standard_normal((2, 1, 3, 3))
    shifts = [0, 1, (2, 1)]
    curves = wp.invariance_curves(images, shifts, pools=("max", "avg"), conv_weight=w)
    for pool in ("max", "avg"):
        want = np.mean([pooling_invariance(im, shifts, pool=pool, conv_weight=w)
                        ["relative_change"] for im in images], axis=0)
        np.testing.assert_allclose(curves[pool], want, rtol=1e-12)
    want_f = np.mean([pooling_invariance(im, shifts, conv_weight=w)["feature_change"]
                      for im in images], axis=0)
    np.testing.assert_allclose(curves["feature_change"], want_f, rtol=1e-12)
    np.testing.assert_array_equal(curves["shifts"], [[0, 0], [1, 0], [2, 1]])
    assert curves["max"][0] == 0 and curves["avg"][0] == 0


def test_invariance_curves_stochastic_is_deterministic_for_a_seed():
    images = np.stack([blob_image(i) for i in range(2)])
    a = wp.invariance_curves(images, [0, 1], pools=("stochastic",), rng=3, training=True)
    b = wp.invariance_curves(images, [0, 1], pools=("stochastic",), rng=3, training=True)
    np.testing.assert_array_equal(a["stochastic"], b["stochastic"])
    assert a["stochastic"][0] > 0  # two independent draws differ even without a shift
    test = wp.invariance_curves(images, [0, 1], pools="stochastic", training=False)
    assert test["stochastic"][0] == 0


def test_invariance_curves_bad_input():
    images = np.zeros((2, 8, 8))
    with pytest.raises(ValueError, match="pools"):
        wp.invariance_curves(images, [0], pools=("median",))
    with pytest.raises(TypeError, match="pools"):
        wp.invariance_curves(images, [0], pools=())
    with pytest.raises(ValueError, match="images"):
        wp.invariance_curves(np.zeros((8, 8)), [0])
    with pytest.raises(TypeError, match="images"):
        wp.invariance_curves(np.zeros((2, 8, 8), dtype=np.int64), [0])


# ----------------------------------------------------------------------------
# coarse_shift_error
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("pool", ["max", "avg", "stochastic"])
@pytest.mark.parametrize("k", [2, 3])
def test_shifts_by_multiples_of_the_stride_are_exact(pool, k):
    x = blob_image(k, size=24, frame=7)
    w = rng_for("w3").standard_normal((3, 1, 3, 3))
    for shift in [(k, 0), (0, -k), (k, 2 * k), (-2 * k, k)]:
        r = wp.coarse_shift_error(x, shift, pool=pool, kernel_size=k, conv_weight=w)
        assert r["error"] < 1e-12
        assert r["coarse_shift"] == (shift[0] // k, shift[1] // k)


def test_coarse_shift_error_matches_a_direct_computation():
    x = blob_image(5)
    for pool, f in (("max", max_pool2d), ("avg", avg_pool2d)):
        p0 = f(x[None, None], 2)[0, 0]
        p1 = f(shift_image(x, 1, 0)[None, None], 2)[0, 0]
        want = min(np.linalg.norm(p1 - shift_image(p0, m, 0)) for m in (0, 1))
        got = wp.coarse_shift_error(x, 1, pool=pool)
        assert got["error"] == pytest.approx(want / np.linalg.norm(p0), rel=1e-12)
        assert got["error"] > 0.05  # aliasing: a one-pixel shift is not a coarse shift


def test_coarse_shift_error_of_a_single_pixel():
    x = np.zeros((8, 8))
    x[2, 2] = 1.0  # window (1, 1); a shift of 1 moves it to (2, 3): window (1, 1) still
    assert wp.coarse_shift_error(x, 1)["error"] == 0
    x = np.zeros((8, 8))
    x[2, 3] = 1.0  # a shift of 1 moves it into the next window
    r = wp.coarse_shift_error(x, 1)
    assert r["error"] == 0 and r["coarse_shift"] == (1, 0)


def test_coarse_shift_error_bad_input():
    with pytest.raises(ValueError, match="pool"):
        wp.coarse_shift_error(np.zeros((8, 8)), 2, pool="median")
    with pytest.raises(TypeError, match="shift"):
        wp.coarse_shift_error(np.zeros((8, 8)), 1.5)


# ----------------------------------------------------------------------------
# stochastic_sampling_frequencies
# ----------------------------------------------------------------------------

def test_sampling_frequencies_follow_the_normalised_activations():
    a = np.array([[1.0, 2.0], [0.0, 5.0]])
    r = wp.stochastic_sampling_frequencies(a, draws=40000, rng=0)
    np.testing.assert_allclose(r["probabilities"], a / 8)
    assert r["frequencies"].sum() == pytest.approx(1.0)
    # binomial standard error sqrt(p (1 - p) / n) <= 0.0025; allow 4 of them
    np.testing.assert_allclose(r["frequencies"], r["probabilities"], atol=0.01)
    assert r["frequencies"][1, 0] == 0  # a zero activation is never picked
    test = (a ** 2).sum() / a.sum()
    assert r["test_output"] == pytest.approx(test)
    assert r["mean_training_output"] == pytest.approx(test, abs=4 * r["std_training_output"]
                                                      / np.sqrt(40000))
    again = wp.stochastic_sampling_frequencies(a, draws=40000, rng=0)
    np.testing.assert_array_equal(again["frequencies"], r["frequencies"])


def test_sampling_frequencies_float32_and_one_hot():
    a = np.array([[0.0, 0.0, 3.0]], dtype=np.float32)
    r = wp.stochastic_sampling_frequencies(a, draws=100, rng=1)
    np.testing.assert_array_equal(r["frequencies"], [[0, 0, 1]])
    assert r["std_training_output"] == 0 and r["test_output"] == 3


def test_sampling_frequencies_bad_input():
    with pytest.raises(ValueError, match="window"):
        wp.stochastic_sampling_frequencies(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="window"):
        wp.stochastic_sampling_frequencies(np.array([[1.0, -1.0]]))
    with pytest.raises(ValueError, match="window"):
        wp.stochastic_sampling_frequencies(np.ones(4))
    with pytest.raises(TypeError, match="draws"):
        wp.stochastic_sampling_frequencies(np.ones((2, 2)), draws=1.5)
    with pytest.raises(ValueError, match="draws"):
        wp.stochastic_sampling_frequencies(np.ones((2, 2)), draws=0)


# ----------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------

def test_plot_pooling_invariance_returns_a_figure():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    w = rng_for("wfig").standard_normal((2, 1, 3, 3))
    fig = wp.plot_pooling_invariance(blob_image(0), shifts=(0, 1), conv_weight=w, channel=1)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2 * 5
    assert "change 0.00" in fig.axes[2].get_title()  # zero shift: nothing changes
    plt.close(fig)
    with pytest.raises(ValueError, match="channel"):
        wp.plot_pooling_invariance(blob_image(0), conv_weight=w, channel=2)
    with pytest.raises(ValueError, match="pools"):
        wp.plot_pooling_invariance(blob_image(0), pools=("median",))


def test_other_figures():
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    curves = wp.invariance_curves(np.stack([blob_image(0)]), [0, 1, 2])
    assert isinstance(wp.plot_invariance_curves(curves, title="t"), Axes)
    fig = wp.plot_fractional_intervals(25, 18, 2, sample=0.3, rng=0)
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert "pseudo, overlapping" in fig.axes[0].get_title()
    r = wp.stochastic_sampling_frequencies(np.ones((2, 2)), draws=10, rng=0)
    assert isinstance(wp.plot_sampling_frequencies(r), Axes)
    fig = wp.plot_maps([np.zeros((3, 3)), np.ones((2, 2))], titles=["a", "b"], suptitle="s")
    assert isinstance(fig, Figure)
    with pytest.raises(ValueError, match="maps"):
        wp.plot_maps([np.zeros(3)])
    plt.close("all")


# ----------------------------------------------------------------------------
# Widget
# ----------------------------------------------------------------------------

def test_widget_builds_and_updates():
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    import matplotlib.pyplot as plt

    w = rng_for("wwidget").standard_normal((2, 1, 3, 3))
    x = blob_image(1)
    widget = wp.pooling_invariance_widget(x, conv_weight=w, max_shift=3)
    assert bytes(widget.children[2].value)[:4] == b"\x89PNG"
    controls = widget.controls
    assert set(controls) >= {"shift x", "shift y", "pooling", "window", "map"}
    assert widget.result["relative_change"] == 0
    assert widget.result["cosine"] == pytest.approx(1)
    picture = bytes(widget.children[2].value)
    controls["shift x"].value = 1
    assert bytes(widget.children[2].value) != picture
    assert "pooled maps change" in widget.children[3].value
    want = pooling_invariance(x, [1], conv_weight=w)
    assert widget.result["relative_change"] == pytest.approx(want["relative_change"][0])
    assert widget.result["feature_change"] == pytest.approx(want["feature_change"][0])
    controls["pooling"].value = "stochastic"
    controls["sample (training)"].value = True
    assert widget.result["zero_shift_change"] > 0  # sampling noise alone
    controls["sample (training)"].value = False
    assert widget.result["zero_shift_change"] == 0
    assert controls["map"].max == 1
    plt.close("all")


def test_widget_bad_input():
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    with pytest.raises(ValueError, match="max_shift"):
        wp.pooling_invariance_widget(blob_image(0), max_shift=0)
    with pytest.raises(TypeError, match="image"):
        wp.pooling_invariance_widget([[1.0]])

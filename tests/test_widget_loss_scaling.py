"""Tests for cnnlib.widgets.loss_scaling: the "loss-scaling overflow" widget."""

import matplotlib
import numpy as np
import pytest

from cnnlib.training import amp
from cnnlib.widgets import loss_scaling as wl

matplotlib.use("Agg")


def gradients():
    rng = np.random.default_rng(0)
    return (2.0 ** rng.uniform(-30, -5, 5000)).astype(np.float32) * rng.choice([-1, 1], 5000)


def history():
    return {"scale": np.array([2.0 ** 16] * 3 + [2.0 ** 15] * 3),
            "stepped": np.array([True, True, False, True, True, True])}


def test_log2_magnitudes():
    np.testing.assert_allclose(wl.log2_magnitudes([0.5, -4.0, 0.0, np.inf]), [-1, 2])
    with pytest.raises(ValueError, match="values"):
        wl.log2_magnitudes([0.0])


def test_plot_loss_scaling_returns_a_figure():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig = wl.plot_loss_scaling(gradients(), scales=(1.0, 2.0 ** 16), history=history())
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    want = amp.fp16_categories(gradients(), 1.0)["underflow"]
    assert f"{100 * want:.1f}% underflow" in fig.axes[0].get_title()
    plt.close(fig)
    fig = wl.plot_loss_scaling(gradients(), scales=(1.0,))
    assert len(fig.axes) == 1
    plt.close(fig)
    with pytest.raises(ValueError, match="scales"):
        wl.plot_loss_scaling(gradients(), scales=(0.0,))


def test_widget_builds_and_updates():
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    import matplotlib.pyplot as plt

    g = gradients()
    box = wl.loss_scaling_widget(g, history=history())
    assert bytes(box.children[1].value)[:4] == b"\x89PNG"
    assert box.result == amp.fp16_categories(g, 1.0)
    assert box.result["underflow"] > 0.1
    picture = bytes(box.children[1].value)
    box.controls["log2 scale"].value = 16
    assert bytes(box.children[1].value) != picture
    assert box.result == amp.fp16_categories(g, 2.0 ** 16)
    assert box.result["underflow"] == 0
    assert "2^16" in box.children[2].value
    plt.close("all")


def test_widget_bad_input():
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    with pytest.raises(ValueError, match="max_log2_scale"):
        wl.loss_scaling_widget(gradients(), max_log2_scale=0)
    with pytest.raises(ValueError, match="values"):
        wl.loss_scaling_widget(np.zeros(3))

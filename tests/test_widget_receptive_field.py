"""Tests for cnnlib.widgets.receptive_field: the view the widget draws against
cnnlib.analysis.receptive's back-projection, the mosaic, the written-out closed form,
the static figure and the widget itself (built, then updated through a control).
"""

import numpy as np
import pytest

from cnnlib.analysis import receptive as R
from cnnlib.widgets import receptive_field as W

LENET = [(5, 1, 1, 2), (2, 2), (5, 1), (2, 2)]
STACKS = {
    "lenet": LENET,
    "vgg3": W.uniform_stack(3, 3),
    "strided-same": W.uniform_stack(3, 3, 2, 1, "same"),
    "dilated": W.uniform_stack(3, 3, 1, 2),
    "pooled": W.uniform_stack(2, 5, 1, 1, "same", pool=True),
}


def test_uniform_stack():
    assert W.uniform_stack(2, 3, 2, 1, "same") == [(3, 2, 1, "same")] * 2
    assert W.uniform_stack(2, 5, pool=True) == [(5, 1, 1, "valid"), (2, 2, 1, 0)] * 2


def test_digit_mosaic():
    imgs = np.arange(6 * 2 * 3, dtype=np.uint8).reshape(6, 2, 3)
    m = W.digit_mosaic(imgs, (2, 3))
    assert m.shape == (4, 9)
    np.testing.assert_array_equal(m[2:4, 3:6], imgs[4] / 255.0)
    np.testing.assert_array_equal(m[0:2, 6:9], imgs[2] / 255.0)
    np.testing.assert_array_equal(W.digit_mosaic(imgs.astype(np.float32), 1), imgs[0])


@pytest.mark.parametrize("name", list(STACKS))
@pytest.mark.parametrize("size", [(28, 28), (84, 56)])
@pytest.mark.parametrize("unit", ["centre", "corner"])
def test_view_against_back_projection(name, size, unit):
    layers = STACKS[name]
    v = W.receptive_field_view(layers, size, unit)
    rf = R.receptive_field(layers)
    assert v["closed_form"] == rf
    assert v["growth"][-1] == rf.size
    assert v["growth"] == sorted(v["growth"])
    for axis in (0, 1):
        i = v["unit"][axis]
        assert i == (v["output_size"][axis] // 2 if unit == "centre" else 0)
        lo, hi = v["closed_box"][axis]
        assert hi - lo == rf.size and lo == rf.start + i * rf.stride
        seen = R.receptive_field_bruteforce(layers, i, size[axis])
        assert v["region"][axis] == (seen.min(), seen.max() + 1)
        assert lo <= seen.min() and seen.max() < hi          # the exact region lies in the box
        covered = np.flatnonzero(v["coverage"].sum(axis=1 - axis))
        np.testing.assert_array_equal(covered, seen)


def test_view_lenet_numbers():
    v = W.receptive_field_view(LENET, 28, "corner")
    assert v["output_size"] == (5, 5) and v["growth"] == [5, 6, 14, 16]
    assert v["closed_box"] == ((-2, 14), (-2, 14))     # reaches 2 pixels into the padding
    assert v["region"] == ((0, 14), (0, 14))
    c = W.receptive_field_view(LENET, 28, "centre")
    assert c["closed_box"] == c["region"] == ((6, 22), (6, 22))


def test_view_explicit_unit_and_errors():
    v = W.receptive_field_view(STACKS["vgg3"], (10, 12), (1, 5))
    assert v["unit"] == (1, 5) and v["region"] == ((1, 8), (5, 12))
    with pytest.raises(ValueError, match="unit"):
        W.receptive_field_view(STACKS["vgg3"], 10, (4, 0))
    with pytest.raises(ValueError, match="unit"):
        W.receptive_field_view(STACKS["vgg3"], 10, "middle")
    with pytest.raises(ValueError, match="too small"):
        W.receptive_field_view(W.uniform_stack(8, 3, 2), 28)
    with pytest.raises(ValueError, match="num_layers"):
        W.uniform_stack(0)
    with pytest.raises(ValueError, match="kernel_size"):
        W.uniform_stack(2, 0)
    with pytest.raises(TypeError, match="pool"):
        W.uniform_stack(2, 3, pool="yes")
    with pytest.raises(ValueError, match="grid"):
        W.digit_mosaic(np.zeros((3, 4, 4), np.uint8), (2, 2))
    with pytest.raises(TypeError, match="images"):
        W.digit_mosaic(np.zeros((4, 4, 4), np.int32), (2, 2))
    with pytest.raises(ValueError, match="images"):
        W.digit_mosaic(np.zeros((4, 4)), 1)


def test_format_closed_form():
    assert W.format_closed_form(LENET) == "1 + 4·1 + 1·1 + 4·2 + 1·2 = 16"
    assert W.format_closed_form([(3, 1, 2)] * 3) == "1 + 4·1 + 4·1 + 4·1 = 13"


def test_plot_returns_figure():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = np.random.default_rng(0).random((56, 56))
    fig = W.plot_receptive_field(image, [("lenet", LENET), ("dilated", STACKS["dilated"])], "corner")
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 3
    assert len(fig.axes[0].patches) == 3          # closed-form box, exact region, image frame
    plt.close(fig)
    with pytest.raises(ValueError, match="settings"):
        W.plot_receptive_field(image, [])
    with pytest.raises(ValueError, match="image"):
        W.plot_receptive_field(image[0], [("x", LENET)])


def test_widget_builds_and_updates():
    pytest.importorskip("ipywidgets", reason="ipywidgets is needed for the widget")
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    box = W.receptive_field_widget(np.zeros((28, 28)))
    assert "1 + 2·1 + 2·1 + 2·1 = 7" in box.text.value
    first = box.picture.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    box.controls["stride"].value = 2
    assert "1 + 2·1 + 2·2 + 2·4 = 15" in box.text.value
    assert box.picture.value[:4] == b"\x89PNG" and box.picture.value != first
    box.controls["layers"].value = 8          # too deep for 28 pixels at stride 2
    assert "No output" in box.text.value and box.picture.value == b""
    box.controls["layers"].value = 2
    box.controls["unit"].value = "corner"
    assert "rows [0, 7)" in box.text.value
    with pytest.raises(ValueError, match="image"):
        W.receptive_field_widget(np.zeros(5))

"""Tests for cnnlib.widgets.dilation: the stack summary against the closed-form
receptive field and a brute-force back-projection, the gridding numbers the
chapter quotes, the figures, and the widget (builds, updates, bad input).
"""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cnnlib.analysis import receptive as R  # noqa: E402
from cnnlib.widgets import dilation as W  # noqa: E402


def test_parse_dilations():
    assert W.parse_dilations("1, 2, 5") == (1, 2, 5)
    assert W.parse_dilations(" 2 2,2 ") == (2, 2, 2)
    for bad in ("", "1, 0", "a", "1.5", "-1"):
        with pytest.raises(ValueError, match="dilations"):
            W.parse_dilations(bad)
    with pytest.raises(TypeError, match="text"):
        W.parse_dilations([1, 2])


@pytest.mark.parametrize("dilations", [(1,), (2,), (1, 1, 1), (2, 2, 2), (1, 2, 5), (1, 2, 3),
                                       (3, 3), (4, 1)])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_summary_against_bruteforce(dilations, k):
    info = W.dilation_stack_summary(dilations, k)
    layers = W.stack_layers(dilations, k)
    r = 1 + sum(d * (k - 1) for d in dilations)
    assert info["receptive_field"] == r == R.receptive_field(layers).size
    assert info["effective_kernel_sizes"] == [k + (k - 1) * (d - 1) for d in dilations]
    seen_1d = R.receptive_field_bruteforce(layers)           # positions relative to output 0
    assert info["seen"] == len(seen_1d) ** 2
    assert info["holes"] == r * r - info["seen"]
    assert info["coverage"].shape == (r, r)
    # Path counts sum to (k^2)^layers: every tap of every layer is one step.
    assert info["coverage"].sum() == k ** (2 * len(dilations))


def test_gridding_numbers():
    grid = W.dilation_stack_summary((2, 2, 2))
    assert grid["receptive_field"] == 13
    assert grid["seen"] == 7 * 7 and grid["holes"] == 169 - 49
    hdc = W.dilation_stack_summary((1, 2, 5))
    assert hdc["receptive_field"] == 17 and hdc["holes"] == 0


def test_stack_layers_bad_input():
    with pytest.raises(ValueError, match="dilations"):
        W.stack_layers(())
    with pytest.raises(ValueError, match="dilations"):
        W.stack_layers((1, 0))
    with pytest.raises(ValueError, match="dilations"):
        W.stack_layers("2,2")
    with pytest.raises(ValueError, match="kernel_size"):
        W.stack_layers((1,), kernel_size=0)


def test_figures():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig = W.plot_dilation(3, (1, 2, 3))
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    # d=3, k=3: 9 taps drawn as patches (plus the dashed span outline).
    assert len(fig.axes[2].patches) == 9 + 1
    plt.close(fig)
    fig = W.plot_gridding(((2, 2, 2), (1, 2, 5)))
    assert isinstance(fig, Figure)
    shown = fig.axes[0].images[0].get_array()
    assert np.ma.count_masked(shown) == 169 - 49   # the holes are left blank
    plt.close(fig)


def test_widget_builds_and_updates():
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    box = W.dilation_widget()
    before, png = box.summary.value, box.output.value
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert "13" in before and "120" in before        # (2, 2, 2): r = 13, 120 holes
    box.controls["stack"].value = "1, 2, 5"
    assert box.summary.value != before and "<b>0</b>" in box.summary.value
    assert box.output.value != png
    box.controls["dilation"].value = 4
    assert "<b>9</b>" in box.summary.value            # 3 + 2*3
    box.controls["stack"].value = "1, x"
    assert "dilations must be" in box.summary.value

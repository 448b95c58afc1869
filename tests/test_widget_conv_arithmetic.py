"""Tests for cnnlib.widgets.conv_arithmetic: the formula text against conv2d's
output shape, the figure (taps and padding cells drawn), and the widget
(builds, updates, clamps the output index, reports impossible settings).
"""

import itertools

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cnnlib import functional as F  # noqa: E402
from cnnlib.analysis import receptive as R  # noqa: E402
from cnnlib.widgets import conv_arithmetic as W  # noqa: E402


@pytest.mark.parametrize("n,k,s,p,d", [c for c in itertools.product((4, 7), (1, 2, 3), (1, 2),
                                                                     W.PADDINGS, (1, 2))
                                       if not (c[3] == "same" and c[2] > 1)])
def test_output_size_text_matches_conv2d(n, k, s, p, d):
    try:
        arith = R.conv_arithmetic(n, k, s, p, d)
    except ValueError:
        with pytest.raises(ValueError):
            F.conv2d(np.ones((1, 1, n, n)), np.ones((1, 1, k, k)), stride=s, padding=p, dilation=d)
        return
    y = F.conv2d(np.ones((1, 1, n, n)), np.ones((1, 1, k, k)), stride=s, padding=p, dilation=d)
    text = W.output_size_text(arith)
    assert text.endswith(f"= {y.shape[2]}")
    (before, after) = arith.padding[0]
    assert text.startswith(f"⌊({n} + {before} + {after} − {d}·({k} − 1) − 1) / {s}⌋ + 1")


def test_output_size_text_bad_input():
    with pytest.raises(TypeError, match="arith"):
        W.output_size_text((5, 3))
    with pytest.raises(ValueError, match="axis"):
        W.output_size_text(R.conv_arithmetic(5, 3), axis=2)


def test_figure():
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig = W.plot_conv_arithmetic()
    assert isinstance(fig, Figure) and len(fig.axes) == len(W.EXAMPLES)
    # Panel 1: 5x5 input, 'same' padding 1 -> 7x7 padded cells, 9 taps, 5x5 outputs.
    # (drawn as one PatchCollection)
    assert len(fig.axes[0].collections[0].get_paths()) == 49 + 9 + 25
    assert "reads 4 inputs, 5 zeros" in fig.axes[0].get_title()   # corner output (0, 0)
    plt.close(fig)


def test_widget_builds_and_updates():
    pytest.importorskip("ipywidgets", reason="ipywidgets is not installed")
    box = W.conv_arithmetic_widget()
    c = box.controls
    assert "= 5" in box.summary.value and "4 padding" not in box.summary.value
    assert c["row"].max == 4
    png = box.output.value
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    c["row"].value, c["col"].value = 4, 4
    assert box.output.value != png
    assert "(4, 4) reads 4 inputs" in box.summary.value
    c["padding"].value = "valid"                  # 3x3 output: the index is clamped
    assert c["row"].max == 2 and c["row"].value == 2
    assert "= 3" in box.summary.value and "(2, 2) reads 9 inputs" in box.summary.value
    c["stride"].value = 2
    assert "= 2" in box.summary.value
    c["padding"].value = "same"                   # same + stride 2 is not defined
    assert "no output" in box.summary.value and "stride" in box.summary.value
    assert box.output.value == b""
    c["stride"].value = 1
    c["kernel_size"].value, c["padding"].value, c["input_size"].value = 7, "valid", 3
    assert "no output" in box.summary.value

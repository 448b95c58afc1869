"""Tests for cnnlib.widgets.systolic: the example operands, the static strip and
the widget (builds, moves with its controls), over the state function that
tests/test_systolic.py checks by hand."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cnnlib.hardware import SystolicArray  # noqa: E402
from cnnlib.widgets import systolic as W  # noqa: E402


def test_example_operands():
    a, b = W.example_operands(2, 3, 2)
    np.testing.assert_array_equal(a, [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(b, [[1, 4], [2, 5], [3, 6]])
    assert a.dtype == b.dtype == np.int8


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_wavefront_reaches_every_pe_and_the_product_is_right(dataflow):
    a, b = W.example_operands()
    array = SystolicArray(4, 4, dataflow)
    last = array.state(a, b, 0)["fold_cycles"]
    touched = np.zeros((4, 4), bool)
    for t in range(last):
        s = array.state(a, b, t)
        touched |= s["active"]
        # the wavefront is an anti-diagonal band: active PEs share i + j within T
        i, j = np.nonzero(s["active"])
        if len(i):
            assert (i + j).max() - (i + j).min() <= 3
    assert touched.all()
    c, _ = array.matmul(a, b)
    np.testing.assert_array_equal(c, a.astype(np.int32) @ b.astype(np.int32))


@pytest.mark.parametrize("dataflow", ["os", "ws", "is"])
def test_plot_wavefront(dataflow):
    import matplotlib.pyplot as plt

    fig = W.plot_wavefront(dataflow, cycles=(0, 3, 6))
    assert len(fig.axes) == 3
    assert fig.axes[1].get_title().startswith("cycle 3")
    plt.close(fig)


def test_widget_builds_and_updates():
    pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets")
    box = W.systolic_widget("os", cycle=3)
    assert "cycle <b>3</b> of 14" in box.summary.value
    png = box.output.value
    box.controls["cycle"].value = 5
    assert "cycle <b>5</b>" in box.summary.value and box.output.value != png
    box.controls["dataflow"].value = "ws"
    assert box.controls["cycle"].max == 13 and "(stream)" in box.summary.value
    box.controls["cycle"].value = 1
    assert "(load)" in box.summary.value

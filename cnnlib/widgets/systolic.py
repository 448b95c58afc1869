"""Systolic-array widget: the operand wavefront moving through the PEs, cycle by cycle.

The computation is :meth:`cnnlib.hardware.systolic.SystolicArray.state` (the registers
of every PE after a given cycle); the figures only draw it.

* :func:`draw_state`: one cycle on one axis (active PEs coloured, register values written);
* :func:`plot_wavefront`: a static strip of a few cycles, for the published book;
* :func:`systolic_widget`: a cycle slider and a dataflow selector.

See the chapter "Accelerators" (Part V).
"""

import numpy as np

from ..hardware import SystolicArray
from . import figure_png

__all__ = ["example_operands", "draw_state", "plot_wavefront", "systolic_widget"]


def example_operands(n=4, k=4, m=4):
    """Small int8 operands a (N, K) = 1, 2, ... by rows and b (K, M) = 1, 2, ... by columns."""
    a = (np.arange(n * k) % 9 + 1).reshape(n, k).astype(np.int8)
    b = (np.arange(k * m) % 9 + 1).reshape(m, k).T.astype(np.int8).copy()
    return a, b


def draw_state(ax, state, dataflow, cycle):
    """Draw the array after one cycle: shaded = did a MAC; each PE shows its stationary value
    (bold) and the operands passing through (left: moving right; top: moving down)."""
    from matplotlib.patches import Rectangle

    rows, cols = state["active"].shape
    for i in range(rows):
        for j in range(cols):
            on = state["active"][i, j]
            ax.add_patch(Rectangle((j, i), 0.94, 0.94, color="tab:orange" if on else "0.92"))
            if state["stat_valid"][i, j]:
                ax.text(j + 0.47, i + 0.5, str(state["stat"][i, j]), ha="center", va="center",
                        fontsize=9, weight="bold")
            if state["left_valid"][i, j]:
                ax.text(j + 0.08, i + 0.2, str(state["left"][i, j]), fontsize=6.5, color="tab:blue")
            if state["top_valid"][i, j] or (dataflow != "os" and state["top"][i, j] != 0):
                ax.text(j + 0.86, i + 0.2, str(state["top"][i, j]), fontsize=6.5, color="tab:green",
                        ha="right")
    ax.set_xlim(-0.1, cols)
    ax.set_ylim(rows, -0.1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"cycle {cycle} ({state['phase']})", fontsize=9)
    return ax


def plot_wavefront(dataflow="os", rows=4, cols=4, cycles=(0, 2, 4, 6, 9), operands=None):
    """Figure: the array at a few cycles of the first fold of ``example_operands()`` (or ``operands``)."""
    import matplotlib.pyplot as plt

    a, b = example_operands() if operands is None else operands
    array = SystolicArray(rows, cols, dataflow)
    fig, axes = plt.subplots(1, len(cycles), figsize=(2.3 * len(cycles), 2.7))
    for ax, t in zip(np.atleast_1d(axes), cycles):
        draw_state(ax, array.state(a, b, t), dataflow, t)
    names = {"os": "output stationary: bold = running sums",
             "ws": "weight stationary: bold = weights, green = partial sums",
             "is": "input stationary: bold = inputs, green = partial sums"}
    fig.suptitle(f"{rows}x{cols} array, {names[dataflow]}; blue = operand moving right", fontsize=9)
    fig.tight_layout()
    return fig


def systolic_widget(dataflow="os", rows=4, cols=4, cycle=3):
    """Interactive: a cycle slider and a dataflow toggle over ``example_operands()``.

    Returns an ``ipywidgets.VBox`` with ``.controls`` (dict of the ``cycle``
    and ``dataflow`` widgets), ``.summary`` (HTML) and ``.output`` (Image).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    a, b = example_operands()
    flow = widgets.ToggleButtons(options=["os", "ws", "is"], value=dataflow, description="dataflow")
    slider = widgets.IntSlider(value=cycle, min=0, max=100, description="cycle")
    summary = widgets.HTML()
    output = widgets.Image(format="png")

    def update(_=None):
        array = SystolicArray(rows, cols, flow.value)
        last = array.state(a, b, 0)["fold_cycles"] - 1
        slider.max = last
        t = min(slider.value, last)
        state = array.state(a, b, t)
        summary.value = (f"cycle <b>{t}</b> of {last + 1} ({state['phase']}): "
                         f"<b>{int(state['active'].sum())}</b> of {rows * cols} PEs multiply")
        fig, ax = plt.subplots(figsize=(3.6, 3.6))
        draw_state(ax, state, flow.value, t)
        output.value = figure_png(fig)

    for control in (flow, slider):
        control.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([flow, slider]), summary, output])
    box.controls, box.summary, box.output = dict(cycle=slider, dataflow=flow), summary, output
    return box

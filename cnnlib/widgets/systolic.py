"""Systolic-array widget: the operand wavefront moving through the PEs, cycle by cycle.

The computation is :meth:`cnnlib.hardware.systolic.SystolicArray.state` (the registers
of every PE after a given cycle); the figures only draw it.

* :func:`draw_state`: one cycle on one axis (active PEs coloured, register values written);
* :func:`plot_wavefront`: a static strip of a few cycles, for the published book;
* :func:`render_systolic`: the picture and summary of one setting, which both
  :func:`systolic_widget` (a cycle slider and a dataflow selector, for
  Jupyter) and :func:`systolic_explorer` (the same, precomputed, for the
  static book) show.

See the chapter "Accelerators" (Part V).
"""

import numpy as np

from ..hardware import SystolicArray
from . import figure_png
from .explorer import MAX_BYTES, select, slider, static_explorer

__all__ = ["example_operands", "draw_state", "plot_wavefront", "last_cycle", "render_systolic",
           "systolic_widget", "systolic_explorer"]


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


def last_cycle(dataflow="os", rows=4, cols=4, operands=None):
    """The last cycle of the first fold of ``operands`` (default ``example_operands()``)."""
    a, b = example_operands() if operands is None else operands
    return SystolicArray(rows, cols, dataflow).state(a, b, 0)["fold_cycles"] - 1


def render_systolic(dataflow="os", cycle=3, rows=4, cols=4, operands=None, dpi=90):
    """The widget's picture and summary for one setting: (PNG bytes, summary HTML).

    ``cycle`` beyond the fold's last cycle shows the last one.  Both the
    live :func:`systolic_widget` and the static :func:`systolic_explorer` draw
    with this function.
    """
    import matplotlib.pyplot as plt

    a, b = example_operands() if operands is None else operands
    array = SystolicArray(rows, cols, dataflow)
    last = array.state(a, b, 0)["fold_cycles"] - 1
    t = min(int(cycle), last)
    state = array.state(a, b, t)
    summary = (f"cycle <b>{t}</b> of {last + 1} ({state['phase']}): "
               f"<b>{int(state['active'].sum())}</b> of {rows * cols} PEs multiply")
    fig, ax = plt.subplots(figsize=(3.6, 3.6))
    draw_state(ax, state, dataflow, t)
    return figure_png(fig, dpi), summary


def systolic_widget(dataflow="os", rows=4, cols=4, cycle=3):
    """Interactive: a cycle slider and a dataflow toggle over ``example_operands()``.

    Returns an ``ipywidgets.VBox`` with ``.controls`` (dict of the ``cycle``
    and ``dataflow`` widgets), ``.summary`` (HTML) and ``.output`` (Image).
    Draws with :func:`render_systolic`.
    """
    import ipywidgets as widgets

    flow = widgets.ToggleButtons(options=["os", "ws", "is"], value=dataflow, description="dataflow")
    slider = widgets.IntSlider(value=cycle, min=0, max=100, description="cycle")
    summary = widgets.HTML()
    output = widgets.Image(format="png")

    def update(_=None):
        slider.max = last_cycle(flow.value, rows, cols)
        output.value, summary.value = render_systolic(flow.value, slider.value, rows, cols)

    for control in (flow, slider):
        control.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([flow, slider]), summary, output])
    box.controls, box.summary, box.output = dict(cycle=slider, dataflow=flow), summary, output
    return box


def systolic_explorer(dataflow="os", rows=4, cols=4, cycle=3, dpi=90, max_bytes=MAX_BYTES):
    """The widget for the static book: every cycle of the three dataflows, precomputed.

    A :class:`cnnlib.widgets.explorer.StaticExplorer` over dataflow (os, ws,
    is) and cycle (0 to the last cycle of the longest dataflow; shorter ones
    stay on their last cycle), drawn by :func:`render_systolic`.
    """
    top = max(last_cycle(f, rows, cols) for f in ("os", "ws", "is"))
    controls = [select("dataflow", [("output stationary", "os"), ("weight stationary", "ws"),
                                    ("input stationary", "is")], initial=dataflow),
                slider("cycle", range(top + 1), initial=min(cycle, top))]
    return static_explorer(lambda dataflow, cycle: render_systolic(dataflow, cycle, rows, cols,
                                                                   dpi=dpi),
                           controls, title=f"{rows}x{cols} systolic array", max_bytes=max_bytes)

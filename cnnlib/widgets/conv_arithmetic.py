"""Convolution-arithmetic explorer: output size, and which inputs feed one output.

The computation is :func:`cnnlib.analysis.receptive.conv_arithmetic` (output size,
resolved padding) and its ``input_taps`` (the input positions, padding
included, under one output); :func:`output_size_text` spells the formula
with the numbers filled in.  The figures draw the padded input grid (padding
shaded), the taps of the chosen output (blue, orange where a tap reads a
padding zero) and the output grid, in the style of Dumoulin and Visin (2016).

See the chapter on convolution (Part II), section "Boundary handling".
"""

import html

import numpy as np

from ..analysis import receptive as R
from . import figure_png
from .explorer import MAX_BYTES, grid_with_defaults, select, slider, static_explorer

__all__ = ["output_size_text", "draw_conv_arithmetic", "plot_conv_arithmetic",
           "render_conv_arithmetic", "conv_arithmetic_widget", "conv_arithmetic_explorer",
           "EXPLORER_GRID"]

PADDINGS = ("valid", "same", "full", 0, 1, 2, 3)

#: (input_size, kernel_size, stride, padding, dilation, output_index) of the static figure.
EXAMPLES = ((5, 3, 1, "same", 1, (0, 0)), (5, 3, 2, 1, 1, (1, 2)), (7, 3, 1, 0, 2, (1, 0)))


def output_size_text(arith, axis=0):
    """The output-size formula of one axis of a :class:`cnnlib.analysis.receptive.ConvArithmetic`, numbers filled in.

    ``"floor((n + p_before + p_after - d(k - 1) - 1) / s) + 1 = out"``, e.g.
    ``"⌊(5 + 1 + 1 − 1·(3 − 1) − 1) / 2⌋ + 1 = 3"``.
    """
    if not isinstance(arith, R.ConvArithmetic):
        raise TypeError(f"arith must be a ConvArithmetic (from cnnlib.analysis.receptive.conv_arithmetic), "
                        f"got {type(arith).__name__}")
    if axis not in (0, 1):
        raise ValueError(f"axis must be 0 (height) or 1 (width), got {axis!r}")
    n, k, s = arith.input_size[axis], arith.kernel_size[axis], arith.stride[axis]
    (before, after), d = arith.padding[axis], arith.dilation[axis]
    return (f"⌊({n} + {before} + {after} − {d}·({k} − 1) − 1) / {s}⌋ + 1 "
            f"= {arith.output_size[axis]}")


def draw_conv_arithmetic(ax, arith, output_index=(0, 0)):
    """Draw padded input (left), output (right) and the taps of one output on one Axes; return ax."""
    from matplotlib.collections import PatchCollection
    from matplotlib.patches import Rectangle

    patches = []   # drawn as one collection, in this order: much faster than add_patch

    (top, bottom), (left, right) = arith.padding
    h, w = arith.input_size
    taps, in_padding = arith.input_taps(output_index)
    ho, wo = arith.output_size
    hp, wp = h + top + bottom, w + left + right
    # Padded input: cell (r, c) of the input sits at (r + top, c + left).
    for r in range(-top, h + bottom):
        for c in range(-left, w + right):
            pad = not (0 <= r < h and 0 <= c < w)
            patches.append(Rectangle((c + left, r + top), 1, 1, fc="0.88" if pad else "white",
                                   ec="0.6", lw=0.6, ls=":" if pad else "-"))
    for (r, c), pad in zip(taps, in_padding):
        patches.append(Rectangle((c + left + 0.1, r + top + 0.1), 0.8, 0.8,
                               fc="tab:orange" if pad else "tab:blue", alpha=0.85, ec="none"))
    gap = 1.5
    x0, y0 = wp + gap, (hp - ho) / 2
    for i in range(ho):
        for j in range(wo):
            chosen = (i, j) == tuple(output_index)
            patches.append(Rectangle((x0 + j, y0 + i), 1, 1, fc="tab:green" if chosen else "white",
                                   ec="0.4", lw=0.8))
    ax.add_collection(PatchCollection(patches, match_original=True), autolim=False)
    ax.set_xlim(-0.2, x0 + wo + 0.2)
    ax.set_ylim(max(hp, y0 + ho) + 0.2, -0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    pad_text = (f"{top}" if top == bottom == left == right
                else f"({top},{bottom}),({left},{right})")
    ax.set_title(f"in {h}×{w}, k={arith.kernel_size[0]}, s={arith.stride[0]}, p={pad_text}, "
                 f"d={arith.dilation[0]} → out {ho}×{wo}\noutput {tuple(output_index)} reads "
                 f"{int((~in_padding).sum())} inputs, {int(in_padding.sum())} zeros", fontsize=10)
    return ax


def plot_conv_arithmetic(examples=EXAMPLES):
    """Figure: two or three convolution settings, each with the taps of one chosen output.

    ``examples``: sequence of (input_size, kernel_size, stride, padding, dilation, output_index).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(examples), figsize=(3.6 * len(examples), 2.9))
    for ax, (n, k, s, p, d, idx) in zip(np.atleast_1d(axes), examples):
        draw_conv_arithmetic(ax, R.conv_arithmetic(n, k, s, p, d), idx)
    fig.tight_layout()
    return fig


def render_conv_arithmetic(input_size=5, kernel_size=3, stride=1, padding="same", dilation=1,
                           row=0, col=0, dpi=90):
    """The widget's picture and summary for one setting: (PNG bytes, summary HTML).

    ``row`` and ``col`` (the output inspected) are clamped to the output;
    a setting with no output gives ``b""`` and the error message.  Both
    :func:`conv_arithmetic_widget` and :func:`conv_arithmetic_explorer` draw
    with this function.
    """
    import matplotlib.pyplot as plt

    try:
        arith = R.conv_arithmetic(input_size, kernel_size, stride, padding, dilation)
    except ValueError as e:
        return b"", f"<b>no output:</b> {html.escape(str(e))}"
    idx = (min(max(int(row), 0), arith.output_size[0] - 1),
           min(max(int(col), 0), arith.output_size[1] - 1))
    taps, in_padding = arith.input_taps(idx)
    inside = [tuple(int(v) for v in t) for t, p in zip(taps, in_padding) if not p]
    summary = (
        f"output size: {output_size_text(arith)} (both axes); "
        f"effective kernel {arith.effective_kernel_size[0]}<br>"
        f"output {idx} reads {len(inside)} inputs {inside} and {int(in_padding.sum())} padding zeros")
    fig, ax = plt.subplots(figsize=(7, 4))
    draw_conv_arithmetic(ax, arith, idx)
    return figure_png(fig, dpi), summary


def conv_arithmetic_widget(input_size=5, kernel_size=3, stride=1, padding="same", dilation=1):
    """Interactive explorer: sliders for size, kernel, stride, dilation, a padding menu, and the output to inspect.

    Returns an ``ipywidgets.VBox`` with ``.controls`` (dict: ``input_size``,
    ``kernel_size``, ``stride``, ``padding``, ``dilation``, ``row``, ``col``),
    ``.summary`` (HTML: the formula and the taps) and ``.output`` (an Image
    widget holding the figure as PNG, so no output capture is needed).
    Settings that have no output (a kernel larger than the padded input,
    ``"same"`` with stride > 1) show the error message instead.  Draws with
    :func:`render_conv_arithmetic`.
    """
    import ipywidgets as widgets

    c = dict(
        input_size=widgets.IntSlider(value=input_size, min=1, max=12, description="input n"),
        kernel_size=widgets.IntSlider(value=kernel_size, min=1, max=7, description="kernel k"),
        stride=widgets.IntSlider(value=stride, min=1, max=4, description="stride s"),
        padding=widgets.Dropdown(options=[(str(p), p) for p in PADDINGS], value=padding,
                                 description="padding p"),
        dilation=widgets.IntSlider(value=dilation, min=1, max=4, description="dilation d"),
        row=widgets.IntSlider(value=0, min=0, max=0, description="output row"),
        col=widgets.IntSlider(value=0, min=0, max=0, description="output col"),
    )
    summary = widgets.HTML()
    output = widgets.Image(format="png")
    busy = []   # set while update() moves the row/col sliders itself
    names = ("input_size", "kernel_size", "stride", "padding", "dilation")

    def update(_=None):
        if busy:
            return
        settings = {name: c[name].value for name in names}
        try:
            arith = R.conv_arithmetic(*settings.values())
        except ValueError:
            arith = None
        if arith is not None:
            busy.append(True)
            try:
                for name, n in (("row", arith.output_size[0]), ("col", arith.output_size[1])):
                    c[name].max = n - 1   # clamps the value too
            finally:
                busy.clear()
        output.value, summary.value = render_conv_arithmetic(**settings, row=c["row"].value,
                                                             col=c["col"].value)

    for control in c.values():
        control.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([c["input_size"], c["kernel_size"], c["stride"]]),
                        widgets.HBox([c["padding"], c["dilation"]]),
                        widgets.HBox([c["row"], c["col"]]), summary, output])
    box.controls, box.summary, box.output = c, summary, output
    return box


#: The grid of :func:`conv_arithmetic_explorer`.
EXPLORER_GRID = dict(input_size=(5, 6), kernel_size=(1, 3, 5), stride=(1, 2),
                     padding=("valid", "same", "full", 1), dilation=(1, 2),
                     output=("corner", "centre"))


def _output_index(arith, output):
    if output == "corner":
        return 0, 0
    return tuple(n // 2 for n in arith.output_size)


def conv_arithmetic_explorer(grid=None, dpi=60, max_bytes=MAX_BYTES):
    """The widget for the static book: :func:`render_conv_arithmetic` over a coarse grid.

    ``grid`` (default :data:`EXPLORER_GRID`) gives the values of each control;
    ``output`` is "corner" (output (0, 0)) or "centre".  Returns a
    :class:`cnnlib.widgets.explorer.StaticExplorer`.
    """
    g = grid_with_defaults(grid, EXPLORER_GRID)

    def render(input_size, kernel_size, stride, padding, dilation, output):
        try:
            arith = R.conv_arithmetic(input_size, kernel_size, stride, padding, dilation)
        except ValueError:
            row = col = 0
        else:
            row, col = _output_index(arith, output)
        return render_conv_arithmetic(input_size, kernel_size, stride, padding, dilation, row,
                                      col, dpi=dpi)

    controls = [slider("input_size", g["input_size"], "input n", initial=5),
                slider("kernel_size", g["kernel_size"], "kernel k", initial=3),
                slider("stride", g["stride"], "stride s", initial=1),
                select("padding", g["padding"], "padding p", initial="same"),
                slider("dilation", g["dilation"], "dilation d", initial=1),
                select("output", g["output"], "output")]
    return static_explorer(render, controls, title="Convolution arithmetic",
                           max_bytes=max_bytes)

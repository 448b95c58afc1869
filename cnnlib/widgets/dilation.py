"""Dilation widget: the taps of a dilated kernel, and what a stack of dilated layers sees.

The computation is :mod:`cnnlib.analysis.receptive` (``dilated_taps``,
``effective_kernel_size``, ``receptive_field``, ``stack_coverage``) and
:func:`dilation_stack_summary` below; the figures only draw it.

* :func:`plot_dilation`: one kernel at two or three dilations, taps on the input grid.
* :func:`plot_gridding`: path counts of stacks of dilated layers (zeros = holes).
* :func:`render_dilation`: the picture and summary of one setting, shown by
  :func:`dilation_widget` (sliders for kernel size and dilation, a text box
  for the dilations of a stack) and :func:`dilation_explorer` (the same over
  a coarse grid, precomputed for the static book).

See the chapter on convolution (Part II), section "Dilated convolution".
"""

import html

import numpy as np

from .._validate import _is_int
from ..analysis import receptive as R
from . import figure_png
from .explorer import MAX_BYTES, select, slider, static_explorer

__all__ = ["parse_dilations", "stack_layers", "dilation_stack_summary", "draw_taps",
           "draw_coverage", "plot_dilation", "plot_gridding", "render_dilation", "dilation_widget",
           "dilation_explorer"]

_MARGIN = 2   # input positions drawn beyond the receptive field on each side


def parse_dilations(text):
    """Dilations of a stack from text such as ``"1, 2, 5"`` (commas or spaces).

    Returns a tuple of positive ints; raises ``ValueError`` naming the text otherwise.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    parts = text.replace(",", " ").split()
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"dilations must be positive ints separated by commas, got {text!r}")
    return tuple(int(p) for p in parts)


def stack_layers(dilations, kernel_size=3):
    """``[(kernel_size, 1, d) for d in dilations]``: a stride-1, unpadded stack for ``cnnlib.analysis.receptive``."""
    if not isinstance(dilations, (tuple, list)) or not dilations:
        raise ValueError(f"dilations must be a non-empty tuple or list of ints, got {dilations!r}")
    for d in dilations:
        if not _is_int(d) or d < 1:
            raise ValueError(f"dilations must hold positive ints, got {dilations!r}")
    if not _is_int(kernel_size) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive int, got {kernel_size!r}")
    return [(int(kernel_size), 1, int(d)) for d in dilations]


def dilation_stack_summary(dilations, kernel_size=3):
    """What one output of a stack of stride-1 dilated k x k layers sees, in 2-D.

    Inputs: dilations (sequence of positive ints, one per layer); kernel_size (int).
    Returns a dict: ``effective_kernel_sizes`` (k + (k-1)(d-1) per layer),
    ``receptive_field`` r (the side of the square the unit spans),
    ``coverage`` (int array (r, r): paths from each input of that square to
    the unit; 0 = a hole), ``seen`` (inputs with at least one path),
    ``seen_fraction`` (seen / r^2) and ``holes`` (r^2 - seen).
    See the chapter on convolution (Part II).
    """
    layers = stack_layers(dilations, kernel_size)
    r = R.receptive_field(layers).size
    coverage = R.stack_coverage(layers, (r, r), output_index=(0, 0))
    seen = int(np.count_nonzero(coverage))
    return dict(effective_kernel_sizes=[R.effective_kernel_size(k, d) for k, _, d in layers],
                receptive_field=r, coverage=coverage, seen=seen,
                seen_fraction=seen / r ** 2, holes=r ** 2 - seen)


def _grid(ax, size, offset=0):
    """Light lines around each cell of a size x size grid of input positions."""
    for t in range(size + 1):
        ax.plot([t - 0.5 + offset, t - 0.5 + offset], [-0.5 + offset, size - 0.5 + offset],
                color="0.8", lw=0.6)
        ax.plot([-0.5 + offset, size - 0.5 + offset], [t - 0.5 + offset, t - 0.5 + offset],
                color="0.8", lw=0.6)


def draw_taps(ax, kernel_size, dilation, grid_size=None):
    """Draw the taps of one dilated k x k kernel (filled cells) on an input grid; return ax."""
    from matplotlib.patches import Rectangle

    span = R.effective_kernel_size(kernel_size, dilation)
    grid_size = span + 2 * _MARGIN if grid_size is None else grid_size
    start = (grid_size - span) // 2
    for r, c in R.dilated_taps(kernel_size, dilation) + start:
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, color="tab:blue"))
    ax.add_patch(Rectangle((start - 0.5, start - 0.5), span, span, fill=False, ls="--",
                           ec="tab:orange", lw=1.2))
    _grid(ax, grid_size)
    ax.set_xlim(-0.5, grid_size - 0.5)
    ax.set_ylim(grid_size - 0.5, -0.5)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"k={kernel_size}, d={dilation}: spans {span}×{span}", fontsize=10)
    return ax


def draw_coverage(ax, dilations, kernel_size=3):
    """Draw the path counts of a stack (white = input never seen); return the image."""
    info = dilation_stack_summary(dilations, kernel_size)
    cov = info["coverage"].astype(float)
    shown = np.ma.masked_where(cov == 0, cov)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="white")
    im = ax.imshow(shown, cmap=cmap, interpolation="nearest")
    r = info["receptive_field"]
    if r <= 40:
        _grid(ax, r)
    ax.set_xticks([])
    ax.set_yticks([])
    names = ", ".join(str(d) for d in dilations)
    ax.set_title(f"dilations {names}: {r}×{r},\n{100 * info['seen_fraction']:.0f}% of inputs seen",
                 fontsize=10)
    return im


def plot_dilation(kernel_size=3, dilations=(1, 2, 3)):
    """Figure: the taps of one k x k kernel at two or three dilations on the same input grid."""
    import matplotlib.pyplot as plt

    grid = R.effective_kernel_size(kernel_size, max(dilations)) + 2 * _MARGIN
    fig, axes = plt.subplots(1, len(dilations), figsize=(3.2 * len(dilations), 3.4))
    for ax, d in zip(np.atleast_1d(axes), dilations):
        draw_taps(ax, kernel_size, d, grid)
    fig.tight_layout()
    return fig


def plot_gridding(stacks=((1, 1, 1), (2, 2, 2), (1, 2, 5)), kernel_size=3):
    """Figure: what one output of each stack of dilated layers sees (path counts; white = holes)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(stacks), figsize=(3.4 * len(stacks), 3.8))
    for ax, dilations in zip(np.atleast_1d(axes), stacks):
        im = draw_coverage(ax, tuple(dilations), kernel_size)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="paths")
    fig.tight_layout()
    return fig


def render_dilation(kernel_size=3, dilation=2, stack="2, 2, 2", dpi=90):
    """The widget's picture and summary for one setting: (PNG bytes, summary HTML).

    ``stack``: the dilations of the stack, as text (``"1, 2, 5"``) or a
    sequence of ints; text that does not parse gives ``b""`` and the error.
    Both :func:`dilation_widget` and :func:`dilation_explorer` draw with this.
    """
    import matplotlib.pyplot as plt

    try:
        dilations = parse_dilations(stack) if isinstance(stack, str) else tuple(stack)
        info = dilation_stack_summary(dilations, kernel_size)
    except ValueError as e:
        return b"", f"<b>{html.escape(str(e))}</b>"
    summary = (
        f"one layer: effective kernel {kernel_size} + ({kernel_size}-1)({dilation}-1) = "
        f"<b>{R.effective_kernel_size(kernel_size, dilation)}</b>; "
        f"stack {list(dilations)}: receptive field <b>{info['receptive_field']}</b>, "
        f"<b>{info['holes']}</b> of {info['receptive_field'] ** 2} inputs never seen "
        f"({100 * info['seen_fraction']:.1f}% seen)")
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.8))
    draw_taps(a, kernel_size, dilation)
    draw_coverage(b, dilations, kernel_size)
    return figure_png(fig, dpi), summary


def dilation_widget(kernel_size=3, dilation=2, stack="2, 2, 2"):
    """Interactive: kernel size and dilation sliders (taps), a text box of stack dilations (coverage).

    Returns an ``ipywidgets.VBox`` with ``.controls`` (dict of the
    ``kernel_size``, ``dilation`` and ``stack`` widgets), ``.summary`` (an
    HTML widget with the numbers) and ``.output`` (an Image widget holding
    the figure as PNG, so no output capture is needed).  Draws with
    :func:`render_dilation`; text that does not parse keeps the last picture.
    """
    import ipywidgets as widgets

    k = widgets.IntSlider(value=kernel_size, min=1, max=7, description="kernel k")
    d = widgets.IntSlider(value=dilation, min=1, max=6, description="dilation d")
    text = widgets.Text(value=stack, description="stack d's", continuous_update=False)
    summary = widgets.HTML()
    output = widgets.Image(format="png")

    def update(_=None):
        png, summary.value = render_dilation(k.value, d.value, text.value)
        if png:
            output.value = png

    for control in (k, d, text):
        control.observe(update, names="value")
    update()
    box = widgets.VBox([widgets.HBox([k, d, text]), summary, output])
    box.controls, box.summary, box.output = dict(kernel_size=k, dilation=d, stack=text), summary, output
    return box


#: The stacks offered by :func:`dilation_explorer`.
EXPLORER_STACKS = ("1, 1, 1", "2, 2, 2", "1, 2, 4", "1, 2, 5", "1, 2, 3, 5")


def dilation_explorer(kernel_sizes=(2, 3, 5), dilations=(1, 2, 3, 4), stacks=EXPLORER_STACKS,
                      dpi=72, max_bytes=MAX_BYTES):
    """The widget for the static book: :func:`render_dilation` over a coarse grid.

    Sliders for the kernel size and the dilation, a menu of stacks (text
    as in the live widget's box).  Returns a
    :class:`cnnlib.widgets.explorer.StaticExplorer`.
    """
    for text in stacks:
        parse_dilations(text)
    controls = [slider("kernel_size", kernel_sizes, "kernel k", initial=3 if 3 in kernel_sizes
                       else None),
                slider("dilation", dilations, "dilation d", initial=2 if 2 in dilations else None),
                select("stack", stacks, "stack d's")]
    return static_explorer(lambda kernel_size, dilation, stack: render_dilation(
        kernel_size, dilation, stack, dpi=dpi), controls, title="Dilated convolution",
        max_bytes=max_bytes)

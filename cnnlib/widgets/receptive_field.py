"""Receptive-field growth widget: which part of an image one output unit sees.

Choose a stack of layers (number, kernel, stride, dilation, padding,
optional 2 x 2 pooling after each); the region of a real image that one
output unit depends on is drawn, with the closed form
``r = 1 + sum_l (k_l' - 1) prod_{i<l} s_i`` (``k_l' = d_l(k_l - 1) + 1``,
Araujo et al., 2019) beside the exact back-projected region of
:func:`cnnlib.analysis.receptive.receptive_field_region`.  The two differ at the
borders: the closed form counts inputs in the padding, the exact region
does not.

The computation is :func:`receptive_field_view` (plain NumPy, tested); the
rest draws.  See Part I, section "Core ideas" (1.1).
"""

import numpy as np

from .._validate import _is_int, check_bool, pair
from ..analysis.receptive import (
    check_layers,
    layer_lengths,
    receptive_field,
    receptive_field_region,
    stack_coverage,
)
from . import figure_png
from .explorer import MAX_BYTES, grid_with_defaults, select, slider, static_explorer

__all__ = ["uniform_stack", "digit_mosaic", "receptive_field_view", "format_closed_form",
           "plot_receptive_field", "render_receptive_field", "receptive_field_widget",
           "receptive_field_explorer", "EXPLORER_GRID"]


def uniform_stack(num_layers, kernel_size=3, stride=1, dilation=1, padding="valid", pool=False):
    """``num_layers`` identical layers, optionally each followed by 2 x 2 pooling with stride 2.

    Returns a list of (kernel_size, stride, dilation, padding) tuples, the
    layer format of :mod:`cnnlib.analysis.receptive`.  See Part I, section 1.1.
    """
    if not _is_int(num_layers) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
    layer = (kernel_size, stride, dilation, padding)
    layers = []
    for _ in range(int(num_layers)):
        layers.append(layer)
        if check_bool(pool, "pool"):
            layers.append((2, 2, 1, 0))
    check_layers(layers)
    return layers


def digit_mosaic(images, grid=(3, 3)):
    """Tile ``rows * cols`` images into one larger image, row by row, scaled to [0, 1].

    images: (N, h, w) uint8 (raw MNIST) or float, N >= rows * cols; grid: int or (rows, cols).
    Returns a float64 array (rows*h, cols*w).  See Part I, section 1.1.
    """
    rows, cols = pair(grid, "grid", 1)
    x = np.asarray(images)
    if x.ndim != 3:
        raise ValueError(f"images must be 3-d (N, h, w), got shape {x.shape}")
    if x.shape[0] < rows * cols:
        raise ValueError(f"images must hold at least {rows * cols} images for grid "
                         f"{(rows, cols)}, got {x.shape[0]}")
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    else:
        raise TypeError(f"images must be uint8 or float, got dtype {x.dtype}")
    h, w = x.shape[1:]
    tiles = x[:rows * cols].reshape(rows, cols, h, w)
    return tiles.transpose(0, 2, 1, 3).reshape(rows * h, cols * w)


def _unit(unit, out_size):
    if unit == "centre":
        return tuple(n // 2 for n in out_size)
    if unit == "corner":
        return (0, 0)
    if isinstance(unit, (tuple, list)):
        i, j = pair(unit, "unit", 0)
        if i >= out_size[0] or j >= out_size[1]:
            raise ValueError(f"unit must lie in the output of size {out_size}, got {unit!r}")
        return i, j
    raise ValueError(f"unit must be 'centre', 'corner' or a pair (i, j), got {unit!r}")


def receptive_field_view(layers, image_size, unit="centre"):
    """Everything the widget draws for one stack, one image size and one output unit.

    Inputs: layers as for :func:`cnnlib.analysis.receptive.receptive_field`; image_size
    (H, W) or int; unit "centre" (the output unit ``(H'//2, W'//2)``),
    "corner" ((0, 0)) or an (i, j) pair.
    Returns a dict:

    - "output_size": (H', W'), the last layer's map; "unit": (i, j);
    - "closed_form": :class:`~cnnlib.analysis.receptive.ReceptiveField` (size r, stride S, start);
    - "closed_box": ((top, bottom), (left, right)), the closed-form span
      ``[start + i*S, start + i*S + r)`` per axis, not clipped (may reach into the padding);
    - "region": the exact ((top, bottom), (left, right)) of
      :func:`~cnnlib.analysis.receptive.receptive_field_region` (inside the image);
    - "coverage": (H, W) int64, the number of paths from each input pixel to
      the unit (0 outside the region and at the holes of dilated stacks);
    - "growth": list of r after each layer (the closed form of the first l layers).

    Raises ValueError when the stack leaves no output for this image size.
    See Part I, section 1.1.
    """
    checked = check_layers(layers)
    size = pair(image_size, "image_size", 1)
    out_size = tuple(layer_lengths(checked, n)[-1] for n in size)
    i, j = _unit(unit, out_size)
    rf = receptive_field(layers)
    box = tuple((rf.start + t * rf.stride, rf.start + t * rf.stride + rf.size) for t in (i, j))
    return {
        "output_size": out_size,
        "unit": (i, j),
        "closed_form": rf,
        "closed_box": box,
        "region": receptive_field_region(layers, (i, j), size),
        "coverage": stack_coverage(layers, size, (i, j)),
        "growth": [receptive_field(layers[:n]).size for n in range(1, len(layers) + 1)],
    }


def format_closed_form(layers):
    """The closed form written out: ``"1 + 4·1 + 1·1 + 4·2 + 1·2 = 16"``.

    One term ``(k_l' - 1)·prod_{i<l} s_i`` per layer, ``k_l'`` the effective
    (dilated) kernel size.  Returns a str.  See Part I, section 1.1.
    """
    checked = check_layers(layers)
    terms, jump = ["1"], 1
    for layer in checked:
        terms.append(f"{layer.d * (layer.k - 1)}·{jump}")
        jump *= layer.s
    return " + ".join(terms) + f" = {receptive_field(layers).size}"


def _draw(ax, image, view, title):
    from matplotlib.patches import Rectangle

    h, w = image.shape
    ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    cov = view["coverage"].astype(float)
    if cov.max() > 0:
        shown = np.ma.masked_equal(cov, 0) / cov.max()
        ax.imshow(shown, cmap="autumn_r", alpha=0.45, vmin=0, vmax=1,
                  extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    (t0, t1), (l0, l1) = view["closed_box"]
    ax.add_patch(Rectangle((l0 - 0.5, t0 - 0.5), l1 - l0, t1 - t0, fill=False, ls="--", lw=1.5,
                           ec="tab:blue", label=f"closed form, r = {view['closed_form'].size}"))
    (r0, r1), (c0, c1) = view["region"]
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, lw=2,
                           ec="tab:red", label=f"exact region {r1 - r0}×{c1 - c0}"))
    ax.add_patch(Rectangle((-0.5, -0.5), w, h, fill=False, lw=0.8, ec="0.5"))
    lo = min(0, t0, l0) - 1
    ax.set_xlim(lo - 0.5, max(w, l1, t1) + 0.5)
    ax.set_ylim(max(h, t1, l1) + 0.5, lo - 0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=8, frameon=False)


def plot_receptive_field(image, settings, unit="centre"):
    """Static figure: for each setting, the region of ``image`` one output unit sees, and r by depth.

    image: (H, W) float in [0, 1] (e.g. :func:`digit_mosaic`); settings: a
    list of (label, layers); unit as in :func:`receptive_field_view`.  Each
    panel shows the coverage (paths per pixel, shaded), the exact region (red)
    and the closed-form box (dashed blue, which may reach into the padding);
    the last panel plots r after each layer for every setting.
    Returns a matplotlib Figure.  See Part I, section 1.1.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-d (H, W), got shape {img.shape}")
    if not isinstance(settings, (list, tuple)) or not settings:
        raise ValueError("settings must be a non-empty list of (label, layers)")
    views = []
    for s in settings:
        if not isinstance(s, (list, tuple)) or len(s) != 2 or not isinstance(s[0], str):
            raise ValueError(f"each setting must be (label, layers), got {s!r}")
        views.append((s[0], receptive_field_view(s[1], img.shape, unit)))
    fig, axes = plt.subplots(1, len(views) + 1, figsize=(3.4 * (len(views) + 1), 3.9),
                             layout="constrained")
    for ax, (label, view) in zip(axes, views):
        rf = view["closed_form"]
        _draw(ax, img, view, f"{label}\noutput {view['output_size'][0]}×{view['output_size'][1]}, "
                             f"unit {view['unit']}, S = {rf.stride}")
    ax = axes[-1]
    for label, view in views:
        depth = np.arange(1, len(view["growth"]) + 1)
        ax.plot(depth, view["growth"], marker="o", label=label)
    if max(max(view["growth"]) for _, view in views) > img.shape[0] / 2:
        ax.axhline(img.shape[0], color="0.5", ls=":", lw=1, label=f"image height {img.shape[0]}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layers")
    ax.set_ylabel("receptive field r (pixels)")
    ax.set_title("growth of r with depth", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def render_receptive_field(image, layers=3, kernel=3, stride=1, dilation=1, padding="valid",
                           pool=False, unit="centre", dpi=80):
    """The widget's picture and summary for one setting: (PNG bytes, summary HTML).

    The stack is ``uniform_stack(layers, kernel, stride, dilation, padding,
    pool)``; a stack that leaves no output gives ``b""`` and the error.
    Both :func:`receptive_field_widget` and :func:`receptive_field_explorer`
    draw with this function.  See Part I, section 1.1.
    """
    import html

    img = _check_image(image)
    stack = uniform_stack(layers, kernel, stride, dilation, padding, pool)
    try:
        view = receptive_field_view(stack, img.shape, unit)
    except ValueError as e:
        return b"", f"<b>No output:</b> {html.escape(str(e))}"
    (r0, r1), (c0, c1) = view["region"]
    summary = (f"r = {format_closed_form(stack)}; output map "
               f"{view['output_size'][0]}×{view['output_size'][1]}; exact region "
               f"rows [{r0}, {r1}), columns [{c0}, {c1}) ({r1 - r0}×{c1 - c0})")
    fig = plot_receptive_field(img, [("chosen stack", stack)], unit)
    return figure_png(fig, dpi=dpi), summary


def _check_image(image):
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-d (H, W), got shape {img.shape}")
    return img


def receptive_field_widget(image):
    """Interactive receptive-field explorer (ipywidgets) around :func:`receptive_field_view`.

    Controls: number of layers, kernel, stride, dilation, padding, "2×2 pool
    after each layer", and the unit (centre or corner).  A line of text gives
    the closed form written out and the exact region; the figure is
    :func:`plot_receptive_field` for the chosen stack (both from
    :func:`render_receptive_field`).  image: (H, W) float in [0, 1].
    Returns an ``ipywidgets.VBox``; its ``controls`` attribute maps names to
    the control widgets, ``text`` is the HTML line and ``picture`` the figure (an ``Image``).  See Part I, section 1.1.
    """

    import ipywidgets as w

    img = _check_image(image)
    controls = {
        "layers": w.IntSlider(3, min=1, max=8, description="layers"),
        "kernel": w.IntSlider(3, min=1, max=7, description="kernel"),
        "stride": w.IntSlider(1, min=1, max=3, description="stride"),
        "dilation": w.IntSlider(1, min=1, max=4, description="dilation"),
        "padding": w.Dropdown(options=["valid", "same"], value="valid", description="padding"),
        "pool": w.Checkbox(False, description="2×2 pool after each"),
        "unit": w.Dropdown(options=["centre", "corner"], value="centre", description="unit"),
    }
    text = w.HTML()
    picture = w.Image(format="png")   # a PNG, not an Output widget: no kernel-side capture needed

    def update(change=None):
        picture.value, text.value = render_receptive_field(
            img, **{k: v.value for k, v in controls.items()})

    for control in controls.values():
        control.observe(update, names="value")
    update()
    box = w.VBox([w.HBox([controls["layers"], controls["kernel"], controls["stride"]]),
                  w.HBox([controls["dilation"], controls["padding"], controls["unit"]]),
                  controls["pool"], text, picture])
    box.controls = controls
    box.text = text
    box.picture = picture
    return box


#: The grid of :func:`receptive_field_explorer` (the live widget's other controls stay at
#: dilation 1, valid padding, the centre unit).
EXPLORER_GRID = dict(layers=(1, 2, 3, 4, 5, 6), kernel=(3, 5), stride=(1, 2),
                     pool=(False, True))


def receptive_field_explorer(image, grid=None, dpi=70, max_bytes=MAX_BYTES):
    """The widget for the static book: :func:`render_receptive_field` over a coarse grid.

    ``grid`` (default :data:`EXPLORER_GRID`) gives the values of layers,
    kernel, stride and pool.  Returns a
    :class:`cnnlib.widgets.explorer.StaticExplorer`.  See Part I, section 1.1.
    """
    img = _check_image(image)
    g = grid_with_defaults(grid, EXPLORER_GRID)
    controls = [slider("layers", g["layers"], initial=3 if 3 in g["layers"] else None),
                slider("kernel", g["kernel"]),
                slider("stride", g["stride"]),
                select("pool", [("2×2 after each" if p else "no", bool(p)) for p in g["pool"]],
                       "pooling")]
    return static_explorer(lambda layers, kernel, stride, pool: render_receptive_field(
        img, layers, kernel, stride, pool=pool, dpi=dpi), controls,
        title="Receptive field of one output unit", max_bytes=max_bytes)

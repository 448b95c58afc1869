"""The "pooling invariance" widget and the figures of the pooling chapter (Part II).

Shift an image by a slider and watch its feature maps before and after
pooling, with an invariance score, for max, average and stochastic pooling.
The computation is :func:`cnnlib.analysis.invariance.pooling_invariance`; this module
adds the few measurements the chapter reports over many images or draws
(:func:`invariance_curves`, :func:`coarse_shift_error`,
:func:`stochastic_sampling_frequencies`), the static figures for the HTML
book (``plot_*``) and the thin ipywidgets wrapper
(:func:`pooling_invariance_widget`).  matplotlib and ipywidgets are imported
inside the functions that draw.
"""

import numbers

import numpy as np

from .._random import get_rng
from .._validate import check_float_array, pair
from ..analysis.invariance import pooling_invariance, shift_image
from ..ops.pool_variants import fractional_intervals, stochastic_pool2d
from . import figure_png
from .explorer import MAX_BYTES, select, slider, static_explorer

__all__ = ["invariance_curves", "coarse_shift_error", "stochastic_sampling_frequencies",
           "plot_maps", "plot_pooling_invariance", "plot_invariance_curves",
           "plot_fractional_intervals", "plot_sampling_frequencies", "render_pooling_invariance",
           "pooling_invariance_widget", "pooling_invariance_explorer"]

POOLS = ("max", "avg", "stochastic")
_NAMES = {"max": "max", "avg": "average", "stochastic": "stochastic"}


def _check_pools(pools):
    if isinstance(pools, str):
        pools = (pools,)
    if not isinstance(pools, (list, tuple)) or not pools:
        raise TypeError(f"pools must be a non-empty list of pool names, got {pools!r}")
    for p in pools:
        if p not in POOLS:
            raise ValueError(f"pools must hold 'max', 'avg' or 'stochastic', got {p!r}")
    return tuple(pools)


# ----------------------------------------------------------------------------
# Measurements
# ----------------------------------------------------------------------------

def invariance_curves(images, shifts, pools=POOLS, kernel_size=2, conv_weight=None, rng=0, *,
                      training=False):
    """Mean change of the feature maps and of each pooled map when the images shift.

    For every image and every shift s, :func:`cnnlib.analysis.invariance.pooling_invariance`
    gives ||F_s - F_0|| / ||F_0|| (the features) and ||P_s - P_0|| / ||P_0||
    (each pooling in ``pools``); this returns their means over the images.
    Stochastic pooling uses ``training`` (default False: the deterministic
    test-time average) and draws from ``rng`` (a seed makes it repeatable).

    images: (N, H, W) or (N, C, H, W) float; conv_weight: (C_out, C, k, k) or None.
    Returns a dict: "shifts" (S, 2) int, "feature_change" (S,) and one (S,)
    float64 array per pool name.
    See the chapter on pooling (Part II).
    """
    x = check_float_array(images, "images", ndim=(3, 4))
    pools = _check_pools(pools)
    gen = get_rng(rng)
    result = {p: np.zeros(len(shifts)) for p in pools}
    result["feature_change"] = np.zeros(len(shifts))
    for image in x:
        for p in pools:
            r = pooling_invariance(image, shifts, pool=p, kernel_size=kernel_size,
                                   conv_weight=conv_weight, rng=gen, training=training)
            result[p] += r["relative_change"] / len(x)
        result["feature_change"] += r["feature_change"] / len(x)
        result["shifts"] = r["shifts"]
    return result


def coarse_shift_error(image, shift, pool="max", kernel_size=2, conv_weight=None):
    """How far the pooled map of a shifted image is from a shifted pooled map.

    A shift s of the input can at best shift the pooled map (stride k) by
    s / k.  This returns min_m ||P(S_s x) - S_m P(x)|| / ||P(x)||, m running
    over the coarse shifts floor(s / k) and ceil(s / k) on each axis: exactly
    0 (away from the borders) when s is a multiple of the stride, and the
    aliasing error otherwise.  ``pool`` is "max", "avg" or "stochastic" (its
    deterministic test-time form).  ``shift`` is an int (dx) or (dx, dy).

    image: (H, W) or (C, H, W) float; conv_weight as in ``pooling_invariance``.
    Returns a dict: "error" (float) and "coarse_shift" (mx, my), the best m.
    See the chapter on pooling (Part II).
    """
    r = pooling_invariance(image, [(0, 0), shift], pool=pool, kernel_size=kernel_size,
                           conv_weight=conv_weight, training=False)
    p0, ps = r["pooled"][0].astype(np.float64), r["pooled"][1].astype(np.float64)
    (dx, dy), (kh, kw) = r["shifts"][1], pair(kernel_size, "kernel_size", 1)
    norm = np.linalg.norm(p0)
    best, best_m = np.inf, (0, 0)
    for mx in sorted({dx // kw, -(-dx // kw)}):
        for my in sorted({dy // kh, -(-dy // kh)}):
            diff = np.linalg.norm(ps - shift_image(p0, int(mx), int(my)))
            err = (0.0 if diff == 0 else np.inf) if norm == 0 else diff / norm
            if err < best:
                best, best_m = err, (int(mx), int(my))
    return {"error": float(best), "coarse_shift": best_m}


def stochastic_sampling_frequencies(window, draws=10000, rng=None):
    """Sample one window with stochastic pooling many times and count the picks.

    ``window`` (kH, kW), non-negative, not all zero, is pooled ``draws`` times
    by :func:`cnnlib.functional.stochastic_pool2d` (training mode, one
    independent draw each).  Returns a dict: "frequencies" (kH, kW), the
    fraction of draws that picked each element; "probabilities" (kH, kW),
    Zeiler and Fergus's p_i = a_i / sum_j a_j; "mean_training_output", the
    mean of the sampled outputs; "test_output", the test-time value
    sum_i p_i a_i; "std_training_output".  Deterministic for a seeded ``rng``.
    See the chapter on pooling (Part II).
    """
    a = check_float_array(window, "window", ndim=2)
    if isinstance(draws, bool) or not isinstance(draws, numbers.Integral):
        raise TypeError(f"draws must be an int, got {draws!r}")
    if draws < 1:
        raise ValueError(f"draws must be positive, got {draws}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or not np.any(a > 0):
        raise ValueError("window must be finite, non-negative and not all zero, got "
                         f"{a.tolist()}")
    kh, kw = a.shape
    x = np.ascontiguousarray(np.broadcast_to(a, (int(draws), 1, kh, kw)))
    y, idx = stochastic_pool2d(x, (kh, kw), training=True, return_indices=True, rng=rng)
    counts = np.bincount(idx.ravel(), minlength=kh * kw).reshape(kh, kw)
    test = stochastic_pool2d(a[None, None], (kh, kw), training=False)
    p = a.astype(np.float64) / a.sum(dtype=np.float64)
    return {"frequencies": counts / draws, "probabilities": p,
            "mean_training_output": float(y.mean(dtype=np.float64)),
            "std_training_output": float(y.std(dtype=np.float64)),
            "test_output": float(test.item())}


# ----------------------------------------------------------------------------
# Static figures
# ----------------------------------------------------------------------------

def plot_maps(maps, titles=None, ncols=None, scale=1.6, cmap="gray_r", suptitle=None):
    """Show 2-d arrays side by side (one row, or rows of ``ncols``); return the Figure."""
    import matplotlib.pyplot as plt

    maps = [np.asarray(m) for m in maps]
    if not maps or any(m.ndim != 2 for m in maps):
        raise ValueError("maps must be a non-empty list of 2-d arrays")
    ncols = len(maps) if ncols is None else ncols
    nrows = -(-len(maps) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * 1.15 * nrows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, m) in enumerate(zip(axes.flat, maps)):
        ax.imshow(m, cmap=cmap, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def _invariance_row(axes, image, shift, pools, kernel_size, conv_weight, channel, rng, training,
                    vmax=None):
    """Draw shifted input, its feature map and the pooled maps in ``axes``; return the scores."""
    scores = {}
    first = None
    for ax, pool in zip(axes[2:], pools):
        r = pooling_invariance(image, [shift], pool=pool, kernel_size=kernel_size,
                               conv_weight=conv_weight, rng=rng, training=training)
        if first is None:
            first = r
        scores[pool] = (float(r["relative_change"][0]), float(r["cosine"][0]))
        ax.imshow(r["pooled"][0, channel], cmap="magma", vmin=0, vmax=vmax,
                  interpolation="nearest")
        ax.set_title(f"{_NAMES[pool]} pool\nchange {scores[pool][0]:.2f}, "
                     f"cos {scores[pool][1]:.2f}", fontsize=9)
    x = check_float_array(image, "image", ndim=(2, 3))
    dx, dy = (int(v) for v in first["shifts"][0])
    shifted = shift_image(x, dx, dy)
    axes[0].imshow(shifted if shifted.ndim == 2 else shifted[0], cmap="gray_r",
                   interpolation="nearest")
    axes[0].set_title(f"input, shift ({dx}, {dy})", fontsize=9)
    axes[1].imshow(first["features"][0, channel], cmap="magma", vmin=0, vmax=vmax,
                   interpolation="nearest")
    axes[1].set_title(f"feature map {channel}\nchange {first['feature_change'][0]:.2f}",
                      fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    scores["features"] = float(first["feature_change"][0])
    return scores


def plot_pooling_invariance(image, shifts=(0, 1, 2), pools=POOLS, kernel_size=2,
                            conv_weight=None, channel=0, rng=0, training=False, scale=1.7):
    """The widget's static form: one row per shift (input, feature map, pooled maps).

    Each pooled map is titled with its relative change ||P_s - P_0|| / ||P_0||
    and cosine against the unshifted image (see ``pooling_invariance``).
    image: (H, W) or (C, H, W); ``channel`` picks the feature map shown.
    Returns the Figure.  See the chapter on pooling (Part II).
    """
    import matplotlib.pyplot as plt

    pools = _check_pools(pools)
    base = pooling_invariance(image, [0], pool="max", kernel_size=kernel_size,
                              conv_weight=conv_weight)
    n_channels = base["features"].shape[1]
    if isinstance(channel, bool) or not isinstance(channel, numbers.Integral) \
            or not 0 <= channel < n_channels:
        raise ValueError(f"channel must be an int in [0, {n_channels}), got {channel!r}")
    vmax = float(base["features"][0, channel].max()) or 1.0
    ncols = 2 + len(pools)
    fig, axes = plt.subplots(len(shifts), ncols, figsize=(scale * ncols, 1.3 * scale * len(shifts)),
                             squeeze=False)
    for row, shift in zip(axes, shifts):
        _invariance_row(row, image, shift, pools, kernel_size, conv_weight, channel,
                        get_rng(rng), training, vmax)
    fig.tight_layout()
    return fig


def plot_invariance_curves(curves, ax=None, title=None):
    """Mean relative change against the horizontal shift, one line per map; return the Axes.

    ``curves`` is the dict of :func:`invariance_curves`.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.4))
    dx = curves["shifts"][:, 0]
    ax.plot(dx, curves["feature_change"], "k--o", label="feature map (before pooling)")
    for pool, marker in zip(POOLS, "sov"):
        if pool in curves:
            ax.plot(dx, curves[pool], marker=marker, label=f"{_NAMES[pool]} pooling")
    ax.set_xlabel("shift of the input (pixels)")
    ax.set_ylabel(r"relative change $\|P_s - P_0\| / \|P_0\|$")
    ax.set_xticks(dx)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_fractional_intervals(input_size, output_size, kernel_size=2, sample=0.5, rng=0,
                              scale=1.0):
    """The windows of fractional max pooling along one axis, for the four variants.

    Panels: pseudo-random and random sequences, each overlapping (windows of
    ``kernel_size``) and disjoint.  Each window i is a bar over the input
    positions [start, stop) it covers.  ``sample`` drives the pseudo-random
    sequence, ``rng`` the random one.  Returns the Figure.
    See the chapter on pooling (Part II).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10 * scale, 6 * scale), sharex=True, sharey=True)
    for ax, (sequence, overlapping) in zip(axes.flat, [("pseudo", True), ("pseudo", False),
                                                       ("random", True), ("random", False)]):
        starts, stops = fractional_intervals(
            input_size, output_size, kernel_size,
            sample=sample if sequence == "pseudo" else None, sequence=sequence,
            overlapping=overlapping, rng=rng)
        for i, (a, b) in enumerate(zip(starts, stops)):
            ax.barh(i, b - a, left=a, height=0.7, color=f"C{(b - a - 1) % 10}", edgecolor="k",
                    linewidth=0.5)
        steps = np.diff(starts)
        kind = "overlapping" if overlapping else "disjoint"
        ax.set_title(f"{sequence}, {kind}: steps {''.join(str(s) for s in steps)}", fontsize=9)
        ax.set_xlim(0, input_size)
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("input position")
    for ax in axes[:, 0]:
        ax.set_ylabel("output index")
    fig.tight_layout()
    return fig


def plot_sampling_frequencies(result, ax=None):
    """Bars: empirical pick frequencies against p_i = a_i / sum a; return the Axes.

    ``result`` is the dict of :func:`stochastic_sampling_frequencies`.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3))
    f, p = result["frequencies"].ravel(), result["probabilities"].ravel()
    i = np.arange(len(p))
    ax.bar(i - 0.2, p, width=0.4, label=r"$p_i = a_i / \sum_j a_j$")
    ax.bar(i + 0.2, f, width=0.4, label="sampled frequency")
    ax.set_xticks(i)
    ax.set_xlabel("element of the window (row-major)")
    ax.set_ylabel("probability")
    ax.legend(fontsize=8)
    return ax


# ----------------------------------------------------------------------------
# Widget
# ----------------------------------------------------------------------------

def _pooling_view(x, conv_weight, shift_x, shift_y, pool, window, channel, sample, seed, dpi):
    """(PNG bytes, summary HTML, scores dict) of one setting of the pooling widget."""
    import matplotlib.pyplot as plt

    dx, dy = int(shift_x), int(shift_y)
    r = pooling_invariance(x, [(0, 0), (dx, dy)], pool=pool, kernel_size=window,
                           conv_weight=conv_weight, rng=seed, training=sample)
    vmax = float(r["features"][0, channel].max()) or 1.0
    shifted = shift_image(x, dx, dy)
    panels = [(shifted if shifted.ndim == 2 else shifted[0], "shifted input", "gray_r"),
              (r["features"][1, channel], f"feature map {channel}", "magma"),
              (r["pooled"][0, channel], "pooled, no shift", "magma"),
              (r["pooled"][1, channel], f"pooled, shift ({dx}, {dy})", "magma")]
    fig, axes = plt.subplots(1, 4, figsize=(9, 2.4))
    for ax, (m, title, cmap) in zip(axes, panels):
        ax.imshow(m, cmap=cmap, vmin=0, vmax=None if cmap == "gray_r" else vmax,
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    scores = {"feature_change": float(r["feature_change"][1]),
              "relative_change": float(r["relative_change"][1]),
              "cosine": float(r["cosine"][1]),
              "zero_shift_change": float(r["relative_change"][0])}
    summary = (f"<b>{_NAMES[pool]} pooling {window}x{window}</b>: feature maps "
               f"change {scores['feature_change']:.3f}, pooled maps change "
               f"{scores['relative_change']:.3f} (cosine "
               f"{scores['cosine']:.3f}); with no shift: "
               f"{scores['zero_shift_change']:.3f}")
    return figure_png(fig, dpi=dpi), summary, scores


def _check_widget_input(image, conv_weight):
    x = check_float_array(image, "image", ndim=(2, 3))
    n_channels = pooling_invariance(x, [0], conv_weight=conv_weight)["features"].shape[1]
    return x, n_channels


def render_pooling_invariance(image, conv_weight=None, shift_x=0, shift_y=0, pool="max",
                              window=2, channel=0, sample=False, seed=0, dpi=80):
    """The widget's picture and summary for one setting: (PNG bytes, summary HTML).

    Arguments as the controls of :func:`pooling_invariance_widget`; both it
    and :func:`pooling_invariance_explorer` draw with this function.
    """
    x, _ = _check_widget_input(image, conv_weight)
    return _pooling_view(x, conv_weight, shift_x, shift_y, _check_pools(pool)[0], window,
                         channel, sample, seed, dpi)[:2]


def pooling_invariance_widget(image, conv_weight=None, max_shift=6, seed=0):
    """Shift ``image`` with sliders; see a feature map before and after pooling.

    Controls: horizontal and vertical shift, the pooling ("max", "avg",
    "stochastic"), its window (= stride), the feature map shown, and for
    stochastic pooling whether to sample (training; a fresh draw from
    ``seed`` for each picture, so even a zero shift scores above 0) or take
    the test-time average.  Shows the shifted input, its feature map, the
    pooled map of the unshifted and of the shifted image, and the scores of
    :func:`cnnlib.analysis.invariance.pooling_invariance`.  The picture is a PNG in an
    ``ipywidgets.Image`` (no Output widget, so it also works where outputs
    are not routed to widgets), drawn as by :func:`render_pooling_invariance`.
    Returns an ``ipywidgets.VBox`` with two
    extra attributes: ``controls`` (a dict of the control widgets by
    description) and ``result`` (the last scores, a dict).
    See the chapter on pooling (Part II).
    """

    import ipywidgets as widgets

    x, n_channels = _check_widget_input(image, conv_weight)
    if isinstance(max_shift, bool) or not isinstance(max_shift, numbers.Integral) \
            or max_shift < 1:
        raise ValueError(f"max_shift must be a positive int, got {max_shift!r}")

    shift = dict(min=-max_shift, max=max_shift, step=1, value=0, continuous_update=False)
    controls = [
        widgets.IntSlider(description="shift x", **shift),
        widgets.IntSlider(description="shift y", **shift),
        widgets.Dropdown(options=[("max", "max"), ("average", "avg"),
                                  ("stochastic", "stochastic")], value="max",
                         description="pooling"),
        widgets.Dropdown(options=[2, 3, 4], value=2, description="window"),
        widgets.IntSlider(min=0, max=n_channels - 1, value=0, description="map",
                          continuous_update=False),
        widgets.Checkbox(value=False, description="sample (training)"),
    ]
    picture = widgets.Image(format="png")
    text = widgets.HTML()
    box = widgets.VBox([widgets.HBox(controls[:3]), widgets.HBox(controls[3:]), picture, text])
    box.controls = {c.description: c for c in controls}

    def update(change=None):
        picture.value, text.value, box.result = _pooling_view(
            x, conv_weight, *(c.value for c in controls), seed, 80)

    for c in controls:
        c.observe(update, names="value")
    update()
    return box


def pooling_invariance_explorer(image, conv_weight=None, shifts_x=range(-3, 4), shifts_y=(0, 1),
                                pools=POOLS, windows=(2,), channel=0, seed=0, dpi=80,
                                max_bytes=MAX_BYTES):
    """The widget for the static book: :func:`render_pooling_invariance` over a coarse grid.

    Sliders for the two shifts, menus for the pooling and (if more than one)
    the window; stochastic pooling at its test-time average; one feature map
    (``channel``).  Returns a :class:`cnnlib.widgets.explorer.StaticExplorer`.
    """
    x, n_channels = _check_widget_input(image, conv_weight)
    pools = _check_pools(pools)
    if isinstance(channel, bool) or not isinstance(channel, numbers.Integral) \
            or not 0 <= channel < n_channels:
        raise ValueError(f"channel must be an int in [0, {n_channels}), got {channel!r}")
    controls = [slider("shift_x", shifts_x, "shift x", initial=0 if 0 in shifts_x else None),
                slider("shift_y", shifts_y, "shift y", initial=0 if 0 in shifts_y else None),
                select("pool", [(_NAMES[p], p) for p in pools], "pooling")]
    if len(windows) > 1:
        controls.append(select("window", windows, "window"))

    def render(shift_x, shift_y, pool, window=windows[0]):
        return _pooling_view(x, conv_weight, shift_x, shift_y, pool, window, channel, False,
                             seed, dpi)[:2]

    return static_explorer(render, controls, title="Pooling and small shifts",
                           max_bytes=max_bytes)

"""The "loss-scaling overflow" widget of the memory chapter (Part III).

A histogram of real gradient values, as log2 of their magnitude, drawn against
float16's limits: below 2**-24 a value rounds to zero (underflow), below
2**-14 it is subnormal (fewer significant bits), above 65504 it becomes inf
(overflow).  Multiplying the loss by a scale s shifts every gradient by
log2(s) on this axis; a slider moves s and the text reports the fractions
from :func:`cnnlib.training.amp.fp16_categories`.  Beside it, the scale trajectory of
a short training run with :class:`cnnlib.training.amp.LossScaler`.
matplotlib and ipywidgets are imported inside the functions that draw.
"""

import numpy as np

from ..training.amp import FP16_MAX, FP16_MIN_NORMAL, FP16_MIN_SUBNORMAL, fp16_categories
from . import figure_png
from .explorer import MAX_BYTES, slider, static_explorer

__all__ = ["log2_magnitudes", "plot_loss_scaling", "render_loss_scaling", "loss_scaling_widget",
           "loss_scaling_explorer"]


def log2_magnitudes(values):
    """log2 |v| of the non-zero finite values (1-d float64 array)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v) & (v != 0)]
    if v.size == 0:
        raise ValueError("values must hold at least one non-zero finite number")
    return np.log2(np.abs(v))


def _draw_histogram(ax, logs, scale, bins):
    shift = np.log2(scale)
    ax.hist(logs + shift, bins=bins, color="0.45")
    lo, hi = -34, 22
    ax.axvspan(lo, np.log2(FP16_MIN_SUBNORMAL) - 1, color="tab:blue", alpha=0.15)
    ax.axvspan(np.log2(FP16_MIN_SUBNORMAL) - 1, np.log2(FP16_MIN_NORMAL), color="tab:cyan",
               alpha=0.15)
    ax.axvspan(np.log2(FP16_MAX), hi, color="tab:red", alpha=0.15)
    c = fp16_categories(2.0 ** logs, scale)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("log2 |scale x gradient|")
    ax.set_title(f"scale 2^{shift:.0f}: {100 * c['underflow']:.1f}% underflow, "
                 f"{100 * c['subnormal']:.1f}% subnormal, {100 * c['overflow']:.2f}% overflow",
                 fontsize=9)
    return c


def _draw_trajectory(ax, history):
    scale = np.asarray(history["scale"])
    skipped = ~np.asarray(history["stepped"], dtype=bool)
    steps = np.arange(len(scale))
    ax.step(steps, np.log2(scale), where="post", color="tab:green")
    ax.plot(steps[skipped], np.log2(scale[skipped]), "rx", label="inf/nan: step skipped")
    ax.set_xlabel("step")
    ax.set_ylabel("log2 scale")
    ax.set_title("loss scale during training", fontsize=9)
    if skipped.any():
        ax.legend(fontsize=8, loc="lower right")


def plot_loss_scaling(values, scales=(1.0, 2.0 ** 8, 2.0 ** 16), history=None, bins=60):
    """Static figure: the gradient histogram at two or three scales (and a trajectory).

    values: gradients (any shape, float); scales: positive numbers;
    history: optional dict with "scale" and "stepped" arrays (from
    :func:`cnnlib.training.amp.train_mixed_precision`).  Shaded: underflow (blue),
    subnormal (cyan), overflow (red).  Returns the Figure.
    """
    import matplotlib.pyplot as plt

    logs = log2_magnitudes(values)
    scales = list(scales)
    if not scales or any(not (np.isfinite(s) and s > 0) for s in scales):
        raise ValueError(f"scales must be a non-empty list of positive numbers, got {scales!r}")
    n = len(scales) + (history is not None)
    fig, axes = plt.subplots(n, 1, figsize=(7, 2.2 * n), squeeze=False)
    for ax, s in zip(axes[:, 0], scales):
        _draw_histogram(ax, logs, s, bins)
    if history is not None:
        _draw_trajectory(axes[-1, 0], history)
    fig.tight_layout()
    return fig


def _check_max_log2_scale(max_log2_scale):
    if isinstance(max_log2_scale, bool) or not isinstance(max_log2_scale, (int, np.integer)) \
            or not 1 <= max_log2_scale <= 40:
        raise ValueError(f"max_log2_scale must be an int in [1, 40], got {max_log2_scale!r}")
    return int(max_log2_scale)


def _loss_scaling_view(logs, history, log2_scale, dpi):
    import matplotlib.pyplot as plt

    scale = 2.0 ** log2_scale
    ncols = 1 + (history is not None)
    fig, axes = plt.subplots(1, ncols, figsize=(5 * ncols, 2.8), squeeze=False)
    c = _draw_histogram(axes[0, 0], logs, scale, 60)
    if history is not None:
        _draw_trajectory(axes[0, 1], history)
    summary = (f"scale 2^{log2_scale}: {100 * c['underflow']:.2f}% of the gradients "
               f"round to zero, {100 * c['subnormal']:.2f}% are subnormal, "
               f"{100 * c['overflow']:.3f}% overflow to inf")
    return figure_png(fig, dpi=dpi), summary, c


def render_loss_scaling(values, log2_scale=0, history=None, dpi=80):
    """The widget's picture and summary at one loss scale 2**log2_scale: (PNG bytes, summary HTML).

    Both :func:`loss_scaling_widget` and :func:`loss_scaling_explorer` draw
    with this function.
    """
    png, summary, _ = _loss_scaling_view(log2_magnitudes(values), history, log2_scale, dpi)
    return png, summary


def loss_scaling_widget(values, history=None, max_log2_scale=24):
    """A slider for log2 of the loss scale, the histogram it gives and the trajectory.

    Returns an ``ipywidgets.VBox`` with two extra attributes: ``controls``
    (the slider, by description) and ``result`` (the last
    :func:`cnnlib.training.amp.fp16_categories` dict).  The picture is a PNG in an
    ``ipywidgets.Image``, drawn as by :func:`render_loss_scaling`.
    """

    import ipywidgets as widgets

    logs = log2_magnitudes(values)
    top = _check_max_log2_scale(max_log2_scale)
    slider_ = widgets.IntSlider(min=0, max=top, value=0, description="log2 scale",
                                continuous_update=False)
    picture = widgets.Image(format="png")
    text = widgets.HTML()
    box = widgets.VBox([slider_, picture, text])
    box.controls = {slider_.description: slider_}

    def update(change=None):
        picture.value, text.value, box.result = _loss_scaling_view(logs, history, slider_.value,
                                                                   80)

    slider_.observe(update, names="value")
    update()
    return box


def loss_scaling_explorer(values, history=None, max_log2_scale=24, step=1, dpi=80,
                          max_bytes=MAX_BYTES):
    """The widget for the static book: the log2-scale slider at 0, step, 2 step, ... max_log2_scale.

    Draws with :func:`render_loss_scaling`; returns a
    :class:`cnnlib.widgets.explorer.StaticExplorer`.
    """
    logs = log2_magnitudes(values)
    top = _check_max_log2_scale(max_log2_scale)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 1 <= step <= top:
        raise ValueError(f"step must be an int in [1, max_log2_scale], got {step!r}")
    controls = [slider("log2_scale", range(0, top + 1, int(step)), "log2 scale")]
    return static_explorer(lambda log2_scale: _loss_scaling_view(logs, history, log2_scale,
                                                                 dpi)[:2],
                           controls, title="Loss scaling in float16", max_bytes=max_bytes)

"""Looking inside a trained network: feature maps by depth and occlusion sensitivity.

:func:`feature_maps` runs a :class:`~cnnlib.nn.Sequential` layer by layer and
keeps every intermediate activation (the hierarchy of features, from edges
to parts).  :func:`occlusion_sensitivity` slides a grey square over each
image and records how much the probability of the true class drops, the
experiment of Zeiler and Fergus (2014) that shows which part of the input a
prediction rests on.  See Part I, section "Core ideas" (1.1).
"""

import numpy as np

from .._validate import _is_int, check_float_array, pair
from ..nn.module import Module, Sequential
from ..ops.loss import softmax

__all__ = ["feature_maps", "occlusion_positions", "occlusion_sensitivity", "plot_filters",
           "plot_feature_maps", "plot_occlusion"]


def feature_maps(model, x):
    """The activation after every layer of a Sequential model.

    Runs ``x`` through ``model[0]``, ``model[1]``, ... and records each output.
    Names are ``"<index> <ClassName>"`` (``"0 Conv2d"``, ``"1 ReLU"``, ...).

    Inputs: model, a ``cnnlib.nn.Sequential``; x, a float array of the shape
    and dtype the model takes (for LeNet-5: (N, 1, 28, 28) float32,
    normalised with ``model.preprocess``).
    Returns a list of (name, activation) with one entry per layer; the last
    activation equals ``model(x)``.  See Part I, section 1.1.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a cnnlib.nn.Sequential, got {type(model).__name__}")
    if len(model) == 0:
        raise ValueError("model must have at least one layer, got an empty Sequential")
    x = check_float_array(x, "x")
    out = []
    for i, layer in enumerate(model):
        x = layer(x)
        out.append((f"{i} {type(layer).__name__}", x))
    return out


def _check_images(images):
    x = check_float_array(images, "images", ndim=(3, 4))
    return x[:, None] if x.ndim == 3 else x


def _check_labels(labels, n):
    y = np.asarray(labels)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},) (one per image), got {y.shape}")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"labels must be integer class indices, got dtype {y.dtype}")
    return y.astype(np.int64)


def occlusion_positions(image_size, patch=6, stride=2):
    """Top-left corners of the occluding patches along each axis.

    Patch (a, b) covers rows ``[a*sH, a*sH + pH)`` and columns
    ``[b*sW, b*sW + pW)``; there are ``(H - pH) // sH + 1`` rows of them.
    Inputs: image_size (H, W), patch and stride, int or pair.
    Returns (rows, cols), two int arrays.  See Part I, section 1.1.
    """
    h, w = pair(image_size, "image_size", 1)
    (ph, pw), (sh, sw) = pair(patch, "patch", 1), pair(stride, "stride", 1)
    if ph > h or pw > w:
        raise ValueError(f"patch {(ph, pw)} is larger than the image ({h}x{w})")
    return np.arange(0, h - ph + 1, sh), np.arange(0, w - pw + 1, sw)


def _probabilities(model, batch):
    logits = np.asarray(model(batch))
    if logits.ndim != 2 or logits.shape[0] != batch.shape[0]:
        raise ValueError(f"model must return logits of shape (N, classes), got {logits.shape} "
                         f"for {batch.shape[0]} images")
    return softmax(np.ascontiguousarray(logits), dim=1)


def occlusion_sensitivity(model, images, labels, patch=6, stride=2, fill=0.0, batch_size=512):
    """Drop in the true-class probability when a square of the image is covered.

    For each image x with label y and each patch position (a, b) (see
    :func:`occlusion_positions`), the patch is set to ``fill`` and
    ``p_y(x) - p_y(x with patch (a, b) covered)`` is recorded, p the softmax of
    the model's logits (Zeiler and Fergus, 2014).  Large positive values mark
    the regions the prediction relies on; negative values, regions whose
    removal makes the model more sure.  All occluded copies of all images are
    evaluated in batches of ``batch_size``, a ``cnnlib.nn.Module`` in
    evaluation mode (each layer's mode is restored afterwards).

    Inputs: model, a callable (e.g. ``cnnlib.nn.Module``) mapping
    (B, C, H, W) to logits (B, K); images (N, C, H, W) or (N, H, W), float, in
    the model's input space (for LeNet-5, after ``model.preprocess``; the
    blank background is then ``-MNIST_MEAN / MNIST_STD``); labels (N,) ints;
    patch, stride: int or pair; fill: a number, the value written into the patch.
    Returns a float64 array (N, H', W') with ``H' = (H - pH) // sH + 1``.
    See Part I, section 1.1.
    """
    if not callable(model):
        raise TypeError(f"model must be callable, got {type(model).__name__}")
    x = _check_images(images)
    y = _check_labels(labels, x.shape[0])
    if isinstance(fill, bool) or not isinstance(fill, (int, float, np.integer, np.floating)):
        raise TypeError(f"fill must be a number, got {fill!r}")
    if not np.isfinite(fill):
        raise ValueError(f"fill must be finite, got {fill!r}")
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n, _, h, w = x.shape
    rows, cols = occlusion_positions((h, w), patch, stride)
    ph, pw = pair(patch, "patch", 1)
    modes = []
    if isinstance(model, Module):  # evaluation mode for the measurement, then restore each layer's
        modes = [(mod, mod.training) for _, mod in model.named_modules()]
        model.eval()
    try:
        base = _probabilities(model, x)
        if y.size and (y.min() < 0 or y.max() >= base.shape[1]):
            raise ValueError(f"labels must lie in [0, {base.shape[1]}), got values in "
                             f"[{y.min()}, {y.max()}]")
        m = len(rows) * len(cols)
        # (image, row, col) of every occluded copy, in the order of the output array
        idx = np.arange(n * m)
        img, r, c = idx // m, rows[(idx % m) // len(cols)], cols[idx % len(cols)]
        drop = np.empty(n * m)
        fill_value = x.dtype.type(fill)
        for start in range(0, n * m, batch_size):
            sl = slice(start, min(start + batch_size, n * m))
            batch = x[img[sl]].copy()
            for t, (a, b) in enumerate(zip(r[sl], c[sl])):
                batch[t, :, a:a + ph, b:b + pw] = fill_value
            p = _probabilities(model, batch)
            drop[sl] = base[img[sl], y[img[sl]]] - p[np.arange(len(batch)), y[img[sl]]]
    finally:
        for mod, mode in modes:
            object.__setattr__(mod, "training", mode)
    return drop.reshape(n, len(rows), len(cols))


def _grid(n, ncols):
    ncols = min(ncols, n)
    return (n + ncols - 1) // ncols, ncols


def plot_filters(weight, ncols=8, title=None, scale=0.9):
    """Draw the k x k kernels of a convolution, one small image per (output, input) pair.

    weight: (C_out, C_in, k, k); each kernel gets its own symmetric colour
    scale (red positive, blue negative).  Returns a matplotlib Figure.
    See Part I, section 1.1.
    """
    import matplotlib.pyplot as plt

    w = np.asarray(weight)
    if w.ndim != 4:
        raise ValueError(f"weight must be 4-d (C_out, C_in, k, k), got shape {w.shape}")
    kernels = w.reshape(-1, *w.shape[2:])
    rows, cols = _grid(len(kernels), ncols)
    fig, axes = plt.subplots(rows, cols, figsize=(scale * cols, scale * rows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, k in zip(axes.ravel(), kernels):
        m = np.abs(k).max() or 1.0
        ax.imshow(k, cmap="RdBu_r", vmin=-m, vmax=m)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plot_feature_maps(maps, index=0, max_channels=16, scale=0.9):
    """Draw the feature maps of one example, one row per recorded layer.

    maps: the list of (name, activation) of :func:`feature_maps`, or a subset
    of it; 4-d activations (N, C, H, W) are drawn, up to ``max_channels`` each
    (others are skipped).  Returns a matplotlib Figure.  See Part I, section 1.1.
    """
    import matplotlib.pyplot as plt

    rows = [(n, a) for n, a in maps if np.ndim(a) == 4]
    if not rows:
        raise ValueError("maps must contain at least one 4-d (N, C, H, W) activation")
    cols = min(max_channels, max(a.shape[1] for _, a in rows))
    fig, axes = plt.subplots(len(rows), cols, figsize=(scale * cols, scale * len(rows) + 0.3),
                             squeeze=False)
    for r, (name, a) in enumerate(rows):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < a.shape[1]:
                ax.imshow(a[index, c], cmap="viridis")
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(f"{name}\n{a.shape[2]}×{a.shape[3]}", fontsize=8)
    return fig


def plot_occlusion(images, sensitivity, patch=6, stride=2, titles=None, scale=1.6):
    """Draw each image above its occlusion-sensitivity map, aligned to the patch centres.

    images: (N, H, W) (or (N, 1, H, W)); sensitivity: (N, H', W') from
    :func:`occlusion_sensitivity` with the same patch and stride.  The map is
    drawn over the image, each value at the centre of its patch (red: covering
    it lowers the true-class probability), on its own symmetric colour scale;
    the largest drop is written below.  Returns a matplotlib Figure.
    See Part I, section 1.1.
    """
    import matplotlib.pyplot as plt

    x = np.asarray(images)
    x = x[:, 0] if x.ndim == 4 else x
    s = np.asarray(sensitivity)
    if x.ndim != 3 or s.ndim != 3 or len(x) != len(s):
        raise ValueError(f"images (N, H, W) and sensitivity (N, H', W') must match, got shapes "
                         f"{np.shape(images)} and {s.shape}")
    rows_, cols_ = occlusion_positions(x.shape[1:], patch, stride)
    if s.shape[1:] != (len(rows_), len(cols_)):
        raise ValueError(f"sensitivity must have shape (N, {len(rows_)}, {len(cols_)}) for patch "
                         f"{patch} and stride {stride}, got {s.shape}")
    (ph, pw), (sh, sw) = pair(patch, "patch", 1), pair(stride, "stride", 1)
    extent = (cols_[0] + (pw - 1) / 2 - sw / 2, cols_[-1] + (pw - 1) / 2 + sw / 2,
              rows_[-1] + (ph - 1) / 2 + sh / 2, rows_[0] + (ph - 1) / 2 - sh / 2)
    n = len(x)
    fig, axes = plt.subplots(2, n, figsize=(scale * n, 2 * scale + 0.3), squeeze=False)
    for t in range(n):
        m = max(np.abs(s[t]).max(), 1e-12)
        axes[0, t].imshow(x[t], cmap="gray_r")
        axes[1, t].imshow(x[t], cmap="gray_r", alpha=0.35)
        axes[1, t].imshow(s[t], cmap="RdBu_r", vmin=-m, vmax=m, alpha=0.8, extent=extent)
        axes[1, t].set_xlim(-0.5, x.shape[2] - 0.5)
        axes[1, t].set_ylim(x.shape[1] - 0.5, -0.5)
        axes[1, t].set_xlabel(f"max drop {s[t].max():.2f}", fontsize=8)
        if titles is not None:
            axes[0, t].set_title(titles[t], fontsize=8)
        for ax in axes[:, t]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=8)
    axes[1, 0].set_ylabel("probability drop", fontsize=8)
    return fig

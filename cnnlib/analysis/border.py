"""What padding does to the border of a feature map.

* :func:`conv2d_padding_mode`: ``conv2d`` with ``padding_mode`` ``"zeros"``,
  ``"reflect"``, ``"replicate"`` or ``"circular"`` (the choices of
  ``torch.nn.Conv2d``), with its backward.  Every padded pixel is a copy of
  an input pixel (or a zero), found through an index map, so the backward
  adds each padded pixel's gradient back onto its source.
* :func:`border_distance` and :func:`mean_by_border_distance`: how far each
  pixel is from the nearest edge, and the mean of a map at each distance,
  to measure how a response changes towards the border.
* :func:`power_law_image`: a synthetic grey image with the ``1/f^alpha``
  amplitude spectrum of natural images, a stand-in when no photograph is at
  hand.

See the chapter on convolution (Part II), section "Boundary handling".
"""

import numpy as np

from .._random import get_rng
from .._validate import _is_int, check_float_array, pair
from ..functional import conv2d, conv2d_backward, resolve_padding

__all__ = ["conv2d_padding_mode", "conv2d_padding_mode_backward", "border_distance",
           "mean_by_border_distance", "power_law_image"]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
_NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def _source_indices(size, before, after, mode):
    """Input index of each padded position along one axis; -1 where it is a zero."""
    if mode == "zeros":
        return np.concatenate([np.full(before, -1), np.arange(size), np.full(after, -1)])
    if mode == "reflect" and max(before, after) >= size:
        raise ValueError(f"padding_mode='reflect' needs padding < input size along each axis, "
                         f"got padding ({before}, {after}) for size {size}")
    if mode == "circular" and max(before, after) > size:
        raise ValueError(f"padding_mode='circular' needs padding <= input size along each axis, "
                         f"got padding ({before}, {after}) for size {size}")
    return np.pad(np.arange(size), (before, after), mode=_NUMPY_MODE[mode])


def _settings(input, weight, stride, padding, dilation, groups, padding_mode):
    x = check_float_array(input, "input", ndim=4)
    w = check_float_array(weight, "weight", ndim=4)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
    pads = resolve_padding(padding, pair(stride, "stride", 1), pair(dilation, "dilation", 1),
                            w.shape[2:])
    rows = _source_indices(x.shape[2], *pads[0], padding_mode)
    cols = _source_indices(x.shape[3], *pads[1], padding_mode)
    return x, w, rows, cols


def _gather(x, rows, cols):
    """Padded copy of x: xp[..., a, b] = x[..., rows[a], cols[b]], zero where either is -1."""
    xp = x[:, :, np.maximum(rows, 0)][:, :, :, np.maximum(cols, 0)]
    zero = (rows[:, None] < 0) | (cols[None, :] < 0)
    if zero.any():
        xp[:, :, zero] = 0
    return np.ascontiguousarray(xp)


def conv2d_padding_mode(input, weight, bias=None, stride=1, padding="same", dilation=1, groups=1,
                        padding_mode="zeros"):
    """``conv2d`` (cross-correlation) after padding the input by copying, reflecting or wrapping it.

    ``padding_mode``: ``"zeros"`` (0 outside the image, as ``conv2d``),
    ``"reflect"`` (mirror without repeating the edge: ``c b | a b c | b a``),
    ``"replicate"`` (repeat the edge pixel: ``a a | a b c | c c``) or
    ``"circular"`` (wrap around: ``b c | a b c | a b``), as in ``torch.nn.Conv2d``.

    Inputs: input (N, C_in, H, W); weight (C_out, C_in / groups, kH, kW); bias
    (C_out,) or None; stride, dilation, groups as in ``conv2d``; padding an
    int, a pair, ``"valid"``, ``"same"`` (stride 1) or ``"full"``.
    Returns y (N, C_out, H_out, W_out), the shape ``conv2d`` gives with the same padding.
    See the chapter on convolution (Part II).
    """
    x, w, rows, cols = _settings(input, weight, stride, padding, dilation, groups, padding_mode)
    return conv2d(_gather(x, rows, cols), w, bias, stride, 0, dilation, groups)


def conv2d_padding_mode_backward(grad_output, input, weight, bias=None, stride=1, padding="same",
                                 dilation=1, groups=1, padding_mode="zeros"):
    """Gradients of :func:`conv2d_padding_mode` with respect to input, weight and bias.

    ``conv2d_backward`` gives the gradient of the padded input; each padded
    pixel's gradient is then added to the input pixel it was copied from
    (zeros send nothing back).

    Inputs: grad_output (N, C_out, H_out, W_out) and the forward's arguments.
    Returns ``(grad_input, grad_weight, grad_bias)`` (``grad_bias`` None without bias).
    """
    x, w, rows, cols = _settings(input, weight, stride, padding, dilation, groups, padding_mode)
    gxp, gw, gb = conv2d_backward(grad_output, _gather(x, rows, cols), w, bias, stride, 0, dilation,
                                  groups)
    gx = np.zeros_like(x)
    keep_r, keep_c = rows >= 0, cols >= 0
    g = gxp[:, :, keep_r][:, :, :, keep_c]
    src_r, src_c = rows[keep_r], cols[keep_c]
    # Sum over padded rows that share a source row, then over columns.
    by_row = np.zeros((*g.shape[:2], x.shape[2], g.shape[3]), dtype=x.dtype)
    np.add.at(by_row, (slice(None), slice(None), src_r), g)
    np.add.at(gx, (slice(None), slice(None), slice(None), src_c), by_row)
    return gx, gw, gb


def border_distance(shape):
    """Distance of every pixel from the nearest edge: ``min(i, j, H-1-i, W-1-j)``.

    Inputs: shape, an int or a pair (H, W).  Returns an int array (H, W); the
    outermost ring is 0.  See the chapter on convolution (Part II).
    """
    h, w = pair(shape, "shape", 1)
    i = np.minimum(np.arange(h), np.arange(h)[::-1])
    j = np.minimum(np.arange(w), np.arange(w)[::-1])
    return np.minimum(i[:, None], j[None, :])


def mean_by_border_distance(values, max_distance=None):
    """Mean of a map over the pixels at each distance from the border.

    Inputs: values (..., H, W), float (leading axes, a batch or channels, are
    averaged too); max_distance (int or None): distances 0 .. max_distance
    (default: all, up to ``(min(H, W) - 1) // 2``).
    Returns a float64 array (max_distance + 1,): entry t is the mean over the
    ring of pixels t steps from the edge.
    See the chapter on convolution (Part II).
    """
    v = np.asarray(values)
    if v.ndim < 2:
        raise ValueError(f"values must have at least 2 dimensions (..., H, W), got shape {v.shape}")
    if not np.issubdtype(v.dtype, np.number) or np.issubdtype(v.dtype, np.complexfloating):
        raise TypeError(f"values must hold real numbers, got dtype {v.dtype}")
    dist = border_distance(v.shape[-2:])
    largest = int(dist.max())
    if max_distance is None:
        max_distance = largest
    if not _is_int(max_distance) or not 0 <= max_distance <= largest:
        raise ValueError(f"max_distance must be an int in [0, {largest}], got {max_distance!r}")
    per_pixel = v.reshape(-1, *v.shape[-2:]).mean(axis=0, dtype=np.float64)
    sums = np.bincount(dist.ravel(), weights=per_pixel.ravel(), minlength=largest + 1)
    counts = np.bincount(dist.ravel(), minlength=largest + 1)
    return (sums / counts)[:max_distance + 1]


def power_law_image(size, alpha=1.0, rng=None):
    """A grey image whose amplitude spectrum falls as ``1/f^alpha``, scaled to [0, 1].

    Natural photographs have ``alpha`` close to 1.  The noise is made by
    shaping white noise in the Fourier domain on a grid twice as large and
    keeping the central crop, so the image does not wrap around (it is not
    periodic, unlike the raw FFT field).

    Inputs: size (int or pair (H, W)); alpha (float >= 0); rng (Generator,
    int seed or None: the library's default generator).
    Returns a float64 array (H, W) with min 0 and max 1.
    See the chapter on convolution (Part II).
    """
    h, w = pair(size, "size", 2)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not alpha >= 0:
        raise ValueError(f"alpha must be a non-negative number, got {alpha!r}")
    rng = get_rng(rng)
    big_h, big_w = 2 * h, 2 * w
    fy = np.fft.fftfreq(big_h)[:, None]
    fx = np.fft.rfftfreq(big_w)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0 / max(big_h, big_w)
    spectrum = np.fft.rfft2(rng.standard_normal((big_h, big_w))) / f ** alpha
    field = np.fft.irfft2(spectrum, s=(big_h, big_w))
    crop = field[h // 2:h // 2 + h, w // 2:w // 2 + w]
    return (crop - crop.min()) / (crop.max() - crop.min())

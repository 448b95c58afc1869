"""Measurements of shift invariance and information loss in pooling.

The computations behind the chapter's "pooling invariance" widget and its
claims: convolution is shift *equivariant* (shift the input, the feature map
shifts with it), pooling buys some shift *invariance* (the pooled map barely
changes) but only partly (a one-pixel shift can change a max-pooled map:
aliasing), and each pooling keeps different information about its window.
See the chapter on pooling (Part II).
"""

import numbers

import numpy as np

from .._random import get_rng
from .._validate import check_float_array, check_same_dtype, pair
from ..ops.activation import relu
from ..ops.conv import conv2d
from ..ops.pool import avg_pool2d, max_pool2d
from ..ops.pool_variants import stochastic_pool2d

__all__ = ["shift_image", "equivariance_error", "pooling_invariance", "pooling_information"]


def _int(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def _shift_pair(shift, name="shift"):
    """(dx, dy) from an int (horizontal shift) or a pair of ints."""
    if isinstance(shift, numbers.Integral) and not isinstance(shift, bool):
        return int(shift), 0
    if isinstance(shift, (tuple, list)) and len(shift) == 2:
        return _int(shift[0], f"{name}[0]"), _int(shift[1], f"{name}[1]")
    raise TypeError(f"{name} must be an int or a pair of ints (dx, dy), got {shift!r}")


def shift_image(image, dx, dy, mode="constant"):
    """Shift the last two axes of ``image`` right by ``dx`` and down by ``dy``.

    out[..., i, j] = image[..., i - dy, j - dx]; positions that come from
    outside are 0 (``mode="constant"``) or wrap around (``mode="wrap"``,
    ``np.roll``).  image: (..., H, W), float32/float64 -> same shape and dtype.
    See the chapter on pooling (Part II).
    """
    x = check_float_array(image, "image", min_ndim=2)
    dx, dy = _int(dx, "dx"), _int(dy, "dy")
    if mode == "wrap":
        return np.roll(x, (dy, dx), axis=(-2, -1))
    if mode != "constant":
        raise ValueError(f"mode must be 'constant' or 'wrap', got {mode!r}")
    h, w = x.shape[-2:]
    out = np.zeros_like(x)
    if abs(dy) < h and abs(dx) < w:
        src_r = slice(max(-dy, 0), h - max(dy, 0))
        src_c = slice(max(-dx, 0), w - max(dx, 0))
        dst_r = slice(max(dy, 0), h - max(-dy, 0))
        dst_c = slice(max(dx, 0), w - max(-dx, 0))
        out[..., dst_r, dst_c] = x[..., src_r, src_c]
    return out


def equivariance_error(f, image, shift, *, border=0, mode="constant"):
    """Relative shift-equivariance error of a map ``f`` that keeps the spatial size.

    ||f(S x) - S f(x)|| / ||f(x)||, S the shift ``(dx, dy)`` (an int: dx),
    both norms over the interior: rows and columns at least ``|dy| + border``
    and ``|dx| + border`` away from every edge, which leaves out what the
    shift moved in or out and, with ``border = (k - 1) // 2`` for a k x k
    convolution with "same" padding, what the padding touched.  ~0 for a
    convolution (exactly, up to rounding).  image: (..., H, W); ``f(image)``
    must have the same last two sizes.  Returns a float.
    See the chapter on pooling (Part II).
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    x = check_float_array(image, "image", min_ndim=2)
    dx, dy = _shift_pair(shift)
    border = _int(border, "border")
    if border < 0:
        raise ValueError(f"border must be non-negative, got {border}")
    fx = np.asarray(f(x), dtype=np.float64)
    fsx = np.asarray(f(shift_image(x, dx, dy, mode)), dtype=np.float64)
    if fx.ndim < 2 or fx.shape[-2:] != x.shape[-2:] or fsx.shape != fx.shape:
        raise ValueError(f"f must keep the spatial size {x.shape[-2:]} of image, got "
                         f"{fx.shape} and {fsx.shape}")
    h, w = x.shape[-2:]
    my, mx = abs(dy) + border, abs(dx) + border
    if 2 * my >= h or 2 * mx >= w:
        raise ValueError(f"shift {(dx, dy)} with border {border} leaves no interior in a "
                         f"{h}x{w} image")
    inner = (Ellipsis, slice(my, h - my), slice(mx, w - mx))
    diff = np.linalg.norm((fsx - shift_image(fx, dx, dy, mode))[inner])
    scale = np.linalg.norm(fx[inner])
    if scale == 0:
        return 0.0 if diff == 0 else float("inf")
    return float(diff / scale)


def _pool(features, pool, k, gen, training):
    if pool == "max":
        return max_pool2d(features, k)
    if pool == "avg":
        return avg_pool2d(features, k)
    return stochastic_pool2d(features, k, training=training, rng=gen)


def _compare(a, b):
    """(||a - b|| / ||b||, cosine(a, b)); 0 and 1 when both are zero."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    na, nb, nd = np.linalg.norm(a), np.linalg.norm(b), np.linalg.norm(a - b)
    change = (0.0 if nd == 0 else float("inf")) if nb == 0 else nd / nb
    if na == 0 or nb == 0:
        cosine = 1.0 if na == nb else 0.0
    else:
        cosine = float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))
    return change, cosine


def pooling_invariance(image, shifts, pool="max", kernel_size=2, conv_weight=None, rng=None, *,
                       mode="constant", training=True):
    """How much a feature map changes, before and after pooling, when the image shifts.

    ``shifts`` is a list; for each shift s = (dx, dy) (an int means (dx, 0)): the features
    F_s = relu(conv2d(S_s x, conv_weight, padding="same")) (just S_s x when
    ``conv_weight`` is None), the pooled map P_s = pool(F_s) with window and
    stride ``kernel_size``, and the scores against the unshifted image:
    ``relative_change`` ||P_s - P_0|| / ||P_0||, ``cosine`` <P_s, P_0> /
    (||P_s|| ||P_0||) and ``feature_change`` ||F_s - F_0|| / ||F_0||.
    ``pool`` is "max", "avg" or "stochastic" (sampled when ``training``, else
    the probability-weighted average; its draws come from ``rng``, P_0 first,
    so a seed makes the result deterministic).  ``mode`` is the shift's fill.

    image: (H, W) or (C, H, W); conv_weight: (C_out, C, k, k), image's dtype.
    Returns a dict: "shifts" (S, 2) int, "features" (S, C', H, W),
    "pooled" (S, C', H_out, W_out), "feature_change", "relative_change",
    "cosine" (S,) float64.
    See the chapter on pooling (Part II).
    """
    x = check_float_array(image, "image", ndim=(2, 3))
    x = x.reshape((1,) * (4 - x.ndim) + x.shape)
    if pool not in ("max", "avg", "stochastic"):
        raise ValueError(f"pool must be 'max', 'avg' or 'stochastic', got {pool!r}")
    k = pair(kernel_size, "kernel_size", 1)
    if not isinstance(shifts, (list, tuple, np.ndarray)):
        raise TypeError(f"shifts must be a list of shifts (ints or (dx, dy) pairs), got {shifts!r}")
    shifts = [_shift_pair(s.tolist() if isinstance(s, np.ndarray) else s, f"shifts[{i}]")
              for i, s in enumerate(shifts)]
    if not shifts:
        raise ValueError("shifts must not be empty")
    if conv_weight is not None:
        w = check_float_array(conv_weight, "conv_weight", ndim=4)
        check_same_dtype(x, "image", w, "conv_weight")
        if w.shape[1] != x.shape[1]:
            raise ValueError(f"conv_weight must have {x.shape[1]} input channels (the image's), "
                             f"got shape {w.shape}")
    gen = get_rng(rng) if pool == "stochastic" else None

    def features(dx, dy):
        shifted = shift_image(x, dx, dy, mode)
        return shifted if conv_weight is None else relu(conv2d(shifted, w, padding="same"))

    f0 = features(0, 0)
    p0 = _pool(f0, pool, k, gen, training)
    feats, pooled, fchange, pchange, cosine = [], [], [], [], []
    for dx, dy in shifts:
        f = features(dx, dy)
        p = _pool(f, pool, k, gen, training)
        feats.append(f[0])
        pooled.append(p[0])
        fchange.append(_compare(f, f0)[0])
        change, cos = _compare(p, p0)
        pchange.append(change)
        cosine.append(cos)
    return {"shifts": np.array(shifts, dtype=np.int64), "features": np.stack(feats),
            "pooled": np.stack(pooled), "feature_change": np.array(fchange),
            "relative_change": np.array(pchange), "cosine": np.array(cosine)}


def pooling_information(images, pool="max", kernel_size=2):
    """What a pooled map keeps of its input: the best linear reconstruction.

    Each image is cut into non-overlapping kH x kW blocks (rows and columns
    past the last full block are dropped) and pooled (``pool`` "max" or
    "avg").  For every position (p, q) inside a block, pixel x_pq is
    predicted from its block's pooled value m by least squares over all
    blocks of all images and channels, x_pq ~ a_pq m + b_pq: the best
    linear upsampling (a stride-k transposed convolution with one k x k
    kernel and bias).  ``reconstruction_error`` is the fraction of variance
    left, sum (x - x_hat)^2 / sum (x - mean_pq)^2, in [0, 1] (0 when the
    images are constant per position).  For i.i.d. Gaussian pixels average
    pooling leaves 1 - 1/(kH kW) and max pooling more (0.87 for 2x2).
    Also returned: the correlation of the pooled values with the block means
    and with the block maxima.

    images: (N, H, W) or (N, C, H, W), float32/float64.  Returns a dict:
    "reconstruction_error" (float), "weight" and "bias" (kH, kW),
    "reconstruction" (N, C, H', W') float64 of the cropped images,
    "corr_block_mean", "corr_block_max" (floats).
    See the chapter on pooling (Part II).
    """
    x = check_float_array(images, "images", ndim=(3, 4))
    if x.ndim == 3:
        x = x[:, None]
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    kh, kw = pair(kernel_size, "kernel_size", 1)
    n_, c_, h, w = x.shape
    ho, wo = h // kh, w // kw
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel_size {(kh, kw)} is larger than the images ({h}x{w})")
    crop = np.ascontiguousarray(x[:, :, :ho * kh, :wo * kw])
    m = (max_pool2d if pool == "max" else avg_pool2d)(crop, (kh, kw)).astype(np.float64)
    blocks = crop.astype(np.float64).reshape(n_, c_, ho, kh, wo, kw).transpose(0, 1, 2, 4, 3, 5)
    mv = m.ravel()
    mc = mv - mv.mean()
    var_m = np.dot(mc, mc)
    weight = np.zeros((kh, kw))
    bias = np.zeros((kh, kw))
    recon = np.empty_like(blocks)
    sse = sst = 0.0
    for p in range(kh):
        for q in range(kw):
            xv = blocks[..., p, q].ravel()
            xc = xv - xv.mean()
            a = np.dot(mc, xc) / var_m if var_m > 0 else 0.0
            weight[p, q], bias[p, q] = a, xv.mean() - a * mv.mean()
            fit = a * mv + bias[p, q]
            recon[..., p, q] = fit.reshape(n_, c_, ho, wo)
            sse += np.sum((xv - fit) ** 2)
            sst += np.dot(xc, xc)
    flat = blocks.reshape(-1, kh * kw)

    def corr(a, b):
        a, b = a - a.mean(), b - b.mean()
        den = np.sqrt(np.dot(a, a) * np.dot(b, b))
        return float(np.dot(a, b) / den) if den > 0 else 1.0

    return {"reconstruction_error": float(sse / sst) if sst > 0 else 0.0,
            "weight": weight, "bias": bias,
            "reconstruction": recon.transpose(0, 1, 2, 4, 3, 5).reshape(n_, c_, ho * kh, wo * kw),
            "corr_block_mean": corr(mv, flat.mean(axis=1)),
            "corr_block_max": corr(mv, flat.max(axis=1))}

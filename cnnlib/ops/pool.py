"""Max and average pooling over an NCHW batch, as in ``torch.nn.functional``.

A pooling window of size (kH, kW) slides with stride (sH, sW) over the input,
padded by (pH, pW) on each side (with -inf for max pooling, zeros for
average pooling).  Output size along one axis:

    out = floor_or_ceil((size + 2p - d*(k-1) - 1) / s) + 1

where ``ceil_mode`` chooses the ceiling; in ceil mode a last window that
would start inside the right padding is dropped, as PyTorch does.
"""

import numpy as np
from numba import njit, prange

from .._validate import (check_bool, check_float_array, check_indices, check_same_dtype,
                         check_shape, pair)


def pool_output_size(size, kernel_size, stride, padding=0, dilation=1, ceil_mode=False):
    """Output length of a pooling window along one axis (PyTorch's rule)."""
    span = size + 2 * padding - dilation * (kernel_size - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
    else:
        out = span // stride + 1
    return out


def _pool_settings(x, kernel_size, stride, padding, dilation, ceil_mode):
    """Validate pooling arguments; return the array, settings and output size."""
    x = check_float_array(x, "input", ndim=4)
    k = pair(kernel_size, "kernel_size", 1)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    s = k if no_stride else pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
    d = pair(dilation, "dilation", 1)
    ceil_mode = check_bool(ceil_mode, "ceil_mode")
    for ki, pi in zip(k, p):
        if pi > ki // 2:
            raise ValueError(
                f"padding should be at most half of kernel_size, got padding={padding!r} "
                f"and kernel_size={kernel_size!r}"
            )
    out = []
    for axis, size, ki, si, pi, di in zip(("height", "width"), x.shape[2:], k, s, p, d):
        span = di * (ki - 1) + 1
        if size + 2 * pi < span:
            raise ValueError(
                f"kernel_size (effective size {span} with dilation {di}) is larger than the "
                f"padded input {axis} ({size} + 2*{pi})"
            )
        out.append(pool_output_size(size, ki, si, pi, di, ceil_mode))
    return x, k, s, p, d, tuple(out)


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _window_max(plane, i, j, kh, kw, sh, sw, ph, pw, dh, dw):
    """Max of window (i, j) of one (H, W) plane and the flat index of its winner.

    As in PyTorch: the first maximum wins, a NaN always wins (so the last NaN
    does), and the first real element starts the search even at -inf.  A
    window made only of padding gives (-inf, -1).
    """
    h, w = plane.shape
    best = -np.inf
    arg = -1
    for p in range(kh):
        r = i * sh - ph + p * dh
        if r < 0 or r >= h:
            continue
        for q in range(kw):
            col = j * sw - pw + q * dw
            if col < 0 or col >= w:
                continue
            v = plane[r, col]
            if v > best or np.isnan(v) or arg < 0:
                best = v
                arg = r * w + col
    return best, arg


@njit(parallel=True, cache=True)
def _max_pool_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    """Maxima and the flat index (in the H*W plane) of each window's winner."""
    n_, c_ = x.shape[0], x.shape[1]
    y = np.empty((n_, c_, ho, wo), dtype=x.dtype)
    idx = np.empty((n_, c_, ho, wo), dtype=np.int64)
    for nc in prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        plane = x[n, c]
        for i in range(ho):
            for j in range(wo):
                y[n, c, i, j], idx[n, c, i, j] = _window_max(plane, i, j, kh, kw, sh, sw, ph, pw,
                                                             dh, dw)
    return y, idx


@njit(parallel=True, cache=True)
def _max_pool_2x2(x):
    """The common case, kernel 2, stride 2, no padding, even sizes: no bounds
    to check, the four comparisons written out (four times as fast as the
    general loop).  Same order and rules as ``_window_max``."""
    n_, c_, h, w = x.shape
    ho, wo = h // 2, w // 2
    y = np.empty((n_, c_, ho, wo), dtype=x.dtype)
    idx = np.empty((n_, c_, ho, wo), dtype=np.int64)
    for nc in prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        for i in range(ho):
            r = 2 * i
            for j in range(wo):
                col = 2 * j
                best = x[n, c, r, col]
                arg = r * w + col
                v = x[n, c, r, col + 1]
                if v > best or np.isnan(v):
                    best, arg = v, r * w + col + 1
                v = x[n, c, r + 1, col]
                if v > best or np.isnan(v):
                    best, arg = v, (r + 1) * w + col
                v = x[n, c, r + 1, col + 1]
                if v > best or np.isnan(v):
                    best, arg = v, (r + 1) * w + col + 1
                y[n, c, i, j] = best
                idx[n, c, i, j] = arg
    return y, idx


@njit(cache=True)
def scatter_to_indices(gy, idx, h, w):
    """``grad_input[n, c].flat[idx[n, c, i, j]] += gy[n, c, i, j]`` for (H, W) = (h, w)
    input planes; an index of -1 (a window of padding only) sends its gradient
    nowhere.  The backward of every max pooling.  Serial: bound by memory, it
    ran twice as fast as a parallel loop on LeNet-5's activations."""
    n_, c_, ho, wo = gy.shape
    gx = np.zeros((n_, c_, h * w), dtype=gy.dtype)
    for nc in range(n_ * c_):
        n = nc // c_
        c = nc % c_
        for i in range(ho):
            for j in range(wo):
                a = idx[n, c, i, j]
                if a >= 0:
                    gx[n, c, a] += gy[n, c, i, j]
    return gx.reshape(n_, c_, h, w)


@njit(parallel=True, cache=True)
def _avg_pool(x, gy, forward, kh, kw, sh, sw, ph, pw, ho, wo, count_include_pad):
    """Average pooling forward (``forward=True``: returns y from x) or backward
    (returns grad_input from gy; ``x`` only gives the shape).

    Divisor as in PyTorch: the window clipped to the padded input when
    ``count_include_pad``, else the window clipped to the input itself.
    """
    n_, c_, h, w = x.shape
    if forward:
        out = np.zeros((n_, c_, ho, wo), dtype=x.dtype)
    else:
        out = np.zeros((n_, c_, h, w), dtype=x.dtype)
    for nc in prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        for i in range(ho):
            r0 = i * sh - ph
            r1 = min(r0 + kh, h + ph)
            for j in range(wo):
                c0 = j * sw - pw
                c1 = min(c0 + kw, w + pw)
                size = (r1 - r0) * (c1 - c0)
                a0, a1 = max(r0, 0), min(r1, h)
                b0, b1 = max(c0, 0), min(c1, w)
                if a0 >= a1 or b0 >= b1:
                    continue
                if not count_include_pad:
                    size = (a1 - a0) * (b1 - b0)
                if forward:
                    acc = out[n, c, i, j]
                    for r in range(a0, a1):
                        for col in range(b0, b1):
                            acc += x[n, c, r, col]
                    out[n, c, i, j] = acc / size
                else:
                    g = gy[n, c, i, j] / size
                    for r in range(a0, a1):
                        for col in range(b0, b1):
                            out[n, c, r, col] += g
    return out


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------

def _is_2x2(kh, kw, sh, sw, ph, pw, dh, dw, x, ho, wo):
    return ((kh, kw, sh, sw, ph, pw, dh, dw) == (2, 2, 2, 2, 0, 0, 1, 1)
            and x.shape[2:] == (2 * ho, 2 * wo))


def _max_pool(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo):
    if _is_2x2(kh, kw, sh, sw, ph, pw, dh, dw, x, ho, wo):
        return _max_pool_2x2(x)
    return _max_pool_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """Max pooling, as ``torch.nn.functional.max_pool2d``.

    input (N, C, H, W) -> output (N, C, H_out, W_out).  ``stride`` defaults to
    ``kernel_size``; ``padding`` (at most half the kernel) pads with -inf.
    With ``return_indices`` also returns, as PyTorch does, an int64 array of
    the output's shape holding the flat index ``row * W + column`` of each
    window's first maximum in its input plane (-1 for a window of padding
    only); :func:`max_pool2d_backward` takes it to skip the search.
    """
    x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = _pool_settings(
        input, kernel_size, stride, padding, dilation, ceil_mode)
    y, idx = _max_pool(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)
    return (y, idx) if check_bool(return_indices, "return_indices") else y


def max_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0, dilation=1,
                        ceil_mode=False, indices=None):
    """Gradient of ``max_pool2d`` w.r.t. its input, shape (N, C, H, W).

    Each output's gradient goes to the first maximum of its window;
    overlapping windows add up.  ``indices`` are those ``max_pool2d(...,
    return_indices=True)`` returned for this input (as ``nn.MaxPool2d`` keeps
    them); without them the windows are searched again.
    """
    x, (kh, kw), (sh, sw), (ph, pw), (dh, dw), (ho, wo) = _pool_settings(
        input, kernel_size, stride, padding, dilation, ceil_mode)
    gy = check_float_array(grad_output, "grad_output", ndim=4)
    check_same_dtype(x, "input", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape[:2] + (ho, wo))
    if indices is None:
        indices = _max_pool(x, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo)[1]
    else:
        indices = check_indices(indices, "indices", gy.shape, x.shape[2] * x.shape[3], minimum=-1)
    return scatter_to_indices(gy, indices, x.shape[2], x.shape[3])


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    """Average pooling, as ``torch.nn.functional.avg_pool2d``.

    input (N, C, H, W) -> output (N, C, H_out, W_out).  With
    ``count_include_pad`` the zero padding counts in the divisor.
    """
    x, (kh, kw), (sh, sw), (ph, pw), _, (ho, wo) = _pool_settings(
        input, kernel_size, stride, padding, 1, ceil_mode)
    cip = check_bool(count_include_pad, "count_include_pad")
    return _avg_pool(x, x[:, :, :0, :0], True, kh, kw, sh, sw, ph, pw, ho, wo, cip)


def avg_pool2d_backward(grad_output, input, kernel_size, stride=None, padding=0,
                        ceil_mode=False, count_include_pad=True):
    """Gradient of ``avg_pool2d`` w.r.t. its input, shape (N, C, H, W)."""
    x, (kh, kw), (sh, sw), (ph, pw), _, (ho, wo) = _pool_settings(
        input, kernel_size, stride, padding, 1, ceil_mode)
    cip = check_bool(count_include_pad, "count_include_pad")
    gy = check_float_array(grad_output, "grad_output", ndim=4)
    check_same_dtype(x, "input", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape[:2] + (ho, wo))
    return _avg_pool(x, gy, False, kh, kw, sh, sw, ph, pw, ho, wo, cip)

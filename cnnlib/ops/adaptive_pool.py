"""Adaptive average and max pooling, as in ``torch.nn.functional``.

An adaptive pooling layer is given the size of its output, not of its
window: along an axis of length ``H`` pooled to ``out`` bins, bin ``i``
covers the rows

    start = floor(i * H / out),   end = ceil((i + 1) * H / out)

(PyTorch's rule: the bins cover the input, neighbouring bins overlap by a
row when ``out`` does not divide ``H``).  Pooled to 1x1, average pooling is
the *global average pooling* of squeeze-and-excitation and CBAM, max pooling
their global max.  See the attention chapter (Part IV).
"""

import numpy as np
from numba import njit, prange

from .._validate import _is_int, check_bool, check_float_array, check_indices, check_same_dtype, check_shape
from .pool import scatter_to_indices
from .pool_variants import _fractional_forward

__all__ = ["adaptive_bins", "adaptive_output_size", "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
           "adaptive_max_pool2d", "adaptive_max_pool2d_backward"]


def adaptive_bins(size, output_size):
    """The (start, end) rows of each of ``output_size`` bins over ``size`` rows.

    Bin i is ``[floor(i * size / output_size), ceil((i + 1) * size / output_size))``,
    PyTorch's rule.  Returns two int64 arrays of length ``output_size``.
    """
    for name, v in (("size", size), ("output_size", output_size)):
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    i = np.arange(output_size, dtype=np.int64)
    start = (i * size) // output_size
    end = -((-(i + 1) * size) // output_size)  # ceil division
    return start, end


def adaptive_output_size(output_size, height, width):
    """``output_size`` (an int, or a pair of ints or None: None keeps the
    input's size, as in torch) for an input of ``height`` x ``width``, as a
    pair of positive ints; raises TypeError / ValueError otherwise."""
    if _is_int(output_size):
        pr = (output_size, output_size)
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 2 and all(
            v is None or _is_int(v) for v in output_size):
        pr = tuple(size if v is None else v for v, size in zip(output_size, (height, width)))
    else:
        raise TypeError(f"output_size must be an int or a pair of ints (or None), got {output_size!r}")
    if min(pr) < 1:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    return int(pr[0]), int(pr[1])


def _settings(input, output_size):
    x = check_float_array(input, "input", ndim=4)
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"input must have non-empty height and width, got shape {x.shape}")
    ho, wo = adaptive_output_size(output_size, x.shape[2], x.shape[3])
    rs, re = adaptive_bins(x.shape[2], ho)
    cs, ce = adaptive_bins(x.shape[3], wo)
    return x, ho, wo, rs, re, cs, ce


def _grad_settings(grad_output, input, output_size):
    x, ho, wo, rs, re, cs, ce = _settings(input, output_size)
    gy = check_float_array(grad_output, "grad_output", ndim=4)
    check_same_dtype(x, "input", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape[:2] + (ho, wo))
    return gy, x, ho, wo, rs, re, cs, ce


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def _adaptive_avg(x, gy, forward, rs, re, cs, ce):
    """Forward (``forward=True``: the bin means of x) or backward (each bin's
    gradient spread evenly over its rows and columns; ``x`` gives the shape)."""
    n_, c_, h, w = x.shape
    ho, wo = rs.size, cs.size
    if forward:
        out = np.zeros((n_, c_, ho, wo), dtype=x.dtype)
    else:
        out = np.zeros((n_, c_, h, w), dtype=x.dtype)
    for nc in prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        for i in range(ho):
            for j in range(wo):
                size = x.dtype.type((re[i] - rs[i]) * (ce[j] - cs[j]))
                if forward:
                    acc = x.dtype.type(0)
                    for r in range(rs[i], re[i]):
                        for col in range(cs[j], ce[j]):
                            acc += x[n, c, r, col]
                    out[n, c, i, j] = acc / size
                else:
                    g = gy[n, c, i, j] / size
                    for r in range(rs[i], re[i]):
                        for col in range(cs[j], ce[j]):
                            out[n, c, r, col] += g
    return out


def _adaptive_max(x, rs, re, cs, ce):
    """Bin maxima and the flat index ``row * W + column`` of each bin's winner
    (the first maximum; a NaN always wins, so the last NaN does: PyTorch's
    rule).  Adaptive bins are fractional max pooling's interval windows with
    the same intervals for every plane, so its kernel does the work."""
    planes = x.shape[0] * x.shape[1]
    h0, h1, w0, w1 = (np.ascontiguousarray(np.broadcast_to(v, (planes, v.size))) for v in (rs, re, cs, ce))
    return _fractional_forward(x, h0, h1, w0, w1)


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------

def adaptive_avg_pool2d(input, output_size):
    """Adaptive average pooling, as ``torch.nn.functional.adaptive_avg_pool2d``.

    input (N, C, H, W) -> output (N, C, H_out, W_out) with (H_out, W_out) =
    ``output_size`` (an int, a pair, or a pair with None for "keep the
    input's size").  Output (i, j) is the mean of the bin of rows
    ``[floor(i H / H_out), ceil((i + 1) H / H_out))`` and the same for the
    columns; ``output_size=1`` is global average pooling.  See the attention
    chapter (Part IV).
    """
    x, ho, wo, rs, re, cs, ce = _settings(input, output_size)
    return _adaptive_avg(x, x[:, :, :0, :0], True, rs, re, cs, ce)


def adaptive_avg_pool2d_backward(grad_output, input, output_size):
    """Gradient of :func:`adaptive_avg_pool2d` w.r.t. its input, shape (N, C, H, W).

    Each output's gradient is divided by its bin's size and added to every
    input of the bin (overlapping bins add up).
    """
    gy, x, ho, wo, rs, re, cs, ce = _grad_settings(grad_output, input, output_size)
    return _adaptive_avg(x, gy, False, rs, re, cs, ce)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """Adaptive max pooling, as ``torch.nn.functional.adaptive_max_pool2d``.

    input (N, C, H, W) -> output (N, C, H_out, W_out), the maximum over the
    bins of :func:`adaptive_avg_pool2d`; ``output_size=1`` is the global max.
    With ``return_indices`` also returns an int64 array of the output's shape
    holding the flat index ``row * W + column`` of each bin's (first)
    maximum, which :func:`adaptive_max_pool2d_backward` takes.  See the
    attention chapter (Part IV).
    """
    x, ho, wo, rs, re, cs, ce = _settings(input, output_size)
    y, idx = _adaptive_max(x, rs, re, cs, ce)
    return (y, idx) if check_bool(return_indices, "return_indices") else y


def adaptive_max_pool2d_backward(grad_output, input, output_size, indices=None):
    """Gradient of :func:`adaptive_max_pool2d` w.r.t. its input, shape (N, C, H, W).

    Each output's gradient goes to its bin's maximum (at ``indices`` if
    given, as the forward returned them; otherwise the bins are searched
    again); overlapping bins add up.
    """
    gy, x, ho, wo, rs, re, cs, ce = _grad_settings(grad_output, input, output_size)
    if indices is None:
        indices = _adaptive_max(x, rs, re, cs, ce)[1]
    else:
        indices = check_indices(indices, "indices", gy.shape, x.shape[2] * x.shape[3])
    return scatter_to_indices(gy, indices, x.shape[2], x.shape[3])

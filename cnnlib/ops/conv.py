"""2-D convolution (cross-correlation, as in every deep-learning library).

For input ``x`` of shape (N, C_in, H, W) and weight ``w`` of shape
(C_out, C_in / groups, kH, kW) the output is

    y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] *
                    x_pad[n, g(o) * C_in/groups + c, i*sH + p*dH, j*sW + q*dW]

with ``g(o) = o // (C_out / groups)`` the group of output channel ``o``.
Two strategies compute it (chapter "From scratch" discusses both):

* im2col + GEMM: the receptive fields are copied into the columns of a
  matrix by a parallel Numba kernel, then one BLAS matrix product per group
  does the arithmetic.  Used whenever a group has more than one input
  channel.
* direct loops: when each group has a single input channel (depthwise
  convolution, or a first layer on a grey image) the GEMM would be too thin
  to pay off, so a Numba kernel loops over the taps directly.
"""

import numpy as np
from numba import njit, prange

from .._validate import check_float_array, check_same_dtype, check_shape, pair, _is_int


# ----------------------------------------------------------------------------
# Settings and shapes
# ----------------------------------------------------------------------------

def padding_amounts(padding, kernel_size, dilation=1):
    """(before, after) zero padding along one axis for an int or a mode.

    ``"valid"``: none.  ``"same"``: ``dilation*(kernel_size-1)`` in total,
    the odd one at the end (PyTorch's rule; output size = input size at
    stride 1).  ``"full"``: ``dilation*(kernel_size-1)`` on each side, so that
    every output touches at least one input (output size = input size +
    effective kernel size - 1).  An int pads both sides equally.
    """
    total = dilation * (kernel_size - 1)
    if padding == "valid":
        return 0, 0
    if padding == "same":
        return total // 2, total - total // 2
    if padding == "full":
        return total, total
    if _is_int(padding) and padding >= 0:
        return int(padding), int(padding)
    raise ValueError(f"padding must be a non-negative int, 'valid', 'same' or 'full', got {padding!r}")


def conv_output_size(size, kernel_size, stride=1, padding=0, dilation=1):
    """Output length of a convolution along one axis.

    ``floor((size + before + after - dilation*(kernel_size-1) - 1) / stride) + 1``
    where ``padding`` is an int (before = after), a pair ``(before, after)``
    or a mode understood by :func:`padding_amounts`.
    """
    if isinstance(padding, (tuple, list)):
        before, after = padding
    else:
        before, after = padding_amounts(padding, kernel_size, dilation)
    return (size + before + after - dilation * (kernel_size - 1) - 1) // stride + 1


def _conv_settings(x, w, bias, stride, padding, dilation, groups):
    """Validate conv2d arguments; return arrays and resolved settings."""
    x = check_float_array(x, "input", ndim=4)
    w = check_float_array(w, "weight", ndim=4)
    check_same_dtype(x, "input", w, "weight")
    if bias is not None:
        bias = check_float_array(bias, "bias", ndim=1)
        check_same_dtype(x, "input", bias, "bias")
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    n, c_in, h, wd = x.shape
    c_out, c_per_group, kh, kw = w.shape
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide the input channels ({c_in})")
    if c_out % groups:
        raise ValueError(f"groups={groups} must divide the output channels (weight.shape[0]={c_out})")
    if c_per_group != c_in // groups:
        raise ValueError(
            f"weight.shape[1]={c_per_group} must equal input channels / groups "
            f"= {c_in}/{groups} = {c_in // groups} (input shape {x.shape})"
        )
    if kh < 1 or kw < 1:
        raise ValueError(f"weight must have a non-empty kernel, got shape {w.shape}")
    if bias is not None and bias.shape[0] != c_out:
        raise ValueError(f"bias must have shape ({c_out},), got {bias.shape}")
    stride = pair(stride, "stride", 1)
    dilation = pair(dilation, "dilation", 1)
    pads = resolve_padding(padding, stride, dilation, (kh, kw))
    for axis, size, k, d, (lo, hi) in (("height", h, kh, dilation[0], pads[0]),
                                        ("width", wd, kw, dilation[1], pads[1])):
        span = d * (k - 1) + 1
        if size + lo + hi < span:
            raise ValueError(
                f"kernel (effective size {span} with dilation {d}) is larger than the padded "
                f"input {axis} ({size} + padding {lo + hi})"
            )
    return x, w, bias, stride, pads, dilation, groups


def resolve_padding(padding, stride, dilation, kernel):
    """The padding of each border, ``((top, bottom), (left, right))``.

    ``padding`` is an int, a pair, ``"valid"``, ``"same"`` or ``"full"`` (as
    :func:`conv2d` takes it); ``stride``, ``dilation`` and ``kernel`` are
    ``(h, w)`` pairs.  ``"same"`` with an even effective kernel puts the
    extra row or column at the bottom or right, as PyTorch does.  See the
    chapter on convolution (Part II).
    """
    if isinstance(padding, str):
        if padding not in ("valid", "same", "full"):
            raise ValueError(f"padding must be an int, a pair, 'valid', 'same' or 'full', got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError(f"padding='same' requires stride 1, got stride={stride}")
        return tuple(padding_amounts(padding, k, d) for k, d in zip(kernel, dilation))
    ph, pw = pair(padding, "padding", 0)
    return (ph, ph), (pw, pw)


def _pad(x, pads):
    (t, b), (l, r) = pads
    if t == b == l == r == 0:
        return x
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + t + b, w + l + r), dtype=x.dtype)
    out[:, :, t:t + h, l:l + w] = x
    return out


def _unpad(xp, pads):
    (t, b), (l, r) = pads
    return np.ascontiguousarray(xp[:, :, t:xp.shape[2] - b, l:xp.shape[3] - r])


# ----------------------------------------------------------------------------
# Kernels (no validation: they trust their caller)
# ----------------------------------------------------------------------------

def _row_width(sh, sw, wo, wp):
    """Width of one output row in the column matrices: ``wp`` ("wide") at unit stride."""
    return wp if sh == 1 and sw == 1 else wo


@njit(parallel=True, cache=True)
def _im2col(xp, kh, kw, sh, sw, dh, dw, ho, wo):
    """Copy receptive fields into columns: row ``(c*kh + p)*kw + q`` holds tap (p, q) of channel c.

    At unit stride the columns use the "wide" layout: output row i of sample
    n starts at column n*ho*wp + i*wp, so each tap of each plane is ONE
    contiguous copy; the wp - wo junk columns per row are dropped after the
    matrix product (the last row's junk is zero-filled).  Otherwise column
    (n*ho + i)*wo + j holds output (i, j).
    """
    n_, c_, hp, wp = xp.shape
    wide = sh == 1 and sw == 1
    length = ho * (wp if wide else wo)
    m = (ho - 1) * wp + wo
    cols = np.empty((c_ * kh * kw, n_ * length), dtype=xp.dtype)
    for nc in prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        plane = xp[n, c].ravel()
        for p in range(kh):
            for q in range(kw):
                dst = cols[(c * kh + p) * kw + q, n * length:(n + 1) * length]
                if wide:
                    off = p * dh * wp + q * dw
                    dst[:m] = plane[off:off + m]
                    dst[m:] = 0
                else:
                    for i in range(ho):
                        base = (i * sh + p * dh) * wp + q * dw
                        for j in range(wo):
                            dst[i * wo + j] = plane[base + j * sw]
    return cols


@njit(parallel=True, cache=True)
def _col2im(cols, n_, c_, hp, wp, kh, kw, sh, sw, dh, dw, ho, wo):
    """Adjoint of ``_im2col``: scatter-add the columns back into image planes.

    In the wide layout the junk columns must hold zeros (they do when they
    come from a gradient whose junk columns are zero).
    """
    xp = np.zeros((n_, c_, hp, wp), dtype=cols.dtype)
    wide = sh == 1 and sw == 1
    length = ho * (wp if wide else wo)
    m = (ho - 1) * wp + wo
    for nc in prange(n_ * c_):  # each (n, c) plane is written by one iteration only
        n = nc // c_
        c = nc % c_
        plane = xp[n, c].ravel()
        for p in range(kh):
            for q in range(kw):
                src = cols[(c * kh + p) * kw + q, n * length:(n + 1) * length]
                if wide:
                    dst = plane[p * dh * wp + q * dw:]
                    for t in range(m):
                        dst[t] += src[t]
                else:
                    for i in range(ho):
                        base = (i * sh + p * dh) * wp + q * dw
                        for j in range(wo):
                            plane[base + j * sw] += src[i * wo + j]
    return xp


# The direct kernels work on whole flattened planes.  With unit column stride
# an output row i starts at flat offset i*wp in the "wide" output of width wp
# (the padded input width): tap (p, q) then adds w[p, q] times one contiguous
# run of the input plane, so each inner loop runs over ~ho*wp elements and
# vectorises (rows of 28 would be too short for 16-lane AVX-512 loops).  The
# wp - wo junk columns of each wide row are dropped at the end.

@njit(parallel=True, cache=True)
def _direct_forward(xp, w, sh, sw, dh, dw, ho, wo):
    """Convolution when every group has one input channel (w.shape[1] == 1)."""
    n_, c_in, hp, wp = xp.shape
    c_out, _, kh, kw = w.shape
    out_per_group = c_out // c_in
    y = np.empty((n_, c_out, ho, wo), dtype=xp.dtype)
    for no in prange(n_ * c_out):
        n = no // c_out
        o = no % c_out
        plane = xp[n, o // out_per_group].ravel()
        if sh == 1 and sw == 1:
            length = (ho - 1) * wp + wo
            acc = np.zeros(length, dtype=xp.dtype)
            for p in range(kh):
                for q in range(kw):
                    wv = w[o, 0, p, q]
                    src = plane[p * dh * wp + q * dw:]
                    for t in range(length):
                        acc[t] += wv * src[t]
            for i in range(ho):
                y[n, o, i] = acc[i * wp:i * wp + wo]
        else:
            acc2 = np.zeros((ho, wo), dtype=xp.dtype)
            for p in range(kh):
                for q in range(kw):
                    wv = w[o, 0, p, q]
                    for i in range(ho):
                        base = (i * sh + p * dh) * wp + q * dw
                        for j in range(wo):
                            acc2[i, j] += wv * plane[base + j * sw]
            y[n, o] = acc2
    return y


@njit(cache=True)
def _wide_grad(gy_plane, wp):
    """Copy an (ho, wo) gradient plane into a zero-filled wide buffer of row width wp."""
    ho, wo = gy_plane.shape
    g = np.zeros((ho - 1) * wp + wo, dtype=gy_plane.dtype)
    for i in range(ho):
        g[i * wp:i * wp + wo] = gy_plane[i]
    return g


@njit(parallel=True, cache=True)
def _direct_backward_input(gy, w, c_in, hp, wp, sh, sw, dh, dw):
    """Gradient w.r.t. the padded input for the direct (one channel per group) case."""
    n_, c_out, ho, wo = gy.shape
    kh, kw = w.shape[2], w.shape[3]
    out_per_group = c_out // c_in
    gxp = np.zeros((n_, c_in, hp, wp), dtype=gy.dtype)
    for nc in prange(n_ * c_in):  # each (n, c) plane is written by one iteration only
        n = nc // c_in
        c = nc % c_in
        dst = gxp[n, c].ravel()
        for o in range(c * out_per_group, (c + 1) * out_per_group):
            if sh == 1 and sw == 1:
                g = _wide_grad(gy[n, o], wp)
                for p in range(kh):
                    for q in range(kw):
                        wv = w[o, 0, p, q]
                        d = dst[p * dh * wp + q * dw:]
                        for t in range(g.size):
                            d[t] += wv * g[t]
            else:
                for p in range(kh):
                    for q in range(kw):
                        wv = w[o, 0, p, q]
                        for i in range(ho):
                            base = (i * sh + p * dh) * wp + q * dw
                            for j in range(wo):
                                dst[base + j * sw] += wv * gy[n, o, i, j]
    return gxp


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _direct_backward_weight(gy, xp, kh, kw, sh, sw, dh, dw):
    """Gradient w.r.t. the weight for the direct case; one output channel per iteration.

    ``reassoc`` lets LLVM vectorise the dot products (the sum order changes,
    as it does in any BLAS); no inf/nan checks happen here.
    """
    n_, c_out, ho, wo = gy.shape
    wp = xp.shape[3]
    out_per_group = c_out // xp.shape[1]
    gw = np.zeros((c_out, 1, kh, kw), dtype=gy.dtype)
    for o in prange(c_out):
        c = o // out_per_group
        for n in range(n_):
            plane = xp[n, c].ravel()
            if sh == 1 and sw == 1:
                g = _wide_grad(gy[n, o], wp)
                for p in range(kh):
                    for q in range(kw):
                        src = plane[p * dh * wp + q * dw:]
                        acc = gy.dtype.type(0)
                        for t in range(g.size):
                            acc += g[t] * src[t]
                        gw[o, 0, p, q] += acc
            else:
                for p in range(kh):
                    for q in range(kw):
                        acc = gy.dtype.type(0)
                        for i in range(ho):
                            base = (i * sh + p * dh) * wp + q * dw
                            for j in range(wo):
                                acc += gy[n, o, i, j] * plane[base + j * sw]
                        gw[o, 0, p, q] += acc
    return gw


# The unit-stride kernels below handle any number of channels per group with
# the same wide layout, without a column matrix and without a padded copy of
# the batch: a task computes a block of four output channels (or input
# channels, for the input gradient; two or one when four do not divide them)
# of one sample, so each contiguous run of the input is loaded once for four
# accumulators.  For the small layers of LeNet-5 they are several times
# faster than im2col + GEMM, which spends most of its time copying columns
# and waking the BLAS threads; large layers still go to the GEMM
# (``_use_wide``).

_BLOCK = 4


@njit(cache=True)
def _block(count):
    """Channels per task: 4, else 2 (LeNet-5's 6), else 1."""
    if count % _BLOCK == 0:
        return _BLOCK
    return 2 if count % 2 == 0 else 1


@njit(cache=True)
def _group_planes(x, n, first, count, pt, pl, hp, wp):
    """The ``count`` planes of sample n from channel ``first``, as rows of length
    hp*wp: the input itself when there is no padding, else a zero-padded copy
    (top ``pt``, left ``pl``), so that no padded batch is ever allocated.
    Returns (planes, index of the first plane in them)."""
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    if h == hp and w == wp:
        return x[n].reshape(c_in, hp * wp), first
    buf = np.zeros((count, hp * wp), dtype=x.dtype)
    for c in range(count):
        for i in range(h):
            for j in range(w):
                buf[c, (i + pt) * wp + pl + j] = x[n, first + c, i, j]
    return buf, 0


@njit(cache=True, inline="always")
def _add_scaled(rows, off, weights, src):
    """``rows[u, off:off + src.size] += weights[u] * src`` for each of the 1, 2
    or 4 weights: one pass over ``src`` feeds every accumulator.  The inner
    loop of the wide kernels (forward and input gradient)."""
    length = src.size
    if weights.size == 4:
        w0, w1, w2, w3 = weights[0], weights[1], weights[2], weights[3]
        d0, d1 = rows[0, off:off + length], rows[1, off:off + length]
        d2, d3 = rows[2, off:off + length], rows[3, off:off + length]
        for t in range(length):
            s = src[t]
            d0[t] += w0 * s
            d1[t] += w1 * s
            d2[t] += w2 * s
            d3[t] += w3 * s
    elif weights.size == 2:
        w0, w1 = weights[0], weights[1]
        d0, d1 = rows[0, off:off + length], rows[1, off:off + length]
        for t in range(length):
            s = src[t]
            d0[t] += w0 * s
            d1[t] += w1 * s
    else:
        w0 = weights[0]
        d0 = rows[0, off:off + length]
        for t in range(length):
            d0[t] += w0 * src[t]


@njit(parallel=True, cache=True)
def _wide_forward(x, w, bias, pt, pl, hp, wp, dh, dw, ho, wo, groups):
    """Unit-stride convolution (plus bias, when ``bias.size``) of ``x`` padded
    to (hp, wp) with ``pt`` rows on top and ``pl`` columns on the left."""
    n_ = x.shape[0]
    c_out, cpg, kh, kw = w.shape
    og = c_out // groups
    length = (ho - 1) * wp + wo
    ob = _block(og)
    blocks = c_out // ob
    y = np.empty((n_, c_out, ho, wo), dtype=x.dtype)
    for task in prange(n_ * blocks):
        n = task // blocks
        o0 = (task % blocks) * ob
        planes, base = _group_planes(x, n, (o0 // og) * cpg, cpg, pt, pl, hp, wp)
        acc = np.zeros((ob, length), dtype=x.dtype)
        for c in range(cpg):
            plane = planes[base + c]
            for p in range(kh):
                for q in range(kw):
                    off = p * dh * wp + q * dw
                    _add_scaled(acc, 0, w[o0:o0 + ob, c, p, q], plane[off:off + length])
        for u in range(ob):
            b = bias[o0 + u] if bias.size else x.dtype.type(0)
            for i in range(ho):
                for j in range(wo):
                    y[n, o0 + u, i, j] = acc[u, i * wp + j] + b
    return y


@njit(cache=True)
def _widen(gy, wp):
    """(N, C, ho, wo) -> (N, C, (ho-1)*wp + wo): rows wp apart, junk columns zero.

    Serial: a copy bound by memory, faster (and quicker to compile) than a
    parallel loop at these sizes."""
    n_, c_, ho, wo = gy.shape
    length = (ho - 1) * wp + wo
    g = np.zeros((n_, c_, length), dtype=gy.dtype)
    for nc in range(n_ * c_):
        n = nc // c_
        c = nc % c_
        for i in range(ho):
            for j in range(wo):
                g[n, c, i * wp + j] = gy[n, c, i, j]
    return g


@njit(parallel=True, cache=True)
def _wide_backward_input(gyw, w, h, wd, pt, pl, hp, wp, dh, dw, groups):
    """Gradient w.r.t. the (unpadded, (h, wd)) input of ``_wide_forward``, from
    the widened gradient; each task adds into a padded scratch plane and
    keeps its interior."""
    n_, c_out, length = gyw.shape
    _, cpg, kh, kw = w.shape
    c_in = cpg * groups
    og = c_out // groups
    cb = _block(cpg)
    blocks = c_in // cb
    gx = np.empty((n_, c_in, h, wd), dtype=gyw.dtype)
    for task in prange(n_ * blocks):  # each (n, channel block) is written by one task only
        n = task // blocks
        c0 = (task % blocks) * cb
        g = c0 // cpg
        cl = c0 - g * cpg  # the channel's index inside its group (the weight's axis 1)
        acc = np.zeros((cb, hp * wp), dtype=gyw.dtype)
        for o in range(g * og, (g + 1) * og):
            src = gyw[n, o]
            for p in range(kh):
                for q in range(kw):
                    off = p * dh * wp + q * dw
                    _add_scaled(acc, off, w[o, cl:cl + cb, p, q], src)
        for u in range(cb):
            for i in range(h):
                for j in range(wd):
                    gx[n, c0 + u, i, j] = acc[u, (i + pt) * wp + pl + j]
    return gx


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})
def _wide_backward_weight(gyw, x, kh, kw, pt, pl, hp, wp, dh, dw, groups):
    """Gradient w.r.t. the weight of ``_wide_forward``: dot products of the
    widened gradient with shifted runs of the padded input (``reassoc`` lets
    them vectorise)."""
    n_, c_out, length = gyw.shape
    c_in = x.shape[1]
    cpg = c_in // groups
    og = c_out // groups
    ob = _block(og)
    blocks = c_out // ob
    gw = np.zeros((c_out, cpg, kh, kw), dtype=gyw.dtype)
    for task in prange(blocks * cpg):  # each (output block, channel) has its own weights
        o0 = (task // cpg) * ob
        c = task % cpg
        ci = (o0 // og) * cpg + c
        for n in range(n_):
            planes, base = _group_planes(x, n, ci, 1, pt, pl, hp, wp)
            plane = planes[base]
            for p in range(kh):
                for q in range(kw):
                    off = p * dh * wp + q * dw
                    src = plane[off:off + length]
                    if ob == 4:
                        g0, g1, g2, g3 = gyw[n, o0], gyw[n, o0 + 1], gyw[n, o0 + 2], gyw[n, o0 + 3]
                        s0 = s1 = s2 = s3 = gyw.dtype.type(0)
                        for t in range(length):
                            v = src[t]
                            s0 += g0[t] * v
                            s1 += g1[t] * v
                            s2 += g2[t] * v
                            s3 += g3[t] * v
                        gw[o0, c, p, q] += s0
                        gw[o0 + 1, c, p, q] += s1
                        gw[o0 + 2, c, p, q] += s2
                        gw[o0 + 3, c, p, q] += s3
                    elif ob == 2:
                        g0, g1 = gyw[n, o0], gyw[n, o0 + 1]
                        s0 = s1 = gyw.dtype.type(0)
                        for t in range(length):
                            v = src[t]
                            s0 += g0[t] * v
                            s1 += g1[t] * v
                        gw[o0, c, p, q] += s0
                        gw[o0 + 1, c, p, q] += s1
                    else:
                        g0 = gyw[n, o0]
                        s0 = gyw.dtype.type(0)
                        for t in range(length):
                            s0 += g0[t] * src[t]
                        gw[o0, c, p, q] += s0
    return gw


# Up to this many multiply-adds per output pixel and per sample (channels per
# group x output channels per group), unit-stride layers take the wide
# kernels; above it the GEMM's blocking wins.  Measured on LeNet-5 and the
# benchmark's layers (``python -m cnnlib.tools.bench``).
_WIDE_MAX_CHANNELS = 256


def _use_wide(c_per_group, out_per_group, sh, sw):
    return sh == 1 and sw == 1 and c_per_group * out_per_group <= _WIDE_MAX_CHANNELS


def conv_path(c_per_group, out_per_group, stride=(1, 1)):
    """Which kernels ``conv2d`` and ``conv2d_backward`` use for a layer whose
    weight has shape (C_out, c_per_group, kH, kW) with ``out_per_group =
    C_out / groups``, at ``stride`` (a pair): ``"wide"`` (unit stride and
    ``c_per_group * out_per_group <= 256``: direct loops over whole input
    planes, four channels per pass), ``"direct"`` (one input channel per
    group at any other stride) or ``"gemm"`` (im2col + one matrix product per
    group).  Chapter "From scratch" times them against PyTorch."""
    sh, sw = stride
    if _use_wide(c_per_group, out_per_group, sh, sw):
        return "wide"
    return "direct" if c_per_group == 1 else "gemm"


# ----------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------

def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution over an NCHW batch, as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    input : ndarray (N, C_in, H, W), float32 or float64
    weight : ndarray (C_out, C_in / groups, kH, kW), same dtype
    bias : ndarray (C_out,) or None
    stride, dilation : int or pair, >= 1
    padding : int or pair (>= 0), ``"valid"`` (no padding), ``"same"``
        (output size = input size; stride must be 1; an odd total padding
        puts the extra row/column at the bottom/right, as PyTorch does) or
        ``"full"`` (``dilation*(k-1)`` zeros on every side: each output
        overlaps the input by at least one tap; a cnnlib extension)
    groups : int dividing C_in and C_out

    Returns
    -------
    ndarray (N, C_out, H_out, W_out) with
    ``H_out = floor((H + pad_top + pad_bottom - dH*(kH-1) - 1) / sH) + 1``
    (and likewise for W_out).
    """
    x, w, bias, (sh, sw), pads, (dh, dw), groups = _conv_settings(
        input, weight, bias, stride, padding, dilation, groups)
    c_out, c_per_group = w.shape[:2]
    if _use_wide(c_per_group, c_out // groups, sh, sw):  # pads inside the kernel
        (t, b), (l, r) = pads
        hp, wp = x.shape[2] + t + b, x.shape[3] + l + r
        ho, wo = hp - dh * (w.shape[2] - 1), wp - dw * (w.shape[3] - 1)
        return _wide_forward(x, w, bias if bias is not None else np.empty(0, w.dtype), t, l, hp, wp,
                             dh, dw, ho, wo, groups)
    xp = _pad(x, pads)
    y = _conv_forward(xp, w, groups, sh, sw, dh, dw)
    if bias is not None:
        y += bias[None, :, None, None]
    return y


def _out_hw(xp, w, sh, sw, dh, dw):
    return (conv_output_size(xp.shape[2], w.shape[2], sh, 0, dh),
            conv_output_size(xp.shape[3], w.shape[3], sw, 0, dw))


# Column matrices are built a few samples at a time: a chunk of at most
# _CHUNK_BYTES stays in cache between the im2col and the matrix product, and
# malloc recycles a buffer of that size instead of asking the kernel for fresh
# zeroed pages on every call (which cost more than the copy itself).
_CHUNK_BYTES = 8 << 20


def _chunks(n_, k_total, length, itemsize):
    per_sample = max(1, k_total * length * itemsize)
    step = max(1, min(n_, _CHUNK_BYTES // per_sample))
    return [slice(start, min(start + step, n_)) for start in range(0, n_, step)]


def _conv_forward(xp, w, groups, sh, sw, dh, dw):
    n_, c_in, _, wp = xp.shape
    c_out, c_per_group, kh, kw = w.shape
    ho, wo = _out_hw(xp, w, sh, sw, dh, dw)
    if c_per_group == 1:
        return _direct_forward(xp, w, sh, sw, dh, dw, ho, wo)
    rw = _row_width(sh, sw, wo, wp)
    k = c_per_group * kh * kw
    og = c_out // groups
    w2 = w.reshape(groups, og, k)
    y = np.empty((n_, c_out, ho, wo), dtype=xp.dtype)
    for chunk in _chunks(n_, c_in * kh * kw, ho * rw, xp.itemsize):
        cols = _im2col(xp[chunk], kh, kw, sh, sw, dh, dw, ho, wo)
        yc = np.empty((c_out, cols.shape[1]), dtype=xp.dtype)
        for g in range(groups):
            np.matmul(w2[g], cols[g * k:(g + 1) * k], out=yc[g * og:(g + 1) * og])
        y[chunk] = yc.reshape(c_out, -1, ho, rw)[..., :wo].transpose(1, 0, 2, 3)
    return y


def conv2d_backward(grad_output, input, weight, bias=None, stride=1, padding=0, dilation=1,
                    groups=1):
    """Gradients of ``conv2d`` with respect to its array inputs.

    ``grad_output`` has the shape of ``conv2d``'s output, (N, C_out, H_out, W_out);
    the other arguments are the forward's.  Returns
    ``(grad_input, grad_weight, grad_bias)`` with the shapes of ``input``,
    ``weight`` and ``bias``; ``grad_bias`` is None when ``bias`` is None.

    grad_weight correlates the padded input with grad_output; grad_input is
    the transposed convolution of grad_output with the weight.
    """
    x, w, bias, (sh, sw), pads, (dh, dw), groups = _conv_settings(
        input, weight, bias, stride, padding, dilation, groups)
    gy = check_float_array(grad_output, "grad_output", ndim=4)
    check_same_dtype(x, "input", gy, "grad_output")
    (t, b), (l, r) = pads
    n_, c_in, hp, wp = x.shape[0], x.shape[1], x.shape[2] + t + b, x.shape[3] + l + r
    c_out, c_per_group, kh, kw = w.shape
    ho = conv_output_size(hp, kh, sh, 0, dh)
    wo = conv_output_size(wp, kw, sw, 0, dw)
    check_shape(gy, "grad_output", (n_, c_out, ho, wo))

    grad_bias = gy.sum(axis=(0, 2, 3)) if bias is not None else None
    if _use_wide(c_per_group, c_out // groups, sh, sw):  # pads inside the kernels
        gyw = _widen(gy, wp)
        gw = _wide_backward_weight(gyw, x, kh, kw, t, l, hp, wp, dh, dw, groups)
        gx = _wide_backward_input(gyw, w, x.shape[2], x.shape[3], t, l, hp, wp, dh, dw, groups)
        return gx, gw, grad_bias
    xp = _pad(x, pads)
    if c_per_group == 1:
        gw = _direct_backward_weight(gy, xp, kh, kw, sh, sw, dh, dw)
        gxp = _direct_backward_input(gy, w, c_in, hp, wp, sh, sw, dh, dw)
        return _unpad(gxp, pads), gw, grad_bias

    rw = _row_width(sh, sw, wo, wp)
    k = c_per_group * kh * kw
    og = c_out // groups
    w2 = w.reshape(groups, og, k)
    gw = np.zeros((groups, og, k), dtype=x.dtype)
    gxp = np.empty_like(xp)
    for chunk in _chunks(n_, c_in * kh * kw, ho * rw, xp.itemsize):
        cols = _im2col(xp[chunk], kh, kw, sh, sw, dh, dw, ho, wo)
        nc = cols.shape[1] // (ho * rw)
        gy2 = np.zeros((c_out, nc, ho, rw), dtype=x.dtype)  # junk columns stay zero
        gy2[..., :wo] = gy[chunk].transpose(1, 0, 2, 3)
        gy2 = gy2.reshape(c_out, -1)
        dcols = np.empty_like(cols)
        for g in range(groups):
            gy_g = gy2[g * og:(g + 1) * og]
            gw[g] += gy_g @ cols[g * k:(g + 1) * k].T
            np.matmul(w2[g].T, gy_g, out=dcols[g * k:(g + 1) * k])
        gxp[chunk] = _col2im(dcols, nc, c_in, hp, wp, kh, kw, sh, sw, dh, dw, ho, wo)
    return _unpad(gxp, pads), gw.reshape(w.shape), grad_bias

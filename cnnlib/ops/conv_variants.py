"""Variants of 2-D convolution, all built on :func:`cnnlib.functional.conv2d`.

* True convolution, next to the cross-correlation that deep-learning
  libraries call "convolution": the same sum with the kernel flipped.
* Spatially separable convolution: a rank-1 kernel ``K = c r^T`` applied as a
  (k x 1) pass then a (1 x k) pass.
* Depthwise-separable convolution (MobileNet): a per-channel k x k
  convolution followed by a 1 x 1 convolution that mixes channels.
* Cost counts (parameters, multiply-accumulates, FLOPs) to compare them.

No new kernels: every function validates its arguments and then calls
``conv2d`` / ``conv2d_backward``.  See the chapter on convolution (Part II).
"""

import math
import numbers

import numpy as np

from .._validate import _is_int, check_float_array, check_same_dtype, pair
from .conv import _pad, _unpad, conv2d, conv2d_backward, conv_output_size, padding_amounts

_MODES = ("valid", "same", "full")


# ----------------------------------------------------------------------------
# True convolution
# ----------------------------------------------------------------------------

def flip_kernel(weight):
    """Reverse a weight in both spatial axes: ``w[..., ::-1, ::-1]`` (a contiguous copy).

    Shapes: (..., kH, kW) -> (..., kH, kW).  See the chapter on convolution (Part II).
    """
    w = check_float_array(weight, "weight", min_ndim=2)
    return np.ascontiguousarray(w[..., ::-1, ::-1])


def _convolve_padding(input, weight, stride, padding, dilation):
    """Pad ``input`` for ``padding='same'``; return (padded input, pads, padding for conv2d).

    'same' for a true convolution keeps the centre of the full convolution,
    as ``scipy.signal.convolve2d`` and MATLAB's ``conv2`` do: with an even
    total padding ``d*(k-1)`` the odd zero goes to the top/left, the mirror
    image of conv2d's (PyTorch's) rule for cross-correlation.
    """
    if not (isinstance(padding, str) and padding == "same"):
        return input, None, padding
    x = check_float_array(input, "input", ndim=4)
    w = check_float_array(weight, "weight", ndim=4)
    if pair(stride, "stride", 1) != (1, 1):
        raise ValueError(f"padding='same' requires stride 1, got stride={stride!r}")
    dilation_hw = pair(dilation, "dilation", 1)
    pads = tuple(padding_amounts("same", k, d)[::-1] for k, d in zip(w.shape[2:], dilation_hw))
    return _pad(x, pads), pads, 0


def convolve2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """True 2-D convolution: cross-correlation (``conv2d``) with the kernel flipped.

    ``y[n, o, i, j] = b[o] + sum_{c, p, q} w[o, c, p, q] * x_pad[n, c', i*sH + (kH-1-p)*dH,
    j*sW + (kW-1-q)*dW]``: the kernel is indexed backwards, which is the same as
    correlating with ``w[:, :, ::-1, ::-1]``.  For one channel, stride 1 and
    ``padding='full'`` this is the textbook ``(x * w)[i, j] = sum_{p,q} x[p, q] w[i-p, j-q]``,
    which is commutative and associative (cross-correlation is neither).

    Inputs: input (N, C_in, H, W); weight (C_out, C_in / groups, kH, kW); bias
    (C_out,) or None; stride, padding, dilation and groups as in ``conv2d``
    (padding int, pair, ``"valid"``, ``"same"`` or ``"full"``).  ``"same"``
    keeps the centre of the full convolution like ``scipy.signal.convolve2d``:
    for an even kernel the extra zero row/column goes on the top/left, the
    mirror image of ``conv2d``'s rule.

    Returns y of shape (N, C_out, H_out, W_out), as ``conv2d`` would.
    See the chapter on convolution (Part II).
    """
    x, pads, conv_padding = _convolve_padding(input, weight, stride, padding, dilation)
    flipped = flip_kernel(check_float_array(weight, "weight", ndim=4))  # the flip: w[:, :, ::-1, ::-1]
    return conv2d(x, flipped, bias, stride, conv_padding, dilation, groups)


def convolve2d_backward(grad_output, input, weight, bias=None, stride=1, padding=0, dilation=1,
                        groups=1):
    """Gradients of :func:`convolve2d` with respect to input, weight and bias.

    The gradient of the flipped kernel, flipped back: ``dL/dw = flip(dL/dw_flipped)``.

    Inputs: grad_output (N, C_out, H_out, W_out) and the forward's arguments.
    Returns ``(grad_input, grad_weight, grad_bias)`` with the shapes of input,
    weight and bias (``grad_bias`` is None when bias is None).
    See the chapter on convolution (Part II).
    """
    x, pads, conv_padding = _convolve_padding(input, weight, stride, padding, dilation)
    flipped = flip_kernel(check_float_array(weight, "weight", ndim=4))
    gx, gw_flipped, gb = conv2d_backward(grad_output, x, flipped, bias, stride, conv_padding,
                                         dilation, groups)
    if pads is not None:
        gx = _unpad(gx, pads)
    return gx, flip_kernel(gw_flipped), gb


# ----------------------------------------------------------------------------
# Spatially separable convolution
# ----------------------------------------------------------------------------

def separable_factors(kernel, tol=1e-6, rank1_approx=False):
    """Factor a 2-D kernel as ``K = outer(col, row)`` with the SVD, if its rank is 1.

    With ``K = U diag(s) V^T``, ``col = sqrt(s_0) U[:, 0]`` and
    ``row = sqrt(s_0) V[0]``; the kernel has rank 1 (within ``tol``) when
    ``s_1 <= tol * s_0``.  Signs are chosen so the largest entry of ``col``
    is positive.

    Inputs: kernel (kH, kW), float32 or float64.
    Returns ``(col (kH,), row (kW,), singular_values (min(kH, kW),))``; with
    ``rank1_approx=True`` the rank check is skipped and a fourth value is
    returned: the relative error of the best rank-1 approximation,
    ``||K - outer(col, row)||_F / ||K||_F = sqrt(sum_{i>0} s_i^2 / sum s_i^2)``.
    Raises ``ValueError`` when the rank exceeds 1 and ``rank1_approx`` is False.
    See the chapter on convolution (Part II).
    """
    k = check_float_array(kernel, "kernel", ndim=2)
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real) or not 0 <= tol < 1:
        raise ValueError(f"tol must be a number in [0, 1), got {tol!r}")
    if not isinstance(rank1_approx, bool):
        raise TypeError(f"rank1_approx must be a bool, got {rank1_approx!r}")
    if not np.all(np.isfinite(k)):
        raise ValueError("kernel must be finite (no inf or nan)")
    u, s, vt = np.linalg.svd(k.astype(np.float64))
    col, row = u[:, 0] * math.sqrt(s[0]), vt[0] * math.sqrt(s[0])
    if col[np.argmax(np.abs(col))] < 0:
        col, row = -col, -row
    total = float(np.sum(s**2))
    if rank1_approx:
        err = math.sqrt(float(np.sum(s[1:] ** 2)) / total) if total > 0 else 0.0
        return col.astype(k.dtype), row.astype(k.dtype), s.astype(k.dtype), err
    if s.size > 1 and s[1] > tol * s[0]:
        raise ValueError(
            f"kernel has rank > 1 (singular values {np.round(s, 6).tolist()}, s[1]/s[0] = "
            f"{s[1] / s[0]:.3g} > tol={tol}); pass rank1_approx=True for the best rank-1 approximation")
    return col.astype(k.dtype), row.astype(k.dtype), s.astype(k.dtype)


def _factor(v, name, channels, dtype):
    """A (k,) or (C, k) factor -> a depthwise weight (C, 1, k)."""
    v = check_float_array(v, name, ndim=(1, 2))
    if v.dtype != dtype:
        raise TypeError(f"{name} must have the same dtype as input ({dtype}), got {v.dtype}")
    if v.ndim == 2 and v.shape[0] != channels:
        raise ValueError(f"{name} must have shape (k,) or ({channels}, k) for {channels} input channels, "
                         f"got {v.shape}")
    if v.shape[-1] < 1:
        raise ValueError(f"{name} must not be empty, got shape {v.shape}")
    return np.ascontiguousarray(np.broadcast_to(v, (channels, v.shape[-1]))[:, None, :])


def spatially_separable_conv2d(input, col, row, stride=1, padding=0):
    """Per-channel convolution with a rank-1 kernel ``K = outer(col, row)`` in two 1-D passes.

    ``y = (x conv col) conv row``: a (kH x 1) depthwise pass (stride (sH, 1),
    padding rows only) then a (1 x kW) pass (stride (1, sW), padding columns
    only); it equals ``conv2d`` with the kernel ``outer(col, row)`` on every
    channel at ``kH + kW`` instead of ``kH * kW`` multiplications per output
    (cross-correlation, like ``conv2d``).

    Inputs: input (N, C, H, W); col (kH,) or (C, kH); row (kW,) or (C, kW)
    (1-D factors are shared by all channels); stride int or pair; padding
    int, pair, ``"valid"``, ``"same"`` or ``"full"``.
    Returns y (N, C, H_out, W_out), the shape of ``conv2d`` with a (kH, kW) kernel.
    See the chapter on convolution (Part II).
    """
    x = check_float_array(input, "input", ndim=4)
    c = x.shape[1]
    wc = _factor(col, "col", c, x.dtype)[..., None]        # (C, 1, kH, 1)
    wr = _factor(row, "row", c, x.dtype)[:, :, None, :]    # (C, 1, 1, kW)
    sh, sw = pair(stride, "stride", 1)
    if isinstance(padding, str):
        if padding not in _MODES:
            raise ValueError(f"padding must be an int, a pair, 'valid', 'same' or 'full', got {padding!r}")
        if padding == "same" and (sh, sw) != (1, 1):
            raise ValueError(f"padding='same' requires stride 1, got stride={stride!r}")
        pad_rows = pad_cols = padding   # a mode pads nothing along a size-1 kernel axis
    else:
        ph, pw = pair(padding, "padding", 0)
        pad_rows, pad_cols = (ph, 0), (0, pw)
    z = conv2d(x, wc, stride=(sh, 1), padding=pad_rows, groups=c)
    return conv2d(z, wr, stride=(1, sw), padding=pad_cols, groups=c)


# ----------------------------------------------------------------------------
# Depthwise-separable convolution
# ----------------------------------------------------------------------------

def _depthwise_separable_settings(input, depthwise_weight, pointwise_weight, bias):
    x = check_float_array(input, "input", ndim=4)
    wd = check_float_array(depthwise_weight, "depthwise_weight", ndim=4)
    wp = check_float_array(pointwise_weight, "pointwise_weight", ndim=4)
    check_same_dtype(x, "input", wd, "depthwise_weight")
    check_same_dtype(x, "input", wp, "pointwise_weight")
    c_in = x.shape[1]
    if wd.shape[1] != 1 or wd.shape[0] % c_in or wd.shape[0] == 0:
        raise ValueError(f"depthwise_weight must have shape (C_in*m, 1, kH, kW) with C_in={c_in}, "
                         f"got {wd.shape}")
    if wp.shape[1:] != (wd.shape[0], 1, 1):
        raise ValueError(f"pointwise_weight must have shape (C_out, {wd.shape[0]}, 1, 1), got {wp.shape}")
    return x, wd, wp


def depthwise_separable_conv2d(input, depthwise_weight, pointwise_weight, bias=None, stride=1,
                               padding=0, dilation=1):
    """Depthwise k x k convolution (one filter group per input channel), then a 1 x 1 convolution.

    ``z = conv2d(x, w_d, groups=C_in, stride, padding, dilation)``, then
    ``y = conv2d(z, w_p, b)``: spatial filtering and channel mixing are split,
    which costs ``C_in*m*k^2 + C_in*m*C_out`` weights instead of ``C_in*C_out*k^2``.

    Inputs: input (N, C_in, H, W); depthwise_weight (C_in*m, 1, kH, kW) for a
    depth multiplier m; pointwise_weight (C_out, C_in*m, 1, 1); bias (C_out,)
    or None (added after the pointwise step); stride, padding, dilation as in
    ``conv2d`` (they apply to the depthwise step).
    Returns y (N, C_out, H_out, W_out).
    See the chapter on convolution (Part II).
    """
    x, wd, wp = _depthwise_separable_settings(input, depthwise_weight, pointwise_weight, bias)
    z = conv2d(x, wd, None, stride, padding, dilation, groups=x.shape[1])
    return conv2d(z, wp, bias)


def depthwise_separable_conv2d_backward(grad_output, input, depthwise_weight, pointwise_weight,
                                        bias=None, stride=1, padding=0, dilation=1):
    """Gradients of :func:`depthwise_separable_conv2d` (the chain rule through both steps).

    The depthwise output ``z`` is recomputed; then ``conv2d_backward`` of the
    1 x 1 step gives ``dL/dz``, ``dL/dw_p``, ``dL/db`` and ``conv2d_backward``
    of the depthwise step gives ``dL/dx``, ``dL/dw_d``.

    Inputs: grad_output (N, C_out, H_out, W_out) and the forward's arguments.
    Returns ``(grad_input, grad_depthwise, grad_pointwise, grad_bias)`` with the
    shapes of input, depthwise_weight, pointwise_weight and bias (None without bias).
    See the chapter on convolution (Part II).
    """
    x, wd, wp = _depthwise_separable_settings(input, depthwise_weight, pointwise_weight, bias)
    groups = x.shape[1]
    z = conv2d(x, wd, None, stride, padding, dilation, groups)
    gz, gwp, gb = conv2d_backward(grad_output, z, wp, bias)
    gx, gwd, _ = conv2d_backward(gz, x, wd, None, stride, padding, dilation, groups)
    return gx, gwd, gwp, gb


# ----------------------------------------------------------------------------
# Costs
# ----------------------------------------------------------------------------

def _positive(value, name):
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(value)


def _cost(params, macs):
    return dict(params=int(params), macs=int(macs), flops=2 * int(macs))


def conv2d_cost(in_channels, out_channels, kernel_size, output_size, groups=1, bias=True):
    """Parameters and multiply-accumulates of one ``conv2d`` on one sample.

    ``params = C_out * (C_in/groups) * kH * kW (+ C_out bias)``,
    ``macs = C_out * (C_in/groups) * kH * kW * H_out * W_out`` (taps that land
    on padding count, as in any dense implementation; bias additions do not),
    ``flops = 2 * macs``.

    Inputs: channel counts and groups (ints), kernel_size and output_size (int or pair).
    Returns ``dict(params=..., macs=..., flops=...)``.
    See the chapter on convolution (Part II).
    """
    c_in = _positive(in_channels, "in_channels")
    c_out = _positive(out_channels, "out_channels")
    groups = _positive(groups, "groups")
    if c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide in_channels={c_in} and out_channels={c_out}")
    kh, kw = pair(kernel_size, "kernel_size", 1)
    ho, wo = pair(output_size, "output_size", 1)
    if not isinstance(bias, bool):
        raise TypeError(f"bias must be a bool, got {bias!r}")
    weights = c_out * (c_in // groups) * kh * kw
    return _cost(weights + (c_out if bias else 0), weights * ho * wo)


def depthwise_separable_cost(in_channels, out_channels, kernel_size, output_size, depth_multiplier=1,
                             bias=True):
    """Cost of :func:`depthwise_separable_conv2d` (depthwise step + 1 x 1 step) on one sample.

    ``params = C_in*m*kH*kW + C_out*C_in*m (+ C_out)``,
    ``macs = (C_in*m*kH*kW + C_out*C_in*m) * H_out * W_out``.  Against a
    standard convolution (m = 1, no bias) the ratio is
    ``1/C_out + 1/(kH*kW)``.

    Inputs: ints, kernel_size and output_size int or pair.
    Returns ``dict(params=..., macs=..., flops=...)``.
    See the chapter on convolution (Part II).
    """
    c_in = _positive(in_channels, "in_channels")
    m = _positive(depth_multiplier, "depth_multiplier")
    depthwise = conv2d_cost(c_in, c_in * m, kernel_size, output_size, groups=c_in, bias=False)
    pointwise = conv2d_cost(c_in * m, out_channels, 1, output_size, bias=bias)
    return _cost(depthwise["params"] + pointwise["params"], depthwise["macs"] + pointwise["macs"])


def spatially_separable_cost(channels, kernel_size, input_size, stride=1, padding=0):
    """Cost of :func:`spatially_separable_conv2d` (two 1-D passes) on one sample, exactly.

    The (kH x 1) pass makes an (H_out, W) intermediate (it pads rows only),
    the (1 x kW) pass the (H_out, W_out) output:
    ``macs = C * (kH * H_out * W + kW * H_out * W_out)``, ``params = C*(kH + kW)``.
    With ``padding='same'`` this is ``C*(kH + kW)*H*W``, a fraction
    ``(kH + kW)/(kH*kW)`` of the full kernel's ``C*kH*kW*H*W``.

    Inputs: channels (int), kernel_size, input_size, stride (int or pair),
    padding (int, pair or mode).  Returns ``dict(params=..., macs=..., flops=...)``.
    See the chapter on convolution (Part II).
    """
    c = _positive(channels, "channels")
    (kh, kw), (h, w) = pair(kernel_size, "kernel_size", 1), pair(input_size, "input_size", 1)
    sh, sw = pair(stride, "stride", 1)
    if isinstance(padding, str):
        if padding == "same" and (sh, sw) != (1, 1):
            raise ValueError(f"padding='same' requires stride 1, got stride={stride!r}")
        pads = [padding_amounts(padding, k) for k in (kh, kw)]
    else:
        pads = [(p, p) for p in pair(padding, "padding", 0)]
    ho = conv_output_size(h, kh, sh, pads[0])
    wo = conv_output_size(w, kw, sw, pads[1])
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel_size {(kh, kw)} is larger than the padded input_size {(h, w)}")
    return _cost(c * (kh + kw), c * (kh * ho * w + kw * ho * wo))

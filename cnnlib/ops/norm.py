"""Normalisation: local response normalisation (AlexNet) and batch normalisation.

Both follow ``torch.nn.functional`` (same arguments, defaults and results);
each backward takes the upstream gradient first and returns the gradient of
every array input. The arithmetic is a handful of NumPy array expressions,
so there is no Numba kernel here. See the chapter on classic architectures
(Part II).
"""

import numpy as np

from .._validate import (check_bool, check_float_array, check_lrn_params, check_real, check_same_dtype,
                         check_shape)


# ----------------------------------------------------------------------------
# Local response normalisation
# ----------------------------------------------------------------------------

def _lrn_settings(input, size, alpha, beta, k):
    x = check_float_array(input, "input", min_ndim=3)
    return (x, *check_lrn_params(size, alpha, beta, k))


def _channel_window_sum(a, before, after):
    """s[:, c] = sum of a[:, c - before : c + after + 1] along axis 1, zeros outside."""
    c = a.shape[1]
    widths = [(0, 0)] * a.ndim
    widths[1] = (before, after)
    padded = np.pad(a, widths)
    out = np.zeros_like(a)
    for offset in range(before + after + 1):
        out += padded[:, offset:offset + c]
    return out


def _lrn_divisor(x, size, alpha, k):
    """d = k + alpha / size * (window sum of x^2), before the power beta."""
    t = x.dtype.type
    sq_sum = _channel_window_sum(x * x, size // 2, (size - 1) // 2)
    return t(k) + t(alpha / size) * sq_sum


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Local response normalisation across channels, as ``torch.nn.functional.local_response_norm``.

    y[n, c] = x[n, c] / (k + alpha / size * sum_{c'} x[n, c']^2)^beta, where c'
    runs over the ``size`` channels c - size//2 .. c + (size-1)//2 (channels
    outside 0..C-1 count as zeros; note alpha is divided by ``size``, as in
    PyTorch but not in the AlexNet paper's formula).

    Inputs:
    - input: ``(N, C, *)`` with at least one trailing dimension, e.g. (N, C, H, W)
    - size: number of neighbouring channels in the window (positive int)
    - alpha, beta: scale and exponent; k: additive constant (positive)

    Returns y of the shape and dtype of ``input``. See the chapter on classic
    architectures (Part II).
    """
    x, size, alpha, beta, k = _lrn_settings(input, size, alpha, beta, k)
    d = _lrn_divisor(x, size, alpha, k)
    return x / d ** x.dtype.type(beta)


def local_response_norm_backward(grad_output, input, size, alpha=1e-4, beta=0.75, k=1.0):
    """Gradient of :func:`local_response_norm` with respect to its input.

    With d_c = k + alpha/size * sum_{c' in W(c)} x_c'^2, the output y_c = x_c d_c^-beta gives
    dx_j = g_j d_j^-beta - (2 alpha beta / size) x_j sum_{c: j in W(c)} g_c x_c d_c^(-beta-1);
    the last sum is a window sum with the padding mirrored ((size-1)//2 before, size//2 after).

    Inputs:
    - grad_output: ``(N, C, *)``, the shape and dtype of ``input``
    - input, size, alpha, beta, k: as given to the forward

    Returns grad_input, the shape and dtype of ``input``. See the chapter on
    classic architectures (Part II).
    """
    x, size, alpha, beta, k = _lrn_settings(input, size, alpha, beta, k)
    gy = check_float_array(grad_output, "grad_output")
    check_same_dtype(x, "input", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape)
    t = x.dtype.type
    d = _lrn_divisor(x, size, alpha, k)
    d_pow = d ** t(-beta)
    back = _channel_window_sum(gy * x * d_pow / d, (size - 1) // 2, size // 2)
    return gy * d_pow - t(2 * alpha * beta / size) * x * back


# ----------------------------------------------------------------------------
# Batch normalisation
# ----------------------------------------------------------------------------

def _bn_arrays(input, weight, bias, running_mean, running_var):
    """Validate the arrays of batch_norm; return them with the reduction axes."""
    x = check_float_array(input, "input", min_ndim=2)
    c = x.shape[1]
    out = []
    for name, arr in (("weight", weight), ("bias", bias),
                      ("running_mean", running_mean), ("running_var", running_var)):
        if arr is not None:
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"{name} must be a numpy.ndarray or None, got {type(arr).__name__}")
            check_same_dtype(x, "input", arr, name)
            if arr.shape != (c,):
                raise ValueError(f"{name} must have shape ({c},) (one entry per channel of "
                                 f"input {x.shape}), got {arr.shape}")
        out.append(arr)
    axes = (0,) + tuple(range(2, x.ndim))
    return (x, *out, axes)


def _check_eps(eps):
    eps = check_real(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps must be non-negative, got {eps}")
    return eps


def _batch_stats(x, axes):
    """Per-channel mean and biased variance over ``axes``; needs more than one value each."""
    count = x.size // x.shape[1]
    if count < 2:
        raise ValueError(f"batch_norm in training mode needs more than 1 value per channel, "
                         f"got input of shape {x.shape}")
    return x.mean(axis=axes), x.var(axis=axes), count


def _channel(v, ndim):
    """Reshape a per-channel vector (C,) to broadcast against (N, C, *)."""
    return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation, as ``torch.nn.functional.batch_norm``.

    y = (x - mean) / sqrt(var + eps) * weight + bias, per channel. In training
    mode mean and var are the batch statistics over ``(N, *)`` (var biased), and
    the running statistics, when given, are updated IN PLACE:
    running = (1 - momentum) * running + momentum * batch statistic, with the
    unbiased variance (times n / (n - 1)). In evaluation mode the running
    statistics are used and nothing changes.

    Inputs:
    - input: (N, C) or ``(N, C, *)``, e.g. (N, C, H, W)
    - running_mean, running_var: (C,) or None (only in training mode)
    - weight, bias: (C,) or None (no scale / no shift)
    - training: bool; momentum in [0, 1]; eps >= 0

    Returns y of the shape and dtype of ``input``. See the chapter on classic
    architectures (Part II).
    """
    x, weight, bias, running_mean, running_var, axes = _bn_arrays(
        input, weight, bias, running_mean, running_var)
    training = check_bool(training, "training")
    eps = _check_eps(eps)
    momentum = check_real(momentum, "momentum")
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be arrays or both be None")
    t = x.dtype.type
    if training:
        mean, var, count = _batch_stats(x, axes)
        if running_mean is not None:
            for name, arr in (("running_mean", running_mean), ("running_var", running_var)):
                if not arr.flags.writeable:
                    raise ValueError(f"{name} must be writeable: training mode updates it in place")
            m = t(momentum)
            running_mean *= 1 - m
            running_mean += m * mean
            running_var *= 1 - m
            running_var += m * var * t(count / (count - 1))
    else:
        if running_mean is None:
            raise ValueError("batch_norm in evaluation mode (training=False) needs "
                             "running_mean and running_var, got None")
        mean, var = running_mean, running_var
    scale = 1 / np.sqrt(var + t(eps))
    if weight is not None:
        scale = scale * weight
    y = (x - _channel(mean, x.ndim)) * _channel(scale, x.ndim)
    if bias is not None:
        y += _channel(bias, x.ndim)
    return y


def batch_norm_backward(grad_output, input, weight=None, bias=None, running_mean=None,
                        running_var=None, training=False, eps=1e-5):
    """Gradients of :func:`batch_norm`: returns (grad_input, grad_weight, grad_bias).

    With xhat = (x - mean) / sqrt(var + eps) and gh = grad_output * weight:
    grad_bias = sum(grad_output), grad_weight = sum(grad_output * xhat) over
    ``(N, *)``; in evaluation mode grad_input = gh / sqrt(var + eps) (running
    statistics are constants), in training mode the batch statistics are
    recomputed from ``input`` and
    grad_input = (gh - mean(gh) - xhat * mean(gh * xhat)) / sqrt(var + eps).
    The running statistics are not updated.

    Inputs:
    - grad_output: the shape and dtype of ``input``
    - input, weight, bias, running_mean, running_var, training, eps: as given
      to the forward (running statistics are needed in evaluation mode only)

    Returns grad_input (the shape of ``input``), grad_weight and grad_bias
    ((C,), or None where ``weight`` / ``bias`` is None). See the chapter on
    classic architectures (Part II).
    """
    x, weight, bias, running_mean, running_var, axes = _bn_arrays(
        input, weight, bias, running_mean, running_var)
    gy = check_float_array(grad_output, "grad_output")
    check_same_dtype(x, "input", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape)
    training = check_bool(training, "training")
    eps = _check_eps(eps)
    t = x.dtype.type
    if training:
        mean, var, _ = _batch_stats(x, axes)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm_backward in evaluation mode (training=False) needs "
                             "running_mean and running_var, got None")
        mean, var = running_mean, running_var
    inv_std = _channel(1 / np.sqrt(var + t(eps)), x.ndim)
    xhat = (x - _channel(mean, x.ndim)) * inv_std
    grad_bias = gy.sum(axis=axes) if bias is not None else None
    grad_weight = (gy * xhat).sum(axis=axes) if weight is not None else None
    gh = gy * _channel(weight, x.ndim) if weight is not None else gy
    if training:
        gh = (gh - gh.mean(axis=axes, keepdims=True)
              - xhat * (gh * xhat).mean(axis=axes, keepdims=True))
    return gh * inv_std, grad_weight, grad_bias

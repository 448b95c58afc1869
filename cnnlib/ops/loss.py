"""Softmax, log-softmax and the cross-entropy loss with integer class targets."""

import numpy as np

from .._validate import check_dim, check_float_array, check_reduction, check_same_dtype, check_shape


def softmax(input, dim):
    """exp(x) / sum(exp(x)) along ``dim`` (shifted by the max for stability)."""
    x = check_float_array(input, "input", min_ndim=1)
    dim = check_dim(dim, x.ndim)
    e = np.exp(x - x.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def log_softmax(input, dim):
    """x - logsumexp(x) along ``dim``."""
    x = check_float_array(input, "input", min_ndim=1)
    dim = check_dim(dim, x.ndim)
    z = x - x.max(axis=dim, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=dim, keepdims=True))


def _grad_args(grad_output, input, dim):
    x = check_float_array(input, "input", min_ndim=1)
    gy = check_float_array(grad_output, "grad_output")
    check_same_dtype(x, "input", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape)
    return gy, x, check_dim(dim, x.ndim)


def softmax_backward(grad_output, input, dim):
    """s * (g - sum(g * s)) along ``dim``, with s = softmax(input)."""
    gy, x, dim = _grad_args(grad_output, input, dim)
    s = softmax(x, dim)
    return s * (gy - (gy * s).sum(axis=dim, keepdims=True))


def log_softmax_backward(grad_output, input, dim):
    """g - softmax(input) * sum(g) along ``dim``."""
    gy, x, dim = _grad_args(grad_output, input, dim)
    return gy - softmax(x, dim) * gy.sum(axis=dim, keepdims=True)


def _ce_settings(input, target, reduction):
    x = check_float_array(input, "input", min_ndim=2)
    if not isinstance(target, np.ndarray):
        raise TypeError(f"target must be a numpy.ndarray of class indices, got {type(target).__name__}")
    if not np.issubdtype(target.dtype, np.integer):
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    want = (x.shape[0],) + x.shape[2:]
    if target.shape != want:
        raise ValueError(f"target must have shape {want} for input of shape {x.shape}, got {target.shape}")
    n_classes = x.shape[1]
    if target.size and (target.min() < 0 or target.max() >= n_classes):
        bad = target[(target < 0) | (target >= n_classes)].flat[0]
        raise ValueError(f"target values must be in [0, {n_classes - 1}] (input has {n_classes} classes), got {bad}")
    return x, target, check_reduction(reduction)


def _pick(a, target):
    """a[n, target[n, ...], ...] for a of shape (N, C, ...)."""
    return np.take_along_axis(a, target[:, None].astype(np.intp), axis=1)[:, 0]


def cross_entropy(input, target, reduction="mean"):
    """Cross-entropy of logits and class indices, as ``torch.nn.functional.cross_entropy``.

    input (N, C) or (N, C, d1, ...) logits; target (N,) or (N, d1, ...) integer
    classes in [0, C).  loss = -log_softmax(input, 1)[n, target[n]], then mean
    (default), sum or none (per-element losses, shape of target).
    """
    x, target, reduction = _ce_settings(input, target, reduction)
    losses = -_pick(log_softmax(x, 1), target)
    if reduction == "none":
        return losses
    total = losses.sum(dtype=x.dtype)
    if reduction == "sum":
        return total
    # An empty batch has no mean: NaN, as in PyTorch (0 / 0).
    return total / x.dtype.type(target.size) if target.size else x.dtype.type(np.nan)


def cross_entropy_backward(input, target, reduction="mean"):
    """Gradient of ``cross_entropy`` w.r.t. its logits: softmax - one_hot(target).

    The loss ends the graph, so there is no upstream gradient; with
    ``reduction="mean"`` the result is divided by the number of targets, and
    with ``"none"`` it is the gradient of the sum of the per-element losses.
    """
    x, target, reduction = _ce_settings(input, target, reduction)
    g = softmax(x, 1)
    np.put_along_axis(g, target[:, None].astype(np.intp), _pick(g, target)[:, None] - 1, axis=1)
    if reduction == "mean" and target.size:
        g /= x.dtype.type(target.size)
    return g

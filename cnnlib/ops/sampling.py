"""Gumbel noise and the Gumbel-softmax relaxation of a categorical sample.

See the chapter "Architecture search" (Part IV, ``notebooks/04_2_architecture_search.ipynb``).
"""

import numpy as np

from .._random import get_rng
from .._validate import check_bool, check_dim, check_float_array, check_number, check_same_dtype, check_shape
from .loss import softmax

__all__ = ["sample_gumbel", "gumbel_softmax", "gumbel_softmax_backward"]


def sample_gumbel(shape, dtype=np.float64, rng=None):
    """Standard Gumbel noise ``g = -log(E)``, ``E ~ Exponential(1)``, as torch draws it.

    Inputs:
    - shape: the shape of the noise (an int or a tuple of ints)
    - dtype: float32 or float64
    - rng: None, a seed or a ``np.random.Generator`` (see :func:`cnnlib.manual_seed`)

    Returns an array of ``shape`` and ``dtype``.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    e = get_rng(rng).standard_exponential(shape)
    return (-np.log(e)).astype(dtype)


def _settings(logits, tau, dim, gumbels):
    x = check_float_array(logits, "logits", min_ndim=1)
    tau = check_number(tau, "tau", positive=True)
    dim = check_dim(dim, x.ndim)
    if gumbels is not None:
        gumbels = check_float_array(gumbels, "gumbels")
        check_same_dtype(x, "logits", gumbels, "gumbels")
        check_shape(gumbels, "gumbels", x.shape)
    return x, tau, dim, gumbels


def _one_hot_argmax(y, dim):
    index = np.expand_dims(y.argmax(axis=dim), dim)
    hard = np.zeros_like(y)
    np.put_along_axis(hard, index, 1, axis=dim)
    return hard


def gumbel_softmax(logits, tau=1.0, hard=False, dim=-1, rng=None, *, gumbels=None):
    """A relaxed one-hot sample of ``softmax(logits)``, like ``torch.nn.functional.gumbel_softmax``.

    ``y = softmax((logits + g) / tau)`` along ``dim`` with Gumbel noise
    ``g = -log(Exponential(1))`` (Jang et al. 2017). As ``tau -> 0`` the sample
    becomes the one-hot vector of ``argmax(logits + g)``, whose law is exactly
    ``softmax(logits)`` (the Gumbel-max trick). ``hard=True`` returns that
    one-hot vector in the forward pass; its gradient (see
    :func:`gumbel_softmax_backward`) is the soft sample's, the straight-through
    estimator ``y_hard - stop_gradient(y_soft) + y_soft``.

    Inputs:
    - logits: array of any shape (float32 or float64), unnormalised log-probabilities
    - tau: temperature > 0
    - hard: return the one-hot argmax instead of the soft sample
    - dim: the axis of the categories
    - rng: generator for the noise (ignored when ``gumbels`` is given)
    - gumbels: the noise itself, same shape and dtype as ``logits`` (from
      :func:`sample_gumbel`); pass the same array to the backward

    Returns y of the shape and dtype of ``logits``; it sums to 1 along ``dim``.
    See the chapter "Architecture search" (Part IV).
    """
    x, tau, dim, gumbels = _settings(logits, tau, dim, gumbels)
    hard = check_bool(hard, "hard")
    if gumbels is None:
        gumbels = sample_gumbel(x.shape, x.dtype, rng)
    y = softmax((x + gumbels) / x.dtype.type(tau), dim)
    return _one_hot_argmax(y, dim) if hard else y


def gumbel_softmax_backward(grad_output, logits, gumbels, tau=1.0, hard=False, dim=-1):
    """Gradient of :func:`gumbel_softmax` with respect to ``logits`` for the given noise.

    With ``y = softmax((logits + g) / tau)``, ``dL/dlogits = y * (G - sum(G * y)) / tau``
    along ``dim``, ``G`` the upstream gradient. ``hard=True`` has the same
    gradient (straight-through: the one-hot forward is treated as the soft sample).

    Inputs:
    - grad_output: upstream gradient, shape of ``logits``
    - logits, gumbels, tau, hard, dim: as given to the forward

    Returns the gradient of ``logits`` (same shape and dtype).
    """
    if gumbels is None:
        raise TypeError("gumbels must be the noise array the forward used, got None")
    x, tau, dim, gumbels = _settings(logits, tau, dim, gumbels)
    check_bool(hard, "hard")
    gy = check_float_array(grad_output, "grad_output")
    check_same_dtype(x, "logits", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape)
    t = x.dtype.type(tau)
    y = softmax((x + gumbels) / t, dim)
    return y * (gy - (gy * y).sum(axis=dim, keepdims=True)) / t

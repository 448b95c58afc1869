"""Dropout (inverted) and channel-wise dropout, with their backward.

Inverted dropout (Srivastava et al. 2014) keeps each element with
probability ``1 - p`` and scales the kept ones by ``1 / (1 - p)``, so that the
expected output equals the input and nothing has to change at test time:

    training:  y = x * m / (1 - p),   m ~ Bernoulli(1 - p), independently
    test:      y = x

``p = 1`` drops everything (``y = 0 * x``), as in PyTorch.  The keep-mask is a
boolean array drawn from ``rng`` (``rng.random(shape) >= p``); the backward is
``grad_output * m / (1 - p)``, with the same mask.  The dropout layers of
:class:`cnnlib.nn.Dropout` keep it for their backward.  See the regularisation
chapter (Part III).
"""

import numbers

import numpy as np

from .._random import get_rng
from .._validate import check_bool, check_float_array

__all__ = ["dropout", "dropout_backward", "dropout2d", "check_dropout_p"]


def check_dropout_p(p):
    """Return ``p`` as a float after checking ``0 <= p <= 1`` (PyTorch's message)."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a number, got {p!r}")
    p = float(p)
    if not 0.0 <= p <= 1.0:  # also rejects nan
        raise ValueError(f"dropout probability has to be between 0 and 1, but got p={p}")
    return p


def _scale(p, dtype):
    """1 / (1 - p) in the array's dtype; 0 for p = 1 (everything dropped)."""
    return dtype.type(0) if p == 1.0 else dtype.type(1.0 / (1.0 - p))


def _forward(x, p, training, rng, return_mask, mask_shape):
    if not training:
        return (x, None) if return_mask else x
    keep = get_rng(rng).random(mask_shape) >= p  # P(keep) = 1 - p
    y = x * (keep * _scale(p, x.dtype))
    return (y, keep) if return_mask else y


def dropout(input, p=0.5, training=True, rng=None, return_mask=False):
    """Inverted dropout, as ``torch.nn.functional.dropout``.

    Inputs:
    - input: array of any shape, float32/float64
    - p: probability of dropping an element, in [0, 1]
    - training: drop and rescale (True) or return the input unchanged (False)
    - rng: None, a seed or a ``np.random.Generator`` (see ``cnnlib._random``);
      one uniform number is drawn per element, in training only
    - return_mask: also return the boolean keep-mask (same shape as input;
      ``None`` when ``training=False``), for :func:`dropout_backward`

    Returns y (same shape and dtype): ``x * m / (1 - p)`` in training, the
    input itself (no copy, as in PyTorch) otherwise.  See the regularisation
    chapter (Part III).
    """
    x = check_float_array(input, "input")
    p = check_dropout_p(p)
    training = check_bool(training, "training")
    return_mask = check_bool(return_mask, "return_mask")
    return _forward(x, p, training, rng, return_mask, x.shape)


def dropout2d(input, p=0.5, training=True, rng=None, return_mask=False):
    """Channel-wise dropout, as ``torch.nn.functional.dropout2d`` on 4-d input.

    Each whole feature map ``x[n, c]`` is kept (and scaled by ``1 / (1 - p)``)
    or zeroed, with one draw per (sample, channel) (Tompson et al. 2015): in
    convolutional layers neighbouring pixels are so correlated that dropping
    single pixels removes little information.

    Inputs:
    - input: (N, C, H, W), float32/float64
    - p, training, rng, return_mask: as in :func:`dropout`; the mask has shape
      (N, C, 1, 1) and broadcasts against the input

    Returns y of shape (N, C, H, W).  See the regularisation chapter (Part III).
    """
    x = check_float_array(input, "input", ndim=4)
    p = check_dropout_p(p)
    training = check_bool(training, "training")
    return_mask = check_bool(return_mask, "return_mask")
    return _forward(x, p, training, rng, return_mask, x.shape[:2] + (1, 1))


def dropout_backward(grad_output, mask, p=0.5, training=True):
    """Gradient of :func:`dropout` / :func:`dropout2d` with respect to the input.

    Inputs:
    - grad_output: upstream gradient, the shape of the forward's input
    - mask: the boolean keep-mask the forward returned (``return_mask=True``):
      the input's shape for ``dropout``, (N, C, 1, 1) for ``dropout2d``;
      ignored (may be None) when ``training=False``
    - p, training: as in the forward

    Returns ``grad_output * mask / (1 - p)`` in training (zeros for p = 1) and
    a copy of ``grad_output`` otherwise.  See the regularisation chapter
    (Part III).
    """
    gy = check_float_array(grad_output, "grad_output")
    p = check_dropout_p(p)
    training = check_bool(training, "training")
    if not training:
        return gy.copy()
    if not isinstance(mask, np.ndarray):
        raise TypeError("training=True needs the keep-mask of the forward (return_mask=True), "
                        f"got {type(mask).__name__}")
    if mask.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean array, got dtype {mask.dtype}")
    if mask.ndim != gy.ndim or any(m not in (1, g) for m, g in zip(mask.shape, gy.shape)):
        raise ValueError(f"mask of shape {mask.shape} does not broadcast to grad_output's "
                         f"shape {gy.shape}")
    return gy * (mask * _scale(p, gy.dtype))

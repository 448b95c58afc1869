"""Normalisation layers: ``LocalResponseNorm`` (AlexNet) and ``BatchNorm2d``.

Both wrap :mod:`cnnlib.ops.norm` and behave like their ``torch.nn``
namesakes, including ``BatchNorm2d``'s running statistics, which are buffers
(saved by ``state_dict`` under torch's names). See the chapter on classic
architectures (Part II).
"""

import numbers

import numpy as np

from .._validate import check_float_array, check_lrn_params
from ..ops.norm import (
    batch_norm,
    batch_norm_backward,
    local_response_norm,
    local_response_norm_backward,
)
from .layers import _check_dtype, _positive_int
from .module import Module, Parameter

__all__ = ["LocalResponseNorm", "BatchNorm2d"]


class LocalResponseNorm(Module):
    """Local response normalisation across channels, like ``torch.nn.LocalResponseNorm``.

    y[n, c] = x[n, c] / (k + alpha / size * sum of x[n, c']^2 over the ``size``
    channels c' around c)^beta (see :func:`cnnlib.functional.local_response_norm`).

    Inputs: x of shape ``(N, C, *)``, e.g. (N, C, H, W). Returns y of the same
    shape and dtype. No parameters. See the chapter on classic architectures
    (Part II).
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = check_lrn_params(size, alpha, beta, k)

    def _settings(self):
        return dict(size=self.size, alpha=self.alpha, beta=self.beta, k=self.k)

    def forward(self, x):
        y = local_response_norm(x, **self._settings())
        self.save_for_backward(x)
        return y

    def backward(self, grad_output):
        (x,) = self.saved()
        return local_response_norm_backward(grad_output, x, **self._settings())

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) for each channel, like ``torch.nn.BatchNorm2d``.

    y = (x - mean) / sqrt(var + eps) * weight + bias. In training mode mean
    and var are the batch's (var biased) and the running statistics move
    towards them: running = (1 - momentum) * running + momentum * batch
    (unbiased var); ``momentum=None`` uses the cumulative average
    (momentum = 1 / num_batches_tracked). In evaluation mode the running
    statistics are used. With ``track_running_stats=False`` there are no
    running statistics and the batch's are used in both modes.

    Inputs: x of shape (N, C, H, W) with C = ``num_features``. Returns y of
    the same shape and dtype.

    Parameters (when ``affine``): ``weight`` (C,) = 1 and ``bias`` (C,) = 0.
    Buffers (when ``track_running_stats``): ``running_mean`` (C,) = 0,
    ``running_var`` (C,) = 1 and ``num_batches_tracked`` (0-d int64), as in
    torch's ``state_dict``. ``rng`` is accepted for a uniform signature; the
    initial values are not random. See the chapter on classic architectures
    (Part II).
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True,
                 track_running_stats=True, *, dtype=np.float32, rng=None):
        super().__init__()
        self.num_features = _positive_int(num_features, "num_features")
        if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps >= 0:
            raise ValueError(f"eps must be a non-negative number, got {eps!r}")
        if momentum is not None and (not isinstance(momentum, numbers.Real)
                                     or isinstance(momentum, bool) or not 0 <= momentum <= 1):
            raise ValueError(f"momentum must be a number in [0, 1] or None, got {momentum!r}")
        for name, value in (("affine", affine), ("track_running_stats", track_running_stats)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {value!r}")
        dtype = _check_dtype(dtype)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        c = self.num_features
        self.weight = Parameter(np.ones(c, dtype=dtype)) if affine else None
        self.bias = Parameter(np.zeros(c, dtype=dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype=dtype))
            self.register_buffer("running_var", np.ones(c, dtype=dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def reset_running_stats(self):
        """Running mean 0, running variance 1, no batches tracked (in place)."""
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked[...] = 0

    def _arrays(self):
        w = None if self.weight is None else self.weight.data
        b = None if self.bias is None else self.bias.data
        return w, b

    def _use_batch_stats(self):
        return self.training or not self.track_running_stats

    def forward(self, x):
        x = check_float_array(x, "input", ndim=4)
        if x.shape[1] != self.num_features:
            raise ValueError(f"input must have {self.num_features} channels (num_features), "
                             f"got shape {x.shape}")
        w, b = self._arrays()
        momentum = 0.0 if self.momentum is None else self.momentum
        update = self.training and self.track_running_stats
        if update and self.momentum is None:
            momentum = 1.0 / (int(self.num_batches_tracked) + 1)  # cumulative average
        y = batch_norm(x, self.running_mean, self.running_var, w, b,
                       training=self._use_batch_stats(), momentum=momentum, eps=self.eps)
        if update:
            self.num_batches_tracked[...] += 1
        self.save_for_backward(x, self._use_batch_stats())
        return y

    def backward(self, grad_output):
        x, batch_stats = self.saved()
        w, b = self._arrays()
        dx, dw, db = batch_norm_backward(grad_output, x, w, b, self.running_mean, self.running_var,
                                         training=batch_stats, eps=self.eps)
        if self.weight is not None:
            self.weight.grad += dw
            self.bias.grad += db
        return dx

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")

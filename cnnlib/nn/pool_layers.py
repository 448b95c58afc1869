"""Layers for the pooling variants of Part II: fractional max pooling and
stochastic pooling, around :mod:`cnnlib.ops.pool_variants`.

Both draw random numbers in ``forward`` from a generator made once in the
constructor (``rng``: None for the library's default generator, a seed, or a
``np.random.Generator``), so a seeded layer gives the same sequence of draws
in every run while successive forwards still differ.
See the chapter on pooling (Part II).
"""

from .._random import get_rng
from .._validate import check_bool, check_float_array, check_ratio_pair, pair
from ..ops.pool_variants import (
    SEQUENCES,
    fractional_max_pool2d,
    fractional_max_pool2d_backward,
    stochastic_pool2d,
    stochastic_pool2d_backward,
)
from .module import Module

__all__ = ["FractionalMaxPool2d", "StochasticPool2d"]


class FractionalMaxPool2d(Module):
    """Fractional max pooling (Graham 2014), like ``torch.nn.FractionalMaxPool2d``.

    Inputs:
    - x: input of shape (N, C, H, W)

    Returns y of shape (N, C, H_out, W_out), with (H_out, W_out) =
    ``output_size`` or ``int(H * ratio), int(W * ratio)`` for ``output_ratio``.
    Every forward draws fresh pooling windows (as PyTorch does, in training
    and evaluation mode alike); ``sequence`` and ``overlapping`` are those of
    :func:`cnnlib.functional.fractional_max_pool2d` (the defaults are
    PyTorch's).  The samples and the argmax indices of the last forward are
    kept for ``backward`` (``last_random_samples`` shows the samples).
    See the chapter on pooling (Part II).
    """

    def __init__(self, kernel_size, output_size=None, output_ratio=None, *, sequence="pseudo",
                 overlapping=True, rng=None):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        if (output_size is None) == (output_ratio is None):
            raise ValueError("give exactly one of output_size and output_ratio, got "
                             f"output_size={output_size!r}, output_ratio={output_ratio!r}")
        self.output_size = None if output_size is None else pair(output_size, "output_size", 1)
        self.output_ratio = None if output_ratio is None else check_ratio_pair(output_ratio)
        if sequence not in SEQUENCES:
            raise ValueError(f"sequence must be 'pseudo' or 'random', got {sequence!r}")
        self.sequence = sequence
        self.overlapping = check_bool(overlapping, "overlapping")
        self._rng = get_rng(rng)
        self.last_random_samples = None

    def _settings(self):
        return dict(kernel_size=self.kernel_size, output_size=self.output_size,
                    output_ratio=self.output_ratio, sequence=self.sequence,
                    overlapping=self.overlapping)

    def forward(self, x):
        x = check_float_array(x, "input", ndim=4)
        samples = None
        if self.sequence == "pseudo":
            samples = self._rng.random(x.shape[:2] + (2,), dtype=x.dtype)
        y, idx = fractional_max_pool2d(x, return_indices=True, random_samples=samples,
                                       rng=self._rng, **self._settings())
        self.last_random_samples = samples
        self.save_for_backward(x, idx)
        return y

    def backward(self, grad_output):
        x, idx = self.saved()
        return fractional_max_pool2d_backward(grad_output, x, indices=idx, **self._settings())

    def extra_repr(self):
        size = (f"output_size={self.output_size}" if self.output_size is not None
                else f"output_ratio={self.output_ratio}")
        return (f"kernel_size={self.kernel_size}, {size}, sequence={self.sequence!r}, "
                f"overlapping={self.overlapping}")


class StochasticPool2d(Module):
    """Stochastic pooling (Zeiler and Fergus 2013) of a non-negative input.

    Inputs:
    - x: input of shape (N, C, H, W), all entries >= 0 (e.g. after a ReLU)

    Returns y of shape (N, C, H_out, W_out), H_out = floor((H - kH) / sH) + 1.
    In training mode each window's output is one of its elements, drawn with
    probability a_i / sum(a) (the sampled indices are kept for ``backward``);
    in evaluation mode it is the probability-weighted average
    sum(a^2) / sum(a).  ``backward`` follows the mode of the last forward.
    See the chapter on pooling (Part II).
    """

    def __init__(self, kernel_size, stride=None, rng=None):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", 1)
        self._rng = get_rng(rng)

    def forward(self, x):
        settings = dict(kernel_size=self.kernel_size, stride=self.stride)
        if self.training:
            y, idx = stochastic_pool2d(x, training=True, return_indices=True, rng=self._rng,
                                       **settings)
        else:
            y, idx = stochastic_pool2d(x, training=False, **settings), None
        self.save_for_backward(x, self.training, idx)
        return y

    def backward(self, grad_output):
        x, training, idx = self.saved()
        return stochastic_pool2d_backward(grad_output, x, self.kernel_size, self.stride,
                                          training=training, indices=idx)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

"""Weight initialisation, following ``torch.nn.init``.

Each function fills an array (or a :class:`~cnnlib.nn.Parameter`'s data) in
place and returns it. Random draws come from the ``rng=`` argument (a seed
or a ``np.random.Generator``) or else from the library's default generator,
which :func:`cnnlib.manual_seed` seeds.
"""

import math

import numpy as np

from .._random import get_rng
from .module import Parameter

__all__ = ["calculate_fan_in_and_fan_out", "calculate_gain", "uniform_", "kaiming_uniform_"]


def _as_array(array):
    data = array.data if isinstance(array, Parameter) else array
    if not isinstance(data, np.ndarray) or not np.issubdtype(data.dtype, np.floating):
        raise TypeError("array must be a floating-point ndarray or a Parameter")
    return data


def calculate_fan_in_and_fan_out(array):
    """Fan-in and fan-out of a weight array, as PyTorch computes them.

    For a linear weight of shape ``(out_features, in_features)`` these are
    ``in_features`` and ``out_features``; for a convolution weight of shape
    ``(C_out, C_in / groups, kH, kW)`` each is multiplied by ``kH * kW``.
    """
    shape = np.shape(_as_array(array))
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need an array with at least 2 dimensions, got shape {shape}")
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def calculate_gain(nonlinearity, param=None):
    """Recommended gain for a nonlinearity (``"linear"``, ``"relu"``, ``"leaky_relu"``, ...)."""
    if nonlinearity in ("linear", "conv2d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def uniform_(array, a=0.0, b=1.0, rng=None):
    """Fill ``array`` in place with draws from U(a, b)."""
    data = _as_array(array)
    if not a <= b:
        raise ValueError(f"uniform_ needs a <= b, got a={a}, b={b}")
    data[...] = get_rng(rng).uniform(a, b, size=data.shape)
    return array


def kaiming_uniform_(array, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    """Fill ``array`` with He (Kaiming) uniform draws, U(-bound, bound).

    ``bound = gain * sqrt(3 / fan)`` with ``gain = calculate_gain(nonlinearity, a)``.
    PyTorch's layers use ``a=sqrt(5)``, which gives ``bound = 1 / sqrt(fan_in)``.
    """
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = calculate_fan_in_and_fan_out(array)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError("kaiming_uniform_ cannot initialise an array with zero elements")
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(array, -bound, bound, rng=rng)

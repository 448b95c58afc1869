"""Element-wise activations and their gradients.

Each backward takes the upstream gradient and the forward's input, and
returns the gradient with respect to that input (same shape and dtype).
"""

import numpy as np
from numba import njit

from .._validate import check_float_array, check_same_dtype, check_shape


def _grad_args(grad_output, input):
    x = check_float_array(input, "input")
    gy = check_float_array(grad_output, "grad_output")
    check_same_dtype(x, "input", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape)
    return gy, x


# ReLU runs as one pass of a compiled loop: ``np.where(x > 0, gy, 0)`` makes a
# boolean temporary and broadcasts a scalar, and took 20 times as long on a
# LeNet-5 activation.  Serial: at these sizes the pass is bound by memory and
# waking a thread pool costs more than it saves.

@njit(cache=True)
def _relu(x):
    y = np.empty_like(x)
    a, out = x.ravel(), y.ravel()
    zero = x.dtype.type(0)
    for i in range(a.size):
        v = a[i]
        out[i] = v if v > zero or v != v else zero  # as np.maximum: NaN stays, -0.0 becomes 0.0
    return y


@njit(cache=True)
def _relu_backward(gy, x):
    gx = np.empty_like(gy)
    g, a, out = gy.ravel(), x.ravel(), gx.ravel()
    zero = gy.dtype.type(0)
    for i in range(g.size):
        out[i] = g[i] if a[i] > zero else zero
    return gx


def relu(input):
    """max(x, 0), element-wise."""
    x = check_float_array(input, "input")
    return _relu(x)


def relu_backward(grad_output, input):
    """grad_output where input > 0, else 0 (the subgradient at 0 is 0, as in PyTorch)."""
    gy, x = _grad_args(grad_output, input)
    return _relu_backward(gy, x)


def sigmoid(input):
    """1 / (1 + exp(-x)), computed without overflow for large |x|."""
    x = check_float_array(input, "input")
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def sigmoid_backward(grad_output, input):
    """grad_output * s * (1 - s) with s = sigmoid(input)."""
    gy, x = _grad_args(grad_output, input)
    s = sigmoid(x)
    return gy * s * (1 - s)


def tanh(input):
    """Hyperbolic tangent, element-wise."""
    x = check_float_array(input, "input")
    return np.tanh(x)


def tanh_backward(grad_output, input):
    """grad_output * (1 - tanh(input)^2)."""
    gy, x = _grad_args(grad_output, input)
    t = np.tanh(x)
    return gy * (1 - t * t)

"""Binarised networks: 1-bit weights and activations, trained with the straight-through estimator.

In a binarised network (Courbariaux, Hubara et al. 2016, "BNN") every weight
and every hidden activation is ``sign(x)`` in {-1, +1} (``sign(0) = +1``), so
a dot product of n terms is ``n - 2 * (number of positions that differ)``,
which a processor computes with one XNOR and one population count per machine
word instead of n multiply-adds.  XNOR-Net (Rastegari et al. 2016) keeps one
real scale per output channel, ``alpha = mean |W|``, so that
``W ~ alpha * sign(W)``.

Training keeps real-valued "latent" weights.  The forward uses their signs;
the backward uses the straight-through estimator: the gradient of ``sign`` is
taken as that of the hard tanh, 1 where ``|x| <= 1`` and 0 elsewhere (BNN's
"cancel the gradient when the input is large"), and the latent weights are
clipped to [-1, 1] after each step (:func:`clip_latent_weights`).

* :func:`binarize`, :func:`binarize_backward`: sign and its STE;
* :class:`BinaryActivation`, :class:`BinaryConv2d`, :class:`BinaryLinear`: the layers;
* :func:`pack_signs`, :func:`xnor_popcount_matmul`: the bit-packed dot
  product, exactly equal to the product of the sign matrices.

See the applications chapter (8).
"""

import math

import numba
import numpy as np

from .. import functional as F
from .. import nn
from .._validate import check_bool, check_float_array
from .qat import _WrappedLayer

__all__ = ["binarize", "binarize_backward", "BinaryActivation", "BinaryConv2d", "BinaryLinear",
           "binary_layers", "clip_latent_weights", "pack_signs", "xnor_popcount_matmul",
           "popcount64"]


def binarize(x):
    """sign(x) with sign(0) = +1: +1 where x >= 0, -1 elsewhere, in x's dtype."""
    x = check_float_array(x, "x")
    one = x.dtype.type(1)
    return np.where(x >= 0, one, -one)


def binarize_backward(grad_output, x):
    """The straight-through gradient of :func:`binarize`: grad_output where |x| <= 1, else 0.

    The derivative of the hard tanh, clip(x, -1, 1), stands in for that of
    sign (zero almost everywhere).  Inputs: grad_output and x of one shape.
    """
    x = check_float_array(x, "x")
    g = check_float_array(grad_output, "grad_output")
    if g.shape != x.shape:
        raise ValueError(f"grad_output must have the shape of x {x.shape}, got {g.shape}")
    return np.where(np.abs(x) <= 1, g, g.dtype.type(0))


class BinaryActivation(nn.Module):
    """sign(x) forward, the hard-tanh straight-through estimator backward."""

    def forward(self, x):
        self.save_for_backward(x)
        return binarize(x)

    def backward(self, grad_output):
        (x,) = self.saved()
        return binarize_backward(grad_output, x)


def _binary_weight(w, scale):
    """(W_b, alpha): W_b = sign(W), alpha = mean |W| per output channel (ones without scale)."""
    wb = binarize(w)
    if scale:
        alpha = np.abs(w).reshape(len(w), -1).mean(axis=1).astype(w.dtype)
    else:
        alpha = np.ones(len(w), dtype=w.dtype)
    return wb, alpha


def _weight_gradient(g, w, wb, alpha, scale):
    """dL/dW through W~ = alpha sign(W): the chain rule through alpha = mean|W| and the
    hard-tanh STE through sign.  g = dL/dW~ of W's shape."""
    shape = (len(w),) + (1,) * (w.ndim - 1)
    through_sign = g * alpha.reshape(shape) * (np.abs(w) <= 1)
    if not scale:
        return through_sign
    n = w[0].size
    d_alpha = (g * wb).reshape(len(w), -1).sum(axis=1)
    return through_sign + (d_alpha / n).reshape(shape) * wb


class _BinaryWeight(_WrappedLayer):
    """Shared parts of the binary conv and linear layers (``weight``: the latent,
    real-valued weight, the trained parameter)."""

    def _setup(self, layer, scale):
        self.layer = layer
        self.scale = check_bool(scale, "scale")

    def binary_weight(self):
        """(sign(W), alpha): the {-1, +1} weight and the per-channel scales the forward uses."""
        return _binary_weight(self.layer.weight.data, self.scale)

    def effective_weight(self):
        """alpha * sign(W), the real weight the forward multiplies by."""
        wb, alpha = self.binary_weight()
        return wb * alpha.reshape((len(wb),) + (1,) * (wb.ndim - 1))

    def forward(self, x):
        wb, alpha = self.binary_weight()
        w = wb * alpha.reshape((len(wb),) + (1,) * (wb.ndim - 1))
        b = None if self.layer.bias is None else self.layer.bias.data
        self.save_for_backward(x, w, wb, alpha)
        return self._apply(x, w, b)

    def backward(self, grad_output):
        x, w, wb, alpha = self.saved()
        b = None if self.layer.bias is None else self.layer.bias.data
        dx, dw, db = self._apply_backward(grad_output, x, w, b)
        self.layer.weight.grad += _weight_gradient(dw, self.layer.weight.data, wb, alpha, self.scale)
        if self.layer.bias is not None:
            self.layer.bias.grad += db
        return dx

    def own_macs(self, output_shape):
        """Multiply-accumulates (binary ones after a sign input) per example, for
        :func:`cnnlib.analysis.summary.summary`: those of the wrapped layer."""
        w = self.layer.weight
        return math.prod(output_shape) * (w.size // w.shape[0])

    def extra_repr(self):
        return f"{self.layer.extra_repr()}, scale={self.scale}"


class BinaryConv2d(_BinaryWeight):
    """A convolution with weights sign(W) (times alpha = mean |W| per output channel with
    ``scale=True``, XNOR-Net), latent weights W trained by the straight-through estimator.

    Arguments as :class:`cnnlib.nn.Conv2d` (in_channels, out_channels,
    kernel_size, stride, padding, bias, dtype, rng), plus ``scale``.
    Inputs: x (N, C_in, H, W) (real for a first layer, {-1, +1} after a
    :class:`BinaryActivation`).  Returns (N, C_out, H_out, W_out).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=False,
                 scale=True, *, dtype=np.float32, rng=None):
        super().__init__()
        self._setup(nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias,
                              dtype=dtype, rng=rng), scale)

    def _apply(self, x, w, b):
        return F.conv2d(x, w, b, **self._conv_settings())

    def _apply_backward(self, g, x, w, b):
        return F.conv2d_backward(g, x, w, b, **self._conv_settings())


class BinaryLinear(_BinaryWeight):
    """A linear layer with weights alpha * sign(W) (see :class:`BinaryConv2d`).

    Arguments: in_features, out_features, bias, scale, dtype, rng.
    Inputs: x (N, in_features). Returns (N, out_features).
    """

    def __init__(self, in_features, out_features, bias=False, scale=True, *, dtype=np.float32,
                 rng=None):
        super().__init__()
        self._setup(nn.Linear(in_features, out_features, bias=bias, dtype=dtype, rng=rng), scale)

    def _apply(self, x, w, b):
        return F.linear(x, w, b)

    def _apply_backward(self, g, x, w, b):
        return F.linear_backward(g, x, w, b)


def binary_layers(model):
    """The :class:`BinaryConv2d` and :class:`BinaryLinear` layers of a model, in order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a cnnlib.nn.Module, got {type(model).__name__}")
    return [m for _, m in model.named_modules() if isinstance(m, _BinaryWeight)]


def clip_latent_weights(model, bound=1.0):
    """Clip every binary layer's latent weights to [-bound, bound] in place (BNN, after each step).

    Outside that range the STE gradient is zero and a weight could drift
    away for ever without changing its sign.
    """
    for layer in binary_layers(model):
        np.clip(layer.weight.data, -bound, bound, out=layer.weight.data)


# ---------------------------------------------------------------------------
# The XNOR-popcount dot product
# ---------------------------------------------------------------------------

def pack_signs(x):
    """Pack the signs of the rows of x into 64-bit words: bit j of a row is 1 where x >= 0.

    Inputs: x, a float array (M, n) (typically of {-1, +1}).  Returns uint64
    (M, ceil(n / 64)); the unused high bits of the last word are 0.
    """
    x = check_float_array(x, "x", ndim=2)
    m, n = x.shape
    words = -(-n // 64)
    bits = np.zeros((m, words * 64), dtype=np.uint64)
    bits[:, :n] = x >= 0
    weights = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))
    return (bits.reshape(m, words, 64) * weights).sum(axis=2, dtype=np.uint64)


@numba.njit(cache=True, inline="always")
def _popcount(v):
    # the SWAR bit count (Hacker's Delight, 5-1)
    v = v - ((v >> np.uint64(1)) & np.uint64(0x5555555555555555))
    v = (v & np.uint64(0x3333333333333333)) + ((v >> np.uint64(2)) & np.uint64(0x3333333333333333))
    v = (v + (v >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (v * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(cache=True)
def _popcount_array(words):
    out = np.empty(words.shape, dtype=np.int64)
    flat, res = words.ravel(), out.ravel()
    for i in range(flat.size):
        res[i] = _popcount(flat[i])
    return out


@numba.njit(cache=True, parallel=True)
def _xnor_matmul(a, b, n):
    m, words = a.shape
    k = b.shape[0]
    out = np.empty((m, k), dtype=np.int64)
    tail = n - 64 * (words - 1)                 # used bits of the last word, 1..64
    last = np.uint64(0xFFFFFFFFFFFFFFFF) if tail == 64 else (np.uint64(1) << np.uint64(tail)) - np.uint64(1)
    for i in numba.prange(m):
        for j in range(k):
            same = 0
            for w in range(words - 1):
                same += _popcount(~(a[i, w] ^ b[j, w]))
            same += _popcount(~(a[i, words - 1] ^ b[j, words - 1]) & last)
            out[i, j] = 2 * same - n
    return out


def popcount64(words):
    """The number of 1 bits of each uint64 word (an int64 array of the same shape)."""
    w = np.asarray(words)
    if w.dtype != np.uint64:
        raise TypeError(f"words must be uint64, got {w.dtype}")
    return _popcount_array(np.ascontiguousarray(w))


def xnor_popcount_matmul(a_packed, b_packed, n):
    """The {-1, +1} matrix product A B^T from packed signs: 2 popcount(XNOR(a, b)) - n per entry.

    Two sign vectors agree in ``popcount(XNOR)`` of their n positions and
    differ in the rest, so their dot product is agree - differ =
    2 agree - n.  The padding bits of the last word are masked out.

    Inputs: a_packed (M, words), b_packed (K, words), uint64 from
    :func:`pack_signs` of arrays with n columns.  Returns int64 (M, K), equal
    to ``sign(A) @ sign(B).T`` exactly.
    """
    a, b = np.asarray(a_packed), np.asarray(b_packed)
    if a.dtype != np.uint64 or b.dtype != np.uint64 or a.ndim != 2 or b.ndim != 2:
        raise TypeError(f"a_packed and b_packed must be 2-D uint64 arrays, got {a.dtype} {a.shape} "
                        f"and {b.dtype} {b.shape}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a_packed and b_packed must have the same number of words, got "
                         f"{a.shape[1]} and {b.shape[1]}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 64 * (a.shape[1] - 1) < n <= 64 * a.shape[1]:
        raise ValueError(f"n must be an int in ({64 * (a.shape[1] - 1)}, {64 * a.shape[1]}] for "
                         f"{a.shape[1]} words, got {n!r}")
    return _xnor_matmul(np.ascontiguousarray(a), np.ascontiguousarray(b), int(n))

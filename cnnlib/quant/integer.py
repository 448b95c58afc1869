"""Integer-only inference (Jacob et al. 2018): LeNet-5 in int8 with int32 accumulation.

Every real tensor ``r`` is stored as ``r = S (q - Z)``.  A convolution or a
linear layer with int8 input ``q1`` (S1, Z1), symmetric int8 weights ``q2``
(S2 per output channel, Z2 = 0) and int32 bias ``qb`` (scale S1 S2, zero
point 0) becomes::

    acc = sum_k q2 q1 - Z1 sum_k q2 + qb                     (int32)
    q3  = clamp(Z3 + M acc, lo, 127),   M = S1 S2 / S3 = M0 2^-n,  M0 in [0.5, 1)

where ``M acc`` is computed in fixed point as gemmlowp and TFLite do: the
int32 multiplier ``m = round(M0 2^31)``, ``SaturatingRoundingDoublingHighMul``
(acc m / 2^31, rounded half up) then ``RoundingDivideByPOT`` (/ 2^n, rounded
half away from zero).  A ReLU that follows is the clamp's lower bound
``lo = Z3`` (the integer of real 0); max pooling commutes with the monotone
map and runs on the int8 values.  The input pixels p in [0, 255] enter as
``q = p - 128`` with S = 1 / (255 sigma) and Z = round(255 mu) - 128, which is
the float model's normalisation up to a third of a grey level in the mean.
See the quantisation chapter (5.2).
"""

import numpy as np
from numba import njit, prange

from .. import functional as F
from .. import nn
from ..models import zoo
from .affine import choose_qparams, quantize_per_channel

__all__ = ["quantize_multiplier", "saturating_rounding_doubling_high_mul",
           "rounding_divide_by_pot", "requantize", "int8_matmul", "IntegerLayer",
           "IntegerLeNet5", "quantize_model"]

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


def quantize_multiplier(real_multiplier):
    """Split a real multiplier 0 < M < 1 into M ~ M0 2^-n, as TFLite's ``QuantizeMultiplier``.

    ``M = f 2^-n`` with f in [0.5, 1) (``frexp``), then ``m = round(f 2^31)``
    (an int32 holding M0 = m / 2^31; if rounding gives 2^31, m halves and n
    drops by one; an M that rounds up to 1 is held as m = 2^31 - 1, n = 0).
    The relative error of ``m 2^-(31 + n)`` is at most 2^-31.

    Returns (m, n): ints, 2^30 <= m < 2^31 and 0 <= n <= 31.
    """
    if isinstance(real_multiplier, bool) or not isinstance(real_multiplier, (int, float, np.floating)):
        raise TypeError(f"real_multiplier must be a number, got {real_multiplier!r}")
    M = float(real_multiplier)
    if not 2.0 ** -32 <= M < 1.0:
        raise ValueError(f"real_multiplier must lie in [2^-32, 1), got {M!r}")
    f, e = np.frexp(M)
    m = int(round(float(f) * 2 ** 31))
    n = -int(e)
    if m == 2 ** 31:
        m //= 2
        n -= 1
    if n < 0:               # M rounded up to 1: keep it just below, as no left shift is used
        m, n = 2 ** 31 - 1, 0
    if n > 31:
        raise ValueError(f"real_multiplier {M!r} needs a shift n = {n} > 31")
    return m, n


@njit(cache=True)
def _srdhm(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul on int64-held int32 values."""
    if a == b and a == -2147483648:
        return 2147483647
    ab = a * b
    nudge = 1073741824 if ab >= 0 else 1 - 1073741824
    s = ab + nudge
    # C's division truncates toward zero; // floors
    q = s // 2147483648 if s >= 0 else -((-s) // 2147483648)
    return q


@njit(cache=True)
def _rdbpot(x, exponent):
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


@njit(cache=True)
def _srdhm_array(a, b):
    out = np.empty(a.shape, np.int64)
    for i in range(a.size):
        out.flat[i] = _srdhm(np.int64(a.flat[i]), np.int64(b.flat[i]))
    return out


@njit(cache=True)
def _rdbpot_array(x, e):
    out = np.empty(x.shape, np.int64)
    for i in range(x.size):
        out.flat[i] = _rdbpot(np.int64(x.flat[i]), np.int64(e.flat[i]))
    return out


def _int32_array(x, name):
    a = np.asarray(x)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got dtype {a.dtype}")
    if a.size and (a.min() < INT32_MIN or a.max() > INT32_MAX):
        raise ValueError(f"{name} must lie in the int32 range, got values in [{a.min()}, {a.max()}]")
    return np.ascontiguousarray(a, dtype=np.int64)


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp's ``SaturatingRoundingDoublingHighMul``: ``floor(a b / 2^31 + 1/2)``.

    The high 32 bits of the doubled 64-bit product, rounded half up; the one
    overflowing case a = b = -2^31 saturates to 2^31 - 1.  Inputs: int32
    values (numbers or arrays of one shape); returns int64 of their shape.
    """
    a, b = np.broadcast_arrays(_int32_array(a, "a"), _int32_array(b, "b"))
    return _srdhm_array(np.ascontiguousarray(a), np.ascontiguousarray(b))


def rounding_divide_by_pot(x, exponent):
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2^exponent`` rounded half away from zero.

    Inputs: int32 values ``x`` and exponents in [0, 31] (numbers or arrays
    that broadcast); returns int64 of the broadcast shape.
    """
    x = _int32_array(x, "x")
    e = _int32_array(exponent, "exponent")
    if e.size and (e.min() < 0 or e.max() > 31):
        raise ValueError(f"exponent must lie in [0, 31], got values in [{e.min()}, {e.max()}]")
    x, e = np.broadcast_arrays(x, e)
    return _rdbpot_array(np.ascontiguousarray(x), np.ascontiguousarray(e))


@njit(cache=True, parallel=True)
def _requantize(acc, m, n, zero_point, lo, hi):
    rows, cols = acc.shape
    out = np.empty((rows, cols), np.int8)
    for i in prange(rows):
        for j in range(cols):
            v = _rdbpot(_srdhm(np.int64(acc[i, j]), np.int64(m[j])), np.int64(n[j])) + zero_point
            out[i, j] = min(max(v, lo), hi)
    return out


def requantize(acc, multiplier, shift, zero_point, lo=-128, hi=127):
    """int32 accumulators -> int8: ``clamp(Z + RDBPOT(SRDHM(acc, m), n), lo, hi)``.

    Inputs:
    - acc: int32 array (rows, C); multiplier, shift: (C,) ints from
      :func:`quantize_multiplier`, one per column (output channel)
    - zero_point: the output's zero point; lo, hi: the clamp (lo = zero_point
      fuses a ReLU)

    Returns an int8 array (rows, C).
    """
    if not isinstance(acc, np.ndarray) or acc.dtype != np.int32 or acc.ndim != 2:
        raise TypeError(f"acc must be a 2-d int32 numpy.ndarray, got {getattr(acc, 'dtype', type(acc))} "
                        f"{getattr(acc, 'shape', '')}")
    m, n = _int32_array(multiplier, "multiplier"), _int32_array(shift, "shift")
    if m.shape != (acc.shape[1],) or n.shape != (acc.shape[1],):
        raise ValueError(f"multiplier and shift must have shape ({acc.shape[1]},), got {m.shape}, {n.shape}")
    if n.size and (n.min() < 0 or n.max() > 31):
        raise ValueError(f"shift must lie in [0, 31], got values in [{n.min()}, {n.max()}]")
    if not -128 <= lo <= hi <= 127:
        raise ValueError(f"need -128 <= lo <= hi <= 127, got lo={lo}, hi={hi}")
    return _requantize(np.ascontiguousarray(acc), m, n, np.int64(zero_point), np.int64(lo), np.int64(hi))


@njit(cache=True, parallel=True)
def _int8_matmul(a, b):
    rows, k = a.shape
    cols = b.shape[0]
    out = np.empty((rows, cols), np.int32)
    for i in prange(rows):
        for j in range(cols):
            s = np.int32(0)
            for t in range(k):
                s += np.int32(a[i, t]) * np.int32(b[j, t])
            out[i, j] = s
    return out


def int8_matmul(a, b):
    """``a @ b.T`` for int8 matrices with int32 accumulation (Numba kernel).

    Inputs: a (M, K) int8, b (N, K) int8 (K must keep |sum| < 2^31: K <= 2^17 is always safe).
    Returns (M, N) int32.
    """
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray) or x.dtype != np.int8 or x.ndim != 2:
            raise TypeError(f"{name} must be a 2-d int8 numpy.ndarray, got "
                            f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must have the same number of columns, got {a.shape} and {b.shape}")
    if a.shape[1] > 2 ** 17:
        raise ValueError(f"K = {a.shape[1]} could overflow int32 accumulators (K <= 2^17)")
    return _int8_matmul(np.ascontiguousarray(a), np.ascontiguousarray(b))


class IntegerLayer:
    """One integer conv or linear layer: int8 weights, int32 bias, fixed-point requantisation.

    Attributes: ``kind`` ("conv" or "linear"), ``weight`` int8 (C_out, ...),
    ``bias`` int32 (C_out,), ``weight_scale`` float32 (C_out,), input and
    output ``(scale, zero_point)``, ``multiplier``/``shift`` (C_out,) ints,
    ``relu`` (bool, fused as the clamp), ``padding`` (conv).
    """

    def __init__(self, kind, weight, bias, weight_scale, in_qparams, out_qparams, relu, padding=0):
        self.kind, self.weight, self.bias, self.weight_scale = kind, weight, bias, weight_scale
        self.in_scale, self.in_zero_point = in_qparams
        self.out_scale, self.out_zero_point = out_qparams
        self.relu, self.padding = relu, padding
        mults = [quantize_multiplier(float(self.in_scale) * float(ws) / float(self.out_scale))
                 for ws in weight_scale]
        self.multiplier = np.array([m for m, _ in mults], np.int64)
        self.shift = np.array([n for _, n in mults], np.int64)
        w2 = weight.reshape(len(weight), -1)
        self._w2 = np.ascontiguousarray(w2)
        self._row_sums = w2.astype(np.int32).sum(axis=1)

    def accumulate(self, q):
        """int32 accumulators (rows, C_out) for int8 input ``q`` ((N, C, H, W) or (N, K))."""
        if self.kind == "conv":
            p = self.padding
            qp = np.pad(q, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.in_zero_point)
            kh, kw = self.weight.shape[2:]
            win = np.lib.stride_tricks.sliding_window_view(qp, (kh, kw), axis=(2, 3))
            n, c, ho, wo = win.shape[:4]
            cols = np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * ho * wo, c * kh * kw)
        else:
            cols = q
        acc = int8_matmul(cols, self._w2)
        acc -= np.int32(self.in_zero_point) * self._row_sums
        acc += self.bias
        return acc

    def __call__(self, q):
        acc = self.accumulate(q)
        lo = self.out_zero_point if self.relu else -128
        out = requantize(acc, self.multiplier, self.shift, self.out_zero_point, lo, 127)
        if self.kind == "conv":
            n, _, h, w = q.shape
            p, (kh, kw) = self.padding, self.weight.shape[2:]
            ho, wo = h + 2 * p - kh + 1, w + 2 * p - kw + 1
            out = np.ascontiguousarray(out.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2))
        return out


def _maxpool2(q):
    n, c, h, w = q.shape
    return q[:, :, :h - h % 2, :w - w % 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


class IntegerLeNet5:
    """A LeNet-5 that runs in integers only: int8 activations and weights, int32 accumulators.

    Made by :func:`quantize_model`.  ``steps`` is the chain of operations:
    :class:`IntegerLayer` objects, ``"pool"`` (2x2 max pooling on int8) and
    ``"flatten"``.  The input is quantised as ``q = p - 128`` with
    (``input_scale``, ``input_zero_point``); the output is int8 logits with
    (``output_scale``, ``output_zero_point``).
    """

    def __init__(self, steps, input_qparams):
        self.steps = steps
        self.input_scale, self.input_zero_point = input_qparams
        last = [s for s in steps if isinstance(s, IntegerLayer)][-1]
        self.output_scale, self.output_zero_point = last.out_scale, last.out_zero_point

    @staticmethod
    def quantize_input(images):
        """uint8 images (N, 28, 28) -> int8 (N, 1, 28, 28): q = p - 128."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8 (raw MNIST pixels), got dtype {images.dtype}")
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"images must have shape (N, 28, 28), got {images.shape}")
        return (images.astype(np.int16) - 128).astype(np.int8)[:, None]

    def run(self, q, record=False):
        """Run the integer chain on int8 input (N, 1, 28, 28); with ``record``
        also return the list of every step's output."""
        outs = []
        for step in self.steps:
            if step == "pool":
                q = _maxpool2(q)
            elif step == "flatten":
                q = np.ascontiguousarray(q.reshape(len(q), -1))
            else:
                q = step(q)
            outs.append(q)
        return (q, outs) if record else q

    def int_logits(self, images, batch_size=1000):
        """int8 logits (N, 10) for uint8 images (N, 28, 28)."""
        q = self.quantize_input(images)
        out = [self.run(q[i:i + batch_size]) for i in range(0, len(q), batch_size)]
        return np.concatenate(out) if out else np.empty((0, 10), np.int8)

    def logits(self, images, batch_size=1000):
        """Dequantised logits S (q - Z) as float32 (N, 10)."""
        q = self.int_logits(images, batch_size).astype(np.float32)
        return (q - np.float32(self.output_zero_point)) * np.float32(self.output_scale)

    def predict(self, images, batch_size=1000):
        """Predicted labels (N,) as int64 (the first largest int8 logit)."""
        return self.int_logits(images, batch_size).argmax(axis=1)

    def size_bytes(self):
        """Bytes of the stored model: int8 weights, int32 biases, float32 weight scales and
        int32 multipliers (the per-tensor activation parameters are a few bytes more, not counted)."""
        layers = [s for s in self.steps if isinstance(s, IntegerLayer)]
        return sum(s.weight.size + 4 * s.bias.size + 4 * s.weight_scale.size + 4 * s.multiplier.size
                   for s in layers)


def quantize_model(model, calibration_images):
    """Turn a trained LeNet-5 into an :class:`IntegerLeNet5` (post-training, int8).

    Weights: symmetric int8 in [-127, 127], one scale per output channel
    (:func:`~cnnlib.quant.affine.choose_qparams` with ``symmetric=True``).  Biases: int32 with scale
    S_in S_w.  Activations: one (scale, zero point) per tensor in [-128, 127]
    from the min and max of each layer's (ReLU-ed) output over the
    calibration images, run through the float model in float64 (so that the
    ranges, rounded to float32, do not move with the BLAS kernel).

    Inputs:
    - model: a :class:`cnnlib.models.zoo.LeNet5` (any trained weights)
    - calibration_images: uint8 array (N, 28, 28), N >= 1

    Returns the integer model.
    """
    if not isinstance(model, zoo.LeNet5):
        raise TypeError(f"model must be a cnnlib.models.zoo.LeNet5, got {type(model).__name__}")
    model.eval()
    x = model.preprocess(calibration_images)
    if len(x) == 0:
        raise ValueError("calibration_images must hold at least one image")
    # Calibrate in float64: the ranges, rounded to float32, then do not depend on the BLAS
    # kernel or the thread count, so the integer model (and its accuracy) is reproducible.
    x = x.astype(np.float64)
    in_q = (np.float32(1 / (255 * zoo.MNIST_STD)), int(round(255 * zoo.MNIST_MEAN)) - 128)
    layers = list(model)
    steps = []
    qparams = in_q
    i = 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            relu = i + 1 < len(layers) and isinstance(layers[i + 1], nn.ReLU)
            w64, b64 = layer.weight.data.astype(np.float64), layer.bias.data.astype(np.float64)
            if isinstance(layer, nn.Conv2d):
                x = F.conv2d(x, w64, b64, stride=layer.stride, padding=layer.padding,
                             dilation=layer.dilation, groups=layer.groups)
            else:
                x = F.linear(x, w64, b64)
            if relu:
                x = np.maximum(x, 0)
                i += 1
            out_q = choose_qparams(float(x.min()), float(x.max()), -128, 127)
            w = layer.weight.data
            flat = w.reshape(len(w), -1)
            ws, _ = choose_qparams(flat.min(axis=1), flat.max(axis=1), -127, 127, symmetric=True)
            qw = quantize_per_channel(w, ws, np.zeros(len(w), np.int64), 0, "qint8")
            bscale = np.float64(qparams[0]) * ws.astype(np.float64)
            qb = np.rint(layer.bias.data.astype(np.float64) / bscale).astype(np.int32)
            kind = "conv" if isinstance(layer, nn.Conv2d) else "linear"
            padding = layer.padding[0] if kind == "conv" else 0
            steps.append(IntegerLayer(kind, qw, qb, ws, qparams, out_q, relu, padding))
            qparams = out_q
        elif isinstance(layer, nn.MaxPool2d):
            x = layer(x)
            steps.append("pool")
        elif isinstance(layer, nn.Flatten):
            x = layer(x)
            steps.append("flatten")
        else:
            raise TypeError(f"quantize_model does not know layer {i}: {type(layer).__name__}")
        i += 1
    return IntegerLeNet5(steps, in_q)

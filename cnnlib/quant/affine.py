"""The affine map of uniform quantisation, with torch's exact arithmetic.

A real number ``x`` is stored as an integer ``q`` with a *scale* ``s`` and a
*zero point* ``z``::

    q = clamp(nearbyint(x * (1 / s)) + z, q_min, q_max),     x ~ s (q - z)

``nearbyint`` rounds half to even, and, as in torch (and fbgemm), ``x`` is
multiplied by the float32 reciprocal ``1 / s`` rather than divided by ``s``:
the two differ when ``x / s`` lies next to a tie.  (torch's ``quantize_per_tensor``
adds ``z`` before rounding, ``nearbyint(z + x (1/s))``, its fake quantisation
after; we follow each.)  Everything here is computed
in float32 for float32 inputs, like torch's CPU kernels, so results agree with
torch bit for bit.  See the quantisation chapter (5.2).

* :func:`quantize_per_tensor`, :func:`quantize_per_channel`,
  :func:`dequantize`: real -> integer -> real;
* :func:`fake_quantize_per_tensor_affine` and
  :func:`fake_quantize_per_channel_affine`: the round trip in one step (the
  training-time simulation of quantisation), each with its backward, the
  clipped straight-through estimator;
* :func:`choose_qparams`: torch's ``MinMaxObserver`` rules for (s, z) from a
  range.
"""

import numbers

import numpy as np

from .._validate import check_bool, check_dim, check_float_array

__all__ = ["QDTYPES", "qrange", "quantize_per_tensor", "quantize_per_channel", "dequantize",
           "fake_quantize_per_tensor_affine", "fake_quantize_per_tensor_affine_backward",
           "fake_quantize_per_channel_affine", "fake_quantize_per_channel_affine_backward",
           "choose_qparams"]

# torch's quantised dtypes and the NumPy integer type that stores each.
QDTYPES = {"quint8": np.uint8, "qint8": np.int8, "qint32": np.int32}
EPS32 = np.float32(np.finfo(np.float32).eps)


def _qdtype(dtype):
    if isinstance(dtype, str) and dtype in QDTYPES:
        return dtype
    for name, np_type in QDTYPES.items():
        try:
            if np.dtype(dtype) == np.dtype(np_type):
                return name
        except TypeError:
            break
    raise ValueError(f"dtype must be one of {sorted(QDTYPES)} (or uint8, int8, int32), got {dtype!r}")


def qrange(dtype):
    """(q_min, q_max) of a quantised dtype: quint8 [0, 255], qint8 [-128, 127], qint32 [-2^31, 2^31 - 1]."""
    info = np.iinfo(QDTYPES[_qdtype(dtype)])
    return int(info.min), int(info.max)


def _int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return int(value)


def _scale(value, name="scale"):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    s = np.float32(value)
    if not np.isfinite(s) or not s > 0:
        raise ValueError(f"{name} must be a finite number > 0 (as float32), got {value!r}")
    return s


def _range(quant_min, quant_max):
    quant_min, quant_max = _int(quant_min, "quant_min"), _int(quant_max, "quant_max")
    if not quant_min <= quant_max:
        raise ValueError(f"quant_min must be <= quant_max, got quant_min={quant_min}, quant_max={quant_max}")
    return quant_min, quant_max


def _zero_point(value, quant_min, quant_max, name="zero_point"):
    z = _int(value, name)
    if not quant_min <= z <= quant_max:
        raise ValueError(f"{name} must lie in [quant_min, quant_max] = [{quant_min}, {quant_max}], got {z}")
    return z


def _channel_params(x, scale, zero_point, axis, quant_min, quant_max):
    """Per-channel scales (float32) and zero points (int64), shaped to broadcast along ``axis``."""
    axis = check_dim(axis, x.ndim, "axis")
    c = x.shape[axis]
    s = np.asarray(scale)
    if s.dtype.kind not in "fiu" or s.shape != (c,):
        raise ValueError(f"scale must be a real array of shape ({c},) (one per channel of axis {axis}), "
                         f"got shape {s.shape} dtype {s.dtype}")
    s = s.astype(np.float32)
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"scale must be finite and > 0 (as float32), got {scale!r}")
    z = np.asarray(zero_point)
    if z.dtype.kind not in "iu" or z.shape != (c,):
        raise ValueError(f"zero_point must be an integer array of shape ({c},), got shape {z.shape} "
                         f"dtype {z.dtype}")
    z = z.astype(np.int64)
    if z.size and (z.min() < quant_min or z.max() > quant_max):
        raise ValueError(f"zero_point must lie in [quant_min, quant_max] = [{quant_min}, {quant_max}], "
                         f"got values in [{z.min()}, {z.max()}]")
    shape = [1] * x.ndim
    shape[axis] = c
    return s.reshape(shape), z.reshape(shape)


def _round_scaled(x, scale):
    """nearbyint(x * (1/s)) in x's precision, the reciprocal taken in float32 (torch's kernels)."""
    inv = (np.float32(1) / scale).astype(x.dtype)
    return np.rint(x * inv)


def _quantize(x, scale, zero_point, dtype):
    # torch (fbgemm's "legacy" path) adds the zero point in float32 *before* rounding:
    # q = nearbyint(z + x * (1/s)); fake quantisation rounds first and adds z after.
    qmin, qmax = qrange(dtype)
    x32 = x.astype(np.float32, copy=False)
    inv = np.float32(1) / scale
    q = np.rint(np.asarray(zero_point).astype(np.float32) + x32 * inv)
    return np.clip(q.astype(np.float64), qmin, qmax).astype(QDTYPES[dtype])


def quantize_per_tensor(x, scale, zero_point, dtype):
    """Quantise a float array with one scale and zero point, like ``torch.quantize_per_tensor``.

    ``q = clamp(nearbyint(z + x * (1/s)), q_min, q_max)`` with ``1/s`` and the
    sum in float32 and round half to even; (q_min, q_max) is the range of
    ``dtype``.  Note that torch adds z *before* rounding here (fbgemm's legacy
    rule) but after rounding in fake quantisation: with an odd z the two differ
    at ties.

    Inputs:
    - x: float32/float64 array of any shape (computed in float32, as torch does)
    - scale: number > 0; zero_point: int in the range of ``dtype``
    - dtype: "quint8", "qint8" or "qint32" (or np.uint8, np.int8, np.int32)

    Returns q, an integer array of x's shape (uint8, int8 or int32).
    """
    x = check_float_array(x, "x")
    dtype = _qdtype(dtype)
    s = _scale(scale)
    z = _zero_point(zero_point, *qrange(dtype))
    return _quantize(x, s, z, dtype)


def quantize_per_channel(x, scales, zero_points, axis, dtype):
    """Quantise with one (scale, zero point) per slice along ``axis``, like ``torch.quantize_per_channel``.

    Inputs:
    - x: float32/float64 array with C = x.shape[axis]
    - scales: (C,) reals > 0; zero_points: (C,) integers in the range of ``dtype``
    - axis: the channel axis; dtype: "quint8", "qint8" or "qint32"

    Returns q of x's shape, element by element as :func:`quantize_per_tensor`
    with its channel's parameters.
    """
    x = check_float_array(x, "x", min_ndim=1)
    dtype = _qdtype(dtype)
    s, z = _channel_params(x, scales, zero_points, axis, *qrange(dtype))
    return _quantize(x, s, z, dtype)


def dequantize(q, scale, zero_point, axis=None):
    """The real values ``s (q - z)`` of integers ``q``, as float32.

    Inputs:
    - q: integer array (the output of a quantize function)
    - scale, zero_point: numbers (per tensor, ``axis=None``) or (C,) arrays
      for the channels along ``axis``

    Returns a float32 array of q's shape.  (torch's vectorised kernel computes
    ``q s + (-z s)`` with a fused multiply-add, which can differ from this
    by one unit in the last place when z != 0.)
    """
    if not isinstance(q, np.ndarray) or q.dtype.kind not in "iu":
        raise TypeError(f"q must be an integer numpy.ndarray, got {getattr(q, 'dtype', type(q).__name__)}")
    info = np.iinfo(q.dtype)
    if axis is None:
        s = _scale(scale)
        z = _zero_point(zero_point, int(info.min), int(info.max))
    else:
        s, z = _channel_params(q, scale, zero_point, axis, int(info.min), int(info.max))
    return ((q.astype(np.int64) - z).astype(np.float32) * s).astype(np.float32)


def _fake_quantize(x, s, z, quant_min, quant_max):
    q = _round_scaled(x, s) + z          # float, unclamped: its range decides the mask
    mask = (q >= quant_min) & (q <= quant_max)
    # the product is formed in float32 even for float64 input, as torch's kernel does
    out = (np.clip(q, quant_min, quant_max) - z).astype(np.float32) * s
    return out.astype(x.dtype), mask


def fake_quantize_per_tensor_affine(x, scale, zero_point, quant_min, quant_max, return_mask=False):
    """Quantise and dequantise in one step, like ``torch.fake_quantize_per_tensor_affine``.

    ``y = (clamp(nearbyint(x * (1/s)) + z, q_min, q_max) - z) s``: the value
    the quantised network would see, kept in floating point for training.

    Inputs:
    - x: float32/float64 array of any shape
    - scale: number > 0 (rounded to float32, as torch does); zero_point: int
      in [quant_min, quant_max]; quant_min <= quant_max: ints

    Returns y of x's shape and dtype; with ``return_mask=True`` also the
    boolean mask of the elements that were not clamped, which the backward needs.
    """
    x = check_float_array(x, "x")
    qmin, qmax = _range(quant_min, quant_max)
    s = _scale(scale)
    z = _zero_point(zero_point, qmin, qmax)
    y, mask = _fake_quantize(x, s, z, qmin, qmax)
    return (y, mask) if check_bool(return_mask, "return_mask") else y


def fake_quantize_per_channel_affine(x, scale, zero_point, axis, quant_min, quant_max,
                                     return_mask=False):
    """Per-channel fake quantisation, like ``torch.fake_quantize_per_channel_affine``.

    Inputs:
    - x: float32/float64 array with C = x.shape[axis]
    - scale: (C,) reals > 0 (float32); zero_point: (C,) ints in [quant_min, quant_max]
    - axis: the channel axis; quant_min <= quant_max: ints

    Returns y of x's shape and dtype (and the in-range mask with ``return_mask=True``).
    """
    x = check_float_array(x, "x", min_ndim=1)
    qmin, qmax = _range(quant_min, quant_max)
    s, z = _channel_params(x, scale, zero_point, axis, qmin, qmax)
    y, mask = _fake_quantize(x, s, z.astype(np.float64), qmin, qmax)
    return (y, mask) if check_bool(return_mask, "return_mask") else y


def _ste(grad_output, mask):
    g = check_float_array(grad_output, "grad_output")
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        got = getattr(mask, "dtype", type(mask).__name__)
        raise TypeError(f"mask must be a boolean numpy.ndarray, got {got}")
    if mask.shape != g.shape:
        raise ValueError(f"mask must have the shape of grad_output {g.shape}, got {mask.shape}")
    return g * mask


def fake_quantize_per_tensor_affine_backward(grad_output, mask):
    """Gradient of :func:`fake_quantize_per_tensor_affine`: the clipped straight-through estimator.

    Rounding has derivative zero almost everywhere; the estimator passes the
    gradient through unchanged where x was inside the range and blocks it
    where x was clamped: ``dx = grad_output * mask`` (torch's autograd gives
    the same).

    Inputs: grad_output of x's shape; mask from the forward (``return_mask=True``).
    Returns dx of grad_output's shape and dtype.
    """
    return _ste(grad_output, mask)


def fake_quantize_per_channel_affine_backward(grad_output, mask):
    """Gradient of :func:`fake_quantize_per_channel_affine`: ``dx = grad_output * mask``."""
    return _ste(grad_output, mask)


def _min_max(value, name):
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a float array, got {value!r}")
    a = np.asarray(value)
    if a.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a number or a real array, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return a


def choose_qparams(min_val, max_val, quant_min, quant_max, symmetric=False):
    """Scale and zero point for a range, by torch's ``MinMaxObserver`` rules.

    The range is first extended to include 0 (so that 0 is exact, as zero
    padding needs): ``lo = min(min_val, 0)``, ``hi = max(max_val, 0)``.

    - affine: ``s = (hi - lo) / (q_max - q_min)``,
      ``z = clamp(q_min - round(lo / s), q_min, q_max)``;
    - symmetric: ``s = max(-lo, hi) / ((q_max - q_min) / 2)``, ``z = 0`` for a
      signed range (q_min < 0) and ``(q_min + q_max) // 2`` for an unsigned
      one (torch's rule for a given range; its default quint8 range without
      one uses 128);

    and in both ``s`` is floored at the float32 machine epsilon, so an all-zero
    range gives ``s = eps``, not 0.  Computed in float32 like torch.

    Inputs:
    - min_val, max_val: numbers (per tensor) or arrays of one shape (per
      channel), min_val <= max_val
    - quant_min < quant_max: ints; symmetric: bool

    Returns (scale, zero_point): float32 and int64, numbers or arrays of the
    inputs' shape.
    """
    lo, hi = _min_max(min_val, "min_val"), _min_max(max_val, "max_val")
    if lo.shape != hi.shape:
        raise ValueError(f"min_val and max_val must have one shape, got {lo.shape} and {hi.shape}")
    if np.any(lo > hi):
        raise ValueError(f"min_val must be <= max_val, got min_val={min_val!r}, max_val={max_val!r}")
    qmin, qmax = _range(quant_min, quant_max)
    if qmin == qmax:
        raise ValueError(f"quant_min must be < quant_max, got {qmin} and {qmax}")
    symmetric = check_bool(symmetric, "symmetric")
    lo = np.minimum(lo, np.float32(0))
    hi = np.maximum(hi, np.float32(0))
    if symmetric:
        scale = np.maximum(np.maximum(-lo, hi) / np.float32((qmax - qmin) / 2), EPS32)
        zp = np.full(lo.shape, 0 if qmin < 0 else (qmin + qmax) // 2, dtype=np.int64)
    else:
        scale = np.maximum((hi - lo) / np.float32(qmax - qmin), EPS32)
        zp = np.clip(qmin - np.rint(lo / scale).astype(np.int64), qmin, qmax)
    scale = scale.astype(np.float32)
    if scale.ndim == 0:
        return np.float32(scale), int(zp)
    return scale, zp.astype(np.int64)

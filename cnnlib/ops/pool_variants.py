"""Two pooling variants of Part II: fractional max pooling and stochastic pooling.

Fractional max pooling (Graham 2014) shrinks each side by a factor between 1
and 2 (or any factor) by pooling over windows whose starts follow an integer
sequence with increments of ``floor(alpha)`` and ``ceil(alpha)``.  Along one
axis of length ``L`` with ``n`` outputs the sequence is built from ``count``
increments that add up to ``total``:

* ``sequence="pseudo"``: ``b_i = floor((i + u) * alpha) - floor(u * alpha)``
  for ``i < count`` and ``b_count = total``, ``alpha = total / count``, with
  one sample ``u`` in [0, 1) (computed in the input's dtype, as PyTorch does);
* ``sequence="random"``: ``b = [0, cumsum(d)]`` where ``d`` is a random
  permutation of ``total % count`` increments ``q + 1`` and the rest ``q``,
  ``q = total // count`` (for ratios in (1, 2): Graham's random mix of 1s and 2s).

With ``overlapping=True`` the ``n`` starts are that sequence for
``total = L - k``, ``count = n - 1`` and each window is ``[b_i, b_i + k)``:
with ``sequence="pseudo"`` this is exactly ``torch.nn.functional.
fractional_max_pool2d`` (same values, same indices, given the same samples).
With ``overlapping=False`` the sequence has ``total = L``, ``count = n`` and
window ``i`` is the disjoint ``[b_i, b_{i+1})``; ``kernel_size`` is then
checked but not used.

Stochastic pooling (Zeiler and Fergus 2013) picks, in each window of a
non-negative input, element ``i`` with probability ``p_i = a_i / sum_j a_j``
at training time and returns ``sum_i p_i a_i`` at test time.

See the chapter on pooling (Part II).
"""

import numbers

import numpy as np
from numba import njit, prange

from .._random import get_rng
from .._validate import (check_bool, check_float_array, check_indices, check_ratio_pair,
                         check_same_dtype, check_shape, pair)
from .pool import pool_output_size, scatter_to_indices

SEQUENCES = ("pseudo", "random")


# ----------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------

def _positive_int(value, name):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(value)


def fractional_output_size(input_size, output_size=None, output_ratio=None):
    """(H_out, W_out) from ``output_size`` or ``output_ratio`` (exactly one of them).

    ``output_ratio`` r gives ``int(H * r_h), int(W * r_w)``, PyTorch's rule.
    ``input_size`` is (H, W).  See the chapter on pooling (Part II).
    """
    if (output_size is None) == (output_ratio is None):
        raise ValueError("give exactly one of output_size and output_ratio, got "
                         f"output_size={output_size!r}, output_ratio={output_ratio!r}")
    if output_size is not None:
        return pair(output_size, "output_size", 1)
    r = check_ratio_pair(output_ratio)
    out = (int(input_size[0] * r[0]), int(input_size[1] * r[1]))
    if min(out) < 1:
        raise ValueError(f"output_ratio={output_ratio!r} gives an empty output {out} "
                         f"for input size {tuple(input_size)}")
    return out


def _fractional_settings(x, kernel_size, output_size, output_ratio, sequence, overlapping):
    """Validate the settings shared by forward and backward."""
    x = check_float_array(x, "input", ndim=4)
    k = pair(kernel_size, "kernel_size", 1)
    if sequence not in SEQUENCES:
        raise ValueError(f"sequence must be 'pseudo' or 'random', got {sequence!r}")
    overlapping = check_bool(overlapping, "overlapping")
    if min(x.shape) < 1:
        raise ValueError(f"input must not be empty, got shape {x.shape}")
    out = fractional_output_size(x.shape[2:], output_size, output_ratio)
    for axis, size, ki, oi in zip(("height", "width"), x.shape[2:], k, out):
        if overlapping and oi + ki - 1 > size:
            raise ValueError(
                f"output {axis} {oi} with kernel_size {ki} needs an input {axis} of at least "
                f"{oi + ki - 1} (output + kernel - 1), got {size}")
        if not overlapping and oi > size:
            raise ValueError(f"output {axis} {oi} is larger than the input {axis} {size}")
    return x, k, out, overlapping


def _check_samples(random_samples, x):
    u = check_float_array(random_samples, "random_samples", ndim=3)
    check_same_dtype(x, "input", u, "random_samples")
    check_shape(u, "random_samples", x.shape[:2] + (2,))
    if not np.all((u >= 0) & (u < 1)):
        bad = u[~((u >= 0) & (u < 1))]
        raise ValueError(f"random_samples must lie in [0, 1), got {bad.ravel()[0]}")
    return u


# ----------------------------------------------------------------------------
# Interval sequences
# ----------------------------------------------------------------------------

def _pseudo_sequence(u, total, count):
    """Boundaries b_0..b_count (one row per sample in ``u``), PyTorch's formula in u's dtype."""
    b = np.full((u.shape[0], count + 1), total, dtype=np.int64)
    if count > 0:
        t = u.dtype.type
        alpha = t(total) / t(count)
        i = np.arange(count).astype(u.dtype)
        b[:, :count] = (((i[None, :] + u[:, None]) * alpha).astype(np.int64)
                        - (u * alpha).astype(np.int64)[:, None])
    return b


def _random_sequence(gen, planes, total, count):
    """Boundaries from a random permutation of q and q + 1 increments, one row per plane."""
    b = np.full((planes, count + 1), total, dtype=np.int64)
    if count > 0:
        q, r = divmod(total, count)
        steps = np.full(count, q, dtype=np.int64)
        steps[:r] += 1
        steps = gen.permuted(np.tile(steps, (planes, 1)), axis=1)
        b[:, 0] = 0
        b[:, 1:] = np.cumsum(steps, axis=1)
    return b


def _windows(boundaries, kernel, overlapping):
    """(starts, stops) of the windows from boundary rows."""
    if overlapping:
        return boundaries, boundaries + kernel
    return boundaries[:, :-1], boundaries[:, 1:]


def fractional_intervals(input_size, output_size, kernel_size=2, sample=None, *,
                         sequence="pseudo", overlapping=True, rng=None):
    """The pooling windows of fractional max pooling along one axis.

    Returns ``(starts, stops)``, two int64 arrays of length ``output_size``:
    window i covers ``[starts[i], stops[i])``.  ``sample`` (a float in
    [0, 1), float64 arithmetic; pass ``np.float32(u)`` for float32) drives
    ``sequence="pseudo"``; ``rng`` draws it when it is None, and draws the
    permutation of ``sequence="random"``.  The rule is in this module's
    docstring.  See the chapter on pooling (Part II).
    """
    size, out, k = (_positive_int(v, name) for v, name in ((input_size, "input_size"),
                                                          (output_size, "output_size"),
                                                          (kernel_size, "kernel_size")))
    if sequence not in SEQUENCES:
        raise ValueError(f"sequence must be 'pseudo' or 'random', got {sequence!r}")
    overlapping = check_bool(overlapping, "overlapping")
    if overlapping and out + k - 1 > size:
        raise ValueError(f"output_size {out} with kernel_size {k} needs input_size >= "
                         f"{out + k - 1}, got {size}")
    if not overlapping and out > size:
        raise ValueError(f"output_size {out} is larger than input_size {size}")
    total, count = (size - k, out - 1) if overlapping else (size, out)
    if sequence == "random":
        if sample is not None:
            raise ValueError("sample only drives sequence='pseudo'; random sequences come from rng")
        b = _random_sequence(get_rng(rng), 1, total, count)
    else:
        if sample is None:
            sample = get_rng(rng).random()
        if not isinstance(sample, (numbers.Real, np.floating)) or isinstance(sample, bool):
            raise TypeError(f"sample must be a float, got {sample!r}")
        u = np.asarray([sample], dtype=np.float32 if isinstance(sample, np.float32) else np.float64)
        if not 0 <= u[0] < 1:
            raise ValueError(f"sample must lie in [0, 1), got {sample!r}")
        b = _pseudo_sequence(u, total, count)
    starts, stops = _windows(b, k, overlapping)
    return starts[0].copy(), stops[0].copy()


def _plane_windows(x, k, out, overlapping, sequence, random_samples, gen):
    """Window starts and stops for every (n, c) plane: four (N*C, n_axis) int64 arrays."""
    planes = x.shape[0] * x.shape[1]
    result = []
    for axis, sample_col in ((0, 1), (1, 0)):  # height uses sample [..., 1], width [..., 0]
        size, ki, oi = x.shape[2 + axis], k[axis], out[axis]
        total, count = (size - ki, oi - 1) if overlapping else (size, oi)
        if sequence == "pseudo":
            b = _pseudo_sequence(random_samples.reshape(planes, 2)[:, sample_col], total, count)
        else:
            b = _random_sequence(gen, planes, total, count)
        result.extend(_windows(b, ki, overlapping))
    return [np.ascontiguousarray(a) for a in result]


# ----------------------------------------------------------------------------
# Kernels
# ----------------------------------------------------------------------------

@njit(parallel=True, cache=True)
def _fractional_forward(x, h0, h1, w0, w1):
    """Max over window [h0, h1) x [w0, w1) of each plane, with PyTorch's tie rules:
    the first maximum wins, a NaN always wins (so the last NaN does)."""
    n_, c_, h, w = x.shape
    ho, wo = h0.shape[1], w0.shape[1]
    y = np.empty((n_, c_, ho, wo), dtype=x.dtype)
    idx = np.empty((n_, c_, ho, wo), dtype=np.int64)
    for nc in prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        for i in range(ho):
            for j in range(wo):
                best = -np.inf
                arg = h0[nc, i] * w + w0[nc, j]
                for r in range(h0[nc, i], h1[nc, i]):
                    for col in range(w0[nc, j], w1[nc, j]):
                        v = x[n, c, r, col]
                        if v > best or np.isnan(v):
                            best = v
                            arg = r * w + col
                y[n, c, i, j] = best
                idx[n, c, i, j] = arg
    return y, idx


@njit(cache=True, inline="always")
def _window_sums(plane, i, j, kh, kw, sh, sw):
    """sum(a) and sum(a^2) over window (i, j) of one plane, in float64."""
    s1 = 0.0
    s2 = 0.0
    for p in range(kh):
        for q in range(kw):
            v = np.float64(plane[i * sh + p, j * sw + q])
            s1 += v
            s2 += v * v
    return s1, s2


@njit(parallel=True, cache=True)
def _stochastic_forward(x, u, kh, kw, sh, sw, ho, wo, training):
    """Training: sample one element per window with probability a_i / sum(a) using the
    uniform draw u (the first element whose running sum exceeds u * sum; an all-zero
    window picks its first element).  Test: sum(a^2) / sum(a) (0 for an all-zero
    window).  Sums run in float64 whatever the dtype."""
    n_, c_, h, w = x.shape
    y = np.zeros((n_, c_, ho, wo), dtype=x.dtype)
    idx = np.empty((n_, c_, ho, wo), dtype=np.int64)
    for nc in prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        for i in range(ho):
            for j in range(wo):
                s1, s2 = _window_sums(x[n, c], i, j, kh, kw, sh, sw)
                first = (i * sh) * w + j * sw
                idx[n, c, i, j] = first
                if s1 == 0.0:
                    continue  # output 0, "sampled" the first element
                if not training:
                    y[n, c, i, j] = s2 / s1
                    continue
                target = u[n, c, i, j] * s1
                acc = 0.0
                chosen = -1
                last_positive = first
                for p in range(kh):
                    for q in range(kw):
                        v = np.float64(x[n, c, i * sh + p, j * sw + q])
                        if v > 0.0:
                            last_positive = (i * sh + p) * w + j * sw + q
                        acc += v
                        if chosen < 0 and acc > target:
                            chosen = (i * sh + p) * w + j * sw + q
                if chosen < 0:  # u * s1 rounded up to s1: take the last element with mass
                    chosen = last_positive
                idx[n, c, i, j] = chosen
                y[n, c, i, j] = x[n, c, chosen // w, chosen % w]
    return y, idx


@njit(parallel=True, cache=True)
def _stochastic_eval_backward(gy, x, kh, kw, sh, sw):
    """d/da_i of sum(a^2)/sum(a) is (2 a_i - y) / sum(a); 0 for an all-zero window."""
    n_, c_, h, w = x.shape
    ho, wo = gy.shape[2], gy.shape[3]
    gx = np.zeros((n_, c_, h, w), dtype=gy.dtype)
    for nc in prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        for i in range(ho):
            for j in range(wo):
                s1, s2 = _window_sums(x[n, c], i, j, kh, kw, sh, sw)
                if s1 == 0.0:
                    continue
                y = s2 / s1
                g = np.float64(gy[n, c, i, j]) / s1
                for p in range(kh):
                    for q in range(kw):
                        v = np.float64(x[n, c, i * sh + p, j * sw + q])
                        gx[n, c, i * sh + p, j * sw + q] += g * (2.0 * v - y)
    return gx


# ----------------------------------------------------------------------------
# Public API: fractional max pooling
# ----------------------------------------------------------------------------

def fractional_max_pool2d(input, kernel_size, output_size=None, output_ratio=None,
                          return_indices=False, random_samples=None, *, sequence="pseudo",
                          overlapping=True, rng=None):
    """Fractional max pooling (Graham 2014), as ``torch.nn.functional.fractional_max_pool2d``.

    y[n, c, i, j] = max of input[n, c] over rows [h0_i, h1_i) and columns
    [w0_j, w1_j), the windows given by the interval sequences of this module's
    docstring.  ``sequence="pseudo", overlapping=True`` (the defaults) is
    PyTorch's operation: given the same ``random_samples`` the values and the
    indices agree exactly.

    Inputs:
    - input: (N, C, H, W), float32 or float64
    - kernel_size: int or (kH, kW); the window size when ``overlapping``
    - output_size (int or (H_out, W_out)) or output_ratio (float or pair in
      (0, 1); H_out = int(H * ratio)): exactly one
    - random_samples: (N, C, 2) in [0, 1), input's dtype; [..., 0] drives the
      width sequence, [..., 1] the height sequence (PyTorch's layout).  Drawn
      from ``rng`` when None; only for ``sequence="pseudo"``.
    - sequence: "pseudo" or "random" (a fresh random permutation of the
      increments for each plane and axis, drawn from ``rng``)
    - overlapping: True (fixed kernel_size windows) or False (disjoint windows)
    - rng: None, a seed or a ``np.random.Generator`` (see ``cnnlib._random``)

    Returns y (N, C, H_out, W_out), and with ``return_indices`` also the flat
    index ``r * W + c`` of each maximum within its plane, int64, same shape.
    See the chapter on pooling (Part II).
    """
    x, k, out, overlapping = _fractional_settings(input, kernel_size, output_size, output_ratio,
                                                  sequence, overlapping)
    return_indices = check_bool(return_indices, "return_indices")
    gen = None
    if sequence == "random":
        if random_samples is not None:
            raise ValueError("random_samples only drives sequence='pseudo'; "
                             "sequence='random' draws its permutations from rng")
        gen = get_rng(rng)
    elif random_samples is None:
        random_samples = get_rng(rng).random(x.shape[:2] + (2,), dtype=x.dtype)
    else:
        random_samples = _check_samples(random_samples, x)
    h0, h1, w0, w1 = _plane_windows(x, k, out, overlapping, sequence, random_samples, gen)
    y, idx = _fractional_forward(x, h0, h1, w0, w1)
    return (y, idx) if return_indices else y


def fractional_max_pool2d_backward(grad_output, input, kernel_size, output_size=None,
                                   output_ratio=None, random_samples=None, *, sequence="pseudo",
                                   overlapping=True, indices=None):
    """Gradient of ``fractional_max_pool2d`` w.r.t. its input, shape (N, C, H, W).

    Each output's gradient goes to the maximum of its window (overlapping
    windows add up).  The maxima are ``indices`` (from ``return_indices=True``)
    when given; otherwise they are found again from ``random_samples``, which
    must then be the forward's (``sequence="pseudo"`` only: a random sequence
    cannot be replayed, pass ``indices``).  grad_output: (N, C, H_out, W_out).
    See the chapter on pooling (Part II).
    """
    x, k, out, overlapping = _fractional_settings(input, kernel_size, output_size, output_ratio,
                                                  sequence, overlapping)
    gy = check_float_array(grad_output, "grad_output", ndim=4)
    check_same_dtype(x, "input", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape[:2] + out)
    h, w = x.shape[2:]
    if indices is not None:
        idx = check_indices(indices, "indices", gy.shape, h * w)
    elif sequence == "pseudo" and random_samples is not None:
        u = _check_samples(random_samples, x)
        windows = _plane_windows(x, k, out, overlapping, sequence, u, None)
        idx = _fractional_forward(x, *windows)[1]
    else:
        raise ValueError("fractional_max_pool2d_backward needs indices (any sequence) or the "
                         "forward's random_samples (sequence='pseudo'), got neither")
    return scatter_to_indices(gy, idx, h, w)


# ----------------------------------------------------------------------------
# Public API: stochastic pooling
# ----------------------------------------------------------------------------

def _stochastic_settings(input, kernel_size, stride, training):
    x = check_float_array(input, "input", ndim=4)
    k = pair(kernel_size, "kernel_size", 1)
    s = k if stride is None else pair(stride, "stride", 1)
    training = check_bool(training, "training")
    out = []
    for axis, size, ki, si in zip(("height", "width"), x.shape[2:], k, s):
        if size < ki:
            raise ValueError(f"kernel_size {ki} is larger than the input {axis} {size}")
        out.append(pool_output_size(size, ki, si))
    if not np.all(x >= 0) or not np.all(np.isfinite(x)):
        bad = x[~((x >= 0) & np.isfinite(x))]
        raise ValueError("input must be finite and non-negative for stochastic pooling "
                         f"(e.g. after a ReLU), got {bad.ravel()[0]}")
    return x, k, s, training, tuple(out)


def stochastic_pool2d(input, kernel_size, stride=None, training=True, return_indices=False,
                      rng=None):
    """Stochastic pooling (Zeiler and Fergus 2013) of a non-negative input.

    Training: y = a_m with m drawn from p_i = a_i / sum_j a_j over the window;
    test: y = sum_i p_i a_i = sum(a^2) / sum(a).  An all-zero window gives 0
    (in training it "picks" its first element, which then gets the gradient).

    Inputs:
    - input: (N, C, H, W), float32/float64, finite and >= 0 (ValueError otherwise)
    - kernel_size, stride: int or pair; stride defaults to kernel_size, no padding
    - training: sample (True) or take the probability-weighted average (False)
    - return_indices: also return the sampled flat index ``r * W + c`` within
      each plane (int64, training only)
    - rng: None, a seed or a ``np.random.Generator``: one uniform per output

    Returns y (N, C, H_out, W_out) with H_out = floor((H - kH) / sH) + 1.
    See the chapter on pooling (Part II).
    """
    x, (kh, kw), (sh, sw), training, (ho, wo) = _stochastic_settings(input, kernel_size,
                                                                      stride, training)
    return_indices = check_bool(return_indices, "return_indices")
    if return_indices and not training:
        raise ValueError("return_indices=True needs training=True: test-time stochastic "
                         "pooling averages, it samples nothing")
    if training:
        u = get_rng(rng).random((x.shape[0], x.shape[1], ho, wo))
    else:
        u = np.zeros((0, 0, 0, 0))
    y, idx = _stochastic_forward(x, u, kh, kw, sh, sw, ho, wo, training)
    return (y, idx) if return_indices else y


def stochastic_pool2d_backward(grad_output, input, kernel_size, stride=None, training=True,
                               indices=None):
    """Gradient of ``stochastic_pool2d`` w.r.t. its input, shape (N, C, H, W).

    Training: each output's gradient goes to the sampled element ``indices``
    (required: the forward's ``return_indices``), the sample held fixed.
    Test: the exact gradient of sum(a^2)/sum(a), (2 a_i - y) / sum(a), and 0
    for an all-zero window.  grad_output: (N, C, H_out, W_out).
    See the chapter on pooling (Part II).
    """
    x, (kh, kw), (sh, sw), training, (ho, wo) = _stochastic_settings(input, kernel_size,
                                                                      stride, training)
    gy = check_float_array(grad_output, "grad_output", ndim=4)
    check_same_dtype(x, "input", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape[:2] + (ho, wo))
    h, w = x.shape[2:]
    if not training:
        if indices is not None:
            raise ValueError("indices are only used with training=True")
        return _stochastic_eval_backward(gy, x, kh, kw, sh, sw)
    if indices is None:
        raise ValueError("training=True needs the sampled indices (stochastic_pool2d(..., "
                         "return_indices=True)), got indices=None")
    idx = check_indices(indices, "indices", gy.shape, h * w)
    rows, cols = np.divmod(idx, w)
    i = np.arange(ho)[:, None] * sh
    j = np.arange(wo)[None, :] * sw
    if not np.all((rows >= i) & (rows < i + kh) & (cols >= j) & (cols < j + kw)):
        raise ValueError("indices must point inside their own pooling window")
    return scatter_to_indices(gy, idx, h, w)

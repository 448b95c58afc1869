"""Expressive power of ReLU networks in one dimension (chapter 6.1).

* :func:`relu_interpolant`: the one-hidden-layer ReLU network that *is* the
  piecewise-linear interpolant of a function on equally spaced knots, built in
  closed form (the constructive universal-approximation theorem in 1-D);
* :func:`interpolation_error_bound`: its error bound
  ``max|f''| (b - a)^2 / (8 n^2)``;
* :func:`sawtooth_network`: Telgarsky's deep narrow network, the tent map
  composed ``k`` times, 2 ReLU units per layer and ``2^k`` linear pieces;
* :func:`linear_pieces` and :func:`count_linear_pieces`: the exact
  breakpoints of a 1-D ReLU network, found by propagating its piecewise-linear
  function layer by layer (no sampling);
* :func:`shallow_l1_lower_bound`: how well any function with few pieces can
  approximate the sawtooth in L1.
"""

import math
from numbers import Real

import numpy as np

from ..nn import Linear, ReLU, Sequential

__all__ = ["relu_interpolant", "interpolation_error_bound", "sawtooth_network", "linear_pieces",
           "count_linear_pieces", "shallow_l1_lower_bound"]


def _finite(value, name):
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _interval(a, b):
    a, b = _finite(a, "a"), _finite(b, "b")
    if not a < b:
        raise ValueError(f"need a < b, got a={a!r}, b={b!r}")
    return a, b


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _set(layer, weight, bias):
    layer.weight.data[...] = weight
    layer.bias.data[...] = bias
    return layer


def relu_interpolant(f, a, b, n_pieces, *, dtype=np.float64):
    """The one-hidden-layer ReLU network equal to the piecewise-linear interpolant of ``f``.

    With knots ``x_j = a + j h`` (``h = (b - a) / n``, ``j = 0..n``), values
    ``y_j = f(x_j)`` and slopes ``s_j = (y_{j+1} - y_j) / h``, the interpolant is

        g(x) = y_0 + s_0 relu(x - x_0) + sum_{j=1}^{n-1} (s_j - s_{j-1}) relu(x - x_j),

    exactly (no training): on ``[x_j, x_{j+1}]`` the active units add up to
    slope ``s_j``.  The network is ``Sequential(Linear(1, n), ReLU(),
    Linear(n, 1))`` with hidden weights 1, hidden biases ``-x_j``, output
    weights ``c_j`` and output bias ``y_0``.  Left of ``a`` it is constant,
    right of ``b`` it continues with slope ``s_{n-1}``.

    Parameters
    ----------
    f : callable
        Maps a float64 array of shape (n + 1,) to an array of the same shape
        (NumPy-vectorised).
    a, b : float
        The interval, ``a < b``.
    n_pieces : int
        The number of linear pieces ``n >= 1`` (also the hidden width).
    dtype : float32 or float64
        The layers' dtype (default float64).

    Returns
    -------
    Sequential
        Input (N, 1), output (N, 1).
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    a, b = _interval(a, b)
    n = _positive_int(n_pieces, "n_pieces")
    knots = np.linspace(a, b, n + 1)
    y = np.asarray(f(knots), dtype=np.float64)
    if y.shape != knots.shape or not np.all(np.isfinite(y)):
        raise ValueError(f"f must return {n + 1} finite values for {n + 1} knots, got shape {y.shape}")
    slopes = np.diff(y) / np.diff(knots)
    c = np.diff(slopes, prepend=0.0)                       # c_0 = s_0, c_j = s_j - s_{j-1}
    hidden = _set(Linear(1, n, dtype=dtype, rng=0), np.ones((n, 1)), -knots[:-1])
    out = _set(Linear(n, 1, dtype=dtype, rng=0), c[None, :], [y[0]])
    return Sequential(hidden, ReLU(), out)


def interpolation_error_bound(max_abs_f2, a, b, n_pieces):
    """The bound ``max|f''| (b - a)^2 / (8 n^2)`` on the interpolation error.

    On each piece of length ``h = (b - a) / n`` the error ``e = f - g`` of the
    linear interpolant vanishes at both ends, so ``|e(x)| <= max|f''| (x - x_j)
    (x_{j+1} - x) / 2 <= max|f''| h^2 / 8`` (equality for ``f = x^2``).
    """
    m = _finite(max_abs_f2, "max_abs_f2")
    if m < 0:
        raise ValueError(f"max_abs_f2 must be >= 0, got {max_abs_f2!r}")
    a, b = _interval(a, b)
    n = _positive_int(n_pieces, "n_pieces")
    return m * (b - a) ** 2 / (8 * n ** 2)


def sawtooth_network(k, *, dtype=np.float64):
    """Telgarsky's sawtooth: the tent map ``m(x) = relu(2 relu(x) - 4 relu(x - 1/2))`` composed k times.

    The network is ``k`` hidden layers of 2 ReLU units and an output unit
    followed by a ReLU.  Layer 1 computes ``relu(x), relu(x - 1/2)``; layer
    ``i > 1`` computes ``relu(u), relu(u - 1/2)`` of ``u = 2 r_1 - 4 r_2`` from
    the layer below, which equals ``m`` of the previous composition because
    ``relu(relu(u)) = relu(u)`` and ``relu(relu(u) - 1/2) = relu(u - 1/2)``; the
    output is ``relu(2 r_1 - 4 r_2)``.  So it equals ``m^k`` on all of R, and
    on [0, 1] it is a sawtooth with ``2^k`` linear pieces of slope ``+-2^k``
    (Telgarsky 2015, 2016).

    Parameters
    ----------
    k : int
        The number of compositions, ``k >= 1``.

    Returns
    -------
    Sequential
        Input (N, 1), output (N, 1); ``k + 1`` Linear layers.
    """
    k = _positive_int(k, "k")
    layers = [_set(Linear(1, 2, dtype=dtype, rng=0), [[1.0], [1.0]], [0.0, -0.5]), ReLU()]
    for _ in range(k - 1):
        layers += [_set(Linear(2, 2, dtype=dtype, rng=0), [[2.0, -4.0], [2.0, -4.0]], [0.0, -0.5]),
                   ReLU()]
    layers += [_set(Linear(2, 1, dtype=dtype, rng=0), [[2.0, -4.0]], [0.0]), ReLU()]
    return Sequential(*layers)


def _layers(model):
    if isinstance(model, (Linear, ReLU)):
        model = [model]
    elif not isinstance(model, Sequential):
        raise TypeError(f"model must be a Sequential of Linear and ReLU layers, got "
                        f"{type(model).__name__}")
    layers = list(model)
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Linear, ReLU)):
            raise TypeError(f"model[{i}] is a {type(layer).__name__}; only Linear and ReLU are supported")
    linears = [layer for layer in layers if isinstance(layer, Linear)]
    if not linears:
        raise ValueError("model has no Linear layer")
    if linears[0].in_features != 1:
        raise ValueError(f"model must have one input, its first Linear has in_features="
                         f"{linears[0].in_features}")
    return layers


def linear_pieces(model, a, b, *, tol=1e-9):
    """The exact breakpoints of a 1-D ReLU network on ``[a, b]``.

    The function is carried layer by layer as its values at the current
    breakpoints (between them every unit is affine, so the values determine
    it).  A Linear layer maps the values; a ReLU first inserts, for every unit
    and every piece on which that unit changes sign strictly, the zero
    crossing found by linear interpolation, evaluates all units there, then
    clamps.  At the end, breakpoints closer than ``tol (b - a)`` are dropped
    and adjacent pieces whose slopes agree within ``tol max(1, |slope|)`` (all
    outputs) are merged, so a kink that cancels does not count.

    Parameters
    ----------
    model : Sequential
        Linear and ReLU layers only; the first Linear has ``in_features = 1``.
    a, b : float
        The interval, ``a < b``.
    tol : float
        Relative tolerance for merging (default 1e-9).

    Returns
    -------
    knots : ndarray of shape (P + 1,)
        The breakpoints, ``knots[0] = a`` and ``knots[-1] = b``.
    values : ndarray of shape (P + 1, out_features)
        The network's output at the knots (float64); it is affine between them.
    """
    layers = _layers(model)
    a, b = _interval(a, b)
    tol = _finite(tol, "tol")
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    min_gap = tol * (b - a)
    t = np.array([a, b])
    v = t[:, None].copy()
    for layer in layers:
        if isinstance(layer, Linear):
            w = layer.weight.data.astype(np.float64)
            v = v @ w.T
            if layer.bias is not None:
                v = v + layer.bias.data.astype(np.float64)
            continue
        left, right = v[:-1], v[1:]
        cross = ((left > 0) & (right < 0)) | ((left < 0) & (right > 0))
        piece, unit = np.nonzero(cross)
        if piece.size:
            frac = left[piece, unit] / (left[piece, unit] - right[piece, unit])
            new = t[piece] + frac * (t[piece + 1] - t[piece])
            t_new = np.unique(np.concatenate([t, new]))
            v = np.stack([np.interp(t_new, t, v[:, j]) for j in range(v.shape[1])], axis=1)
            t = t_new
        v = np.maximum(v, 0.0)
    keep = [0]                                  # drop breakpoints within min_gap of the last kept
    for i in range(1, len(t)):
        if t[i] - t[keep[-1]] > min_gap:
            keep.append(i)
    if keep[-1] != len(t) - 1:                  # b always stays: it replaces its near neighbour
        keep[-1 if len(keep) > 1 else len(keep):] = [len(t) - 1]
    t, v = t[keep], v[keep]
    slopes = np.diff(v, axis=0) / np.diff(t)[:, None]
    same = np.all(np.abs(np.diff(slopes, axis=0))
                  <= tol * np.maximum(1.0, np.maximum(np.abs(slopes[:-1]), np.abs(slopes[1:]))),
                  axis=1)
    keep = np.concatenate([[True], ~same, [True]])
    return t[keep], v[keep]


def count_linear_pieces(model, a, b, *, tol=1e-9):
    """The exact number of linear pieces of a 1-D ReLU network on ``[a, b]``.

    ``len(knots) - 1`` of :func:`linear_pieces` (see there for the method and
    ``tol``).  A network with ``l`` hidden layers of width at most ``m`` has at
    most ``(2m)^l`` pieces (Telgarsky 2015); one hidden layer of width ``m``
    has at most ``m + 1``.
    """
    knots, _ = linear_pieces(model, a, b, tol=tol)
    return len(knots) - 1


def shallow_l1_lower_bound(k, n_pieces):
    """A lower bound on ``int_0^1 |m^k - g|`` for any ``g`` with at most ``n_pieces`` linear pieces.

    The sawtooth ``m^k`` consists of ``2^(k-1)`` tents of width ``2^(1-k)``
    and height 1.  ``g`` has at most ``n_pieces - 1`` breakpoints, so on at
    least ``2^(k-1) - n_pieces + 1`` tents it is affine, and no affine function
    comes closer to a tent of width ``w`` than ``w / 4`` in L1 (the best one is
    the constant 1/2: a tent's values are uniform on [0, 1]).  Hence

        int_0^1 |m^k - g| >= max(0, 2^(k-1) - n_pieces + 1) / 2^(k+1).

    A one-hidden-layer network of width ``w`` has at most ``w + 1`` pieces, so
    L1 error below ``eps`` needs ``w >= 2^(k-1) (1 - 4 eps)``.
    """
    k = _positive_int(k, "k")
    p = _positive_int(n_pieces, "n_pieces")
    return max(0, 2 ** (k - 1) - p + 1) / 2 ** (k + 1)

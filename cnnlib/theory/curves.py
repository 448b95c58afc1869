"""Curves in parameter space between two minima (mode connectivity).

A curve with ``n`` bends ``w_0, ..., w_{n-1}`` (flat parameter vectors; the
ends ``w_0`` and ``w_{n-1}`` are the two trained networks, the inner bends are
trained) is ``phi(t) = sum_k c_k(t) w_k`` for ``t`` in [0, 1], with the
coefficients of Garipov et al. (2018), as in their reference code
(timgaripov/dnn-mode-connectivity, ``curves.py``):

* :func:`bezier_coefficients`: ``c_k(t) = binom(n-1, k) t^k (1-t)^(n-1-k)``
  (Bernstein polynomials; with 3 bends a quadratic Bezier curve);
* :func:`polychain_coefficients`: ``c_k(t) = max(0, 1 - |t (n-1) - k|)``
  (a polygonal chain through the bends; with 3 bends two segments);
* with 2 bends both are the straight line ``(1-t) w_0 + t w_1``.

Both families sum to 1 at every ``t`` and are ``(1, 0, ..., 0)`` at ``t = 0``
and ``(0, ..., 0, 1)`` at ``t = 1``, so the curve passes exactly through the
two ends.  :func:`curve_point` evaluates ``phi(t)``; the gradient of a loss
at ``phi(t)`` with respect to bend ``k`` is ``c_k(t)`` times its gradient
with respect to the parameters (the chain rule through a linear map).

See the chapter "Optimisation landscape" (Part VI).
"""

from math import comb

import numpy as np

from .._validate import check_count, check_real

__all__ = ["bezier_coefficients", "polychain_coefficients", "coefficients", "curve_point"]


def _check(t, num_bends):
    t = check_real(t, "t")
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    return t, check_count(num_bends, "num_bends", minimum=2)


def bezier_coefficients(t, num_bends):
    """The Bezier (Bernstein) coefficients ``binom(n-1, k) t^k (1-t)^(n-1-k)``, k = 0..n-1, float64 (n,)."""
    t, n = _check(t, num_bends)
    return np.array([comb(n - 1, k) * t ** k * (1 - t) ** (n - 1 - k) for k in range(n)])


def polychain_coefficients(t, num_bends):
    """The polygonal-chain coefficients ``max(0, 1 - |t (n-1) - k|)``, k = 0..n-1, float64 (n,)."""
    t, n = _check(t, num_bends)
    return np.maximum(0.0, 1.0 - np.abs(t * (n - 1) - np.arange(n)))


def coefficients(kind, t, num_bends):
    """The coefficients of a ``kind`` ``"bezier"``, ``"polychain"`` or ``"line"`` (2 bends) curve."""
    if kind == "bezier":
        return bezier_coefficients(t, num_bends)
    if kind == "polychain":
        return polychain_coefficients(t, num_bends)
    if kind == "line":
        if num_bends != 2:
            raise ValueError(f"a line has 2 bends, got num_bends={num_bends!r}")
        return bezier_coefficients(t, 2)
    raise ValueError(f"kind must be 'bezier', 'polychain' or 'line', got {kind!r}")


def curve_point(bends, coeffs):
    """``sum_k coeffs[k] * bends[k]``: the point of the curve for these coefficients.

    ``bends`` is a sequence of n flat vectors of one shape (or an (n, P)
    array); ``coeffs`` (n,).  At an end (``coeffs`` a unit vector) this returns
    that bend exactly, with no rounding.
    """
    bends = np.asarray(bends)
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if bends.ndim != 2 or bends.shape[0] < 2:
        raise ValueError(f"bends must be n >= 2 flat vectors of one length, got shape {bends.shape}")
    if coeffs.shape != (bends.shape[0],):
        raise ValueError(f"coeffs must have shape ({bends.shape[0]},), got {coeffs.shape}")
    nonzero = np.flatnonzero(coeffs)
    if nonzero.size == 1 and coeffs[nonzero[0]] == 1.0:
        return bends[nonzero[0]].copy()
    return (coeffs @ bends.astype(np.float64)).astype(bends.dtype)

"""EfficientNet's compound scaling (Tan & Le 2019).

One coefficient phi scales a base network's depth by alpha^phi, its width
(channels) by beta^phi and its input resolution by gamma^phi. FLOPs grow
linearly with depth and quadratically with width and resolution, so they
grow by (alpha * beta^2 * gamma^2)^phi; the paper fixes
alpha * beta^2 * gamma^2 ~ 2 (FLOPs about double per step of phi) and finds
alpha = 1.2, beta = 1.1, gamma = 1.15 by a small grid search at phi = 1.
See the chapter on classic architectures (Part II).
"""

import math
import numbers
from typing import NamedTuple

import numpy as np

from .._validate import _is_int

__all__ = ["compound_coefficients", "flops_multiplier", "round_filters", "round_repeats",
           "ScaledNetwork", "scaled_network", "proxy_score", "Candidate", "grid_search", "plain_cnn"]

PAPER_COEFFICIENTS = (1.2, 1.1, 1.15)
PROXY_RATES = (3.0, 2.0, 2.0)


def _real(value, name, minimum=None, strict=False):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}, got {value!r}")
    return float(value)


def _coefficients(alpha, beta, gamma):
    # The paper's constraint: scaling never shrinks a dimension.
    return tuple(_real(v, n, 1.0) for v, n in ((alpha, "alpha"), (beta, "beta"), (gamma, "gamma")))


def compound_coefficients(phi, alpha=1.2, beta=1.1, gamma=1.15):
    """Depth, width and resolution multipliers (alpha^phi, beta^phi, gamma^phi).

    Inputs: phi, a real compound coefficient (0 gives the base network;
    negative values shrink it); alpha, beta, gamma >= 1.

    Returns a tuple of three floats. See the chapter on classic architectures
    (Part II).
    """
    phi = _real(phi, "phi")
    alpha, beta, gamma = _coefficients(alpha, beta, gamma)
    return alpha ** phi, beta ** phi, gamma ** phi


def flops_multiplier(phi, alpha=1.2, beta=1.1, gamma=1.15):
    """FLOPs of the scaled network over the base's: (alpha * beta^2 * gamma^2)^phi.

    Depth multiplies FLOPs linearly; width and resolution quadratically
    (a convolution's cost is C_in * C_out * H * W). Returns a float. See the
    chapter on classic architectures (Part II).
    """
    phi = _real(phi, "phi")
    alpha, beta, gamma = _coefficients(alpha, beta, gamma)
    return (alpha * beta ** 2 * gamma ** 2) ** phi


def round_filters(filters, width_multiplier, divisor=8, min_depth=None):
    """Channels after width scaling, rounded as EfficientNet's ``round_filters``.

    filters * width_multiplier rounded to the nearest multiple of ``divisor``
    (at least ``min_depth``, default ``divisor``), plus one more ``divisor``
    if rounding lost more than 10%. Returns an int. See the chapter on
    classic architectures (Part II).
    """
    if not _is_int(filters) or filters < 1:
        raise ValueError(f"filters must be a positive int, got {filters!r}")
    width_multiplier = _real(width_multiplier, "width_multiplier", 0.0, strict=True)
    if not _is_int(divisor) or divisor < 1:
        raise ValueError(f"divisor must be a positive int, got {divisor!r}")
    if min_depth is not None and (not _is_int(min_depth) or min_depth < 1):
        raise ValueError(f"min_depth must be a positive int or None, got {min_depth!r}")
    scaled = filters * width_multiplier
    new = max(min_depth or divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


def round_repeats(repeats, depth_multiplier):
    """Layers after depth scaling: ceil(repeats * depth_multiplier), as EfficientNet's ``round_repeats``.

    (Products within 1e-9 of an integer count as that integer: 1.2 * 5 is
    6.000000000000001 in floating point and should give 6, not 7.) Returns an
    int. See the chapter on classic architectures (Part II).
    """
    if not _is_int(repeats) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    depth_multiplier = _real(depth_multiplier, "depth_multiplier", 0.0, strict=True)
    return int(math.ceil(repeats * depth_multiplier - 1e-9))  # 1.1 * 10 is 11.000000000000002


class ScaledNetwork(NamedTuple):
    """Layer counts per stage, channels per stage and input resolution."""
    depths: tuple
    widths: tuple
    resolution: int


def _positive_ints(values, name):
    if not isinstance(values, (tuple, list, np.ndarray)) or len(values) == 0 or not all(
            _is_int(v) and v > 0 for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {values!r}")
    return tuple(int(v) for v in values)


def scaled_network(base_depths, base_widths, base_resolution, phi, alpha=1.2, beta=1.1,
                   gamma=1.15, divisor=8):
    """Scale a base network's stages by the compound coefficient ``phi``.

    depths[i] = ceil(base_depths[i] * alpha^phi) (:func:`round_repeats`),
    widths[i] = base_widths[i] * beta^phi rounded to a multiple of ``divisor``
    (:func:`round_filters`), resolution = round(base_resolution * gamma^phi).
    (The released EfficientNet-B1..B7 used hand-picked multipliers and
    resolutions near these values, e.g. B1 at 240 rather than 258.)

    Inputs: base_depths (layers per stage) and base_widths (channels per
    stage), sequences of positive ints of any lengths; base_resolution, a
    positive int; phi, alpha, beta, gamma as in :func:`compound_coefficients`.

    Returns a :class:`ScaledNetwork`. See the chapter on classic architectures
    (Part II).
    """
    depths = _positive_ints(base_depths, "base_depths")
    widths = _positive_ints(base_widths, "base_widths")
    if not _is_int(base_resolution) or base_resolution < 1:
        raise ValueError(f"base_resolution must be a positive int, got {base_resolution!r}")
    d, w, r = compound_coefficients(phi, alpha, beta, gamma)
    return ScaledNetwork(tuple(round_repeats(n, d) for n in depths),
                         tuple(round_filters(c, w, divisor) for c in widths),
                         max(1, int(round(base_resolution * r))))


def proxy_score(alpha, beta, gamma, rates=PROXY_RATES):
    """A toy accuracy gain with diminishing returns in each dimension.

    score = sum_i (1 - m_i^-k_i) / k_i over (m, k) = (alpha, k_depth),
    (beta, k_width), (gamma, k_resolution): every dimension gains at the same
    rate at first (slope 1 in log m) and saturates at 1 / k. The default
    rates (3, 2, 2) say that depth saturates fastest (the paper's ResNet-1000
    is barely better than ResNet-101). It is not a model of real accuracy:
    the paper trained each candidate; the chapter does so at small scale.

    Inputs: alpha, beta, gamma >= 1; rates, three positive numbers. Returns a
    float in [0, sum(1 / k)). See the chapter on classic architectures
    (Part II).
    """
    coefficients = _coefficients(alpha, beta, gamma)
    if not isinstance(rates, (tuple, list)) or len(rates) != 3:
        raise ValueError(f"rates must be three positive numbers, got {rates!r}")
    rates = tuple(_real(k, "rates", 0.0, strict=True) for k in rates)
    return sum((1 - m ** -k) / k for m, k in zip(coefficients, rates))


class Candidate(NamedTuple):
    """One (alpha, beta, gamma) of :func:`grid_search`, its FLOPs factor and score."""
    alpha: float
    beta: float
    gamma: float
    flops: float
    score: float


def grid_search(score=None, *, low=1.0, high=2.0, step=0.05, target=2.0, tol=0.1):
    """Grid search for (alpha, beta, gamma) under alpha * beta^2 * gamma^2 ~ target.

    Every alpha, beta, gamma in low, low + step, ..., high with
    |alpha * beta^2 * gamma^2 - target| <= tol is scored with
    ``score(alpha, beta, gamma)`` (default :func:`proxy_score`); the paper's
    (1.2, 1.1, 1.15) has 1.2 * 1.21 * 1.3225 = 1.92 and passes the default
    tolerance.

    Inputs: score, a callable returning a finite real (higher is better) or
    None; 1 <= low <= high; step > 0; target > 0; tol >= 0.

    Returns a list of :class:`Candidate`, best score first (ties: FLOPs
    closest to target, then smaller alpha, beta, gamma). See the chapter on
    classic architectures (Part II).
    """
    if score is None:
        score = proxy_score
    if not callable(score):
        raise TypeError(f"score must be a callable or None, got {type(score).__name__}")
    low, high = _real(low, "low", 1.0), _real(high, "high", 1.0)
    if high < low:
        raise ValueError(f"high must be >= low, got low={low}, high={high}")
    step = _real(step, "step", 0.0, strict=True)
    target = _real(target, "target", 0.0, strict=True)
    tol = _real(tol, "tol", 0.0)
    n = int(math.floor((high - low) / step + 1e-9))
    grid = [round(low + i * step, 10) for i in range(n + 1)]
    candidates = []
    for a in grid:
        for b in grid:
            for g in grid:
                flops = a * b * b * g * g
                if abs(flops - target) > tol:
                    continue
                s = score(a, b, g)
                if not isinstance(s, numbers.Real) or isinstance(s, bool) or not math.isfinite(s):
                    raise ValueError(f"score must return a finite real number, got {s!r} "
                                     f"for alpha={a}, beta={b}, gamma={g}")
                candidates.append(Candidate(a, b, g, flops, float(s)))
    candidates.sort(key=lambda c: (-c.score, abs(c.flops - target), c.alpha, c.beta, c.gamma))
    return candidates


def plain_cnn(net, in_channels=3, *, rng=None):
    """A plain CNN with the stage depths and widths of a :class:`ScaledNetwork`.

    Each stage is ``depth`` bias-free 3x3 convolutions with ReLU; the first of
    each stage has stride 2.  Used to count the real MACs of a scaled network
    (with :func:`cnnlib.analysis.summary.summary`) against :func:`flops_multiplier`.
    See the chapter on classic architectures (Part II).
    """
    from .. import nn  # here, not at import time: nn does not need scaling

    if not isinstance(net, ScaledNetwork):
        raise TypeError(f"net must be a ScaledNetwork, got {type(net).__name__}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be a positive int, got {in_channels!r}")
    layers, c_in = [], in_channels
    for n_layers, width in zip(net.depths, net.widths):
        for i in range(n_layers):
            layers += [nn.Conv2d(c_in, width, 3, 2 if i == 0 else 1, padding=1, bias=False,
                                 rng=rng),
                       nn.ReLU()]
            c_in = width
    return nn.Sequential(*layers)

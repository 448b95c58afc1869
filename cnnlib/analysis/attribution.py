"""Attributions by gradients: integrated gradients, saliency, gradient x input, baselines.

:func:`integrated_gradients` follows captum's ``IntegratedGradients``
(Sundararajan et al., 2017) argument for argument, so results can be compared
with it: for an input x, a baseline x' and the logit F of class ``target``,

    attribution_i = (x_i - x'_i) * sum_k w_k dF/dx_i (x' + a_k (x - x')),

with the nodes a_k and weights w_k of :func:`approximation_parameters`.  The
gradients come from the model's own ``backward`` (any :class:`~cnnlib.nn.Module`
whose ``forward`` returns (N, classes) logits and whose ``backward`` returns the
input gradient).  Completeness says that the attributions add up to
F(x) - F(x'); the convergence delta measures how far the quadrature is from it.
See Part IV, section "Interpretability" (4.3).
"""

import numpy as np

from .._validate import _is_int, check_count, check_float_array, check_number
from ..nn.module import Module

__all__ = ["METHODS", "approximation_parameters", "integrated_gradients", "saliency",
           "gradient_x_input", "black_baseline", "blurred_baseline", "uniform_noise_baselines",
           "averaged_integrated_gradients"]

METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid", "gausslegendre")


def approximation_parameters(method, n_steps):
    """Quadrature weights and nodes on [0, 1] for the path integral, as captum builds them.

    Returns (step_sizes, alphas), two float64 arrays of shape (n_steps,):

    * ``"riemann_left"``: alphas ``linspace(0, 1 - 1/n, n)``, weights 1/n;
    * ``"riemann_right"``: ``linspace(1/n, 1, n)``, weights 1/n;
    * ``"riemann_middle"``: ``linspace(1/(2n), 1 - 1/(2n), n)``, weights 1/n;
    * ``"riemann_trapezoid"``: ``linspace(0, 1, n)``, weights 1/n with the two
      ends halved.  This is captum's rule, kept under its name: its weights sum
      to (n - 1)/n, not 1 (the textbook trapezoid on these nodes has weights
      1/(n - 1)), so it underestimates every integral by the factor (n - 1)/n;
    * ``"gausslegendre"``: alphas ``0.5 (1 + leggauss(n)[0])``, weights
      ``0.5 leggauss(n)[1]`` (exact for polynomials of degree 2n - 1).

    captum returns the two as functions of n and refuses n < 2 for the Riemann
    rules; so does this function (n_steps >= 1 for Gauss-Legendre).  captum
    rounds the Riemann nodes and all weights to float32; these are float64.
    See Part IV, section 4.3.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n = check_count(n_steps, "n_steps", minimum=1 if method == "gausslegendre" else 2)
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(n)
        return 0.5 * weights, 0.5 * (1.0 + nodes)
    steps = np.full(n, 1.0 / n)
    if method == "riemann_trapezoid":
        steps[0] /= 2
        steps[-1] /= 2
        return steps, np.linspace(0.0, 1.0, n)
    start, stop = {"riemann_left": (0.0, 1.0 - 1.0 / n), "riemann_right": (1.0 / n, 1.0),
                   "riemann_middle": (0.5 / n, 1.0 - 0.5 / n)}[method]
    return steps, np.linspace(start, stop, n)


# ---------------------------------------------------------------------------
# Gradients of a class logit with respect to the input
# ---------------------------------------------------------------------------

def _check_model(model):
    if not isinstance(model, Module):
        raise TypeError(f"model must be a cnnlib.nn.Module, got {type(model).__name__}")


def _check_target(target, n):
    """``target`` (int or N ints) as an int64 array (N,); range checked later."""
    if _is_int(target):
        return np.full(n, int(target), dtype=np.int64)
    if isinstance(target, (bool, np.bool_)) or target is None or isinstance(target, (str, float)):
        raise TypeError(f"target must be an int or a sequence of {n} ints, got {target!r}")
    t = np.asarray(target)
    if t.ndim != 1 or t.shape[0] != n:
        raise ValueError(f"target must be an int or have shape ({n},) (one class per input), "
                         f"got shape {t.shape}")
    if t.size and not np.issubdtype(t.dtype, np.integer):
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    return t.astype(np.int64)


class _EvalMode:
    """Evaluation mode and untouched parameter gradients while gradients are taken."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for _, m in self.model.named_modules()]
        self.grads = [(p, p.grad.copy()) for p in self.model.parameters()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for mod, mode in self.modes:
            object.__setattr__(mod, "training", mode)
        for p, g in self.grads:
            p.grad[...] = g


def _logits(model, x):
    z = np.asarray(model(x))
    if z.ndim != 2 or z.shape[0] != x.shape[0]:
        raise ValueError(f"model must return logits of shape (N, classes), got {z.shape} "
                         f"for {x.shape[0]} inputs")
    return z


def _check_range(target, classes):
    if target.size and (target.min() < 0 or target.max() >= classes):
        raise ValueError(f"target must lie in [0, {classes}), got values in "
                         f"[{target.min()}, {target.max()}]")


def _input_gradients(model, x, target, batch_size=None):
    """(logit of target (N,), d logit / d x like x), in chunks of batch_size rows."""
    n = x.shape[0]
    step = n if batch_size is None else batch_size
    grads, values = np.empty_like(x), np.empty(n)
    for s in range(0, n, max(step, 1)):
        sl = slice(s, min(s + step, n))
        z = _logits(model, x[sl])
        _check_range(target[sl], z.shape[1])
        rows = np.arange(z.shape[0])
        values[sl] = z[rows, target[sl]]
        upstream = np.zeros_like(z)
        upstream[rows, target[sl]] = 1
        g = np.asarray(model.backward(upstream))
        if g.shape != x[sl].shape:
            raise ValueError(f"model.backward must return the input gradient, of shape "
                             f"{x[sl].shape}, got {g.shape}")
        grads[sl] = g
    return values, grads


def _prepare(model, inputs, target):
    _check_model(model)
    x = check_float_array(inputs, "inputs", min_ndim=2)
    return x, _check_target(target, x.shape[0])


def _baselines(baselines, x):
    if baselines is None:
        return np.zeros_like(x)
    if isinstance(baselines, (int, float, np.integer, np.floating)) and not isinstance(baselines, bool):
        if not np.isfinite(baselines):
            raise ValueError(f"baselines must be finite, got {baselines!r}")
        return np.full_like(x, baselines)
    if not isinstance(baselines, np.ndarray):
        raise TypeError(f"baselines must be None, a number or an ndarray broadcastable to inputs, "
                        f"got {type(baselines).__name__}")
    try:
        b = np.broadcast_to(baselines, x.shape)
    except ValueError:
        raise ValueError(f"baselines of shape {baselines.shape} do not broadcast to inputs of "
                         f"shape {x.shape}") from None
    return np.ascontiguousarray(b, dtype=x.dtype)


def integrated_gradients(model, inputs, target, baselines=None, n_steps=50, method="gausslegendre",
                         internal_batch_size=None, return_convergence_delta=False):
    """Integrated gradients of the logit of class ``target``, captum's conventions.

    attribution = (x - x') * sum_k w_k grad F(x' + a_k (x - x')), with
    (w, a) = :func:`approximation_parameters` (method, n_steps) and F the
    ``target`` logit.  The n_steps * N scaled inputs are ordered step by step
    (as in captum) and run through the model (in evaluation mode; each layer's
    mode and every parameter's ``.grad`` are restored afterwards) in chunks of
    ``internal_batch_size`` rows (all at once if None).

    Inputs: model, a cnnlib Module mapping (N, ...) to logits (N, classes);
    inputs (N, ...) float32/float64; target an int or N ints; baselines None
    (zeros), a number, or an array broadcastable to inputs.
    Returns attributions, shaped and typed like inputs, and with
    ``return_convergence_delta`` also delta (N,) float64,
    delta = sum(attributions) - (F(x) - F(x')) per example (captum's sign).
    See Part IV, section 4.3.
    """
    x, t = _prepare(model, inputs, target)
    base = _baselines(baselines, x)
    step_sizes, alphas = approximation_parameters(method, n_steps)
    if internal_batch_size is not None:
        internal_batch_size = check_count(internal_batch_size, "internal_batch_size")
    return_convergence_delta = bool(return_convergence_delta)
    n, k = x.shape[0], len(alphas)
    diff = x.astype(np.float64) - base
    scaled = (base[None] + alphas.reshape((k,) + (1,) * x.ndim) * diff[None]).astype(x.dtype)
    with _EvalMode(model):
        _, grads = _input_gradients(model, scaled.reshape((k * n,) + x.shape[1:]),
                                    np.tile(t, k), internal_batch_size)
        total = np.tensordot(step_sizes, grads.reshape((k,) + x.shape).astype(np.float64), axes=1)
        attr = total * diff
        if not return_convergence_delta:
            return attr.astype(x.dtype)
        ends, _ = _input_gradients(model, np.concatenate([x, base]), np.tile(t, 2),
                                   internal_batch_size)
    delta = attr.reshape(n, -1).sum(axis=1) - (ends[:n] - ends[n:])
    return attr.astype(x.dtype), delta


def saliency(model, inputs, target, abs=True):
    """The gradient of the ``target`` logit with respect to the input (captum's ``Saliency``).

    Simonyan et al.'s saliency map: dF/dx, its absolute value by default
    (captum's ``abs=True``).  Inputs as in :func:`integrated_gradients`.
    Returns an array shaped and typed like inputs.  See Part IV, section 4.3.
    """
    x, t = _prepare(model, inputs, target)
    if not isinstance(abs, (bool, np.bool_)):
        raise TypeError(f"abs must be a bool, got {abs!r}")
    with _EvalMode(model):
        _, g = _input_gradients(model, x, t)
    return np.abs(g) if abs else g


def gradient_x_input(model, inputs, target):
    """Gradient times input, x * dF/dx (captum's ``InputXGradient``).

    The one-step (left Riemann, n_steps = 1) version of integrated gradients
    with a zero baseline; exact completeness holds only for a linear F without
    bias.  Inputs as in :func:`integrated_gradients`; returns an array like inputs.
    See Part IV, section 4.3.
    """
    x, t = _prepare(model, inputs, target)
    with _EvalMode(model):
        _, g = _input_gradients(model, x, t)
    return x * g


# ---------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------

def black_baseline(inputs, black=0.0):
    """A constant baseline: every entry ``black`` (for normalised MNIST the black
    image is ``-MNIST_MEAN / MNIST_STD``, not 0).  Returns an array like inputs.
    See Part IV, section 4.3."""
    x = check_float_array(inputs, "inputs", min_ndim=2)
    if isinstance(black, bool) or not isinstance(black, (int, float, np.integer, np.floating)) \
            or not np.isfinite(black):
        raise TypeError(f"black must be a finite number, got {black!r}")
    return np.full_like(x, black)


def _gaussian_kernel(sigma):
    r = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return k / k.sum()


def _blur_axis(x, k, axis):
    r = len(k) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = np.pad(x, pad, mode="edge")
    out = np.zeros_like(x)
    for i, w in enumerate(k):
        out += w * np.take(xp, np.arange(i, i + x.shape[axis]), axis=axis)
    return out


def blurred_baseline(inputs, sigma=3.0):
    """The input blurred by a Gaussian of standard deviation ``sigma`` pixels.

    A separable blur over the last two axes (H, W), truncated at 3 sigma, with
    edge values repeated beyond the border, computed in float64.
    Inputs: inputs (..., H, W) float; sigma > 0.  Returns an array like inputs.
    See Part IV, section 4.3 (the blurred baseline of Sundararajan et al.).
    """
    x = check_float_array(inputs, "inputs", min_ndim=2)
    sigma = check_number(sigma, "sigma", positive=True)
    k = _gaussian_kernel(sigma)
    out = _blur_axis(_blur_axis(x.astype(np.float64), k, x.ndim - 1), k, x.ndim - 2)
    return out.astype(x.dtype)


def uniform_noise_baselines(inputs, n, low, high, rng=None):
    """``n`` baselines of independent uniform noise on [low, high), one set per input.

    Returns an array ``(n, *inputs.shape)`` of the inputs' dtype, drawn from
    ``np.random.default_rng(rng)``.  See Part IV, section 4.3.
    """
    x = check_float_array(inputs, "inputs", min_ndim=2)
    n = check_count(n, "n")
    for name, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v):
            raise TypeError(f"{name} must be a finite number, got {v!r}")
    if not low < high:
        raise ValueError(f"low must be < high, got low={low}, high={high}")
    gen = np.random.default_rng(rng)
    return gen.uniform(low, high, (n,) + x.shape).astype(x.dtype)


def averaged_integrated_gradients(model, inputs, target, baselines, **kwargs):
    """Integrated gradients averaged over several baselines.

    ``baselines`` is an array ``(B, *inputs.shape)`` (e.g. from
    :func:`uniform_noise_baselines`) or a list of B baselines as
    :func:`integrated_gradients` takes them; the other keyword arguments are
    passed on.  Averaging keeps completeness on average: the mean attribution
    adds up to F(x) - mean_b F(x'_b).
    Returns (mean attributions like inputs, mean delta (N,) float64).
    See Part IV, section 4.3.
    """
    if isinstance(baselines, np.ndarray):
        baselines = list(baselines)
    if not isinstance(baselines, (list, tuple)) or not baselines:
        raise ValueError("baselines must be a non-empty list of baselines or an array (B, ...)")
    kwargs["return_convergence_delta"] = True
    runs = [integrated_gradients(model, inputs, target, b, **kwargs) for b in baselines]
    attr = np.mean([a.astype(np.float64) for a, _ in runs], axis=0)
    return attr.astype(runs[0][0].dtype), np.mean([d for _, d in runs], axis=0)

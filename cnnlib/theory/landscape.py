"""Second-order views of a loss landscape: Hessians, their spectra, critical points.

Everything works on a flat float64 parameter vector ``theta`` (P,) through a
function ``grad_fn(theta)`` that returns the gradient (P,), or a pair
``(loss, grad)``; :func:`cnnlib.analysis.sharpness.model_loss_grad` builds one
for a ``cnnlib`` model on a fixed batch (with
:func:`~cnnlib.analysis.sharpness.flat_parameters` and
:func:`~cnnlib.analysis.sharpness.set_flat_parameters` to flatten and unflatten
its parameters), so a model needs nothing but its hand-written backward.

* :func:`hvp`: a Hessian-vector product by a central difference of gradients,
  ``H v ~ (g(theta + e v) - g(theta - e v)) / (2 e)``.  Its error is the
  truncation error O(e^2) (the third derivative; zero for a quadratic) plus
  the rounding error O(u |g| / e) of subtracting two gradients computed with
  machine epsilon u (2.2e-16 in float64).  The sum is smallest for e ~ u^(1/3),
  about 6e-6 relative to the size of theta (:data:`FD_STEP`), where both terms
  are ~ u^(2/3), about 4e-11 relative: hence float64, and hence not a smaller
  step.
* :func:`hessian`: the full Hessian from P such products (the columns
  ``H e_i``), symmetrised as (H + H^T) / 2; :func:`spectrum` and :func:`index`.
* :func:`hutchinson_trace`: Hutchinson (1989): E[v^T H v] = tr H for random
  v with independent entries of mean 0 and variance 1 (Rademacher +-1 here).
* :func:`find_critical_point`: a critical point of any index, by minimising
  the squared gradient norm ``q = |g|^2 / 2`` (whose gradient is the
  Hessian-vector product ``H g``) with Levenberg-Marquardt steps
  ``delta = -(H^2 + lambda I)^-1 H g``, as in Dauphin et al. (2014).
* :func:`gradient_descent`: plain gradient descent that records the loss and
  the gradient norm (to watch it slow down near a saddle and escape).
* :func:`barrier`: Draxler et al. (2018): ``max_t L(t) - max(L(0), L(1))``
  along a path.

See the chapter "Optimisation landscape" (Part VI).
"""

import numpy as np

from .._random import get_rng
from .._validate import check_count, check_flat_vector, check_number
from ..analysis.sharpness import hessian_vector_product

__all__ = ["FD_STEP", "hvp", "hessian", "spectrum", "index", "hutchinson_trace",
           "find_critical_point", "gradient_descent", "barrier"]

FD_STEP = float(np.finfo(np.float64).eps ** (1 / 3))
"""The default relative step of the central differences, u^(1/3) ~ 6.1e-6 (see the module)."""


def _check_fn(grad_fn):
    if not callable(grad_fn):
        raise TypeError("grad_fn must be callable: theta -> grad or theta -> (loss, grad)")


def _call(grad_fn, theta):
    """(loss or None, gradient as float64) from either form of ``grad_fn``."""
    out = grad_fn(theta)
    loss, grad = out if isinstance(out, tuple) else (None, out)
    grad = np.asarray(grad, dtype=np.float64)
    if grad.shape != theta.shape:
        raise ValueError(f"grad_fn returned a gradient of shape {grad.shape}, expected {theta.shape}")
    return (None if loss is None else float(loss)), grad


def hvp(grad_fn, theta, v, eps=FD_STEP):
    """The Hessian-vector product ``H(theta) @ v`` by central differences, float64 (P,).

    ``(g(theta + h v) - g(theta - h v)) / (2 h)`` with ``h |v| = eps * max(1, |theta|)``
    (the step of :func:`cnnlib.analysis.sharpness.hessian_vector_product`, which
    this calls).  Error: O(eps^2) truncation + O(u / eps) rounding (see the
    module); the default ``eps = u^(1/3)`` balances them.  Exact for a
    quadratic up to rounding.  Costs two gradients.
    """
    _check_fn(grad_fn)
    theta = check_flat_vector(theta)
    v = np.asarray(v, dtype=np.float64)
    if v.shape != theta.shape:
        raise ValueError(f"v must have the shape of theta {theta.shape}, got {v.shape}")
    eps = check_number(eps, "eps", positive=True)
    return hessian_vector_product(lambda t: _call(grad_fn, t), theta, v, r=eps)


def hessian(grad_fn, theta, eps=FD_STEP):
    """The Hessian (P, P) at ``theta``: columns ``H e_i`` by :func:`hvp`, symmetrised.

    Costs 2P gradients.  The central-difference columns are not exactly
    symmetric (each has its own O(eps^2 + u / eps) error); ``(H + H^T) / 2``
    is the nearest symmetric matrix and has real eigenvalues.
    """
    _check_fn(grad_fn)
    theta = check_flat_vector(theta)
    eps = check_number(eps, "eps", positive=True)
    p = theta.size
    columns = np.empty((p, p))
    basis = np.zeros(p)
    for i in range(p):
        basis[i] = 1.0
        columns[:, i] = hvp(grad_fn, theta, basis, eps)
        basis[i] = 0.0
    return (columns + columns.T) / 2


def _check_square(h):
    h = np.asarray(h, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1] or h.size == 0:
        raise ValueError(f"H must be a non-empty square matrix, got shape {h.shape}")
    return h


def spectrum(h):
    """The eigenvalues of the symmetric matrix ``h``, ascending (``numpy.linalg.eigvalsh``)."""
    h = _check_square(h)
    if not np.allclose(h, h.T, rtol=1e-10, atol=1e-12 * max(1.0, np.abs(h).max())):
        raise ValueError("H must be symmetric; symmetrise it first, (H + H.T) / 2")
    return np.linalg.eigvalsh(h)


def index(eigenvalues, tol=1e-6):
    """The index of a critical point: the fraction of its Hessian's eigenvalues below ``-tol``.

    0 at a minimum, 1 at a maximum, in between at a saddle.  ``tol`` (>= 0)
    keeps eigenvalues that are zero up to the finite-difference error out of
    the count; it is absolute, in the units of the eigenvalues.
    """
    ev = np.asarray(eigenvalues, dtype=np.float64)
    if ev.ndim != 1 or ev.size == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-d array, got shape {ev.shape}")
    tol = check_number(tol, "tol")
    return float(np.mean(ev < -tol))


def hutchinson_trace(grad_fn, theta, num_samples=100, eps=FD_STEP, rng=None):
    """Hutchinson's estimate of ``tr H``: the mean of ``v^T H v`` over Rademacher ``v``.

    Each ``v`` has independent entries +-1 with probability 1/2, so
    ``E[v^T H v] = sum_ij H_ij E[v_i v_j] = tr H``; the variance of one sample
    is ``2 sum_{i != j} H_ij^2`` (no diagonal term: the Rademacher choice
    minimises it).  Costs 2 gradients per sample.  Returns
    ``(estimate, running)`` with the running mean after each sample (for a
    convergence plot).
    """
    _check_fn(grad_fn)
    theta = check_flat_vector(theta)
    num_samples = check_count(num_samples, "num_samples")
    rng = get_rng(rng)
    samples = np.empty(num_samples)
    for k in range(num_samples):
        v = rng.choice([-1.0, 1.0], size=theta.shape)
        samples[k] = v @ hvp(grad_fn, theta, v, eps)
    running = np.cumsum(samples) / np.arange(1, num_samples + 1)
    return float(running[-1]), running


def find_critical_point(grad_fn, theta0, steps=50, damping=1e-3, gtol=1e-10, eps=FD_STEP):
    """A nearby critical point (of any index) by minimising ``q = |g|^2 / 2``.

    The gradient of ``q`` is ``H g`` (a Hessian-vector product), its
    Gauss-Newton curvature ``H^2``; each step is the Levenberg-Marquardt step
    ``delta = -(H^2 + lambda I)^-1 H g`` with the full Hessian of
    :func:`hessian` (P is small here), accepted if it lowers ``|g|`` (then
    ``lambda`` is divided by 3) and refused otherwise (``lambda`` times 3).
    Near a non-degenerate critical point this is Newton's method for g = 0,
    which is attracted to saddles as much as to minima.  Stops after
    ``steps`` steps or when ``|g| < gtol``.  A point where ``H g = 0`` but
    ``g != 0`` (a minimum of ``q`` that is not critical) can also stop it: keep
    only results with a small gradient norm.

    Returns ``(theta, grad_norms)`` with ``|g|`` after each accepted step
    (the first entry is the start).
    """
    _check_fn(grad_fn)
    theta = check_flat_vector(theta0, "theta0")
    steps = check_count(steps, "steps", minimum=0)
    lam = check_number(damping, "damping", positive=True)
    gtol = check_number(gtol, "gtol")
    _, g = _call(grad_fn, theta)
    norms = [float(np.linalg.norm(g))]
    eye = np.eye(theta.size)
    for _ in range(steps):
        if norms[-1] < gtol:
            break
        h = hessian(grad_fn, theta, eps)
        hg = h @ g
        scale = np.trace(h @ h) / theta.size + 1e-300
        while lam < 1e12:
            delta = -np.linalg.solve(h @ h + lam * scale * eye, hg)
            _, g_new = _call(grad_fn, theta + delta)
            if np.linalg.norm(g_new) < norms[-1]:
                theta, g = theta + delta, g_new
                norms.append(float(np.linalg.norm(g)))
                lam = max(lam / 3, 1e-12)
                break
            lam *= 3
        else:
            break
    return theta, np.array(norms)


def gradient_descent(grad_fn, theta0, lr, steps):
    """``steps`` steps of ``theta <- theta - lr g``; records loss and gradient norm.

    ``grad_fn`` must return ``(loss, grad)``.  Returns ``(theta, losses,
    grad_norms)`` with ``steps + 1`` entries each (before every step and at
    the end).
    """
    _check_fn(grad_fn)
    theta = check_flat_vector(theta0, "theta0")
    lr = check_number(lr, "lr", positive=True)
    steps = check_count(steps, "steps", minimum=0)
    losses, norms = np.empty(steps + 1), np.empty(steps + 1)
    for k in range(steps + 1):
        loss, g = _call(grad_fn, theta)
        if loss is None:
            raise TypeError("gradient_descent needs grad_fn to return (loss, grad)")
        losses[k], norms[k] = loss, np.linalg.norm(g)
        if k < steps:
            theta = theta - lr * g
    return theta, losses, norms


def barrier(losses):
    """The loss barrier of a path (Draxler et al. 2018): ``max_t L(t) - max(L(0), L(1))``.

    ``losses`` (T,) are the losses at increasing ``t`` from one end (``losses[0]``)
    to the other (``losses[-1]``); the barrier is >= 0, and 0 when no point of
    the path is worse than the worse end.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1 or losses.size < 2:
        raise ValueError(f"losses must be a 1-d array of at least 2 values, got shape {losses.shape}")
    if not np.all(np.isfinite(losses)):
        raise ValueError("losses must be finite")
    return float(losses.max() - max(losses[0], losses[-1]))

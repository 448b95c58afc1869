"""How sharp is a minimum?  Two estimates, for the large-batch chapter.

Both work on a flat parameter vector ``theta`` (float64, shape (P,)) through
a function ``loss_grad(theta) -> (loss, grad)``; :func:`model_loss_grad`
builds one for a ``cnnlib`` model and a fixed batch of data.

* :func:`top_hessian_eigenvalue`: the largest eigenvalue of the Hessian by
  power iteration.  Each Hessian-vector product is a central finite
  difference of gradients, ``H v ~ (g(theta + r v) - g(theta - r v)) / (2 r)``
  (exact for a quadratic, error O(r^2) otherwise), so no second derivatives
  are needed, only two backward passes.
* :func:`epsilon_sharpness`: Keskar et al. (2017), metric 2.1: the largest
  relative increase of the loss in a box around ``theta``,
  ``100 * max_{z in C} (f(theta + z) - f(theta)) / (1 + f(theta))`` with
  ``C = {z : |z_i| <= eps * (|theta_i| + 1)}``.  Keskar et al. solve the
  maximisation with L-BFGS-B; here it is approximated from below by the
  best of random corners of the box and a few steps of projected
  sign-gradient ascent (the step that maximises the linearised loss in a
  box).

See the chapter "Hyper-parameters" (Part III).
"""

import numpy as np

from .. import nn
from .._random import get_rng
from .._validate import check_count, check_flat_vector, check_number

__all__ = ["flat_parameters", "set_flat_parameters", "model_loss_grad", "hessian_vector_product",
           "top_hessian_eigenvalue", "epsilon_sharpness"]


def flat_parameters(model):
    """All parameters of ``model`` in one float64 vector (P,), in registration order."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a cnnlib.nn.Module, got {type(model).__name__}")
    return np.concatenate([p.data.ravel() for p in model.parameters()]).astype(np.float64)


def set_flat_parameters(model, theta):
    """Copy the vector ``theta`` (P,) into the parameters of ``model`` (cast to their dtype)."""
    params = list(model.parameters())
    theta = np.asarray(theta)
    size = sum(p.size for p in params)
    if theta.shape != (size,):
        raise ValueError(f"theta must have shape ({size},), got {theta.shape}")
    offset = 0
    for p in params:
        p.data[...] = theta[offset:offset + p.size].reshape(p.shape)
        offset += p.size


def model_loss_grad(model, x, y):
    """``loss_grad(theta) -> (loss, grad)`` for ``model`` on the fixed batch (x, y).

    The loss is the mean cross-entropy in evaluation mode; ``grad`` is a
    float64 vector (P,).  Calling it overwrites the model's parameters with
    ``theta`` (use a copy of the model, or put them back afterwards).  Use a
    float64 model for Hessian-vector products by finite differences.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a cnnlib.nn.Module, got {type(model).__name__}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty with the same length, got {len(x)} and {len(y)}")
    loss_fn = nn.CrossEntropyLoss()
    params = list(model.parameters())

    def loss_grad(theta):
        set_flat_parameters(model, theta)
        model.eval()
        model.zero_grad()
        loss = float(loss_fn(model(x), y))
        model.backward(loss_fn.backward())
        return loss, np.concatenate([p.grad.ravel() for p in params]).astype(np.float64)

    return loss_grad


def hessian_vector_product(loss_grad, theta, v, r=1e-3):
    """``H(theta) @ v`` by a central difference of gradients, float64 (P,).

    ``(g(theta + h v) - g(theta - h v)) / (2 h)`` with the step chosen so
    that the perturbation ``h v`` has length ``r * max(1, |theta|)``.  Exact
    for a quadratic loss (up to rounding); otherwise the error is O(h^2).
    Costs two calls of ``loss_grad``.
    """
    if not callable(loss_grad):
        raise TypeError("loss_grad must be callable: theta -> (loss, grad)")
    theta = check_flat_vector(theta)
    v = np.asarray(v, dtype=np.float64)
    if v.shape != theta.shape:
        raise ValueError(f"v must have the shape of theta {theta.shape}, got {v.shape}")
    r = check_number(r, "r", positive=True)
    norm = np.linalg.norm(v)
    if norm == 0:
        return np.zeros_like(theta)
    h = r * max(1.0, np.linalg.norm(theta)) / norm
    _, g_plus = loss_grad(theta + h * v)
    _, g_minus = loss_grad(theta - h * v)
    return (g_plus - g_minus) / (2 * h)


def top_hessian_eigenvalue(loss_grad, theta, iters=20, tol=1e-3, r=1e-3, rng=None):
    """The eigenvalue of largest magnitude of the Hessian at ``theta``, by power iteration.

    Start from a random unit vector ``v``; repeat ``w = H v`` (by
    :func:`hessian_vector_product`), ``lambda = v . w``, ``v = w / |w|``
    until ``lambda`` changes by less than ``tol`` (relative) or after
    ``iters`` products.  Near a minimum the Hessian is (nearly) positive
    semi-definite, so this is the top curvature, the sharpness.  Returns
    ``(lambda, v, history)`` with the estimate after each iteration.
    """
    theta = check_flat_vector(theta)
    iters = check_count(iters, "iters")
    tol = check_number(tol, "tol")
    rng = get_rng(rng)
    v = rng.standard_normal(theta.shape)
    v /= np.linalg.norm(v)
    history, lam = [], 0.0
    for _ in range(iters):
        w = hessian_vector_product(loss_grad, theta, v, r)
        new = float(v @ w)
        history.append(new)
        norm = np.linalg.norm(w)
        if norm == 0:
            break
        v = w / norm
        converged = len(history) > 1 and abs(new - lam) <= tol * abs(new)
        lam = new
        if converged:
            break
    return lam, v, np.array(history)


def epsilon_sharpness(loss_fn, theta, eps=1e-3, num_samples=20, ascent_steps=0, grad_fn=None,
                      rng=None):
    """Keskar et al.'s epsilon-sharpness, estimated from below (see the module).

    ``loss_fn(theta) -> loss`` (or ``-> (loss, grad)``, then it also serves
    as ``grad_fn``); the box is ``|z_i| <= eps * (|theta_i| + 1)``.  Tries
    ``num_samples`` random corners of the box and, if ``ascent_steps > 0``,
    that many steps of projected sign-gradient ascent started at the
    gradient-sign corner (needs gradients).  Returns
    ``100 * (max f(theta + z) - f(theta)) / (1 + f(theta))``, a percentage.
    """
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable: theta -> loss")
    theta = check_flat_vector(theta)
    eps = check_number(eps, "eps", positive=True)
    num_samples = check_count(num_samples, "num_samples", minimum=0)
    ascent_steps = check_count(ascent_steps, "ascent_steps", minimum=0)
    if num_samples + ascent_steps == 0:
        raise ValueError("num_samples and ascent_steps cannot both be 0")
    rng = get_rng(rng)

    def f(t):
        out = loss_fn(t)
        return float(out[0] if isinstance(out, tuple) else out)

    def g(t):
        out = (grad_fn or loss_fn)(t)
        if not isinstance(out, tuple):
            raise TypeError("ascent_steps > 0 needs gradients: pass grad_fn or a loss_fn "
                            "returning (loss, grad)")
        return np.asarray(out[1], dtype=np.float64)

    f0 = f(theta)
    box = eps * (np.abs(theta) + 1)
    best = f0
    for _ in range(num_samples):
        best = max(best, f(theta + box * rng.choice([-1.0, 1.0], size=theta.shape)))
    z = np.zeros_like(theta)
    for _ in range(ascent_steps):
        z = np.clip(z + box * np.sign(g(theta + z)), -box, box)
        best = max(best, f(theta + z))
    return 100 * (best - f0) / (1 + f0)

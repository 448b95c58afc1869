"""Full Jacobians of small modules: by their own backward, by central differences,
and split into the parts of a residual block.

* :func:`jacobian`: the matrix d output / d input of a :class:`~cnnlib.nn.Module`,
  one row per output unit, found by calling its hand-written ``backward`` with
  every unit vector (what training uses, so this tests the backward too);
* :func:`numerical_jacobian`: the same matrix for any function, by central
  differences (the slow, plainly correct reference);
* :func:`residual_jacobian`: for a :class:`~cnnlib.nn.ResidualBlock` with an
  identity skip, the block's Jacobian, its branch's Jacobian and the gate of
  the ReLU after the sum, so that J_block = diag(gate) (I + J_branch).

Only for small inputs: a Jacobian has (output size) x (input size) entries.
See the chapter on classic architectures (Part II), ResNet's gradient.
"""

import numbers
from typing import NamedTuple

import numpy as np

from ..nn.blocks import ResidualBlock
from ..nn.module import Module, Sequential

__all__ = ["jacobian", "numerical_jacobian", "ResidualJacobian", "residual_jacobian"]

MAX_ENTRIES = 4_000_000  # a (2000 x 2000) Jacobian; larger ones are a mistake here


def _check_input(x, name="x"):
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    if x.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    return x


def _check_size(n_out, n_in):
    if n_out * n_in > MAX_ENTRIES:
        raise ValueError(f"the Jacobian would have {n_out} x {n_in} entries "
                         f"(more than {MAX_ENTRIES:,}): use a smaller input")


def jacobian(module, x):
    """Jacobian of ``module`` at ``x`` by its backward, one unit vector per output.

    J[i, j] = d y.flat[i] / d x.flat[j] with y = module(x): row i is
    ``module.backward(e_i)`` for the unit vector e_i of y's shape. The module
    runs forward once in its current mode (training or evaluation; in training
    mode batch norm couples the examples, and the Jacobian shows it). Nothing
    is left changed: parameter gradients and buffers (BN running statistics)
    are restored afterwards.

    Inputs: module, a ``cnnlib.nn.Module``; x, a floating-point array of the
    shape the module takes, e.g. (N, C, H, W), in the module's dtype.

    Returns an array of shape (y.size, x.size) in x's dtype. See the chapter on
    classic architectures (Part II).
    """
    if not isinstance(module, Module):
        raise TypeError(f"module must be a cnnlib.nn.Module, got {type(module).__name__}")
    x = _check_input(x)
    grads = [p.grad.copy() for p in module.parameters()]
    buffers = [(b, b.copy()) for _, b in module.named_buffers()]
    try:
        y = np.asarray(module(x))
        _check_size(y.size, x.size)
        rows = np.empty((y.size, x.size), dtype=x.dtype)
        e = np.zeros(y.shape, dtype=y.dtype)
        for i in range(y.size):
            e.flat[i] = 1
            rows[i] = np.asarray(module.backward(e)).ravel()
            e.flat[i] = 0
    finally:
        for p, g in zip(module.parameters(), grads):
            p.grad[...] = g
        for b, saved in buffers:
            b[...] = saved
    return rows


def numerical_jacobian(f, x, eps=1e-6):
    """Jacobian of ``f`` at ``x`` by central differences.

    J[:, j] = (f(x + eps e_j) - f(x - eps e_j)).ravel() / (2 eps). Use float64
    (the error is O(eps^2) plus rounding of order 1e-16 / eps). ``f`` may be a
    module; in training mode a batch-norm layer updates its running statistics
    on every call (its output does not depend on them).

    Inputs: f, a callable taking an array of x's shape; x, a floating-point
    array; eps > 0.

    Returns a float array of shape (f(x).size, x.size). See the chapter on
    classic architectures (Part II).
    """
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    x = _check_input(x)
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps > 0 \
            or not np.isfinite(eps):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    n_out = np.asarray(f(x.copy())).size
    _check_size(n_out, x.size)
    out = np.empty((n_out, x.size), dtype=np.result_type(x.dtype, np.float64))
    v = x.copy()
    for j in range(x.size):
        old = v.flat[j]
        v.flat[j] = old + eps
        plus = np.array(f(v), dtype=out.dtype).ravel()
        v.flat[j] = old - eps
        minus = np.array(f(v), dtype=out.dtype).ravel()
        v.flat[j] = old
        out[:, j] = (plus - minus) / (2 * eps)
    return out


class ResidualJacobian(NamedTuple):
    """The parts of a residual block's Jacobian (see :func:`residual_jacobian`).

    block: (M, M), d ReLU(x + F(x)) / dx by the block's backward;
    branch: (M, M), dF/dx by the branch's backward;
    gate: (M,), 1 where x + F(x) > 0 (the ReLU passes), else 0.
    """
    block: np.ndarray
    branch: np.ndarray
    gate: np.ndarray


def residual_jacobian(block, x):
    """A residual block's Jacobian and its parts: J_block = diag(gate) (I + J_branch).

    The block computes y = ReLU(x + F(x)) with F its main path (conv - [BN] -
    ReLU - conv - [BN]); so dy/dx = D (I + dF/dx) with D = diag(ReLU'(x + F(x))).
    The identity I is the skip's contribution: wherever the ReLU passes
    (gate 1), row i of J_block - J_branch is row i of the identity.

    Inputs: block, a ``ResidualBlock`` with an identity skip (stride 1,
    in_channels == out_channels); x, of shape (N, C, H, W) in the block's
    dtype, small (the Jacobian has (N C H W)^2 entries).

    Returns a :class:`ResidualJacobian`. Uses :func:`jacobian` for both
    matrices, so the block is left unchanged. See the chapter on classic
    architectures (Part II).
    """
    if not isinstance(block, ResidualBlock):
        raise TypeError(f"block must be a cnnlib.nn.ResidualBlock, got {type(block).__name__}")
    if block.downsample is not None:
        raise ValueError("block must have an identity skip (stride 1 and in_channels == "
                         f"out_channels), got {block.in_channels} -> {block.out_channels}, "
                         f"stride {block.stride}")
    x = _check_input(x)
    if x.ndim != 4 or x.shape[1] != block.in_channels:
        raise ValueError(f"x must have shape (N, {block.in_channels}, H, W), got {x.shape}")
    branch = Sequential(*block.main_layers())  # shares the block's layers, copies nothing
    j_block = jacobian(block, x)
    j_branch = jacobian(branch, x)
    buffers = [(b, b.copy()) for _, b in block.named_buffers()]
    try:
        gate = ((x + branch(x)) > 0).astype(x.dtype).ravel()
    finally:
        for b, saved in buffers:
            b[...] = saved
    return ResidualJacobian(j_block, j_branch, gate)

"""Gradient flow through depth at initialisation: the experiments behind
AlexNet's ReLU and ResNet's skip connections.

* :func:`activation_gradient_through_depth`: a deep stack of linear (or 3x3
  convolution) layers, each followed by ReLU, sigmoid or tanh; the norm of
  each layer's weight gradient shows whether gradients vanish on the way
  back to the first layers.
* :func:`residual_gradient_through_depth`: stacks of :class:`~cnnlib.nn.PlainBlock` and
  :class:`~cnnlib.nn.ResidualBlock`; the norm of the gradient at the input as the
  number of blocks grows. The skip adds the identity to every block's
  Jacobian, so the gradient has a path that no layer shrinks.

Both use a fixed random upstream gradient of unit total norm (the gradient
of sum(output * r) with r random) and are deterministic given ``rng``.
See the chapter on classic architectures (Part II).
"""

import math

import numpy as np

from .._random import get_rng
from .._validate import _is_int
from ..nn.blocks import PlainBlock, ResidualBlock
from ..nn.layers import Conv2d, Linear, ReLU, Sigmoid, Tanh
from ..nn.module import Sequential

__all__ = ["activation_gradient_through_depth", "residual_gradient_through_depth"]

ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}
# Each activation's customary initialisation: He for ReLU, Glorot (Xavier) otherwise.
DEFAULT_INIT = {"relu": "he", "sigmoid": "xavier", "tanh": "xavier"}


def _positive(value, name):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _init_weight(layer, init, rng):
    """Redraw ``layer.weight`` from N(0, std^2) for ``init`` ('he', 'xavier'), zero the bias;
    'default' keeps PyTorch's default initialisation."""
    if init == "default":
        return
    w = layer.weight.data
    fan_in = math.prod(w.shape[1:])
    fan_out = w.shape[0] * math.prod(w.shape[2:])
    std = math.sqrt(2.0 / fan_in) if init == "he" else math.sqrt(2.0 / (fan_in + fan_out))
    w[...] = rng.standard_normal(w.shape) * std
    layer.bias.data.fill(0)


def _unit_upstream(shape, rng, dtype):
    r = rng.standard_normal(shape)
    return (r / np.linalg.norm(r)).astype(dtype)


def activation_gradient_through_depth(activation, depth=10, width=64, n_samples=128, rng=0,
                                      init=None, layer="linear"):
    """Norm of each layer's weight gradient in a deep stack at initialisation.

    The stack is ``depth`` x (Linear(width, width) or Conv2d(width, width, 3,
    padding=1) on 8x8 maps, then the activation), fed with standard normal
    inputs; the loss is sum(output * r) with r a random direction of norm 1.
    The weights are N(0, 2 / fan_in) for init "he", N(0, 2 / (fan_in +
    fan_out)) for "xavier" (biases 0), or PyTorch's default for "default";
    ``init=None`` picks He for ReLU and Xavier for sigmoid and tanh. Since
    sigmoid' <= 1/4, its gradient shrinks by about 4x or more per layer;
    ReLU with He initialisation keeps it about constant.

    Inputs: activation in {"relu", "sigmoid", "tanh"}; depth, width,
    n_samples positive ints; rng a seed or Generator; layer "linear" or "conv".

    Returns a float64 array of shape (depth,): ||dL/dW_l|| for l = 1 (next to
    the input) .. depth. See the chapter on classic architectures (Part II).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    depth, width = _positive(depth, "depth"), _positive(width, "width")
    n_samples = _positive(n_samples, "n_samples")
    init = DEFAULT_INIT[activation] if init is None else init
    if init not in ("he", "xavier", "default"):
        raise ValueError(f"init must be 'he', 'xavier', 'default' or None, got {init!r}")
    if layer not in ("linear", "conv"):
        raise ValueError(f"layer must be 'linear' or 'conv', got {layer!r}")
    rng = get_rng(rng)
    layers, weighted = [], []
    for _ in range(depth):
        lin = (Linear(width, width, dtype=np.float64, rng=rng) if layer == "linear"
               else Conv2d(width, width, 3, padding=1, dtype=np.float64, rng=rng))
        _init_weight(lin, init, rng)
        weighted.append(lin)
        layers += [lin, ACTIVATIONS[activation]()]
    model = Sequential(*layers)
    shape = (n_samples, width) if layer == "linear" else (n_samples, width, 8, 8)
    y = model(rng.standard_normal(shape))
    model.backward(_unit_upstream(y.shape, rng, y.dtype))
    return np.array([np.linalg.norm(lin.weight.grad) for lin in weighted])


def residual_gradient_through_depth(depths=(1, 2, 4, 8, 16), channels=8, rng=0,
                                    batch_norm=False, n_samples=8, size=8):
    """Norm of the gradient at the input of plain and residual stacks, by depth.

    For each number of blocks in ``depths``, a stack of that many
    ``PlainBlock(channels, channels)`` and one of ``ResidualBlock`` with the
    same weights (PyTorch's default initialisation; BN in training mode when
    ``batch_norm``) take standard normal inputs of shape
    (n_samples, channels, size, size); the loss is sum(output * r) with r a
    random direction of norm 1, and the result is ||dL/dx||. Without skips
    each block multiplies the gradient by a factor below one (with the
    default initialisation), so it vanishes exponentially with depth; with
    skips the Jacobian is I + J_branch and the norm stays of order one.

    Inputs: depths, a non-empty sequence of positive ints; channels,
    n_samples, size positive ints; rng a seed or Generator; batch_norm bool.

    Returns a dict of arrays of shape (len(depths),): "depth" (int64),
    "plain" and "residual" (float64). See the chapter on classic architectures (Part II).
    """
    if not isinstance(depths, (tuple, list, np.ndarray)) or len(depths) == 0 or not all(
            _is_int(d) and d > 0 for d in depths):
        raise ValueError(f"depths must be a non-empty sequence of positive ints, got {depths!r}")
    channels, n_samples = _positive(channels, "channels"), _positive(n_samples, "n_samples")
    size = _positive(size, "size")
    if not isinstance(batch_norm, (bool, np.bool_)):
        raise TypeError(f"batch_norm must be a bool, got {batch_norm!r}")
    if batch_norm and n_samples * size * size < 2:
        raise ValueError("batch_norm needs more than one value per channel: "
                         f"n_samples * size^2 = {n_samples * size * size}")
    rng = get_rng(rng)
    result = {"depth": np.array(depths, dtype=np.int64), "plain": [], "residual": []}
    for depth in depths:
        x = rng.standard_normal((n_samples, channels, size, size))
        r = _unit_upstream(x.shape, rng, np.float64)
        kw = dict(batch_norm=bool(batch_norm), dtype=np.float64)
        plain = Sequential(*[PlainBlock(channels, channels, rng=rng, **kw) for _ in range(depth)])
        residual = Sequential(*[ResidualBlock(channels, channels, **kw) for _ in range(depth)])
        residual.load_state_dict(plain.state_dict())  # the same weights: only the skips differ
        for kind, model in (("plain", plain), ("residual", residual)):
            model(x)
            result[kind].append(np.linalg.norm(model.backward(r)))
    return {k: np.asarray(v) for k, v in result.items()}

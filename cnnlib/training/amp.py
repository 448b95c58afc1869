"""Mixed-precision training, emulated faithfully on the CPU.

Real mixed-precision training (Micikevicius et al. 2018) keeps float32
*master* weights, runs the forward and backward passes in float16 (products
accumulated in float32, results stored in float16), multiplies the loss by a
*scale* so that small gradients survive float16's range, and divides the
gradients by the scale before a float32 optimiser step, which it skips when a
gradient overflowed to inf or nan.

Numba has no float16 on the CPU, so here the kernels compute in float32 and
every value that real training stores in float16 is rounded to the float16
grid (NumPy's round-to-nearest-even cast, overflow to inf) at the same
places: the weights copied for the pass, each layer's output in forward, the
scaled loss gradient, each layer's input gradient in backward and the
parameter gradients.  A float16 product is exact in float32, so a float32
kernel fed float16 values computes what a tensor core with float32
accumulation computes, up to the order of the sums.

:class:`LossScaler` follows ``torch.amp.GradScaler``'s schedule exactly:
start at ``init_scale``; on an inf/nan gradient multiply the scale by
``backoff_factor`` and reset the count of clean steps; after
``growth_interval`` consecutive clean steps multiply it by ``growth_factor``.
See the memory chapter (Part III).
"""

import numba
import numpy as np

from .._random import get_rng
from .._validate import _is_int
from ..nn.layers import CrossEntropyLoss
from ..nn.module import Module, Sequential
from ..optim import SGD, Adam, Optimizer

__all__ = ["FP16_MAX", "FP16_MIN_NORMAL", "FP16_MIN_SUBNORMAL", "FP16_EPS", "to_fp16",
           "round_fp16", "fp16_categories", "has_inf_or_nan", "LossScaler", "step",
           "half_forward", "half_backward", "mixed_precision_step", "gradient_underflow",
           "train_mixed_precision", "mlp"]

FP16_MAX = 65504.0                  # largest finite float16, (2 - 2**-10) * 2**15
FP16_MIN_NORMAL = 2.0 ** -14        # smallest positive normal float16
FP16_MIN_SUBNORMAL = 2.0 ** -24     # smallest positive float16
FP16_EPS = 2.0 ** -10               # spacing of float16 numbers in [1, 2)


# ----------------------------------------------------------------------------
# float16 rounding
# ----------------------------------------------------------------------------

def _check_floats(x, name):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")
    return x


def to_fp16(x):
    """``x`` rounded to float16 (nearest, ties to even; beyond the range: +-inf).

    x: any shape, floating point.  Returns a float16 array of the same shape.
    Overflow is silent (it is what the chapter studies).
    """
    x = _check_floats(x, "x")
    with np.errstate(over="ignore"):
        return x.astype(np.float16)


def round_fp16(x):
    """``x`` rounded to the float16 grid but kept in its own dtype (float32 or float64).

    This is how the library emulates a float16 tensor: the values are exactly
    float16 values (inf where float16 overflows), the storage is what the
    Numba kernels accept.  Returns a new array of ``x``'s shape and dtype.
    """
    x = _check_floats(x, "x")
    if x.dtype == np.float16:
        return x.copy()
    return to_fp16(x).astype(x.dtype)


def fp16_categories(values, scale=1.0):
    """Where the values land when ``scale * values`` is stored in float16.

    values: any shape, floating point (e.g. gradients in float32); scale > 0.
    Each non-zero value falls in one category of its scaled, rounded copy:
    "underflow" (rounds to 0: lost), "subnormal" (below 2**-14: kept with
    fewer significant bits), "normal", "overflow" (rounds to +-inf).  Returns
    a dict with those four fractions of the non-zero finite values (they add
    to 1), "nonzero" (their count) and "zero" (the count of exact zeros).
    See the memory chapter (Part III).
    """
    v = _check_floats(values, "values").ravel()
    scale = _check_scale(scale, "scale")
    v = v[np.isfinite(v)].astype(np.float64)
    nonzero = v[v != 0]
    h = np.abs(to_fp16(nonzero * scale).astype(np.float64))
    n = max(nonzero.size, 1)
    counts = {"underflow": int(np.sum(h == 0)),
              "subnormal": int(np.sum((h > 0) & (h < FP16_MIN_NORMAL))),
              "normal": int(np.sum((h >= FP16_MIN_NORMAL) & np.isfinite(h))),
              "overflow": int(np.sum(np.isinf(h)))}
    result = {k: c / n for k, c in counts.items()}
    result.update(nonzero=int(nonzero.size), zero=int(v.size - nonzero.size))
    return result


def _check_scale(scale, name):
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {scale!r}")
    if not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"{name} must be finite and > 0, got {scale}")
    return float(scale)


# ----------------------------------------------------------------------------
# inf / nan check (compiled WITHOUT fastmath: fastmath lets LLVM assume that
# no value is inf or nan and delete the very test we need)
# ----------------------------------------------------------------------------

@numba.njit(cache=True)
def _nonfinite_kernel(flat):
    for i in range(flat.size):
        if not np.isfinite(flat[i]):
            return True
    return False


def has_inf_or_nan(arrays):
    """True if any entry of any array is inf or nan.

    arrays: one array or a list of arrays (float16, float32 or float64).
    float16 arrays are widened to float32 (exactly) for the Numba kernel.
    """
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    for i, a in enumerate(arrays):
        a = _check_floats(a, f"arrays[{i}]")
        if a.dtype == np.float16:
            a = a.astype(np.float32)
        if a.size and _nonfinite_kernel(np.ascontiguousarray(a).ravel()):
            return True
    return False


# ----------------------------------------------------------------------------
# Dynamic loss scaling
# ----------------------------------------------------------------------------

class LossScaler:
    """Dynamic loss scaling with ``torch.amp.GradScaler``'s schedule.

    ``LossScaler(init_scale=2.**16, growth_factor=2.0, backoff_factor=0.5,
    growth_interval=2000)``.  Per step: ``scale(loss)`` before backward,
    ``unscale(grads)`` (divides the gradients in place and reports an
    inf/nan), the optimiser step only if there was none, then
    ``update(found_inf)``:

    - found_inf: ``scale *= backoff_factor`` and the clean-step count is reset;
    - otherwise the count grows by one; when it reaches ``growth_interval``,
      ``scale *= growth_factor`` (kept only if finite) and the count restarts.

    The scale is held in float32, as GradScaler holds it.
    See the memory chapter (Part III).
    """

    def __init__(self, init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                 growth_interval=2000):
        _check_scale(init_scale, "init_scale")
        growth_factor = _check_scale(growth_factor, "growth_factor")
        backoff_factor = _check_scale(backoff_factor, "backoff_factor")
        if growth_factor <= 1:
            raise ValueError(f"growth_factor must be > 1, got {growth_factor}")
        if backoff_factor >= 1:
            raise ValueError(f"backoff_factor must be < 1, got {backoff_factor}")
        if not _is_int(growth_interval) or growth_interval < 1:
            raise ValueError(f"growth_interval must be a positive int, got {growth_interval!r}")
        self._scale = np.float32(init_scale)
        self.growth_factor = growth_factor
        self.backoff_factor = backoff_factor
        self.growth_interval = int(growth_interval)
        self._growth_tracker = 0

    def get_scale(self):
        """The current scale, a Python float."""
        return float(self._scale)

    def get_growth_tracker(self):
        """How many clean steps since the scale last changed."""
        return self._growth_tracker

    def scale(self, loss):
        """``loss * scale`` (a float, or an array of loss's dtype)."""
        if isinstance(loss, np.ndarray):
            return loss * loss.dtype.type(self._scale)
        return float(loss) * float(self._scale)

    def unscale(self, grads):
        """Divide each gradient array by the scale, in place; return found_inf.

        grads: a list of float32/float64 arrays (``[p.grad for p in params]``).
        The check looks at the values before the division (as GradScaler's
        kernel does) and uses :func:`has_inf_or_nan`.  The multiplier is
        1 / scale computed in float64 and rounded to float32, as in PyTorch.
        """
        if isinstance(grads, np.ndarray):
            grads = [grads]
        grads = list(grads)
        found_inf = has_inf_or_nan(grads)
        inv = np.float32(1.0 / np.float64(self._scale))
        for g in grads:
            g *= g.dtype.type(inv)
        return found_inf

    def update(self, found_inf):
        """Move the scale after a step, by the schedule above."""
        if bool(found_inf):
            self._scale = np.float32(self._scale * np.float32(self.backoff_factor))
            self._growth_tracker = 0
            return
        self._growth_tracker += 1
        if self._growth_tracker == self.growth_interval:
            with np.errstate(over="ignore"):
                grown = np.float32(np.float64(self._scale) * self.growth_factor)
            if np.isfinite(grown):
                self._scale = grown
            self._growth_tracker = 0

    def state_dict(self):
        """The scaler's state (scale, growth tracker and settings) as a dict of numbers."""
        return {"scale": float(self._scale), "growth_tracker": self._growth_tracker,
                "growth_factor": self.growth_factor, "backoff_factor": self.backoff_factor,
                "growth_interval": self.growth_interval}

    def load_state_dict(self, state):
        """Restore a state taken with :meth:`state_dict`."""
        self._scale = np.float32(state["scale"])
        self._growth_tracker = int(state["growth_tracker"])
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.growth_interval = int(state["growth_interval"])

    def __repr__(self):
        return (f"LossScaler(scale={self.get_scale():g}, growth_tracker={self._growth_tracker}, "
                f"growth_interval={self.growth_interval})")


def step(optimizer, scaler, grads=None):
    """Unscale, step unless a gradient is inf/nan, update the scale.

    ``grads`` defaults to ``[p.grad for p in optimizer.params]``.  Returns
    True if the optimiser stepped, False if the step was skipped.
    """
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a cnnlib Optimizer, got {type(optimizer).__name__}")
    if not isinstance(scaler, LossScaler):
        raise TypeError(f"scaler must be a LossScaler, got {type(scaler).__name__}")
    if grads is None:
        grads = [p.grad for p in optimizer.params]
    found_inf = scaler.unscale(grads)
    if not found_inf:
        optimizer.step()
    scaler.update(found_inf)
    return not found_inf


# ----------------------------------------------------------------------------
# float16 passes through a cnnlib model
# ----------------------------------------------------------------------------

def _layers(model):
    if not isinstance(model, Module):
        raise TypeError(f"model must be a cnnlib Module, got {type(model).__name__}")
    return list(model) if isinstance(model, Sequential) else [model]


def half_forward(model, x):
    """Forward pass with float16 storage: the input and each layer's output rounded.

    ``model``: a Module (a Sequential is rounded after each child; another
    module only at its output).  Its weights must already hold float16 values
    (see :func:`mixed_precision_step`).  Returns the output, float16 values in
    the model's float dtype.
    """
    x = round_fp16(x)
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in _layers(model):
            x = round_fp16(layer(x))
    return x


def half_backward(model, grad_output):
    """Backward pass with float16 storage: each gradient between layers rounded.

    Returns the gradient of the input; the parameter gradients are left in
    ``param.grad`` (round them with :func:`round_fp16` to store them in float16).
    """
    g = round_fp16(grad_output)
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in reversed(_layers(model)):
            g = round_fp16(layer.backward(g))
    return g


PRECISIONS = ("fp32", "fp16")


def mixed_precision_step(model, loss_fn, x, target, optimizer, scaler=None, *,
                         precision="fp16", master_weights=True):
    """One training step in float32 or in emulated mixed precision.

    ``precision="fp32"``: forward, loss, backward and ``optimizer.step()``.

    ``precision="fp16"`` (the recipe of Micikevicius et al.):

    1. the float32 master weights are rounded to float16 copies for the pass;
    2. forward with :func:`half_forward`; the loss (``loss_fn``, e.g.
       :class:`~cnnlib.nn.CrossEntropyLoss`) is computed in float32;
    3. the loss gradient is multiplied by the scale (1 without ``scaler``) and
       back-propagated with :func:`half_backward`; the parameter gradients
       are rounded to float16;
    4. the gradients are widened to float32 and divided by the scale; with a
       ``scaler`` the step is skipped on inf/nan and the scale updated
       (:func:`step`), without one the step is always taken;
    5. ``master_weights=False`` stores the updated weights in float16 again
       (no float32 master copy: small updates are lost).

    Returns a dict: "loss" (float, unscaled), "stepped" (bool), "scale"
    (used in this step), "found_inf" (bool).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
    if scaler is not None and not isinstance(scaler, LossScaler):
        raise TypeError(f"scaler must be a LossScaler or None, got {type(scaler).__name__}")
    params = list(model.parameters())
    optimizer.zero_grad()
    if precision == "fp32":
        out = model(x)
        loss = loss_fn(out, target)
        model.backward(loss_fn.backward())
        found_inf = has_inf_or_nan([p.grad for p in params])
        optimizer.step()
        return {"loss": float(loss), "stepped": True, "scale": 1.0, "found_inf": found_inf}

    masters = [p.data for p in params]
    for p in params:
        p.data = round_fp16(p.data)
    try:
        out = half_forward(model, x)
        with np.errstate(over="ignore", invalid="ignore"):
            loss = loss_fn(out.astype(np.float32), target)
            scale = 1.0 if scaler is None else scaler.get_scale()
            half_backward(model, loss_fn.backward() * np.float32(scale))
        for p in params:
            p.grad[...] = round_fp16(p.grad)
    finally:
        for p, m in zip(params, masters):
            p.data = m
    if scaler is None:
        found_inf = has_inf_or_nan([p.grad for p in params])
        optimizer.step()
        stepped = True
    else:
        stepped = step(optimizer, scaler)
        found_inf = not stepped
    if not master_weights:
        for p in params:
            p.data[...] = round_fp16(p.data)
    return {"loss": float(loss), "stepped": stepped, "scale": float(scale),
            "found_inf": bool(found_inf)}


def gradient_underflow(model, loss_fn, x, target, scale=1.0):
    """Compare float16 gradients (at a loss scale) with float32 ones, same weights.

    Runs one float32 backward and one emulated float16 backward with the loss
    multiplied by ``scale``, and unscales the float16 gradients.  Returns a
    dict over all parameter gradient entries: "lost" (fraction non-zero in
    float32 but zero in float16), "overflow" (fraction inf/nan in float16),
    "relative_error" (||g16 - g32|| / ||g32|| over the finite entries) and
    "activation_grads" (the float32 gradients between layers, concatenated,
    for histograms).  The model's gradients are left zeroed.
    """
    scale = _check_scale(scale, "scale")
    params = list(model.parameters())
    model.zero_grad()
    out = model(x)
    loss_fn(out, target)
    g = loss_fn.backward()
    acts = [g.ravel()]
    for layer in reversed(_layers(model)):
        g = layer.backward(g)
        acts.append(np.asarray(g).ravel())
    g32 = np.concatenate([p.grad.ravel() for p in params]).astype(np.float64)

    masters = [p.data for p in params]
    model.zero_grad()
    for p in params:
        p.data = round_fp16(p.data)
    try:
        out = half_forward(model, x)
        with np.errstate(over="ignore", invalid="ignore"):
            loss_fn(out.astype(np.float32), target)
            half_backward(model, loss_fn.backward() * np.float32(scale))
    finally:
        for p, m in zip(params, masters):
            p.data = m
    with np.errstate(over="ignore", invalid="ignore"):
        g16 = np.concatenate([round_fp16(p.grad).ravel() for p in params]).astype(np.float64)
    g16 = g16 / scale
    model.zero_grad()
    finite = np.isfinite(g16)
    n = g32.size
    err = np.linalg.norm((g16 - g32)[finite]) / max(np.linalg.norm(g32[finite]), 1e-300)
    return {"lost": float(np.sum((g32 != 0) & (g16 == 0)) / n),
            "overflow": float(np.sum(~finite) / n),
            "relative_error": float(err),
            "activation_grads": np.concatenate(acts[:-1])}


# ----------------------------------------------------------------------------
# A small experiment
# ----------------------------------------------------------------------------

def mlp(sizes, activation="tanh", weight_scale=1.0, rng=None):
    """A Sequential MLP ``Linear, act, Linear, act, ..., Linear`` (float32).

    sizes: [in, hidden..., out]; activation "sigmoid", "tanh" or "relu".
    The weights start as ``torch.nn.Linear``'s times ``weight_scale`` (a
    small scale makes the gradients shrink layer by layer towards the input).
    Used by the chapter's underflow experiment.
    """
    weight_scale = _check_scale(weight_scale, "weight_scale")
    from ..nn.layers import Linear, ReLU, Sigmoid, Tanh

    acts = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}
    if activation not in acts:
        raise ValueError(f"activation must be 'sigmoid', 'tanh' or 'relu', got {activation!r}")
    sizes = list(sizes)
    if len(sizes) < 2 or not all(_is_int(s) and s > 0 for s in sizes):
        raise ValueError(f"sizes must list at least two positive ints, got {sizes!r}")
    gen = get_rng(rng)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(a, b, rng=gen))
        layers[-1].weight.data *= np.float32(weight_scale)
        if i < len(sizes) - 2:
            layers.append(acts[activation]())
    return Sequential(*layers)


def train_mixed_precision(model, images, labels, steps, batch_size=64, lr=0.1, *,
                          precision="fp16", scaler=None, master_weights=True, optimizer="sgd",
                          momentum=0.0, seed=0):
    """Train ``model`` for ``steps`` SGD steps with :func:`mixed_precision_step`.

    images: (N, ...) float32 inputs; labels: (N,) ints.  Batches are drawn
    without replacement from a generator seeded with ``seed`` (reshuffled each
    epoch).  ``optimizer``: "sgd" (with ``momentum``) or "adam" (betas
    0.9, 0.999).  Returns a dict of (steps,) arrays: "loss", "scale",
    "stepped".
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.dtype != np.float32:
        raise TypeError(f"images must be float32, got {images.dtype}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must have shape {images.shape[:1]}, got {labels.shape}")
    if not _is_int(steps) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if not _is_int(batch_size) or not 1 <= batch_size <= len(images):
        raise ValueError(f"batch_size must be an int in [1, {len(images)}], got {batch_size!r}")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    gen = np.random.default_rng(seed)
    opt = (SGD(model.parameters(), lr=lr, momentum=momentum) if optimizer == "sgd"
           else Adam(model.parameters(), lr=lr))
    loss_fn = CrossEntropyLoss()
    history = {"loss": [], "scale": [], "stepped": []}
    order, pos = gen.permutation(len(images)), 0
    for _ in range(int(steps)):
        if pos + batch_size > len(images):
            order, pos = gen.permutation(len(images)), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        r = mixed_precision_step(model, loss_fn, images[idx], labels[idx], opt, scaler,
                                 precision=precision, master_weights=master_weights)
        for k in history:
            history[k].append(r[k])
    return {k: np.array(v) for k, v in history.items()}

"""Gradient checkpointing: trade recomputation for activation memory.

A plain :class:`~cnnlib.nn.Sequential` keeps, after ``forward``, every array
its layers saved for ``backward``.  :class:`Checkpointed` splits the chain into
``k`` contiguous segments, keeps only the input of each segment (the
*boundaries*) and, in ``backward``, runs each segment's forward again, from the
last segment to the first, just before back-propagating through it
(Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost").  With
``n`` layers that each save an array of size ``a``, the peak is about
``k * a + (n / k) * a``, smallest at ``k = sqrt(n)``, for the price of one
extra forward pass.

"Activation bytes held" (:func:`held_activation_bytes`) is defined precisely
as the bytes of the distinct memory buffers reachable from the saved
values of a module and of all its sub-modules (arrays inside tuples, lists
and dicts included); a view counts as the whole buffer it keeps alive, and a
buffer reached twice counts once.  Parameters, their gradients, the gradient
flowing through ``backward`` and temporaries inside kernels are not counted.

Recomputation must see the same random numbers as the first forward: the
wrapper saves the ``bit_generator`` state of every ``np.random.Generator``
held as an attribute by a module of the segment (``self._rng`` in
:class:`~cnnlib.nn.StochasticPool2d` and in dropout layers), rewinds them
before recomputing and puts them back afterwards, so the stream of draws is
exactly that of the plain model.  Buffers (batch-norm running statistics) are
restored after the recomputation, so they move once per step, not twice.
See the memory chapter (Part III).
"""

import time

import numpy as np

from .._validate import _is_int
from ..nn.module import Module, Sequential

__all__ = ["Checkpointed", "held_activation_bytes", "segment_bounds", "optimal_segments",
           "predicted_peak_bytes", "measure_memory_and_time", "checkpoint_sweep"]


# ----------------------------------------------------------------------------
# Counting what a model holds
# ----------------------------------------------------------------------------

def _root(array):
    while isinstance(array.base, np.ndarray):
        array = array.base
    return array


def _collect_arrays(value, found):
    if isinstance(value, np.ndarray):
        root = _root(value)
        found[id(root)] = root
    elif isinstance(value, (tuple, list)):
        for v in value:
            _collect_arrays(v, found)
    elif isinstance(value, dict):
        for v in value.values():
            _collect_arrays(v, found)


def held_activation_bytes(*modules):
    """Bytes of activation memory the modules keep for ``backward``.

    Walks the saved values (``Module.saved``) of each module and each of its descendants,
    collects every ndarray (inside tuples, lists and dicts too), replaces a
    view by the buffer it keeps alive and counts each buffer once.  Several
    modules may be given; a buffer they share counts once.  Returns an int.
    See the memory chapter (Part III).
    """
    found = {}
    for module in modules:
        if not isinstance(module, Module):
            raise TypeError(f"modules must be Modules, got {type(module).__name__}")
        for _, m in module.named_modules():
            _collect_arrays(m.saved(required=False), found)
    return int(sum(a.nbytes for a in found.values()))


def _clear_saved(module):
    for _, m in module.named_modules():
        m.restore_saved(None)


# ----------------------------------------------------------------------------
# Random state and buffers
# ----------------------------------------------------------------------------

def _generators(modules):
    """Every np.random.Generator held as an attribute by the modules (or their children)."""
    gens = {}
    for module in modules:
        for _, m in module.named_modules():
            for value in vars(m).values():
                if isinstance(value, np.random.Generator):
                    gens[id(value)] = value
    return list(gens.values())


def _rng_states(generators):
    return [g.bit_generator.state for g in generators]


def _set_rng_states(generators, states):
    for g, s in zip(generators, states):
        g.bit_generator.state = s


def _buffer_snapshot(modules):
    return [(m, name, np.array(buf, copy=True)) for module in modules
            for _, m in module.named_modules() for name, buf in m.named_buffers(recurse=False)
            if buf is not None]


def _restore_buffers(snapshot):
    for m, name, value in snapshot:
        getattr(m, name)[...] = value


# ----------------------------------------------------------------------------
# Segments
# ----------------------------------------------------------------------------

def segment_bounds(n_layers, segments):
    """Split ``n_layers`` layers into ``segments`` contiguous, nearly equal runs.

    Returns a list of ``segments + 1`` ints ``[0, b_1, ..., n_layers]``: segment
    ``i`` holds layers ``b_i .. b_{i+1} - 1``; the first ``n_layers % segments``
    segments get one layer more (like ``np.array_split``).
    See the memory chapter (Part III).
    """
    if not _is_int(n_layers) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
    if not _is_int(segments) or not 1 <= segments <= n_layers:
        raise ValueError(f"segments must be an int in [1, {n_layers}], got {segments!r}")
    q, r = divmod(int(n_layers), int(segments))
    sizes = [q + (i < r) for i in range(int(segments))]
    return [0] + list(np.cumsum(sizes).astype(int).tolist())


def optimal_segments(n_layers):
    """Chen et al.'s rule: ``round(sqrt(n_layers))`` segments (at least 1)."""
    if not _is_int(n_layers) or n_layers < 1:
        raise ValueError(f"n_layers must be a positive int, got {n_layers!r}")
    return max(1, int(round(np.sqrt(n_layers))))


def predicted_peak_bytes(layer_bytes, segments):
    """The peak the model of the chapter predicts for given per-layer sizes.

    ``layer_bytes[j]`` is what layer ``j`` saves for backward, assumed to be
    its input (so the input of segment ``i`` costs ``layer_bytes[b_i]``).
    While segment ``i`` is recomputed, the inputs of segments ``0 .. i - 1``
    and everything segment ``i`` saves are held; the peak is the largest of
    these, usually at the last segment.  For ``n`` equal sizes ``a``:
    ``(k - 1) * a + (n / k) * a``.  Returns an int.
    """
    sizes = np.asarray(layer_bytes, dtype=np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or np.any(sizes < 0):
        raise ValueError(f"layer_bytes must be a non-empty 1-d list of sizes >= 0, got {layer_bytes!r}")
    b = segment_bounds(sizes.size, segments)
    held = [int(sum(sizes[s] for s in b[:i])) + int(sizes[b[i]:b[i + 1]].sum())
            for i in range(len(b) - 1)]
    return max(held)


# ----------------------------------------------------------------------------
# The wrapper
# ----------------------------------------------------------------------------

class Checkpointed(Module):
    """A :class:`~cnnlib.nn.Sequential` run with gradient checkpointing.

    ``Checkpointed(model, segments)`` splits ``model``'s children into
    ``segments`` contiguous runs (:func:`segment_bounds`).  ``forward(x)``
    computes exactly what ``model(x)`` computes but keeps only the input of
    each segment; ``backward(grad_output)`` recomputes each segment (with its
    random generators rewound) and back-propagates through it, adding the same
    parameter gradients as ``model.backward`` would and returning the gradient
    of ``x``.  The parameters are ``model``'s own (shared, not copied).

    Attributes after a step: ``peak_activation_bytes`` (the largest
    :func:`held_activation_bytes` seen during the last forward and backward)
    and ``recomputed_layers`` (how many layer forwards the backward re-ran).
    See the memory chapter (Part III).
    """

    def __init__(self, model, segments):
        super().__init__()
        if not isinstance(model, Sequential):
            raise TypeError(f"model must be a cnnlib.nn.Sequential, got {type(model).__name__}")
        if len(model) == 0:
            raise ValueError("model must hold at least one layer")
        self.bounds = segment_bounds(len(model), segments)
        self.segments = int(segments)
        self.model = model
        self.peak_activation_bytes = 0
        self.recomputed_layers = 0

    def _segment(self, i):
        return list(self.model)[self.bounds[i]:self.bounds[i + 1]]

    def _note_peak(self, *extra):
        held = held_activation_bytes(self, *extra)
        self.peak_activation_bytes = max(self.peak_activation_bytes, held)

    def forward(self, x):
        boundaries, rng_states = [], []
        _clear_saved(self.model)  # what an earlier plain run left behind
        self.save_for_backward(boundaries, rng_states)
        self.peak_activation_bytes = 0
        for i in range(self.segments):
            layers = self._segment(i)
            gens = _generators(layers)
            boundaries.append(x)
            rng_states.append((gens, _rng_states(gens)))
            for layer in layers:
                x = layer(x)
            # the layers saved their inputs; count them before letting them go
            self._note_peak()
            for layer in layers:
                _clear_saved(layer)
        self._note_peak()
        return x

    def backward(self, grad_output):
        boundaries, rng_states = self.saved()
        if boundaries is None or any(b is None for b in boundaries):
            raise RuntimeError("Checkpointed.backward needs a new forward: "
                               "the boundaries of the last one were released")
        self.recomputed_layers = 0
        grad = grad_output
        for i in reversed(range(self.segments)):
            layers = self._segment(i)
            gens, states = rng_states[i]
            now = _rng_states(gens)
            buffers = _buffer_snapshot(layers)
            _set_rng_states(gens, states)
            x = boundaries[i]
            for layer in layers:
                x = layer(x)
            self.recomputed_layers += len(layers)
            _set_rng_states(gens, now)
            _restore_buffers(buffers)
            self._note_peak()
            for layer in reversed(layers):
                grad = layer.backward(grad)
            for layer in layers:
                _clear_saved(layer)
            boundaries[i] = None
        return grad

    def extra_repr(self):
        return f"segments={self.segments}, bounds={self.bounds}"


# ----------------------------------------------------------------------------
# Measurements for the chapter
# ----------------------------------------------------------------------------

def _check_segments_arg(segments):
    if segments is not None and (not _is_int(segments) or segments < 1):
        raise ValueError(f"segments must be None or a positive int, got {segments!r}")


def measure_memory_and_time(model, x, segments=None, grad_output=None, repeats=3):
    """Peak activation memory and time of one forward + backward.

    ``model``: a :class:`~cnnlib.nn.Sequential`; ``segments=None`` runs it
    plainly (its peak is what it holds after ``forward``: a plain model frees
    nothing before the end of ``backward``), an int wraps it in
    :class:`Checkpointed`.  ``x``: the input batch; ``grad_output``: the
    upstream gradient (default: ones, the gradient of ``sum(model(x))``).
    Parameter gradients are zeroed first and left as computed.
    Returns a dict: "segments", "peak_bytes" (int), "seconds" (the fastest
    of ``repeats`` timed forward + backward passes: on a shared machine the
    minimum is the least noisy estimate), "recomputed_layers".
    See the memory chapter (Part III).
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a cnnlib.nn.Sequential, got {type(model).__name__}")
    _check_segments_arg(segments)
    if not _is_int(repeats) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    net = model if segments is None else Checkpointed(model, segments)
    times, peak = [], 0
    for _ in range(int(repeats)):
        model.zero_grad()
        start = time.perf_counter()
        y = net(x)
        if segments is None:
            peak = held_activation_bytes(net)
        g = np.ones_like(y) if grad_output is None else grad_output
        net.backward(g)
        times.append(time.perf_counter() - start)
        if segments is not None:
            peak = net.peak_activation_bytes
    return {"segments": segments, "peak_bytes": int(peak), "seconds": float(np.min(times)),
            "recomputed_layers": 0 if segments is None else net.recomputed_layers}


def checkpoint_sweep(model, x, segments, grad_output=None, repeats=3):
    """:func:`measure_memory_and_time` for the plain model and each ``k`` in ``segments``.

    Returns a dict of arrays: "segments" (K,), "peak_bytes" (K,), "seconds"
    (K,), and the plain model's "plain_peak_bytes", "plain_seconds" and
    "layer_bytes" (what each layer saves, measured on the plain run), so
    the chapter can draw the measurement beside :func:`predicted_peak_bytes`.
    """
    segments = list(segments)
    if not segments:
        raise ValueError("segments must be a non-empty list of ints")
    for k in segments:
        _check_segments_arg(k)
    plain = measure_memory_and_time(model, x, None, grad_output, repeats)
    model(x)
    layer_bytes = [held_activation_bytes(layer) for layer in model]
    rows = [measure_memory_and_time(model, x, k, grad_output, repeats) for k in segments]
    return {"segments": np.array(segments),
            "peak_bytes": np.array([r["peak_bytes"] for r in rows]),
            "seconds": np.array([r["seconds"] for r in rows]),
            "recomputed_layers": np.array([r["recomputed_layers"] for r in rows]),
            "plain_peak_bytes": plain["peak_bytes"], "plain_seconds": plain["seconds"],
            "layer_bytes": np.array(layer_bytes)}

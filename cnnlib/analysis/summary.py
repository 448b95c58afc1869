"""A table of a model's layers: output shapes, parameters and multiply-accumulates.

:func:`summary` runs one forward pass on zeros and records, for every layer,
the shape of what it returned; convolutions and linear layers also get their
multiply-accumulate count (MACs; FLOPs are about twice that). Use it to check
counts such as LeNet-5's 61,706 parameters or two stacked 3x3 convolutions'
3 * 9 C^2 = 27 C^2 weights against one 7x7's 49 C^2. See the chapter on
classic architectures (Part II).
"""

import math
from typing import NamedTuple

import numpy as np

from .._validate import _is_int
from ..nn.layers import Conv2d, Linear
from ..nn.module import Module

__all__ = ["LayerRow", "Summary", "count_parameters", "summary", "format_summary"]


class LayerRow(NamedTuple):
    """One row of a summary: the layer's dotted name, class name, output shape
    (one example, no batch dimension; ``None`` if the forward did not call it),
    its own parameter count and its MACs per example (0 except for
    ``Conv2d`` / ``Linear``)."""
    name: str
    type: str
    output_shape: tuple
    parameters: int
    macs: int


class Summary(NamedTuple):
    """The result of :func:`summary`: rows in call order and the totals."""
    rows: list
    input_shape: tuple
    output_shape: tuple
    total_parameters: int
    total_macs: int

    def __str__(self):
        return format_summary(self)


def _check_model(model):
    if not isinstance(model, Module):
        raise TypeError(f"model must be a cnnlib.nn.Module, got {type(model).__name__}")


def count_parameters(model):
    """Total number of learnable scalars in ``model`` (each shared parameter once).

    The sum of ``p.size`` over ``model.parameters()``; returns an int. See the
    chapter on classic architectures (Part II).
    """
    _check_model(model)
    return int(sum(p.size for p in model.parameters()))


def _macs(module, output_shape):
    """Multiply-accumulates per example of a Conv2d or Linear producing ``output_shape``,
    or of a module that counts its own (an ``own_macs(output_shape)`` method, for work
    its sub-modules do not do, such as the batched products of
    :class:`cnnlib.nn.NonLocal2d`)."""
    own_macs = getattr(module, "own_macs", None)
    if callable(own_macs):
        return int(own_macs(output_shape))
    if isinstance(module, Conv2d):
        c_per_group, kh, kw = module.weight.shape[1:]
        return math.prod(output_shape) * c_per_group * kh * kw
    if isinstance(module, Linear):
        return math.prod(output_shape) * module.in_features
    return 0


def _model_dtype(model):
    for p in model.parameters():
        return p.dtype
    return np.dtype(np.float32)


def summary(model, input_shape):
    """Layer-by-layer table of ``model`` for inputs of one example's shape ``input_shape``.

    Runs ``model`` in evaluation mode on zeros of shape ``(1, *input_shape)``
    (the dtype of its first parameter) and restores its modes and saved
    activations afterwards, so a summary has no side effects. Rows are the
    modules that own parameters or have no children (leaves), in the order
    they first ran; the parameters of a row are the module's own, so the rows
    add up to ``total_parameters``. MACs of a convolution:
    prod(output shape) * C_in/groups * kH * kW; of a linear layer:
    prod(output shape) * in_features; a module with an ``own_macs(output_shape)``
    method (a container doing work of its own, like the two batched matrix
    products of :class:`cnnlib.nn.NonLocal2d`) gets a row with that count.
    Element-wise work (activations, the gates' products) is not counted.

    Inputs:
    - model: a ``cnnlib.nn.Module`` (``Sequential``, a block, any container)
    - input_shape: tuple of positive ints, e.g. (1, 28, 28) for LeNet-5

    Returns a :class:`Summary`; ``format_summary`` (or ``str``) prints it.
    See the chapter on classic architectures (Part II).
    """
    _check_model(model)
    if not isinstance(input_shape, (tuple, list)) or not input_shape or not all(
            _is_int(s) and s > 0 for s in input_shape):
        raise ValueError(f"input_shape must be a non-empty tuple of positive ints "
                         f"(one example, no batch dimension), got {input_shape!r}")
    modules, seen = [], set()
    for name, m in model.named_modules():
        if name and id(m) not in seen:  # a shared module is listed once
            seen.add(id(m))
            modules.append((name, m))
    shapes, order = {}, {}
    state = [(m, m.training, m.saved(required=False), "forward" in m.__dict__)
             for _, m in model.named_modules()]

    def recorder(module, forward):
        def forward_and_record(*args, **kwargs):
            out = forward(*args, **kwargs)
            shapes[id(module)] = tuple(np.shape(out))[1:]
            order.setdefault(id(module), len(order))
            return out
        return forward_and_record

    try:
        model.eval()
        for _, m in modules:
            object.__setattr__(m, "forward", recorder(m, m.forward))
        out = model(np.zeros((1, *input_shape), dtype=_model_dtype(model)))
    finally:
        for m, training, saved, own_forward in state:
            if not own_forward:
                m.__dict__.pop("forward", None)
            object.__setattr__(m, "training", training)
            m.restore_saved(saved)

    out_shape = tuple(np.shape(out))[1:]
    rows = []
    for name, m in modules:
        own = sum(p.size for p in m.parameters(recurse=False))
        shape = shapes.get(id(m))
        macs = _macs(m, shape) if shape is not None else 0
        if next(m.children(), None) is not None and not own and not macs:
            continue  # a container: its children have the rows
        row = LayerRow(name, type(m).__name__, shape, int(own), int(macs))
        rows.append((order.get(id(m), len(order)), row))
    rows = [row for _, row in sorted(rows, key=lambda item: item[0])]
    own_root = sum(p.size for p in model.parameters(recurse=False))
    if own_root:
        macs = _macs(model, out_shape)  # the model may itself be a layer
        rows.insert(0, LayerRow("", type(model).__name__, out_shape, int(own_root), int(macs)))
    return Summary(rows, tuple(int(s) for s in input_shape), out_shape,
                   count_parameters(model), int(sum(r.macs for r in rows)))

def format_summary(result):
    """A plain-text table of a :class:`Summary`, with totals underneath.

    One line per row (name, type, output shape, parameters, MACs, numbers
    right-aligned with thousands separators); returns a str. See the chapter
    on classic architectures (Part II).
    """
    if not isinstance(result, Summary):
        raise TypeError(f"result must be a Summary (from cnnlib.analysis.summary.summary), "
                        f"got {type(result).__name__}")
    header = ("Layer", "Type", "Output shape", "Params", "MACs")
    body = [(r.name or "(root)", r.type, "-" if r.output_shape is None else str(r.output_shape),
             f"{r.parameters:,}", f"{r.macs:,}") for r in result.rows]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(5)]

    def line(cells):
        left = [c.ljust(w) for c, w in zip(cells[:3], widths)]
        right = [c.rjust(w) for c, w in zip(cells[3:], widths[3:])]
        return "  ".join(left + right).rstrip()

    rule = "-" * len(line(header))
    return "\n".join([
        line(header), rule, *[line(row) for row in body], rule,
        f"Input shape: {result.input_shape}  Output shape: {result.output_shape}",
        f"Total parameters: {result.total_parameters:,}",
        f"Total MACs: {result.total_macs:,}",
    ])

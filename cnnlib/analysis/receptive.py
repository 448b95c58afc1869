"""Geometry of convolution: which inputs an output sees.

One layer (the convolution-arithmetic explorer): :func:`conv_arithmetic`
gives the output size and, through :func:`conv_input_taps`, the input
positions that feed one output.

A stack of layers (the receptive-field and dilation widgets) is a sequence of
``(kernel_size, stride)``, ``(kernel_size, stride, dilation)`` or
``(kernel_size, stride, dilation, padding)`` tuples of ints, the same along
both axes; padding may also be ``"valid"``, ``"same"`` or ``"full"``.
:func:`receptive_field` is the closed form of Araujo et al. (2019);
:func:`receptive_field_bruteforce` back-projects one output through the
stack, index set by index set, and :func:`stack_coverage` counts the paths,
which shows the holes ("gridding") of stacked dilated layers.

See the chapter on convolution (Part II) and the receptive-field widget of Part I.
"""

from collections import namedtuple
from dataclasses import dataclass

import numpy as np

from .._validate import _is_int, pair
from ..functional import conv_output_size, padding_amounts, resolve_padding

__all__ = ["ReceptiveField", "effective_kernel_size", "dilated_taps", "ConvArithmetic", "conv_arithmetic",
           "conv_input_taps", "check_layers", "receptive_field", "layer_lengths",
           "receptive_field_bruteforce", "receptive_field_region", "stack_coverage"]

ReceptiveField = namedtuple("ReceptiveField", "size stride start")
ReceptiveField.__doc__ = """Closed-form receptive field of a stack.

size: r, inputs spanned by one output; stride: S, input step between
neighbouring outputs; start: input index of the first input seen by output 0
(negative when it lies in the padding).  Output i spans [start + i*S, start + i*S + r).
"""

_Layer = namedtuple("_Layer", "k s d before after")


def _positive(value, name):
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(value)


def effective_kernel_size(kernel_size, dilation=1):
    """Span of a dilated kernel: ``k + (k - 1)(d - 1) = d(k - 1) + 1`` input positions.

    Inputs: kernel_size k and dilation d, positive ints.  Returns an int.
    See the chapter on convolution (Part II).
    """
    k, d = _positive(kernel_size, "kernel_size"), _positive(dilation, "dilation")
    return k + (k - 1) * (d - 1)


def dilated_taps(kernel_size, dilation=1):
    """Offsets of the taps of a dilated kernel from its top-left tap: ``(p*dH, q*dW)``.

    Inputs: kernel_size and dilation, int or pair.
    Returns an int array (kH*kW, 2) of (row, col) offsets, tap (p, q) in row ``p*kW + q``.
    See the chapter on convolution (Part II).
    """
    (kh, kw), (dh, dw) = pair(kernel_size, "kernel_size", 1), pair(dilation, "dilation", 1)
    p, q = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    return np.stack([p.ravel() * dh, q.ravel() * dw], axis=1)


# ----------------------------------------------------------------------------
# One layer: the convolution-arithmetic explorer
# ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvArithmetic:
    """Sizes of one convolution, per axis (height, width), and the inputs feeding each output.

    ``padding`` is resolved to ((top, bottom), (left, right));
    ``output_size[a] = floor((input + before + after - d(k-1) - 1) / s) + 1``.
    """

    input_size: tuple
    kernel_size: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    output_size: tuple

    @property
    def effective_kernel_size(self):
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))

    def input_taps(self, output_index):
        """Input (row, col) of every tap of output (i, j), and whether it falls in the padding.

        Tap (p, q) reads ``(i*sH - top + p*dH, j*sW - left + q*dW)`` in unpadded
        coordinates; rows or columns outside [0, size) are padding zeros.
        Returns (taps int (kH*kW, 2), in_padding bool (kH*kW,)), tap (p, q) in row ``p*kW + q``.
        """
        i, j = pair(output_index, "output_index", 0)
        if i >= self.output_size[0] or j >= self.output_size[1]:
            raise ValueError(f"output_index must lie in the output of size {self.output_size}, "
                             f"got {output_index!r}")
        first = np.array([i * self.stride[0] - self.padding[0][0], j * self.stride[1] - self.padding[1][0]])
        taps = first + dilated_taps(self.kernel_size, self.dilation)
        in_padding = ((taps < 0) | (taps >= np.array(self.input_size))).any(axis=1)
        return taps, in_padding


def conv_arithmetic(input_size, kernel_size, stride=1, padding=0, dilation=1):
    """Output size of a convolution and the geometry to find which inputs feed an output.

    ``H_out = floor((H + pad_top + pad_bottom - dH(kH - 1) - 1) / sH) + 1``, and likewise for W.

    Inputs: input_size, kernel_size, stride, dilation (int or pair); padding
    int, pair, ``"valid"``, ``"same"`` (stride 1) or ``"full"``, as in ``conv2d``.
    Returns a :class:`ConvArithmetic` (``.output_size``, ``.input_taps((i, j))``).
    See the chapter on convolution (Part II).
    """
    size = pair(input_size, "input_size", 1)
    kernel = pair(kernel_size, "kernel_size", 1)
    stride = pair(stride, "stride", 1)
    dilation = pair(dilation, "dilation", 1)
    pads = resolve_padding(padding, stride, dilation, kernel)
    out = tuple(conv_output_size(n, k, s, p, d)
                for n, k, s, p, d in zip(size, kernel, stride, pads, dilation))
    if min(out) < 1:
        raise ValueError(f"kernel_size {kernel} with dilation {dilation} is larger than the padded "
                         f"input (input_size {size}, padding {pads})")
    return ConvArithmetic(size, kernel, stride, pads, dilation, out)


def conv_input_taps(output_index, input_size, kernel_size, stride=1, padding=0, dilation=1):
    """The input positions (row, col) that feed output (i, j) of a convolution.

    Tap (p, q) of output (i, j) reads input ``(i*sH - top + p*dH, j*sW - left + q*dW)``;
    positions outside the input (negative or >= its size) are padding.

    Inputs: output_index (i, j); the rest as in :func:`conv_arithmetic`.
    Returns (taps int (kH*kW, 2), in_padding bool (kH*kW,)), tap (p, q) in row ``p*kW + q``.
    See the chapter on convolution (Part II).
    """
    return conv_arithmetic(input_size, kernel_size, stride, padding, dilation).input_taps(output_index)


# ----------------------------------------------------------------------------
# Stacks of layers: receptive fields
# ----------------------------------------------------------------------------

def check_layers(layers):
    """Validate a stack of ``(kernel_size, stride[, dilation[, padding]])`` tuples.

    Returns one record per layer with fields ``k``, ``s``, ``d`` and the
    padding ``before``/``after``; raises ``TypeError``/``ValueError`` naming
    the bad entry.  The receptive-field functions and widgets share it.
    """
    if not isinstance(layers, (list, tuple)):
        raise TypeError("layers must be a list or tuple of (kernel_size, stride[, dilation[, padding]]) "
                        f"tuples, got {type(layers).__name__}")
    out = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, (list, tuple)) or not 2 <= len(layer) <= 4:
            raise ValueError(f"layers[{i}] must be (kernel_size, stride[, dilation[, padding]]), "
                             f"got {layer!r}")
        k, s, d, p = tuple(layer) + (None, None, 1, 0)[len(layer):]
        k = _positive(k, f"layers[{i}] kernel_size")
        s = _positive(s, f"layers[{i}] stride")
        d = _positive(d, f"layers[{i}] dilation")
        try:
            before, after = padding_amounts(p, k, d)
        except ValueError as e:
            raise ValueError(f"layers[{i}] {e}") from None
        out.append(_Layer(k, s, d, before, after))
    return out


def receptive_field(layers):
    """Closed-form receptive field of a stack of convolutions (Araujo et al., 2019).

    ``r = 1 + sum_l (k_l' - 1) * prod_{i<l} s_i`` with ``k_l' = d_l(k_l - 1) + 1``,
    ``S = prod_l s_l`` and ``start = -sum_l pad_l * prod_{i<l} s_i`` (pad_l: the
    layer's top/left padding).

    Inputs: layers, a sequence of (k, s), (k, s, d) or (k, s, d, padding) tuples.
    Returns ``ReceptiveField(size=r, stride=S, start=start)``; output i spans inputs
    ``[start + i*S, start + i*S + r)`` before clipping to the input.
    See the chapter on convolution (Part II) and Part I's receptive-field widget.
    """
    size, stride, start = 1, 1, 0
    for layer in check_layers(layers):
        size += layer.d * (layer.k - 1) * stride
        start -= layer.before * stride
        stride *= layer.s
    return ReceptiveField(size, stride, start)


def layer_lengths(layers, input_size):
    """Length of the input and of every layer's output along one axis."""
    lengths = [input_size]
    for i, layer in enumerate(layers):
        n = conv_output_size(lengths[-1], layer.k, layer.s, (layer.before, layer.after), layer.d)
        if n < 1:
            raise ValueError(f"input_size {input_size} is too small for layers: layer {i} would have "
                             f"no output (its input has length {lengths[-1]})")
        lengths.append(n)
    return lengths


def _back_project(layers, index, lengths=None):
    """Path counts from output ``index`` back to the input, along one axis.

    Returns (offset, counts): ``counts[t]`` paths reach input ``offset + t``.
    With ``lengths``, positions in any layer's padding are dropped (zeros
    lead nowhere); without, every tap is followed.
    """
    lo, counts = index, np.ones(1, dtype=np.int64)
    for l in reversed(range(len(layers))):
        k, s, d, before, _ = layers[l]
        if counts.size == 0:
            break
        span = (counts.size - 1) * s + 1
        new = np.zeros(span + (k - 1) * d, dtype=np.int64)
        for t in range(k):
            new[t * d:t * d + span:s] += counts
        lo, counts = lo * s - before, new
        if lengths is not None:
            a, b = max(0, -lo), min(counts.size, lengths[l] - lo)
            counts, lo = counts[a:max(a, b)], lo + a
    return lo, counts


def _check_index(index, name, limit=None):
    if not _is_int(index) or index < 0 or (limit is not None and index >= limit):
        where = "a non-negative int" if limit is None else f"an int in [0, {limit})"
        raise ValueError(f"{name} must be {where}, got {index!r}")
    return int(index)


def receptive_field_bruteforce(layers, output_index=0, input_size=None):
    """Input positions one output depends on, found by back-projecting index sets layer by layer.

    Output i of a layer reads positions ``i*s - pad + t*d`` (t < k) of its
    input; repeating this from the last layer to the first gives the set.
    Without ``input_size`` every tap is followed (the closed form's view:
    ``min = start + i*S``, ``max - min + 1 = r``); with it, taps in any
    layer's padding are dropped.

    Inputs: layers as for :func:`receptive_field`; output_index (int >= 0);
    input_size (int or None), one axis.
    Returns a sorted int array of input positions (possibly with holes).
    See the chapter on convolution (Part II).
    """
    checked = check_layers(layers)
    lengths = None
    if input_size is not None:
        lengths = layer_lengths(checked, _positive(input_size, "input_size"))
    index = _check_index(output_index, "output_index", None if lengths is None else lengths[-1])
    lo, counts = _back_project(checked, index, lengths)
    return lo + np.flatnonzero(counts)


def _axes(output_index, input_size, size_name="input_size"):
    """Normalise (int, int) or (pair, pair) to per-axis lists; report whether 2-D."""
    two_d = isinstance(output_index, (tuple, list)) or isinstance(input_size, (tuple, list))
    if not two_d:
        return [output_index], [_positive(input_size, size_name)], False
    return list(pair(output_index, "output_index", 0)), list(pair(input_size, size_name, 1)), True


def receptive_field_region(layers, output_index, input_size):
    """The input interval one output unit sees, per axis, inside the input (for drawing).

    The smallest ``[start, stop)`` holding every input the unit depends on.
    It is the closed-form ``[start + i*S, start + i*S + r)`` clipped to
    ``[0, input_size)``, except where the closed form counts inputs that reach
    the unit only through padding (a later layer padding over inputs that an
    earlier stride dropped, or dilated taps in the border): those are left out.

    Inputs: layers as for :func:`receptive_field`; output_index and
    input_size both ints (one axis) or pairs (height, width).
    Returns (start, stop) for ints, ((top, bottom), (left, right)) for pairs;
    (0, 0) on an axis where the unit sees only padding.
    See Part I's receptive-field widget and the chapter on convolution (Part II).
    """
    checked = check_layers(layers)
    indices, sizes, two_d = _axes(output_index, input_size)
    spans = []
    for i, n in zip(indices, sizes):
        lengths = layer_lengths(checked, n)
        lo, counts = _back_project(checked, _check_index(i, "output_index", lengths[-1]), lengths)
        hit = np.flatnonzero(counts)
        spans.append((int(lo + hit[0]), int(lo + hit[-1] + 1)) if hit.size else (0, 0))
    return tuple(spans) if two_d else spans[0]


def stack_coverage(layers, size, output_index=None):
    """How many paths through a stack join one output to each input position.

    Path counts back-projected through the layers (a transposed convolution
    with all-ones kernels); zeros inside the receptive field are inputs the
    unit never sees, the gridding artefact of stacked dilated layers (three
    3 x 3 layers with dilation 2 see only every other input).  In 2-D the
    count is the outer product of the two axes' counts.

    Inputs: layers as for :func:`receptive_field`; size, the input length
    (int) or (H, W); output_index, the output unit (default: the central one,
    ``output_length // 2`` per axis).
    Returns an int64 array of shape (size,) or (H, W).
    See the chapter on convolution (Part II) (dilation widget).
    """
    checked = check_layers(layers)
    if output_index is None:
        _, sizes, two_d = _axes(0, size, "size")
        centre = [layer_lengths(checked, n)[-1] // 2 for n in sizes]
        output_index = tuple(centre) if two_d else centre[0]
    indices, sizes, two_d = _axes(output_index, size, "size")
    axes = []
    for i, n in zip(indices, sizes):
        lengths = layer_lengths(checked, n)
        lo, counts = _back_project(checked, _check_index(i, "output_index", lengths[-1]), lengths)
        full = np.zeros(n, dtype=np.int64)
        full[lo:lo + counts.size] = counts
        axes.append(full)
    return np.outer(*axes) if two_d else axes[0]

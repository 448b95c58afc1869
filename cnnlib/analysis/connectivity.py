"""Parameter counts of dense, locally connected and convolutional layers.

Three ways to map a (C_in, H, W) input to C_out feature maps:

* a *dense* (fully connected) layer joins every output unit to every input
  unit: ``C_in*H*W * C_out*H'*W'`` weights;
* a *locally connected* layer joins each output unit to a k x k window of
  every input channel only (local receptive fields), with its own weights at
  every output position: ``H'*W' * C_out*C_in*k*k`` weights;
* a *convolution* is a locally connected layer whose positions share one set
  of weights (weight sharing): ``C_out*C_in*k*k`` weights, independent of the
  image size.

Local connectivity removes the factor "all inputs" (``H*W -> k*k``), weight
sharing the factor "all output positions" (``H'*W' -> 1``).  For an n-pixel
image mapped to n outputs this is ``n^2 -> n*k^2 -> k^2`` weights.
:func:`compare_connectivity` also counts the multiply-adds (the edges of
the layer's graph), which local connectivity reduces but weight sharing
does not.
See Part I, section "Core ideas" (1.1).
"""

from collections import namedtuple

from .._validate import _is_int, check_bool, pair
from ..ops.conv import conv_output_size, padding_amounts

__all__ = ["LayerCounts", "local_output_size", "dense_params", "locally_connected_params", "conv_params",
           "compare_connectivity"]

LayerCounts = namedtuple("LayerCounts", "weights biases total")
LayerCounts.__doc__ = """Parameter count of one layer: weights, biases and their sum (ints)."""


def _positive(value, name):
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return int(value)


def _shape(shape, name):
    """An int or a tuple of positive ints -> their product."""
    if _is_int(shape):
        return _positive(shape, name)
    if not isinstance(shape, (tuple, list)) or not shape:
        raise TypeError(f"{name} must be a positive int or a non-empty tuple of positive ints, "
                        f"got {shape!r}")
    size = 1
    for i, s in enumerate(shape):
        size *= _positive(s, f"{name}[{i}]")
    return size


def _padding(padding, kernel, dilation):
    """Per axis (before, after) from an int, a pair of ints or a mode string."""
    if isinstance(padding, str) or _is_int(padding):
        modes = [padding, padding]
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        modes = list(padding)
    else:
        raise TypeError(f"padding must be an int, a pair of ints, 'valid', 'same' or 'full', "
                        f"got {padding!r}")
    try:
        return tuple(padding_amounts(p, k, d) for p, k, d in zip(modes, kernel, dilation))
    except ValueError as e:
        raise ValueError(f"padding: {e}") from None


def local_output_size(in_size, kernel_size, stride=1, padding=0, dilation=1):
    """Output (H', W') of a sliding k x k window over an (H, W) input.

    ``H' = floor((H + pad_top + pad_bottom - d(k - 1) - 1) / s) + 1``, the same
    for a locally connected layer and a convolution.  Inputs as in
    :func:`locally_connected_params`.  Returns a pair of ints.
    """
    size = pair(in_size, "in_size", 1)
    kernel = pair(kernel_size, "kernel_size", 1)
    stride = pair(stride, "stride", 1)
    dilation = pair(dilation, "dilation", 1)
    pads = _padding(padding, kernel, dilation)
    out = tuple(conv_output_size(n, k, s, p, d)
                for n, k, s, p, d in zip(size, kernel, stride, pads, dilation))
    if min(out) < 1:
        raise ValueError(f"kernel_size {kernel} with dilation {dilation} does not fit in the "
                         f"padded input (in_size {size}, padding {pads})")
    return out


def dense_params(in_shape, out_shape, bias=True):
    """Parameters of a dense layer from ``in_shape`` to ``out_shape`` (every unit to every unit).

    ``weights = prod(in_shape) * prod(out_shape)``, ``biases = prod(out_shape)``.
    in_shape, out_shape: an int or a tuple such as (C, H, W).
    Returns :class:`LayerCounts`; equals ``cnnlib.nn.Linear(prod(in), prod(out)).num_parameters()``.
    See Part I, section 1.1.
    """
    n_in, n_out = _shape(in_shape, "in_shape"), _shape(out_shape, "out_shape")
    b = n_out if check_bool(bias, "bias") else 0
    return LayerCounts(n_in * n_out, b, n_in * n_out + b)


def locally_connected_params(in_channels, out_channels, in_size, kernel_size, stride=1, padding=0,
                             dilation=1, bias=True):
    """Parameters of a locally connected (unshared) layer: a separate k x k kernel per position.

    Every output unit (o, i, j) has its own weights for the
    ``C_in * kH * kW`` inputs of its window (a tap in the padding still has a
    weight, as in a convolution) and its own bias:
    ``weights = H'*W' * C_out*C_in*kH*kW``, ``biases = C_out*H'*W'``
    (Keras's ``LocallyConnected2D`` layout).

    Inputs: channels (positive ints); in_size (H, W), kernel_size, stride,
    dilation (int or pair); padding int, pair, "valid", "same" or "full".
    Returns :class:`LayerCounts`.  See Part I, section 1.1.
    """
    c_in, c_out = _positive(in_channels, "in_channels"), _positive(out_channels, "out_channels")
    ho, wo = local_output_size(in_size, kernel_size, stride, padding, dilation)
    kh, kw = pair(kernel_size, "kernel_size", 1)
    weights = ho * wo * c_out * c_in * kh * kw
    b = c_out * ho * wo if check_bool(bias, "bias") else 0
    return LayerCounts(weights, b, weights + b)


def conv_params(in_channels, out_channels, kernel_size, bias=True, groups=1):
    """Parameters of a convolution: one kernel shared by every position.

    weights = C_out * (C_in / groups) * kH * kW, biases = C_out:
    independent of the image size.  The same count as
    ``cnnlib.nn.Conv2d(...).num_parameters()``.
    Returns :class:`LayerCounts`.  See Part I, section 1.1.
    """
    c_in = _positive(in_channels, "in_channels")
    c_out = _positive(out_channels, "out_channels")
    g = _positive(groups, "groups")
    if c_in % g or c_out % g:
        raise ValueError(f"groups must divide in_channels ({c_in}) "
                         f"and out_channels ({c_out}), got {g}")
    kh, kw = pair(kernel_size, "kernel_size", 1)
    weights = c_out * (c_in // g) * kh * kw
    b = c_out if check_bool(bias, "bias") else 0
    return LayerCounts(weights, b, weights + b)


def compare_connectivity(in_channels, out_channels, in_size, kernel_size, stride=1, padding=0,
                         dilation=1, bias=True):
    """Dense vs locally connected vs convolutional, for the same input and output shapes.

    The dense layer maps (C_in, H, W) to the (C_out, H', W') output of the
    windowed layers.  Returns a dict: "output_size" (H', W'); for each of
    "dense", "local", "conv", a :class:`LayerCounts`; and "macs", a dict of
    the multiply-adds per example of each (an edge of the layer's graph is one
    multiply-add: dense ``C_in*H*W*C_out*H'*W'``, local and conv both
    ``C_out*H'*W'*C_in*kH*kW``: sharing saves parameters, not arithmetic).
    See Part I, section 1.1.
    """
    out = local_output_size(in_size, kernel_size, stride, padding, dilation)
    c_in, c_out = _positive(in_channels, "in_channels"), _positive(out_channels, "out_channels")
    h, w = pair(in_size, "in_size", 1)
    dense = dense_params((c_in, h, w), (c_out,) + out, bias)
    local = locally_connected_params(c_in, c_out, in_size, kernel_size, stride, padding,
                                     dilation, bias)
    return {
        "output_size": out,
        "dense": dense,
        "local": local,
        "conv": conv_params(c_in, c_out, kernel_size, bias),
        "macs": {"dense": dense.weights, "local": local.weights, "conv": local.weights},
    }

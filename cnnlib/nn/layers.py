"""Layers: :class:`~cnnlib.nn.Module` s around the functional core.

Each layer validates its settings in the constructor, computes ``forward``
with :mod:`cnnlib.functional`, keeps what its backward needs, and in
``backward(grad_output)`` adds parameter gradients into ``param.grad`` and
returns the gradient of the input. ``backward`` uses the most recent
``forward``. Weights start as PyTorch's do (``kaiming_uniform_`` with
``a=sqrt(5)``, i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for
biases), in float32 unless ``dtype=`` says otherwise; ``rng=`` (a Generator
or a seed) makes them reproducible.
"""

import math

import numpy as np

from .. import functional as F
from .._validate import _is_int, check_reduction, pair
from . import init
from .module import Module, Parameter

__all__ = ["Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "ReLU", "Sigmoid",
           "Tanh", "Flatten", "CrossEntropyLoss"]


def _check_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


def _positive_int(value, name):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _pool_settings(kernel_size, stride, padding, dilation=1):
    """Validate pooling settings like torch: stride defaults to kernel_size, padding <= kernel/2."""
    kernel = pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else pair(stride, "stride", 1)
    pads = pair(padding, "padding", 0)
    dilation = pair(dilation, "dilation", 1)
    if pads[0] > kernel[0] // 2 or pads[1] > kernel[1] // 2:
        raise ValueError(f"padding must be at most half of kernel_size {kernel}, got padding={padding!r}")
    return kernel, stride, pads, dilation


# ----------------------------------------------------------------------------
# Layers with parameters
# ----------------------------------------------------------------------------

def _conv_extra_repr(conv, out_channels, bias, **options):
    """The ``repr`` settings of a convolution layer, torch-style: defaults left out.

    ``conv`` supplies in_channels, kernel_size, stride, padding and dilation;
    ``options`` maps further names to ``(value, default)``.
    """
    s = (f"{conv.in_channels}, {out_channels}, kernel_size={conv.kernel_size}, "
         f"stride={conv.stride}")
    if conv.padding != (0, 0):
        s += f", padding={conv.padding!r}"
    if conv.dilation != (1, 1):
        s += f", dilation={conv.dilation}"
    s += "".join(f", {name}={value}" for name, (value, default) in options.items() if value != default)
    return s if bias else s + ", bias=False"


class Conv2d(Module):
    """2-D convolution layer, like ``torch.nn.Conv2d``.

    Inputs:
    - x: input of shape (N, C_in, H, W), same dtype as the layer

    Returns y of shape (N, C_out, H_out, W_out) with
    ``H_out = floor((H + 2*padding - dilation*(kH - 1) - 1) / stride) + 1``.

    Parameters: ``weight`` (C_out, C_in / groups, kH, kW) and ``bias``
    (C_out,) (``None`` when ``bias=False``). ``padding`` is an int, a pair,
    ``"valid"`` or ``"same"`` (stride 1 only). See the convolution chapter.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, *, dtype=np.float32, rng=None):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.groups = _positive_int(groups, "groups")
        if in_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels}")
        if out_channels % groups:
            raise ValueError(f"groups={groups} must divide out_channels={out_channels}")
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.dilation = pair(dilation, "dilation", 1)
        if isinstance(padding, str):
            if padding not in ("valid", "same"):
                raise ValueError(f"padding must be an int, a pair, 'valid' or 'same', got {padding!r}")
            if padding == "same" and self.stride != (1, 1):
                raise ValueError(f"padding='same' requires stride 1, got stride={stride!r}")
            self.padding = padding
        else:
            self.padding = pair(padding, "padding", 0)
        dtype = _check_dtype(dtype)
        shape = (out_channels, in_channels // groups, *self.kernel_size)
        self.weight = Parameter(np.empty(shape, dtype=dtype))
        self.bias = Parameter(np.empty(out_channels, dtype=dtype)) if bias else None
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        """Re-draw weight and bias with PyTorch's default initialisation."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound, rng=rng)

    def _settings(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def forward(self, x):
        bias = None if self.bias is None else self.bias.data
        y = F.conv2d(x, self.weight.data, bias, **self._settings())
        self.save_for_backward(x)
        return y

    def backward(self, grad_output):
        (x,) = self.saved()
        bias = None if self.bias is None else self.bias.data
        dx, dw, db = F.conv2d_backward(grad_output, x, self.weight.data, bias, **self._settings())
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def extra_repr(self):
        return _conv_extra_repr(self, self.out_channels, self.bias is not None, groups=(self.groups, 1))


class Linear(Module):
    """Fully connected layer ``y = x W^T + b``, like ``torch.nn.Linear``.

    Inputs:
    - x: input of shape (N, in_features), same dtype as the layer

    Returns y of shape (N, out_features). Parameters: ``weight``
    (out_features, in_features) and ``bias`` (out_features,) (``None`` when
    ``bias=False``).
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features = _positive_int(in_features, "in_features")
        self.out_features = _positive_int(out_features, "out_features")
        dtype = _check_dtype(dtype)
        self.weight = Parameter(np.empty((out_features, in_features), dtype=dtype))
        self.bias = Parameter(np.empty(out_features, dtype=dtype)) if bias else None
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        """Re-draw weight and bias with PyTorch's default initialisation."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound, rng=rng)

    def forward(self, x):
        bias = None if self.bias is None else self.bias.data
        y = F.linear(x, self.weight.data, bias)
        self.save_for_backward(x)
        return y

    def backward(self, grad_output):
        (x,) = self.saved()
        bias = None if self.bias is None else self.bias.data
        dx, dw, db = F.linear_backward(grad_output, x, self.weight.data, bias)
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db
        return dx

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


# ----------------------------------------------------------------------------
# Layers without parameters
# ----------------------------------------------------------------------------

class MaxPool2d(Module):
    """2-D max pooling, like ``torch.nn.MaxPool2d``.

    Inputs:
    - x: input of shape (N, C, H, W)

    Returns y of shape (N, C, H_out, W_out); ``stride`` defaults to
    ``kernel_size``. See the pooling chapter.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = _pool_settings(
            kernel_size, stride, padding, dilation)
        self.ceil_mode = bool(ceil_mode)

    def _settings(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    dilation=self.dilation, ceil_mode=self.ceil_mode)

    def forward(self, x):
        y, indices = F.max_pool2d(x, **self._settings(), return_indices=True)
        self.save_for_backward(x, indices)  # the winners, so backward need not search again
        return y

    def backward(self, grad_output):
        x, indices = self.saved()
        return F.max_pool2d_backward(grad_output, x, **self._settings(), indices=indices)

    def extra_repr(self):
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """2-D average pooling, like ``torch.nn.AvgPool2d``.

    Inputs:
    - x: input of shape (N, C, H, W)

    Returns y of shape (N, C, H_out, W_out); ``stride`` defaults to
    ``kernel_size``; ``count_include_pad`` decides whether padded zeros count
    in the divisor.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding, _ = _pool_settings(kernel_size, stride, padding)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)

    def _settings(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                    ceil_mode=self.ceil_mode, count_include_pad=self.count_include_pad)

    def forward(self, x):
        y = F.avg_pool2d(x, **self._settings())
        self.save_for_backward(x)
        return y

    def backward(self, grad_output):
        (x,) = self.saved()
        return F.avg_pool2d_backward(grad_output, x, **self._settings())

    def extra_repr(self):
        return ", ".join(f"{k}={v}" for k, v in self._settings().items())


class ReLU(Module):
    """``y = max(x, 0)``, elementwise; any shape in, same shape out."""

    def forward(self, x):
        y = F.relu(x)
        self.save_for_backward(x)
        return y

    def backward(self, grad_output):
        (x,) = self.saved()
        return F.relu_backward(grad_output, x)


class Sigmoid(Module):
    """``y = 1 / (1 + exp(-x))``, elementwise; any shape in, same shape out."""

    def forward(self, x):
        y = F.sigmoid(x)
        self.save_for_backward(x)
        return y

    def backward(self, grad_output):
        (x,) = self.saved()
        return F.sigmoid_backward(grad_output, x)


class Tanh(Module):
    """``y = tanh(x)``, elementwise; any shape in, same shape out."""

    def forward(self, x):
        y = F.tanh(x)
        self.save_for_backward(x)
        return y

    def backward(self, grad_output):
        (x,) = self.saved()
        return F.tanh_backward(grad_output, x)


class Flatten(Module):
    """Merge dimensions ``start_dim..end_dim`` into one, like ``torch.nn.Flatten``.

    With the defaults, x of shape (N, C, H, W) becomes y of shape (N, C*H*W).
    The backward reshapes the gradient back to the input's shape.
    """

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        for name, value in (("start_dim", start_dim), ("end_dim", end_dim)):
            if not _is_int(value):
                raise ValueError(f"{name} must be an int, got {value!r}")
        self.start_dim, self.end_dim = int(start_dim), int(end_dim)

    def forward(self, x):
        x = np.asarray(x)
        ndim = x.ndim
        start, end = self.start_dim, self.end_dim
        if not (-ndim <= start < ndim and -ndim <= end < ndim):
            raise IndexError(
                f"Flatten(start_dim={start}, end_dim={end}) does not fit an input of shape {x.shape}")
        start, end = start % ndim, end % ndim
        if start > end:
            raise ValueError(f"start_dim ({self.start_dim}) comes after end_dim ({self.end_dim}) "
                             f"for an input of shape {x.shape}")
        self.save_for_backward(x.shape)
        return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])

    def backward(self, grad_output):
        (shape,) = self.saved()
        return np.reshape(grad_output, shape)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


# ----------------------------------------------------------------------------
# Loss
# ----------------------------------------------------------------------------

class CrossEntropyLoss(Module):
    """Softmax cross-entropy between logits and class indices.

    ``forward(input, target)``:
    - input: logits of shape (N, C) (or (N, C, d1, ...))
    - target: integer class indices of shape (N,) (or (N, d1, ...)), in [0, C)

    Returns the loss: a scalar for ``reduction="mean"`` or ``"sum"``, the
    shape of ``target`` for ``"none"``. ``backward(grad_output=None)`` returns
    the gradient with respect to ``input`` (its shape); ``grad_output``
    defaults to 1 and otherwise has the shape of the loss.
    """

    def __init__(self, reduction="mean"):
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(self, input, target):
        loss = F.cross_entropy(input, target, reduction=self.reduction)
        self.save_for_backward(input, target)
        return loss

    def backward(self, grad_output=None):
        input, target = self.saved()
        grad = F.cross_entropy_backward(input, target, reduction=self.reduction)
        if grad_output is None:
            return grad
        grad_output = np.asarray(grad_output, dtype=grad.dtype)
        if self.reduction == "none":
            grad_output = np.expand_dims(grad_output, 1)
        return grad * grad_output

    def extra_repr(self):
        return f"reduction={self.reduction!r}"

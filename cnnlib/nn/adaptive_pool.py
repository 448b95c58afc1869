"""Adaptive pooling layers around :mod:`cnnlib.ops.adaptive_pool`, like ``torch.nn``'s.

``AdaptiveAvgPool2d(1)`` is the global average pooling that ends many
modern CNNs (and the small CNN of the attention chapter, Part IV).
"""

from .. import functional as F
from ..ops.adaptive_pool import adaptive_output_size
from .module import Module

__all__ = ["AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]


def _check_output_size(output_size):
    adaptive_output_size(output_size, 1, 1)  # validates; None entries are resolved per input
    return tuple(output_size) if isinstance(output_size, list) else output_size


class AdaptiveAvgPool2d(Module):
    """Adaptive average pooling, like ``torch.nn.AdaptiveAvgPool2d``.

    Inputs: x of shape (N, C, H, W). Returns y of shape (N, C, H_out, W_out)
    with (H_out, W_out) = ``output_size`` (an int, a pair, None in a pair
    keeps the input's size); see :func:`cnnlib.functional.adaptive_avg_pool2d`.
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _check_output_size(output_size)

    def forward(self, x):
        y = F.adaptive_avg_pool2d(x, self.output_size)
        self.save_for_backward(x)
        return y

    def backward(self, grad_output):
        (x,) = self.saved()
        return F.adaptive_avg_pool2d_backward(grad_output, x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size!r}"


class AdaptiveMaxPool2d(Module):
    """Adaptive max pooling, like ``torch.nn.AdaptiveMaxPool2d`` (no ``return_indices``).

    Inputs: x of shape (N, C, H, W). Returns y of shape (N, C, H_out, W_out);
    see :func:`cnnlib.functional.adaptive_max_pool2d`. The backward sends
    each gradient to its bin's maximum (the indices of the last forward).
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _check_output_size(output_size)

    def forward(self, x):
        y, indices = F.adaptive_max_pool2d(x, self.output_size, return_indices=True)
        self.save_for_backward(x, indices)
        return y

    def backward(self, grad_output):
        x, indices = self.saved()
        return F.adaptive_max_pool2d_backward(grad_output, x, self.output_size, indices=indices)

    def extra_repr(self):
        return f"output_size={self.output_size!r}"

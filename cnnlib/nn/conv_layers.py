"""Convolution layers built from other layers: depthwise-separable convolution.

See :mod:`cnnlib.nn.module` for how a layer is written, and the chapter on
convolution (Part II) for the cost argument behind these layers.
"""

import numpy as np

from .._random import get_rng
from .layers import Conv2d, _positive_int, _conv_extra_repr
from .module import Module

__all__ = ["DepthwiseSeparableConv2d"]


class DepthwiseSeparableConv2d(Module):
    """Depthwise k x k convolution then a 1 x 1 convolution (MobileNet's building block).

    ``y = pointwise(depthwise(x))`` where ``depthwise`` is a ``Conv2d`` with
    ``groups=in_channels`` and ``in_channels * depth_multiplier`` filters and
    ``pointwise`` a 1 x 1 ``Conv2d`` that mixes channels; it equals
    :func:`cnnlib.functional.depthwise_separable_conv2d`.

    Inputs:
    - x: input of shape (N, C_in, H, W), same dtype as the layer

    Returns y of shape (N, C_out, H_out, W_out), with H_out, W_out as for a
    ``Conv2d`` of the same kernel_size, stride, padding and dilation.

    Sub-modules (each initialised like ``torch.nn.Conv2d``): ``depthwise``
    (weight (C_in*m, 1, kH, kW), no bias) and ``pointwise`` (weight
    (C_out, C_in*m, 1, 1), bias (C_out,) when ``bias=True``).
    See the chapter on convolution (Part II).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 depth_multiplier=1, bias=True, *, dtype=np.float32, rng=None):
        super().__init__()
        in_channels = _positive_int(in_channels, "in_channels")
        mid = in_channels * _positive_int(depth_multiplier, "depth_multiplier")
        self.depth_multiplier = mid // in_channels
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be a bool, got {bias!r}")
        rng = get_rng(rng)  # one generator for both parts, so a seed gives two different draws
        self.depthwise = Conv2d(in_channels, mid, kernel_size, stride, padding, dilation,
                                groups=in_channels, bias=False, dtype=dtype, rng=rng)
        self.pointwise = Conv2d(mid, out_channels, 1, bias=bias, dtype=dtype, rng=rng)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))

    def backward(self, grad_output):
        return self.depthwise.backward(self.pointwise.backward(grad_output))

    def extra_repr(self):
        return _conv_extra_repr(self.depthwise, self.pointwise.out_channels,
                               self.pointwise.bias is not None,
                               depth_multiplier=(self.depth_multiplier, 1))

"""ResNet's basic residual block (He et al. 2016) and the same block without its skip.

    main:  x -> conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN --+
    skip:  x -> identity, or conv1x1(stride) -> BN --------------+-> (+) -> ReLU -> y

``PlainBlock`` is the main path followed by the ReLU, without the skip: the
pair is what the depth experiment of the chapter compares (see
:mod:`cnnlib.analysis.gradflow`). See the chapter on classic architectures (Part II).
"""

import numpy as np

from .._random import get_rng
from .layers import Conv2d, ReLU, _positive_int
from .module import Module, Sequential
from .norm_layers import BatchNorm2d

__all__ = ["PlainBlock", "ResidualBlock"]


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


class PlainBlock(Module):
    """conv3x3(stride) - BN - ReLU - conv3x3 - BN - ReLU, with no skip connection.

    Inputs: x of shape (N, in_channels, H, W). Returns y of shape
    (N, out_channels, H_out, W_out) with H_out = floor((H - 1) / stride) + 1
    (3x3 convolutions with padding 1). With ``batch_norm=False`` the BN layers
    are left out and the convolutions get biases; with BN they have none (BN's
    shift plays that role), as in ResNet. Convolutions start with PyTorch's
    default initialisation. See the chapter on classic architectures (Part II).
    """

    def __init__(self, in_channels, out_channels, stride=1, batch_norm=True, *,
                 dtype=np.float32, rng=None):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        self.out_channels = _positive_int(out_channels, "out_channels")
        self.stride = _positive_int(stride, "stride")
        self.batch_norm = _check_bool(batch_norm, "batch_norm")
        # one generator for all layers: a seed must not give each layer the same draws
        kw = dict(bias=not self.batch_norm, dtype=dtype, rng=get_rng(rng))
        self.conv1 = Conv2d(in_channels, out_channels, 3, stride, padding=1, **kw)
        if self.batch_norm:
            self.bn1 = BatchNorm2d(out_channels, dtype=dtype)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(out_channels, out_channels, 3, 1, padding=1, **kw)
        if self.batch_norm:
            self.bn2 = BatchNorm2d(out_channels, dtype=dtype)
        self.relu2 = ReLU()

    def main_layers(self):
        """The layers of the main branch, in order (the block's own, not copies)."""
        names = ("conv1", "bn1", "relu1", "conv2", "bn2") if self.batch_norm else \
            ("conv1", "relu1", "conv2")
        return [getattr(self, name) for name in names]

    def _main_forward(self, x):
        for layer in self.main_layers():
            x = layer(x)
        return x

    def _main_backward(self, grad):
        for layer in reversed(self.main_layers()):
            grad = layer.backward(grad)
        return grad

    def forward(self, x):
        return self.relu2(self._main_forward(x))

    def backward(self, grad_output):
        return self._main_backward(self.relu2.backward(grad_output))

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, stride={self.stride}, "
                f"batch_norm={self.batch_norm}")


class ResidualBlock(PlainBlock):
    """ResNet's basic block: y = ReLU(main(x) + skip(x)).

    main(x) = BN(conv3x3(ReLU(BN(conv3x3_stride(x))))) and skip(x) = x when
    the shape is kept (stride 1, in_channels == out_channels), otherwise the
    projection BN(conv1x1_stride(x)) (a ``Sequential`` named ``downsample``
    as in torchvision, so the parameter names match its ``BasicBlock``; just
    the 1x1 convolution, with a bias, when ``batch_norm=False``). The
    Jacobian is J_main + J_skip, so the backward adds the skip's gradient to
    the main path's; with the identity skip that is the gradient itself.

    Inputs: x of shape (N, in_channels, H, W). Returns y of shape
    (N, out_channels, H_out, W_out), H_out = floor((H - 1) / stride) + 1.
    See the chapter on classic architectures (Part II).
    """

    def __init__(self, in_channels, out_channels, stride=1, batch_norm=True, *,
                 dtype=np.float32, rng=None):
        super().__init__(in_channels, out_channels, stride, batch_norm, dtype=dtype, rng=rng)
        if stride != 1 or in_channels != out_channels:
            layers = [Conv2d(in_channels, out_channels, 1, stride, bias=not self.batch_norm,
                             dtype=dtype, rng=rng)]
            if self.batch_norm:
                layers.append(BatchNorm2d(out_channels, dtype=dtype))
            self.downsample = Sequential(*layers)
        else:
            self.downsample = None

    def forward(self, x):
        main = self._main_forward(x)
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu2(main + skip)

    def backward(self, grad_output):
        grad = self.relu2.backward(grad_output)
        grad_skip = grad if self.downsample is None else self.downsample.backward(grad)
        return self._main_backward(grad) + grad_skip

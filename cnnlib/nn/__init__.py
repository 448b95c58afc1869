"""Layers, models and their parameters (``torch.nn`` in miniature).

See :mod:`cnnlib.nn.module` for how to write a new layer.
"""

from . import init
from .adaptive_pool import AdaptiveAvgPool2d, AdaptiveMaxPool2d
from .attention import CBAM, NonLocal2d, SqueezeExcitation
from .blocks import PlainBlock, ResidualBlock
from .conv_layers import DepthwiseSeparableConv2d
from .dropout import Dropout, Dropout2d
from .layers import AvgPool2d, Conv2d, CrossEntropyLoss, Flatten, Linear, MaxPool2d, ReLU, Sigmoid, Tanh
from .module import Module, Parameter, Sequential
from .norm_layers import BatchNorm2d, LocalResponseNorm
from .pool_layers import FractionalMaxPool2d, StochasticPool2d

__all__ = [
    "Parameter", "Module", "Sequential",
    "Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "ReLU", "Sigmoid", "Tanh", "Flatten",
    "CrossEntropyLoss", "init",
    "FractionalMaxPool2d", "StochasticPool2d", "DepthwiseSeparableConv2d",
    "LocalResponseNorm", "BatchNorm2d", "ResidualBlock", "PlainBlock", "Dropout", "Dropout2d",
    "SqueezeExcitation", "CBAM", "NonLocal2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d",
]

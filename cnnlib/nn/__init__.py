"""Layers, models and their parameters (``torch.nn`` in miniature).

See :mod:`cnnlib.nn.module` for how to write a new layer.
"""

from . import init
from .layers import (AvgPool2d, Conv2d, CrossEntropyLoss, Flatten, Linear, MaxPool2d, ReLU,
                     Sigmoid, Tanh)
from .conv_layers import DepthwiseSeparableConv2d
from .module import Module, Parameter, Sequential
from .pool_layers import FractionalMaxPool2d, StochasticPool2d

__all__ = [
    "Parameter", "Module", "Sequential",
    "Conv2d", "Linear", "MaxPool2d", "AvgPool2d", "ReLU", "Sigmoid", "Tanh", "Flatten",
    "CrossEntropyLoss", "init",
    "FractionalMaxPool2d", "StochasticPool2d", "DepthwiseSeparableConv2d",
]

"""Models: the zoo (LeNet-5 and its shipped MNIST weights) and the from-scratch versions.

* :mod:`~cnnlib.models.zoo`: :func:`~cnnlib.models.zoo.lenet5` (optionally with the pretrained
  weights in ``weights/``) and :class:`~cnnlib.models.zoo.LeNet5`, whose ``predict`` takes uint8
  digits; used throughout the book;
* :mod:`~cnnlib.models.scratch`: LeNet-5 written with loops, vectorised
  NumPy and C++ (``cpp/lenet5.cpp``), for Part VII, "From scratch".
"""

from . import scratch, zoo
from .zoo import LeNet5, lenet5

__all__ = ["zoo", "scratch", "LeNet5", "lenet5"]

"""Optimisers, learning-rate schedules and the learning-rate range test (``torch.optim`` in miniature).

* :mod:`~cnnlib.optim.optimizers`: :class:`~cnnlib.optim.optimizers.SGD` (momentum, Nesterov, weight
  decay), :class:`~cnnlib.optim.optimizers.Adam` and :class:`~cnnlib.optim.optimizers.AdamW`, step for step as PyTorch's;
* :mod:`~cnnlib.optim.schedules`: constant, step, exponential, cosine,
  warm-up and cyclical schedules (triangular, 1cycle), equal to PyTorch's
  ``lr_scheduler`` where PyTorch has one;
* :mod:`~cnnlib.optim.lr_finder`: the learning-rate range test and its
  reading rule.

Chapters: every chapter that trains; the schedules and the range test are
explained in Part III, "Hyper-parameters".
"""

from . import lr_finder, schedules
from .optimizers import SGD, Adam, AdamW, Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "schedules", "lr_finder"]

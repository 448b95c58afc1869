"""cnnlib: the NumPy + Numba library behind the interactive CNN book.

Modules, grouped as the book is:

* ``cnnlib.functional``: stateless operations (convolution, pooling,
  activations, linear, losses) with their backward passes;
* ``cnnlib.nn``: ``Module``, ``Sequential`` and layers built on them;
* ``cnnlib.optim``: SGD and Adam;
* ``cnnlib.datasets``: MNIST, found locally or downloaded and verified.

Importing cnnlib compiles nothing: each Numba kernel is compiled (or loaded
from its on-disk cache) the first time it runs.
"""

import os

import numba

# Numba's OpenMP threads spin for a while after each parallel loop; on a
# 2-core laptop they then fight OpenBLAS's threads in the matrix product that
# follows an im2col, which made a LeNet-sized convolution 7x slower.  The
# workqueue layer sleeps instead.  A user's explicit choice wins.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

from . import (amp, border, checkpoint, connectivity, datasets, fc_vs_cnn,  # noqa: E402
               functional, gradflow, interpret, invariance, jacobian, nn, optim, receptive, scaling, summary)
from ._random import manual_seed  # noqa: E402

__version__ = "0.1.0"
__all__ = ["amp", "border", "checkpoint", "connectivity", "datasets", "fc_vs_cnn", "functional", "gradflow",
           "interpret", "invariance", "jacobian", "nn", "optim", "receptive", "scaling",
           "summary", "manual_seed"]

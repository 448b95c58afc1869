"""cnnlib: the NumPy + Numba library behind the interactive CNN book.

Modules, grouped as the book is:

* ``cnnlib.functional``: stateless operations (convolution, pooling,
  activations, linear, losses) with their backward passes;
* ``cnnlib.nn``: ``Module``, ``Sequential`` and layers built on them;
* ``cnnlib.optim``: SGD, Adam and AdamW;
* ``cnnlib.datasets``: MNIST, found locally or downloaded and verified;
* ``cnnlib.zoo``, ``cnnlib.train``, ``cnnlib.bench``: LeNet-5 with shipped
  weights, its training command and the speed benchmark;
* ``cnnlib.checks``: the chapters' self-checks of numerical results;
* one module per chapter topic (``receptive``, ``invariance``, ``checkpoint``,
  ``amp``, ...), and ``cnnlib.widgets`` for the chapters' widgets.

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

# Grouped as the book is: the core, then one module per chapter topic.
from . import checks, datasets, functional, nn, optim, zoo  # noqa: E402
from . import border, connectivity, interpret, invariance, receptive  # noqa: E402
from . import fc_vs_cnn, gradflow, jacobian, scaling, summary  # noqa: E402
from . import amp, checkpoint, parallel, regularisation, transforms, uncertainty  # noqa: E402
from . import hyper, lr_finder, schedules, sharpness  # noqa: E402
from ._random import manual_seed  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "checks", "datasets", "functional", "nn", "optim", "zoo",
    "border", "connectivity", "interpret", "invariance", "receptive",
    "fc_vs_cnn", "gradflow", "jacobian", "scaling", "summary",
    "amp", "checkpoint", "parallel", "regularisation", "transforms", "uncertainty",
    "hyper", "lr_finder", "schedules", "sharpness",
    "manual_seed",
]

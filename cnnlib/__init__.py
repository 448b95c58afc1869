"""cnnlib: the NumPy + Numba library behind the interactive CNN book.

A short top level of wings, each one kind of thing, every import pointing
to a wing above it in this list:

* ``cnnlib.ops``: the numeric kernels (Numba), one module per family;
* ``cnnlib.functional``: the public functional API, like
  ``torch.nn.functional``: each operation with its ``*_backward``;
* ``cnnlib.nn``: ``Module``, ``Sequential``, layers, blocks, initialisation;
* ``cnnlib.optim``: optimisers, learning-rate schedules, the range test;
* ``cnnlib.data``: MNIST (found locally or downloaded and verified) and
  transforms;
* ``cnnlib.models``: the zoo (LeNet-5 with shipped weights) and the
  from-scratch versions;
* ``cnnlib.training``: the training loop and its command line
  (``python -m cnnlib.training``), mixed precision, checkpointing, parallelism;
* ``cnnlib.analysis``: measuring a network (receptive fields, summaries,
  Jacobians, gradient flow, sharpness, invariance, uncertainty, ...);
* ``cnnlib.search``: architecture search (DARTS, regularised evolution,
  random search);
* ``cnnlib.hardware``: accelerators: a systolic-array simulator and an
  analog in-memory-computing crossbar;
* ``cnnlib.quant``: quantisation (the affine map, integer-only inference,
  low-bit weights, quantisation-aware training, distillation);
* ``cnnlib.theory``: theory: what networks can represent (the 1-D universal
  approximation construction, depth separation, exact linear-piece counts) and
  the optimisation landscape (Hessians, saddle points, mode connectivity);
* ``cnnlib.experiments``: the chapters' experiment drivers;
* ``cnnlib.widgets``: one module per interactive widget (imported on use);
* ``cnnlib.tools``: the chapters' self-checks (``tools.checks``), shared
  figures (``tools.plotting``) and the speed benchmark
  (``python -m cnnlib.tools.bench``).

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

# The wings, in the order of dependence.
from . import functional, nn, optim  # noqa: E402, I001
from . import data, models, training  # noqa: E402
from . import analysis, search, hardware, quant, theory, experiments  # noqa: E402
from . import tools  # noqa: E402
from ._random import manual_seed  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "functional", "nn", "optim", "data", "models", "training", "analysis", "search", "hardware",
    "quant", "theory", "experiments",
    "tools", "manual_seed",
]

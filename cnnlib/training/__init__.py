"""Training machinery: the loop and its command line, mixed precision, checkpointing, parallelism.

* :mod:`~cnnlib.training.loop`: mini-batches, one epoch of training,
  accuracy, the cosine-SGD loop and :func:`~cnnlib.training.loop.fit_lenet5`;
  ``python -m cnnlib.training lenet5 --epochs 12 --out FILE`` trains the
  zoo's LeNet-5 (Part VII, "From scratch", and Part I, "CNN vs fully
  connected");
* :mod:`~cnnlib.training.amp`: emulated float16 and dynamic loss scaling
  (Part III, "Memory");
* :mod:`~cnnlib.training.checkpoint`: gradient checkpointing with RNG replay
  (Part III, "Memory");
* :mod:`~cnnlib.training.parallel`: ring all-reduce, data-parallel workers
  and pipelined model parallelism (Part III, "Parallelism").
"""

from . import amp, checkpoint, loop, parallel

__all__ = ["loop", "amp", "checkpoint", "parallel"]

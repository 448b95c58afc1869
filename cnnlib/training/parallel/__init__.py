"""Parallel training on one machine's cores (Part III, parallelism).

* :mod:`~cnnlib.training.parallel.allreduce`: the ring all-reduce, simulated in
  memory and over pipes between processes;
* :mod:`~cnnlib.training.parallel.data_parallel`: model replicas in worker
  processes, gradients averaged by the all-reduce (:class:`~cnnlib.training.parallel.data_parallel.DataParallel`);
* :mod:`~cnnlib.training.parallel.pipeline`: a model cut into stages in worker
  processes, micro-batches pipelined through them (:class:`~cnnlib.training.parallel.pipeline.Pipeline`).

Workers are started with the ``"spawn"`` method and kept alive between
steps; every wait has a timeout and a failing worker raises
:class:`WorkerError` in the parent.
"""

from ._workers import WorkerError
from .allreduce import (
                        chunk_bounds,
                        ring_allreduce,
                        ring_schedule,
                        ring_traffic,
                        run_ring_allreduce,
                        simulate_ring_allreduce,
)
from .data_parallel import DataParallel, benchmark_steps, flat_gradient, shard_bounds
from .pipeline import (
                        Pipeline,
                        balanced_boundaries,
                        bubble_formula,
                        bubble_fraction,
                        peak_stash,
                        pipeline_schedule,
                        plot_pipeline_timeline,
                        profile_layers,
                        simulate_pipeline,
                        split_model,
)

__all__ = [
    "WorkerError",
    "chunk_bounds", "ring_schedule", "simulate_ring_allreduce", "ring_traffic", "ring_allreduce",
    "run_ring_allreduce",
    "DataParallel", "flat_gradient", "shard_bounds", "benchmark_steps",
    "Pipeline", "split_model", "pipeline_schedule", "simulate_pipeline", "bubble_formula",
    "bubble_fraction", "peak_stash", "profile_layers", "balanced_boundaries",
    "plot_pipeline_timeline",
]

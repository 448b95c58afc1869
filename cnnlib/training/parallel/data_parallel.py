"""Data parallelism: replicas in worker processes, gradients ring-all-reduced.

(Part III, parallelism.) ``N`` worker processes each hold a copy of the
model. For one step on a batch of ``B`` examples the parent cuts the batch
into ``N`` shards (:func:`shard_bounds`), each worker computes the gradient
of the *summed* loss on its shard, divides by ``B`` and joins the
:func:`~cnnlib.training.parallel.allreduce.ring_allreduce` of its gradient with its
ring neighbours. The sum over workers is then exactly the gradient of the
mean loss over the whole batch, i.e. the single-process large-batch gradient
(:func:`flat_gradient`), up to float rounding. Each worker applies the same
optimiser step to the same gradient, so the replicas stay identical without
ever sending weights.

:class:`DataParallel` keeps its workers alive between steps (starting one
costs a fresh interpreter plus importing NumPy, Numba and cnnlib), records
how long that start-up took, and limits each worker's BLAS and Numba threads
(default 1), so that ``N`` workers use ``N`` cores.
"""

import pickle
import time

import numpy as np

from ... import nn
from ..._validate import _is_int
from . import _workers
from .allreduce import chunk_bounds, ring_allreduce

__all__ = ["shard_bounds", "flat_gradient", "DataParallel", "benchmark_steps"]


def shard_bounds(batch_size, world_size):
    """Where the batch is cut: worker ``r`` gets examples ``[b[r], b[r+1])``.

    Same rule as :func:`~cnnlib.training.parallel.allreduce.chunk_bounds` (near-equal
    shards, the first ones one longer when ``world_size`` does not divide
    ``batch_size``).
    """
    return chunk_bounds(batch_size, world_size)


def flat_gradient(model, x, y):
    """The single-process reference: gradient of the mean cross-entropy on (x, y).

    Zeroes the model's gradients, runs forward and backward, and returns
    ``(loss, grad)`` with ``grad`` the concatenation of every ``param.grad``
    (flattened, in :meth:`~cnnlib.nn.Module.parameters` order).
    """
    _check_batch(x, y)
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    return float(loss), np.concatenate([p.grad.ravel() for p in model.parameters()])


def _check_batch(x, y):
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"x must be a floating-point numpy.ndarray, got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if isinstance(x, np.ndarray) else ""))
    if not isinstance(y, np.ndarray) or not np.issubdtype(y.dtype, np.integer):
        raise TypeError("y must be an integer numpy.ndarray of class indices")
    if x.ndim < 1 or y.ndim != 1 or len(x) != len(y):
        raise ValueError(f"x and y must hold the same number of examples, got x.shape={x.shape}, "
                         f"y.shape={y.shape}")
    if len(x) == 0:
        raise ValueError("the batch is empty")


def _gradient_bucket(params):
    """Make every ``param.grad`` a view into one flat array (the all-reduce buffer)."""
    dtype = params[0].dtype
    bucket = np.zeros(sum(p.size for p in params), dtype=dtype)
    offset = 0
    for p in params:
        if p.dtype != dtype:
            raise TypeError("all parameters must share one dtype for the gradient bucket")
        view = bucket[offset:offset + p.size].reshape(p.shape)
        view[...] = p.grad
        p.grad = view
        offset += p.size
    return bucket


def _dp_worker(rank, world_size, threads, ctrl, send_conn, recv_conn, model_bytes,
               optimizer, warmup_shape):
    t_entry = time.perf_counter()  # the module (NumPy, Numba, cnnlib) is imported by now
    try:
        _workers.limit_threads_here(threads)
        model = pickle.loads(model_bytes)
        params = list(model.parameters())
        bucket = _gradient_bucket(params)
        opt = optimizer(params) if optimizer is not None else None
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
        if warmup_shape is not None:  # load (or compile) the Numba kernels now
            xw = np.zeros((2, *warmup_shape), dtype=bucket.dtype)
            loss_fn(model(xw), np.zeros(2, dtype=np.int64))
            model.backward(loss_fn.backward())
            bucket.fill(0)
        ctrl.send(("ready", {"t_entry": t_entry, "t_ready": time.perf_counter()}))
    except Exception:
        ctrl.send(_workers.error_message(rank))
        return
    while True:
        msg = ctrl.recv()
        try:
            if msg[0] == "close":
                return
            if msg[0] == "state":
                ctrl.send(("state", model.state_dict()))
                continue
            _, x, y, total, update, want_grad = msg
            t0 = time.perf_counter()
            bucket.fill(0)
            loss = 0.0
            if len(x):
                loss = float(loss_fn(model(x), y))
                model.backward(loss_fn.backward())
            bucket /= bucket.dtype.type(total)
            t1 = time.perf_counter()
            ring_allreduce(bucket, rank, world_size, send_conn, recv_conn)
            t2 = time.perf_counter()
            if update:
                opt.step()
            ctrl.send(("done", {"loss_sum": loss, "compute": t1 - t0, "allreduce": t2 - t1,
                                "update": time.perf_counter() - t2,
                                "grad": bucket.copy() if want_grad else None}))
        except Exception:
            ctrl.send(_workers.error_message(rank))


class DataParallel(_workers.WorkerGroup):
    """A pool of ``world_size`` persistent worker processes, each with a model replica.

    Inputs:
    - model: a :class:`~cnnlib.nn.Module` ending in class logits (pickled to
      every worker; its parameters are not changed in the parent)
    - world_size: number of worker processes (>= 1)
    - optimizer: ``callable(params) -> Optimizer`` that every worker builds
      (e.g. ``functools.partial(cnnlib.optim.SGD, lr=0.1)``); needed for
      :meth:`step`. It must be picklable (a library class or a partial of one).
    - threads_per_worker: BLAS/Numba threads of each worker (default 1)
    - warmup_shape: shape of one input example, e.g. ``(1, 28, 28)``; if given,
      each worker runs one tiny forward/backward at start-up so that the first
      step does not pay for loading the Numba kernels
    - timeout: seconds to wait for any reply (start-up included)

    Use it as a context manager (``with DataParallel(...) as dp:``) or call
    :meth:`close`: the workers are always joined or terminated. After start-up,
    ``startup`` holds per-worker seconds: ``"spawn_import"`` (start to the
    worker function running, i.e. a new interpreter importing NumPy, Numba and
    cnnlib) and ``"warmup"`` (receiving the model, first forward/backward).
    """

    _name = "DataParallel pool"
    _member = "worker"

    def __init__(self, model, world_size, optimizer=None, *, threads_per_worker=1,
                 warmup_shape=None, timeout=120.0):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a cnnlib.nn.Module, got {type(model).__name__}")
        if not _is_int(world_size) or world_size < 1:
            raise ValueError(f"world_size must be a positive int, got {world_size!r}")
        if not _is_int(threads_per_worker) or threads_per_worker < 1:
            raise ValueError("threads_per_worker must be a positive int, "
                             f"got {threads_per_worker!r}")
        if optimizer is not None and not callable(optimizer):
            raise TypeError("optimizer must be None or a callable params -> Optimizer")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number, got {timeout!r}")
        self.world_size = int(world_size)
        self.threads_per_worker = int(threads_per_worker)
        self.timeout = float(timeout)
        self._has_optimizer = optimizer is not None
        self._procs, self._ctrl, self._links = [], [], []
        self._broken = False
        self.last_stats = None
        ctx = _workers.get_context()
        model_bytes = pickle.dumps(model)
        n = self.world_size
        try:
            self._links = [ctx.Pipe(duplex=False) for _ in range(n)]  # link r: rank r -> r+1
            t0 = time.perf_counter()
            with _workers.thread_limit_env(self.threads_per_worker):
                for r in range(n):
                    parent_end, child_end = ctx.Pipe()
                    p = ctx.Process(target=_dp_worker, name=f"cnnlib-dp-{r}", daemon=True,
                                    args=(r, n, self.threads_per_worker, child_end,
                                          self._links[r][1], self._links[(r - 1) % n][0],
                                          model_bytes, optimizer, warmup_shape))
                    p.start()
                    child_end.close()
                    self._procs.append(p)
                    self._ctrl.append(parent_end)
            replies = self._receive("start-up")
            self._record_startup(replies, t0)
        except BaseException:
            self._broken = True
            self.close()
            raise

    # --- the work -----------------------------------------------------------

    def _run(self, x, y, update, want_grad):
        self._check_open()
        _check_batch(x, y)
        bounds = shard_bounds(len(x), self.world_size)
        t0 = time.perf_counter()
        for r, conn in enumerate(self._ctrl):
            lo, hi = bounds[r], bounds[r + 1]
            conn.send(("step", x[lo:hi], y[lo:hi], len(x), update, want_grad))
        replies = self._receive("step result")
        wall = time.perf_counter() - t0
        stats = [replies[r][1] for r in range(self.world_size)]
        loss = sum(s["loss_sum"] for s in stats) / len(x)
        self.last_stats = {"wall": wall,
                           "compute": [s["compute"] for s in stats],
                           "allreduce": [s["allreduce"] for s in stats]}
        return loss, [s["grad"] for s in stats]

    def gradient(self, x, y, all_ranks=False):
        """All-reduced gradient of the mean cross-entropy on the batch (x, y).

        Returns ``(loss, grad)`` like :func:`flat_gradient`; with
        ``all_ranks=True`` ``grad`` is the list of every worker's copy. The
        parameters are not updated.
        """
        loss, grads = self._run(x, y, update=False, want_grad=True)
        return loss, (grads if all_ranks else grads[0])

    def step(self, x, y):
        """One synchronous data-parallel SGD step on the batch (x, y); returns the mean loss.

        ``last_stats`` then holds the wall time and each worker's compute and
        all-reduce seconds.
        """
        if not self._has_optimizer:
            raise RuntimeError("step needs an optimizer: pass optimizer= to DataParallel")
        loss, _ = self._run(x, y, update=True, want_grad=False)
        return loss

    def state_dicts(self):
        """Every worker's ``state_dict()`` (a list, by rank)."""
        self._check_open()
        for conn in self._ctrl:
            conn.send(("state",))
        replies = self._receive("state")
        return [replies[r][1] for r in range(self.world_size)]


def benchmark_steps(pool, x, y, batch_size, steps, warmup=1):
    """Time ``steps`` training steps of a :class:`DataParallel` pool.

    Batch ``k`` is ``x[k*batch_size:(k+1)*batch_size]`` (wrapping around);
    the first ``warmup`` steps are run but not timed. Returns a dict of
    medians in seconds: ``"wall"`` (one step as seen by the parent),
    ``"compute"`` (the slowest worker's forward + backward) and
    ``"allreduce"`` (the slowest worker's all-reduce, which includes waiting
    for its neighbours), plus ``"losses"`` (every step's loss).
    """
    if not isinstance(pool, DataParallel):
        raise TypeError(f"pool must be a DataParallel, got {type(pool).__name__}")
    for name, v, lo in (("batch_size", batch_size, 1), ("steps", steps, 1), ("warmup", warmup, 0)):
        if not _is_int(v) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}")
    if batch_size > len(x):
        raise ValueError(f"batch_size {batch_size} is larger than the data ({len(x)} examples)")
    stats, losses = [], []
    for k in range(warmup + steps):
        i = (k * batch_size) % (len(x) - batch_size + 1)
        losses.append(pool.step(x[i:i + batch_size], y[i:i + batch_size]))
        if k >= warmup:
            stats.append(pool.last_stats)
    return {"wall": float(np.median([s["wall"] for s in stats])),
            "compute": float(np.median([max(s["compute"]) for s in stats])),
            "allreduce": float(np.median([max(s["allreduce"]) for s in stats])),
            "losses": losses}

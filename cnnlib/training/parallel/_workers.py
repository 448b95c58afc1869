"""Starting, talking to and stopping worker processes (Part III, parallelism).

Shared by :mod:`~cnnlib.training.parallel.data_parallel` and
:mod:`~cnnlib.training.parallel.pipeline`:

* workers are started with the ``"spawn"`` context: a fresh interpreter,
  never a ``fork`` of a parent whose Numba and OpenBLAS thread pools may
  already be running (forking a process with live threads can deadlock the
  child);
* the thread counts of the child's BLAS and Numba are fixed through
  environment variables set *before* the child imports NumPy (the child
  inherits the parent's environment at start), and again inside the child
  with ``numba.set_num_threads`` and, where installed, ``threadpoolctl``;
* arrays travel as a small pickled header followed by their raw bytes
  (``Connection.send_bytes``), not as pickles;
* every wait has a timeout, a worker's exception comes back to the parent
  as :class:`WorkerError` with the worker's traceback, and
  :func:`stop_workers` always joins (or terminates) every process.
"""

import contextlib
import multiprocessing as mp
import os
import time
import traceback
from multiprocessing.connection import wait

import numpy as np

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


class WorkerError(RuntimeError):
    """A worker process failed; the message holds its rank and traceback."""


def get_context():
    """The multiprocessing context used for every worker: ``"spawn"``."""
    return mp.get_context("spawn")


@contextlib.contextmanager
def thread_limit_env(threads):
    """Set the BLAS/OpenMP/Numba thread variables to ``threads`` for the block.

    A child started inside the block inherits them and reads them when it
    imports NumPy and Numba, i.e. before any thread pool exists.
    """
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    try:
        for k in _THREAD_VARS:
            os.environ[k] = str(threads)
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def limit_threads_here(threads):
    """Inside a worker: pin Numba and (if threadpoolctl is present) BLAS threads."""
    import numba
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=threads)


def error_message(rank):
    """The reply a worker sends when it catches an exception."""
    return ("error", rank, traceback.format_exc())


def send_array(conn, tag, array):
    """Send ``array`` over ``conn``: a pickled ``(tag, dtype, shape)`` header, then raw bytes."""
    array = np.ascontiguousarray(array)
    conn.send((tag, array.dtype.str, array.shape))
    conn.send_bytes(memoryview(array).cast("B"))


def recv_array(conn):
    """Receive what :func:`send_array` sent; returns ``(tag, array)``."""
    tag, dtype, shape = conn.recv()
    array = np.frombuffer(conn.recv_bytes(), dtype=dtype).reshape(shape)
    return tag, array.copy()  # frombuffer gives a read-only view


def receive(conns, procs, timeout, what="reply"):
    """Wait for one message from each connection in ``conns`` (rank -> Connection).

    Returns ``{rank: message}``. Raises :class:`WorkerError` if a worker
    reports an exception, dies, or does not answer within ``timeout`` seconds
    (in total).
    """
    pending = dict(conns)
    out = {}
    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        sentinels = {procs[r].sentinel: r for r in pending}
        ready = wait(list(pending.values()) + list(sentinels), timeout=max(left, 0))
        if not ready:
            raise WorkerError(f"timed out after {timeout:.0f} s waiting for the {what} of "
                              f"worker(s) {sorted(pending)}")
        for rank, conn in list(pending.items()):
            has_data = conn in ready or (procs[rank].sentinel in ready and conn.poll(0))
            if not has_data:
                if procs[rank].sentinel in ready:
                    procs[rank].join(1)
                    raise WorkerError(f"worker {rank} exited (exit code {procs[rank].exitcode}) "
                                      f"before sending its {what}")
                continue
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                procs[rank].join(1)
                raise WorkerError(f"worker {rank} exited (exit code {procs[rank].exitcode}) "
                                  f"before sending its {what}") from None
            if isinstance(msg, tuple) and msg and msg[0] == "error":
                raise WorkerError(f"worker {msg[1]} raised an exception:\n{msg[2]}")
            out[rank] = msg
            del pending[rank]
    return out


def stop_workers(procs, conns, timeout=5.0):
    """Ask every worker to stop, join it, terminate it if it does not; close pipes."""
    for conn in conns:
        try:
            conn.send(("close",))
        except (OSError, ValueError, BrokenPipeError):
            pass
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(deadline - time.monotonic(), 0.1))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(2)
        if p.is_alive():  # pragma: no cover - terminate ignored
            p.kill()
            p.join(2)
    for conn in conns:
        conn.close()


class WorkerGroup:
    """Processes started together, driven over control pipes, closed together.

    Subclasses (``DataParallel``, ``Pipeline``) start their processes into
    ``self._procs`` with control connections ``self._ctrl`` and peer links
    ``self._links``, and name themselves for error messages with ``_name``
    and ``_member``.  A group whose worker failed is marked broken and can
    only be closed.
    """

    _name = "group"
    _member = "worker"

    def _record_startup(self, replies, t0):
        """Seconds each worker spent spawning + importing, then warming up."""
        self.startup = {r: {"spawn_import": msg[1]["t_entry"] - t0,
                            "warmup": msg[1]["t_ready"] - msg[1]["t_entry"]}
                        for r, msg in sorted(replies.items())}

    def _receive(self, what):
        try:
            return receive(dict(enumerate(self._ctrl)), self._procs, self.timeout, what)
        except BaseException:
            self._broken = True
            raise

    def _check_open(self):
        if not self._procs:
            raise RuntimeError(f"this {self._name} is closed")
        if self._broken:
            raise RuntimeError(f"a {self._member} of this {self._name} failed earlier; close it")

    def close(self):
        """Stop and join every process (terminate those that do not stop)."""
        conns = self._ctrl + [c for link in self._links for c in link]
        stop_workers(self._procs, conns, timeout=0.5 if self._broken else 5.0)
        self._procs, self._ctrl, self._links = [], [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

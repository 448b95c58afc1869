"""Ring all-reduce: reduce-scatter, then all-gather (Part III, parallelism).

Each of ``N`` ranks holds a buffer of the same length; after the all-reduce
every rank holds the element-wise sum (or mean) of all of them. The ring
version (Patarasuk & Yuan 2009; the algorithm behind Horovod and NCCL's ring)
cuts the buffer into ``N`` chunks and passes chunks to the right-hand
neighbour, ``rank -> (rank + 1) % N``:

* **reduce-scatter**, steps ``s = 0 .. N-2``: rank ``r`` sends chunk
  ``(r - s) % N`` and adds the chunk ``(r - s - 1) % N`` it receives into its
  own copy. Afterwards rank ``r`` holds the full sum of chunk ``(r + 1) % N``.
* **all-gather**, steps ``s = 0 .. N-2``: rank ``r`` sends chunk
  ``(r + 1 - s) % N`` and overwrites chunk ``(r - s) % N`` with what it
  receives. Afterwards every rank holds every summed chunk.

Each rank sends ``2 (N - 1)`` chunks, about ``2 (N - 1) / N`` times the
buffer, whatever ``N`` is: the bandwidth term does not grow with the number
of workers.

:func:`simulate_ring_allreduce` runs the algorithm on ``N`` in-memory buffers
and can record every step; :func:`ring_allreduce` is the same algorithm for
one rank of a real group of processes, over ``multiprocessing`` pipes. Both
perform the same additions in the same order, so their results agree bit for
bit.
"""

import numpy as np

from ..._validate import _is_int

__all__ = ["chunk_bounds", "ring_schedule", "simulate_ring_allreduce", "ring_traffic",
           "ring_allreduce", "run_ring_allreduce"]

_OPS = ("sum", "mean")


def _check_world(world_size):
    if not _is_int(world_size) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    return int(world_size)


def _check_op(op):
    if op not in _OPS:
        raise ValueError(f"op must be one of {_OPS}, got {op!r}")


def chunk_bounds(length, world_size):
    """Boundaries of ``world_size`` near-equal chunks of ``range(length)``.

    Returns an int64 array ``b`` of length ``world_size + 1``; chunk ``c`` is
    ``[b[c], b[c+1])``. When ``world_size`` does not divide ``length`` the
    first ``length % world_size`` chunks are one element longer (like
    ``np.array_split``); chunks may be empty when ``length < world_size``.
    """
    if not _is_int(length) or length < 0:
        raise ValueError(f"length must be a non-negative int, got {length!r}")
    world_size = _check_world(world_size)
    q, r = divmod(int(length), world_size)
    sizes = np.full(world_size, q, dtype=np.int64)
    sizes[:r] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


def ring_schedule(world_size):
    """The chunk each rank sends at each step, as a list of dicts.

    Entry ``k`` (``k = 0 .. 2(N-1)-1``) is ``{"phase": "reduce-scatter" or
    "all-gather", "step": s, "send": [chunk sent by rank r for r in
    range(N)], "recv": [chunk received by rank r]}``. Rank ``r`` always sends
    to ``(r + 1) % N`` and receives from ``(r - 1) % N``. Empty for ``N = 1``.
    """
    n = _check_world(world_size)
    steps = []
    for s in range(n - 1):
        steps.append({"phase": "reduce-scatter", "step": s,
                      "send": [(r - s) % n for r in range(n)],
                      "recv": [(r - s - 1) % n for r in range(n)]})
    for s in range(n - 1):
        steps.append({"phase": "all-gather", "step": s,
                      "send": [(r + 1 - s) % n for r in range(n)],
                      "recv": [(r - s) % n for r in range(n)]})
    return steps


def _check_buffers(buffers):
    if not isinstance(buffers, (list, tuple)) or not buffers:
        raise TypeError("buffers must be a non-empty list of 1-d arrays (one per rank)")
    for i, b in enumerate(buffers):
        if not isinstance(b, np.ndarray):
            raise TypeError(f"buffers[{i}] must be a numpy.ndarray, got {type(b).__name__}")
        if b.ndim != 1:
            raise ValueError(f"buffers[{i}] must be 1-d, got shape {b.shape}")
        if not np.issubdtype(b.dtype, np.floating):
            raise TypeError(f"buffers[{i}] must be a floating-point array, got dtype {b.dtype}")
        if b.shape != buffers[0].shape or b.dtype != buffers[0].dtype:
            raise ValueError(f"buffers[{i}] has shape {b.shape} and dtype {b.dtype}; all buffers "
                             f"must match buffers[0] ({buffers[0].shape}, {buffers[0].dtype})")


def simulate_ring_allreduce(buffers, op="sum", record=False):
    """Run the ring all-reduce on ``N`` in-memory buffers (one per rank).

    Inputs:
    - buffers: list of ``N`` 1-d float arrays of equal length and dtype (not
      modified)
    - op: ``"sum"`` or ``"mean"``
    - record: also return the state after every step

    Returns ``results`` (list of ``N`` arrays, each the reduction) or, with
    ``record=True``, ``(results, trace)`` where ``trace`` is a list with one
    dict per step: the entries of :func:`ring_schedule` plus ``"state"`` (a
    copy of every rank's buffer after the step) and ``"elements_sent"`` (per
    rank, in that step).
    """
    _check_buffers(buffers)
    _check_op(op)
    n = len(buffers)
    bufs = [np.array(b, copy=True) for b in buffers]
    bounds = chunk_bounds(bufs[0].size, n)
    trace = []
    for entry in ring_schedule(n):
        # Every rank sends at once: read all outgoing chunks before writing.
        outgoing = [bufs[r][bounds[c]:bounds[c + 1]].copy() for r, c in enumerate(entry["send"])]
        for r in range(n):
            c = entry["recv"][r]
            incoming = outgoing[(r - 1) % n]
            dst = bufs[r][bounds[c]:bounds[c + 1]]
            if entry["phase"] == "reduce-scatter":
                dst += incoming
            else:
                dst[...] = incoming
        if record:
            trace.append(dict(entry, state=[b.copy() for b in bufs],
                              elements_sent=[len(o) for o in outgoing]))
    if op == "mean":
        for b in bufs:
            b /= b.dtype.type(n)
    return (bufs, trace) if record else bufs


def ring_traffic(length, world_size):
    """Elements each rank sends in one ring all-reduce of ``length`` elements.

    Returns an int64 array of length ``world_size``; rank ``r`` sends
    ``2 (N - 1)`` chunks, about ``2 (N - 1) / N * length`` elements.
    """
    n = _check_world(world_size)
    sizes = np.diff(chunk_bounds(length, n))
    sent = np.zeros(n, dtype=np.int64)
    for entry in ring_schedule(n):
        for r, c in enumerate(entry["send"]):
            sent[r] += sizes[c]
    return sent


def ring_allreduce(buffer, rank, world_size, send_conn, recv_conn, op="sum"):
    """All-reduce ``buffer`` in place, as rank ``rank`` of a ring of processes.

    Inputs:
    - buffer: 1-d C-contiguous float array, the same length and dtype on every rank
    - rank, world_size: this process's position in the ring and its size
    - send_conn: ``multiprocessing`` Connection to rank ``(rank + 1) % N``
    - recv_conn: Connection from rank ``(rank - 1) % N``
    - op: ``"sum"`` or ``"mean"``

    Chunks travel as raw bytes (``send_bytes`` / ``recv_bytes_into``). To
    avoid the deadlock in which every rank blocks sending into a full pipe,
    even ranks send first and odd ranks receive first. Returns ``buffer``.
    """
    n = _check_world(world_size)
    if not _is_int(rank) or not 0 <= rank < n:
        raise ValueError(f"rank must be an int in [0, {n}), got {rank!r}")
    if not isinstance(buffer, np.ndarray) or buffer.ndim != 1 or not buffer.flags.c_contiguous:
        raise ValueError("buffer must be a 1-d C-contiguous numpy.ndarray")
    if not np.issubdtype(buffer.dtype, np.floating):
        raise TypeError(f"buffer must be a floating-point array, got dtype {buffer.dtype}")
    _check_op(op)
    bounds = chunk_bounds(buffer.size, n)
    scratch = np.empty(int(np.max(np.diff(bounds))), dtype=buffer.dtype)
    for entry in ring_schedule(n):
        out = buffer[bounds[entry["send"][rank]]:bounds[entry["send"][rank] + 1]]
        c = entry["recv"][rank]
        dst = buffer[bounds[c]:bounds[c + 1]]
        incoming = scratch[:dst.size]
        if rank % 2 == 0:
            send_conn.send_bytes(memoryview(out).cast("B"))
            _recv_into(recv_conn, incoming)
        else:
            _recv_into(recv_conn, incoming)
            send_conn.send_bytes(memoryview(out).cast("B"))
        if entry["phase"] == "reduce-scatter":
            dst += incoming
        else:
            dst[...] = incoming
    if op == "mean":
        buffer /= buffer.dtype.type(n)
    return buffer


def _recv_into(conn, array):
    nbytes = conn.recv_bytes_into(memoryview(array).cast("B"))
    if nbytes != array.nbytes:
        raise RuntimeError(f"ring all-reduce expected {array.nbytes} bytes, got {nbytes}")


def _allreduce_worker(rank, world_size, ctrl, send_conn, recv_conn, buffer, op):
    from . import _workers
    try:
        ring_allreduce(buffer, rank, world_size, send_conn, recv_conn, op)
        ctrl.send(("done", buffer))
    except Exception:
        ctrl.send(_workers.error_message(rank))


def run_ring_allreduce(buffers, op="sum", timeout=60.0):
    """Run :func:`ring_allreduce` in ``len(buffers)`` spawned processes, one buffer each.

    A test and demonstration harness: returns the list of every rank's
    result (which should equal :func:`simulate_ring_allreduce` bit for bit).
    Raises :class:`~cnnlib.training.parallel.WorkerError` if a rank fails or the
    whole exchange takes more than ``timeout`` seconds.
    """
    from . import _workers
    _check_buffers(buffers)
    _check_op(op)
    n = len(buffers)
    ctx = _workers.get_context()
    links = [ctx.Pipe(duplex=False) for _ in range(n)]
    procs, ctrl = [], []
    try:
        with _workers.thread_limit_env(1):
            for r in range(n):
                parent_end, child_end = ctx.Pipe()
                p = ctx.Process(target=_allreduce_worker, daemon=True,
                                args=(r, n, child_end, links[r][1], links[(r - 1) % n][0],
                                      np.ascontiguousarray(buffers[r]), op))
                p.start()
                child_end.close()
                procs.append(p)
                ctrl.append(parent_end)
        replies = _workers.receive(dict(enumerate(ctrl)), procs, timeout, "all-reduce result")
        return [replies[r][1] for r in range(n)]
    finally:
        _workers.stop_workers(procs, ctrl + [c for link in links for c in link], timeout=5.0)

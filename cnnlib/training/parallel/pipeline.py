"""Model (pipeline) parallelism: stages in worker processes, micro-batches.

(Part III, parallelism.) A :class:`~cnnlib.nn.Sequential` model is cut into
``p`` consecutive stages (:func:`split_model`); each stage lives in its own
process. A forward pass sends activations from stage ``s`` to ``s + 1``; the
backward pass sends the gradient of those activations back. Run naively (one
batch at a time) only one stage works at any moment. Cutting the batch into
``m`` micro-batches lets stage ``s`` start micro-batch ``j + 1`` while stage
``s + 1`` works on ``j`` (GPipe, Huang et al. 2019). The schedules
(:func:`pipeline_schedule`):

* ``"gpipe"``: every stage runs all ``m`` forwards, then all ``m``
  backwards (in the same micro-batch order);
* ``"1f1b"``: stage ``s`` runs ``min(p - 1 - s, m)`` warm-up forwards, then
  alternates one forward and one backward, then drains the backwards
  (PipeDream-flush / Megatron-LM). Same bubble, but a stage keeps at most
  ``p - s`` micro-batches of activations instead of ``m``.

With equal stages and per-micro-batch times ``t_f``, ``t_b`` the step takes
``(m + p - 1)(t_f + t_b)`` while each stage is busy for ``m (t_f + t_b)``,
so the idle fraction, the *bubble*, is ``(p - 1) / (m + p - 1)``
(:func:`bubble_formula`). :func:`simulate_pipeline` computes the timeline
of any schedule for given (possibly unequal) stage times;
:class:`Pipeline` runs it for real and returns per-stage busy intervals,
from which :func:`bubble_fraction` measures the bubble.

cnnlib layers keep only the values of their most recent ``forward``; a
stage that runs several forwards before the matching backwards therefore
*stashes* each micro-batch's saved values and restores them before its
backward.
"""

import pickle
import queue
import threading
import time

import numpy as np

from ... import nn
from ..._validate import _is_int
from . import _workers
from .allreduce import chunk_bounds
from .data_parallel import _check_batch

__all__ = ["bubble_formula", "split_model", "profile_layers", "balanced_boundaries",
           "pipeline_schedule", "simulate_pipeline", "bubble_fraction", "peak_stash", "Pipeline",
           "plot_pipeline_timeline"]

_KINDS = ("gpipe", "1f1b")


def _check_pm(num_stages, num_microbatches):
    if not _is_int(num_stages) or num_stages < 1:
        raise ValueError(f"num_stages must be a positive int, got {num_stages!r}")
    if not _is_int(num_microbatches) or num_microbatches < 1:
        raise ValueError(f"num_microbatches must be a positive int, got {num_microbatches!r}")
    return int(num_stages), int(num_microbatches)


def _check_kind(kind):
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")


def bubble_formula(num_stages, num_microbatches):
    """The ideal bubble fraction ``(p - 1) / (m + p - 1)`` (equal stages, no communication cost)."""
    p, m = _check_pm(num_stages, num_microbatches)
    return (p - 1) / (m + p - 1)


def split_model(model, boundaries):
    """Cut a :class:`~cnnlib.nn.Sequential` at the layer indices ``boundaries``.

    ``split_model(model, [3, 7])`` returns ``[model[0:3], model[3:7],
    model[7:]]``: new Sequentials sharing the model's layers.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be a cnnlib.nn.Sequential, got {type(model).__name__}")
    bounds = list(boundaries)
    if not all(_is_int(b) for b in bounds):
        raise TypeError(f"boundaries must be ints, got {boundaries!r}")
    edges = [0, *bounds, len(model)]
    if any(a >= b for a, b in zip(edges, edges[1:])):
        raise ValueError(f"boundaries must increase strictly inside (0, {len(model)}), "
                         f"got {boundaries!r}")
    return [model[a:b] for a, b in zip(edges, edges[1:])]


def profile_layers(model, x, repeats=3):
    """Seconds each layer of a Sequential takes for forward + backward on ``x``.

    Runs the whole model ``repeats`` times (after one untimed warm-up) and
    returns the per-layer median, an array of length ``len(model)``; the
    backward uses a gradient of ones. Zeroes the model's gradients afterwards.
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be a cnnlib.nn.Sequential, got {type(model).__name__}")
    if not _is_int(repeats) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    layers = list(model)
    times = np.zeros((repeats, len(layers)))
    for r in range(-1, repeats):
        h = x
        for i, layer in enumerate(layers):
            t0 = time.perf_counter()
            h = layer(h)
            if r >= 0:
                times[r, i] += time.perf_counter() - t0
        g = np.ones_like(h)
        for i in reversed(range(len(layers))):
            t0 = time.perf_counter()
            g = layers[i].backward(g)
            if r >= 0:
                times[r, i] += time.perf_counter() - t0
    model.zero_grad()
    return np.median(times, axis=0)


def balanced_boundaries(costs, num_stages):
    """Cut points that split consecutive ``costs`` into ``num_stages`` groups with the
    smallest possible maximum group cost (exact, by dynamic programming).

    Returns the ``num_stages - 1`` boundaries for :func:`split_model`.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim != 1 or np.any(costs < 0) or not np.all(np.isfinite(costs)):
        raise ValueError("costs must be a 1-d array of non-negative finite numbers")
    if not _is_int(num_stages) or not 1 <= num_stages <= len(costs):
        raise ValueError(f"num_stages must be an int in [1, {len(costs)}], got {num_stages!r}")
    n = len(costs)
    prefix = np.concatenate([[0.0], np.cumsum(costs)])
    best = np.full((num_stages + 1, n + 1), np.inf)
    cut = np.zeros((num_stages + 1, n + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for k in range(1, num_stages + 1):
        for i in range(k, n + 1):
            for j in range(k - 1, i):
                v = max(best[k - 1, j], prefix[i] - prefix[j])
                if v < best[k, i]:
                    best[k, i], cut[k, i] = v, j
    bounds, i = [], n
    for k in range(num_stages, 1, -1):
        i = int(cut[k, i])
        bounds.append(i)
    return bounds[::-1]


def pipeline_schedule(num_stages, num_microbatches, kind="gpipe"):
    """The order in which each stage runs its operations.

    Returns a list (one per stage) of lists of ``("F", j)`` and ``("B", j)``
    for micro-batches ``j = 0 .. m-1``; see the module docstring for the two
    kinds.
    """
    p, m = _check_pm(num_stages, num_microbatches)
    _check_kind(kind)
    if kind == "gpipe":
        return [[("F", j) for j in range(m)] + [("B", j) for j in range(m)] for _ in range(p)]
    out = []
    for s in range(p):
        warm = min(p - 1 - s, m)
        ops = [("F", j) for j in range(warm)]
        for j in range(m - warm):
            ops += [("F", warm + j), ("B", j)]
        ops += [("B", j) for j in range(m - warm, m)]
        out.append(ops)
    return out


def _per_stage(value, p, name):
    arr = np.broadcast_to(np.asarray(value, dtype=np.float64), (p,)) if np.ndim(value) == 0 \
        else np.asarray(value, dtype=np.float64)
    if arr.shape != (p,) or np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a non-negative number or one per stage ({p}), "
                         f"got {value!r}")
    return arr


def simulate_pipeline(num_stages, num_microbatches, kind="gpipe", forward_time=1.0,
                      backward_time=2.0):
    """Timeline of a pipeline schedule with given per-micro-batch stage times.

    ``forward_time`` / ``backward_time``: a number or one per stage. An
    operation starts as soon as its stage is free and its input exists
    (``F(s, j)`` after ``F(s-1, j)``; ``B(s, j)`` after ``B(s+1, j)``, and on
    the last stage after ``F(p-1, j)``); communication is free.

    Returns a list of ``(stage, op, j, start, end)`` tuples.
    """
    p, m = _check_pm(num_stages, num_microbatches)
    tf = _per_stage(forward_time, p, "forward_time")
    tb = _per_stage(backward_time, p, "backward_time")
    schedule = pipeline_schedule(p, m, kind)
    done = {}
    free = np.zeros(p)
    pos = [0] * p
    events = []
    while any(pos[s] < len(schedule[s]) for s in range(p)):
        progressed = False
        for s in range(p):
            while pos[s] < len(schedule[s]):
                op, j = schedule[s][pos[s]]
                dep = (s - 1, "F", j) if op == "F" else (s + 1, "B", j)
                if op == "F" and s == 0:
                    dep = None
                if op == "B" and s == p - 1:
                    dep = (s, "F", j)
                if dep is not None and dep not in done:
                    break
                start = max(free[s], done[dep] if dep is not None else 0.0)
                end = start + (tf[s] if op == "F" else tb[s])
                done[(s, op, j)] = end
                free[s] = end
                events.append((s, op, j, start, end))
                pos[s] += 1
                progressed = True
        if not progressed:  # pragma: no cover - the schedules above never deadlock
            raise RuntimeError("pipeline schedule deadlocked")
    return sorted(events, key=lambda e: (e[0], e[3]))


def bubble_fraction(events, num_stages=None):
    """Idle fraction ``1 - sum(busy) / (p * span)`` of a timeline.

    ``events``: ``(stage, op, j, start, end)`` tuples, as returned by
    :func:`simulate_pipeline` or :meth:`Pipeline.run`; ``span`` runs from
    the earliest start to the latest end over all stages.
    """
    events = list(events)
    if not events:
        raise ValueError("events is empty")
    p = num_stages if num_stages is not None else len({e[0] for e in events})
    start = min(e[3] for e in events)
    end = max(e[4] for e in events)
    busy = sum(e[4] - e[3] for e in events)
    if end <= start:
        raise ValueError("events span no time")
    return 1.0 - busy / (p * (end - start))


def peak_stash(schedule_for_stage):
    """Most micro-batches whose activations a stage holds at once under its schedule."""
    held = peak = 0
    for op, _ in schedule_for_stage:
        held += 1 if op == "F" else -1
        peak = max(peak, held)
    return peak


# ---------------------------------------------------------------------------
# The real thing: one process per stage
# ---------------------------------------------------------------------------

class _Sender:
    """A thread that sends arrays on one connection, so that compute never blocks on a send."""

    def __init__(self, conn):
        self.conn = conn
        self.queue = queue.Queue()
        self.error = None
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            item = self.queue.get()
            try:
                if item is not None and self.error is None:
                    _workers.send_array(self.conn, *item)
            except Exception as exc:  # reported by flush()
                self.error = exc
            finally:
                self.queue.task_done()
            if item is None:
                return

    def put(self, tag, array):
        self.queue.put((tag, array))

    def flush(self):
        self.queue.join()
        if self.error is not None:
            raise RuntimeError(f"sending failed: {self.error!r}")


def _stash(modules):
    return [m.saved(required=False) for m in modules]


def _restore(modules, saved):
    for m, values in zip(modules, saved):
        m.restore_saved(values)


def _stage_worker(s, p, threads, ctrl, prev_conn, next_conn, stage_bytes, optimizer,
                  warmup_shape):
    t_entry = time.perf_counter()
    try:
        _workers.limit_threads_here(threads)
        stage = pickle.loads(stage_bytes)
        last = s == p - 1
        loss_fn = nn.CrossEntropyLoss(reduction="sum")
        modules = [m for _, m in stage.named_modules()] + [loss_fn]
        params = list(stage.parameters())
        opt = optimizer(params) if (optimizer is not None and params) else None
        if warmup_shape is not None:
            shape, dtype = warmup_shape
            out = stage(np.zeros((2, *shape), dtype=dtype))
            if last:
                loss_fn(out, np.zeros(2, dtype=np.int64))
                out = loss_fn.backward()
            stage.backward(np.ones_like(out))
            stage.zero_grad()
        senders = {"prev": _Sender(prev_conn) if prev_conn is not None else None,
                   "next": _Sender(next_conn) if next_conn is not None else None}
        ctrl.send(("ready", {"t_entry": t_entry, "t_ready": time.perf_counter()}))
    except Exception:
        ctrl.send(_workers.error_message(s))
        return
    while True:
        msg = ctrl.recv()
        try:
            if msg[0] == "close":
                return
            if msg[0] == "grads":
                grads = [p_.grad.ravel() for p_ in params]
                ctrl.send(("grads", np.concatenate(grads) if grads else np.zeros(0, np.float32)))
                continue
            if msg[0] == "state":
                ctrl.send(("state", stage.state_dict()))
                continue
            _, kind, bounds, x, y, total, update = msg
            m = len(bounds) - 1
            stage.zero_grad()
            stash, events, loss, peak = {}, [], 0.0, 0
            for op, j in pipeline_schedule(p, m, kind)[s]:
                if op == "F":
                    if s == 0:
                        inp = x[bounds[j]:bounds[j + 1]]
                    else:
                        tag, inp = _workers.recv_array(prev_conn)
                        assert tag == ("act", j), (tag, j)
                    t0 = time.perf_counter()
                    out = stage(inp)
                    if last:
                        loss += float(loss_fn(out, y[bounds[j]:bounds[j + 1]]))
                    stash[j] = _stash(modules)
                    t1 = time.perf_counter()
                    if not last:
                        senders["next"].put(("act", j), out)
                else:
                    if not last:
                        tag, grad = _workers.recv_array(next_conn)
                        assert tag == ("grad", j), (tag, j)
                    t0 = time.perf_counter()
                    _restore(modules, stash.pop(j))
                    if last:
                        grad = loss_fn.backward(1.0 / total)
                    grad_in = stage.backward(grad)
                    t1 = time.perf_counter()
                    if s > 0:
                        senders["prev"].put(("grad", j), grad_in)
                peak = max(peak, len(stash))
                events.append((s, op, j, t0, t1))
            for sender in senders.values():
                if sender is not None:
                    sender.flush()
            if update and opt is not None:
                opt.step()
            ctrl.send(("done", {"events": events, "loss_sum": loss, "peak_stash": peak}))
        except Exception:
            ctrl.send(_workers.error_message(s))


class Pipeline(_workers.WorkerGroup):
    """Stages of a model in ``p`` persistent worker processes, trained with micro-batches.

    Inputs:
    - stages: list of :class:`~cnnlib.nn.Module` (e.g. from
      :func:`split_model`); the last one outputs class logits; each stage is
      pickled to its worker
    - optimizer: ``callable(params) -> Optimizer`` built by every stage for
      its own parameters (picklable), needed for ``run(..., update=True)``
    - kind: ``"gpipe"`` or ``"1f1b"``
    - threads_per_stage: BLAS/Numba threads of each worker (default 1)
    - warmup_shape: the shape of one input example, e.g. ``(1, 28, 28)``;
      if given, each stage runs a tiny forward/backward at start-up
    - timeout: seconds to wait for any reply

    Use as a context manager or call :meth:`close`. ``startup`` holds the
    per-stage start-up seconds as in :class:`~cnnlib.training.parallel.data_parallel.DataParallel`.
    """

    _name = "Pipeline"
    _member = "stage"

    def __init__(self, stages, optimizer=None, *, kind="gpipe", threads_per_stage=1,
                 warmup_shape=None, timeout=120.0):
        stages = list(stages)
        if not stages or not all(isinstance(st, nn.Module) for st in stages):
            raise TypeError("stages must be a non-empty list of cnnlib.nn.Module")
        _check_kind(kind)
        if not _is_int(threads_per_stage) or threads_per_stage < 1:
            raise ValueError(f"threads_per_stage must be a positive int, got {threads_per_stage!r}")
        if optimizer is not None and not callable(optimizer):
            raise TypeError("optimizer must be None or a callable params -> Optimizer")
        if not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a positive number, got {timeout!r}")
        self.num_stages = p = len(stages)
        self.kind = kind
        self.timeout = float(timeout)
        self._has_optimizer = optimizer is not None
        self._procs, self._ctrl, self._links = [], [], []
        self._broken = False
        shapes = [warmup_shape] * p
        if warmup_shape is not None:  # the input shape of each stage, found in the parent
            params = [q for st in stages for q in st.parameters()]
            h = np.zeros((1, *warmup_shape), dtype=params[0].dtype if params else np.float32)
            for i, st in enumerate(stages):
                shapes[i] = (h.shape[1:], h.dtype.str)
                h = st(h)
        ctx = _workers.get_context()
        try:
            self._links = [ctx.Pipe() for _ in range(p - 1)]  # link s: stage s <-> s + 1
            t0 = time.perf_counter()
            with _workers.thread_limit_env(threads_per_stage):
                for s in range(p):
                    parent_end, child_end = ctx.Pipe()
                    prev_conn = self._links[s - 1][1] if s > 0 else None
                    next_conn = self._links[s][0] if s < p - 1 else None
                    proc = ctx.Process(target=_stage_worker, name=f"cnnlib-stage-{s}", daemon=True,
                                       args=(s, p, threads_per_stage, child_end, prev_conn,
                                             next_conn, pickle.dumps(stages[s]), optimizer,
                                             shapes[s]))
                    proc.start()
                    child_end.close()
                    self._procs.append(proc)
                    self._ctrl.append(parent_end)
            replies = self._receive("start-up")
            self._record_startup(replies, t0)
        except BaseException:
            self._broken = True
            self.close()
            raise

    def run(self, x, y, num_microbatches, update=False):
        """Forward and backward of the batch (x, y) through the pipeline.

        The batch is cut into ``num_microbatches`` near-equal micro-batches;
        gradients are accumulated over them (the gradient of the mean loss
        over the whole batch); with ``update=True`` each stage then applies
        its optimiser. Returns a dict: ``"loss"`` (mean over the batch),
        ``"events"`` (``(stage, op, j, start, end)`` with times in seconds
        from the first start), ``"wall"`` (seconds, as seen by the parent),
        ``"peak_stash"`` (per stage).
        """
        self._check_open()
        _check_batch(x, y)
        if not _is_int(num_microbatches) or not 1 <= num_microbatches <= len(x):
            raise ValueError(f"num_microbatches must be an int in [1, {len(x)}], "
                             f"got {num_microbatches!r}")
        if update and not self._has_optimizer:
            raise RuntimeError("update=True needs an optimizer: pass optimizer= to Pipeline")
        bounds = chunk_bounds(len(x), num_microbatches)
        p = self.num_stages
        t0 = time.perf_counter()
        for s, conn in enumerate(self._ctrl):
            conn.send(("run", self.kind, bounds, x if s == 0 else None,
                       y if s == p - 1 else None, len(x), update))
        replies = self._receive("micro-batch results")
        wall = time.perf_counter() - t0
        events = [e for s in range(p) for e in replies[s][1]["events"]]
        start = min(e[3] for e in events)
        events = [(s, op, j, a - start, b - start) for s, op, j, a, b in events]
        return {"loss": replies[p - 1][1]["loss_sum"] / len(x), "events": events, "wall": wall,
                "peak_stash": [replies[s][1]["peak_stash"] for s in range(p)]}

    def gradients(self):
        """Each stage's accumulated gradient, flattened (a list by stage)."""
        self._check_open()
        for conn in self._ctrl:
            conn.send(("grads",))
        replies = self._receive("gradients")
        return [replies[s][1] for s in range(self.num_stages)]

    def state_dicts(self):
        """Each stage's ``state_dict()`` (a list by stage)."""
        self._check_open()
        for conn in self._ctrl:
            conn.send(("state",))
        replies = self._receive("state")
        return [replies[s][1] for s in range(self.num_stages)]


def plot_pipeline_timeline(events, num_stages=None, ax=None, title=None):
    """Draw a timeline (one row per stage; forwards light, backwards dark, numbered by
    micro-batch) of ``(stage, op, j, start, end)`` events; returns the Figure."""
    import matplotlib.pyplot as plt

    events = list(events)
    if not events:
        raise ValueError("events is empty")
    p = num_stages if num_stages is not None else max(e[0] for e in events) + 1
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.5 + 0.45 * p))
    span = max(e[4] for e in events) - min(e[3] for e in events)
    for s, op, j, start, end in events:
        color = "#9ecae1" if op == "F" else "#3182bd"
        ax.barh(s, end - start, left=start, height=0.8, color=color, edgecolor="white")
        if (end - start) > 0.025 * span:
            ax.text((start + end) / 2, s, f"{j}", ha="center", va="center", fontsize=7,
                    color="black" if op == "F" else "white")
    ax.set_yticks(range(p), [f"stage {s}" for s in range(p)])
    ax.invert_yaxis()
    ax.set_xlabel("time")
    bubble = bubble_fraction(events, p)
    ax.set_title(title if title is not None else f"bubble {bubble:.0%}", fontsize=10)
    from matplotlib.patches import Patch
    ax.legend(handles=[Patch(color="#9ecae1", label="forward"),
                       Patch(color="#3182bd", label="backward")],
              loc="lower right", fontsize=7, frameon=False)
    return ax.figure

"""Speed of cnnlib against PyTorch and NumPy: LeNet-5 training steps, convolution, max pooling.

Run it from the repository root::

    python -m cnnlib.tools.bench                      # every case, about a minute
    python -m cnnlib.tools.bench --threads 1          # single-threaded
    python -m cnnlib.tools.bench --cases lenet,vgg    # only the cases whose name matches
    python -m cnnlib.tools.bench --quick --json out.json

or, from a notebook, ``rows = cnnlib.tools.bench.run(quick=True)["rows"]``.

How to read it.  The first line describes the machine, with the float32
matrix-product speed (sgemm, 1024x1024) that NumPy reaches in the same run:
no convolution built on a matrix product can beat it, so it is the practical
ceiling for the GFLOP/s column.  It also says how many cores other
processes kept busy during the run (from /proc/stat); above a quarter of a
core a note warns that the timings are unreliable.  Each case then gets two
rows, ``fwd`` and ``bwd``, timed for three implementations in the same run:

* ``cnnlib``: ``cnnlib.functional`` (Numba kernels + BLAS);
* ``numpy``: the textbook baseline below, im2col with
  ``sliding_window_view`` and one ``np.matmul`` per group, vectorised NumPy
  without Numba;
* ``torch``: PyTorch on the CPU, if it is installed ("n/a" otherwise).  Its
  forward runs under ``torch.no_grad()``; its backward times
  ``torch.autograd.grad`` on a graph built once (the forward is not included).

Two more rows, ``step``, time a whole LeNet-5 training step on MNIST-sized
digits at batch 64 and 256: forward, cross-entropy loss, backward and an SGD
step with momentum, for ``cnnlib.models.zoo.lenet5`` and the same PyTorch
model started from the same weights (no NumPy baseline: it has no layers).
Their ``max rel err`` compares the two models' weights after one step, and
the summary gives the time of an epoch of 60,000 images that each implies.

Times are medians in milliseconds; a ratio below 1 means cnnlib is faster.
``max rel err`` is the largest ``max|a - b| / max|b|`` over every pair of
implementations and every output, checked once per case before timing.  The
summary lines compare the median cnnlib/torch ratio of groups of rows with
the targets of the speed issue.

Every implementation runs on the same number of threads (``--threads``):
Numba's via ``numba.set_num_threads``, BLAS's via threadpoolctl (when it is
installed) and PyTorch's via ``torch.set_num_threads``.  Each measurement
starts with one call that is not timed (it compiles the Numba kernels), then
repeats for at least ``--min-time`` seconds and at least 5 times.
"""

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm import tqdm

from .. import functional as F
from .. import nn, optim
from ..models import zoo
from .._timing import thread_limits, time_call

__all__ = ["Case", "conv_case", "pool_case", "step_case", "bench_step", "select_cases",
           "flop_count", "make_arrays",
           "numpy_im2col", "numpy_conv2d", "numpy_conv2d_backward", "numpy_max_pool2d",
           "numpy_max_pool2d_backward", "time_call", "rel_err", "bench_case", "summarise",
           "thread_limits", "cpu_model", "blas_description", "sgemm_gflops", "machine_info",
           "busy_seconds", "other_cores", "default_threads", "run", "startup_times",
           "format_startup", "format_report", "main"]

try:
    import torch
    import torch.nn.functional as torch_F
    TORCH_MISSING = None
except ImportError as exc:  # the benchmark still runs, without the torch columns
    torch = torch_F = None
    TORCH_MISSING = f"PyTorch is not installed ({exc}); the torch columns say n/a"

try:
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:
    threadpool_info = threadpool_limits = None

# (label, groups or case names of rows, passes, target for the median cnnlib/torch ratio)
TARGETS = (
    ("LeNet-5 training step, batch 64", ("step64",), ("step",), 1.0),
    ("LeNet-5 training step, batch 256", ("step256",), ("step",), 1.0),
    ("LeNet-scale (all LeNet rows)", ("lenet",), ("fwd", "bwd"), 1.0),
    ("max-pool backward (as nn.MaxPool2d)", ("lenet-pool1", "lenet-pool2"), ("bwd",), 2.0),
    ("VGG/ResNet-scale forward", ("vgg", "resnet"), ("fwd",), 2.0),
    ("VGG/ResNet-scale backward", ("vgg", "resnet"), ("bwd",), 2.5),
    ("depthwise (fwd and bwd)", ("depthwise",), ("fwd", "bwd"), 1.5),
)
EPOCH_IMAGES = 60_000  # one pass over the MNIST training set


# ----------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmark problem: a float32 conv2d (``op="conv"``) or max_pool2d.

    ``w_shape`` is the conv weight's shape (C_out, C_in/groups, kH, kW);
    pools use ``kernel`` instead.  ``group`` names the summary line it counts in.
    """
    name: str
    group: str
    op: str
    x_shape: tuple
    w_shape: tuple = None
    kernel: int = None
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    groups: int = 1


def conv_case(name, group, n, c_in, c_out, hw, k, stride=1, padding=0, dilation=1, groups=1):
    return Case(name, group, "conv", (n, c_in, hw, hw), (c_out, c_in // groups, k, k),
                stride=stride, padding=padding, dilation=dilation, groups=groups)


def pool_case(name, group, x_shape, k, stride, padding=0):
    return Case(name, group, "maxpool", x_shape, kernel=k, stride=stride, padding=padding)


def step_case(name, group, batch):
    """A LeNet-5 training step on a batch of (batch, 1, 28, 28) digits."""
    return Case(name, group, "step", (batch, 1, 28, 28))


CASES = [
    step_case("lenet5-step-b64", "step64", 64),
    step_case("lenet5-step-b256", "step256", 256),
    conv_case("lenet-conv1", "lenet", 64, 1, 6, 32, 5),
    conv_case("lenet-conv2", "lenet", 64, 6, 16, 14, 5),
    pool_case("lenet-pool1", "lenet", (64, 6, 28, 28), 2, 2),
    pool_case("lenet-pool2", "lenet", (64, 16, 10, 10), 2, 2),
    conv_case("vgg-3x3", "vgg", 8, 64, 64, 56, 3, padding=1),
    conv_case("resnet-3x3-s2", "resnet", 8, 64, 128, 56, 3, stride=2, padding=1),
    conv_case("depthwise-3x3", "depthwise", 8, 64, 64, 56, 3, padding=1, groups=64),
    conv_case("dilated-3x3-d2", "dilated", 8, 64, 64, 56, 3, padding=2, dilation=2),
]

TINY_CASES = [  # for tests: every setting off its default; not in the default run
    step_case("tiny-step", "tiny", 4),
    conv_case("tiny-conv", "tiny", 2, 4, 6, 9, 3, stride=2, padding=1, dilation=2, groups=2),
    conv_case("tiny-depthwise", "tiny", 2, 4, 4, 8, 3, padding=1, groups=4),
    pool_case("tiny-pool", "tiny", (2, 3, 9, 9), 3, 2, padding=1),
]


def select_cases(cases=None):
    """Resolve ``cases``: None (the default list), or Case objects and name filters.

    A string keeps every case (tiny ones included) whose name contains it,
    ignoring case; ``"lenet,vgg"`` is two filters.
    """
    if cases is None:
        return list(CASES)
    if isinstance(cases, str):
        cases = cases.split(",")
    chosen = []
    for item in cases:
        if isinstance(item, Case):
            found = [item]
        else:
            found = [c for c in CASES + TINY_CASES if item.strip().lower() in c.name]
            if not found:
                names = ", ".join(c.name for c in CASES + TINY_CASES)
                raise ValueError(f"cases: no case name contains {item!r}; names are {names}")
        chosen += [c for c in found if c not in chosen]
    return chosen


def flop_count(case, pass_):
    """Operations per call: 2*MACs for a conv (backward = 2x forward), one per
    window element for a pool."""
    if case.op == "step":
        return None
    y_shape = _output_shape(case)
    if case.op == "maxpool":
        return int(np.prod(y_shape)) * case.kernel ** 2
    c_per_group, kh, kw = case.w_shape[1:]
    fwd = 2 * int(np.prod(y_shape)) * c_per_group * kh * kw
    return fwd if pass_ == "fwd" else 2 * fwd


def _output_shape(case):
    n, c, h, w = case.x_shape
    k = case.kernel if case.op == "maxpool" else case.w_shape[2]
    span = case.dilation * (k - 1) + 1
    out = [(s + 2 * case.padding - span) // case.stride + 1 for s in (h, w)]
    c_out = c if case.op == "maxpool" else case.w_shape[0]
    return (n, c_out, *out)


def make_arrays(case, seed=0):
    """Random float32 input, weight, bias and upstream gradient for a case."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(case.x_shape, dtype=np.float32)
    gy = rng.standard_normal(_output_shape(case), dtype=np.float32)
    if case.op == "maxpool":
        return x, None, None, gy
    w = rng.standard_normal(case.w_shape, dtype=np.float32) / np.sqrt(np.prod(case.w_shape[1:]))
    b = rng.standard_normal(case.w_shape[0], dtype=np.float32)
    return x, w.astype(np.float32), b, gy


# ----------------------------------------------------------------------------
# The NumPy baseline: im2col + one matmul per group, no Numba
# ----------------------------------------------------------------------------

def _windows(x, k, stride, padding, dilation, fill=0.0):
    """View (N, C, H_out, W_out, k, k) of the padded input's receptive fields."""
    pads = ((0, 0), (0, 0), (padding, padding), (padding, padding))
    xp = np.pad(x, pads, constant_values=fill)
    span = dilation * (k - 1) + 1
    win = sliding_window_view(xp, (span, span), axis=(2, 3))
    return win[:, :, ::stride, ::stride, ::dilation, ::dilation]


def numpy_im2col(x, k, stride, padding, dilation):
    """cols of shape (C*k*k, N*H_out*W_out), rows ordered (c, p, q) like the
    weight, and (H_out, W_out)."""
    win = _windows(x, k, stride, padding, dilation)
    cols = win.transpose(1, 4, 5, 0, 2, 3).reshape(x.shape[1] * k * k, -1)  # copies
    return cols, win.shape[2:4]


def numpy_conv2d(x, w, b, stride, padding, dilation, groups):
    n, c_out = x.shape[0], w.shape[0]
    cols, (ho, wo) = numpy_im2col(x, w.shape[2], stride, padding, dilation)
    cols = cols.reshape(groups, -1, cols.shape[1])
    y = np.matmul(w.reshape(groups, c_out // groups, -1), cols)  # one GEMM per group
    y = y.reshape(c_out, n, ho, wo).transpose(1, 0, 2, 3) + b[None, :, None, None]
    return np.ascontiguousarray(y)


def numpy_conv2d_backward(gy, x, w, b, stride, padding, dilation, groups):
    """(grad_input, grad_weight, grad_bias): GEMMs, then col2im by a loop over the taps."""
    n, c_in, h, wd = x.shape
    c_out, _, k, _ = w.shape
    cols, (ho, wo) = numpy_im2col(x, k, stride, padding, dilation)
    cols = cols.reshape(groups, -1, cols.shape[1])
    gy2 = gy.transpose(1, 0, 2, 3).reshape(groups, c_out // groups, -1)
    gw = np.matmul(gy2, cols.transpose(0, 2, 1)).reshape(w.shape)
    w2 = w.reshape(groups, c_out // groups, -1)
    dcols = np.matmul(w2.transpose(0, 2, 1), gy2).reshape(c_in, k, k, n, ho, wo)
    gxp = np.zeros((n, c_in, h + 2 * padding, wd + 2 * padding), dtype=x.dtype)
    for p in range(k):
        for q in range(k):
            rows = slice(p * dilation, p * dilation + stride * (ho - 1) + 1, stride)
            cols_ = slice(q * dilation, q * dilation + stride * (wo - 1) + 1, stride)
            gxp[:, :, rows, cols_] += dcols[:, p, q].transpose(1, 0, 2, 3)
    gx = gxp[:, :, padding:padding + h, padding:padding + wd]
    return np.ascontiguousarray(gx), gw, gy.sum(axis=(0, 2, 3))


def numpy_max_pool2d(x, k, stride, padding):
    return _windows(x, k, stride, padding, 1, fill=-np.inf).max(axis=(4, 5))


def numpy_max_pool2d_backward(gy, x, k, stride, padding):
    """Route each gradient to the first maximum of its window, one tap at a time."""
    n, c, h, w = x.shape
    ho, wo = gy.shape[2:]
    win = _windows(x, k, stride, padding, 1, fill=-np.inf)
    arg = win.reshape(n, c, ho, wo, k * k).argmax(axis=4)
    gxp = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
    for t in range(k * k):
        p, q = divmod(t, k)
        rows = slice(p, p + stride * (ho - 1) + 1, stride)
        cols = slice(q, q + stride * (wo - 1) + 1, stride)
        gxp[:, :, rows, cols] += np.where(arg == t, gy, 0)
    return np.ascontiguousarray(gxp[:, :, padding:padding + h, padding:padding + w])


# ----------------------------------------------------------------------------
# The three implementations of one case, as (forward, backward) closures
# ----------------------------------------------------------------------------

def _cnnlib_calls(case, x, w, b, gy):
    s, p, d = case.stride, case.padding, case.dilation
    if case.op == "maxpool":  # as nn.MaxPool2d runs it: the forward keeps the winners' indices
        _, indices = F.max_pool2d(x, case.kernel, s, p, return_indices=True)
        return (lambda: F.max_pool2d(x, case.kernel, s, p, return_indices=True)[0],
                lambda: (F.max_pool2d_backward(gy, x, case.kernel, s, p, indices=indices),))
    return (lambda: F.conv2d(x, w, b, s, p, d, case.groups),
            lambda: F.conv2d_backward(gy, x, w, b, s, p, d, case.groups))


def _numpy_calls(case, x, w, b, gy):
    s, p, d = case.stride, case.padding, case.dilation
    if case.op == "maxpool":
        return (lambda: numpy_max_pool2d(x, case.kernel, s, p),
                lambda: (numpy_max_pool2d_backward(gy, x, case.kernel, s, p),))
    return (lambda: numpy_conv2d(x, w, b, s, p, d, case.groups),
            lambda: numpy_conv2d_backward(gy, x, w, b, s, p, d, case.groups))


def _torch_calls(case, x, w, b, gy):
    if torch is None:
        return None, None
    s, p, d = case.stride, case.padding, case.dilation
    inputs = [torch.from_numpy(a).requires_grad_() for a in (x, w, b) if a is not None]
    if case.op == "maxpool":
        def op(xt):
            return torch_F.max_pool2d(xt, case.kernel, s, p)
    else:
        def op(xt, wt, bt):
            return torch_F.conv2d(xt, wt, bt, s, p, d, case.groups)

    def forward():
        with torch.no_grad():
            return op(*inputs)

    y = op(*inputs)  # the graph that every backward call reuses
    gy_t = torch.from_numpy(gy)
    return forward, lambda: torch.autograd.grad(y, inputs, gy_t, retain_graph=True)


# ----------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------

def rel_err(a, b):
    """``max|a - b| / max|b|``, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), np.finfo(np.float64).tiny))


def _as_tuple(out):
    out = out if isinstance(out, tuple) else (out,)
    return [o.detach().numpy() if torch is not None and isinstance(o, torch.Tensor) else o
            for o in out if o is not None]


def _agreement(results):
    """Errors of cnnlib against numpy and torch, and the worst over all pairs."""
    outs = {name: _as_tuple(r) for name, r in results.items() if r is not None}
    err = {}
    names = list(outs)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            err[first, second] = max(rel_err(a, b) for a, b in zip(outs[first], outs[second]))
    return err.get(("cnnlib", "numpy")), err.get(("cnnlib", "torch")), max(err.values())


def _ratio(a, b):
    return a / b if a is not None and b is not None else None


def bench_case(case, min_time, repeats, settle=0.0):
    """Check agreement, then time forward and backward; return two rows."""
    x, w, b, gy = make_arrays(case)
    calls = {"cnnlib": _cnnlib_calls(case, x, w, b, gy),
             "numpy": _numpy_calls(case, x, w, b, gy),
             "torch": _torch_calls(case, x, w, b, gy)}
    rows = []
    for k, pass_ in enumerate(("fwd", "bwd")):
        fns = {name: pair[k] for name, pair in calls.items()}
        err_numpy, err_torch, worst = _agreement(
            {name: fn() if fn is not None else None for name, fn in fns.items()})
        ms = {name: time_call(fn, min_time, repeats, settle) if fn is not None else None
              for name, fn in fns.items()}
        rows.append({
            "case": case.name, "group": case.group, "pass": pass_,
            "cnnlib_ms": ms["cnnlib"], "numpy_ms": ms["numpy"], "torch_ms": ms["torch"],
            "ratio_torch": _ratio(ms["cnnlib"], ms["torch"]),
            "ratio_numpy": _ratio(ms["cnnlib"], ms["numpy"]),
            "gflops": flop_count(case, pass_) / (ms["cnnlib"] * 1e-3) / 1e9,
            "err_numpy": err_numpy, "err_torch": err_torch, "max_rel_err": worst,
        })
    return rows


def _lenet5_steps(batch, seed=0):
    """(cnnlib step, torch step or None, agreement after one step): the same
    LeNet-5, weights, batch and SGD (lr 0.01, momentum 0.9) in both."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, 1, 28, 28), dtype=np.float32)
    target = rng.integers(0, 10, batch)
    model = zoo.lenet5(rng=seed)
    start = {k: v.copy() for k, v in model.state_dict().items()}
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def cnnlib_step():
        opt.zero_grad()
        loss_fn(model(x), target)
        model.backward(loss_fn.backward())
        opt.step()

    if torch is None:
        return cnnlib_step, None, None
    tmodel = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10))
    tmodel.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in start.items()})
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    tloss = torch.nn.CrossEntropyLoss()
    xt, tt = torch.from_numpy(x), torch.from_numpy(target)

    def torch_step():
        topt.zero_grad()
        tloss(tmodel(xt), tt).backward()
        topt.step()

    cnnlib_step()
    torch_step()
    after = model.state_dict()
    err = max(rel_err(after[k], v.detach().numpy()) for k, v in tmodel.state_dict().items())
    return cnnlib_step, torch_step, err


def bench_step(case, min_time, repeats, settle=0.0):
    """Time the LeNet-5 training step of a ``step`` case; return one row."""
    batch = case.x_shape[0]
    cnnlib_step, torch_step, err = _lenet5_steps(batch)
    ms = {"cnnlib": time_call(cnnlib_step, min_time, repeats, settle),
          "torch": time_call(torch_step, min_time, repeats, settle) if torch_step else None}
    return [{
        "case": case.name, "group": case.group, "pass": "step",
        "cnnlib_ms": ms["cnnlib"], "numpy_ms": None, "torch_ms": ms["torch"],
        "ratio_torch": _ratio(ms["cnnlib"], ms["torch"]), "ratio_numpy": None, "gflops": None,
        "err_numpy": None, "err_torch": err, "max_rel_err": err,
        "epoch_s": {name: None if t is None else t * 1e-3 * EPOCH_IMAGES / batch
                    for name, t in ms.items()},
    }]


def summarise(rows):
    """Median cnnlib/torch ratio of each group of rows against its target."""
    lines = []
    for label, groups, passes, target in TARGETS:
        ratios = [r["ratio_torch"] for r in rows
                  if (r["group"] in groups or r["case"] in groups) and r["pass"] in passes]
        ratios = [q for q in ratios if q is not None]
        median = statistics.median(ratios) if ratios else None
        lines.append({"label": label, "median_ratio_torch": median, "target": target,
                      "met": None if median is None else bool(median <= target),
                      "rows": len(ratios)})
    return lines


# ----------------------------------------------------------------------------
# Threads and the machine
# ----------------------------------------------------------------------------

def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def blas_description():
    if threadpool_info is None:
        return "unknown (threadpoolctl is not installed: BLAS threads not limited)"
    libs = [f"{i['internal_api']} {i['version']} ({i.get('architecture')}, "
            f"{i['num_threads']} threads)" for i in threadpool_info() if i["user_api"] == "blas"]
    return "; ".join(dict.fromkeys(libs)) or "none found by threadpoolctl"


def sgemm_gflops(repeats=5, min_time=0.3, size=1024):
    """NumPy float32 matrix-product speed (median), the ceiling for a GEMM-based conv."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    ms = time_call(lambda: a @ b, min_time, repeats)
    return 2 * size ** 3 / (ms * 1e-3) / 1e9


def machine_info(threads, min_time, repeats):
    return {
        "cpu": cpu_model(), "threads": threads,
        "numpy": np.__version__, "numba": numba.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "numba_threading_layer": numba.config.THREADING_LAYER,
        "blas": blas_description(),
        "sgemm_gflops": sgemm_gflops(repeats, min_time),
    }


def busy_seconds():
    """(CPU seconds every process has spent busy, seconds this process has), or None.

    Read from /proc/stat (Linux); the difference between two readings shows
    how much of the machine other processes took while we were timing.
    """
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:8]]
    except (OSError, ValueError):
        return None
    own = os.times()
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def other_cores(before, wall):
    """Cores' worth of CPU time that other processes used since ``before``."""
    after = busy_seconds()
    if before is None or after is None or wall <= 0:
        return None
    return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall


# ----------------------------------------------------------------------------
# Running and printing
# ----------------------------------------------------------------------------

def default_threads():
    return min(2, os.cpu_count() or 1)


def run(cases=None, threads=2, min_time=0.3, quick=False):
    """Run the benchmark; return ``{"machine", "rows", "summary", "notes"}``.

    ``cases``: None for the default list, or Case objects and name filters
    (see ``select_cases``).  ``quick`` times 2 calls per measurement instead of
    at least 5 calls over ``min_time`` seconds: for tests, not for numbers.
    """
    cases = select_cases(cases)
    min_time, repeats = (0.0, 2) if quick else (min_time, 5)
    before, start = busy_seconds(), time.perf_counter()
    with thread_limits(threads):
        machine = machine_info(threads, min_time, repeats)
        rows = []
        for case in tqdm(cases, desc="cnnlib.tools.bench", unit="case", file=sys.stderr):
            measure = bench_step if case.op == "step" else bench_case
            rows += measure(case, min_time, repeats, settle=0.0 if quick else 0.3)
    machine["other_processes_cores"] = other_cores(before, time.perf_counter() - start)
    notes = [n for n in (TORCH_MISSING,) if n]
    if threadpool_limits is None:
        notes.append("threadpoolctl is not installed: BLAS ran on its default thread count")
    others = machine["other_processes_cores"]
    if others is not None and others > 0.25:
        notes.append(f"other processes kept {others:.2f} of {os.cpu_count()} cores busy during "
                     f"the run: these timings (and ratios) are unreliable")
    if threads > numba.config.NUMBA_NUM_THREADS:
        notes.append(f"Numba is limited to {numba.config.NUMBA_NUM_THREADS} threads")
    return {"machine": machine, "rows": rows, "summary": summarise(rows), "notes": notes}


STARTUP_SNIPPET = """
import time
t0 = time.perf_counter()
import numpy as np
from cnnlib import nn
from cnnlib.models import zoo
t1 = time.perf_counter()
model = zoo.lenet5(rng=0)
x = np.random.default_rng(0).standard_normal((64, 1, 28, 28)).astype(np.float32)
loss = nn.CrossEntropyLoss()
loss(model(x), np.arange(64) % 10)
model.backward(loss.backward())
print(t1 - t0, time.perf_counter() - t1)
"""


def startup_times():
    """Seconds for ``import cnnlib`` and for the first LeNet-5 forward+backward
    in a new process, with an empty Numba cache ("cold") and then with the
    cache that run left behind ("warm").  Uses a temporary NUMBA_CACHE_DIR."""
    result = {}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", STARTUP_SNIPPET], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            result[label] = {"import_s": float(out[0]), "first_step_s": float(out[1])}
    return result


def format_startup(times):
    return "\n".join(f"startup, {label} Numba cache: import cnnlib {t['import_s']:.2f} s, first "
                     f"LeNet-5 forward+backward {t['first_step_s']:.2f} s" for label, t in times.items())


def _fmt(value, spec, width):
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width}{spec}}"


COLUMNS = (  # (heading, key, format, width)
    ("case", "case", "s", 16), ("pass", "pass", "s", 4),
    ("cnnlib ms", "cnnlib_ms", ".3f", 10), ("numpy ms", "numpy_ms", ".3f", 10),
    ("torch ms", "torch_ms", ".3f", 10), ("cnnlib/torch", "ratio_torch", ".2f", 12),
    ("cnnlib/numpy", "ratio_numpy", ".2f", 12), ("GFLOP/s", "gflops", ".1f", 8),
    ("max rel err", "max_rel_err", ".1e", 11),
)

FOOTNOTES = [
    "GFLOP/s counts 2*MACs for convolutions (backward = 2x forward: input and weight "
    "gradients); for max pools, 1 op per window element (a comparison, or in backward the "
    "comparison that finds the argmax again).",
    "torch forward runs under no_grad; torch backward is autograd.grad on a graph built once.",
    "step rows: LeNet-5 forward, loss, backward and SGD (momentum 0.9) step at that batch; "
    "cnnlib's max-pool backward uses the indices its forward kept, as nn.MaxPool2d does.",
    "max rel err = max|a - b| / max|b|, worst over all pairs of implementations and outputs.",
]


def format_report(result):
    """The machine line, the table, the footnotes, the notes and the summary, as text."""
    m = result["machine"]
    lines = [f"machine: {m['cpu']} | {m['threads']} threads | numpy {m['numpy']} | "
             f"numba {m['numba']} ({m['numba_threading_layer']}) | torch {m['torch'] or 'n/a'} "
             f"| BLAS {m['blas']} | sgemm 1024^3 float32: {m['sgemm_gflops']:.1f} GFLOP/s "
             f"| other processes used {_fmt(m['other_processes_cores'], '.2f', 0)} cores",
             ""]
    lines.append("  ".join(f"{h:>{w}}" if i > 1 else f"{h:<{w}}"
                           for i, (h, _, _, w) in enumerate(COLUMNS)))
    for row in result["rows"]:
        lines.append("  ".join(f"{row[k]:<{w}}" if i < 2 else _fmt(row[k], f, w)
                               for i, (_, k, f, w) in enumerate(COLUMNS)))
    lines += [""] + [f"* {n}" for n in FOOTNOTES + result["notes"]] + [""]
    for row in result["rows"]:
        if "epoch_s" in row:
            epoch = row["epoch_s"]
            lines.append(f"{row['case']}: an epoch of {EPOCH_IMAGES:,} images takes "
                         f"{epoch['cnnlib']:.1f} s with cnnlib, "
                         f"{_fmt(epoch['torch'], '.1f', 0)} s with torch")
    for s in result["summary"]:
        verdict = "n/a" if s["met"] is None else ("met" if s["met"] else "MISSED")
        ratio = _fmt(s["median_ratio_torch"], ".2f", 5)
        lines.append(f"{s['label']:<36} median cnnlib/torch {ratio}  "
                     f"(target <= {s['target']:.1f}, {s['rows']} rows): {verdict}")
    return "\n".join(lines)


def main(argv=None):
    names = ", ".join(c.name for c in CASES + TINY_CASES)
    parser = argparse.ArgumentParser(prog="python -m cnnlib.tools.bench", description=__doc__.split(
        "\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="threads for Numba, BLAS and PyTorch (default: %(default)s)")
    parser.add_argument("--min-time", type=float, default=0.3,
                        help="seconds of repeats per measurement (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="2 timed calls per measurement")
    parser.add_argument("--cases", help=f"comma-separated name filters; names: {names}")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--startup", action="store_true",
                        help="also time import and the first LeNet-5 step in new processes, "
                             "with an empty and with a warm Numba cache")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be positive, got {args.threads}")
    try:
        result = run(args.cases, args.threads, args.min_time, args.quick)
    except ValueError as exc:
        parser.error(str(exc))
    print(format_report(result))
    if args.startup:
        result["startup"] = startup_times()
        print(format_startup(result["startup"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()

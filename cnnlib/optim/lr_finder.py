"""The learning-rate range test (Smith 2017) and a rule to read it.

Train for a few hundred steps while the learning rate grows geometrically
from very small to very large, and record the loss of every mini-batch.  At
first the rate is too small to change anything; then the loss falls, faster
and faster; then the steps become too large, the loss turns ragged and
finally explodes.  :func:`range_test` runs the sweep (and puts the model and
the optimiser back as they were), :func:`smooth` smooths the noisy loss, and
:func:`suggest` reads the curve with a fixed, documented rule (see there).
See the chapter "Hyper-parameters" (Part III).
"""

import math

import numpy as np

from .. import nn
from .._random import get_rng
from .._validate import check_count, check_number
from .schedules import Exponential, LinearSweep

__all__ = ["RangeTestResult", "range_test", "smooth", "suggest"]


class RangeTestResult(dict):
    """What :func:`range_test` returns: a dict with attribute access.

    Keys: ``lrs`` and ``losses`` (float64 arrays, one entry per step taken),
    ``smoothed`` (:func:`smooth` of ``losses``), ``beta``, ``diverged``
    (True if the sweep stopped early) and ``suggestion`` (:func:`suggest`,
    ``None`` if the sweep stopped before ``skip_start + 3`` steps).
    """

    __getattr__ = dict.__getitem__


def smooth(losses, beta=0.9):
    """Exponential moving average with bias correction (the "Adam" correction).

    ``avg_t = beta * avg_{t-1} + (1 - beta) * loss_t`` from ``avg_{-1} = 0``,
    and ``smoothed_t = avg_t / (1 - beta ** (t + 1))``, so the first value is
    the first loss itself.  ``losses``: 1-d array-like; returns float64 (N,).
    The average lags the raw curve by about ``beta / (1 - beta)`` steps (9
    steps for 0.9): keep ``beta`` small enough for the sweep's length.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1:
        raise ValueError(f"losses must be 1-d, got shape {losses.shape}")
    beta = check_number(beta, "beta")
    if not beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    out = np.empty_like(losses)
    avg = 0.0
    for t, value in enumerate(losses):
        avg = beta * avg + (1 - beta) * value
        out[t] = avg / (1 - beta ** (t + 1))
    return out


def suggest(lrs, smoothed, skip_start=5):
    """Read an LR range test: the documented rule of this book.

    ``lrs`` and ``smoothed`` (the smoothed losses, :func:`smooth`) are 1-d
    arrays of the same length, ``lrs`` increasing.  On the curve of the
    smoothed loss against ``log10(lr)``, ignoring the first ``skip_start``
    points (where the average has not settled):

    * ``steepest``: the rate where the loss falls fastest, the most negative
      slope ``d loss / d log10(lr)`` (``np.gradient``), looked for only up
      to the minimum;
    * ``minimum``: the rate of the lowest smoothed loss;
    * ``divergence``: the first rate after the minimum at which the smoothed
      loss is back above its starting value (the value at ``skip_start``) or
      is not finite: the steps now undo all the training; ``None`` if the
      sweep never got there.  (A network need not blow up: a ReLU network
      whose units all die returns to the loss of a constant guess, 2.3 for
      ten classes, so "four times the minimum" may never happen.)

    The suggested cyclical range follows Smith (2017): the upper bound is
    where the loss stops improving, and "the optimum learning rate is
    usually within a factor of two of the largest one that converges", so
    ``max_lr = minimum / 2`` and ``base_lr = max_lr / 4`` (Smith's 1/3 to
    1/4).  Returns a dict with those five numbers.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    smoothed = np.asarray(smoothed, dtype=np.float64)
    if lrs.ndim != 1 or smoothed.shape != lrs.shape:
        raise ValueError(f"lrs and smoothed must be 1-d of the same length, got shapes "
                         f"{lrs.shape} and {smoothed.shape}")
    skip_start = check_count(skip_start, "skip_start", minimum=0)
    if len(lrs) < skip_start + 3:
        raise ValueError(f"need at least skip_start + 3 = {skip_start + 3} points, got {len(lrs)}")
    if not (np.all(lrs > 0) and np.all(np.diff(lrs) > 0)):
        raise ValueError("lrs must be positive and increasing")
    finite = np.isfinite(smoothed)
    finite[:skip_start] = False
    if not finite.any():
        raise ValueError("smoothed has no finite value after skip_start")
    losses = np.where(finite, smoothed, np.inf)
    i_min = int(np.argmin(losses))
    # Steepest descent on the part of the curve up to the minimum.
    lo = skip_start
    end = max(i_min + 1, lo + 2)
    slope = np.gradient(smoothed[lo:end], np.log10(lrs[lo:end]))
    i_steep = lo + int(np.argmin(slope))
    tail = smoothed[i_min:]
    above = np.nonzero(~np.isfinite(tail) | (tail > smoothed[skip_start]))[0]
    divergence = float(lrs[i_min + above[0]]) if len(above) else None
    max_lr = float(lrs[i_min]) / 2
    return {"steepest": float(lrs[i_steep]), "minimum": float(lrs[i_min]),
            "divergence": divergence, "base_lr": max_lr / 4, "max_lr": max_lr}


def range_test(model, optimizer, x, y, min_lr=1e-5, max_lr=10.0, num_steps=300, batch_size=64,
               mode="exp", beta=0.9, stop_early=True, skip_start=5, rng=None):
    """Run the LR range test on ``model``; returns a :class:`RangeTestResult`.

    ``x`` (N, ...) float inputs and ``y`` (N,) int class labels; the loss is
    cross-entropy on the model's outputs.  Step ``t`` uses the rate
    ``Exponential(min_lr, max_lr, num_steps)(t)`` (``mode="exp"``) or the
    linear sweep ``LinearSweep`` (``mode="linear"``, the outline's variant),
    on mini-batches drawn in a shuffled order (reshuffled after each pass).
    With ``stop_early`` the sweep stops at a loss that is not finite, or
    when the smoothed loss, having fallen at least 20 % below its value at
    step ``skip_start``, climbs back above that value (the divergence point
    of :func:`suggest`).  The
    parameters and the optimiser's state are restored at the end, so the
    test leaves nothing behind.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a cnnlib.nn.Module, got {type(model).__name__}")
    if not hasattr(optimizer, "lr") or not hasattr(optimizer, "step"):
        raise TypeError(f"optimizer must be a cnnlib.optim optimiser, got {type(optimizer).__name__}")
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise TypeError("x and y must be numpy arrays")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty with the same length, got {len(x)} and {len(y)}")
    min_lr = check_number(min_lr, "min_lr", positive=True)
    max_lr = check_number(max_lr, "max_lr", positive=True)
    if not max_lr > min_lr:
        raise ValueError(f"max_lr must be > min_lr, got min_lr={min_lr}, max_lr={max_lr}")
    num_steps = check_count(num_steps, "num_steps", minimum=2)
    batch_size = check_count(batch_size, "batch_size")
    if mode not in ("exp", "linear"):
        raise ValueError(f"mode must be 'exp' or 'linear', got {mode!r}")
    sweep = (Exponential if mode == "exp" else LinearSweep)(min_lr, max_lr, num_steps)
    smoothed = smooth([], beta)  # checks beta
    rng = get_rng(rng)
    saved_params, saved_opt = model.state_dict(), optimizer.state_dict()
    loss_fn = nn.CrossEntropyLoss()
    lrs, losses, diverged = [], [], False
    skip_start = check_count(skip_start, "skip_start", minimum=0)
    avg, start, best = 0.0, math.inf, math.inf
    order, pos = rng.permutation(len(x)), 0
    model.train()
    try:
        for t in range(num_steps):
            if pos + batch_size > len(x):
                order, pos = rng.permutation(len(x)), 0
            idx = order[pos:pos + batch_size]
            pos += batch_size
            optimizer.lr = sweep(t)
            optimizer.zero_grad()
            with np.errstate(all="ignore"):
                loss = float(loss_fn(model(x[idx]), y[idx]))
                model.backward(loss_fn.backward())
                optimizer.step()
            lrs.append(sweep(t))
            losses.append(loss)
            avg = beta * avg + (1 - beta) * loss
            value = avg / (1 - beta ** (t + 1))
            if t == skip_start:
                start = value
            best = min(best, value) if t >= skip_start else best
            if stop_early and (not math.isfinite(value) or (best < 0.8 * start and value > start)):
                diverged = True
                break
    finally:
        model.load_state_dict(saved_params)
        optimizer.load_state_dict(saved_opt)
    lrs, losses = np.array(lrs), np.array(losses)
    smoothed = smooth(losses, beta)
    result = RangeTestResult(lrs=lrs, losses=losses, smoothed=smoothed, beta=beta,
                             diverged=diverged, suggestion=None)
    if len(lrs) >= skip_start + 3:
        result["suggestion"] = suggest(lrs, smoothed, skip_start)
    return result

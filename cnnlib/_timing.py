"""Timing helpers shared by the benchmark (:mod:`cnnlib.tools.bench`) and the
from-scratch chapter's speed table (:func:`cnnlib.models.scratch.speed_table`).

Private, like ``_validate``: any wing may use it.
"""

import contextlib
import statistics
import sys
import time

import numba

try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None


def time_call(fn, min_time, repeats, settle=0.0):
    """Median milliseconds of ``fn()``: one untimed warm-up call, then at least
    ``repeats`` timed calls lasting at least ``min_time`` seconds together.

    ``settle`` seconds of sleep come first: the thread pools of whatever ran
    before (OpenBLAS, OpenMP) spin for a while after their last task, and on
    two cores that spinning would slow the call being timed.
    """
    time.sleep(settle)
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


@contextlib.contextmanager
def thread_limits(n):
    """Run Numba, BLAS and (if it has been imported) PyTorch on ``n`` threads;
    restore the settings after."""
    torch = sys.modules.get("torch")
    numba_before = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    torch_before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    blas = threadpool_limits(limits=n) if threadpool_limits else contextlib.nullcontext()
    try:
        with blas:
            yield
    finally:
        numba.set_num_threads(numba_before)
        if torch is not None:
            torch.set_num_threads(torch_before)

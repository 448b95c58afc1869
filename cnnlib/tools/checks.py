"""Self-checks for the chapters: is a computed result still what the book says?

A chapter prints three kinds of values (see the style guide, "Determinism and
portability"): *exact* ones, which nbval compares as text; *machine* ones
(timings), which nothing checks; and *numerical* ones (results of training,
fitting, sampling or long float32 reductions), which move a little with the
CPU, the BLAS kernel and the thread count.  A numerical value's printing cell
is ignored by nbval, and a self-check cell after it compares the value with
the one stored when the page was built, within a tolerance chosen for that
quantity::

    with self_check() as expect:
        expect("LeNet-5 test accuracy after one epoch", acc, 0.9853, atol=0.004)
        expect("final training loss", loss, 0.0712, rtol=0.1)

On success the cell prints one line whose text does not depend on the values
(``self-check: 2 values agree with the stored run``), so nbval can compare it;
if any value is off by more than its tolerance, the block raises
:class:`CheckFailed` naming each quantity, its value, the expected value and
the tolerance, and the notebook test fails.

To see how far each value moves on another machine, set ``CNNLIB_CHECK_LOG``
to a file name: every check made in a ``self_check`` block is then appended to
it as one line of JSON (quantity, value, expected, atol, rtol, passed).
``tools/portable.sh`` does this under each machine profile and
``tools/check_report.py`` tabulates the logs.
"""

import json
import os
from contextlib import contextmanager
from numbers import Real

import numpy as np

__all__ = ["CheckFailed", "expect", "self_check"]


class CheckFailed(AssertionError):
    """A computed value differs from its stored value by more than its tolerance."""


def _tolerance(atol, rtol, expected):
    if atol is None and rtol is None:
        raise TypeError("expect() needs a tolerance: give atol=, rtol= or both "
                        "(0 for an exact comparison)")
    for name, tol in (("atol", atol), ("rtol", rtol)):
        if tol is not None and (not isinstance(tol, Real) or isinstance(tol, bool)
                                or not np.isfinite(tol) or tol < 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")
    return (atol or 0.0) + (rtol or 0.0) * np.abs(expected)


def _describe_tolerance(atol, rtol):
    parts = []
    if atol:
        parts.append(f"{atol:.3g}")
    if rtol:
        parts.append(f"{rtol:.3g} x |expected|")
    return " + ".join(parts) or "0"


def _as_numbers(what, x):
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{what} must be a number or an array of numbers, got {x!r}")
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number or an array of numbers, "
                        f"got {type(x).__name__}") from None
    return array


def _failure(quantity, value, expected, atol, rtol):
    """The message for one comparison, or None if it passes."""
    if not isinstance(quantity, str) or not quantity:
        raise TypeError(f"quantity must be a non-empty string naming the value, got {quantity!r}")
    v = _as_numbers("value", value)
    e = _as_numbers("expected", expected)
    allowed = _tolerance(atol, rtol, e)
    try:
        v_b, e_b, allowed = np.broadcast_arrays(v, e, allowed)
    except ValueError:
        raise ValueError(f"{quantity}: value has shape {v.shape}, expected has shape "
                         f"{e.shape}; they must match or broadcast") from None
    bad = ~(np.abs(v_b - e_b) <= allowed)          # NaN counts as a failure
    if not bad.any():
        return None
    tol = _describe_tolerance(atol, rtol)
    if v_b.ndim == 0:
        return f"{quantity} = {v_b.item():.6g}, expected {e_b.item():.6g} +/- {tol}"
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"{quantity}: {int(bad.sum())} of {bad.size} entries off by more than "
            f"{tol}; first at index {first}: {v_b[first]:.6g}, expected {e_b[first]:.6g}")


def expect(quantity, value, expected, *, atol=None, rtol=None):
    """Raise :class:`CheckFailed` unless ``|value - expected| <= atol + rtol * |expected|``.

    ``value`` and ``expected`` are numbers or arrays of the same (or a
    broadcastable) shape, compared entry by entry; NaN never passes.
    ``quantity`` names the value in the error message.  At least one of
    ``atol`` and ``rtol`` must be given.
    """
    message = _failure(quantity, value, expected, atol, rtol)
    if message is not None:
        raise CheckFailed(message)


def _log(quantity, value, expected, atol, rtol, passed):
    path = os.environ.get("CNNLIB_CHECK_LOG")
    if not path:
        return
    record = {"quantity": quantity,
              "value": np.asarray(value, dtype=np.float64).tolist(),
              "expected": np.asarray(expected, dtype=np.float64).tolist(),
              "atol": atol, "rtol": rtol, "passed": passed,
              "notebook": os.environ.get("CNNLIB_CHECK_NOTEBOOK", "")}
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


@contextmanager
def self_check():
    """Collect several :func:`expect` checks; report every failure at once.

    Yields a function with :func:`expect`'s signature.  At the end of the
    block, prints ``self-check: N values agree with the stored run`` if all
    passed, or raises :class:`CheckFailed` listing every failed quantity.
    """
    failures = []
    count = 0

    def check(quantity, value, expected, *, atol=None, rtol=None):
        nonlocal count
        count += 1
        message = _failure(quantity, value, expected, atol, rtol)
        if message is not None:
            failures.append(message)
        _log(quantity, value, expected, atol, rtol, message is None)

    yield check
    if count == 0:
        raise CheckFailed("self_check() block checked nothing")
    if failures:
        raise CheckFailed(f"{len(failures)} of {count} values moved past their tolerance "
                          "since this page was built:\n  " + "\n  ".join(failures))
    print(f"self-check: {count} value{'s' if count != 1 else ''} agree"
          f"{'s' if count == 1 else ''} with the stored run")

"""Argument checks shared by the public functions.

Public functions validate, private kernels compute: every check here raises
``TypeError`` or ``ValueError`` with a message that names the argument and the
value it got, so a reader never meets a Numba typing error.
"""

import math
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_float_array(x, name, ndim=None, min_ndim=None):
    """Return ``x`` as a C-contiguous float32/float64 array, or raise.

    ``ndim`` is an int or a tuple of allowed ranks.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.ndim not in allowed:
            want = " or ".join(f"{d}-d" for d in allowed)
            raise ValueError(f"{name} must be {want}, got shape {x.shape} ({x.ndim}-d)")
    if min_ndim is not None and x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got shape {x.shape}")
    return np.ascontiguousarray(x)


def check_flat_vector(theta, name="theta"):
    """A non-empty 1-d float vector (a model's flattened parameters), as float64."""
    theta = np.asarray(theta)
    if theta.ndim != 1 or theta.size == 0 or not np.issubdtype(theta.dtype, np.floating):
        raise ValueError(f"{name} must be a non-empty 1-d float vector, got shape {theta.shape} "
                         f"and dtype {theta.dtype}")
    return theta.astype(np.float64)


def check_same_dtype(ref, ref_name, other, other_name):
    """Raise ``TypeError`` unless ``other`` has the dtype of ``ref``."""
    if other.dtype != ref.dtype:
        raise TypeError(
            f"{other_name} must have the same dtype as {ref_name} ({ref.dtype}), got {other.dtype}"
        )


def check_shape(x, name, shape):
    """Raise ``ValueError`` unless ``x.shape == shape``."""
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(x.shape)}")


def check_indices(indices, name, shape, plane_size, minimum=0):
    """Return pooling ``indices`` (flat positions in an (H, W) plane of
    ``plane_size`` elements, ``shape`` like the pooled output) as a
    C-contiguous int64 array, or raise.  ``minimum=-1`` admits the -1 of a
    window made of padding only."""
    if not isinstance(indices, np.ndarray) or indices.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer numpy.ndarray, got "
                        f"{getattr(indices, 'dtype', type(indices).__name__)}")
    check_shape(indices, name, shape)
    if indices.size and (indices.min() < minimum or indices.max() >= plane_size):
        raise ValueError(f"{name} must lie in [{minimum}, {plane_size}) (flat positions in an "
                         f"(H, W) plane), got values in [{indices.min()}, {indices.max()}]")
    return np.ascontiguousarray(indices, dtype=np.int64)


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def pair(value, name, minimum):
    """Turn an int or a pair of ints into a pair, checking ``>= minimum``."""
    if _is_int(value):
        pr = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        pr = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(pr) < minimum:
        what = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return pr


def check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def check_dim(dim, ndim, name="dim"):
    """Normalise a possibly negative axis ``dim`` for an array of rank ``ndim``.

    Out of range is an ``IndexError``, as in PyTorch ("Dimension out of range").
    """
    if not _is_int(dim):
        raise TypeError(f"{name} must be an int, got {dim!r}")
    if not -ndim <= dim < ndim:
        raise IndexError(f"{name} must be in [{-ndim}, {ndim - 1}] for a {ndim}-d input, got {dim}")
    return dim % ndim


def check_reduction(reduction):
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def check_number(value, name, positive=False):
    """A finite real ``value`` as float, >= 0 (or > 0 with ``positive``); errors name ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if not positive and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_count(value, name, minimum=1):
    """An integer ``value`` >= ``minimum`` as int (bool refused); errors name ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_real(value, name):
    """A finite real ``value`` (bool refused) as float; errors name ``name``."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def check_lrn_params(size, alpha, beta, k):
    """Validate the settings of local response normalisation (also used by the layer)."""
    if not _is_int(size) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    alpha, beta, k = check_real(alpha, "alpha"), check_real(beta, "beta"), check_real(k, "k")
    if alpha < 0:
        raise ValueError(f"alpha must be non-negative, got {alpha}")
    if k <= 0:
        raise ValueError(f"k must be positive (it keeps the divisor away from 0), got {k}")
    return int(size), alpha, beta, k


def check_ratio_pair(output_ratio):
    """``output_ratio`` (a float or a pair in (0, 1)) as a pair of floats."""
    if isinstance(output_ratio, numbers.Real) and not isinstance(output_ratio, bool):
        r = (float(output_ratio), float(output_ratio))
    elif (isinstance(output_ratio, (tuple, list)) and len(output_ratio) == 2
          and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in output_ratio)):
        r = (float(output_ratio[0]), float(output_ratio[1]))
    else:
        raise TypeError(f"output_ratio must be a float or a pair of floats, got {output_ratio!r}")
    if not all(0.0 < v < 1.0 for v in r):
        raise ValueError(f"output_ratio must be between 0 and 1 (exclusive), got {output_ratio!r}")
    return r

"""A systolic array: a cycle-by-cycle simulation and the closed-form cycle count.

An ``R x C`` grid of multiply-accumulate cells (PEs) computes ``A @ B`` for
``A`` of shape (N, K) and ``B`` of shape (K, M) by passing operands between
neighbours, one step per clock (Kung 1982).  Three dataflows differ in what
stays put in a PE (SCALE-Sim's names and operand matrices, Samajdar et al.
2018):

* ``"os"`` output stationary: PE (i, j) accumulates ``C[n_i, m_j]``; rows of
  ``A`` enter from the left, columns of ``B`` from the top, both skewed by
  one cycle per row/column; ``T = K`` values stream through; the array tiles
  ``N x M`` ("row folds" over N, "column folds" over M).
* ``"ws"`` weight stationary: PE (i, j) holds ``B[k_i, m_j]`` (loaded from the
  top in ``R`` cycles); rows of ``A`` (``T = N`` pixels) enter from the left
  and partial sums flow down and leave at the bottom; the array tiles
  ``K x M``; partial sums of different K folds are added in the output buffer.
* ``"is"`` input stationary: PE (i, j) holds ``A[n_j, k_i]``; ``T = M`` weight
  columns stream from the left: the weight-stationary schedule applied to
  ``C^T = B^T A^T``; the array tiles ``K x N``.

Cycle convention (pinned; SCALE-Sim v2's compute code, whose per-fold demand
matrices have these lengths): a fold runs for the full array geometry, even
when its tile is partial, and folds do not overlap::

    OS:      T + R + C - 2        (the last MAC in the far corner PE)
    WS, IS:  2 R + C + T - 2      (R cycles to load the stationary tile)

SCALE-Sim's paper counts OS as ``2 R + C + T - 2``, adding ``R`` cycles to
drain the accumulated outputs out of the array (scale-sim-v3 issue 4); the
simulation here does drain them and reports those cycles separately as
``drain_cycles``, so ``cycles + drain_cycles`` is the paper's count.

See the chapter "Accelerators" (Part V).
"""

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from .._validate import _is_int, check_count, pair

__all__ = ["DATAFLOWS", "SystolicRun", "SystolicArray", "fold_cycles", "gemm_dims", "im2col",
           "conv_gemm_shape"]

#: The three dataflows, output, weight and input stationary.
DATAFLOWS = ("os", "ws", "is")


def gemm_dims(n, k, m, dataflow):
    """SCALE-Sim's (Sr, Sc, T) for ``(N, K) @ (K, M)``: the tiled rows and columns and the streamed length.

    OS: (N, M, K); WS: (K, M, N); IS: (K, N, M).
    """
    _check_dataflow(dataflow)
    return {"os": (n, m, k), "ws": (k, m, n), "is": (k, n, m)}[dataflow]


def fold_cycles(rows, cols, t, dataflow):
    """Cycles of one fold on a ``rows x cols`` array streaming ``t`` values (module docstring)."""
    _check_dataflow(dataflow)
    if dataflow == "os":
        return t + rows + cols - 2
    return 2 * rows + cols + t - 2


@dataclass
class SystolicRun:
    """The record of one matrix product on a systolic array.

    ``shape`` is (N, K, M); ``folds = row_folds * col_folds``; ``cycles`` uses the
    pinned convention (module docstring), ``drain_cycles`` is the extra OS
    drain (0 for WS/IS); ``macs`` = N K M useful multiply-accumulates;
    ``mapping_efficiency`` = mean over folds of used PEs / (R C);
    ``utilisation`` = macs / (R C cycles); ``reads`` counts the SRAM
    accesses per buffer (``"ifmap"`` = elements of A read, ``"filter"`` =
    elements of B read, ``"ofmap"`` = elements of C written, partial sums
    included); ``naive_reads`` is what a matmul without reuse reads
    (N K M of each operand).  After a simulation, ``busy_cycles`` sums, per
    fold, the cycle of its last event (last MAC for OS, last result out for
    WS/IS): less than ``cycles`` where a partial tile leaves PEs idle (the
    simulation shows ``T + R' + C' - 2`` for an OS tile of R' x C' used PEs,
    ``2 R + C' + T - 2`` for WS/IS), equal for full tiles; ``None`` for the
    closed form.
    """

    dataflow: str
    rows: int
    cols: int
    shape: tuple
    row_folds: int
    col_folds: int
    cycles_per_fold: int
    cycles: int
    drain_cycles: int
    macs: int
    mapping_efficiency: float
    utilisation: float
    reads: dict = field(default_factory=dict)
    simulated: bool = False
    busy_cycles: int = None

    @property
    def folds(self):
        return self.row_folds * self.col_folds

    @property
    def naive_reads(self):
        n, k, m = self.shape
        return {"ifmap": n * k * m, "filter": n * k * m, "ofmap": n * m}


def _check_dataflow(dataflow):
    if dataflow not in DATAFLOWS:
        raise ValueError(f"dataflow must be 'os', 'ws' or 'is', got {dataflow!r}")


def _closed_form(rows, cols, n, k, m, dataflow):
    sr, sc, t = gemm_dims(n, k, m, dataflow)
    rf, cf = math.ceil(sr / rows), math.ceil(sc / cols)
    per_fold = fold_cycles(rows, cols, t, dataflow)
    cycles = rf * cf * per_fold
    macs = n * k * m
    if dataflow == "os":      # A read once per column fold, B once per row fold, C written once
        reads = {"ifmap": n * k * cf, "filter": k * m * rf, "ofmap": n * m}
    elif dataflow == "ws":    # B read once, A once per column fold, a partial C per row fold
        reads = {"ifmap": n * k * cf, "filter": k * m, "ofmap": n * m * rf}
    else:                     # A read once, B once per column fold, a partial C per row fold
        reads = {"ifmap": n * k, "filter": k * m * cf, "ofmap": n * m * rf}
    return SystolicRun(dataflow, rows, cols, (n, k, m), rf, cf, per_fold, cycles,
                       rf * cf * rows if dataflow == "os" else 0, macs,
                       sr * sc / (rf * cf * rows * cols), macs / (rows * cols * cycles), reads)


# ---------------------------------------------------------------------------
# Cycle-by-cycle kernels: one fold each; every register of every PE advances
# once per cycle.  ``stop`` >= 0 halts after that cycle (for the state views).
# ---------------------------------------------------------------------------

@njit(cache=True)
def _os_fold(a, b, out, r0, c0, rows, cols, stop, left, top, acc, lv, tv, active):
    """Output stationary.  left/top: operands moving right/down; acc: the stationary sums."""
    n, t_len = a.shape
    m = b.shape[1]
    nr = min(rows, n - r0)
    nc = min(cols, m - c0)
    compute = t_len + rows + cols - 2
    total = compute + rows
    last = total if stop < 0 else min(stop + 1, total)
    macs = 0
    busy = 0
    reads_a = 0
    reads_b = 0
    writes = 0
    for t in range(last):
        active[:, :] = False
        if t < compute:
            for i in range(rows):
                for j in range(cols - 1, 0, -1):
                    left[i, j] = left[i, j - 1]
                    lv[i, j] = lv[i, j - 1]
                kk = t - i
                lv[i, 0] = i < nr and 0 <= kk < t_len
                left[i, 0] = a[r0 + i, kk] if lv[i, 0] else 0
                reads_a += lv[i, 0]
            for j in range(cols):
                for i in range(rows - 1, 0, -1):
                    top[i, j] = top[i - 1, j]
                    tv[i, j] = tv[i - 1, j]
                kk = t - j
                tv[0, j] = j < nc and 0 <= kk < t_len
                top[0, j] = b[kk, c0 + j] if tv[0, j] else 0
                reads_b += tv[0, j]
            for i in range(rows):
                for j in range(cols):
                    if lv[i, j] and tv[i, j]:
                        acc[i, j] += left[i, j] * top[i, j]
                        active[i, j] = True
                        macs += 1
                        busy = t + 1
        else:
            # drain: the bottom row leaves the array, the other rows move down one
            row = rows - 1 - (t - compute)      # the tile row now in the bottom PEs
            for j in range(nc):
                if row < nr:
                    out[r0 + row, c0 + j] = acc[rows - 1, j]
                    writes += 1
            for i in range(rows - 1, 0, -1):
                for j in range(cols):
                    acc[i, j] = acc[i - 1, j]
            for j in range(cols):
                acc[0, j] = 0
    return last, busy, macs, reads_a, reads_b, writes


@njit(cache=True)
def _ws_fold(x, w, out, k0, c0, rows, cols, stop, left, top, stat, lv, tv, sv, active):
    """Weight stationary on x (T, K) @ w (K, M).  stat: the stationary tile; left: x
    moving right; top: partial sums moving down and out at the bottom into out (T, M)."""
    t_len, kdim = x.shape
    m = w.shape[1]
    nr = min(rows, kdim - k0)
    nc = min(cols, m - c0)
    total = 2 * rows + cols + t_len - 2
    last = total if stop < 0 else min(stop + 1, total)
    macs = 0
    busy = 0
    reads_x = 0
    reads_w = 0
    writes = 0
    for t in range(last):
        active[:, :] = False
        if t < rows:
            # load the stationary tile from the top, one row per cycle
            src = rows - 1 - t
            for j in range(cols):
                for i in range(rows - 1, 0, -1):
                    stat[i, j] = stat[i - 1, j]
                    sv[i, j] = sv[i - 1, j]
                sv[0, j] = src < nr and j < nc
                stat[0, j] = w[k0 + src, c0 + j] if sv[0, j] else 0
                reads_w += sv[0, j]
            continue
        s = t - rows
        for i in range(rows):
            for j in range(cols - 1, 0, -1):
                left[i, j] = left[i, j - 1]
                lv[i, j] = lv[i, j - 1]
            p = s - i
            lv[i, 0] = i < nr and 0 <= p < t_len
            left[i, 0] = x[p, k0 + i] if lv[i, 0] else 0
            reads_x += lv[i, 0]
        # partial sums: bottom row first, so each PE adds to its upper neighbour's old value
        for i in range(rows - 1, -1, -1):
            for j in range(cols):
                p = s - i - j
                tv[i, j] = 0 <= p < t_len
                above = top[i - 1, j] if i > 0 else 0
                if lv[i, j] and sv[i, j]:
                    top[i, j] = above + left[i, j] * stat[i, j]
                    active[i, j] = True
                    macs += 1
                else:
                    top[i, j] = above
        for j in range(nc):
            p = s - (rows - 1) - j
            if 0 <= p < t_len:
                out[p, c0 + j] += top[rows - 1, j]
                writes += 1
                busy = t + 1
    return last, busy, macs, reads_x, reads_w, writes


def _registers(rows, cols, dtype):
    z = lambda d: np.zeros((rows, cols), d)  # noqa: E731
    return dict(left=z(dtype), top=z(dtype), stat=z(dtype), left_valid=z(np.bool_),
                top_valid=z(np.bool_), stat_valid=z(np.bool_), active=z(np.bool_))


def _work_dtype(a, b):
    if a.dtype.kind in "iu":
        return np.dtype(np.int32)
    return np.result_type(a.dtype, b.dtype)


def _check_operands(a, b):
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
        if x.ndim != 2:
            raise ValueError(f"{name} must be 2-d, got shape {x.shape}")
        if x.dtype not in (np.int8, np.int16, np.int32, np.float32, np.float64):
            raise TypeError(f"{name} must have dtype int8, int16, int32, float32 or float64, got {x.dtype}")
    if (a.dtype.kind == "f") != (b.dtype.kind == "f"):
        raise TypeError(f"a and b must both be integer or both be floating, got {a.dtype} and {b.dtype}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"a (N, K) and b (K, M) must share K, got shapes {a.shape} and {b.shape}")
    if 0 in a.shape or 0 in b.shape:
        raise ValueError(f"a and b must not be empty, got shapes {a.shape} and {b.shape}")
    dtype = _work_dtype(a, b)
    return np.ascontiguousarray(a, dtype), np.ascontiguousarray(b, dtype)


class SystolicArray:
    """A ``rows x cols`` systolic array with one dataflow (``"os"``, ``"ws"`` or ``"is"``).

    ``matmul(a, b)`` returns the product and a :class:`SystolicRun`;
    ``run(n, k, m)`` the closed-form record without computing anything;
    ``conv2d(x, weight, ...)`` maps a convolution through :func:`im2col`;
    ``state(a, b, cycle)`` the registers of every PE at one cycle of the
    first fold.  Integer operands (int8 in) accumulate in int32; floats in
    their own dtype.  See the module docstring and the chapter "Accelerators".
    """

    def __init__(self, rows, cols, dataflow="os"):
        self.rows = check_count(rows, "rows")
        self.cols = check_count(cols, "cols")
        _check_dataflow(dataflow)
        self.dataflow = dataflow

    def __repr__(self):
        return f"SystolicArray(rows={self.rows}, cols={self.cols}, dataflow={self.dataflow!r})"

    def run(self, n, k, m):
        """Closed-form :class:`SystolicRun` of an (N, K) @ (K, M) product."""
        n, k, m = (check_count(v, name) for v, name in ((n, "n"), (k, "k"), (m, "m")))
        return _closed_form(self.rows, self.cols, n, k, m, self.dataflow)

    def _plan(self, a, b):
        """(x, w, transpose): the operands as the kernels see them."""
        if self.dataflow == "is":       # WS schedule on C^T = B^T A^T
            return np.ascontiguousarray(b.T), np.ascontiguousarray(a.T), True
        return a, b, False

    def matmul(self, a, b, simulate=True):
        """``a @ b`` on the array: a (N, K), b (K, M) -> (c (N, M), :class:`SystolicRun`).

        With ``simulate=True`` every fold is run cycle by cycle and the
        record's counts are the simulation's (they equal the closed form:
        tested); with ``simulate=False`` the product is ``a @ b`` in the
        accumulation dtype and the record is the closed form.
        """
        a, b = _check_operands(a, b)
        simulate = bool(simulate)
        n, k = a.shape
        m = b.shape[1]
        record = _closed_form(self.rows, self.cols, n, k, m, self.dataflow)
        if not simulate:
            return a @ b, record
        x, w, transpose = self._plan(a, b)
        sr, sc, t_len = gemm_dims(n, k, m, self.dataflow)
        out = np.zeros((x.shape[0], w.shape[1]), a.dtype) if self.dataflow != "os" else \
            np.zeros((n, m), a.dtype)
        cycles = busy = macs = drain = 0
        reads = np.zeros(3, np.int64)
        for fr in range(record.row_folds):
            for fc in range(record.col_folds):
                reg = _registers(self.rows, self.cols, a.dtype)
                if self.dataflow == "os":
                    c, bz, mc, ra, rb, wr = _os_fold(a, b, out, fr * self.rows, fc * self.cols, self.rows,
                                                 self.cols, -1, reg["left"], reg["top"], reg["stat"],
                                                 reg["left_valid"], reg["top_valid"], reg["active"])
                    drain += self.rows
                    c -= self.rows
                    reads += (ra, rb, wr)
                else:
                    c, bz, mc, rx, rw, wr = _ws_fold(x, w, out, fr * self.rows, fc * self.cols, self.rows,
                                                 self.cols, -1, reg["left"], reg["top"], reg["stat"],
                                                 reg["left_valid"], reg["top_valid"], reg["stat_valid"],
                                                 reg["active"])
                    # WS: x is A (ifmap), w is B (filter); IS: x is B^T, w is A^T
                    reads += (rw, rx, wr) if transpose else (rx, rw, wr)
                cycles += c
                busy += bz
                macs += mc
        if transpose:
            out = np.ascontiguousarray(out.T)
        record.cycles, record.drain_cycles, record.macs = cycles, drain, macs
        record.busy_cycles = busy
        record.utilisation = macs / (self.rows * self.cols * cycles)
        record.reads = {"ifmap": int(reads[0]), "filter": int(reads[1]), "ofmap": int(reads[2])}
        record.simulated = True
        return out, record

    def state(self, a, b, cycle):
        """The registers of every PE after ``cycle`` (0-based) of the first fold.

        Returns a dict of (rows, cols) arrays ``left`` (operand moving right),
        ``top`` (operand moving down: B for OS, partial sums for WS/IS),
        ``stat`` (what stays: the sums for OS, the loaded tile for WS/IS),
        their ``*_valid`` masks, ``active`` (did a MAC this cycle) and
        ``phase`` (``"load"``, ``"stream"`` or ``"drain"``), ``fold_cycles``
        (cycles of the fold including the OS drain).
        """
        a, b = _check_operands(a, b)
        x, w, _ = self._plan(a, b)
        if self.dataflow == "os":
            per_fold = fold_cycles(self.rows, self.cols, a.shape[1], "os") + self.rows
        else:
            per_fold = fold_cycles(self.rows, self.cols, x.shape[0], self.dataflow)
        cycle = check_count(cycle, "cycle", 0)
        if cycle >= per_fold:
            raise ValueError(f"cycle must be < {per_fold} (the first fold's cycles), got {cycle}")
        reg = _registers(self.rows, self.cols, a.dtype)
        if self.dataflow == "os":
            out = np.zeros((a.shape[0], b.shape[1]), a.dtype)
            _os_fold(a, b, out, 0, 0, self.rows, self.cols, cycle, reg["left"], reg["top"], reg["stat"],
                     reg["left_valid"], reg["top_valid"], reg["active"])
            reg["stat_valid"][:] = True
            compute = per_fold - self.rows
            reg["phase"] = "stream" if cycle < compute else "drain"
        else:
            out = np.zeros((x.shape[0], w.shape[1]), a.dtype)
            _ws_fold(x, w, out, 0, 0, self.rows, self.cols, cycle, reg["left"], reg["top"], reg["stat"],
                     reg["left_valid"], reg["top_valid"], reg["stat_valid"], reg["active"])
            reg["phase"] = "load" if cycle < self.rows else "stream"
        reg["fold_cycles"] = per_fold
        return reg

    def conv2d(self, x, weight, bias=None, stride=1, padding=0, dilation=1, simulate=True):
        """A convolution on the array through :func:`im2col` (SCALE-Sim's operand matrices).

        x (N, C, H, W), weight (M, C, kH, kW), bias (M,) or None ->
        (y (N, M, H_out, W_out), :class:`SystolicRun` of the (N H_out W_out, C kH kW) @
        (C kH kW, M) product).  Settings as in ``torch.nn.functional.conv2d``
        (int or pair stride, padding, dilation; groups 1).
        """
        if not isinstance(weight, np.ndarray) or weight.ndim != 4:
            raise ValueError(f"weight must be a 4-d numpy.ndarray (M, C, kH, kW), got "
                             f"{getattr(weight, 'shape', type(weight).__name__)}")
        if not isinstance(x, np.ndarray) or x.ndim != 4:
            raise ValueError(f"x must be a 4-d numpy.ndarray (N, C, H, W), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        if x.shape[1] != weight.shape[1]:
            raise ValueError(f"x has {x.shape[1]} channels but weight expects {weight.shape[1]}")
        m = weight.shape[0]
        cols, (ho, wo) = im2col(x, weight.shape[2:], stride, padding, dilation)
        y, record = self.matmul(cols, np.ascontiguousarray(weight.reshape(m, -1).T), simulate)
        if bias is not None:
            bias = np.asarray(bias)
            if bias.shape != (m,):
                raise ValueError(f"bias must have shape ({m},), got {bias.shape}")
            y = y + bias.astype(y.dtype)
        return y.reshape(x.shape[0], ho, wo, m).transpose(0, 3, 1, 2), record


def im2col(x, kernel_size, stride=1, padding=0, dilation=1):
    """The receptive fields of x as rows: x (N, C, H, W) -> (cols (N H_out W_out, C kH kW), (H_out, W_out)).

    Row ``(n, i, j)`` holds the zero-padded window under output ``(i, j)`` in
    (C, kH, kW) order, so ``cols @ weight.reshape(M, -1).T`` is the
    convolution (SCALE-Sim's ifmap operand matrix).  Any numeric dtype.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ValueError(f"x must be a 4-d numpy.ndarray (N, C, H, W), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    kh, kw = pair(kernel_size, "kernel_size", 1)
    sh, sw = pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    dh, dw = pair(dilation, "dilation", 1)
    n, c, h, w = x.shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {(kh, kw)} (dilation {(dh, dw)}) is larger than the padded input "
                         f"{(h + 2 * ph, w + 2 * pw)}")
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, ho, wo, c, kh, kw), x.dtype)
    for p in range(kh):
        for q in range(kw):
            cols[..., p, q] = xp[:, :, p * dh: p * dh + sh * (ho - 1) + 1: sh,
                                 q * dw: q * dw + sw * (wo - 1) + 1: sw].transpose(0, 2, 3, 1)
    return cols.reshape(n * ho * wo, c * kh * kw), (ho, wo)


def conv_gemm_shape(in_shape, out_channels, kernel_size, stride=1, padding=0):
    """(N, K, M) of a convolution's im2col product for one image of in_shape (C, H, W)."""
    if (not isinstance(in_shape, (tuple, list)) or len(in_shape) != 3
            or not all(_is_int(v) and v > 0 for v in in_shape)):
        raise ValueError(f"in_shape must be (C, H, W) of positive ints, got {in_shape!r}")
    c, h, w = in_shape
    kh, kw = pair(kernel_size, "kernel_size", 1)
    sh, sw = pair(stride, "stride", 1)
    ph, pw = pair(padding, "padding", 0)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {(kh, kw)} is larger than the padded input {(h + 2 * ph, w + 2 * pw)}")
    return ho * wo, c * kh * kw, check_count(out_channels, "out_channels")

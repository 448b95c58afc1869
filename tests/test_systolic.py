"""Tests for cnnlib.hardware.systolic: the cycle-by-cycle simulation against the
closed form (cycles, folds, reads) over a grid of shapes and all three
dataflows, products against numpy (exact for int8/int32, close for floats),
conv2d against F.conv2d (and torch where installed), the operand reads and a
2x2 run written out by hand, SCALE-Sim's own counts (where scalesim is
installed), and bad input.
"""

import itertools
import math

import numpy as np
import pytest

from cnnlib import functional as F
from cnnlib.hardware import systolic as S
from cnnlib.hardware import SystolicArray, im2col

DF = S.DATAFLOWS
ARRAYS = [(1, 1), (2, 2), (3, 4), (4, 3), (5, 2)]
GEMMS = [(1, 1, 1), (2, 3, 2), (5, 7, 3), (8, 4, 9), (6, 6, 6), (3, 10, 1)]


def ints(rng, shape):
    return rng.integers(-128, 128, shape).astype(np.int8)


@pytest.mark.parametrize("dataflow", DF)
@pytest.mark.parametrize("rows, cols", ARRAYS)
@pytest.mark.parametrize("n, k, m", GEMMS)
def test_simulation_equals_closed_form_and_product_is_exact(dataflow, rows, cols, n, k, m):
    rng = np.random.default_rng(rows * 100 + cols * 10 + n + k + m)
    a, b = ints(rng, (n, k)), ints(rng, (k, m))
    array = SystolicArray(rows, cols, dataflow)
    c, run = array.matmul(a, b)
    closed = array.run(n, k, m)
    assert c.dtype == np.int32
    np.testing.assert_array_equal(c, a.astype(np.int32) @ b.astype(np.int32))
    assert run.simulated and not closed.simulated
    for name in ("cycles", "drain_cycles", "macs", "row_folds", "col_folds", "reads"):
        assert getattr(run, name) == getattr(closed, name), name
    assert run.utilisation == pytest.approx(closed.utilisation)
    # the closed form itself, from SCALE-Sim's operand matrices
    sr, sc, t = {"os": (n, m, k), "ws": (k, m, n), "is": (k, n, m)}[dataflow]
    folds = math.ceil(sr / rows) * math.ceil(sc / cols)
    per_fold = t + rows + cols - 2 if dataflow == "os" else 2 * rows + cols + t - 2
    assert run.folds == folds and run.cycles == folds * per_fold
    assert run.mapping_efficiency == pytest.approx(sr * sc / (folds * rows * cols))
    assert run.macs == n * k * m
    # the last event of each fold: earlier than the schedule exactly where a tile is partial
    busy = 0
    for fr, fc in itertools.product(range(math.ceil(sr / rows)), range(math.ceil(sc / cols))):
        r_used, c_used = min(rows, sr - fr * rows), min(cols, sc - fc * cols)
        busy += t + r_used + c_used - 2 if dataflow == "os" else 2 * rows + c_used + t - 2
    assert run.busy_cycles == busy
    if sr % rows == 0 and sc % cols == 0:
        assert run.busy_cycles == run.cycles


@pytest.mark.parametrize("dataflow", DF)
@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_float_product_to_rounding(dataflow, dtype, rtol):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((13, 9)).astype(dtype)
    b = rng.standard_normal((9, 7)).astype(dtype)
    c, _ = SystolicArray(4, 3, dataflow).matmul(a, b)
    assert c.dtype == dtype
    np.testing.assert_allclose(c, a.astype(np.float64) @ b.astype(np.float64), rtol=rtol, atol=rtol * 10)


def test_int32_accumulation_beyond_int16():
    a = np.full((2, 300), 127, np.int8)
    b = np.full((300, 2), 127, np.int8)
    c, _ = SystolicArray(2, 2, "ws").matmul(a, b)
    assert c.dtype == np.int32 and (c == 300 * 127 * 127).all()


def test_simulate_false_gives_the_closed_form():
    rng = np.random.default_rng(2)
    a, b = ints(rng, (6, 5)), ints(rng, (5, 4))
    c, run = SystolicArray(3, 3, "is").matmul(a, b, simulate=False)
    np.testing.assert_array_equal(c, a.astype(np.int32) @ b.astype(np.int32))
    assert not run.simulated and run.busy_cycles is None


def test_operand_reads_by_hand():
    """N=4, K=3, M=4 on 2x2: 2 row folds x 2 column folds (OS), each operand reused."""
    rng = np.random.default_rng(3)
    a, b = ints(rng, (4, 3)), ints(rng, (3, 4))
    runs = {df: SystolicArray(2, 2, df).matmul(a, b)[1] for df in DF}
    # OS: each A row is streamed once per column fold (2), each B column once per row fold (2)
    assert runs["os"].reads == {"ifmap": 4 * 3 * 2, "filter": 3 * 4 * 2, "ofmap": 16}
    # WS: tiles of B over K (2 folds: 2 + 1 rows) x M (2): B read once, A once per column fold,
    # a partial sum of every output per K fold
    assert runs["ws"].reads == {"ifmap": 4 * 3 * 2, "filter": 12, "ofmap": 16 * 2}
    # IS: A read once, B once per column fold over N (2), partial sums per K fold (2)
    assert runs["is"].reads == {"ifmap": 12, "filter": 12 * 2, "ofmap": 16 * 2}
    naive = runs["os"].naive_reads
    assert naive == {"ifmap": 48, "filter": 48, "ofmap": 16}
    assert all(r.reads["ifmap"] < naive["ifmap"] and r.reads["filter"] < naive["filter"]
               for r in runs.values())


def test_output_stationary_2x2_by_hand():
    a = np.array([[1, 2], [3, 4]], np.int8)
    b = np.array([[5, 6], [7, 8]], np.int8)
    array = SystolicArray(2, 2, "os")
    # cycle 0: a00 meets b00 in PE (0, 0)
    s = array.state(a, b, 0)
    np.testing.assert_array_equal(s["stat"], [[5, 0], [0, 0]])
    np.testing.assert_array_equal(s["active"], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(s["left"], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(s["top"], [[5, 0], [0, 0]])
    # cycle 1: the wavefront reaches the anti-diagonal
    s = array.state(a, b, 1)
    np.testing.assert_array_equal(s["left"], [[2, 1], [3, 0]])
    np.testing.assert_array_equal(s["top"], [[7, 6], [5, 0]])
    np.testing.assert_array_equal(s["stat"], [[19, 6], [15, 0]])
    np.testing.assert_array_equal(s["active"], [[1, 1], [1, 0]])
    s = array.state(a, b, 2)
    np.testing.assert_array_equal(s["left"], [[0, 2], [4, 3]])
    np.testing.assert_array_equal(s["left_valid"], [[0, 1], [1, 1]])
    np.testing.assert_array_equal(s["stat"], [[19, 22], [43, 18]])
    np.testing.assert_array_equal(s["active"], [[0, 1], [1, 1]])
    s = array.state(a, b, 3)          # T + R + C - 2 = 4 cycles: the product is complete
    np.testing.assert_array_equal(s["stat"], [[19, 22], [43, 50]])
    np.testing.assert_array_equal(s["active"], [[0, 0], [0, 1]])
    assert s["phase"] == "stream" and s["fold_cycles"] == 6
    s = array.state(a, b, 4)          # drain: the bottom row has left, the top row moved down
    assert s["phase"] == "drain"
    np.testing.assert_array_equal(s["stat"], [[0, 0], [19, 22]])
    with pytest.raises(ValueError, match="cycle"):
        array.state(a, b, 6)


def test_weight_stationary_2x2_by_hand():
    a = np.array([[1, 2], [3, 4]], np.int8)
    b = np.array([[5, 6], [7, 8]], np.int8)
    array = SystolicArray(2, 2, "ws")
    s = array.state(a, b, 0)          # load: the bottom row of B enters first
    assert s["phase"] == "load"
    np.testing.assert_array_equal(s["stat"], [[7, 8], [0, 0]])
    s = array.state(a, b, 1)
    np.testing.assert_array_equal(s["stat"], [[5, 6], [7, 8]])
    s = array.state(a, b, 2)          # a00 enters row 0
    np.testing.assert_array_equal(s["left"], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(s["top"], [[5, 0], [0, 0]])
    s = array.state(a, b, 3)          # psum 5 moved down and met a01 * 7; a10 entered row 0
    np.testing.assert_array_equal(s["left"], [[3, 1], [2, 0]])
    np.testing.assert_array_equal(s["top"], [[15, 6], [19, 0]])
    np.testing.assert_array_equal(s["active"], [[1, 1], [1, 0]])
    assert s["fold_cycles"] == 2 * 2 + 2 + 2 - 2


@pytest.mark.parametrize("dataflow", DF)
@pytest.mark.parametrize("stride, padding, dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), ((2, 1), (0, 1), 1)])
def test_conv2d_equals_functional_conv2d(dataflow, stride, padding, dilation):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 3, 8, 7))
    w = rng.standard_normal((4, 3, 3, 2))
    bias = rng.standard_normal(4)
    y, run = SystolicArray(4, 4, dataflow).conv2d(x, w, bias, stride, padding, dilation)
    ref = F.conv2d(x, w, bias, stride=stride, padding=padding, dilation=dilation)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    assert run.shape == (2 * ref.shape[2] * ref.shape[3], 3 * 3 * 2, 4)


def test_conv2d_int8_exact_against_torch():
    torch = pytest.importorskip("torch", reason="torch is needed for the F.conv2d comparison")
    rng = np.random.default_rng(5)
    x = ints(rng, (1, 6, 14, 14))
    w = ints(rng, (16, 6, 5, 5))
    y, _ = SystolicArray(8, 8, "os").conv2d(x, w)
    ref = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)),
                                     torch.from_numpy(w.astype(np.float64))).numpy()
    np.testing.assert_array_equal(y, ref.astype(np.int32))


def test_im2col_layout():
    x = np.arange(2 * 2 * 3 * 3, dtype=np.float64).reshape(2, 2, 3, 3)
    cols, (ho, wo) = im2col(x, 2)
    assert (ho, wo) == (2, 2) and cols.shape == (8, 8)
    np.testing.assert_array_equal(cols[0], [0, 1, 3, 4, 9, 10, 12, 13])
    np.testing.assert_array_equal(cols[7], x[1, :, 1:3, 1:3].ravel())


def test_conv_gemm_shape():
    assert S.conv_gemm_shape((1, 28, 28), 6, 5, padding=2) == (784, 25, 6)
    assert S.conv_gemm_shape((6, 14, 14), 16, 5) == (100, 150, 16)
    assert S.conv_gemm_shape((256, 56, 56), 256, 3, padding=1) == (3136, 2304, 256)


def test_bad_input():
    with pytest.raises(ValueError, match="dataflow"):
        SystolicArray(2, 2, "rs")
    with pytest.raises(ValueError, match="rows"):
        SystolicArray(0, 2)
    with pytest.raises(TypeError, match="cols"):
        SystolicArray(2, 2.0)
    array = SystolicArray(2, 2)
    a = np.ones((3, 4), np.int8)
    with pytest.raises(ValueError, match="share K"):
        array.matmul(a, np.ones((3, 2), np.int8))
    with pytest.raises(ValueError, match="2-d"):
        array.matmul(a.ravel(), np.ones((4, 2), np.int8))
    with pytest.raises(TypeError, match="both be integer"):
        array.matmul(a, np.ones((4, 2), np.float32))
    with pytest.raises(TypeError, match="dtype"):
        array.matmul(a.astype(np.complex64), np.ones((4, 2), np.complex64))
    with pytest.raises(TypeError, match="numpy"):
        array.matmul([[1]], [[1]])
    with pytest.raises(ValueError, match="empty"):
        array.matmul(np.ones((0, 4), np.int8), np.ones((4, 2), np.int8))
    with pytest.raises(ValueError, match="n must be"):
        array.run(0, 1, 1)
    with pytest.raises(ValueError, match="larger than the padded input"):
        im2col(np.ones((1, 1, 2, 2)), 3)
    with pytest.raises(ValueError, match="channels"):
        array.conv2d(np.ones((1, 2, 4, 4)), np.ones((1, 3, 2, 2)))
    with pytest.raises(ValueError, match="bias"):
        array.conv2d(np.ones((1, 2, 4, 4)), np.ones((1, 2, 2, 2)), bias=np.ones(2))
    with pytest.raises(ValueError, match="in_shape"):
        S.conv_gemm_shape((28, 28), 6, 5)


# ---------------------------------------------------------------------------
# SCALE-Sim's own counts on the same layers
# ---------------------------------------------------------------------------

SCALESIM_CFG = """[general]
run_name = cnnlib_check

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:  4096
FilterSramSzkB: 4096
OfmapSramSzkB:  4096
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Bandwidth : 100
Dataflow : {dataflow}
MemoryBanks:   1
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def scalesim_compute(tmp_path, n, k, m, rows, cols, dataflow):
    """SCALE-Sim's compute model (scalesim/compute/systolic_compute_{os,ws,is}.py) on the
    operand matrices of an (N, K) @ (K, M) product: (cycles = rows of its demand matrices,
    mapping efficiency, ifmap reads, filter reads, ofmap writes)."""
    from scalesim.compute.systolic_compute_is import systolic_compute_is
    from scalesim.compute.systolic_compute_os import systolic_compute_os
    from scalesim.compute.systolic_compute_ws import systolic_compute_ws
    from scalesim.scale_config import scale_config

    cfg = tmp_path / f"{rows}x{cols}_{dataflow}.cfg"
    cfg.write_text(SCALESIM_CFG.format(rows=rows, cols=cols, dataflow=dataflow))
    config = scale_config()
    config.read_conf_file(str(cfg))
    # address matrices, as SCALE-Sim's operand_matrix builds them: distinct addresses
    ifmap = np.arange(n * k).reshape(n, k)
    filt = 10_000_000 + np.arange(k * m).reshape(k, m)
    ofmap = 20_000_000 + np.arange(n * m).reshape(n, m)
    compute = dict(os=systolic_compute_os, ws=systolic_compute_ws, is_=systolic_compute_is)[
        "is_" if dataflow == "is" else dataflow]()
    compute.set_params(config_obj=config, ifmap_op_mat=ifmap, filter_op_mat=filt, ofmap_op_mat=ofmap)
    demand, _, _ = compute.get_demand_matrices()
    return (demand.shape[0], compute.get_avg_mapping_efficiency(), compute.get_ifmap_requests(),
            compute.get_filter_requests(), compute.get_ofmap_requests())


SCALESIM_LAYERS = {  # (N, K, M) of im2col products
    "lenet_conv1": S.conv_gemm_shape((1, 28, 28), 6, 5, padding=2),
    "lenet_conv2": S.conv_gemm_shape((6, 14, 14), 16, 5),
    "lenet_fc1": (1, 400, 120),
    "odd": (7, 5, 3),
}


@pytest.mark.parametrize("dataflow", DF)
@pytest.mark.parametrize("rows, cols", [(8, 8), (4, 16), (32, 32)])
@pytest.mark.parametrize("layer", list(SCALESIM_LAYERS))
def test_counts_against_scalesim(tmp_path, layer, rows, cols, dataflow):
    pytest.importorskip("scalesim",
                        reason="scalesim (pip install scalesim==3.0.0) runs SCALE-Sim's compute model")
    n, k, m = SCALESIM_LAYERS[layer]
    ours = SystolicArray(rows, cols, dataflow).run(n, k, m)
    cycles, efficiency, ifmap_reads, filter_reads, ofmap_writes = scalesim_compute(
        tmp_path, n, k, m, rows, cols, dataflow)
    assert cycles == ours.cycles
    assert efficiency == pytest.approx(ours.mapping_efficiency)
    assert (ifmap_reads, filter_reads) == (ours.reads["ifmap"], ours.reads["filter"])
    if dataflow == "os":
        # SCALE-Sim's OS counts each output once (rows x cols used) and then, in a second
        # `ofmap_writes +=` after padding the fold, adds rows + cols per fold: a stray count
        ofmap_writes -= ours.folds * (rows + cols)
    assert ofmap_writes == ours.reads["ofmap"]


def test_chapter_drivers():
    from cnnlib.experiments import hardware as E
    from cnnlib.models.zoo import lenet5

    shapes = E.gemm_shapes(lenet5(), (1, 28, 28))
    assert shapes == [("conv1", (784, 25, 6)), ("conv2", (100, 150, 16)), ("fc1", (1, 400, 120)),
                      ("fc2", (1, 120, 84)), ("fc3", (1, 84, 10))]
    rows = E.utilisation_table(shapes[:2], [(8, 8)])
    assert len(rows) == 6 and rows[0]["cycles"] == SystolicArray(8, 8, "os").run(784, 25, 6).cycles
    best = E.best_dataflows(rows)
    assert best[("conv1", "8x8")] == min(rows[:3], key=lambda r: r["cycles"])["dataflow"]
    assert "conv2" in E.format_table(rows)
    with pytest.raises(ValueError, match="name"):
        E.sweep_settings("IR drop", 1)

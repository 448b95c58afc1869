"""Tests for cnnlib.tools.bench: its rows, its NumPy baseline and its command line.

Quick mode on the tiny cases only; no timing assertions (speed is what the
benchmark prints, not what a test checks).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnlib.tools import bench
from cnnlib import functional as F

FIELDS = {"case", "group", "pass", "cnnlib_ms", "numpy_ms", "torch_ms", "ratio_torch",
          "ratio_numpy", "gflops", "err_numpy", "err_torch", "max_rel_err"}
NO_TORCH = "PyTorch is not installed: the torch columns are n/a"


@pytest.fixture(scope="module")
def result():
    return bench.run(cases="tiny", threads=1, quick=True)


def op_rows(result):
    return [r for r in result["rows"] if r["pass"] != "step"]


def test_rows_have_the_expected_fields(result):
    names = [c.name for c in bench.TINY_CASES if c.op != "step"]
    assert [(r["case"], r["pass"]) for r in result["rows"]] == [("tiny-step", "step")] + [
        (n, p) for n in names for p in ("fwd", "bwd")]
    for row in op_rows(result):
        assert set(row) == FIELDS
        assert row["cnnlib_ms"] > 0 and row["numpy_ms"] > 0 and row["gflops"] > 0
        assert row["ratio_numpy"] == pytest.approx(row["cnnlib_ms"] / row["numpy_ms"])


def test_step_row(result):
    (row,) = [r for r in result["rows"] if r["pass"] == "step"]
    assert set(row) == FIELDS | {"epoch_s"}
    assert row["cnnlib_ms"] > 0 and row["numpy_ms"] is None and row["gflops"] is None
    assert row["epoch_s"]["cnnlib"] == pytest.approx(row["cnnlib_ms"] * 1e-3 * 60_000 / 4)
    assert "tiny-step: an epoch of 60,000 images takes" in bench.format_report(result)
    if bench.torch is not None:  # the same weights after one step of the same SGD
        assert row["torch_ms"] > 0 and row["err_torch"] < 1e-5
        assert row["epoch_s"]["torch"] == pytest.approx(row["torch_ms"] * 1e-3 * 60_000 / 4)


def test_step_cases_are_in_the_default_run():
    steps = [c for c in bench.CASES if c.op == "step"]
    assert [(c.name, c.x_shape[0]) for c in steps] == [("lenet5-step-b64", 64),
                                                       ("lenet5-step-b256", 256)]
    assert bench.flop_count(steps[0], "step") is None


def test_numpy_baseline_agrees_with_cnnlib(result):
    for row in op_rows(result):
        assert row["err_numpy"] < 1e-4, row


def test_machine_and_summary(result):
    machine = result["machine"]
    assert machine["threads"] == 1 and machine["sgemm_gflops"] > 0
    assert {"cpu", "numpy", "numba", "torch", "blas", "other_processes_cores"} <= set(machine)
    assert [s["label"] for s in result["summary"]] == [t[0] for t in bench.TARGETS]
    assert [s["target"] for s in result["summary"]] == [1.0, 1.0, 1.0, 2.0, 2.0, 2.5, 1.5]
    report = bench.format_report(result)
    assert report.startswith("machine: ") and "tiny-conv" in report


@pytest.mark.skipif(bench.torch is None, reason=NO_TORCH)
def test_torch_columns(result):
    for row in op_rows(result):
        assert row["torch_ms"] > 0 and row["err_torch"] < 1e-4, row
        assert row["max_rel_err"] >= max(row["err_numpy"], row["err_torch"])


def test_runs_without_torch(monkeypatch):
    monkeypatch.setattr(bench, "torch", None)
    monkeypatch.setattr(bench, "TORCH_MISSING", "PyTorch is not installed (test)")
    result = bench.run(cases=["tiny-pool"], threads=1, quick=True)
    for row in result["rows"]:
        assert row["torch_ms"] is None and row["ratio_torch"] is None and row["err_torch"] is None
    assert "PyTorch is not installed (test)" in result["notes"]
    assert all(s["met"] is None for s in result["summary"])
    assert "n/a" in bench.format_report(result)


OP_CASES = [c for c in bench.TINY_CASES + bench.CASES if c.op != "step"]
CASE = {c.name: c for c in bench.CASES}


@pytest.mark.parametrize("case", OP_CASES[:5], ids=lambda c: c.name)
def test_numpy_backward_matches_cnnlib(case):
    x, w, b, gy = bench.make_arrays(case, seed=1)
    if case.op == "maxpool":
        got = [bench.numpy_max_pool2d_backward(gy, x, case.kernel, case.stride, case.padding)]
        want = [F.max_pool2d_backward(gy, x, case.kernel, case.stride, case.padding)]
    else:
        args = (case.stride, case.padding, case.dilation, case.groups)
        got = bench.numpy_conv2d_backward(gy, x, w, b, *args)
        want = F.conv2d_backward(gy, x, w, b, *args)
    for g, ref in zip(got, want):
        assert g.shape == ref.shape
        assert bench.rel_err(g, ref) < 1e-5


def test_select_cases():
    assert bench.select_cases() == bench.CASES
    assert [c.name for c in bench.select_cases("LeNet-conv")] == ["lenet-conv1", "lenet-conv2"]
    assert len(bench.select_cases("lenet-,lenet-pool1")) == 4  # no duplicates
    assert [c.name for c in bench.select_cases("step")] == ["lenet5-step-b64", "lenet5-step-b256",
                                                            "tiny-step"]
    with pytest.raises(ValueError, match="no case name contains 'resnet-50'"):
        bench.select_cases("resnet-50")


def test_flop_count():
    conv1 = CASE["lenet-conv1"]
    assert bench.flop_count(conv1, "fwd") == 2 * 64 * 6 * 28 * 28 * 1 * 5 * 5
    assert bench.flop_count(conv1, "bwd") == 2 * bench.flop_count(conv1, "fwd")
    assert bench.flop_count(CASE["lenet-pool1"], "fwd") == 64 * 6 * 14 * 14 * 4


def test_command_line_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    # the same cnnlib as this process (installed or source tree): its Numba cache is warm
    package_root = str(Path(bench.__file__).resolve().parents[2])
    env = dict(os.environ, PYTHONPATH=package_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlib.tools.bench", "--quick", "--threads", "1",
         "--cases", "tiny-conv,tiny-pool", "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("machine: ")
    data = json.loads(out.read_text())
    assert {"machine", "rows", "summary", "notes"} <= set(data)
    assert [r["case"] for r in data["rows"]] == ["tiny-conv"] * 2 + ["tiny-pool"] * 2


def test_command_line_rejects_unknown_case(capsys):
    with pytest.raises(SystemExit) as exc:
        bench.main(["--cases", "nope"])
    assert exc.value.code == 2
    assert "no case name contains 'nope'" in capsys.readouterr().err


def test_startup_times_cold_and_warm():
    times = bench.startup_times()
    assert set(times) == {"cold", "warm"}
    for t in times.values():
        assert t["import_s"] > 0 and t["first_step_s"] > 0
    assert "warm Numba cache" in bench.format_startup(times)

"""cnnlib.tools.checks: the chapters' self-checks pass within tolerance and fail past it."""

import json

import numpy as np
import pytest

from cnnlib.tools.checks import CheckFailed, expect, self_check


def test_expect_passes_inside_the_tolerance_and_fails_outside():
    expect("accuracy", 0.985, 0.9853, atol=0.0004)
    expect("loss", 1.04, 1.0, rtol=0.05)
    expect("both", 1.055, 1.0, atol=0.01, rtol=0.05)      # allowed: 0.01 + 0.05
    with pytest.raises(CheckFailed, match=r"^accuracy = 0.98, expected 0.9853 \+/- 0.004$"):
        expect("accuracy", 0.98, 0.9853, atol=0.004)
    with pytest.raises(CheckFailed, match=r"0.05 x \|expected\|"):
        expect("loss", 1.051, 1.0, rtol=0.05)
    expect("exact", 3, 3, atol=0)
    with pytest.raises(CheckFailed):
        expect("exact", 3.0000001, 3, atol=0)


def test_the_tolerance_is_inclusive_and_symmetric():
    expect("up", 1.25, 1.0, atol=0.25)
    expect("down", 0.75, 1.0, atol=0.25)
    with pytest.raises(CheckFailed):
        expect("down", 0.7499, 1.0, atol=0.25)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_never_pass(bad):
    with pytest.raises(CheckFailed):
        expect("value", bad, 1.0, atol=1e9)
    with pytest.raises(CheckFailed):
        expect("value", [1.0, bad], [1.0, 1.0], rtol=1e9)


def test_arrays_are_compared_entry_by_entry():
    expect("curve", np.array([1.0, 2.0, 3.0]), [1.01, 2.0, 2.99], atol=0.02)
    with pytest.raises(CheckFailed, match=r"curve: 1 of 3 entries off by more than 0.02; "
                                          r"first at index \(2,\): 3, expected 2.9"):
        expect("curve", np.array([1.0, 2.0, 3.0]), [1.0, 2.0, 2.9], atol=0.02)
    expect("broadcast", np.full((2, 3), 0.5), 0.5, atol=0)
    with pytest.raises(ValueError, match="shape"):
        expect("curve", np.zeros(3), np.zeros(2), atol=1)


@pytest.mark.parametrize("kwargs, err, pattern", [
    (dict(), TypeError, "needs a tolerance"),
    (dict(atol=-1), ValueError, "atol must be a finite number >= 0"),
    (dict(rtol=np.nan), ValueError, "rtol"),
    (dict(atol="0.1"), ValueError, "atol"),
    (dict(atol=True), ValueError, "atol"),
])
def test_bad_tolerances(kwargs, err, pattern):
    with pytest.raises(err, match=pattern):
        expect("x", 1.0, 1.0, **kwargs)


def test_bad_values_and_names():
    with pytest.raises(TypeError, match="value must be a number"):
        expect("x", "high", 1.0, atol=1)
    with pytest.raises(TypeError, match="expected must be a number"):
        expect("x", 1.0, None, atol=1)
    with pytest.raises(TypeError, match="quantity"):
        expect("", 1.0, 1.0, atol=1)


def test_self_check_prints_a_value_free_line_on_success(capsys):
    with self_check() as check:
        check("a", 0.5, 0.5001, atol=0.001)
        check("b", [1, 2], [1, 2], atol=0)
    assert capsys.readouterr().out == "self-check: 2 values agree with the stored run\n"
    with self_check() as check:
        check("a", 0.5, 0.5, atol=0)
    assert capsys.readouterr().out == "self-check: 1 value agrees with the stored run\n"


def test_self_check_reports_every_failure_at_once(capsys):
    with pytest.raises(CheckFailed) as info:
        with self_check() as check:
            check("first accuracy", 0.90, 0.95, atol=0.01)
            check("fine", 1.0, 1.0, atol=0)
            check("second loss", 2.0, 1.0, rtol=0.5)
    message = str(info.value)
    assert message.startswith("2 of 3 values moved past their tolerance")
    assert "first accuracy = 0.9, expected 0.95 +/- 0.01" in message
    assert "second loss = 2, expected 1 +/- 0.5 x |expected|" in message
    assert "fine" not in message and capsys.readouterr().out == ""


def test_self_check_that_checks_nothing_fails():
    with pytest.raises(CheckFailed, match="checked nothing"):
        with self_check():
            pass


def test_self_check_logs_each_check_when_asked(tmp_path, monkeypatch):
    log = tmp_path / "checks.jsonl"
    monkeypatch.setenv("CNNLIB_CHECK_LOG", str(log))
    monkeypatch.setenv("CNNLIB_CHECK_NOTEBOOK", "notebooks/x.ipynb")
    with pytest.raises(CheckFailed):
        with self_check() as check:
            check("kept", np.float32(0.25), 0.25, atol=0.01)
            check("moved", [1.0, 3.0], [1.0, 2.0], rtol=0.1)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["quantity"] for r in records] == ["kept", "moved"]
    assert [r["passed"] for r in records] == [True, False]
    assert records[1]["value"] == [1.0, 3.0] and records[1]["rtol"] == 0.1
    assert records[0]["notebook"] == "notebooks/x.ipynb" and records[0]["atol"] == 0.01

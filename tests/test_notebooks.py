"""The chapters' stored outputs are classified, self-checked and glued as the style guide says.

Every code cell of a chapter that prints something is one of three kinds:
*exact* (compared as text by nbval), *numerical* (``# NBVAL_IGNORE_OUTPUT``
plus ``# (numerical: ...)``, then checked with tolerances by a later
``self_check`` cell) or *machine* (``# NBVAL_IGNORE_OUTPUT`` plus
``# (machine-dependent: ...)``, not checked).  These tests read the stored
notebooks (fast), and one of them runs a real chapter under nbval with its
stored values shifted past their tolerances, to show that the self-checks
really fail when a result moves.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from toc_notebooks import toc_notebooks  # noqa: E402

NOTEBOOKS = [ROOT / p for p in toc_notebooks()]
IGNORE = "# NBVAL_IGNORE_OUTPUT"
NUMERICAL = "# (numerical:"
MACHINE = "# (machine-dependent:"
SUCCESS = re.compile(r"^self-check: \d+ values? agrees? with the stored run\n$")
GLUE_ROLE = re.compile(r"\{glue:text\}`([^`]+)`")
GLUE_MIME = "application/papermill.record/text/plain"
# The chapter whose stored values test_shifted_values_fail_the_notebook_test shifts:
# a quick one (a few seconds) with several self-checked quantities.
SHIFTED_CHAPTER = "02_3_architectures"


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def has_text_output(cell):
    for out in cell.get("outputs", []):
        if out.output_type == "stream" or "text/plain" in out.get("data", {}):
            return True
        if out.output_type == "error":
            return True
    return False


def kind(cell):
    """'exact', 'numerical', 'machine', 'self-check' or None (no output at all)."""
    lines = [line.strip() for line in cell.source.splitlines()]
    if "with self_check() as expect:" in lines:
        return "self-check"
    if IGNORE in lines:
        if any(line.startswith(NUMERICAL) for line in lines):
            return "numerical"
        if any(line.startswith(MACHINE) for line in lines):
            return "machine"
        return "unclassified"
    return "exact" if has_text_output(cell) else None


def read(path):
    return nbformat.read(path, as_version=4)


def glued_names(nb):
    names = {}
    for cell in code_cells(nb):
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if meta:
                names[meta["name"]] = out.get("data", {})
    return names


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param, read(request.param)


def test_the_toc_lists_notebooks():
    assert NOTEBOOKS, "no notebooks found in _toc.yml"


def test_every_ignored_cell_says_what_kind_it_is(notebook):
    path, nb = notebook
    bad = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and kind(c) == "unclassified"]
    assert not bad, (f"{path.name}: cells {bad} are {IGNORE} without a '{NUMERICAL} ...)' or "
                     f"'{MACHINE} ...)' line")


def test_every_numerical_cell_is_followed_by_a_self_check(notebook):
    path, nb = notebook
    kinds = [kind(c) if c.cell_type == "code" else None for c in nb.cells]
    for i, k in enumerate(kinds):
        if k == "numerical":
            assert "self-check" in kinds[i + 1:], (
                f"{path.name}: numerical cell {i} has no self_check cell after it")


def test_stored_outputs_have_no_errors(notebook):
    path, nb = notebook
    for i, cell in enumerate(code_cells(nb)):
        assert not [o for o in cell.get("outputs", []) if o.output_type == "error"], (
            f"{path.name}: code cell {i} stored an error")


def self_check_cells(nb):
    return [c for c in code_cells(nb) if kind(c) == "self-check"]


def literal(node):
    """The value of a literal node, or None for an expression (a loop's f-string name)."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def expect_calls(cell):
    """(quantity, expected, atol, rtol, call node) of each expect() in a self-check cell;
    quantity and expected are None where they are expressions, not literals."""
    calls = []
    for node in ast.walk(ast.parse(cell.source)):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "expect":
            quantity, _, expected = node.args
            tol = {k.arg: literal(k.value) for k in node.keywords}
            calls.append((literal(quantity), literal(expected),
                          tol.get("atol"), tol.get("rtol"), node))
    return calls


def test_self_checks_are_wired_to_fail(notebook):
    """A self-check cell runs under nbval (neither skipped nor expected to
    raise: its CheckFailed fails the test even where its text output is
    ignored, as for a check that runs only where g++ is installed), stored its
    success line, and states a tolerance for every value."""
    path, nb = notebook
    for cell in self_check_cells(nb):
        lines = [line.strip() for line in cell.source.splitlines()]
        tags = set(cell.metadata.get("tags", []))
        assert not {"# NBVAL_SKIP", "# NBVAL_RAISES_EXCEPTION"} & set(lines), cell.source
        assert not {"nbval-skip", "raises-exception", "nbval-raises-exception"} & tags, cell.source
        texts = [o.get("text", "") for o in cell.outputs if o.output_type == "stream"]
        assert len(texts) == 1 and SUCCESS.match(texts[0]), (
            f"{path.name}: a self-check cell did not store its success line: {texts}")
        calls = expect_calls(cell)
        assert calls, cell.source
        for quantity, expected, atol, rtol, node in calls:
            assert {k.arg for k in node.keywords} & {"atol", "rtol"}, (
                f"{path.name}: expect({quantity!r}, ...) states no tolerance")
            assert all(t is None or t >= 0 for t in (atol, rtol)), quantity


def test_every_glued_text_in_the_prose_is_glued_by_a_cell(notebook):
    path, nb = notebook
    names = glued_names(nb)
    used = {m.split(":")[0] for c in nb.cells if c.cell_type == "markdown"
            for m in GLUE_ROLE.findall(c.source)}
    missing = sorted(used - set(names))
    assert not missing, f"{path.name}: {{glue:text}} keys with no glue() in a cell: {missing}"
    for name in used:
        text = names[name].get(GLUE_MIME)
        assert text is not None, f"{path.name}: glue {name!r} was displayed, not stored for the text"
        try:
            ast.literal_eval(text)
        except (ValueError, SyntaxError):
            pytest.fail(f"{path.name}: glue {name!r} stored {text!r}, which a format spec cannot "
                        "read; glue a Python int, float or str")


def shift_past_tolerance(cell):
    """The cell's source with every literal expected value moved to 3x its
    tolerance away, and the names of the quantities moved."""
    tree = ast.parse(cell.source)
    quantities = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "expect":
            expected, name = literal(node.args[2]), literal(node.args[0])
            tol = {k.arg: literal(k.value) for k in node.keywords}
            if expected is None or name is None or None in tol.values():
                continue

            def moved(e):
                return e + 3 * ((tol.get("atol") or 0) + (tol.get("rtol") or 0) * abs(e)) + 1e-12

            if isinstance(expected, (list, tuple)):
                shifted = [[moved(v) for v in row] if isinstance(row, (list, tuple)) else moved(row)
                           for row in expected]
            else:
                shifted = moved(expected)
            node.args[2] = ast.parse(repr(shifted), mode="eval").body
            quantities.append(name)
    return ast.unparse(tree), quantities


def test_shifted_values_fail_the_notebook_test(tmp_path):
    """Run one real chapter under nbval with every stored value of its
    self-checks moved past its tolerance: the test must fail, and the message
    must name every moved quantity."""
    path = ROOT / "notebooks" / f"{SHIFTED_CHAPTER}.ipynb"
    nb = read(path)
    cells = self_check_cells(nb)
    assert cells, f"{path.name} has no self-check to shift"
    quantities = []
    for cell in cells:
        cell.source, names = shift_past_tolerance(cell)
        quantities += names
    broken = tmp_path / path.name
    nbformat.write(nb, broken)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", str(ROOT / "nbval_sanitize.cfg"), "-p", "no:cacheprovider",
         "-q", str(broken)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode != 0, run.stdout[-3000:]
    assert "CheckFailed" in run.stdout, run.stdout[-3000:]
    assert "failed" in run.stdout.splitlines()[-1]
    for quantity in quantities:
        assert quantity in run.stdout, f"{quantity!r} not reported:\n{run.stdout[-3000:]}"
    # ...and the same notebook, unshifted, passes the same command.
    nbformat.write(read(path), broken)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env",
         "--nbval-sanitize-with", str(ROOT / "nbval_sanitize.cfg"), "-p", "no:cacheprovider",
         "-q", str(broken)],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]


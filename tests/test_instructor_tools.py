"""The instructors' checks themselves: tools/check_assignments.py and tools/check_student.py.

Both are run on small synthetic inputs: one that must pass and, for every
rule, one that breaks it and must fail, so neither check can pass vacuously.
"""
import json
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))

import check_assignments  # noqa: E402

pytest.importorskip("bs4", reason="beautifulsoup4 comes with the book's requirements (jupyter-book)")
import check_student  # noqa: E402

MASTER = "p1_receptive_field"  # 4 questions: q1 3, q2 4, q3 3, q4 2 points
POINTS = {"q1": 3, "q2": 4, "q3": 3, "q4": 2}


def write_results(out, version, scores):
    folder = out / MASTER / "graded" / version
    folder.mkdir(parents=True)
    tests = [{"name": "Public Tests", "visibility": "visible", "output": "..."}]
    tests += [{"name": q, "score": s, "max_score": POINTS[q]} for q, s in scores.items()]
    (folder / "results.json").write_text(json.dumps({"tests": tests}))


def test_master_test_counts():
    counts = check_assignments.test_counts(ROOT / "assignments" / MASTER / f"{MASTER}.ipynb")
    assert counts == {"q1": [1, 2], "q2": [1, 2], "q3": [1, 2], "q4": [1, 1]}


@pytest.mark.parametrize("solved, released, ok", [
    (POINTS, {q: 0 for q in POINTS}, True),
    (POINTS, {"q1": 2, "q2": 3, "q3": 2, "q4": 1}, True),     # partial credit, less on every question
    ({**POINTS, "q2": 3}, {q: 0 for q in POINTS}, False),     # a solution misses a point
    (POINTS, {"q1": 0, "q2": 0, "q3": 3, "q4": 0}, False),    # q3's tests cannot fail
])
def test_check_assignments(tmp_path, capsys, solved, released, ok):
    write_results(tmp_path, "autograder", solved)
    write_results(tmp_path, "student", released)
    assert (check_assignments.main(tmp_path, [MASTER]) == 0) == ok
    assert ("FAIL:" in capsys.readouterr().out) != ok


def test_check_assignments_missing_question(tmp_path):
    write_results(tmp_path, "autograder", {q: POINTS[q] for q in ("q1", "q2", "q3")})
    write_results(tmp_path, "student", {q: 0 for q in POINTS})
    assert check_assignments.main(tmp_path, [MASTER]) == 1


SOLUTION = "Flip the kernel twice and the cross-correlation is a convolution again."
EXERCISE = "Show that convolution is commutative."


def page(body):
    return f"<html><body><article>{body}</article><footer>Search</footer></body></html>"


def site(folder, pages, extra=()):
    for name, body in pages.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(page(body))
    (folder / "index.html").write_text(page("index"))
    for name, text in extra:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def exercise(label="ex-comm"):
    return (f'<div class="exercise admonition" id="{label}"><p class="admonition-title">Exercise 1</p>'
            f"<p>{EXERCISE}</p></div>")


SOLUTION_DIV = (f'<div class="solution dropdown admonition" id="sol-1"><p class="admonition-title">'
                f"Solution to Exercise 1</p><p>{SOLUTION}</p></div>")


@pytest.fixture
def reader(tmp_path):
    return site(tmp_path / "reader", {"ch.html": "<p>Text of the chapter.</p>" + exercise() + SOLUTION_DIV})


@pytest.mark.parametrize("body, extra, ok", [
    ("<p>Text of the chapter.</p>" + exercise(), (), True),
    ("<p>Text of the chapter.</p>" + exercise() + SOLUTION_DIV, (), False),        # the solution kept
    ("<p>Text of the chapter.</p>" + exercise() + f"<p>{SOLUTION}</p>", (), False),  # its text leaked
    ("<p>Text of the chapter.</p>", (), False),                                     # the exercise lost
    ("<p>Text of the chapter.</p>" + exercise(), [("searchindex.js", f"x='{SOLUTION}'")], False),
    ("<p>Text of the chapter.</p>" + exercise(), [("_downloads/ch.ipynb", "{}")], False),
    ("<p>Text of the chapter.</p>" + exercise(), [("_sources/ch.md", "text")], False),
])
def test_check_student(tmp_path, reader, capsys, body, extra, ok):
    student = site(tmp_path / "student", {"ch.html": body}, extra)
    assert (check_student.main(reader, student) == 0) == ok, capsys.readouterr().out


def test_check_student_needs_text_of_its_own(tmp_path, capsys):
    # a solution that only repeats the chapter could not be seen leaking: that is an error
    reader = site(tmp_path / "reader", {"ch.html": f"<p>{SOLUTION}</p>" + exercise() + SOLUTION_DIV})
    student = site(tmp_path / "student", {"ch.html": f"<p>{SOLUTION}</p>" + exercise()})
    assert check_student.main(reader, student) == 1
    assert "no text of its own" in capsys.readouterr().out

"""Check the graded assignments: solutions full marks, released notebooks strictly less per question.

    python tools/check_assignments.py _build/assignments p1_receptive_field [...]

Reads ``<out>/<name>/graded/{autograder,student}/results.json`` (written by
``otter run``, see tools/assignments.sh) and the test counts from the master's
test cells, prints one table row per question and exits 1 when the solutions
notebook misses a point or the student notebook as released earns full marks
on some question.
"""
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def scores(results_json):
    """{question: (score, max_score)} from an otter results.json."""
    tests = json.loads(pathlib.Path(results_json).read_text())["tests"]
    return {t["name"]: (t["score"], t["max_score"]) for t in tests if "max_score" in t}


def test_counts(master):
    """{question: (public, hidden)} from the BEGIN QUESTION and test-config cells of a master."""
    counts, question = {}, None
    for cell in json.loads(pathlib.Path(master).read_text())["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "raw" and source.startswith("# BEGIN QUESTION"):
            question = re.search(r"^name:\s*(\S+)", source, re.M).group(1)
            counts[question] = [0, 0]
        elif cell["cell_type"] == "code" and "# BEGIN TEST CONFIG" in source.split("\n", 1)[0]:
            hidden = re.search(r"^hidden:\s*true", source, re.M | re.I) is not None
            counts[question][hidden] += 1
    return counts


def main(out, names):
    failures, total = [], {"solutions": 0, "released": 0, "points": 0}
    print(f"{'assignment':22} {'question':9} {'points':>6} {'public':>6} {'hidden':>6} "
          f"{'solutions':>9} {'released':>8}")
    for name in names:
        solved = scores(pathlib.Path(out) / name / "graded" / "autograder" / "results.json")
        released = scores(pathlib.Path(out) / name / "graded" / "student" / "results.json")
        counts = test_counts(ROOT / "assignments" / name / f"{name}.ipynb")
        if set(solved) != set(counts) or set(released) != set(counts):
            failures.append(f"{name}: graded questions {sorted(solved)} / {sorted(released)} "
                            f"differ from the master's {sorted(counts)}")
            continue
        for q, (public, hidden) in counts.items():
            score, points = solved[q]
            student = released[q][0]
            print(f"{name:22} {q:9} {points:6g} {public:6d} {hidden:6d} {score:9g} {student:8g}")
            total["solutions"] += score
            total["released"] += student
            total["points"] += points
            if public == 0 or hidden == 0:
                failures.append(f"{name} {q}: {public} public and {hidden} hidden tests (need both)")
            if score != points:
                failures.append(f"{name} {q}: the solutions score {score:g} of {points:g}")
            if student >= points:
                failures.append(f"{name} {q}: the released notebook already scores full marks "
                                f"({student:g} of {points:g})")
    print(f"total: solutions {total['solutions']:g} / {total['points']:g}, "
          f"released {total['released']:g} / {total['points']:g}")
    for failure in failures:
        print("FAIL:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2:]))

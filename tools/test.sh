#!/usr/bin/env bash
# Every test of the project, from the repository root:
#   1. pytest for the library (tests/);
#   2. nbval in strict mode on every notebook listed in _toc.yml
#      (stored text outputs must reproduce; see nbval_sanitize.cfg);
#   3. the assignments: otter assign and otter run on every master in
#      assignments/ (tools/assignments.sh): solutions full marks, the notebooks
#      as released strictly less on every question;
#   4. the book build with warnings as errors, then the student edition
#      (tools/build_student.py, also -W -n) and tools/check_student.py: every
#      exercise kept, no solution text in any of its files;
#   5. the browser tests (browser_tests/): the built book served on 127.0.0.1
#      in headless Chromium with every other host blocked (skipped, with the
#      reason, where Chromium is not installed: apt-get install chromium).
# The builds only render the stored notebooks (execute_notebooks: "off"), so
# they run in the background, one after the other, beside 1 to 3 (mostly one
# core each); their log is printed, and their exit status returned, at the end.
# MNIST is found through cnnlib.data.mnist.load_mnist: $CNNLIB_DATA, the user
# cache, or a verified download.
set -euo pipefail
cd "$(dirname "$0")/.."

build_log=$(mktemp)
(
    rc=0
    echo "-- reader edition: jupyter-book build . --all -W -n --keep-going"
    jupyter-book build . --all -W -n --keep-going || rc=1
    echo "-- student edition: python tools/build_student.py -W -n --keep-going"
    python tools/build_student.py -W -n --keep-going || rc=1
    exit "$rc"
) > "$build_log" 2>&1 &
build_pid=$!
# If a test fails, set -e exits here: stop the builds and drop their log.
trap 'pkill -P "$build_pid" 2> /dev/null || true; kill "$build_pid" 2> /dev/null || true; rm -f "$build_log"' EXIT

echo "== library tests"
# -P: import cnnlib as installed (like the notebooks do), not from the source
# tree, so the package as a reader gets it is what is tested, and Numba
# compiles and caches each kernel once for both.
python -P -m pytest tests

echo "== notebooks (nbval, strict)"
python tools/toc_notebooks.py > /dev/null  # fails loudly on a toc entry with no file
notebooks=$(python tools/toc_notebooks.py)
if [ -n "$notebooks" ]; then
    # shellcheck disable=SC2086
    python -m pytest --nbval --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg \
        -p no:cacheprovider $notebooks
fi

echo "== assignments (otter assign, otter run)"
bash tools/assignments.sh

echo "== book and student edition (jupyter-book build -W -n, started with the library tests)"
build_rc=0
wait "$build_pid" || build_rc=$?
cat "$build_log"
[ "$build_rc" -eq 0 ] || exit "$build_rc"

echo "== student edition: exercises kept, no solution"
python tools/check_student.py

echo "== the built book in a browser (Playwright, headless Chromium, offline)"
python -m pytest -p no:cacheprovider -rs browser_tests

#!/usr/bin/env bash
# Every test of the project, from the repository root:
#   1. pytest for the library (tests/);
#   2. nbval in strict mode on every notebook listed in _toc.yml
#      (stored text outputs must reproduce; see nbval_sanitize.cfg);
#   3. the book build with warnings as errors.
# The build only renders the stored notebooks (execute_notebooks: "off"), so
# it runs in the background beside 1 and 2 (mostly one core each); its log is
# printed, and its exit status returned, at the end.
# MNIST is found through cnnlib.data.mnist.load_mnist: $CNNLIB_DATA, the user
# cache, or a verified download.
set -euo pipefail
cd "$(dirname "$0")/.."

build_log=$(mktemp)
jupyter-book build . --all -W -n --keep-going > "$build_log" 2>&1 &
build_pid=$!
# If a test fails, set -e exits here: stop the build and drop its log.
trap 'kill "$build_pid" 2> /dev/null || true; rm -f "$build_log"' EXIT

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

echo "== book (jupyter-book build -W -n, started with the library tests)"
build_rc=0
wait "$build_pid" || build_rc=$?
cat "$build_log"
exit "$build_rc"

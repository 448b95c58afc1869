#!/usr/bin/env bash
# Do the notebooks' stored outputs reproduce on a machine other than the one
# that stored them?  Runs nbval (strict, as tools/test.sh does) on every
# notebook of _toc.yml under one or both machine profiles:
#
#   default   this machine as it is;
#   foreign   another machine, as far as one process can pretend to be one:
#             Numba compiles for a generic x86-64 CPU (no AVX), into a fresh
#             empty cache; OpenBLAS uses its Sandy Bridge kernels; Numba and
#             BLAS run on one thread.  Vector widths, summation orders, BLAS
#             blocking and thread chunking all change, as they do between a
#             laptop and a server.
#
# Usage (from anywhere):
#   bash tools/portable.sh                 # both profiles
#   bash tools/portable.sh foreign         # one profile
#   bash tools/portable.sh foreign notebooks/02_2_pooling.ipynb   # some notebooks
#
# Every self-check (cnnlib.tools.checks.self_check) writes what it compared to
# _build/portability/<profile>.jsonl, and at the end tools/check_report.py
# prints, per quantity, how far each profile moved it as a fraction of its
# tolerance.  Per-notebook times go to _build/portability/<profile>-times.txt
# (PORTABLE_OUT=DIR writes them to DIR instead).
#
# This is the one place where the machine variables are changed on purpose;
# tools/test.sh and CI leave them alone.
set -uo pipefail
cd "$(dirname "$0")/.."

profiles=(default foreign)
if [ $# -gt 0 ] && [ "$1" != "both" ]; then
    case "$1" in
        default|foreign) profiles=("$1") ;;
        *) echo "usage: bash tools/portable.sh [default|foreign|both] [notebook ...]" >&2; exit 2 ;;
    esac
fi
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then
    notebooks=("$@")
else
    python tools/toc_notebooks.py > /dev/null || exit 2
    mapfile -t notebooks < <(python tools/toc_notebooks.py)
fi

out=${PORTABLE_OUT:-_build/portability}
mkdir -p "$out"
out=$(cd "$out" && pwd)   # absolute: nbval runs each kernel in the notebook's folder
status=0
for profile in "${profiles[@]}"; do
    log="$out/$profile.jsonl"
    times="$out/$profile-times.txt"
    : > "$log"
    : > "$times"
    cache=""
    if [ "$profile" = foreign ]; then
        cache=$(mktemp -d)
    fi
    echo "== nbval under the $profile profile"
    start=$(date +%s)
    for nb in "${notebooks[@]}"; do
        t0=$(date +%s)
        if [ "$profile" = foreign ]; then
            env NUMBA_CPU_NAME=generic NUMBA_CACHE_DIR="$cache" \
                OPENBLAS_CORETYPE=Sandybridge \
                NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
                MKL_NUM_THREADS=1 \
                CNNLIB_CHECK_LOG="$log" CNNLIB_CHECK_NOTEBOOK="$nb" \
                python -m pytest --nbval --nbval-current-env \
                    --nbval-sanitize-with nbval_sanitize.cfg -p no:cacheprovider -q "$nb"
        else
            env CNNLIB_CHECK_LOG="$log" CNNLIB_CHECK_NOTEBOOK="$nb" \
                python -m pytest --nbval --nbval-current-env \
                    --nbval-sanitize-with nbval_sanitize.cfg -p no:cacheprovider -q "$nb"
        fi
        rc=$?
        [ $rc -ne 0 ] && status=1
        echo "$(basename "$nb") $(( $(date +%s) - t0 )) s rc=$rc" | tee -a "$times"
    done
    echo "$profile profile: $(( $(date +%s) - start )) s in all" | tee -a "$times"
    [ -n "$cache" ] && rm -rf "$cache"
done

python tools/check_report.py "$out"/*.jsonl
if [ $status -ne 0 ]; then
    echo "portability check FAILED (see the nbval output above)"
else
    echo "portability check passed: ${profiles[*]}"
fi
exit $status

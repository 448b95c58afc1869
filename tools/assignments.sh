#!/usr/bin/env bash
# Generate and grade every assignment (otter-grader, no Docker), from the repository root:
#   bash tools/assignments.sh                      # every assignments/*/<name>.ipynb master
#   bash tools/assignments.sh p1_receptive_field   # one
# For each master assignments/<name>/<name>.ipynb:
#   1. otter assign  -> _build/assignments/<name>/{student,autograder}
#      (it also runs the master's tests on the solutions and fails if one fails);
#   2. otter run     -> grades the solutions notebook and the student notebook as
#      released with the autograder zip, into _build/assignments/<name>/graded/;
#   3. tools/check_assignments.py: the solutions score full marks and the released
#      notebook strictly less on every question (so every question's tests can fail).
# MNIST, where an assignment needs it, is found as the chapters find it ($CNNLIB_DATA,
# the user cache, or a verified download).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/_build/assignments"

if [ "$#" -gt 0 ]; then names=("$@"); else
    names=()
    for master in assignments/*/*.ipynb; do
        name=$(basename "$master" .ipynb)
        [ "$(basename "$(dirname "$master")")" = "$name" ] && names+=("$name")
    done
fi
[ "${#names[@]}" -gt 0 ] || { echo "no assignment masters found in assignments/" >&2; exit 1; }

for name in "${names[@]}"; do
    master="assignments/$name/$name.ipynb"
    [ -f "$master" ] || { echo "no master notebook $master" >&2; exit 1; }
    start=$(date +%s)
    rm -rf "${out:?}/$name"
    mkdir -p "$out/$name"
    # otter assign resolves the config's relative paths (requirements) from the master's folder.
    (cd "assignments/$name" && otter assign "$name.ipynb" "$out/$name") > "$out/$name/assign.log" 2>&1 \
        || { cat "$out/$name/assign.log"; echo "otter assign failed for $name" >&2; exit 1; }
    zips=("$out/$name"/autograder/*-autograder_*.zip)
    for version in autograder student; do
        mkdir -p "$out/$name/graded/$version"
        otter run --no-logo -a "${zips[0]}" -o "$out/$name/graded/$version" \
            "$out/$name/$version/$name.ipynb" > "$out/$name/graded/$version/run.log" 2>&1 \
            || { cat "$out/$name/graded/$version/run.log"; echo "otter run failed for $name ($version)" >&2; exit 1; }
    done
    echo "$name: generated and graded in $(( $(date +%s) - start )) s"
done
python tools/check_assignments.py "$out" "${names[@]}"

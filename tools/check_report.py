"""Tabulate the self-check logs that tools/portable.sh writes.

Usage::

    python tools/check_report.py _build/portability/default.jsonl _build/portability/foreign.jsonl

Each log line is one check made inside ``cnnlib.tools.checks.self_check`` (written
when ``CNNLIB_CHECK_LOG`` is set).  For every quantity the table shows the
stored (expected) value, each profile's deviation from it, and the largest
deviation as a fraction of the tolerance: a quantity near 1.0 is close to
failing somewhere, one at 0.00 never moved.
"""

import json
import sys
from pathlib import Path

import numpy as np


def read_log(path):
    """The records of one log, keyed by (notebook, quantity); the last one wins."""
    records = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            records[(r["notebook"], r["quantity"])] = r
    return records


def deviation(record):
    """Largest |value - expected| and the same as a fraction of the tolerance."""
    value = np.asarray(record["value"], dtype=np.float64)
    expected = np.asarray(record["expected"], dtype=np.float64)
    allowed = (record["atol"] or 0.0) + (record["rtol"] or 0.0) * np.abs(expected)
    dev = np.abs(value - expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(allowed > 0, dev / allowed, np.where(dev > 0, np.inf, 0.0))
    return float(np.nanmax(dev)) if dev.size else 0.0, float(np.nanmax(frac)) if frac.size else 0.0


def main(paths):
    logs = {Path(p).stem: read_log(p) for p in paths if Path(p).exists()}
    if not logs:
        print("no self-check logs found")
        return 0
    keys = sorted({k for log in logs.values() for k in log})
    names = list(logs)
    print(f"{len(keys)} self-checked quantities; deviation from the stored value "
          f"per profile ({', '.join(names)}), and the worst as a fraction of the tolerance")
    notebook = None
    for key in keys:
        if key[0] != notebook:
            notebook = key[0]
            print(f"\n{Path(notebook).name or '(no notebook)'}")
        devs, fracs, tol = [], [], ""
        for name in names:
            record = logs[name].get(key)
            if record is None:
                devs.append("-")
                continue
            d, f = deviation(record)
            devs.append(f"{d:.2e}")
            fracs.append(f)
            tol = " ".join(f"{t}={record[t]:g}" for t in ("atol", "rtol") if record[t])
        worst = max(fracs) if fracs else float("nan")
        flag = "  FAILED" if worst > 1 else ""
        print(f"  {key[1][:58]:<58} {' '.join(f'{d:>9}' for d in devs)}  "
              f"{worst:5.2f} of {tol}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

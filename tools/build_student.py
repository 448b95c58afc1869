"""Build the student edition of the book into _build/student/html.

    python tools/build_student.py [extra jupyter-book build options, e.g. -W -n --keep-going]

Merges _config.student.yml over _config.yml (nested mappings key by key, the
student file winning), writes the result to _build/student/_config.yml and runs
``jupyter-book build . --all --config <that file> --path-output _build/student``.
Jupyter Book writes the pages to _build/student/_build/html; they are moved to
_build/student/html. The exit status is jupyter-book's. tools/check_student.py
then checks that no solution reached the pages.
"""
import pathlib
import shutil
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "_build" / "student"


def merge(base, overlay):
    """``base`` updated by ``overlay``, mappings merged recursively (new dict)."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def main(argv):
    base = yaml.safe_load((ROOT / "_config.yml").read_text())
    overlay = yaml.safe_load((ROOT / "_config.student.yml").read_text())
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    merged = merge(base, overlay)
    # Jupyter Book resolves local_extensions' folders from the config file's
    # folder; the merged file lives in _build/student, so make them absolute.
    local = merged.get("sphinx", {}).get("local_extensions") or {}
    for ext, folder in local.items():
        local[ext] = str((ROOT / folder).resolve())
    config = OUT / "_config.yml"
    config.write_text(yaml.safe_dump(merged, sort_keys=False))
    cmd = ["jupyter-book", "build", str(ROOT), "--all", "--config", str(config),
           "--path-output", str(OUT), *argv]
    print("+", " ".join(cmd), flush=True)
    rc = subprocess.call(cmd)
    built = OUT / "_build" / "html"
    if built.is_dir():
        built.rename(OUT / "html")
        print(f"student edition: {OUT / 'html' / 'index.html'}")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

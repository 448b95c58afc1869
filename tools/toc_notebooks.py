"""Print the notebooks listed in _toc.yml, one path per line, in book order.

Usage (from the repository root; xargs -r runs nothing when the list is empty,
which matters because a bare ``pytest`` would fall back to ``tests/``)::

    python tools/toc_notebooks.py | xargs -r python -m pytest --nbval \
        --nbval-current-env --nbval-sanitize-with nbval_sanitize.cfg

Only entries whose ``file`` is a ``.ipynb`` on disk are printed; Markdown pages
(preface, glossary, ...) are skipped. A ``file`` that is neither a notebook nor
a Markdown page is an error, so a typo in the table of contents is caught here
as well as by the book build.
"""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def toc_files(node):
    """Yield every ``file`` value in a jb-book table of contents, in order."""
    if isinstance(node, dict):
        if "file" in node:
            yield node["file"]
        for key in ("root", "parts", "chapters", "sections"):
            value = node.get(key)
            if isinstance(value, str):
                yield value
            elif value is not None:
                yield from toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from toc_files(item)


def toc_notebooks(toc_path=ROOT / "_toc.yml"):
    """The notebooks of the table of contents, as paths relative to the root.

    Raises ``SystemExit`` naming every ``file`` that is neither a notebook
    nor a Markdown page.
    """
    toc = yaml.safe_load(Path(toc_path).read_text(encoding="utf-8"))
    notebooks, missing = [], []
    for name in toc_files(toc):
        stem = Path(name)
        if stem.suffix in (".ipynb", ".md"):
            stem = stem.with_suffix("")
        notebook = stem.with_suffix(".ipynb")
        if (ROOT / notebook).is_file():
            notebooks.append(notebook.as_posix())
        elif not (ROOT / stem.with_suffix(".md")).is_file():
            missing.append(name)
    if missing:
        sys.exit(f"_toc.yml lists files that do not exist: {', '.join(missing)}")
    return notebooks


def main(toc_path=ROOT / "_toc.yml"):
    for notebook in toc_notebooks(toc_path):
        print(notebook)


if __name__ == "__main__":
    main(*sys.argv[1:])

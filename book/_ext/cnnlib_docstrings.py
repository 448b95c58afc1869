"""Sphinx glue for cnnlib's docstrings (the cnnlib reference, book/api/).

cnnlib's docstrings use cs231n's plain layout::

    Inputs:
    - x: (N, C, H, W), float32 or float64
    - stride: int or pair; continuation lines
      indented by two spaces

which reads well in a terminal but is not quite reStructuredText: a list
must be separated from the line before it by a blank line, and ``|x|`` (an
absolute value) would be a substitution.  This hook adds the blank line and
escapes the bars outside ``literals`` when autodoc reads a docstring, and
changes nothing else.
"""

import re

_LITERAL = re.compile(r"(``.*?``)")


def _escape_bars(line):
    return "".join(part if part.startswith("``") else part.replace("|", "\\|")
                   for part in _LITERAL.split(line))


def _to_rest(app, what, name, obj, options, lines):
    lines[:] = [_escape_bars(line) for line in lines]
    i = 1
    while i < len(lines):
        if lines[i].startswith("- ") and lines[i - 1].strip() and not lines[i - 1].startswith(("- ", "  ")):
            lines.insert(i, "")
            i += 1
        i += 1


def _ignore_numpy_types(app, config):
    # No intersphinx (the book builds offline): NumPy's array type is named in
    # annotations and docstrings but has no page to link to.
    config.nitpick_ignore = list(config.nitpick_ignore) + [
        ("py:class", "numpy.ndarray"), ("py:class", "ndarray"), ("py:class", "np.ndarray")]


def setup(app):
    app.connect("autodoc-process-docstring", _to_rest)
    app.connect("config-inited", _ignore_numpy_types)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""The chapters' tools: not the book's subject, but what every chapter uses.

* :mod:`cnnlib.tools.checks`: the self-checks (``self_check``, ``expect``)
  that compare a notebook's numbers with the values it was built with;
* :mod:`cnnlib.tools.plotting`: figures shared by several chapters;
* :mod:`cnnlib.tools.bench`: the speed benchmark
  (``python -m cnnlib.tools.bench``).

Only ``checks`` is imported here; ``plotting`` (matplotlib) and ``bench``
load on use.
"""

from . import checks

__all__ = ["checks"]

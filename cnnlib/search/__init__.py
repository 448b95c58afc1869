"""Architecture search: differentiable (DARTS) and evolutionary.

* :mod:`~cnnlib.search.darts`: mixed operations, cells, the supernet with
  softmax or Gumbel-softmax relaxation, first- and second-order architecture
  steps, genotypes and their retraining (Part IV, "Architecture search");
* :mod:`~cnnlib.search.evolution`: regularised evolution, random search, and
  small CNN genomes with their mutations (Part IV, "Architecture search").

The Gumbel-softmax itself is in :mod:`cnnlib.functional`.
"""

from . import darts, evolution

__all__ = ["darts", "evolution"]

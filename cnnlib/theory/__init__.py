"""Theory: what networks can represent (chapter 6.1).

* :mod:`cnnlib.theory.expressive`: the closed-form one-hidden-layer ReLU
  interpolant (universal approximation in 1-D), Telgarsky's sawtooth network,
  the exact count of a 1-D ReLU network's linear pieces, and the L1 lower bound
  for approximating the sawtooth with few pieces.
"""

from . import expressive
from .expressive import (count_linear_pieces, interpolation_error_bound, linear_pieces,
                         relu_interpolant, sawtooth_network, shallow_l1_lower_bound)

__all__ = ["expressive",
           "relu_interpolant", "interpolation_error_bound", "sawtooth_network", "linear_pieces",
           "count_linear_pieces", "shallow_l1_lower_bound"]

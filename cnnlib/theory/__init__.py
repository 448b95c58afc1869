"""Theory (Part VI): what networks can represent, and the landscape their
training moves on.

* :mod:`cnnlib.theory.expressive` (chapter 6.1): the closed-form
  one-hidden-layer ReLU interpolant (universal approximation in 1-D),
  Telgarsky's sawtooth network, the exact count of a 1-D ReLU network's linear
  pieces, and the L1 lower bound for approximating the sawtooth with few
  pieces;
* :mod:`cnnlib.theory.landscape` (chapter 6.2): Hessian-vector products by
  central differences, the Hessian and its spectrum, the index of a critical
  point, Hutchinson's trace estimator, critical points by minimising the
  gradient norm, gradient descent with a record, the loss barrier of a path;
* :mod:`cnnlib.theory.curves` (chapter 6.2): Bezier and polygonal-chain curves
  between two minima (Garipov et al. 2018).
"""

from . import curves, expressive, landscape
from .curves import bezier_coefficients, coefficients, curve_point, polychain_coefficients
from .expressive import (count_linear_pieces, interpolation_error_bound, linear_pieces,
                         relu_interpolant, sawtooth_network, shallow_l1_lower_bound)
from .landscape import (FD_STEP, barrier, find_critical_point, gradient_descent, hessian,
                        hutchinson_trace, hvp, index, spectrum)

__all__ = ["expressive", "landscape", "curves",
           "relu_interpolant", "interpolation_error_bound", "sawtooth_network", "linear_pieces",
           "count_linear_pieces", "shallow_l1_lower_bound",
           "FD_STEP", "hvp", "hessian", "spectrum", "index", "hutchinson_trace",
           "find_critical_point", "gradient_descent", "barrier",
           "bezier_coefficients", "polychain_coefficients", "coefficients", "curve_point"]

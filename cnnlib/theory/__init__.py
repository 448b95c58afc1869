"""Theory: the optimisation landscape (Hessians, saddle points, mode connectivity).
See the chapter "Optimisation landscape" (6.2).

* :mod:`cnnlib.theory.landscape`: Hessian-vector products by central
  differences, the Hessian and its spectrum, the index of a critical point,
  Hutchinson's trace estimator, critical points by minimising the gradient
  norm, gradient descent with a record, the loss barrier of a path;
* :mod:`cnnlib.theory.curves`: Bezier and polygonal-chain curves between two
  minima (Garipov et al. 2018).
"""

from . import curves, landscape
from .curves import bezier_coefficients, coefficients, curve_point, polychain_coefficients
from .landscape import (FD_STEP, barrier, find_critical_point, gradient_descent, hessian,
                        hutchinson_trace, hvp, index, spectrum)

__all__ = ["landscape", "curves",
           "FD_STEP", "hvp", "hessian", "spectrum", "index", "hutchinson_trace",
           "find_critical_point", "gradient_descent", "barrier",
           "bezier_coefficients", "polychain_coefficients", "coefficients", "curve_point"]

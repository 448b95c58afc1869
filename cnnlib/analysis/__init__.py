"""Measuring a network: what it sees, how many weights it has, how gradients and outputs behave.

* :mod:`~cnnlib.analysis.receptive`: receptive fields, convolution
  arithmetic, dilated taps (Parts I and II);
* :mod:`~cnnlib.analysis.connectivity`: dense vs locally connected vs
  convolutional parameter counts (Part I, "Core ideas");
* :mod:`~cnnlib.analysis.summary`: a layer-by-layer summary and parameter
  counts (Part II);
* :mod:`~cnnlib.analysis.jacobian`: exact and numerical Jacobians, of
  residual blocks too (Part II, "Classic architectures");
* :mod:`~cnnlib.analysis.gradflow`: gradients through deep plain and residual
  stacks (Part II, "Classic architectures");
* :mod:`~cnnlib.analysis.sharpness`: Hessian eigenvalues and epsilon-sharpness
  (Part III, "Hyper-parameters");
* :mod:`~cnnlib.analysis.invariance`: shift equivariance and pooling
  invariance (Parts I and II);
* :mod:`~cnnlib.analysis.border`: padding modes and border effects (Part II,
  "Convolution");
* :mod:`~cnnlib.analysis.uncertainty`: MC-dropout uncertainty (Part III,
  "Regularisation");
* :mod:`~cnnlib.analysis.interpret`: feature maps, filters and occlusion
  sensitivity (Part I, "Core ideas");
* :mod:`~cnnlib.analysis.attribution`: integrated gradients, saliency,
  gradient x input and baselines (Part IV, "Interpretability");
* :mod:`~cnnlib.analysis.tcav`: concept activation vectors, TCAV scores and
  their t-test against random concepts (Part IV, "Interpretability");
* :mod:`~cnnlib.analysis.detection`: precision, recall, the ROC curve and its
  area, the threshold for a false-alarm budget, attribution inside a mask
  (Part VIII, "Applications").
"""

from . import (
               attribution,
               border,
               connectivity,
               detection,
               gradflow,
               interpret,
               invariance,
               jacobian,
               receptive,
               sharpness,
               summary,
               tcav,
               uncertainty,
)

__all__ = ["receptive", "connectivity", "summary", "jacobian", "gradflow", "sharpness",
           "invariance", "border", "uncertainty", "interpret", "attribution", "tcav",
           "detection"]

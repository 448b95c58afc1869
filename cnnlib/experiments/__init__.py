"""The chapters' experiment drivers, composed from the other wings.

* :mod:`~cnnlib.experiments.fc_vs_cnn`: dense equivalents, MLPs at equal
  budgets, translated MNIST (Part I, "CNN vs fully connected");
* :mod:`~cnnlib.experiments.scaling`: EfficientNet compound scaling (Part II,
  "Classic architectures");
* :mod:`~cnnlib.experiments.hyper`: batch-size sweeps, linear scaling with
  warm-up, sharpness vs batch size (Part III, "Hyper-parameters");
* :mod:`~cnnlib.experiments.regularisation`: dropout, L2 vs decoupled weight
  decay on LeNet-5 (Part III, "Regularisation");
* :mod:`~cnnlib.experiments.search`: DARTS, evolution and random search at a
  matched budget, and the found architectures retrained (Part IV,
  "Architecture search");
* :mod:`~cnnlib.experiments.interpretability`: IG's delta table, baselines,
  TCAV over MNIST concepts (Part IV, "Interpretability");
* :mod:`~cnnlib.experiments.hardware`: layers mapped onto systolic arrays,
  LeNet-5 through analog crossbars (Part V, "Accelerators");
* :mod:`~cnnlib.experiments.quantisation`: post-training quantisation against bit
  width, quantisation-aware training, distillation quantisation (Part V, "Quantisation");
* :mod:`~cnnlib.experiments.depth`: shallow networks of growing width against
  the deep sawtooth, and training the deep narrow network (Part VI, "Expressive power");
* :mod:`~cnnlib.experiments.landscape`: critical points of a tiny network and their
  index, gradient descent near a saddle, curves between two CNN minima with
  batch-norm statistics recomputed or not (Part VI, "Optimisation landscape");
* :mod:`~cnnlib.experiments.applications`: the defect detector on synthetic
  textures, the latency budget, the binarised network and its energy per
  operation (Part VIII, "Applications").
"""

from . import (applications, depth, fc_vs_cnn, hardware, hyper, interpretability, landscape, quantisation,
               regularisation, scaling, search)

__all__ = ["fc_vs_cnn", "scaling", "hyper", "regularisation", "search", "interpretability", "hardware",
           "quantisation", "depth", "landscape", "applications"]

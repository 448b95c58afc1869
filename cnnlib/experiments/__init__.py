"""The chapters' experiment drivers, composed from the other wings.

* :mod:`~cnnlib.experiments.fc_vs_cnn`: dense equivalents, MLPs at equal
  budgets, translated MNIST (Part I, "CNN vs fully connected");
* :mod:`~cnnlib.experiments.scaling`: EfficientNet compound scaling (Part II,
  "Classic architectures");
* :mod:`~cnnlib.experiments.hyper`: batch-size sweeps, linear scaling with
  warm-up, sharpness vs batch size (Part III, "Hyper-parameters");
* :mod:`~cnnlib.experiments.regularisation`: dropout, L2 vs decoupled weight
  decay on LeNet-5 (Part III, "Regularisation");
* :mod:`~cnnlib.experiments.quantisation`: post-training quantisation against bit
  width, quantisation-aware training, distillation quantisation (Part V, "Quantisation").
"""

from . import fc_vs_cnn, hyper, quantisation, regularisation, scaling

__all__ = ["fc_vs_cnn", "scaling", "hyper", "regularisation", "quantisation"]

"""Data: MNIST, found locally or downloaded and verified, and image transforms.

* :mod:`~cnnlib.data.mnist`: :func:`~cnnlib.data.mnist.load_mnist` looks in a given folder,
  ``$CNNLIB_DATA`` and the user cache, downloads what is missing, and checks
  every file's SHA-256; :func:`~cnnlib.data.mnist.mnist_available` tells whether the files are
  on this machine.  Used by every chapter that trains or tests on digits.
* :mod:`~cnnlib.data.transforms`: rotations and other perturbations of
  digits (Part III, "Regularisation").
* :mod:`~cnnlib.data.cluttered`: translated, cluttered digits on a larger
  canvas (Part IV, "Attention");
* :mod:`~cnnlib.data.concepts`: loops, stroke thickness and slant measured
  from the pixels, for TCAV's concept sets (Part IV, "Interpretability");
* :mod:`~cnnlib.data.defects`: synthetic surface textures with scratches,
  spots and cracks, their labels and defect masks (Part VIII, "Applications").
"""

from . import cluttered, concepts, defects, mnist, transforms
from .cluttered import cluttered_mnist
from .defects import defect_textures
from .mnist import DatasetError, load_mnist, mnist_available

__all__ = ["mnist", "transforms", "cluttered", "concepts", "defects", "cluttered_mnist", "defect_textures", "load_mnist",
           "mnist_available", "DatasetError"]

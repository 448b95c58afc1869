"""Ready-made models.  For now: LeNet-5 (LeCun et al. 1998) for MNIST.

Input size and padding: MNIST digits are 28x28, while LeNet-5 was designed
for 32x32 inputs (the digits centred in a larger field, so that strokes
near the edge still reach the centre of a 5x5 receptive field).  We keep the
classic architecture and its 61,706 parameters by giving the first
convolution ``padding=2``, which is the same as zero-padding each image to
32x32.  Activations are ReLU and pooling is max pooling (the modern variant;
the original used scaled tanh and trainable sub-sampling).

    (N, 1, 28, 28) -conv 5x5, pad 2-> (N, 6, 28, 28) -maxpool 2-> (N, 6, 14, 14)
    -conv 5x5-> (N, 16, 10, 10) -maxpool 2-> (N, 16, 5, 5) -flatten-> (N, 400)
    -linear-> 120 -linear-> 84 -linear-> 10 logits
"""

import json
from importlib import resources

import numpy as np

from .. import nn
from .._random import get_rng

__all__ = ["LeNet5", "pretrained_info", "lenet5"]

# Mean and standard deviation of the MNIST training pixels, scaled to [0, 1].
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

PRETRAINED = "lenet5_mnist"


class LeNet5(nn.Sequential):
    """LeNet-5 for 28x28 grey images, with its own preprocessing in :meth:`predict`."""

    def __init__(self, *, dtype=np.float32, rng=None):
        # one generator for all layers: a seed must not give each layer the same draws
        kw = dict(dtype=dtype, rng=get_rng(rng))
        super().__init__(
            nn.Conv2d(1, 6, 5, padding=2, **kw), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, **kw), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120, **kw), nn.ReLU(),
            nn.Linear(120, 84, **kw), nn.ReLU(),
            nn.Linear(84, 10, **kw),
        )

    def preprocess(self, images):
        """uint8 images (N, 28, 28) -> normalised float array (N, 1, 28, 28)."""
        images = np.asarray(images)
        if images.dtype != np.uint8:
            raise TypeError(f"images must be uint8 (raw MNIST pixels), got dtype {images.dtype}")
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise ValueError(f"images must have shape (N, 28, 28), got {images.shape}")
        dtype = self[0].weight.dtype
        x = images[:, None].astype(dtype) / dtype.type(255)
        return (x - dtype.type(MNIST_MEAN)) / dtype.type(MNIST_STD)

    def logits(self, images, batch_size=1000):
        """Class scores (N, 10) for uint8 images (N, 28, 28), in batches."""
        x = self.preprocess(images)
        out = [self.forward(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.empty((0, 10), x.dtype)

    def predict(self, images, batch_size=1000):
        """Predicted labels (N,) as int64 for uint8 images (N, 28, 28)."""
        return self.logits(images, batch_size).argmax(axis=1)


def _weights_file(name, suffix):
    return resources.files("cnnlib.models") / "weights" / f"{name}{suffix}"


def pretrained_info(name=PRETRAINED):
    """The record stored beside shipped weights: command, seed, accuracy, time."""
    return json.loads(_weights_file(name, ".json").read_text())


def lenet5(pretrained=False, *, dtype=np.float32, rng=None):
    """Build LeNet-5 (see the module docstring); with ``pretrained=True`` load
    the shipped MNIST weights made by ``python -m cnnlib.training`` (the command
    and seed are in :func:`pretrained_info`)."""
    model = LeNet5(dtype=dtype, rng=rng)
    if pretrained:
        with _weights_file(PRETRAINED, ".npz").open("rb") as f:
            with np.load(f) as data:
                model.load_state_dict({k: data[k] for k in data.files})
    return model

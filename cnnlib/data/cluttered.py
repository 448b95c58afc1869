"""Translated, cluttered MNIST: a digit somewhere on a larger canvas, among pieces of other digits.

On plain MNIST the digit fills a centred 28x28 frame, so there is little
for an attention block to find. :func:`cluttered_mnist` puts each digit at a
random position on a ``size`` x ``size`` canvas and scatters ``n_clutter``
random ``patch`` x ``patch`` crops of *other* digits over it (pixel-wise
maximum, so strokes overlap as ink does), in the spirit of the cluttered
MNIST of spatial transformer networks. The network must find the digit
first. Everything random comes from ``rng``. See the attention chapter
(Part IV).
"""

import numpy as np

from .._random import get_rng
from .._validate import check_count

__all__ = ["cluttered_mnist"]


def cluttered_mnist(images, labels, size=40, n_clutter=4, patch=8, rng=None):
    """Place each digit at a random position of a larger canvas with clutter around it.

    Inputs:
    - images: uint8 array (N, h, w), e.g. MNIST digits (h = w = 28)
    - labels: int array (N,), returned unchanged (as int64)
    - size: side of the square canvas, at least max(h, w)
    - n_clutter: number of clutter patches per canvas (0: translation only)
    - patch: side of each clutter patch, at most min(h, w); it is cut at a
      random place of a random *other* image and put at a random place
    - rng: a Generator, a seed or None (the library's default generator)

    Returns (canvases uint8 (N, size, size), labels int64 (N,), corners int64
    (N, 2)), where ``corners[n]`` is the (row, column) of the digit's top-left
    pixel on its canvas. The digit is drawn last with a pixel-wise maximum.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        raise TypeError(f"images must be a uint8 numpy.ndarray of shape (N, h, w), got "
                        f"{getattr(images, 'dtype', type(images).__name__)} "
                        f"{getattr(images, 'shape', '')}")
    labels = np.asarray(labels)
    if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape {images.shape[:1]}, got "
                         f"{labels.dtype} {labels.shape}")
    n, h, w = images.shape
    size = check_count(size, "size", max(h, w))
    n_clutter = check_count(n_clutter, "n_clutter", 0)
    patch = check_count(patch, "patch", 1)
    if patch > min(h, w):
        raise ValueError(f"patch must be at most min(h, w) = {min(h, w)}, got {patch}")
    if n_clutter and n < 2:
        raise ValueError("clutter is cut from other images: give at least 2 images, or n_clutter=0")
    gen = get_rng(rng)
    canvases = np.zeros((n, size, size), dtype=np.uint8)
    corners = np.stack([gen.integers(0, size - h + 1, n), gen.integers(0, size - w + 1, n)], axis=1)
    for i in range(n):
        canvas = canvases[i]
        for _ in range(n_clutter):
            other = (i + gen.integers(1, n)) % n  # any image but this one
            r, c = gen.integers(0, h - patch + 1), gen.integers(0, w - patch + 1)
            pr, pc = gen.integers(0, size - patch + 1, 2)
            region = canvas[pr:pr + patch, pc:pc + patch]
            np.maximum(region, images[other, r:r + patch, c:c + patch], out=region)
        r, c = corners[i]
        region = canvas[r:r + h, c:c + w]
        np.maximum(region, images[i], out=region)
    return canvases, labels.astype(np.int64), corners.astype(np.int64)

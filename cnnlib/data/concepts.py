"""Concepts that MNIST digits have or lack, measured from the pixels: loops, thick strokes, slant.

Used to build concept sets for TCAV (Part IV, "Interpretability", 4.3):

* :func:`hole_area`: background pixels enclosed by ink, i.e. not reached by a
  flood fill of the background from the image border (4-neighbours): a
  closed loop, as in 0, 6, 8, 9;
* :func:`stroke_thickness`: 2 x ink area / ink perimeter (for a stroke of
  width w and length L >> w, area w L and perimeter about 2 L: the width);
* :func:`slant`: the shear of the intensity distribution, -mu11 / mu02
  (x to the right, y down), positive when the top leans right;
* :func:`concept_indices`: the images where a property is strongly present.
"""

import numpy as np
from numba import njit

from .._validate import check_count, check_number, check_real

__all__ = ["hole_area", "stroke_thickness", "slant", "concept_indices"]


def _check_images(images):
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy.ndarray, got {type(images).__name__}")
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {images.shape}")
    if images.dtype != np.uint8 and images.dtype.kind != "f":
        raise TypeError(f"images must be uint8 or float, got dtype {images.dtype}")
    return images


def _ink(images, threshold):
    threshold = check_number(threshold, "threshold")
    return np.ascontiguousarray(_check_images(images) >= threshold)


@njit(cache=True)
def _hole_area(ink):
    n, h, w = ink.shape
    out = np.zeros(n, np.int64)
    seen = np.zeros((h, w), np.bool_)
    stack = np.empty((h * w, 2), np.int64)
    for k in range(n):
        seen[:, :] = False
        top = 0
        for i in range(h):  # seed every background pixel on the border
            for j in range(w):
                if (i == 0 or j == 0 or i == h - 1 or j == w - 1) and not ink[k, i, j]:
                    seen[i, j] = True
                    stack[top, 0], stack[top, 1] = i, j
                    top += 1
        while top > 0:
            top -= 1
            i, j = stack[top, 0], stack[top, 1]
            for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                a, b = i + di, j + dj
                if 0 <= a < h and 0 <= b < w and not seen[a, b] and not ink[k, a, b]:
                    seen[a, b] = True
                    stack[top, 0], stack[top, 1] = a, b
                    top += 1
        count = 0
        for i in range(h):
            for j in range(w):
                if not ink[k, i, j] and not seen[i, j]:
                    count += 1
        out[k] = count
    return out


def hole_area(images, threshold=128):
    """The number of background pixels enclosed by ink in each image.

    Pixels >= ``threshold`` are ink; the background is flood-filled from the
    border through 4-neighbours; what it does not reach is a hole.
    Inputs: images (N, H, W) uint8 or float.  Returns int64 (N,).
    """
    return _hole_area(_ink(images, threshold))


def stroke_thickness(images, threshold=128):
    """2 x ink area / ink perimeter, the mean stroke width in pixels.

    The perimeter counts ink-background pixel edges (4-neighbours, the image
    border counting as background).  Images without ink get 0.
    Inputs: images (N, H, W).  Returns float64 (N,).
    """
    ink = np.pad(_ink(images, threshold), ((0, 0), (1, 1), (1, 1)))
    area = ink.sum(axis=(1, 2)).astype(np.float64)
    edges = ((ink[:, 1:, :] != ink[:, :-1, :]).sum(axis=(1, 2))
             + (ink[:, :, 1:] != ink[:, :, :-1]).sum(axis=(1, 2)))
    return np.where(edges > 0, 2 * area / np.maximum(edges, 1), 0.0)


def slant(images):
    """The shear -mu11 / mu02 of the pixel intensities (x right, y down).

    mu11 = sum I (x - x_bar)(y - y_bar), mu02 = sum I (y - y_bar)^2; the value
    is dx per pixel upwards: positive when the digit leans right ("/"),
    negative when it leans left.  Blank images get 0.
    Inputs: images (N, H, W).  Returns float64 (N,).
    """
    img = _check_images(images).astype(np.float64)
    _, h, w = img.shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    mass = img.sum(axis=(1, 2))
    safe = np.where(mass > 0, mass, 1)
    xb = (img * x).sum(axis=(1, 2)) / safe
    yb = (img * y).sum(axis=(1, 2)) / safe
    dx, dy = x[None] - xb[:, None, None], y[None] - yb[:, None, None]
    mu11, mu02 = (img * dx * dy).sum(axis=(1, 2)), (img * dy * dy).sum(axis=(1, 2))
    return np.where(mu02 > 0, -mu11 / np.where(mu02 > 0, mu02, 1), 0.0)


def concept_indices(values, n, quantile=None, minimum=None, rng=None):
    """Indices of ``n`` images where a property is strongly present.

    Candidates are the images with ``values >= minimum`` or in the top
    ``1 - quantile`` of ``values`` (give one of the two); ``n`` of them are
    drawn without replacement with ``np.random.default_rng(rng)``.
    Inputs: values (N,) from a concept measure.  Returns sorted int64 (n,).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-d, got shape {v.shape}")
    n = check_count(n, "n")
    if (quantile is None) == (minimum is None):
        raise ValueError("give exactly one of quantile and minimum")
    if quantile is not None:
        q = check_number(quantile, "quantile")
        if not q < 1:
            raise ValueError(f"quantile must be in [0, 1), got {quantile}")
        minimum = float(np.quantile(v, q))
    cand = np.flatnonzero(v >= check_real(minimum, "minimum"))
    if len(cand) < n:
        raise ValueError(f"only {len(cand)} images have the property, {n} requested")
    return np.sort(np.random.default_rng(rng).choice(cand, n, replace=False))

"""Image corruptions for robustness and uncertainty experiments: rotation and noise.

:func:`rotate` turns images about their centre (nearest-neighbour or
bilinear interpolation, pixels that come from outside the image take the
``fill`` value); :func:`add_gaussian_noise` adds seeded Gaussian noise.  Both
work on raw uint8 images (MNIST) as well as on float arrays, and keep the
dtype.  They serve the MC-dropout experiment of the regularisation chapter
(Part III): how does a network's predictive uncertainty grow as a digit is
rotated further from anything it was trained on?
"""

import math
import numbers

import numpy as np

from .._random import get_rng

__all__ = ["rotation_source_coordinates", "rotate", "add_gaussian_noise"]


def _check_images(images):
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy.ndarray, got {type(images).__name__}")
    if images.dtype != np.uint8 and images.dtype not in (np.float32, np.float64):
        raise TypeError(f"images must have dtype uint8, float32 or float64, got {images.dtype}")
    if images.ndim < 2 or 0 in images.shape[-2:]:
        raise ValueError(f"images must have shape (..., H, W) with H, W >= 1, got {images.shape}")
    return images


def _check_number(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def _to_dtype(values, dtype):
    """Float values back to the images' dtype (uint8: rounded and clipped to 0..255)."""
    if dtype == np.uint8:
        return np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return values.astype(dtype, copy=False)


def rotation_source_coordinates(height, width, angle):
    """Where each output pixel of :func:`rotate` reads from.

    For an output pixel (i, j) (row, column; rows grow downwards) and the
    centre (c_i, c_j) = ((H - 1) / 2, (W - 1) / 2), a counter-clockwise turn
    by ``angle`` degrees (as the image is displayed) reads the input at

        i_src = c_i + (i - c_i) cos a + (j - c_j) sin a
        j_src = c_j - (i - c_i) sin a + (j - c_j) cos a

    Returns two float64 arrays of shape (H, W): i_src and j_src.
    """
    a = math.radians(_check_number(angle, "angle"))
    ci, cj = (height - 1) / 2, (width - 1) / 2
    di = np.arange(height, dtype=np.float64)[:, None] - ci
    dj = np.arange(width, dtype=np.float64)[None, :] - cj
    cos, sin = math.cos(a), math.sin(a)
    return ci + di * cos + dj * sin, cj - di * sin + dj * cos


def rotate(images, angle, order=1, fill=0):
    """Rotate images counter-clockwise by ``angle`` degrees about their centre.

    Inputs:
    - images: (..., H, W), uint8, float32 or float64; every leading index is
      one image (for example (N, H, W) or (N, C, H, W))
    - angle: degrees, counter-clockwise as displayed (row 0 at the top);
      ``rotate(x, 90)`` equals ``np.rot90(x, axes=(-2, -1))`` for square images
    - order: 0 (nearest neighbour) or 1 (bilinear); source coordinates come
      from :func:`rotation_source_coordinates`
    - fill: the value of pixels outside the input (0 = MNIST's background);
      bilinear interpolation blends it in at the edges, like
      ``scipy.ndimage.rotate(..., reshape=False, mode="grid-constant")``

    Returns an array of the same shape and dtype (uint8 results are rounded
    and clipped to 0..255).  See the regularisation chapter (Part III).
    """
    x = _check_images(images)
    if order not in (0, 1) or isinstance(order, bool):
        raise ValueError(f"order must be 0 (nearest) or 1 (bilinear), got {order!r}")
    fill = _check_number(fill, "fill")
    h, w = x.shape[-2:]
    si, sj = rotation_source_coordinates(h, w, angle)
    flat = x.reshape((-1, h, w)).astype(np.float64)
    if order == 0:
        # Round half away from zero after snapping values within 1e-9 of an
        # integer, so exact multiples of 90 degrees hit pixel centres exactly.
        ii = np.floor(np.round(si, 9) + 0.5).astype(np.int64)
        jj = np.floor(np.round(sj, 9) + 0.5).astype(np.int64)
        inside = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
        out = np.where(inside, flat[:, np.clip(ii, 0, h - 1), np.clip(jj, 0, w - 1)], fill)
    else:
        si, sj = np.round(si, 9), np.round(sj, 9)
        i0, j0 = np.floor(si).astype(np.int64), np.floor(sj).astype(np.int64)
        fi, fj = si - i0, sj - j0
        out = np.zeros((flat.shape[0], h, w))
        for di, wi in ((0, 1 - fi), (1, fi)):
            for dj, wj in ((0, 1 - fj), (1, fj)):
                ii, jj = i0 + di, j0 + dj
                inside = (ii >= 0) & (ii < h) & (jj >= 0) & (jj < w)
                values = np.where(inside, flat[:, np.clip(ii, 0, h - 1), np.clip(jj, 0, w - 1)],
                                  fill)
                out += wi * wj * values
    return _to_dtype(out.reshape(x.shape), x.dtype)


def add_gaussian_noise(images, std, rng=None):
    """Add independent Gaussian noise N(0, std^2) to every pixel.

    Inputs:
    - images: any shape, uint8, float32 or float64
    - std: noise level >= 0; for uint8 images a fraction of the full range
      (std = 0.5 means 0.5 * 255 grey levels, and the result is rounded and
      clipped to 0..255), for float images in the array's own units (no
      clipping)
    - rng: None, a seed or a ``np.random.Generator``

    Returns a new array of the same shape and dtype.  See the regularisation
    chapter (Part III).
    """
    if not isinstance(images, np.ndarray):
        raise TypeError(f"images must be a numpy.ndarray, got {type(images).__name__}")
    if images.dtype != np.uint8 and images.dtype not in (np.float32, np.float64):
        raise TypeError(f"images must have dtype uint8, float32 or float64, got {images.dtype}")
    std = _check_number(std, "std")
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    noise = get_rng(rng).standard_normal(images.shape) * (std * scale)
    return _to_dtype(images.astype(np.float64) + noise, images.dtype)

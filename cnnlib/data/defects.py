"""Synthetic surface textures with and without defects, for the applications chapter (8).

A stand-in for an industrial inspection data set: grayscale images of a
surface, periodic (a sum of two gratings, like a woven or machined surface)
or noisy (smoothed Gaussian noise, like a cast or painted one), on which
half of the images carry one defect:

* ``"scratch"``: a thin straight segment, brighter or darker than the surface;
* ``"spot"``: a small dark disc (a pit or a stain);
* ``"crack"``: a dark random-walk polyline of one-pixel width.

Every image comes with its label (1: defect, 0: none) and the defect's pixel
mask, so the label is exactly ``mask.any()`` and an attribution map can be
compared with where the defect really is.  The defect's contrast is drawn at
random relative to the background's spread, so some defects are hard to see
and a detector's ROC curve has something to show.  Everything is drawn from
one seeded generator: the same arguments give the same images.
"""

import numpy as np

from .._random import get_rng
from .._validate import check_count, check_number

__all__ = ["KINDS", "BACKGROUNDS", "defect_textures"]

#: The kinds of defect, a thin straight scratch, a dark spot and a dark crack.
KINDS = ("scratch", "spot", "crack")
#: The backgrounds, two sine gratings or blurred Gaussian noise.
BACKGROUNDS = ("periodic", "noise")


def _choices(values, allowed, name):
    if isinstance(values, str) or not values:
        raise ValueError(f"{name} must be a non-empty tuple of names from {allowed}, got {values!r}")
    values = tuple(values)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"{name} must be names from {allowed}, got {bad}")
    return values


def _smooth(field, passes):
    """A separable [1, 2, 1] / 4 blur applied ``passes`` times, with wrap-around."""
    for _ in range(passes):
        for axis in (0, 1):
            field = 0.25 * (np.roll(field, 1, axis) + 2 * field + np.roll(field, -1, axis))
    return field


def _background(kind, size, rng):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    if kind == "periodic":
        out = np.zeros((size, size))
        for _ in range(2):
            theta, period = rng.uniform(0, np.pi), rng.uniform(3.0, 8.0)
            phase = rng.uniform(0, 2 * np.pi)
            out += np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
        out += 0.3 * rng.standard_normal((size, size))
    else:
        out = _smooth(rng.standard_normal((size, size)), int(rng.integers(1, 4)))
    return (out - out.mean()) / out.std()


def _segment_distance(yy, xx, p, q):
    """Distance of every pixel centre from the segment p-q."""
    d = q - p
    t = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / max(float(d @ d), 1e-12), 0, 1)
    return np.hypot(yy - (p[0] + t * d[0]), xx - (p[1] + t * d[1]))


def _nearest(point, size):
    """A mask holding the one pixel nearest ``point`` (so no defect is empty)."""
    mask = np.zeros((size, size), dtype=bool)
    mask[int(round(point[0])), int(round(point[1]))] = True
    return mask


def _defect_mask(kind, size, rng):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    margin = 0.15 * size
    if kind == "spot":
        c = rng.uniform(margin, size - 1 - margin, 2)
        r = rng.uniform(1.2, 0.09 * size + 1.2)
        return (np.hypot(yy - c[0], xx - c[1]) <= r) | _nearest(c, size)
    if kind == "scratch":
        p = rng.uniform(margin, size - 1 - margin, 2)
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.3 * size, 0.6 * size)
        q = np.clip(p + length * np.array([np.sin(angle), np.cos(angle)]), 0, size - 1)
        return (_segment_distance(yy, xx, p, q) <= 0.6) | _nearest(p, size)
    # crack: a random walk whose direction turns a little at every step
    p, angle = rng.uniform(margin, size - 1 - margin, 2), rng.uniform(0, 2 * np.pi)
    mask = _nearest(p, size)
    for _ in range(int(rng.integers(4, 8))):
        angle += rng.normal(0, 0.6)
        q = np.clip(p + rng.uniform(2.0, 0.12 * size + 2.0) * np.array([np.sin(angle), np.cos(angle)]),
                    0, size - 1)
        mask |= _segment_distance(yy, xx, p, q) <= 0.55
        p = q
    return mask


def defect_textures(n, size=32, defect_fraction=0.5, kinds=KINDS, backgrounds=BACKGROUNDS,
                    contrast=(1.0, 3.0), noise=0.25, rng=None):
    """``n`` grayscale textures, about ``defect_fraction`` of them with one defect.

    Each image is a background (``"periodic"`` or ``"noise"``, chosen
    uniformly from ``backgrounds``) normalised to mean 0 and standard
    deviation 1, plus, for a defective image, a defect of a kind chosen
    uniformly from ``kinds``: the pixels of its mask are shifted by
    ``c`` times the background's standard deviation, with ``c`` uniform in
    ``contrast`` (spots and cracks dark, scratches dark or bright with equal
    odds), then sensor noise of standard deviation ``noise`` is added to
    every pixel.  Which images are defective is a Bernoulli draw per image.

    Inputs:
    - n: number of images; size: side in pixels (>= 16)
    - defect_fraction: probability of a defect, in [0, 1]
    - kinds, backgrounds: tuples of names from :data:`KINDS`, :data:`BACKGROUNDS`
    - contrast: (low, high), 0 < low <= high; noise: >= 0
    - rng: seed or ``np.random.Generator``

    Returns ``(images, labels, masks, kind)``: images float32 (n, 1, size,
    size); labels int64 (n,), 1 where there is a defect; masks bool (n, size,
    size), the defect's pixels (all False for a good image), so ``labels ==
    masks.any((1, 2))``; kind, an array of n str (``""`` for a good image).
    See the applications chapter (8).
    """
    n = check_count(n, "n")
    size = check_count(size, "size", minimum=16)
    p = check_number(defect_fraction, "defect_fraction")
    if not 0 <= p <= 1:
        raise ValueError(f"defect_fraction must lie in [0, 1], got {defect_fraction}")
    kinds, backgrounds = _choices(kinds, KINDS, "kinds"), _choices(backgrounds, BACKGROUNDS, "backgrounds")
    if not (isinstance(contrast, (tuple, list)) and len(contrast) == 2):
        raise ValueError(f"contrast must be a pair (low, high), got {contrast!r}")
    lo, hi = check_number(contrast[0], "contrast[0]", positive=True), check_number(contrast[1], "contrast[1]")
    if hi < lo:
        raise ValueError(f"contrast must have low <= high, got {contrast!r}")
    noise = check_number(noise, "noise")
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    rng = get_rng(rng)
    images = np.empty((n, 1, size, size), dtype=np.float32)
    masks = np.zeros((n, size, size), dtype=bool)
    kind = np.full(n, "", dtype=object)
    for i in range(n):
        img = _background(backgrounds[rng.integers(len(backgrounds))], size, rng)
        if rng.random() < p:
            kind[i] = kinds[rng.integers(len(kinds))]
            masks[i] = _defect_mask(kind[i], size, rng)
            sign = rng.choice((-1.0, 1.0)) if kind[i] == "scratch" else -1.0
            img = img + sign * rng.uniform(lo, hi) * masks[i]
        images[i, 0] = img + noise * rng.standard_normal((size, size))
    labels = masks.any(axis=(1, 2)).astype(np.int64)
    return images, labels, masks, kind.astype(str)

"""The library's random number generator.

Everything random in ``cnnlib`` (weight initialisation, data shuffling, ...)
draws from a NumPy ``Generator``. A function that needs randomness takes an
``rng=`` argument and passes it through :func:`get_rng`, so a reader can either
seed the whole library once with :func:`manual_seed` or hand a generator (or
an integer seed) to one call.
"""

import numpy as np

_default_rng = np.random.default_rng()


def manual_seed(seed):
    """Seed the library's default generator, like ``torch.manual_seed``.

    Returns the new default ``np.random.Generator``.
    """
    global _default_rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    _default_rng = np.random.default_rng(seed)
    return _default_rng


def get_rng(rng=None):
    """Return the generator to draw from.

    ``rng`` is ``None`` (the library's default generator, see
    :func:`manual_seed`), an int (a new generator seeded with it) or a
    ``np.random.Generator`` (returned as is).
    """
    if rng is None:
        return _default_rng
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng seed must be non-negative, got {rng}")
        return np.random.default_rng(rng)
    raise TypeError(
        f"rng must be None, an int or a np.random.Generator, got {type(rng).__name__}"
    )

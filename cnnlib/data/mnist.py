"""Data sets: the MNIST handwritten digits, read from IDX files.

MNIST (Y. LeCun, C. Cortes and C. J. C. Burges) holds 60,000 training and
10,000 test images of handwritten digits, 28x28 grey levels, with labels
0-9. The database is distributed under the Creative Commons
Attribution-Share Alike 3.0 licence (CC BY-SA 3.0); credit the authors
wherever it is used or shown.

``load_mnist`` looks for the four standard files, gzip-compressed
(``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``), in
this order:

1. the ``data_dir`` argument, if given;
2. the directory named by the environment variable ``CNNLIB_DATA``;
3. the user cache, ``default_cache_dir()``
   (``$XDG_CACHE_HOME/cnnlib/mnist`` or ``~/.cache/cnnlib/mnist``).

A file found nowhere is downloaded into the cache from the first of
``MIRRORS`` that serves it intact. Every file, local or downloaded, is
checked against the SHA-256 of its decompressed bytes (``SHA256``); a
download is written to a temporary file and moved into place only after the
check passes, so a broken download never leaves a cache entry behind.
"""

import gzip
import hashlib
import math
import os
import tempfile
import urllib.request
import zlib
from http.client import HTTPException
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

__all__ = ["DatasetError", "default_cache_dir", "read_idx", "load_mnist", "mnist_available"]

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

# SHA-256 of each file *after* gunzip: the compressed bytes differ between
# mirrors, the decompressed bytes do not.
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# IDX element types, by the third byte of the magic number (all big-endian).
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_TIMEOUT = 30.0  # seconds, for connecting and for each read
_CHUNK = 1 << 16


class DatasetError(RuntimeError):
    """A data file is missing, corrupt, or could not be downloaded."""


def default_cache_dir():
    """Return the MNIST cache directory (a ``Path``; it may not exist yet).

    ``$XDG_CACHE_HOME/cnnlib/mnist`` if that variable is set, otherwise
    ``~/.cache/cnnlib/mnist``.
    """
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnnlib" / "mnist"


def read_idx(data):
    """Parse the bytes of an (uncompressed) IDX file into an array.

    Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16,
    0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions d,
    then d big-endian uint32 sizes, then the elements, big-endian, row-major.

    Returns a new, writeable array of shape (size_1, ..., size_d) in native
    byte order. Raises ``ValueError`` for a malformed header or a payload
    whose length does not match the sizes.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 4:
        raise ValueError(
            f"IDX data too short: {len(data)} bytes, need at least 4 for the magic number")
    if data[0] != 0 or data[1] != 0:
        hint = " (gzip-compressed? decompress it first)" if data[:2] == b"\x1f\x8b" else ""
        raise ValueError(
            f"bad IDX magic number: first two bytes must be 0x00 0x00, "
            f"got 0x{data[0]:02x} 0x{data[1]:02x}{hint}")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise ValueError(f"unknown IDX type code 0x{code:02x}; expected one of {known}")
    if ndim == 0:
        raise ValueError("IDX header gives 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(
            f"IDX header truncated: {ndim} dimensions need {header} header bytes, "
            f"got {len(data)}")
    shape = tuple(int(s) for s in np.frombuffer(data, ">u4", ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "trailing bytes"
        raise ValueError(
            f"IDX payload size mismatch ({what}): shape {shape} of {dtype.name} needs "
            f"{expected} bytes after the {header}-byte header, got {got}")
    array = np.frombuffer(data, dtype, math.prod(shape), offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def load_mnist(split="train", data_dir=None):
    """Load the MNIST training or test set.

    Parameters: ``split`` is ``"train"`` (60,000 images) or ``"test"``
    (10,000); ``data_dir`` is an optional directory searched before
    ``$CNNLIB_DATA`` and the cache (see the module docstring).

    Returns ``(images, labels)``: uint8 arrays of shapes (N, 28, 28), grey
    levels 0-255 with 0 the background, and (N,), digits 0-9.

    MNIST: Y. LeCun, C. Cortes, C. J. C. Burges, licensed CC BY-SA 3.0.
    """
    return _load(split, data_dir)


def mnist_available(split=None, data_dir=None):
    """True if the MNIST files of ``split`` (both splits if ``None``) are on this
    machine, in ``data_dir``, ``$CNNLIB_DATA`` or the cache, so that
    ``load_mnist`` will not need to download anything.  Only looks for the
    files; ``load_mnist`` still verifies them."""
    if split is not None and (not isinstance(split, str) or split not in _SPLITS):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    splits = _SPLITS if split is None else [split]
    return all(_locate(name, data_dir) is not None for s in splits for name in _SPLITS[s])


def _load(split, data_dir=None, *, mirrors=None, checksums=None, timeout=_TIMEOUT):
    """``load_mnist`` with the mirrors, checksums and timeout made explicit."""
    if not isinstance(split, str) or split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    checksums = SHA256 if checksums is None else checksums
    arrays, paths = [], []
    for name in _SPLITS[split]:
        path = _locate(name, data_dir)
        if path is None:
            path = _download(name, default_cache_dir(), mirrors=mirrors,
                             checksums=checksums, timeout=timeout)
        data = _read_verified(path, name, checksums)
        try:
            arrays.append(read_idx(data))
        except ValueError as e:
            raise DatasetError(f"{path}: {e}") from e
        paths.append(path)
    (images, labels), (image_path, label_path) = arrays, paths
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{image_path}: expected uint8 images of shape (N, 28, 28), "
            f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(
            f"{label_path}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{len(images)} images in {image_path} but {len(labels)} labels in {label_path}")
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{label_path}: labels must be 0-9, found {labels.max()}")
    return images, labels


def _locate(name, data_dir=None):
    """Return the first existing file for ``name`` (plain, then ``.gz``) in
    ``data_dir``, ``$CNNLIB_DATA``, the cache; ``None`` if there is none."""
    dirs = [data_dir, os.environ.get("CNNLIB_DATA"), default_cache_dir()]
    for d in dirs:
        if not d:
            continue
        for candidate in (Path(d) / name, Path(d) / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_verified(path, name, checksums):
    """Read ``path`` (gunzipped if it ends in .gz), check its SHA-256 against
    ``checksums[name]`` and return the decompressed bytes."""
    path = Path(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = _gunzip(data, path)
    _check_sha256(data, name, checksums, path)
    return data


def _gunzip(raw, source):
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DatasetError(f"{source}: not a complete gzip file ({e})") from e


def _check_sha256(data, name, checksums, source):
    expected = checksums[name]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DatasetError(
            f"{source}: SHA-256 mismatch for {name}: expected {expected}, got {actual}. "
            f"The file is corrupt or incomplete; delete it to have it downloaded again.")


def _download(name, cache_dir, *, mirrors=None, checksums=None, timeout=_TIMEOUT):
    """Download ``name + ".gz"`` into ``cache_dir`` from the first mirror that
    serves it with the right checksum; return the path of the cached file.

    The bytes go to a temporary file in ``cache_dir`` that is renamed into
    place only after the check passes and removed in every other case.
    """
    mirrors = MIRRORS if mirrors is None else mirrors
    checksums = SHA256 if checksums is None else checksums
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"{name}.gz"
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + f"/{name}.gz"
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                _fetch(url, f, timeout)
            _check_sha256(_gunzip(Path(tmp).read_bytes(), url), name, checksums, url)
            os.replace(tmp, target)
            return target
        except (OSError, HTTPException, DatasetError) as e:
            failures.append(f"  {url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    tried = "\n".join(failures) or "  (no mirrors given)"
    raise DatasetError(
        f"could not download {name}.gz (expected SHA-256 of the decompressed file: "
        f"{checksums[name]}); mirrors tried:\n{tried}")


def _fetch(url, file, timeout):
    """Copy the body at ``url`` into ``file``, with a progress bar."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length else None
        received = 0
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1]) as bar:
            while chunk := response.read(_CHUNK):
                file.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise DatasetError(f"download incomplete: got {received} of {total} bytes")

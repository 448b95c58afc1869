"""Tests for cnnlib.data.mnist: the IDX parser, the local lookup, and the
download path against a real HTTP server on 127.0.0.1.

No test touches the real network or the real user cache: an autouse fixture
points the cache at tmp_path, clears CNNLIB_DATA and refuses any URL that is
not on 127.0.0.1.
"""

import gzip
import hashlib
import http.server
import os
import socket
import struct
import threading
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from cnnlib.data import mnist as datasets
from cnnlib.data.mnist import DatasetError, load_mnist, read_idx

# Read before the autouse fixture clears it, for the real-MNIST test.
REAL_DATA = os.environ.get("CNNLIB_DATA")

NAMES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
         np.float32: 0x0D, np.float64: 0x0E}


def make_idx(array):
    """IDX bytes of ``array``: the plain writer the parser is checked against."""
    array = np.asarray(array)
    code = CODES[array.dtype.type]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def synthetic():
    """Small stand-ins for the four MNIST files: name -> uncompressed bytes."""
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": make_idx(rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte": make_idx(np.array([3, 1, 4, 1, 5], np.uint8)),
        "t10k-images-idx3-ubyte": make_idx(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": make_idx(np.array([9, 2, 6], np.uint8)),
    }


FILES = synthetic()
SUMS = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}


def write_files(directory, files=FILES, compress=True):
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if compress:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return directory


def expected(split):
    prefix = "train" if split == "train" else "t10k"
    return (read_idx(FILES[f"{prefix}-images-idx3-ubyte"]),
            read_idx(FILES[f"{prefix}-labels-idx1-ubyte"]))


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep every test off the real cache, CNNLIB_DATA and the network."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("CNNLIB_DATA", raising=False)
    monkeypatch.setattr(datasets, "MIRRORS", ("http://127.0.0.1:9/",))
    real_urlopen = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        host = urllib.parse.urlsplit(getattr(url, "full_url", url)).hostname
        assert host == "127.0.0.1", f"test tried to reach {url}"
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


@pytest.fixture
def cache(tmp_path):
    return datasets.default_cache_dir()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(self.path)
        body = self.server.routes.get(self.path)
        if body is None:
            self.send_error(404)
            return
        length = self.server.lengths.get(self.path, len(body))
        self.send_response(200)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 (ephemeral port) serving ``server.routes``
    (path -> bytes); ``server.lengths`` overrides a Content-Length."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.routes, httpd.lengths, httpd.requests = {}, {}, []
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def serve(server, mirror, files=FILES, transform=gzip.compress):
    """Put ``files`` on ``server`` under ``/mirror/``; return the mirror URL."""
    for name, data in files.items():
        server.routes[f"/{mirror}/{name}.gz"] = transform(data)
    return f"{server.url}/{mirror}/"


# --- IDX parser ------------------------------------------------------------

@pytest.mark.parametrize("dtype", list(CODES))
@pytest.mark.parametrize("shape", [(7,), (2, 3), (4, 28, 28), (2, 1, 3, 2)])
def test_read_idx_round_trip(dtype, shape):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    out = read_idx(make_idx(array))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    assert out.shape == shape
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # writeable


def test_read_idx_big_endian_layout():
    data = bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])
    np.testing.assert_array_equal(read_idx(data), np.array([0x0102, -2], np.int16))


def test_read_idx_accepts_bytearray_and_memoryview():
    data = make_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))
    for buffer in (bytearray(data), memoryview(data)):
        np.testing.assert_array_equal(read_idx(buffer), read_idx(data))


def test_read_idx_empty_dimension():
    assert read_idx(make_idx(np.zeros((0, 28, 28), np.uint8))).shape == (0, 28, 28)


def test_read_idx_rejects_non_bytes():
    with pytest.raises(TypeError, match="data must be bytes, got str"):
        read_idx("\x00\x00\x08\x01")


GOOD = make_idx(np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize("data, message", [
    (b"", r"too short: 0 bytes"),
    (b"\x00\x00\x08", r"too short: 3 bytes"),
    (b"\x01\x00\x08\x01" + GOOD[4:], r"magic number.*got 0x01 0x00"),
    (b"\x00\x07\x08\x01" + GOOD[4:], r"magic number.*got 0x00 0x07"),
    (gzip.compress(GOOD), r"gzip-compressed\? decompress it first"),
    (b"\x00\x00\x0a\x02" + GOOD[4:], r"unknown IDX type code 0x0a"),
    (b"\x00\x00\x07\x02" + GOOD[4:], r"unknown IDX type code 0x07"),
    (b"\x00\x00\x0f\x02" + GOOD[4:], r"unknown IDX type code 0x0f"),
    (b"\x00\x00\x08\x00", r"0 dimensions"),
    (GOOD[:10], r"header truncated: 2 dimensions need 12 header bytes, got 10"),
    (GOOD[:-1], r"size mismatch \(truncated\).*\(2, 3\) of uint8 needs 6 bytes.*got 5"),
    (GOOD + b"\x00", r"size mismatch \(trailing bytes\).*got 7"),
    (b"\x00\x00\x0c\x01\x00\x00\x00\x02" + bytes(7), r"\(2,\) of int32 needs 8 bytes.*got 7"),
    (b"\x00\x00\x08\x03" + GOOD[4:12], r"header truncated: 3 dimensions need 16 header bytes, got 12"),
])
def test_read_idx_malformed(data, message):
    with pytest.raises(ValueError, match=message):
        read_idx(data)


# --- arguments, cache directory, local lookup ------------------------------

@pytest.mark.parametrize("split", ["valid", "TRAIN", "", None, 0])
def test_bad_split(split):
    with pytest.raises(ValueError, match=r"split must be 'train' or 'test', got"):
        load_mnist(split)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert datasets.default_cache_dir() == tmp_path / "x" / "cnnlib" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.default_cache_dir() == tmp_path / "home" / ".cache" / "cnnlib" / "mnist"


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_from_data_dir(tmp_path, split, compress):
    directory = write_files(tmp_path / "d", compress=compress)
    images, labels = datasets._load(split, directory, checksums=SUMS)
    want_images, want_labels = expected(split)
    assert images.dtype == labels.dtype == np.uint8
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)


def test_locate_order(tmp_path, monkeypatch, cache):
    name = "train-images-idx3-ubyte"
    given, env = tmp_path / "given", tmp_path / "env"
    for d in (given, env, cache):
        d.mkdir(parents=True)
        (d / f"{name}.gz").touch()
    monkeypatch.setenv("CNNLIB_DATA", str(env))
    assert datasets._locate(name, given) == given / f"{name}.gz"
    assert datasets._locate(name) == env / f"{name}.gz"
    (given / name).touch()  # an uncompressed file wins over .gz in the same directory
    assert datasets._locate(name, given) == given / name
    monkeypatch.delenv("CNNLIB_DATA")
    assert datasets._locate(name, tmp_path / "missing") == cache / f"{name}.gz"
    (cache / f"{name}.gz").unlink()
    assert datasets._locate(name) is None


def test_mnist_available_looks_without_downloading(tmp_path, monkeypatch, cache):
    assert not datasets.mnist_available()
    directory = write_files(tmp_path / "d")
    assert datasets.mnist_available(data_dir=directory)
    assert datasets.mnist_available("test", directory)
    (directory / "train-labels-idx1-ubyte.gz").unlink()
    assert datasets.mnist_available("test", directory)
    assert not datasets.mnist_available("train", directory)
    assert not datasets.mnist_available(data_dir=directory)
    monkeypatch.setenv("CNNLIB_DATA", str(write_files(tmp_path / "env")))
    assert datasets.mnist_available()
    with pytest.raises(ValueError, match="split"):
        datasets.mnist_available("valid")


def test_load_order_data_dir_env_cache(tmp_path, monkeypatch, cache):
    """The first directory holding a file is the one read: good files there
    load even when the later directories hold corrupt ones."""
    corrupt = {name: data[:-1] + b"\x00" for name, data in FILES.items()}
    given, env = tmp_path / "given", tmp_path / "env"
    write_files(given)
    write_files(env, corrupt)
    write_files(cache, corrupt)
    monkeypatch.setenv("CNNLIB_DATA", str(env))
    np.testing.assert_array_equal(datasets._load("train", given, checksums=SUMS)[1], [3, 1, 4, 1, 5])
    write_files(env)
    np.testing.assert_array_equal(datasets._load("train", checksums=SUMS)[1], [3, 1, 4, 1, 5])
    monkeypatch.delenv("CNNLIB_DATA")
    write_files(cache)
    np.testing.assert_array_equal(datasets._load("train", checksums=SUMS)[1], [3, 1, 4, 1, 5])


def test_corrupt_local_file_names_the_path(tmp_path, monkeypatch):
    env = write_files(tmp_path / "env")
    path = env / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(make_idx(np.array([3, 1, 4, 1, 6], np.uint8))))
    monkeypatch.setenv("CNNLIB_DATA", str(env))
    with pytest.raises(DatasetError, match="SHA-256 mismatch") as info:
        datasets._load("train", checksums=SUMS)
    assert str(path) in str(info.value) and SUMS["train-labels-idx1-ubyte"] in str(info.value)


def test_truncated_local_gzip_names_the_path(tmp_path):
    directory = write_files(tmp_path / "d")
    path = directory / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="not a complete gzip file") as info:
        datasets._load("train", directory, checksums=SUMS)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("images, labels, message", [
    (np.zeros((5, 28, 27), np.uint8), np.zeros(5, np.uint8), r"shape \(N, 28, 28\)"),
    (np.zeros((5, 784), np.uint8), np.zeros(5, np.uint8), r"shape \(N, 28, 28\)"),
    (np.zeros((5, 28, 28), np.int16), np.zeros(5, np.uint8), r"uint8 images"),
    (np.zeros((5, 28, 28), np.uint8), np.zeros((5, 1), np.uint8), r"labels of shape \(N,\)"),
    (np.zeros((5, 28, 28), np.uint8), np.zeros(4, np.uint8), r"5 images .* but 4 labels"),
    (np.zeros((5, 28, 28), np.uint8), np.array([0, 1, 2, 3, 10], np.uint8), r"0-9, found 10"),
])
def test_implausible_contents(tmp_path, images, labels, message):
    files = {"train-images-idx3-ubyte": make_idx(images),
             "train-labels-idx1-ubyte": make_idx(labels)}
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    directory = write_files(tmp_path / "d", files)
    with pytest.raises(DatasetError, match=message):
        datasets._load("train", directory, checksums=sums)


def test_checksummed_file_that_is_not_idx(tmp_path):
    files = {"train-images-idx3-ubyte": b"not an idx file", "train-labels-idx1-ubyte": b""}
    sums = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    directory = write_files(tmp_path / "d", files)
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.gz: bad IDX magic"):
        datasets._load("train", directory, checksums=sums)


# --- download ----------------------------------------------------------------

@pytest.mark.parametrize("split", ["train", "test"])
def test_download_verify_load(server, cache, split):
    mirror = serve(server, "m1")
    images, labels = datasets._load(split, mirrors=[mirror], checksums=SUMS)
    want_images, want_labels = expected(split)
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)
    names = datasets._SPLITS[split]
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{n}.gz" for n in names)
    # A second load reads the cache and makes no request.
    count = len(server.requests)
    datasets._load(split, mirrors=[mirror], checksums=SUMS)
    assert len(server.requests) == count


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "short body", "not gzip"])
def test_bad_download_is_refused_and_leaves_nothing(server, cache, kind):
    name = "train-images-idx3-ubyte"
    good = gzip.compress(FILES[name])
    if kind == "corrupt":  # valid gzip, wrong bytes inside
        body = gzip.compress(FILES[name][:-1] + b"\x01")
    elif kind == "truncated":  # the mirror holds half a file
        body = good[: len(good) // 2]
    elif kind == "not gzip":
        body = FILES[name]
    else:  # Content-Length promises more than the server sends
        body = good[: len(good) // 2]
        server.lengths[f"/m1/{name}.gz"] = len(good)
    server.routes[f"/m1/{name}.gz"] = body
    with pytest.raises(DatasetError) as info:
        datasets._download(name, cache, mirrors=[f"{server.url}/m1/"], checksums=SUMS)
    message = str(info.value)
    assert f"could not download {name}.gz" in message
    assert SUMS[name] in message and f"{server.url}/m1/{name}.gz" in message
    if kind == "corrupt":
        actual = hashlib.sha256(FILES[name][:-1] + b"\x01").hexdigest()
        assert f"expected {SUMS[name]}, got {actual}" in message
    assert list(cache.iterdir()) == []


def test_fallback_after_404(server, cache):
    first = f"{server.url}/empty/"
    second = serve(server, "m2")
    images, labels = datasets._load("train", mirrors=[first, second], checksums=SUMS)
    np.testing.assert_array_equal(labels, [3, 1, 4, 1, 5])
    assert server.requests[:2] == ["/empty/train-images-idx3-ubyte.gz",
                                   "/m2/train-images-idx3-ubyte.gz"]


def test_fallback_after_corrupt_file(server, cache):
    first = serve(server, "bad", transform=lambda d: gzip.compress(d[:-1] + b"\x07"))
    second = serve(server, "good")
    images, labels = datasets._load("test", mirrors=[first, second], checksums=SUMS)
    np.testing.assert_array_equal(labels, [9, 2, 6])
    assert sorted(p.name for p in cache.iterdir()) == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    assert datasets._read_verified(cache / "t10k-labels-idx1-ubyte.gz",
                                   "t10k-labels-idx1-ubyte", SUMS) == FILES["t10k-labels-idx1-ubyte"]


def test_fallback_after_timeout(server, cache):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts connections, never answers
    try:
        first = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        second = serve(server, "m2")
        path = datasets._download("train-labels-idx1-ubyte", cache,
                                  mirrors=[first, second], checksums=SUMS, timeout=0.5)
    finally:
        silent.close()
    assert path == cache / "train-labels-idx1-ubyte.gz"


def test_all_mirrors_fail(server, cache):
    bad = serve(server, "bad", transform=lambda d: gzip.compress(d + b"\x00"))
    missing = f"{server.url}/missing/"
    with pytest.raises(DatasetError) as info:
        datasets._load("train", mirrors=[bad, missing], checksums=SUMS)
    message = str(info.value)
    assert "mirrors tried" in message
    assert f"{bad}train-images-idx3-ubyte.gz: " in message and "SHA-256 mismatch" in message
    assert f"{missing}train-images-idx3-ubyte.gz: HTTP Error 404" in message
    assert list(cache.iterdir()) == []


def test_no_network_without_a_server(cache):
    """The default mirror list (patched to a closed local port here) is used
    when none is given, and its failure is reported."""
    with pytest.raises(DatasetError, match=r"127\.0\.0\.1:9/train-images"):
        datasets._load("train", checksums=SUMS)


def test_module_constants():
    assert datasets.SHA256.keys() == set(NAMES)
    assert all(len(h) == 64 for h in datasets.SHA256.values())


# --- the real MNIST ------------------------------------------------------------

def _has_real_mnist():
    if not REAL_DATA or not Path(REAL_DATA).is_dir():
        return False
    return all((Path(REAL_DATA) / n).is_file() or (Path(REAL_DATA) / f"{n}.gz").is_file()
               for n in NAMES)


@pytest.mark.skipif(not _has_real_mnist(),
                    reason="set CNNLIB_DATA to a directory holding the four MNIST files")
@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_real_mnist(monkeypatch, split, n):
    monkeypatch.setenv("CNNLIB_DATA", REAL_DATA)
    images, labels = load_mnist(split)
    assert images.shape == (n, 28, 28) and labels.shape == (n,)
    assert images.dtype == labels.dtype == np.uint8
    counts = np.bincount(labels, minlength=10)
    assert counts.shape == (10,) and counts.sum() == n and counts.min() > 0.08 * n
    assert images.max() == 255 and images.min() == 0
    if split == "train":
        assert labels[:5].tolist() == [5, 0, 4, 1, 9]
    else:
        assert labels[:5].tolist() == [7, 2, 1, 0, 4]

"""LeNet-5 from scratch: loops, vectorised NumPy and C++, against cnnlib.

The chapter "From scratch" (notebooks/07_from_scratch) shows this module's
source with ``inspect.getsource``, so the text and the code cannot drift.

* Loop layers (:class:`Conv2D`, :class:`MaxPool2D`, ``ReLU``,
  ``Flatten``, :class:`Dense`, ``Softmax``) and the network
  :class:`SimpleCNN`: the outline's loop-based NumPy LeNet, forward only, four
  nested Python loops per convolution or pooling layer.  Unlike the outline
  they keep the input's dtype (float32 stays float32), pad max pooling with
  -inf rather than zeros, store Dense weights as (out, in) like cnnlib, and
  load a cnnlib LeNet-5 ``state_dict``.
* :func:`conv2d_vectorised`, :func:`max_pool2d_vectorised` and
  :func:`forward_vectorised`: the same forward without Python loops
  (im2col through ``sliding_window_view`` and one matrix product per layer).
* :func:`run_cpp`: compiles ``cnnlib/models/cpp/lenet5.cpp`` (the outline's C++,
  fixed) with g++ and runs it on the same weights and inputs.
* :func:`speed_table`: milliseconds per image for every implementation.

None of this validates its input or has a backward pass: that is the point
of the comparison.  Use :mod:`cnnlib.nn` and :mod:`cnnlib.models.zoo` for real work.
"""

import functools
import hashlib
import shutil
import struct
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .._random import get_rng
from .._timing import thread_limits, time_call  # the benchmark's own timer

__all__ = ["Conv2D", "MaxPool2D", "ReLU", "Flatten", "Dense", "Softmax", "SimpleCNN", "NaiveLeNet5",
           "conv2d_vectorised", "max_pool2d_vectorised", "forward_vectorised", "cpp_compiler",
           "compile_cpp", "run_cpp", "torch_lenet5", "speed_table", "format_speed_table"]

# ----------------------------------------------------------------------------
# (a) The outline's layers, with loops (forward only)
# ----------------------------------------------------------------------------


class Conv2D:
    """Convolution (cross-correlation) with four nested Python loops.

    x (N, C_in, H, W) -> (N, C_out, H_out, W_out),
    H_out = (H + 2p - k) // s + 1.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1,
                 padding=0, *, dtype=np.float32, rng=None):
        k = self.kernel_size = kernel_size
        self.stride, self.padding = stride, padding
        shape = (out_channels, in_channels, k, k)
        # He initialisation (the outline's fixed 0.1 ignores the fan-in).
        std = np.sqrt(2 / (in_channels * k * k))
        self.weight = (get_rng(rng).standard_normal(shape) * std).astype(dtype)
        self.bias = np.zeros(out_channels, dtype=dtype)

    def forward(self, x):
        n, _, h, w = x.shape
        c_out = len(self.weight)
        k, s, p = self.kernel_size, self.stride, self.padding
        out_h, out_w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))  # zeros, x's dtype
        dtype = np.result_type(x, self.weight)
        out = np.empty((n, c_out, out_h, out_w), dtype=dtype)
        for b in range(n):
            for oc in range(c_out):
                for i in range(out_h):
                    for j in range(out_w):
                        # the receptive field of out[b, oc, i, j]: (C_in, k, k)
                        window = x[b, :, i * s:i * s + k, j * s:j * s + k]
                        out[b, oc, i, j] = (np.sum(window * self.weight[oc])
                                            + self.bias[oc])
        return out


class MaxPool2D:
    """Max pooling with four nested Python loops; padding counts as -inf."""

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def forward(self, x):
        n, c, h, w = x.shape
        k, s, p = self.kernel_size, self.stride, self.padding
        out_h, out_w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        # The outline padded with zeros, which beat every negative value.
        pads = ((0, 0), (0, 0), (p, p), (p, p))
        x = np.pad(x, pads, constant_values=-np.inf)
        out = np.empty((n, c, out_h, out_w), dtype=x.dtype)
        for b in range(n):
            for ch in range(c):
                for i in range(out_h):
                    for j in range(out_w):
                        window = x[b, ch, i * s:i * s + k, j * s:j * s + k]
                        out[b, ch, i, j] = window.max()
        return out


class ReLU:
    def forward(self, x):
        return np.maximum(x, 0)  # the int 0 keeps x's dtype


class Flatten:
    def forward(self, x):
        return x.reshape(len(x), -1)


class Dense:
    """y = x W^T + b with W of shape (out, in), as in cnnlib and PyTorch."""

    def __init__(self, in_features, out_features, *, dtype=np.float32,
                 rng=None):
        shape, std = (out_features, in_features), np.sqrt(2 / in_features)
        self.weight = (get_rng(rng).standard_normal(shape) * std).astype(dtype)
        self.bias = np.zeros(out_features, dtype=dtype)

    def forward(self, x):
        return x @ self.weight.T + self.bias


class Softmax:
    def forward(self, x):
        e = np.exp(x - x.max(axis=1, keepdims=True))  # shift for stability
        return e / e.sum(axis=1, keepdims=True)


class SimpleCNN:
    """The outline's LeNet on 28x28 input, built from the loop layers.

    ``conv1_padding=0`` is the outline's own network: 28 -> 24 -> 12 -> 8 -> 4,
    so 16*4*4 = 256 features.  ``conv1_padding=2`` is LeNet-5 as in
    :func:`cnnlib.models.zoo.lenet5` (28x28 padded to 32x32): 32 -> 28 -> 14 -> 10 -> 5,
    16*5*5 = 400 features.  ``forward`` returns logits; the outline's
    final Softmax is applied by ``predict_proba``.  The layer list has
    the same indices as cnnlib's LeNet-5, so its ``state_dict`` loads directly.
    """

    def __init__(self, conv1_padding=0, *, dtype=np.float32, rng=None):
        kw = dict(dtype=dtype, rng=get_rng(rng))
        # Side of the feature maps after conv 5x5, pool 2, conv 5x5, pool 2.
        side = ((28 + 2 * conv1_padding - 4) // 2 - 4) // 2
        self.layers = [
            Conv2D(1, 6, 5, padding=conv1_padding, **kw), ReLU(),
            MaxPool2D(2),
            Conv2D(6, 16, 5, **kw), ReLU(),
            MaxPool2D(2),
            Flatten(),
            Dense(16 * side * side, 120, **kw), ReLU(),
            Dense(120, 84, **kw), ReLU(),
            Dense(84, 10, **kw),
        ]
        self.softmax = Softmax()

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def predict_proba(self, x):
        return self.softmax.forward(self.forward(x))

    def state_dict(self):
        return {f"{i}.{name}": getattr(layer, name) for i, layer in enumerate(self.layers)
                if hasattr(layer, "weight") for name in ("weight", "bias")}

    def load_state_dict(self, state):
        """Copy arrays named like cnnlib's ("0.weight", "0.bias", ..., "11.bias")."""
        own = self.state_dict()
        if set(state) != set(own):
            raise KeyError(f"expected keys {sorted(own)}, got {sorted(state)}")
        for key, value in state.items():
            if np.shape(value) != own[key].shape:
                raise ValueError(f"{key}: expected shape {own[key].shape}, got {np.shape(value)}")
            index, name = key.split(".")
            setattr(self.layers[int(index)], name, np.array(value, dtype=own[key].dtype))

    def num_parameters(self):
        return sum(a.size for a in self.state_dict().values())


class NaiveLeNet5(SimpleCNN):
    """LeNet-5 exactly as :func:`cnnlib.models.zoo.lenet5` (conv1 padding 2), with loops."""

    def __init__(self, *, dtype=np.float32, rng=None):
        super().__init__(conv1_padding=2, dtype=dtype, rng=rng)


# ----------------------------------------------------------------------------
# (b) The same forward, vectorised: im2col + one matrix product per layer
# ----------------------------------------------------------------------------


def conv2d_vectorised(x, weight, bias, stride=1, padding=0):
    """Convolution as one tensordot over a window view of x."""
    k, p = weight.shape[-1], padding
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    # (N, C, H_out, W_out, k, k): every receptive field, without copying
    windows = sliding_window_view(x, (k, k), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]
    # Contract over (C, kh, kw): NumPy copies the windows into an im2col
    # matrix and calls BLAS once.  Result (N, H_out, W_out, C_out).
    y = np.tensordot(windows, weight, axes=([1, 4, 5], [1, 2, 3]))
    y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))  # back to NCHW
    return y + bias[:, None, None]


def max_pool2d_vectorised(x, kernel_size, stride=None, padding=0):
    """Max pooling as a max over the last two axes of a window view."""
    k, p = kernel_size, padding
    s = k if stride is None else stride
    x = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::s, ::s]
    return windows.max(axis=(4, 5))


def forward_vectorised(model, x):
    """Run a :class:`SimpleCNN`'s layers (same weights) without Python loops."""
    for layer in model.layers:
        if isinstance(layer, Conv2D):
            x = conv2d_vectorised(x, layer.weight, layer.bias, layer.stride, layer.padding)
        elif isinstance(layer, MaxPool2D):
            x = max_pool2d_vectorised(x, layer.kernel_size, layer.stride, layer.padding)
        else:
            x = layer.forward(x)
    return x


# ----------------------------------------------------------------------------
# (d) The C++ version: compile with g++, run on the same weights and inputs
# ----------------------------------------------------------------------------

CPP_SOURCE = resources.files("cnnlib.models") / "cpp" / "lenet5.cpp"
_CPP_ORDER = ("0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias",
              "9.weight", "9.bias", "11.weight", "11.bias")


def cpp_compiler():
    """Path of g++, or None."""
    return shutil.which("g++")


@functools.lru_cache(maxsize=None)
def compile_cpp(flags=("-O2",)):
    """Compile lenet5.cpp once per source and flags; return the executable's Path.

    Returns None when g++ is not on the PATH.  The executable lives in the
    temporary directory, named after a hash of the source and flags.
    """
    gxx = cpp_compiler()
    if gxx is None:
        return None
    source = CPP_SOURCE.read_bytes()
    tag = hashlib.sha256(source + " ".join(flags).encode()).hexdigest()[:12]
    build = Path(tempfile.gettempdir()) / "cnnlib-cpp"
    build.mkdir(exist_ok=True)
    exe = build / f"lenet5-{tag}"
    if not exe.exists():
        src = build / f"lenet5-{tag}.cpp"
        src.write_bytes(source)
        tmp = build / f"lenet5-{tag}.partial"
        subprocess.run([gxx, *flags, "-std=c++17", "-o", str(tmp), str(src)],
                       check=True, capture_output=True, text=True)
        tmp.replace(exe)  # atomic: a half-written executable is never used
    return exe


def _write_tensor(f, a):
    a = np.ascontiguousarray(a, dtype="<f4")
    f.write(struct.pack(f"<{1 + a.ndim}i", a.ndim, *a.shape))
    f.write(a.tobytes())


def run_cpp(state_dict, x, repeats=5, flags=("-O2",)):
    """Run the compiled C++ LeNet-5 on normalised float input x (N, 1, 28, 28).

    ``state_dict`` is a cnnlib LeNet-5 state dict; ``flags`` go to g++ (see
    :func:`compile_cpp`).  Returns ``(logits, ms)``:
    float32 logits (N, 10) and the median milliseconds of one forward pass
    over the whole batch, measured inside the program (file I/O excluded).
    Returns None when no C++ compiler is available.
    """
    exe = compile_cpp(tuple(flags))
    if exe is None:
        return None
    x = np.asarray(x)
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "input.bin", Path(tmp) / "output.bin"
        with open(inp, "wb") as f:
            f.write(b"LENET5\0\0")
            for key in _CPP_ORDER:
                _write_tensor(f, state_dict[key])
            _write_tensor(f, x)
        done = subprocess.run([str(exe), str(inp), str(out), str(repeats)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"the C++ LeNet-5 failed: {done.stderr.strip()}")
        result = np.fromfile(out, dtype="<f4").reshape(2, len(x), 10)
    return result[0], float(done.stdout.split()[1])


# ----------------------------------------------------------------------------
# (c) Speed: ms per image for each implementation, same weights, same inputs
# ----------------------------------------------------------------------------


def torch_lenet5(state_dict):
    """The same LeNet-5 in PyTorch with cnnlib's weights; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    tnn = torch.nn
    model = tnn.Sequential(
        tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
        tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in state_dict.items()})
    return model.eval()


def speed_table(model, x, naive_images=8, threads=2, min_time=0.5, cpp=True, settle=1.0):
    """Time LeNet-5 forward passes; return a list of rows (dicts).

    ``model`` is a cnnlib LeNet-5 (float32) and ``x`` a normalised batch
    (N, 1, 28, 28).  Every implementation gets the same weights and the whole
    batch, except the naive loops, which run on the first ``naive_images``
    images only (a full batch would take minutes); their time per image is
    extrapolated from that small batch.  Each row: ``implementation``,
    ``images`` (batch timed), ``ms_per_image`` and ``vs_cnnlib`` (time per
    image relative to cnnlib's; above 1 means slower).  Numba, BLAS and
    PyTorch run on ``threads`` threads (the C++ code is single-threaded).

    Before each measurement the function sleeps ``settle`` seconds: after a
    matrix product, OpenBLAS's threads keep spinning for a while, and on a
    small machine they would slow down whichever implementation runs next
    (PyTorch by up to 10x in our runs).
    """
    state = {k: np.asarray(v) for k, v in model.state_dict().items()}
    naive = NaiveLeNet5()
    naive.load_state_dict(state)
    small = x[:naive_images]
    model.eval()
    calls = [("naive loops (NumPy)", len(small), lambda: naive.forward(small)),
             ("vectorised NumPy", len(x), lambda: forward_vectorised(naive, x)),
             ("cnnlib (Numba + BLAS)", len(x), lambda: model.forward(x))]
    net = torch_lenet5(state)
    if net is not None:
        import torch
        xt = torch.from_numpy(np.ascontiguousarray(x))

        def torch_forward():
            with torch.no_grad():
                return net(xt)
        calls.append(("PyTorch (CPU)", len(x), torch_forward))
    rows = []
    with thread_limits(threads):
        for name, n, fn in calls:
            repeats = 3 if n == len(small) and name.startswith("naive") else 5
            time.sleep(settle)
            rows.append({"implementation": name, "images": n,
                         "ms_per_image": time_call(fn, min_time, repeats) / n})
    if cpp:
        time.sleep(settle)
        out = run_cpp(state, x, repeats=5)
        if out is not None:
            rows.append({"implementation": "C++ loops (g++ -O2, 1 thread)", "images": len(x),
                         "ms_per_image": out[1] / len(x)})
    base = next(r["ms_per_image"] for r in rows if r["implementation"].startswith("cnnlib"))
    for r in rows:
        r["vs_cnnlib"] = r["ms_per_image"] / base
    return rows


def format_speed_table(rows):
    """The rows of :func:`speed_table` as a small text table."""
    lines = [f"{'implementation':<31}{'images':>7}{'ms / image':>12}{'vs cnnlib':>11}"]
    for r in rows:
        lines.append(f"{r['implementation']:<31}{r['images']:>7}{r['ms_per_image']:>12.4f}"
                     f"{r['vs_cnnlib']:>10.1f}x")
    return "\n".join(lines)

"""Fully connected networks against CNNs: builders, counters and a training loop.

The computations behind the chapter "CNN vs fully connected" (Part I, 1.2):

- :func:`mlp` builds a multilayer perceptron (a stack of dense layers) and
  :func:`lenet5_like` a LeNet-5 for any square image size; :func:`mlp_params`
  and :func:`mlp_width_for_params` count and size MLPs exactly;
- :func:`dense_equivalent_params` replaces every convolution (and pooling)
  layer of a sequential CNN by a dense layer with the same input and output
  sizes and counts its parameters and multiply-accumulates;
- :func:`conv_as_dense` writes a convolution as the (sparse, shared) matrix
  of the dense layer that computes exactly the same function, and
  :func:`same_function_dense` turns a whole sequential CNN into such a
  network of dense layers;
- :func:`forward_flops` counts the floating-point operations of a forward
  pass; :func:`fit_classifier` and :func:`evaluate` train and test any model
  on images; :func:`translated_mnist` places digits at random positions on
  a larger canvas.
"""

import math
import numbers
import time
from typing import NamedTuple

import numpy as np

from .. import nn
from .._random import get_rng
from .._validate import check_float_array
from ..analysis.summary import summary
from ..models.zoo import MNIST_MEAN, MNIST_STD
from ..nn.layers import AvgPool2d, Conv2d, Linear, MaxPool2d
from ..ops.conv import conv2d
from ..training.loop import fit_cosine_sgd

__all__ = ["mlp", "mlp_params", "mlp_width_for_params", "lenet5_like", "DenseRow",
           "DenseEquivalent", "dense_equivalent_params", "forward_flops", "conv_as_dense",
           "Reshape", "same_function_dense", "to_input", "translated_mnist", "evaluate",
           "fit_classifier", "forward_times"]

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


def _int(value, name, minimum=1):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _sizes(sizes, name="sizes"):
    if not isinstance(sizes, (list, tuple)):
        raise TypeError(f"{name} must be a list or tuple of ints, got {type(sizes).__name__}")
    if len(sizes) < 2:
        raise ValueError(f"{name} must hold at least an input and an output size, got {sizes!r}")
    return [_int(s, f"{name}[{i}]") for i, s in enumerate(sizes)]


def _input_shape(input_shape):
    if not isinstance(input_shape, (tuple, list)) or not input_shape:
        raise ValueError(f"input_shape must be a non-empty tuple of positive ints "
                         f"(one example, no batch dimension), got {input_shape!r}")
    return tuple(_int(s, "input_shape") for s in input_shape)


# ----------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------

def mlp(sizes, activation="relu", rng=None, *, dtype=np.float32):
    """A multilayer perceptron: Flatten, then dense layers of the given ``sizes``.

    ``sizes = [n_in, h_1, ..., h_k, n_out]`` gives ``Linear(n_in, h_1)``,
    activation, ..., ``Linear(h_k, n_out)`` (no activation after the last
    layer: it returns logits).  ``activation`` is "relu", "tanh" or
    "sigmoid".  The leading ``Flatten`` lets it take images (N, C, H, W) with
    C*H*W = n_in as well as vectors (N, n_in).  Weights as in PyTorch, drawn
    from ``rng`` (a seed or a Generator).  Returns a ``cnnlib.nn.Sequential``
    with ``mlp_params(sizes)`` parameters.
    See the chapter "CNN vs fully connected" (Part I).
    """
    sizes = _sizes(sizes)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    gen = get_rng(rng)
    layers = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, dtype=dtype, rng=gen))
        if i < len(sizes) - 2:
            layers.append(_ACTIVATIONS[activation]())
    return nn.Sequential(*layers)


def mlp_params(sizes):
    """Exact parameter count of :func:`mlp` ``(sizes)``: sum of (a + 1) * b over layers."""
    sizes = _sizes(sizes)
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def mlp_width_for_params(target, n_in, n_out, hidden_layers=1):
    """The hidden width h whose MLP [n_in, h, ..., h, n_out] has closest to ``target`` parameters.

    ``hidden_layers`` hidden layers, all of width h (>= 1).  Returns the int
    h minimising |mlp_params - target| (the smaller h on a tie).
    See the chapter "CNN vs fully connected" (Part I).
    """
    target = _int(target, "target")
    n_in, n_out = _int(n_in, "n_in"), _int(n_out, "n_out")
    k = _int(hidden_layers, "hidden_layers")

    def count(h):
        return mlp_params([n_in] + [h] * k + [n_out])

    lo, hi = 1, 1
    while count(hi) < target:
        hi *= 2
    while lo < hi:  # smallest h with count(h) >= target
        mid = (lo + hi) // 2
        if count(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    if lo > 1 and target - count(lo - 1) <= count(lo) - target:
        return lo - 1
    return lo


def lenet5_like(image_size=28, rng=None, *, conv1_padding=2, dtype=np.float32):
    """LeNet-5 for square grey images of side ``image_size``.

    conv 5x5 (6, padding ``conv1_padding``) - ReLU - maxpool 2 - conv 5x5
    (16) - ReLU - maxpool 2 - flatten - 120 - 84 - 10, the layers of
    :func:`cnnlib.models.zoo.lenet5`; only the first dense layer's input size,
    16 * s * s with s = ((image_size + 2 * conv1_padding - 4) // 2 - 4) // 2,
    depends on the image size.  ``image_size=28`` gives LeNet-5's 61,706
    parameters; ``conv1_padding=0`` the outline's 28x28 network (44,426).
    Takes (N, 1, image_size, image_size).  Returns a ``cnnlib.nn.Sequential``.
    See the chapter "CNN vs fully connected" (Part I).
    """
    size = _int(image_size, "image_size")
    pad = _int(conv1_padding, "conv1_padding", minimum=0)
    if pad > 2:
        raise ValueError(f"conv1_padding must be at most 2 (kernel 5), got {pad}")
    s = ((size + 2 * pad - 4) // 2 - 4) // 2
    if s < 1:
        raise ValueError(f"image_size {size} is too small for LeNet-5 with "
                         f"conv1_padding={pad}")
    gen = get_rng(rng)
    kw = dict(dtype=dtype, rng=gen)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=pad, **kw), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5, **kw), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * s * s, 120, **kw), nn.ReLU(),
        nn.Linear(120, 84, **kw), nn.ReLU(),
        nn.Linear(84, 10, **kw),
    )


# ----------------------------------------------------------------------------
# Counting
# ----------------------------------------------------------------------------

class DenseRow(NamedTuple):
    """One layer of :func:`dense_equivalent_params`: its name and type, input
    and output sizes (one example), its own parameters and MACs, and those of
    the dense layer that replaces it (the same as its own when it is kept)."""
    name: str
    type: str
    in_size: int
    out_size: int
    params: int
    dense_params: int
    macs: int
    dense_macs: int


class DenseEquivalent(NamedTuple):
    """The result of :func:`dense_equivalent_params`: rows and totals."""
    rows: list
    params: int
    dense_params: int
    macs: int
    dense_macs: int


def _check_sequential(model):
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be a cnnlib.nn.Sequential (layers applied in order), "
                        f"got {type(model).__name__}")


def dense_equivalent_params(model, input_shape, include_pooling=True):
    """Replace each conv (and pooling) layer of ``model`` by a dense layer; count.

    Every ``Conv2d`` (and, when ``include_pooling``, every ``MaxPool2d`` /
    ``AvgPool2d``) with n inputs and m outputs per example becomes a dense
    layer with n * m weights and m biases, doing n * m multiply-accumulates
    (MACs); dense layers stay as they are; activations and ``Flatten`` have
    neither.  A pooling layer has no parameters and no MACs of its own.

    Inputs:
    - model: a ``cnnlib.nn.Sequential`` whose layers run in order
    - input_shape: one example's shape, e.g. (1, 28, 28)

    Returns a :class:`DenseEquivalent` with one :class:`DenseRow` per layer
    that has parameters or is replaced, and the totals (``params`` and
    ``macs`` of the model itself, ``dense_params`` and ``dense_macs`` of the
    replacement).  See the chapter "CNN vs fully connected" (Part I).
    """
    _check_sequential(model)
    shape = _input_shape(input_shape)
    if not isinstance(include_pooling, (bool, np.bool_)):
        raise TypeError(f"include_pooling must be a bool, got {include_pooling!r}")
    table = summary(model, shape)
    replaced = (Conv2d, MaxPool2d, AvgPool2d) if include_pooling else (Conv2d,)
    modules = dict(model.named_modules())
    rows, previous = [], shape
    for r in table.rows:
        n, m = math.prod(previous), math.prod(r.output_shape)
        module = modules[r.name]
        if isinstance(module, replaced):
            rows.append(DenseRow(r.name, r.type, n, m, r.parameters, n * m + m, r.macs, n * m))
        elif r.parameters:
            rows.append(DenseRow(r.name, r.type, n, m, r.parameters, r.parameters, r.macs, r.macs))
        previous = r.output_shape
    return DenseEquivalent(rows, sum(r.params for r in rows), sum(r.dense_params for r in rows),
                           sum(r.macs for r in rows), sum(r.dense_macs for r in rows))


def forward_flops(model, input_shape):
    """Floating-point operations of one forward pass of one example: 2 x MACs.

    Counts the multiply-accumulates of every ``Conv2d`` and ``Linear`` (from
    :func:`cnnlib.analysis.summary.summary`) as two operations each; biases,
    activations and pooling (a few operations per output, a small share) are
    not counted.  Returns an int.  See the chapter "CNN vs fully connected".
    """
    return 2 * summary(model, _input_shape(input_shape)).total_macs


# ----------------------------------------------------------------------------
# A convolution as a dense layer
# ----------------------------------------------------------------------------

def conv_as_dense(conv, input_shape):
    """The dense layer that computes exactly what ``conv`` computes.

    For a ``Conv2d`` and one example's ``input_shape`` (C, H, W), returns
    (weight, bias): weight of shape (m, n), n = C*H*W, m = C_out*H_out*W_out,
    and bias (m,), such that ``conv(x).reshape(N, m) == x.reshape(N, n) @
    weight.T + bias``.  Column j of weight is the convolution (without bias)
    of the j-th unit image, so the matrix is mostly zeros (sparse
    interactions) and its non-zeros repeat the kernel's weights (weight
    sharing).  Same dtype as the layer.
    See the chapter "CNN vs fully connected" (Part I).
    """
    if not isinstance(conv, Conv2d):
        raise TypeError(f"conv must be a cnnlib.nn.Conv2d, got {type(conv).__name__}")
    shape = _input_shape(input_shape)
    if len(shape) != 3 or shape[0] != conv.in_channels:
        raise ValueError(f"input_shape must be (C, H, W) with C = {conv.in_channels} "
                         f"(the layer's in_channels), got {input_shape!r}")
    n = math.prod(shape)
    dtype = conv.weight.dtype
    basis = np.eye(n, dtype=dtype).reshape(n, *shape)
    out = conv2d(basis, conv.weight.data, None, stride=conv.stride, padding=conv.padding,
                 dilation=conv.dilation, groups=conv.groups)
    weight = np.ascontiguousarray(out.reshape(n, -1).T)
    m = weight.shape[0]
    if conv.bias is None:
        bias = np.zeros(m, dtype=dtype)
    else:
        bias = np.repeat(conv.bias.data, m // conv.out_channels).astype(dtype)
    return weight, bias


class Reshape(nn.Module):
    """Reshape (N, ...) to ``(N, *shape)``; the backward reshapes back."""

    def __init__(self, shape):
        super().__init__()
        self.shape = _input_shape(shape)

    def forward(self, x):
        self.save_for_backward(x.shape)
        return x.reshape(x.shape[0], *self.shape)

    def backward(self, grad_output):
        (shape,) = self.saved()
        return grad_output.reshape(shape)

    def extra_repr(self):
        return f"shape={self.shape}"


def same_function_dense(model, input_shape):
    """A copy of a sequential CNN with every ``Conv2d`` replaced by its dense layer.

    Each convolution becomes Flatten - ``Linear`` (weights from
    :func:`conv_as_dense`) - :class:`Reshape` back to the feature-map
    shape; every other layer (activations, pooling, dense layers) is kept
    (shared, not copied).  The result computes the same function as
    ``model`` up to float rounding.  input_shape: one example's (C, H, W).
    Returns a ``cnnlib.nn.Sequential``.
    See the chapter "CNN vs fully connected" (Part I).
    """
    _check_sequential(model)
    shape = _input_shape(input_shape)
    table = {r.name: r for r in summary(model, shape).rows}
    layers, current = [], shape
    for i, layer in enumerate(model):
        if isinstance(layer, Conv2d):
            weight, bias = conv_as_dense(layer, current)
            dense = Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype, rng=0)
            dense.weight.data[...] = weight
            dense.bias.data[...] = bias
            out_shape = table[str(i)].output_shape
            layers += [nn.Flatten(), dense, Reshape(out_shape)]
        else:
            layers.append(layer)
        row = table.get(str(i))
        if row is not None and row.output_shape is not None:
            current = row.output_shape
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------
# Data and training
# ----------------------------------------------------------------------------

def to_input(images, dtype=np.float32):
    """uint8 images (N, H, W) -> normalised float array (N, 1, H, W).

    (x / 255 - mean) / std with MNIST's training mean and standard deviation,
    the preprocessing of :func:`cnnlib.models.zoo.lenet5`.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8 (raw pixels), got dtype {images.dtype}")
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, H, W), got {images.shape}")
    dtype = np.dtype(dtype)
    x = images[:, None].astype(dtype) / dtype.type(255)
    return (x - dtype.type(MNIST_MEAN)) / dtype.type(MNIST_STD)


def translated_mnist(images, labels, canvas, rng=None):
    """Digits pasted at random positions on a larger black canvas.

    Each image (h, w) goes to a uniformly random top-left corner (r, c),
    0 <= r <= canvas - h, 0 <= c <= canvas - w, of a zero canvas x canvas
    image (one draw of ``rng`` per image, rows then columns).

    Inputs: images uint8 (N, h, w); labels (N,); canvas int >= max(h, w).
    Returns (canvas images uint8 (N, canvas, canvas), labels int64 (N,),
    offsets int64 (N, 2) of (r, c)).
    See the chapter "CNN vs fully connected" (Part I).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got dtype {images.dtype}")
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, h, w), got {images.shape}")
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    n, h, w = images.shape
    canvas = _int(canvas, "canvas")
    if canvas < max(h, w):
        raise ValueError(f"canvas must be at least the image size {max(h, w)}, got {canvas}")
    gen = get_rng(rng)
    rows = gen.integers(0, canvas - h + 1, size=n)
    cols = gen.integers(0, canvas - w + 1, size=n)
    out = np.zeros((n, canvas, canvas), dtype=np.uint8)
    for i in range(n):
        out[i, rows[i]:rows[i] + h, cols[i]:cols[i] + w] = images[i]
    return out, labels.astype(np.int64), np.stack([rows, cols], axis=1).astype(np.int64)


def _as_input(x, name):
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return to_input(x)
    return check_float_array(x, name, ndim=(2, 4))


def evaluate(model, x, y, batch_size=1000):
    """Accuracy of ``model`` (argmax of its outputs) on x, y; a float in [0, 1].

    x: uint8 images (N, H, W) (normalised with :func:`to_input`) or float
    inputs (N, C, H, W) / (N, D); y: (N,) labels.  Runs in evaluation mode.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a cnnlib.nn.Module, got {type(model).__name__}")
    x = _as_input(x, "x")
    y = np.asarray(y)
    if y.shape != (len(x),):
        raise ValueError(f"y must have shape ({len(x)},), got {y.shape}")
    batch_size = _int(batch_size, "batch_size")
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(axis=1) == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)


def fit_classifier(model, x_train, y_train, x_test, y_test, epochs=1, batch_size=64, lr=0.05,
                   seed=0, progress=False, momentum=0.9, weight_decay=5e-4):
    """Train any classifier with cross-entropy; test after each epoch.

    The optimiser of :func:`cnnlib.training.loop.fit_lenet5`: SGD with Nesterov
    momentum and weight decay, the learning rate following a cosine from
    ``lr`` to 0 over all steps; the batch order comes from ``seed`` (the
    weights are the caller's: build the model with a seeded ``rng``).
    Uses :func:`cnnlib.training.loop.fit_cosine_sgd`.

    Inputs: x_train / x_test uint8 images (N, H, W) (normalised with
    :func:`to_input`) or float arrays the model takes; y_train / y_test
    labels (N,).  ``progress``: show a tqdm bar.
    Returns a dict: "train_loss", "test_accuracy", "epoch_seconds" (one
    float per epoch).  See the chapter "CNN vs fully connected" (Part I).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a cnnlib.nn.Module, got {type(model).__name__}")
    x_train, x_test = _as_input(x_train, "x_train"), _as_input(x_test, "x_test")
    y_train = np.asarray(y_train).astype(np.int64)
    y_test = np.asarray(y_test)
    if y_train.shape != (len(x_train),):
        raise ValueError(f"y_train must have shape ({len(x_train)},), got {y_train.shape}")
    epochs, batch_size = _int(epochs, "epochs"), _int(batch_size, "batch_size")
    if not isinstance(lr, numbers.Real) or not lr > 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    rng = np.random.default_rng(_int(seed, "seed", minimum=0))
    return fit_cosine_sgd(model, x_train, y_train, lambda m: evaluate(m, x_test, y_test), epochs,
                          batch_size, lr, momentum, weight_decay, rng, progress)


def forward_times(models, input_shape, batch_sizes=(1, 64, 1000), repeats=5, rng=0):
    """Best wall-clock time of a forward pass, in milliseconds per example.

    ``models`` is a dict name -> ``cnnlib.nn.Module``; each runs in
    evaluation mode on the same random float32 batches ``(N, *input_shape)``
    drawn from ``rng``, once to warm up and then ``repeats`` times per batch
    size; the minimum over the repeats is kept (other processes can only make
    a run slower, so the minimum is the least noisy estimate).  Returns a
    dict name -> {batch size: ms per example}.  Timings depend on the
    machine and its load: keep them out of tests.
    See the chapter "CNN vs fully connected" (Part I).
    """
    if not isinstance(models, dict) or not models:
        raise TypeError(f"models must be a non-empty dict name -> Module, got {models!r}")
    for name, model in models.items():
        if not isinstance(model, nn.Module):
            raise TypeError(f"models[{name!r}] must be a cnnlib.nn.Module, "
                            f"got {type(model).__name__}")
    shape = _input_shape(input_shape)
    if not isinstance(batch_sizes, (list, tuple)) or not batch_sizes:
        raise TypeError(f"batch_sizes must be a non-empty list of ints, got {batch_sizes!r}")
    batch_sizes = [_int(b, "batch_sizes") for b in batch_sizes]
    repeats = _int(repeats, "repeats")
    gen = get_rng(rng)
    result = {name: {} for name in models}
    for b in batch_sizes:
        x = gen.standard_normal((b, *shape)).astype(np.float32)
        for name, model in models.items():
            model.eval()
            model(x)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                model(x)
                times.append(time.perf_counter() - start)
            result[name][b] = 1e3 * min(times) / b
    return result

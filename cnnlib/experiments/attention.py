"""The attention chapter's experiments: a small CNN with and without an attention block.

:func:`attention_cnn` builds one CNN for 36x36 cluttered digits
(:func:`cnnlib.data.cluttered.cluttered_mnist`) with an optional block
after its second convolution: ``"none"``, ``"se"``
(:class:`~cnnlib.nn.SqueezeExcitation`), ``"cbam"`` (:class:`~cnnlib.nn.CBAM`)
or ``"nonlocal"`` (:class:`~cnnlib.nn.NonLocal2d`). :func:`cluttered_data`
makes the seeded data set, :func:`train_attention_model` trains one model
with the library's loop (:func:`cnnlib.training.loop.fit_cosine_sgd`) and
reports accuracy, parameters and multiply-accumulates,
:func:`attention_maps` reads the block's weights for a batch of images, and
:func:`non_local_by_hand` recomputes a non-local block as softmax(Q K^T) V.
The figures are :func:`plot_cluttered_examples` and
:func:`plot_attention_maps`. See the attention chapter (Part IV).
"""

import time

import numpy as np

from .. import nn
from .._random import get_rng
from ..analysis.summary import summary
from ..data.cluttered import cluttered_mnist
from ..data.mnist import load_mnist
from ..models.zoo import MNIST_MEAN, MNIST_STD
from ..training.loop import accuracy, fit_cosine_sgd

__all__ = ["BLOCKS", "AttentionCNN", "attention_cnn", "cluttered_data", "train_attention_model",
           "attention_maps", "frame_ratio", "non_local_by_hand", "plot_cluttered_examples",
           "plot_attention_maps", "plot_channel_weights"]

BLOCKS = ("none", "se", "cbam", "nonlocal")


class AttentionCNN(nn.Sequential):
    """conv5x5(1 -> c1) - BN - ReLU - maxpool2 - conv3x3(c1 -> c2) - BN - ReLU - maxpool2 -
    [block] - conv3x3(c2 -> c2) - BN - ReLU - global average pool - Linear(c2 -> 10).

    The convolutions have no bias (BN's shift plays that role). The block
    (``"none"``: left out) sees c2 maps of a quarter of the input's side:
    9 x 9 for 36 x 36 digits. ``se``: ``SqueezeExcitation(c2, c2 // 4)``;
    ``cbam``: ``CBAM(c2, reduction=4, kernel_size=7)``; ``nonlocal``:
    ``NonLocal2d(c2)`` (embedded Gaussian, sub-sampled keys, BN, identity at
    the start). Global average pooling makes the head indifferent to where the
    digit is. ``preprocess`` and ``predict`` work on raw uint8 images
    (N, S, S), as :class:`cnnlib.models.zoo.LeNet5`'s do.
    """

    def __init__(self, block="none", c1=8, c2=16, *, dtype=np.float32, rng=None):
        if block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {block!r}")
        kw = dict(dtype=dtype, rng=get_rng(rng))
        bn = dict(dtype=dtype)
        layers = [nn.Conv2d(1, c1, 5, padding=2, bias=False, **kw), nn.BatchNorm2d(c1, **bn), nn.ReLU(),
                  nn.MaxPool2d(2),
                  nn.Conv2d(c1, c2, 3, padding=1, bias=False, **kw), nn.BatchNorm2d(c2, **bn), nn.ReLU(),
                  nn.MaxPool2d(2)]
        if block == "se":
            layers.append(nn.SqueezeExcitation(c2, max(c2 // 4, 1), **kw))
        elif block == "cbam":
            layers.append(nn.CBAM(c2, reduction=4, kernel_size=7, **kw))
        elif block == "nonlocal":
            layers.append(nn.NonLocal2d(c2, **kw))
        layers += [nn.Conv2d(c2, c2, 3, padding=1, bias=False, **kw), nn.BatchNorm2d(c2, **bn), nn.ReLU(),
                   nn.AdaptiveAvgPool2d(1),
                   nn.Flatten(), nn.Linear(c2, 10, **kw)]
        super().__init__(*layers)
        self.block_name = block

    @property
    def block(self):
        """The attention block (``None`` for ``"none"``)."""
        return self[8] if self.block_name != "none" else None

    def preprocess(self, images):
        """uint8 images (N, S, S) -> normalised float array (N, 1, S, S) (MNIST's mean and std)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise TypeError(f"images must be uint8 of shape (N, S, S), got {images.dtype} {images.shape}")
        dtype = self[0].weight.dtype
        x = images[:, None].astype(dtype) / dtype.type(255)
        return (x - dtype.type(MNIST_MEAN)) / dtype.type(MNIST_STD)

    def predict(self, images, batch_size=1000):
        """Predicted labels (N,) for uint8 images (N, S, S), in batches."""
        x = self.preprocess(images)
        out = [self.forward(x[i:i + batch_size]).argmax(axis=1) for i in range(0, len(x), batch_size)]
        return np.concatenate(out) if out else np.empty(0, np.int64)


def attention_cnn(block="none", *, dtype=np.float32, rng=None):
    """An :class:`AttentionCNN` with the given block (one of ``BLOCKS``)."""
    return AttentionCNN(block, dtype=dtype, rng=rng)


def cluttered_data(n_train=2000, n_test=1000, size=36, n_clutter=3, patch=8, seed=0, data_dir=None):
    """Cluttered digits from the first MNIST training and test images.

    The training canvases are made from the first ``n_train`` training digits
    (clutter cut from the same set), the test canvases from the first
    ``n_test`` test digits, with generators seeded by ``seed`` and
    ``seed + 1``. Returns a dict with ``train_images``, ``train_labels``,
    ``train_corners``, ``test_images``, ``test_labels``, ``test_corners``.
    """
    out = {}
    for split, count, s in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = load_mnist(split, data_dir)
        canvases, labels, corners = cluttered_mnist(images[:count], labels[:count], size, n_clutter,
                                                    patch, rng=np.random.default_rng(s))
        out.update({f"{split}_images": canvases, f"{split}_labels": labels,
                    f"{split}_corners": corners})
    return out


def train_attention_model(block, data, epochs=4, batch_size=64, lr=0.1, momentum=0.9,
                          weight_decay=5e-4, seed=0):
    """Train an :func:`attention_cnn` on ``data`` (from :func:`cluttered_data`).

    SGD with Nesterov momentum and a cosine learning rate from ``lr`` to 0
    (:func:`cnnlib.training.loop.fit_cosine_sgd`); the initialisation and the
    batch order come from ``seed``. Returns (model, record) with
    ``train_loss`` (per epoch), ``test_accuracy`` (after the last epoch),
    ``parameters``, ``macs`` (per example, :func:`cnnlib.analysis.summary.summary`,
    the block's batched products included) and ``seconds``.
    """
    rng = np.random.default_rng(seed)
    model = attention_cnn(block, rng=rng)
    x = model.preprocess(data["train_images"])
    calls = []

    def evaluate(m):  # the test set only after the last epoch (it changes nothing else)
        calls.append(None)
        return accuracy(m, data["test_images"], data["test_labels"]) if len(calls) == epochs else np.nan

    start = time.perf_counter()
    history = fit_cosine_sgd(model, x, data["train_labels"], evaluate, epochs, batch_size, lr, momentum,
                             weight_decay, rng, progress=False)
    info = summary(model, x.shape[1:])
    record = {"train_loss": history["train_loss"], "test_accuracy": history["test_accuracy"][-1],
              "parameters": info.total_parameters, "macs": info.total_macs,
              "seconds": time.perf_counter() - start}
    return model, record


def attention_maps(model, images, query=None):
    """The attention of ``model``'s block for uint8 ``images`` (N, S, S), evaluation mode.

    Returns a dict: ``"se"``: the channel weights (N, C); ``"cbam"``: the
    channel weights (N, C) under ``"channel"`` and the spatial map (N, h, w)
    under ``"spatial"``; ``"nonlocal"``: the attention row of the query
    position ``query`` = (row, column) on the block's h x w grid, reshaped to
    the key grid (N, h', w'), under ``"row"`` (by default the position of
    each image's largest mean activation entering the block, also returned as
    ``"query"`` (N, 2)), and the same row drawn on the h x w grid under
    ``"row_on_grid"`` (with sub-sampling each key covers 2 x 2 cells and gets
    a quarter of its weight in each; an odd last row or column, which no key
    covers, gets 0). Also ``"logits"`` (N, 10).
    """
    if not isinstance(model, AttentionCNN) or model.block is None:
        raise ValueError("model must be an AttentionCNN with a block ('se', 'cbam' or 'nonlocal')")
    model.eval()
    x = model.preprocess(images)
    before = model[:8](x)  # the maps entering the block
    logits = model(x)
    block, n = model.block, len(x)
    if model.block_name == "se":
        return {"channel": block.last_scale[:, :, 0, 0], "logits": logits}
    if model.block_name == "cbam":
        return {"channel": block.last_channel_scale, "spatial": block.last_spatial_scale[:, 0],
                "logits": logits}
    h, w = before.shape[2:]
    if query is None:
        flat = before.mean(axis=1).reshape(n, -1).argmax(axis=1)
        queries = np.stack([flat // w, flat % w], axis=1)
    else:
        queries = np.tile(np.asarray(query, dtype=np.int64), (n, 1))
    a = block.last_attention  # (N, h*w, M)
    kh, kw = (h // 2, w // 2) if block.sub_sample else (h, w)
    rows = a[np.arange(n), queries[:, 0] * w + queries[:, 1]].reshape(n, kh, kw)
    if block.sub_sample:
        grid = np.zeros((n, h, w), dtype=rows.dtype)
        grid[:, :2 * kh, :2 * kw] = np.repeat(np.repeat(rows, 2, axis=1), 2, axis=2) / 4
    else:
        grid = rows
    return {"row": rows, "row_on_grid": grid, "query": queries, "logits": logits}


def frame_ratio(maps, corners, size=36, frame=28):
    """How much a map favours the digit: its mean inside the digit's frame over its mean on the canvas.

    ``maps`` (N, h, w) on a grid that divides the ``size`` x ``size`` canvas
    (each cell stretched to size / h pixels), ``corners`` (N, 2) the digits'
    top-left pixels (from :func:`cnnlib.data.cluttered.cluttered_mnist`), ``frame`` the digit's
    side. Returns an array (N,): 1 for a map that ignores position, up to
    size^2 / frame^2 for a map that is zero outside the frame.
    """
    maps = np.asarray(maps, dtype=np.float64)
    if maps.ndim != 3 or size % maps.shape[1] or size % maps.shape[2]:
        raise ValueError(f"maps must be (N, h, w) with h, w dividing size={size}, got shape {maps.shape}")
    corners = np.asarray(corners)
    if corners.shape != (len(maps), 2):
        raise ValueError(f"corners must have shape ({len(maps)}, 2), got {corners.shape}")
    up = np.repeat(np.repeat(maps, size // maps.shape[1], axis=1), size // maps.shape[2], axis=2)
    out = np.empty(len(maps))
    for i, (r, c) in enumerate(corners):
        out[i] = up[i, r:r + frame, c:c + frame].mean() / up[i].mean()
    return out


def non_local_by_hand(block, x):
    """A :class:`~cnnlib.nn.NonLocal2d` without sub-sampling and BN, recomputed as attention.

    Q, K, V are the 1x1-convolution maps flattened to (N, H*W, C') (a 1x1
    convolution is a matrix product per position), ``A = softmax(Q K^T)``
    over the keys (or ``Q K^T / (H W)`` for ``"dot_product"``) and
    ``z = (A V) W^T + b + x`` reshaped back. Returns (z, A), for comparison
    with ``block(x)`` and ``block.last_attention``.
    """
    if not isinstance(block, nn.NonLocal2d) or block.sub_sample or block.bn_layer:
        raise ValueError("block must be a NonLocal2d with sub_sample=False and bn_layer=False")
    n, c, h, w = x.shape

    def flat(conv):
        weight = conv.weight.data[:, :, 0, 0]
        return x.reshape(n, c, h * w).transpose(0, 2, 1) @ weight.T + conv.bias.data

    q, k, v = flat(block.theta), flat(block.phi), flat(block.g)
    scores = q @ k.transpose(0, 2, 1)
    if block.mode == "embedded_gaussian":
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        a = e / e.sum(axis=-1, keepdims=True)
    else:
        a = scores / (h * w)
    out = (a @ v) @ block.W.weight.data[:, :, 0, 0].T + block.W.bias.data
    return out.transpose(0, 2, 1).reshape(n, c, h, w) + x, a


# ----------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------

def plot_cluttered_examples(images, labels, corners=None, ncols=8, scale=1.3):
    """A row (or rows) of cluttered digits with their labels and, if given, the digit's frame."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    n = len(images)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale, nrows * scale * 1.1), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(images[i], cmap="gray_r")
        ax.set_title(str(labels[i]), fontsize=9)
        if corners is not None:
            r, c = corners[i]
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 28, 28, fill=False, ec="tab:red", lw=0.8))
    fig.tight_layout()
    return fig


def plot_channel_weights(weights, labels, title="SE channel weights"):
    """The channel weights (N, C) of N images as an image (rows: images, labelled by class)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.3 * weights.shape[1] + 1.5, 0.3 * len(weights) + 1.2))
    im = ax.imshow(weights, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(weights)), [f"digit {v}" for v in labels], fontsize=8)
    ax.set_xlabel("channel")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    return fig


def plot_attention_maps(images, maps, titles, size=36, scale=1.5):
    """Each image with maps drawn over it: one row per entry of ``maps``.

    ``maps`` is a list of arrays (N, h, w) (a CBAM spatial map, a non-local
    attention row, ...); each is stretched to the image's ``size`` x ``size``
    (nearest neighbour) and drawn semi-transparent over it; ``titles`` names
    the rows. Returns the figure.
    """
    import matplotlib.pyplot as plt

    n = len(images)
    fig, axes = plt.subplots(len(maps) + 1, n, figsize=(n * scale, (len(maps) + 1) * scale),
                             squeeze=False)
    for j in range(n):
        axes[0, j].imshow(images[j], cmap="gray_r")
        for i, m in enumerate(maps, start=1):
            reps = (size // m.shape[1], size // m.shape[2])
            up = np.kron(m[j], np.ones(reps))
            axes[i, j].imshow(images[j], cmap="gray_r")
            axes[i, j].imshow(up, cmap="magma", alpha=0.6, extent=(-0.5, size - 0.5, size - 0.5, -0.5))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for i, t in enumerate(["input", *titles]):
        axes[i, 0].set_ylabel(t, fontsize=9)
    fig.tight_layout()
    return fig

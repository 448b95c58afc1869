"""Drivers of the applications chapter (8): a defect detector on synthetic textures,
a latency budget from measured speeds, and a binarised network on small MNIST digits.

* :func:`defect_cnn`, :func:`train_classifier`, :func:`detector_scores`: the
  inspection case study (data from :mod:`cnnlib.data.defects`, metrics from
  :mod:`cnnlib.analysis.detection`);
* :func:`resnet18`, :data:`PUBLISHED_MACS`, :func:`latency_budget`: how much
  network fits in a frame time;
* :func:`small_mnist`, :func:`mnist_net`, :func:`train_classifier`: the float
  and the binarised network (:mod:`cnnlib.quant.binary`);
* :data:`HOROWITZ_PJ`, :func:`mac_energy`: energy per multiply-accumulate from
  published per-operation energies.
"""

import math
from typing import NamedTuple

import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from .. import nn, optim
from .._random import get_rng
from .._validate import check_count, check_float_array, check_number
from ..models.zoo import MNIST_MEAN, MNIST_STD
from ..quant import binary
from ..training.loop import train_epoch

__all__ = ["defect_cnn", "train_classifier", "detector_scores", "plot_textures", "plot_roc",
           "plot_attribution_overlay", "resnet18", "PUBLISHED_MACS", "LatencyBudget",
           "latency_budget", "small_mnist", "mnist_net", "HOROWITZ_PJ", "mac_energy"]


# ---------------------------------------------------------------------------
# Defect detection
# ---------------------------------------------------------------------------

def defect_cnn(channels=(8, 16, 32), *, rng=None):
    """A small detector: three conv3x3-ReLU stages (the first two max-pooled), a global
    max pool and a linear layer to two logits (good, defect).

    The global max pool makes the score "the strongest defect-like response
    anywhere", which suits a defect that may sit anywhere on the surface.
    Inputs of the model: (N, 1, H, W). Returns a ``cnnlib.nn.Sequential``.
    """
    c1, c2, c3 = (check_count(c, "channels") for c in channels)
    kw = dict(rng=get_rng(rng))
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1, **kw), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1, **kw), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1, **kw), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c3, 2, **kw))


def train_classifier(model, x, y, epochs, batch_size=64, lr=1e-3, rng=None, clip=False, desc=None):
    """Train with Adam and cross-entropy for a number of epochs (:func:`cnnlib.training.loop.train_epoch`),
    with a progress bar; with ``clip=True`` the binary layers' latent weights are
    clipped to [-1, 1] after every step (:func:`cnnlib.quant.binary.clip_latent_weights`).

    Inputs: model; x float (N, ...); y int (N,); epochs; batch_size; lr; rng
    (seed or Generator, the batch order).  Returns the list of mean losses per epoch.
    """
    epochs, batch_size = check_count(epochs, "epochs"), check_count(batch_size, "batch_size")
    x = check_float_array(x, "x", min_ndim=2)
    rng = get_rng(rng)
    opt = optim.Adam(model.parameters(), lr=lr)
    if clip:
        step = opt.step

        def step_and_clip():
            step()
            binary.clip_latent_weights(model)
        opt.step = step_and_clip
    losses = []
    with tqdm(total=epochs * math.ceil(len(x) / batch_size), desc=desc, leave=False) as bar:
        for _ in range(epochs):
            losses.append(train_epoch(model, opt, x, y, batch_size, rng, progress=bar))
    model.eval()
    return losses


def detector_scores(model, x, batch_size=500):
    """The defect score of each image: logit(defect) - logit(good), in float64.

    A monotone function of the softmax probability of a defect, so it gives
    the same ROC curve, without saturating at 1.  Returns (N,) float64.
    """
    x = check_float_array(x, "x", ndim=4)
    model.eval()
    out = np.concatenate([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    return out[:, 1].astype(np.float64) - out[:, 0]


def plot_textures(images, masks, kinds, n=8):
    """The first n images of each kind ("" = good), with the defect mask's outline below."""
    names = [k for k in ("", "scratch", "spot", "crack") if (kinds == k).any()]
    fig, axes = plt.subplots(2 * len(names), n, figsize=(1.2 * n, 2.4 * len(names)))
    for r, name in enumerate(names):
        idx = np.nonzero(kinds == name)[0][:n]
        for c in range(n):
            for ax in axes[2 * r:2 * r + 2, c]:
                ax.set_axis_off()
            if c < len(idx):
                axes[2 * r, c].imshow(images[idx[c], 0], cmap="gray")
                axes[2 * r + 1, c].imshow(masks[idx[c]], cmap="Reds", vmin=0, vmax=1)
        axes[2 * r, 0].set_title(name or "good", loc="left", fontsize=9)
    fig.tight_layout()
    return fig


def plot_roc(fpr, tpr, budget=None, point=None, label=None):
    """The ROC curve (log-scaled false-alarm axis on the right panel), the budget line and an operating point."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, log in zip(axes, (False, True)):
        ax.plot(fpr, tpr, lw=1.5, label=label)
        ax.plot([1e-4 if log else 0, 1], [1e-4 if log else 0, 1], "k:", lw=0.8, label="chance")
        if budget is not None:
            ax.axvline(budget, color="C3", lw=0.8, ls="--", label=f"budget {budget:g}")
        if point is not None:
            ax.plot(*point, "o", color="C3", label="test operating point")
        ax.set_xlabel("false-alarm rate (FPR)")
        ax.set_ylabel("recall (TPR)")
        if log:
            ax.set_xscale("log")
            ax.set_xlim(1e-3, 1)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def plot_attribution_overlay(images, maps, masks, titles):
    """Rows: image, |attribution| with the true mask's outline. One column per example."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4))
    for c in range(n):
        axes[0, c].imshow(images[c, 0], cmap="gray")
        axes[0, c].set_title(titles[c], fontsize=8)
        axes[1, c].imshow(np.abs(maps[c, 0]), cmap="magma")
        axes[1, c].contour(masks[c], levels=[0.5], colors="cyan", linewidths=0.8)
        for ax in axes[:, c]:
            ax.set_axis_off()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# Latency budget
# ---------------------------------------------------------------------------

def resnet18(num_classes=1000, *, rng=None):
    """ResNet-18 (He et al. 2016) as torchvision builds it, from cnnlib layers.

    conv7x7/2 (64) - BN - ReLU - max pool 3x3/2 - four stages of two
    :class:`cnnlib.nn.ResidualBlock` (64, 128, 256, 512 channels, the first
    block of stages 2-4 with stride 2) - global average pool - linear.
    Inputs (N, 3, H, W). Returns a ``cnnlib.nn.Sequential``.
    """
    rng = get_rng(rng)
    layers = [nn.Conv2d(3, 64, 7, 2, padding=3, bias=False, rng=rng), nn.BatchNorm2d(64), nn.ReLU(),
              nn.MaxPool2d(3, 2, padding=1)]
    c_in = 64
    for c in (64, 128, 256, 512):
        layers += [nn.ResidualBlock(c_in, c, 1 if c == 64 else 2, rng=rng), nn.ResidualBlock(c, c, rng=rng)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, check_count(num_classes, "num_classes"), rng=rng)]
    return nn.Sequential(*layers)


#: Multiply-accumulates per 224x224 image as published (the papers call them "FLOPs" or
#: "mult-adds", and all count one multiply-add as one operation).
PUBLISHED_MACS = {
    "MobileNet v1 (Howard et al. 2017, Table 8)": 569e6,
    "EfficientNet-B0 (Tan & Le 2019, Table 2)": 0.39e9,
    "ResNet-18 (He et al. 2016, Table 1)": 1.8e9,
    "ResNet-50 (He et al. 2016, Table 1)": 3.8e9,
    "VGG-16 (Howard et al. 2017, Table 8)": 15.3e9,
}


class LatencyBudget(NamedTuple):
    """What a compute rate buys within a frame deadline (see :func:`latency_budget`)."""
    ms_per_image: float
    ms_all_cameras: float
    fits: bool
    max_macs_per_image: float


def latency_budget(macs, gflops, budget_ms=100.0, cameras=8):
    """Time of one network per frame on every camera, against a deadline.

    One MAC is 2 floating-point operations, so an image costs
    ``2 macs / (gflops 1e9)`` seconds, all cameras ``cameras`` times that
    (run one after the other on one processor), and the largest network that
    fits has ``gflops 1e9 (budget_ms / 1e3) / (2 cameras)`` MACs per image.

    Inputs: macs per image (> 0); gflops, the sustained rate (> 0); budget_ms;
    cameras. Returns a :class:`LatencyBudget`.
    """
    macs, rate = check_number(macs, "macs", positive=True), check_number(gflops, "gflops", positive=True)
    budget, cameras = check_number(budget_ms, "budget_ms", positive=True), check_count(cameras, "cameras")
    ms = 2 * macs / (rate * 1e9) * 1e3
    return LatencyBudget(ms, cameras * ms, cameras * ms <= budget, rate * 1e9 * budget / 1e3 / (2 * cameras))


# ---------------------------------------------------------------------------
# Binarised network on small MNIST digits
# ---------------------------------------------------------------------------

def small_mnist(images):
    """uint8 digits (N, 28, 28) -> 2x2-averaged, normalised float32 (N, 1, 14, 14)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"images must be uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    x = images.astype(np.float32).reshape(len(images), 14, 2, 14, 2).mean(axis=(2, 4)) / np.float32(255)
    return ((x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD))[:, None]


def mnist_net(binarised, channels=(32, 64), *, rng=None):
    """A 14x14-digit classifier, float or binarised, with the same shape.

    float: conv3x3 - BN - max pool - ReLU - conv3x3 - BN - max pool - ReLU - linear;
    binarised: the convolutions and the linear layer get 1-bit weights with
    XNOR-Net scales (:class:`cnnlib.quant.binary.BinaryConv2d`), the ReLUs become
    sign (:class:`cnnlib.quant.binary.BinaryActivation`).  As in BNN and
    XNOR-Net, the first layer's input (the pixels) stays real; every later
    layer sees only {-1, +1}.  Returns a ``cnnlib.nn.Sequential``.
    """
    c1, c2 = (check_count(c, "channels") for c in channels)
    rng = get_rng(rng)
    if binarised:
        conv, act = (lambda a, b: binary.BinaryConv2d(a, b, 3, padding=1, rng=rng)), binary.BinaryActivation
        head = binary.BinaryLinear(c2 * 9, 10, bias=True, rng=rng)
    else:
        conv, act = (lambda a, b: nn.Conv2d(a, b, 3, padding=1, bias=False, rng=rng)), nn.ReLU
        head = nn.Linear(c2 * 9, 10, rng=rng)
    return nn.Sequential(conv(1, c1), nn.BatchNorm2d(c1), nn.MaxPool2d(2), act(),
                         conv(c1, c2), nn.BatchNorm2d(c2), nn.MaxPool2d(2), act(),
                         nn.Flatten(), head)


# ---------------------------------------------------------------------------
# Energy per operation
# ---------------------------------------------------------------------------

#: Energy per operation in picojoules at 45 nm and 0.9 V (Horowitz, ISSCC 2014).
HOROWITZ_PJ = {
    "int8 add": 0.03, "int16 add": 0.05, "int32 add": 0.1,
    "fp16 add": 0.4, "fp32 add": 0.9,
    "int8 mult": 0.2, "int32 mult": 3.1,
    "fp16 mult": 1.1, "fp32 mult": 3.7,
    "SRAM read 64 bit (8 KB)": 10.0, "SRAM read 64 bit (32 KB)": 20.0,
    "SRAM read 64 bit (1 MB)": 100.0, "DRAM read 64 bit": 1300.0,
}


def mac_energy(kind):
    """Energy (pJ) of one multiply-accumulate from :data:`HOROWITZ_PJ`.

    ``"fp32"``: fp32 mult + fp32 add; ``"fp16"``: fp16 mult + fp16 add;
    ``"int8"``: int8 mult + int32 add (the accumulator is wider);
    ``"binary"``: an estimate, not a table entry: one XNOR (taken as free)
    and a 1/64 share of a 64-bit population count plus the accumulation,
    counted as one int8 add per term, an upper bound for the small adders of
    a popcount tree (63 adders of at most 7 bits for 64 terms).
    """
    table = {"fp32": HOROWITZ_PJ["fp32 mult"] + HOROWITZ_PJ["fp32 add"],
             "fp16": HOROWITZ_PJ["fp16 mult"] + HOROWITZ_PJ["fp16 add"],
             "int8": HOROWITZ_PJ["int8 mult"] + HOROWITZ_PJ["int32 add"],
             "binary": HOROWITZ_PJ["int8 add"]}
    if kind not in table:
        raise ValueError(f"kind must be one of {sorted(table)}, got {kind!r}")
    return table[kind]

"""The quantisation chapter's experiments (Part V, 5.2): the affine map and its error,
post-training quantisation against bit width, quantisation-aware training, distillation
quantisation, and their figures.

Every function composes :mod:`cnnlib.quant` with LeNet-5 (:mod:`cnnlib.models.zoo`) and
MNIST; each training run is seeded.
"""

import copy

import matplotlib.pyplot as plt
import numpy as np

from .. import quant
from .._validate import check_count, check_float_array
from ..quant import qat
from ..training.loop import accuracy

__all__ = ["BITS", "affine_map", "plot_affine_map", "ptq_accuracy", "qat_accuracy",
           "plot_accuracy_vs_bits", "plot_weight_grid"]

BITS = (8, 6, 4, 3, 2)


def affine_map(x, bits, lo, hi):
    """The fake-quantised values and errors of ``x`` for a b-bit affine range
    [lo, hi] (scale and zero point by :func:`cnnlib.quant.affine.choose_qparams`).

    Returns (y, error, scale, zero_point) with y, error of x's shape.
    """
    x = check_float_array(x, "x")
    bits = check_count(bits, "bits", minimum=2)
    qmin, qmax = 0, 2 ** bits - 1
    s, z = quant.choose_qparams(lo, hi, qmin, qmax)
    y = quant.fake_quantize_per_tensor_affine(x, s, z, qmin, qmax)
    return y, y - x, s, z


def plot_affine_map(bits=3, lo=-1.0, hi=2.0):
    """Two panels: the staircase y = fake_quant(x) with its clamps, and the error y - x."""
    x = np.linspace(lo - 0.8, hi + 0.8, 2001).astype(np.float32)
    y, err, s, z = affine_map(x, bits, lo, hi)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    axes[0].plot(x, x, color="0.7", lw=1, label="y = x")
    axes[0].plot(x, y, lw=1.6, label=f"{bits}-bit fake quantisation")
    axes[0].axvspan(lo, hi, color="C2", alpha=0.08, label="[min, max]")
    axes[0].set(xlabel="x", ylabel="y", title=f"s = {float(s):.4f}, z = {z}")
    axes[0].legend(fontsize=8)
    axes[1].plot(x, err, lw=1)
    axes[1].axhline(float(s) / 2, color="C3", ls="--", lw=1, label="± s / 2")
    axes[1].axhline(-float(s) / 2, color="C3", ls="--", lw=1)
    axes[1].set(xlabel="x", ylabel="y - x", title="rounding error inside, clamping error outside")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def ptq_accuracy(model, images, labels, bits=BITS):
    """Test accuracy after post-training weight quantisation, per tensor and per channel.

    Returns {(bits, per_channel): accuracy} for every b in ``bits``.
    """
    out = {}
    for b in bits:
        for pc in (False, True):
            out[(b, pc)] = accuracy(qat.quantize_weights(model, b, pc), images, labels)
    return out


def qat_accuracy(model, train_images, train_labels, test_images, test_labels, bits, per_channel=True,
                 steps=100, batch_size=64, lr=0.01, seed=0, teacher=None, temperature=4.0, alpha=0.9):
    """Quantisation-aware training: fine-tune the b-bit fake-quantised copy of ``model`` for
    ``steps`` SGD steps (straight-through gradients), then its test accuracy.

    With ``teacher`` (a float LeNet-5) the loss is the distillation loss on the teacher's
    softened outputs (:func:`cnnlib.quant.qat.distillation_loss`, ``temperature``, ``alpha``):
    distillation quantisation (Polino et al. 2018); without it, cross-entropy on the labels.
    Same seed, same batches: the two differ only in the loss.

    Returns (accuracy, the trained quantised model).
    """
    q = qat.quantize_weights(model, bits, per_channel)
    x = model.preprocess(train_images)
    teacher_logits = None
    if teacher is not None:
        teacher.eval()
        teacher_logits = np.concatenate([teacher.forward(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    qat.train_steps(q, x, train_labels, steps, batch_size=batch_size, lr=lr, rng=seed,
                    teacher_logits=teacher_logits, temperature=temperature, alpha=alpha)
    return accuracy(q, test_images, test_labels), q


def plot_accuracy_vs_bits(ptq, float_accuracy, qat_results=None):
    """Accuracy against bit width: PTQ per tensor and per channel, optional QAT points."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    bits = sorted({b for b, _ in ptq}, reverse=True)
    for pc, style in ((False, "o--"), (True, "s-")):
        ax.plot(bits, [100 * ptq[(b, pc)] for b in bits], style,
                label=f"PTQ, per {'channel' if pc else 'tensor'}")
    if qat_results:
        qb = sorted(qat_results, reverse=True)
        ax.plot(qb, [100 * qat_results[b] for b in qb], "^-", label="QAT, per channel")
    ax.axhline(100 * float_accuracy, color="0.5", lw=1, ls=":", label="float32")
    ax.set(xlabel="weight bits", ylabel="test accuracy (%)", xticks=bits, ylim=(0, 100))
    ax.invert_xaxis()
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def plot_weight_grid(model, layer_index=3, bits=3):
    """Histogram of one layer's float weights with its b-bit per-tensor and per-channel grids."""
    layer = copy.deepcopy(model[layer_index])
    w = layer.weight.data
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), sharey=True)
    for ax, pc in zip(axes, (False, True)):
        wq = qat.fake_quantize_weight(w, bits, pc)
        ax.hist(w.ravel(), bins=120, color="0.6", label="float32")
        ax.hist(wq.ravel(), bins=120, color="C0", alpha=0.7, label=f"{bits}-bit")
        err = float(np.abs(wq - w).mean())
        ax.set(title=f"per {'channel' if pc else 'tensor'}: mean |error| {err:.4f}", xlabel="weight")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

"""Drivers of the chapter "Architecture search" (Part IV): data, the three searches at a matched
budget of weight-training steps, retraining of what they found, figures.

The data are a few thousand MNIST digits averaged down to 14x14, so that a
DARTS supernet trains on a laptop CPU in seconds.
"""

import numpy as np

from .. import functional as F
from .._random import get_rng
from .._validate import check_count
from ..data.mnist import load_mnist
from ..models.zoo import MNIST_MEAN, MNIST_STD, LeNet5
from ..search import darts, evolution

__all__ = ["search_data", "gumbel_samples", "plot_gumbel_samples", "plot_arch_weights", "run_darts",
           "run_evolution", "run_random", "retrain", "plot_search_progress", "budget_table"]


def search_data(n_train=4000, n_test=2000, size=14, seed=0):
    """MNIST images averaged down to ``size`` x ``size``, normalised like LeNet-5's input.

    Returns a dict of float32 arrays (N, 1, size, size) and int64 labels:
    ``x_w, y_w`` (the weight half of ``n_train`` training images), ``x_a, y_a``
    (the architecture / validation half), ``x_test, y_test`` (the first
    ``n_test`` test images).
    """
    n_train, n_test = check_count(n_train, "n_train", 2), check_count(n_test, "n_test")
    if 28 % check_count(size, "size") or size > 28:
        raise ValueError(f"size must divide 28, got {size}")
    f = 28 // size

    def prep(images):
        x = images.astype(np.float32).reshape(-1, 1, size, f, size, f).mean(axis=(3, 5)) / np.float32(255)
        return ((x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)).astype(np.float32)

    images, labels = load_mnist("train")
    idx = np.random.default_rng(seed).permutation(len(images))[:n_train]
    x, y = prep(images[idx]), labels[idx].astype(np.int64)
    test_images, test_labels = load_mnist("test")
    half = n_train // 2
    return dict(x_w=x[:half], y_w=y[:half], x_a=x[half:], y_a=y[half:],
                x_test=prep(test_images[:n_test]), y_test=test_labels[:n_test].astype(np.int64))


def gumbel_samples(logits, taus, n=4, rng=0):
    """``n`` Gumbel-softmax samples of ``logits`` (K,) at each temperature, the same noise for all:
    a dict ``tau -> (n, K)`` array."""
    logits = np.asarray(logits, dtype=np.float64)
    noise = F.sample_gumbel((n, len(logits)), np.float64, rng)
    return {tau: F.gumbel_softmax(np.tile(logits, (n, 1)), tau, gumbels=noise) for tau in taus}


def plot_gumbel_samples(samples, logits):
    """Bar charts, one row per temperature, one column per sample, with softmax(logits) on the left."""
    import matplotlib.pyplot as plt

    taus = list(samples)
    n = len(next(iter(samples.values())))
    fig, axes = plt.subplots(len(taus), n + 1, figsize=(1.6 * (n + 1), 1.1 * len(taus)), sharey=True,
                             squeeze=False)
    p = F.softmax(np.asarray(logits, dtype=np.float64), 0)
    for r, tau in enumerate(taus):
        axes[r, 0].bar(range(len(p)), p, color="grey")
        axes[r, 0].set_ylabel(f"tau = {tau:g}")
        for c in range(n):
            axes[r, c + 1].bar(range(len(p)), samples[tau][c], color="tab:blue")
    axes[0, 0].set_title("softmax(logits)", fontsize=9)
    for c in range(n):
        axes[0, c + 1].set_title(f"sample {c + 1}", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_ylim(0, 1)
    fig.tight_layout()
    return fig


def plot_arch_weights(record, primitives=darts.SEARCH_PRIMITIVES, edges=None, marks=()):
    """softmax(alpha) of each operation against the step, one panel per edge; ``marks`` are steps
    drawn as vertical lines (e.g. where DARTS+ stops)."""
    import matplotlib.pyplot as plt

    w = np.array(record["weights"])
    edges = range(w.shape[1]) if edges is None else edges
    fig, axes = plt.subplots(1, len(edges), figsize=(2.6 * len(edges), 2.4), sharey=True, squeeze=False)
    steps = np.arange(1, len(w) + 1)
    for ax, e in zip(axes[0], edges):
        for k, name in enumerate(primitives):
            ax.plot(steps, w[:, e, k], label=name, lw=2 if name == "skip_connect" else 1)
        for m in marks:
            ax.axvline(m, color="k", ls=":", lw=1)
        ax.set_title(f"edge {e}", fontsize=9)
        ax.set_xlabel("weight step")
    axes[0, 0].set_ylabel("softmax(alpha)")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    fig.tight_layout()
    return fig


def run_darts(data, steps=200, c=4, arch_lr=3e-2, check_every=25, seed=0, **kw):
    """A first-order DARTS search on ``data`` (see :func:`search_data`); returns (model, record)."""
    model = darts.Network(c=c, layers=1, steps=2, stem_stride=2, rng=seed)
    record = darts.search(model, data["x_w"], data["y_w"], data["x_a"], data["y_a"], steps=steps,
                          arch_lr=arch_lr, check_every=check_every, rng=seed + 1, **kw)
    record["val_accuracy"] = evolution.evaluate(model, data["x_a"], data["y_a"])
    return model, record


def _fitness(data, steps):
    def fitness(genome, rng):
        return evolution.train_and_evaluate(genome, data["x_w"], data["y_w"], data["x_a"], data["y_a"],
                                            steps, rng=rng)[0]
    return fitness


def run_evolution(data, budget, steps_per_model, population_size=4, sample_size=2, seed=0):
    """Regularised evolution over CNN genomes; ``budget // steps_per_model`` models trained
    ``steps_per_model`` steps each. Returns the history."""
    cycles = budget // steps_per_model
    return evolution.regularized_evolution(evolution.random_genome, evolution.mutate_genome,
                                           _fitness(data, steps_per_model), cycles, population_size,
                                           sample_size, rng=seed)


def run_random(data, budget, steps_per_model, seed=0):
    """Random search over CNN genomes at the same budget as :func:`run_evolution`."""
    return evolution.random_search(evolution.random_genome, _fitness(data, steps_per_model),
                                   budget // steps_per_model, rng=seed)


class _LeNetOnSmall(LeNet5):
    """LeNet-5 fed 14x14 images repeated 2x2 up to 28x28 (the same information as the others)."""

    def forward(self, x):
        f = 28 // x.shape[2]
        object.__setattr__(self, "_factor", f)
        return super().forward(np.ascontiguousarray(x.repeat(f, axis=2).repeat(f, axis=3)))

    def backward(self, grad_output):
        g = super().backward(grad_output)
        n, c, h, w = g.shape
        f = self._factor
        return g.reshape(n, c, h // f, f, w // f, f).sum(axis=(3, 5))


def retrain(arch, data, steps=300, c=4, seed=0):
    """Train a found architecture from scratch on both halves of the training data for ``steps``
    steps; ``arch`` is a DARTS Genotype, a CNN genome (tuple) or ``"lenet5"``. Returns
    (test accuracy, number of parameters)."""
    rng = get_rng(seed)
    if isinstance(arch, darts.Genotype):
        model = darts.GenotypeNetwork(arch, c=c, layers=1, stem_stride=2, rng=rng)
    elif isinstance(arch, str) and arch == "lenet5":
        model = _LeNetOnSmall(rng=rng)
    else:
        model = evolution.build_cnn(arch, 1, data["x_w"].shape[2], rng=rng)
    x = np.concatenate([data["x_w"], data["x_a"]])
    y = np.concatenate([data["y_w"], data["y_a"]])
    evolution.train_steps(model, x, y, steps, lr=0.05, rng=rng)
    return evolution.evaluate(model, data["x_test"], data["y_test"]), model.num_parameters()


def plot_search_progress(histories, steps_per_model):
    """Best fitness so far against the weight-training steps spent, one line per search
    (``histories``: a dict name -> history of (individual, fitness))."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    for k, (name, history) in enumerate(histories.items()):
        f = [fit for _, fit in history]
        steps = steps_per_model * np.arange(1, len(f) + 1)
        color = f"C{k}"
        ax.plot(steps, np.maximum.accumulate(f), color=color, ls=("-", "--", ":")[k % 3], marker="o", ms=3,
                label=f"{name}: best so far")
        ax.plot(steps, f, color=color, ls="none", marker=".", alpha=0.5, label=f"{name}: each candidate")
    ax.set_xlabel("weight-training steps spent")
    ax.set_ylabel("validation accuracy")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def budget_table(rows):
    """The budget table as text: rows of (method, weight steps, architecture passes, best validation
    accuracy or None, retrained test accuracy, parameters)."""
    head = (f"{'method':<22} {'weight steps':>12} {'arch passes':>11} {'best val acc':>12} "
            f"{'test acc':>9} {'params':>7}")
    lines = [head, "-" * len(head)]
    for method, ws, ap, val, test, params in rows:
        val = "-" if val is None else f"{val:.3f}"
        lines.append(f"{method:<22} {ws:>12d} {ap:>11d} {val:>12} {test:>9.3f} {params:>7d}")
    return "\n".join(lines)

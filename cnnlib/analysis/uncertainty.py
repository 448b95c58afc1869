"""Monte Carlo dropout: predictive uncertainty from a network trained with dropout.

Gal and Ghahramani (2016) read a network trained with dropout as a
variational approximation of a Bayesian neural network: each dropout mask
is a sample of weights from the approximate posterior q(W).  Keeping dropout
on at test time and averaging T stochastic forward passes,

    p(y | x) ~ (1/T) sum_t softmax(f(x; W_t)),   W_t ~ q(W),

approximates the Bayesian model average, and the spread of the T
predictions measures the model's uncertainty.  With p_t the T predicted
distributions and p their mean (all entropies in nats):

    predictive entropy   H[p]                       total uncertainty
    expected entropy     (1/T) sum_t H[p_t]         aleatoric part (noise in the data)
    mutual information   H[p] - (1/T) sum_t H[p_t]  epistemic part (BALD; Houlsby et al. 2011)

The mutual information is large only when the samples disagree with each
other, that is when the weights, not the data, are uncertain.
See the regularisation chapter (Part III).
"""

from typing import NamedTuple, Optional

import numpy as np

from .. import functional as F
from .._random import get_rng
from .._validate import _is_int
from ..nn.dropout import Dropout
from ..nn.module import Module, Sequential

__all__ = ["MCPrediction", "predictive_entropy", "expected_entropy", "mutual_information",
           "mc_predict", "uncertainty_sweep", "plot_uncertainty_sweep"]


def _check_probs(probs, name, ndim):
    if not isinstance(probs, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(probs).__name__}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {probs.dtype}")
    if probs.ndim < ndim:
        raise ValueError(f"{name} must have at least {ndim} dimensions, got shape {probs.shape}")
    if probs.shape[-1] < 1:
        raise ValueError(f"{name} must have at least one class (last axis), got shape {probs.shape}")
    if not (np.all(probs >= 0) and np.allclose(probs.sum(axis=-1), 1.0, atol=1e-4)):
        raise ValueError(f"{name} must hold probability vectors along the last axis "
                         "(entries >= 0 summing to 1)")
    return probs.astype(np.float64, copy=False)


def _entropy(p):
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=-1)


def predictive_entropy(probs):
    """Entropy -sum_k p_k log p_k (nats) of probability vectors along the last axis.

    probs: (..., K), entries >= 0 summing to 1 (0 log 0 = 0).  Returns (...)
    in float64, between 0 (one class certain) and log K (uniform).
    """
    return _entropy(_check_probs(probs, "probs", 1))


def expected_entropy(sample_probs):
    """Mean entropy of T sampled predictions: (1/T) sum_t H[p_t].

    sample_probs: (T, ..., K), one predicted distribution per sample.
    Returns (...) in float64: the aleatoric part of the uncertainty.
    """
    return _entropy(_check_probs(sample_probs, "sample_probs", 2)).mean(axis=0)


def mutual_information(sample_probs):
    """BALD mutual information H[mean_t p_t] - mean_t H[p_t] (nats).

    sample_probs: (T, ..., K).  Returns (...) in float64, >= 0 (entropy is
    concave; rounding below zero is clipped), zero when all T samples agree.
    """
    p = _check_probs(sample_probs, "sample_probs", 2)
    value = _entropy(p.mean(axis=0)) - _entropy(p).mean(axis=0)
    return np.maximum(value, 0.0)


class MCPrediction(NamedTuple):
    """What :func:`mc_predict` returns (N inputs, K classes, T samples)."""

    probs: np.ndarray               # (N, K) mean of the T softmax outputs
    entropy: np.ndarray             # (N,) predictive entropy H[probs]
    expected_entropy: np.ndarray    # (N,) mean entropy of the samples (aleatoric)
    mutual_information: np.ndarray  # (N,) entropy - expected_entropy (epistemic, BALD)
    samples: Optional[np.ndarray]   # (T, N, K) the sampled softmax outputs, or None


def _dropout_layers(model):
    return [m for _, m in model.named_modules() if isinstance(m, Dropout)]


def _has_generator(module):
    return any(isinstance(v, np.random.Generator)
               for _, m in module.named_modules() for v in vars(m).values())


def _split(model):
    """(prefix, rest): the deterministic layers before the first dropout, run once."""
    if not isinstance(model, Sequential):
        return None, model
    layers = list(model)
    first = next(i for i, m in enumerate(layers)
                 if any(isinstance(s, Dropout) for _, s in m.named_modules()))
    prefix = Sequential(*layers[:first])
    if first == 0 or _has_generator(prefix):
        return None, model
    return prefix, Sequential(*layers[first:])


def mc_predict(model, x, n_samples=20, rng=None, batch_size=1000, return_samples=False,
               split=True):
    """Monte Carlo dropout prediction (Gal and Ghahramani 2016).

    Runs ``n_samples`` forward passes with every :class:`~cnnlib.nn.Dropout`
    layer in training mode and every other layer in evaluation mode (batch
    normalisation uses its running statistics), and summarises the softmax
    outputs.  The modes of all modules are restored afterwards.

    Inputs:
    - model: a :class:`~cnnlib.nn.Module` returning logits (N, K), with at
      least one dropout layer
    - x: the model's input (N, ...), already preprocessed
    - n_samples: T >= 1 stochastic passes
    - rng: None (each dropout layer draws from its own ``rng``) or a seed /
      Generator that all dropout layers draw from during this call (their own
      generators are untouched)
    - batch_size: inputs per forward pass
    - return_samples: also return the (T, N, K) sampled probabilities
    - split: for a Sequential model, run the layers before the first dropout
      once per batch rather than T times (they are deterministic in evaluation
      mode; the result is identical, only faster).  Skipped automatically if
      one of those layers holds a random generator.

    Returns an :class:`MCPrediction` (float64 arrays).  See the
    regularisation chapter (Part III).
    """
    if not isinstance(model, Module):
        raise TypeError(f"model must be a cnnlib Module, got {type(model).__name__}")
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy.ndarray, got {type(x).__name__}")
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x must hold at least one input (N, ...), got shape {x.shape}")
    for value, name in ((n_samples, "n_samples"), (batch_size, "batch_size")):
        if not _is_int(value) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    dropouts = _dropout_layers(model)
    if not dropouts:
        raise ValueError("model has no Dropout layer: the T passes would all be identical")
    modes = [(m, m.training) for _, m in model.named_modules()]
    generators = [(d, d.rng) for d in dropouts]
    shared = None if rng is None else get_rng(rng)
    prefix, rest = _split(model) if split else (None, model)
    chunks = []
    try:
        model.eval()
        for d in dropouts:
            object.__setattr__(d, "training", True)
            if shared is not None:
                d.rng = shared
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            if prefix is not None:
                xb = prefix(xb)
            chunks.append(np.stack([F.softmax(rest(xb), dim=1) for _ in range(n_samples)]))
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
        for d, gen in generators:
            d.rng = gen
    samples = np.concatenate(chunks, axis=1).astype(np.float64)
    probs = samples.mean(axis=0)
    entropy = _entropy(probs)
    aleatoric = _entropy(samples).mean(axis=0)
    return MCPrediction(probs, entropy, aleatoric, np.maximum(entropy - aleatoric, 0.0),
                        samples if return_samples else None)


def _eval_logits(model, x, batch_size):
    """Logits with every module in evaluation mode; the modes are restored afterwards."""
    modes = [(m, m.training) for _, m in model.named_modules()]
    try:
        model.eval()
        return np.concatenate([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)


def uncertainty_sweep(model, images, labels, levels, corrupt, n_samples=20, rng=None,
                      preprocess=None, batch_size=1000):
    """MC-dropout accuracy and uncertainty as a corruption grows.

    For each ``level`` the images are corrupted with ``corrupt(images,
    level)`` (e.g. ``lambda im, a: transforms.rotate(im, a)``), preprocessed
    (``preprocess``, default ``model.preprocess`` if the model has one) and
    passed to :func:`mc_predict` with ``n_samples`` samples; the same images
    also go through the model in evaluation mode (the usual "weight-scaling"
    prediction, dropout off).

    Returns a dict of float64 arrays, one entry per level: ``levels``,
    ``accuracy`` (of the MC mean), ``accuracy_eval`` (dropout off),
    ``entropy``, ``expected_entropy`` and ``mutual_information`` (means over
    the images, nats).  ``rng`` seeds the dropout masks as in
    :func:`mc_predict` (one generator for the whole sweep).  See the
    regularisation chapter (Part III).
    """
    if not callable(corrupt):
        raise TypeError(f"corrupt must be a callable (images, level) -> images, got {corrupt!r}")
    labels = np.asarray(labels)
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
    levels = list(levels)
    if not levels:
        raise ValueError("levels is empty")
    if preprocess is None:
        preprocess = getattr(model, "preprocess", lambda im: im)
    gen = get_rng(rng)
    keys = ("accuracy", "accuracy_eval", "entropy", "expected_entropy", "mutual_information")
    out = {k: [] for k in keys}
    for level in levels:
        x = preprocess(corrupt(images, level))
        pred = mc_predict(model, x, n_samples, rng=gen, batch_size=batch_size)
        logits = _eval_logits(model, x, batch_size)
        out["accuracy"].append(np.mean(pred.probs.argmax(axis=1) == labels))
        out["accuracy_eval"].append(np.mean(logits.argmax(axis=1) == labels))
        out["entropy"].append(pred.entropy.mean())
        out["expected_entropy"].append(pred.expected_entropy.mean())
        out["mutual_information"].append(pred.mutual_information.mean())
    result = {"levels": np.asarray(levels, dtype=np.float64)}
    result.update({k: np.asarray(v, dtype=np.float64) for k, v in out.items()})
    return result


def plot_uncertainty_sweep(sweeps, xlabels=None, titles=None):
    """Plot one or more :func:`uncertainty_sweep` results side by side.

    Each panel shows the mean predictive entropy, its split into expected
    entropy (aleatoric) and mutual information (epistemic) against the
    corruption level, and the accuracy (MC mean and dropout off) on a second
    axis.  ``sweeps`` is one result dict or a list of them; ``xlabels`` and
    ``titles`` are strings or lists of strings.  Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if isinstance(sweeps, dict):
        sweeps = [sweeps]
    n = len(sweeps)
    xlabels = [xlabels] * n if xlabels is None or isinstance(xlabels, str) else list(xlabels)
    titles = [titles] * n if titles is None or isinstance(titles, str) else list(titles)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 3.6), squeeze=False)
    for ax, sweep, xlabel, title in zip(axes[0], sweeps, xlabels, titles):
        lv = sweep["levels"]
        ax.plot(lv, sweep["entropy"], "o-", color="C0", label="predictive entropy")
        ax.plot(lv, sweep["expected_entropy"], "s--", color="C2", label="expected entropy")
        ax.plot(lv, sweep["mutual_information"], "^-", color="C3", label="mutual information")
        ax.set_xlabel(xlabel or "corruption level")
        ax.set_ylabel("nats (mean over images)")
        ax.set_ylim(bottom=0)
        acc = ax.twinx()
        acc.plot(lv, sweep["accuracy"], "k:", label="accuracy (MC mean)")
        acc.plot(lv, sweep["accuracy_eval"], color="0.6", ls="-.", label="accuracy (dropout off)")
        acc.set_ylim(0, 1.02)
        acc.set_ylabel("accuracy")
        if title:
            ax.set_title(title)
        lines = ax.get_lines() + acc.get_lines()
        ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="center left")
    fig.tight_layout()
    return fig

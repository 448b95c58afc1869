"""Weight decay as an L2 penalty, coupled and decoupled, and small regularisation experiments.

Adding ``(lambda / 2) * ||w||^2`` to the loss adds ``lambda * w`` to every
gradient.  For SGD that *is* weight decay, ``w <- (1 - lr * lambda) w - lr * g``;
for Adam the extra gradient is divided by Adam's ``sqrt(v)`` like the rest,
so it is not (Loshchilov & Hutter 2019, :class:`cnnlib.optim.optimizers.AdamW`).  Read
as Bayes, the penalty is the negative log of a Gaussian prior
``w ~ N(0, sigma_p^2 I)``, and minimising the penalised loss gives the
maximum a posteriori (MAP) weights.

This module holds :func:`l2_penalty`, the toy problems the chapter uses to
show these facts (:func:`shrinkage_path`, :func:`ridge_map`,
:func:`fit_least_squares`), a LeNet-5 with dropout (:func:`lenet5_dropout`)
and a seeded training run (:func:`train_regularised`).  See the
regularisation chapter (Part III).
"""

import math
import numbers
import time

import numpy as np

from .. import nn, optim
from .._random import get_rng
from .._validate import _is_int
from ..data.mnist import load_mnist
from ..models.zoo import LeNet5
from ..nn.dropout import Dropout
from ..nn.module import Module, Parameter
from ..ops.dropout import check_dropout_p
from ..training.loop import accuracy, batches

__all__ = ["l2_penalty", "weight_norm", "shrinkage_path", "ridge_map",
           "prior_variance_to_weight_decay", "fit_least_squares", "DropoutLeNet5",
           "lenet5_dropout", "train_steps", "train_regularised", "plot_shrinkage_paths",
           "plot_weight_histograms"]


def _check_nonnegative(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


def _positive_int(value, name):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _params(model_or_params, name="model"):
    if isinstance(model_or_params, Module):
        return list(model_or_params.parameters())
    if isinstance(model_or_params, Parameter):
        return [model_or_params]
    try:
        params = list(model_or_params)
    except TypeError:
        raise TypeError(f"{name} must be a Module or an iterable of Parameters, "
                        f"got {type(model_or_params).__name__}") from None
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{name}[{i}] must be a Parameter, got {type(p).__name__}")
    return params


def l2_penalty(model, weight_decay):
    """The L2 penalty ``(weight_decay / 2) * sum ||w||^2``, with its gradient.

    ``model`` is a :class:`~cnnlib.nn.Module` (all its parameters, biases
    included, as ``torch.optim``'s ``weight_decay`` does) or an iterable of
    Parameters.  Adds ``weight_decay * w`` into each ``w.grad`` (call it after
    the loss's backward, before the optimiser's step) and returns the
    penalty's value as a float, to add to the loss you report.  With this
    scaling, ``SGD(weight_decay=wd)`` and ``SGD`` plus ``l2_penalty(model, wd)``
    take identical steps.  See the regularisation chapter (Part III).
    """
    weight_decay = _check_nonnegative(weight_decay, "weight_decay")
    total = 0.0
    for p in _params(model):
        if weight_decay != 0:
            p.grad += weight_decay * p.data
        total += float(np.sum(p.data.astype(np.float64) ** 2))
    return 0.5 * weight_decay * total


def weight_norm(model):
    """Euclidean norm sqrt(sum ||w||^2) over all parameters of a model (float)."""
    return math.sqrt(sum(float(np.sum(p.data.astype(np.float64) ** 2)) for p in _params(model)))


# ----------------------------------------------------------------------------
# Toy problems
# ----------------------------------------------------------------------------

def shrinkage_path(make_optimizer, w0, steps, l2=0.0, grad_scale=None):
    """Follow weights under an optimiser when the loss gives no net push.

    The loss gradient at step ``t`` (t = 0, 1, ...) is ``grad_scale * (-1)^t``:
    zero on average, like the minibatch noise of a weight at a minimum, with a
    size that differs per weight (``None``: no loss gradient at all).  If
    ``l2 > 0`` the L2 penalty's gradient ``l2 * w`` is added too
    (:func:`l2_penalty`).  Whatever decay the optimiser applies itself
    (``SGD(weight_decay=...)``, ``AdamW``) acts as well.

    Inputs:
    - make_optimizer: callable, list of Parameters -> optimiser
    - w0: 1-d array of starting weights (float64)
    - steps: number of steps
    - l2: weight of the L2 penalty in the loss
    - grad_scale: None or an array of the shape of w0

    Returns the path, shape (steps + 1, len(w0)), starting with w0.
    See the regularisation chapter (Part III).
    """
    w0 = np.asarray(w0, dtype=np.float64)
    if w0.ndim != 1:
        raise ValueError(f"w0 must be 1-d, got shape {w0.shape}")
    steps = _positive_int(steps, "steps")
    l2 = _check_nonnegative(l2, "l2")
    if grad_scale is not None:
        grad_scale = np.broadcast_to(np.asarray(grad_scale, dtype=np.float64), w0.shape)
    p = Parameter(w0)
    opt = make_optimizer([p])
    path = [p.data.copy()]
    for t in range(steps):
        opt.zero_grad()
        if grad_scale is not None:
            p.grad += grad_scale * (1.0 if t % 2 == 0 else -1.0)
        if l2:
            l2_penalty([p], l2)
        opt.step()
        path.append(p.data.copy())
    return np.array(path)


def _check_regression(X, y):
    for a, name in ((X, "X"), (y, "y")):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a numpy.ndarray, got {type(a).__name__}")
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y) or len(y) == 0:
        raise ValueError(f"X must be (N, D) and y (N,) with N >= 1, got {X.shape} and {y.shape}")
    return X.astype(np.float64), y.astype(np.float64)


def ridge_map(X, y, weight_decay):
    """Closed-form minimiser of ``||X w - y||^2 / (2N) + (weight_decay / 2) ||w||^2``.

    w* = (X^T X / N + weight_decay * I)^{-1} X^T y / N.  With Gaussian noise
    of variance sigma_n^2 and the prior w ~ N(0, sigma_p^2 I) this is the
    posterior mean (= MAP) when weight_decay = sigma_n^2 / (N sigma_p^2)
    (:func:`prior_variance_to_weight_decay`).  X: (N, D), y: (N,); returns (D,).
    """
    X, y = _check_regression(X, y)
    weight_decay = _check_nonnegative(weight_decay, "weight_decay")
    n, d = X.shape
    return np.linalg.solve(X.T @ X / n + weight_decay * np.eye(d), X.T @ y / n)


def prior_variance_to_weight_decay(noise_std, prior_std, n):
    """The weight decay of a mean loss that matches a Gaussian prior.

    For ``y = X w + noise``, noise ~ N(0, noise_std^2), prior
    w ~ N(0, prior_std^2 I) and ``n`` examples, the negative log posterior
    divided by ``n * noise_std^2`` is the mean squared loss / 2 plus
    ``(lambda / 2) ||w||^2`` with ``lambda = noise_std^2 / (n * prior_std^2)``.
    A broad prior is a small weight decay; more data means less decay.
    """
    noise_std = _check_nonnegative(noise_std, "noise_std")
    prior_std = _check_nonnegative(prior_std, "prior_std")
    if prior_std == 0:
        raise ValueError("prior_std must be > 0")
    return noise_std**2 / (_positive_int(n, "n") * prior_std**2)


def fit_least_squares(X, y, make_optimizer, steps, l2=0.0):
    """Full-batch training of ``||X w - y||^2 / (2N)`` from w = 0.

    ``make_optimizer`` builds the optimiser from the list of the one
    Parameter; ``l2`` adds :func:`l2_penalty` to the loss.  Returns (w (D,),
    losses (steps,)), the losses without the penalty.  See the
    regularisation chapter (Part III).
    """
    X, y = _check_regression(X, y)
    steps = _positive_int(steps, "steps")
    l2 = _check_nonnegative(l2, "l2")
    w = Parameter(np.zeros(X.shape[1]))
    opt = make_optimizer([w])
    losses = []
    for _ in range(steps):
        r = X @ w.data - y
        losses.append(0.5 * float(r @ r) / len(y))
        opt.zero_grad()
        w.grad += X.T @ r / len(y)
        if l2:
            l2_penalty([w], l2)
        opt.step()
    return w.data.copy(), np.array(losses)


# ----------------------------------------------------------------------------
# LeNet-5 with dropout and a seeded training run
# ----------------------------------------------------------------------------

class DropoutLeNet5(LeNet5):
    """LeNet-5 (as :class:`cnnlib.models.zoo.LeNet5`) with dropout before each dense layer.

    conv-relu-pool, conv-relu-pool, flatten, then a :class:`~cnnlib.nn.dropout.Dropout`
    in front of each of the three ``Linear`` layers (400-120-84-10), the
    placement of Srivastava et al. (2014) for fully connected layers.  ``p``
    is one drop probability for all three or a triple, one per layer.  The
    weights are those of ``LeNet5(rng=rng)`` for the same generator state.  ``preprocess``,
    ``logits`` and ``predict`` are LeNet5's (``predict`` uses the current mode:
    call ``eval()`` first for the usual deterministic prediction).
    """

    def __init__(self, p=0.5, *, dtype=np.float32, rng=None):
        gen = get_rng(rng)
        kw = dict(dtype=dtype, rng=gen)
        ps = _dropout_triple(p)
        d1, d2, d3 = gen.spawn(3)  # each dropout layer gets its own stream
        nn.Sequential.__init__(
            self,
            nn.Conv2d(1, 6, 5, padding=2, **kw), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5, **kw), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            Dropout(ps[0], rng=d1), nn.Linear(16 * 5 * 5, 120, **kw), nn.ReLU(),
            Dropout(ps[1], rng=d2), nn.Linear(120, 84, **kw), nn.ReLU(),
            Dropout(ps[2], rng=d3), nn.Linear(84, 10, **kw),
        )
        self.p = ps


def _dropout_triple(p):
    if isinstance(p, (tuple, list)):
        if len(p) != 3:
            raise ValueError(f"p must be a number or a triple (one per dense layer), got {p!r}")
        return tuple(check_dropout_p(v) for v in p)
    return (check_dropout_p(p),) * 3


def lenet5_dropout(p=0.5, *, dtype=np.float32, rng=None):
    """A :class:`DropoutLeNet5` (randomly initialised; ``rng`` seeds weights and masks).

    ``p``: one drop probability for the three dense layers, or a triple.
    """
    return DropoutLeNet5(p, dtype=dtype, rng=rng)


def train_steps(model, optimizer, x, y, epochs=1, batch_size=64, l2=0.0, rng=None, lr_at=None):
    """Minibatch training with cross-entropy plus an optional L2 penalty in the loss.

    Like :func:`cnnlib.training.loop.train_epoch`, with ``l2_penalty(model, l2)``
    added after each backward (``l2=0``: none).  ``x``: preprocessed inputs,
    ``y``: int labels; ``rng`` shuffles the batches; ``lr_at(step)``
    (optional) sets the learning rate before each step, ``step`` counted from
    0 over all epochs.  Returns the mean training loss (cross-entropy +
    penalty) of each epoch, a list of floats.
    """
    epochs = _positive_int(epochs, "epochs")
    batch_size = _positive_int(batch_size, "batch_size")
    l2 = _check_nonnegative(l2, "l2")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length, got {len(x)} and {len(y)}")
    gen = get_rng(rng)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    history = []
    step = 0
    for _ in range(epochs):
        total = 0.0
        for idx in batches(len(x), batch_size, gen):
            if lr_at is not None:
                optimizer.lr = lr_at(step)
            step += 1
            optimizer.zero_grad()
            loss = float(loss_fn(model(x[idx]), y[idx]))
            model.backward(loss_fn.backward())
            if l2:
                loss += l2_penalty(model, l2)
            optimizer.step()
            total += loss * len(idx)
        history.append(total / len(x))
    return history


def train_regularised(dropout=0.0, weight_decay=0.0, optimizer="sgd", n_train=2000, epochs=10,
                      lr=None, batch_size=64, seed=0, data_dir=None, n_test=None):
    """Train a LeNet-5 on a small MNIST subset with dropout and/or weight decay.

    The model is :func:`lenet5_dropout` with ``p=dropout`` (a number or a
    triple; 0: a plain LeNet-5, no dropout layers at all), trained on the first ``n_train`` training digits for
    ``epochs`` epochs, the learning rate following a cosine from ``lr`` to 0
    over all steps (as :func:`cnnlib.training.loop.fit_lenet5`).  ``optimizer`` is ``"sgd"`` (momentum 0.9, lr 0.05,
    ``weight_decay`` as SGD's), ``"adam"`` (lr 1e-3, ``weight_decay`` as an L2
    penalty, i.e. ``Adam(weight_decay=...)``) or ``"adamw"`` (lr 1e-3,
    decoupled).  Everything random comes from ``seed``.

    Returns (model, record) where record holds ``train_loss`` (per epoch),
    ``train_accuracy``, ``test_accuracy`` (first ``n_test`` test digits, all
    by default), ``weight_norm`` and ``seconds``.  See the regularisation
    chapter (Part III).
    """
    if optimizer not in ("sgd", "adam", "adamw"):
        raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {optimizer!r}")
    weight_decay = _check_nonnegative(weight_decay, "weight_decay")
    n_train = _positive_int(n_train, "n_train")
    rng = np.random.default_rng(seed)
    train_images, train_labels = load_mnist("train", data_dir)
    test_images, test_labels = load_mnist("test", data_dir)
    if n_test is not None:
        test_images, test_labels = test_images[:n_test], test_labels[:n_test]
    images, labels = train_images[:n_train], train_labels[:n_train]
    ps = _dropout_triple(dropout)
    model = lenet5_dropout(ps, rng=rng) if any(ps) else LeNet5(rng=rng)
    x, y = model.preprocess(images), labels.astype(np.int64)
    if optimizer == "sgd":
        opt = optim.SGD(model.parameters(), lr=0.05 if lr is None else lr, momentum=0.9,
                        weight_decay=weight_decay)
    else:
        cls = optim.Adam if optimizer == "adam" else optim.AdamW
        opt = cls(model.parameters(), lr=1e-3 if lr is None else lr, weight_decay=weight_decay)
    peak, total = opt.lr, epochs * math.ceil(len(x) / batch_size)

    def lr_at(step):
        return peak * 0.5 * (1 + math.cos(math.pi * step / total))
    start = time.perf_counter()
    losses = train_steps(model, opt, x, y, epochs, batch_size, rng=rng, lr_at=lr_at)
    record = {
        "train_loss": losses,
        "train_accuracy": accuracy(model, images, labels),
        "test_accuracy": accuracy(model, test_images, test_labels),
        "weight_norm": weight_norm(model),
        "seconds": time.perf_counter() - start,
    }
    return model, record


# ----------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------

def plot_shrinkage_paths(paths, labels, steps_axis=None, title=None):
    """Plot :func:`shrinkage_path` results: one line per weight, one style per optimiser.

    ``paths`` is a dict {optimiser name: (steps + 1, D) path}; ``labels`` names
    the D weights (e.g. their gradient scale).  Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if not isinstance(paths, dict) or not paths:
        raise ValueError("paths must be a non-empty dict {name: path}")
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    styles = ["-", "--", ":", "-."]
    for k, (name, path) in enumerate(paths.items()):
        path = np.asarray(path)
        if path.ndim != 2 or path.shape[1] != len(labels):
            raise ValueError(f"paths[{name!r}] must have shape (steps + 1, {len(labels)}), "
                             f"got {path.shape}")
        t = np.arange(len(path)) if steps_axis is None else steps_axis
        for j, label in enumerate(labels):
            ax.plot(t, path[:, j], styles[k % 4], color=f"C{j}", label=f"{name}, {label}")
    ax.set_xlabel("step")
    ax.set_ylabel("weight")
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_weight_histograms(models, labels, layer=-1, bins=60):
    """Histograms of the weights of one parameter of several models, overlaid.

    ``models``: a list of Modules with the same architecture; ``layer``
    indexes their list of parameters (default: the last).  Returns the Figure.
    """
    import matplotlib.pyplot as plt

    if len(models) != len(labels) or not models:
        raise ValueError("models and labels must be non-empty lists of the same length")
    arrays = [list(m.parameters())[layer].data.ravel() for m in models]
    top = max(np.abs(a).max() for a in arrays)
    edges = np.linspace(-top, top, bins + 1)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    for a, label in zip(arrays, labels):
        ax.hist(a, bins=edges, histtype="step", lw=1.5,
                label=f"{label} (norm {np.linalg.norm(a):.2f})")
    ax.set_xlabel("weight value")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig

"""Experiments of the chapter "Optimisation landscape" (Part VI, 6.2).

* the toy saddle ``L(a, b) = (1 - a b)^2`` (:func:`toy_loss_grad`);
* saddle points of a tiny tanh network on 4x4 MNIST: critical points from
  many starts (:func:`critical_point_survey`), their index against their
  loss, gradient descent started next to a saddle;
* mode connectivity: two small CNNs with batch normalisation trained from
  different seeds on 14x14 MNIST (:func:`train_cnn`), a Bezier curve and a
  polygonal chain trained between them (:func:`train_curve`), and the loss
  and accuracy along the line and the curves, with the batch-norm statistics
  recomputed at each point or not (:func:`evaluate_path`).
"""

import matplotlib.pyplot as plt
import numpy as np
from tqdm.auto import tqdm

from .. import nn, optim
from .._random import get_rng
from .._validate import check_count, check_number
from ..analysis.sharpness import flat_parameters, model_loss_grad, set_flat_parameters
from ..data.mnist import load_mnist
from ..theory import curves, landscape

__all__ = ["toy_loss_grad", "plot_toy_saddle", "tiny_problem", "gd_snapshots", "critical_point_survey",
           "rank_correlation", "plot_index_vs_loss", "plot_escape", "mnist_14", "small_cnn", "train_cnn",
           "train_curve", "bn_statistics", "recompute_bn", "evaluate_path", "plot_paths"]


# --- the toy saddle -------------------------------------------------------------------

def toy_loss_grad(theta):
    """``L(a, b) = (1 - a b)^2`` and its gradient ``-2 (1 - a b) (b, a)``; Hessian at 0: [[0, -2], [-2, 0]]."""
    a, b = np.asarray(theta, dtype=np.float64)
    r = 1 - a * b
    return float(r * r), np.array([-2 * r * b, -2 * r * a])


def plot_toy_saddle(ax=None):
    """The surface ``(1 - ab)^2`` as contours: the saddle at 0, the valley ``ab = 1``."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 4.4))
    a = np.linspace(-2, 2, 201)
    aa, bb = np.meshgrid(a, a)
    levels = [0.01, 0.1, 0.3, 0.6, 1.0, 1.5, 2.5, 4, 6, 9]
    cs = ax.contour(aa, bb, (1 - aa * bb) ** 2, levels=levels, cmap="viridis")
    ax.clabel(cs, fontsize=7)
    ax.plot([0], [0], "rx", ms=9, mew=2, label="saddle (0, 0): eigenvalues +2, -2")
    for s, name in ((1, "descent direction (1, 1)"), (-1, "ascent direction (1, -1)")):
        ax.annotate("", xy=(0.8, 0.8 * s), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color="C3" if s > 0 else "C0"))
        ax.plot([], [], color="C3" if s > 0 else "C0", label=name)
    ax.set_xlabel("a")
    ax.set_ylabel("b")
    ax.set_title("$L(a, b) = (1 - ab)^2$")
    ax.legend(loc="lower left", fontsize=7)
    ax.set_aspect("equal")
    return ax


# --- saddle points of a tiny network ---------------------------------------------------

def tiny_problem(n=100, hidden=3, classes=3, weight_decay=1e-2, seed=0):
    """A tiny float64 tanh network and data: 4x4 MNIST digits 0..classes-1.

    The first ``n`` training digits of those classes, averaged over 7x7
    blocks to 16 inputs and standardised; the network is
    ``Linear(16, hidden) -> Tanh -> Linear(hidden, classes)`` (smooth, so
    its Hessian exists everywhere).  The loss is the mean cross-entropy plus
    ``weight_decay / 2 * |theta|^2`` (without it the digits are separable and
    the minima lie at infinity).  Returns ``(model, loss_grad)`` with
    ``loss_grad(theta) -> (loss, grad)`` built on
    :func:`~cnnlib.analysis.sharpness.model_loss_grad`.
    """
    n, hidden, classes = (check_count(n, "n"), check_count(hidden, "hidden"),
                          check_count(classes, "classes", minimum=2))
    weight_decay = check_number(weight_decay, "weight_decay")
    images, labels = load_mnist("train")
    keep = np.flatnonzero(labels < classes)[:n]
    x = images[keep].reshape(len(keep), 4, 7, 4, 7).mean(axis=(2, 4)).reshape(len(keep), 16) / 255.0
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    y = labels[keep].astype(np.int64)
    model = nn.Sequential(nn.Linear(16, hidden, dtype=np.float64, rng=seed), nn.Tanh(),
                          nn.Linear(hidden, classes, dtype=np.float64, rng=seed + 1))
    data_loss_grad = model_loss_grad(model, x, y)

    def loss_grad(theta):
        loss, grad = data_loss_grad(theta)
        return loss + 0.5 * weight_decay * float(theta @ theta), grad + weight_decay * theta

    return model, loss_grad


def gd_snapshots(loss_grad, inits, checkpoints=(0, 5, 15, 40, 100, 300, 1000), lr=0.5):
    """Starting points at every loss level: gradient descent from each of ``inits``,
    the parameters after each number of steps in ``checkpoints``."""
    starts = []
    for theta in inits:
        done = 0
        for k in sorted(checkpoints):
            if k > done:
                theta, _, _ = landscape.gradient_descent(loss_grad, theta, lr, k - done)
                done = k
            starts.append(np.array(theta, dtype=np.float64))
    return starts


def critical_point_survey(loss_grad, starts, steps=30, gtol=1e-6, tol=1e-6, progress=True):
    """Critical points from the given starts, each with its loss and index.

    From each start :func:`~cnnlib.theory.landscape.find_critical_point`
    runs up to ``steps`` Levenberg-Marquardt steps on ``|g|^2 / 2``.  A
    result is kept if its gradient norm is below ``gtol``; its index counts
    Hessian eigenvalues below ``-tol``.  Returns a dict of arrays ``loss``,
    ``grad_norm``, ``index``, ``min_eig``, ``kept`` (bool) and the list
    ``theta`` of the points.
    """
    gtol, tol = check_number(gtol, "gtol", positive=True), check_number(tol, "tol")
    out = {"loss": [], "grad_norm": [], "index": [], "min_eig": []}
    points = []
    for start in tqdm(starts, desc="critical points", disable=not progress):
        theta, norms = landscape.find_critical_point(loss_grad, start, steps=steps, gtol=1e-12)
        ev = landscape.spectrum(landscape.hessian(loss_grad, theta))
        out["loss"].append(loss_grad(theta)[0])
        out["grad_norm"].append(norms[-1])
        out["index"].append(landscape.index(ev, tol))
        out["min_eig"].append(ev[0])
        points.append(theta)
    res = {k: np.array(v) for k, v in out.items()}
    res["theta"] = points
    res["kept"] = res["grad_norm"] < gtol
    return res


def rank_correlation(a, b):
    """Spearman's rank correlation of ``a`` and ``b`` (1-d, same length >= 2), ties given average ranks."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.size < 2:
        raise ValueError(f"a and b must be 1-d of one length >= 2, got shapes {a.shape} and {b.shape}")

    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(v.size)
        r[order] = np.arange(v.size, dtype=np.float64)
        for value in np.unique(v):
            tie = v == value
            r[tie] = r[tie].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if np.all(ra == ra[0]) or np.all(rb == rb[0]):
        raise ValueError("rank correlation is undefined when a or b is constant")
    return float(np.corrcoef(ra, rb)[0, 1])


def plot_index_vs_loss(survey, ax=None):
    """Dauphin et al.'s scatter: index against training loss of the kept critical points."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.2, 3.6))
    k = survey["kept"]
    ax.scatter(survey["loss"][k], survey["index"][k], s=22, c="C0", label="critical points")
    fit = np.polyfit(survey["loss"][k], survey["index"][k], 1) if k.sum() > 1 else None
    if fit is not None:
        xs = np.linspace(survey["loss"][k].min(), survey["loss"][k].max(), 2)
        ax.plot(xs, np.polyval(fit, xs), "C3--", lw=1, label="least-squares line")
    ax.set_xlabel("training loss (cross-entropy)")
    ax.set_ylabel("index (fraction of negative eigenvalues)")
    ax.legend(fontsize=8)
    ax.set_title("Critical points of a tiny tanh network")
    return ax


def plot_escape(losses, grad_norms, saddle_loss, axes=None):
    """Loss and gradient norm of gradient descent started next to a saddle."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    steps = np.arange(len(losses))
    axes[0].plot(steps, losses, "C0")
    axes[0].axhline(saddle_loss, color="C3", ls=":", lw=1, label="loss at the saddle")
    axes[0].set_ylabel("training loss")
    axes[0].legend(fontsize=8)
    axes[1].semilogy(steps, grad_norms, "C1")
    axes[1].set_ylabel("gradient norm")
    for ax in axes:
        ax.set_xlabel("gradient-descent step")
    axes[0].figure.suptitle("Gradient descent started next to a saddle", y=1.02)
    return axes


# --- mode connectivity ---------------------------------------------------------------

def mnist_14(num_train=2000, num_test=1000):
    """MNIST at 14x14 (every other pixel), standardised float32 (N, 1, 14, 14), labels int64."""
    num_train, num_test = check_count(num_train, "num_train"), check_count(num_test, "num_test")
    out = []
    for split, n in (("train", num_train), ("test", num_test)):
        images, labels = load_mnist(split)
        x = (images[:n, None, ::2, ::2] / 255.0 - 0.1307) / 0.3081
        out += [x.astype(np.float32), labels[:n].astype(np.int64)]
    return tuple(out)


def small_cnn(seed=0):
    """Conv(1->8, 5x5) -> BatchNorm2d -> ReLU -> MaxPool(2) -> Flatten -> Linear(200 -> 10), float32."""
    rng = get_rng(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 5, rng=rng), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(200, 10, rng=rng))


def train_cnn(x, y, seed, steps=300, lr=0.05, momentum=0.9, batch_size=64, progress=True):
    """Train :func:`small_cnn` (init and batches from ``seed``) with SGD + momentum.

    Returns ``(model, losses)``; the batch-norm running statistics of the
    returned model are recomputed on all of ``x`` (:func:`recompute_bn`).
    """
    steps = check_count(steps, "steps")
    rng = get_rng(seed)
    model = small_cnn(rng)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    model.train()
    for _ in tqdm(range(steps), desc=f"CNN seed {seed}", disable=not progress):
        idx = rng.choice(len(x), batch_size, replace=False)
        opt.zero_grad()
        losses.append(float(loss_fn(model(x[idx]), y[idx])))
        model.backward(loss_fn.backward())
        opt.step()
    recompute_bn(model, x)
    return model, np.array(losses)


def train_curve(model, end0, end1, kind="bezier", num_bends=3, steps=300, lr=0.05, momentum=0.9,
                batch_size=64, x=None, y=None, rng=None, progress=True):
    """Train the inner bends of a curve between ``end0`` and ``end1`` (flat vectors).

    The ends stay fixed; the inner bends start on the straight line
    (bend ``k`` at ``k / (n-1)`` of the way, as Garipov et al.'s
    ``init_linear``).  Each step samples ``t ~ U(0, 1)``, sets the model's
    parameters to ``phi(t)``, takes the gradient ``g`` of the batch loss in
    training mode (batch statistics in batch norm) and moves inner bend ``k``
    by SGD + momentum with gradient ``c_k(t) g``.  Returns ``(bends, losses)``
    with ``bends`` (n, P) float64.
    """
    steps, num_bends = check_count(steps, "steps"), check_count(num_bends, "num_bends", minimum=3)
    rng = get_rng(rng)
    end0, end1 = np.asarray(end0, np.float64), np.asarray(end1, np.float64)
    bends = np.array([(1 - k / (num_bends - 1)) * end0 + k / (num_bends - 1) * end1
                      for k in range(num_bends)])
    velocity = np.zeros_like(bends)
    state = {}

    def before():
        state["c"] = curves.coefficients(kind, float(rng.uniform()), num_bends)
        set_flat_parameters(model, curves.curve_point(bends, state["c"]))

    def update(g):
        inner = slice(1, num_bends - 1)
        velocity[inner] = momentum * velocity[inner] + state["c"][inner, None] * g
        bends[inner] -= lr * velocity[inner]

    loss_fn = nn.CrossEntropyLoss()
    params = list(model.parameters())
    losses = []
    for _ in tqdm(range(steps), desc=f"{kind} curve", disable=not progress):
        before()
        idx = rng.choice(len(x), batch_size, replace=False)
        model.train()
        model.zero_grad()
        losses.append(float(loss_fn(model(x[idx]), y[idx])))
        model.backward(loss_fn.backward())
        update(np.concatenate([p.grad.ravel() for p in params]).astype(np.float64))
    return bends, np.array(losses)


def _bn_layers(model):
    return [m for _, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]


def bn_statistics(model):
    """Copies of the running statistics of every BatchNorm2d of ``model``: a list of
    ``(running_mean, running_var)`` pairs, the form :func:`evaluate_path` takes as
    ``bn_ends``."""
    return [(m.running_mean.copy(), m.running_var.copy()) for m in _bn_layers(model)]


def recompute_bn(model, x, batch_size=500):
    """Reset every BatchNorm2d's running statistics and recompute them on ``x``.

    The cumulative average over batches of ``batch_size`` (PyTorch's
    ``momentum=None``), in training mode, as Garipov et al.'s ``update_bn``;
    the model is left in evaluation mode.
    """
    layers = _bn_layers(model)
    saved = [m.momentum for m in layers]
    for m in layers:
        m.running_mean[...] = 0
        m.running_var[...] = 1
        m.num_batches_tracked[...] = 0
        m.momentum = None
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
    for m, mom in zip(layers, saved):
        m.momentum = mom
    model.eval()


def evaluate_path(model, bends, kind, x, y, x_test, y_test, bn_ends=None, num_points=61,
                  progress=True):
    """Loss and accuracy at ``num_points`` equally spaced ``t`` along a curve.

    ``kind`` is ``"line"`` (``bends`` = the two ends), ``"bezier"`` or
    ``"polychain"``.  With ``bn_ends=None`` the batch-norm statistics are
    recomputed on ``x`` at every point (:func:`recompute_bn`); otherwise
    ``bn_ends`` is the pair of end models' statistics (lists of
    ``(running_mean, running_var)``), and the statistics at ``t`` are their
    interpolation ``(1-t) s_0 + t s_1``: what one gets by interpolating the
    whole ``state_dict`` instead of recomputing.  Returns a dict of arrays
    ``t``, ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``.
    """
    num_points = check_count(num_points, "num_points", minimum=2)
    bends = np.asarray(bends)
    ts = np.linspace(0.0, 1.0, num_points)
    loss_fn = nn.CrossEntropyLoss()
    out = {k: np.empty(num_points) for k in ("train_loss", "train_acc", "test_loss", "test_acc")}
    label = f"{kind}, BN " + ("recomputed" if bn_ends is None else "interpolated")
    for i, t in enumerate(tqdm(ts, desc=label, disable=not progress)):
        set_flat_parameters(model, curves.curve_point(bends, curves.coefficients(kind, t, len(bends))))
        if bn_ends is None:
            recompute_bn(model, x)
        else:
            for m, (s0, s1) in zip(_bn_layers(model), zip(*bn_ends)):
                m.running_mean[...] = (1 - t) * s0[0] + t * s1[0]
                m.running_var[...] = (1 - t) * s0[1] + t * s1[1]
        model.eval()
        for xs, ys, name in ((x, y, "train"), (x_test, y_test, "test")):
            logits = model(xs)
            out[f"{name}_loss"][i] = float(loss_fn(logits, ys))
            out[f"{name}_acc"][i] = float(np.mean(np.argmax(logits, axis=1) == ys))
    out["t"] = ts
    return out


def plot_paths(paths, key="train_loss", ax=None, title=None):
    """``paths``: {label: evaluate_path result}; plots ``key`` against t for each."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.6, 3.6))
    for label, res in paths.items():
        ax.plot(res["t"], res[key], label=label)
    ax.set_xlabel("t")
    ax.set_ylabel(key.replace("_", " "))
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return ax

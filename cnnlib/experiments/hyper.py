"""Experiments of the chapter "Hyper-parameters" (Part III), at a small scale.

Everything trains ``cnnlib.models.zoo.lenet5`` on a subset of MNIST with SGD and
momentum, from a seed, so the chapter's numbers are reproducible:

* :func:`train` runs mini-batch SGD with a learning-rate schedule (a
  function of the global step, see :mod:`cnnlib.optim.schedules`) and records the
  loss of every step;
* :func:`batch_size_sweep` tests the linear scaling rule, with and without
  warm-up, over batch sizes (Goyal et al. 2017);
* :func:`generalisation_gap` measures the train/test gap and the sharpness
  of the minimum against the batch size (Keskar et al. 2017).
"""

import math

import numpy as np

from .. import nn, optim
from .._random import get_rng
from .._validate import check_count, check_number
from ..analysis import sharpness
from ..data.mnist import load_mnist
from ..models import zoo
from ..optim import schedules

__all__ = ["lenet5", "mnist_subset", "evaluate", "train", "batch_size_sweep", "generalisation_gap"]


def lenet5(seed=0, dtype=np.float32):
    """A freshly initialised LeNet-5 whose layers all draw from one generator seeded with ``seed``.

    ``zoo.lenet5(rng=np.random.default_rng(seed))``: passing the generator
    (not the int) makes the initial weights the same whichever way the zoo
    spreads an int seed over its layers.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return zoo.lenet5(dtype=dtype, rng=np.random.default_rng(seed))


def mnist_subset(n_train=10000, n_test=2000, seed=0, data_dir=None):
    """``(x_train, y_train, x_test, y_test)``: random MNIST subsets, ready for LeNet-5.

    ``n_train`` images drawn without replacement from the 60,000 training
    images and ``n_test`` from the 10,000 test images (with ``seed``),
    normalised as :meth:`cnnlib.models.zoo.LeNet5.preprocess` does: x float32
    (N, 1, 28, 28), y int64 (N,).
    """
    n_train = check_count(n_train, "n_train")
    n_test = check_count(n_test, "n_test")
    if n_train > 60000 or n_test > 10000:
        raise ValueError(f"MNIST has 60000 training and 10000 test images, asked for "
                         f"n_train={n_train}, n_test={n_test}")
    rng = np.random.default_rng(seed)
    model = zoo.LeNet5(rng=0)
    out = []
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = load_mnist(split, data_dir)
        idx = np.sort(rng.choice(len(images), n, replace=False))
        out += [model.preprocess(images[idx]), labels[idx].astype(np.int64)]
    return tuple(out)


def evaluate(model, x, y, batch_size=1000):
    """``(mean cross-entropy, accuracy)`` of ``model`` on (x, y), in evaluation mode."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty with the same length, got {len(x)} and {len(y)}")
    model.eval()
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total, correct = 0.0, 0
    with np.errstate(all="ignore"):
        for i in range(0, len(x), batch_size):
            logits = model(x[i:i + batch_size])
            total += float(loss_fn(logits, y[i:i + batch_size]))
            correct += int((logits.argmax(axis=1) == y[i:i + batch_size]).sum())
    return total / len(x), correct / len(x)


def train(model, x, y, schedule, epochs, batch_size, momentum=0.9, weight_decay=0.0, rng=None,
          x_test=None, y_test=None):
    """Mini-batch SGD (with momentum) on (x, y) for ``epochs`` passes; returns a history dict.

    Before step ``t`` (counted over the whole run, from 0) the rate is set to
    ``schedule(t)``.  Each epoch visits the data in a new shuffled order, in
    batches of ``batch_size`` (the last one may be smaller).  Training stops
    as soon as a loss is not finite ("diverged").  History: ``lr`` and
    ``loss`` per step (float64 arrays), ``diverged`` (bool), ``steps``, and,
    at the end, ``train_loss``/``train_acc`` on (x, y) and
    ``test_loss``/``test_acc`` on (x_test, y_test) if given (chance level,
    0.1, and inf loss after a divergence).
    """
    if not callable(schedule):
        raise TypeError(f"schedule must be callable (step -> lr), got {type(schedule).__name__}")
    epochs = check_count(epochs, "epochs")
    batch_size = check_count(batch_size, "batch_size")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty with the same length, got {len(x)} and {len(y)}")
    rng = get_rng(rng)
    opt = optim.SGD(model.parameters(), lr=schedule(0), momentum=momentum,
                    weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    lrs, losses, diverged, t = [], [], False, 0
    model.train()
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for i in range(0, len(x), batch_size):
            idx = order[i:i + batch_size]
            opt.lr = schedule(t)
            opt.zero_grad()
            with np.errstate(all="ignore"):
                loss = float(loss_fn(model(x[idx]), y[idx]))
                model.backward(loss_fn.backward())
                opt.step()
            lrs.append(opt.lr)
            losses.append(loss)
            t += 1
            if not math.isfinite(loss):
                diverged = True
                break
        if diverged:
            break
    history = {"lr": np.array(lrs), "loss": np.array(losses), "diverged": diverged, "steps": t}
    sets = [("train", x, y)] + ([("test", x_test, y_test)] if x_test is not None else [])
    for name, xs, ys in sets:
        loss, acc = evaluate(model, xs, ys)
        if diverged or not math.isfinite(loss):
            loss, acc = math.inf, 0.1
        history[f"{name}_loss"], history[f"{name}_acc"] = loss, acc
    return history


def batch_size_sweep(data, batch_sizes=(32, 64, 128, 256, 512, 1024), base_lr=0.01,
                     base_batch_size=32, epochs=2, warmup_epochs=0.5, seed=0):
    """The linear scaling rule over batch sizes, with and without warm-up.

    ``data = (x_train, y_train, x_test, y_test)``.  For each batch size ``B``
    (``k = B / base_batch_size``), LeNet-5 (initialised from ``seed``, the
    same for every run) is trained for ``epochs`` epochs at the constant rate
    ``k * base_lr``, once without warm-up and, when ``k > 1``, once with a
    linear warm-up from ``base_lr`` over the first ``warmup_epochs`` epochs
    (Goyal et al. 2017).  The batch order comes from ``seed`` too.  Returns
    a list of dicts: ``batch_size``, ``k``, ``lr``, ``warmup`` (bool),
    ``steps``, ``diverged``, ``train_loss``, ``test_acc`` and ``loss_curve``
    (the training loss against the number of images seen: (images, loss)).
    """
    x, y, xt, yt = data
    rows = []
    for b in batch_sizes:
        b = check_count(b, "batch_size")
        steps_per_epoch = math.ceil(len(x) / b)
        warm = max(1, round(check_number(warmup_epochs, "warmup_epochs") * steps_per_epoch))
        for warmup in ((False, True) if b > base_batch_size else (False,)):
            schedule = schedules.goyal(base_lr, base_batch_size, b, warm if warmup else 0)
            model = lenet5(seed)
            h = train(model, x, y, schedule, epochs, b, rng=seed, x_test=xt, y_test=yt)
            rows.append({"batch_size": b, "k": b / base_batch_size,
                         "lr": schedules.linear_scaling(base_lr, b, base_batch_size),
                         "warmup": warmup, "steps": h["steps"], "diverged": h["diverged"],
                         "train_loss": h["train_loss"], "test_acc": h["test_acc"],
                         "loss_curve": (np.arange(1, h["steps"] + 1) * b, h["loss"])})
    return rows


def generalisation_gap(data, batch_sizes=(32, 256, 1024), lr=0.05, epochs=10, n_sharpness=512,
                       eps=1e-3, power_iters=15, seed=0):
    """Train/test gap and sharpness of the minimum against the batch size (Keskar et al.).

    ``data = (x_train, y_train, x_test, y_test)``.  Every batch size trains
    LeNet-5 from the same initialisation (``seed``) for the same number of
    ``epochs`` with the same constant rate ``lr`` (SGD, momentum 0.9), the
    setting of Keskar et al.  Then, on a float64 copy and the first
    ``n_sharpness`` training images: the top Hessian eigenvalue
    (:func:`~cnnlib.analysis.sharpness.top_hessian_eigenvalue`, ``power_iters``
    products at most) and the epsilon-sharpness
    (:func:`~cnnlib.analysis.sharpness.epsilon_sharpness`, box ``eps``, 10 random
    corners and 3 ascent steps).
    Returns a list of dicts: ``batch_size``, ``steps``, ``train_loss``,
    ``train_acc``, ``test_acc``, ``gap`` (train minus test accuracy),
    ``hessian_top`` and ``eps_sharpness``.
    """
    x, y, xt, yt = data
    n_sharpness = check_count(n_sharpness, "n_sharpness")
    rows = []
    for b in batch_sizes:
        b = check_count(b, "batch_size")
        model = lenet5(seed)
        h = train(model, x, y, schedules.Constant(lr), epochs, b, rng=seed, x_test=xt, y_test=yt)
        model64 = lenet5(0, dtype=np.float64)
        model64.load_state_dict(model.state_dict())
        xs, ys = x[:n_sharpness].astype(np.float64), y[:n_sharpness]
        loss_grad = sharpness.model_loss_grad(model64, xs, ys)
        theta = sharpness.flat_parameters(model64)
        top, _, _ = sharpness.top_hessian_eigenvalue(loss_grad, theta, iters=power_iters, rng=seed)
        eps_sharp = sharpness.epsilon_sharpness(loss_grad, theta, eps=eps, num_samples=10,
                                                ascent_steps=3, rng=seed)
        rows.append({"batch_size": b, "steps": h["steps"], "train_loss": h["train_loss"],
                     "train_acc": h["train_acc"], "test_acc": h["test_acc"],
                     "gap": h["train_acc"] - h["test_acc"], "hessian_top": top,
                     "eps_sharpness": eps_sharp})
    return rows

"""Training loop, evaluation and a command line to train the zoo's models.

    python -m cnnlib.training lenet5 --epochs 10 --out lenet5.npz

trains LeNet-5 on MNIST (found by :func:`cnnlib.data.mnist.load_mnist`) with
SGD + Nesterov momentum and a cosine learning-rate schedule, shows a progress
bar, and ends by printing ``test accuracy: 0.XXXX``.  ``--out`` writes the
weights (``.npz``) and, beside them, a ``.json`` record of the command,
seed, accuracy and time per epoch.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import nn, optim
from .._random import get_rng
from ..data.mnist import load_mnist
from ..models import zoo

__all__ = ["batches", "train_epoch", "accuracy", "fit_cosine_sgd", "fit_lenet5", "save", "main"]


def batches(n, batch_size, rng=None):
    """Yield index arrays covering range(n) in batches (shuffled when ``rng`` is given)."""
    order = np.arange(n) if rng is None else rng.permutation(n)
    for i in range(0, n, batch_size):
        yield order[i:i + batch_size]


def train_epoch(model, optimizer, x, y, batch_size=64, rng=None, lr_at=None, progress=None):
    """One pass over (x, y) with cross-entropy; returns the mean training loss.

    ``lr_at(step)`` (optional) sets the learning rate before each step, with
    ``step`` counted within this epoch; ``progress`` is a tqdm bar to update.
    """
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    total, count = 0.0, 0
    for step, idx in enumerate(batches(len(x), batch_size, get_rng(rng))):
        if lr_at is not None:
            optimizer.lr = lr_at(step)
        optimizer.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        model.backward(loss_fn.backward())
        optimizer.step()
        total += float(loss) * len(idx)
        count += len(idx)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{total / count:.4f}", refresh=False)
    return total / max(count, 1)


def accuracy(model, images, labels, batch_size=1000):
    """Fraction of uint8 ``images`` whose predicted label equals ``labels``."""
    model.eval()
    return float(np.mean(model.predict(images, batch_size) == labels))


def fit_cosine_sgd(model, x, y, evaluate, epochs, batch_size, lr, momentum, weight_decay, rng,
                   progress=True, desc=None):
    """Train with cross-entropy, SGD + Nesterov momentum and a cosine learning rate.

    The rate follows ``lr * (1 + cos(pi * t)) / 2`` from ``lr`` to 0 over all
    steps; batches are shuffled with ``rng``.  ``evaluate(model)`` gives the
    test accuracy after each epoch.  Returns a dict of per-epoch lists:
    "train_loss", "test_accuracy", "epoch_seconds".  ``desc`` names the
    progress bar, which then also shows the latest test accuracy.
    """
    opt = optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True,
                    weight_decay=weight_decay)
    steps = math.ceil(len(x) / batch_size)
    history = {"train_loss": [], "test_accuracy": [], "epoch_seconds": []}
    bar = tqdm(total=epochs * steps, desc=desc, unit="batch", disable=not progress)
    for epoch in range(epochs):
        def lr_at(step, epoch=epoch):
            t = (epoch * steps + step) / (epochs * steps)
            return lr * 0.5 * (1 + math.cos(math.pi * t))
        start = time.perf_counter()
        loss = train_epoch(model, opt, x, y, batch_size, rng, lr_at, bar)
        history["epoch_seconds"].append(time.perf_counter() - start)
        history["train_loss"].append(loss)
        history["test_accuracy"].append(evaluate(model))
        if desc is not None:
            bar.set_description(f"{desc} (epoch {epoch + 1}: test acc "
                                f"{history['test_accuracy'][-1]:.4f})")
    bar.close()
    return history


def fit_lenet5(epochs=10, batch_size=64, lr=0.05, momentum=0.9, weight_decay=5e-4, seed=0,
               data_dir=None, progress=True):
    """Train LeNet-5 on MNIST; returns (model, history dict).

    SGD with Nesterov momentum; the learning rate follows a cosine from
    ``lr`` to 0 over all steps.  Everything random (initialisation, batch
    order) comes from ``seed``.
    """
    rng = np.random.default_rng(seed)
    train_images, train_labels = load_mnist("train", data_dir)
    test_images, test_labels = load_mnist("test", data_dir)
    model = zoo.lenet5(rng=rng)
    x = model.preprocess(train_images)
    y = train_labels.astype(np.int64)
    history = fit_cosine_sgd(model, x, y, lambda m: accuracy(m, test_images, test_labels),
                             epochs, batch_size, lr, momentum, weight_decay, rng, progress,
                             desc="LeNet-5")
    return model, history


def save(model, path, record):
    """Write the weights to ``path`` (.npz) and ``record`` beside it (.json)."""
    path = Path(path)
    np.savez(path, **model.state_dict())
    path.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")


def main(argv=None):
    """The command line ``python -m cnnlib.training`` (``argv`` as ``sys.argv[1:]``)."""
    parser = argparse.ArgumentParser(prog="python -m cnnlib.training", description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=["lenet5"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None, help="directory holding the MNIST files")
    parser.add_argument("--out", default=None, help="where to write the weights (.npz)")
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or args.lr <= 0:
        parser.error("--epochs, --batch-size and --lr must be positive")
    model, history = fit_lenet5(args.epochs, args.batch_size, args.lr, seed=args.seed,
                                data_dir=args.data_dir)
    acc = history["test_accuracy"][-1]
    if args.out:
        cmd = "python -m cnnlib.training " + " ".join(sys.argv[1:] if argv is None else argv)
        save(model, args.out, {"command": cmd, "seed": args.seed, "test_accuracy": acc,
                               "epochs": args.epochs, "history": history,
                               "parameters": model.num_parameters()})
    print(f"test accuracy: {acc:.4f}")


if __name__ == "__main__":
    main()

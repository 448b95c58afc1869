"""Evolutionary and random architecture search, and the small CNN genomes they search over.

* :func:`regularized_evolution`: Real et al. (2019), as in google-research's
  ``evolution/regularized_evolution_algorithm``: a population of
  ``population_size``; each cycle samples ``sample_size`` members with
  replacement, mutates the best of the sample, appends the child and removes
  the *oldest* member (ageing, not the worst);
* :func:`random_search`: the same interface without the evolution;
* a CNN genome: a tuple of convolutional layers ``(width, kernel, activation)``,
  with :func:`random_genome`, :func:`mutate_genome` (add / remove a layer,
  change a kernel size, a width or an activation), :func:`build_cnn` and
  :func:`train_and_evaluate` (the fitness: validation accuracy after a fixed
  number of training steps).

See the chapter "Architecture search" (Part IV).
"""

from collections import deque

import numpy as np

from .. import nn
from .._random import get_rng
from .._validate import check_count, check_float_array, check_number
from ..optim import SGD
from ..optim.schedules import Cosine

__all__ = ["regularized_evolution", "random_search", "WIDTHS", "KERNELS", "ACTIVATIONS", "MAX_LAYERS",
           "check_genome", "random_genome", "mutate_genome", "build_cnn", "train_steps", "evaluate",
           "train_and_evaluate"]


def _check_callable(f, name):
    if not callable(f):
        raise TypeError(f"{name} must be callable, got {type(f).__name__}")


def _evaluate(fitness, individual, rng):
    value = fitness(individual, rng)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"fitness must return a number, got {value!r}") from None


def regularized_evolution(init, mutate, fitness, cycles, population_size, sample_size, rng=None):
    """Regularised (ageing) evolution, Real et al. (2019).

    ``population_size`` random individuals ``init(rng)`` are evaluated first.
    Then, until ``cycles`` individuals have been evaluated in all, each cycle
    samples ``sample_size`` members of the population uniformly *with*
    replacement, takes the fittest of the sample as the parent, evaluates the
    child ``mutate(parent, rng)``, appends it and removes the oldest member.

    Inputs:
    - init(rng) -> individual; mutate(individual, rng) -> individual;
      fitness(individual, rng) -> float (higher is better)
    - cycles: total number of evaluations (the initial population included)
    - population_size, sample_size: P and S (S <= P)
    - rng: None, a seed or a ``np.random.Generator``

    Returns the history: a list of ``(individual, fitness)`` in evaluation order.
    """
    for f, name in ((init, "init"), (mutate, "mutate"), (fitness, "fitness")):
        _check_callable(f, name)
    population_size = check_count(population_size, "population_size")
    sample_size = check_count(sample_size, "sample_size")
    cycles = check_count(cycles, "cycles")
    if sample_size > population_size:
        raise ValueError(f"sample_size must be <= population_size={population_size}, got {sample_size}")
    if cycles < population_size:
        raise ValueError(f"cycles must be >= population_size={population_size}, got {cycles}")
    rng = get_rng(rng)
    population, history = deque(), []
    while len(population) < population_size:
        ind = init(rng)
        member = (ind, _evaluate(fitness, ind, rng))
        population.append(member)
        history.append(member)
    while len(history) < cycles:
        sample = [population[int(k)] for k in rng.integers(0, len(population), sample_size)]
        parent = max(sample, key=lambda m: m[1])
        child = mutate(parent[0], rng)
        member = (child, _evaluate(fitness, child, rng))
        population.append(member)
        history.append(member)
        population.popleft()
    return history


def random_search(init, fitness, cycles, rng=None):
    """Random search: ``cycles`` independent individuals ``init(rng)``, each evaluated once.

    Same conventions as :func:`regularized_evolution`; returns the history, a
    list of ``(individual, fitness)``.
    """
    _check_callable(init, "init")
    _check_callable(fitness, "fitness")
    cycles = check_count(cycles, "cycles")
    rng = get_rng(rng)
    history = []
    for _ in range(cycles):
        ind = init(rng)
        history.append((ind, _evaluate(fitness, ind, rng)))
    return history


#: The output channels a genome's layer may have.
WIDTHS = (4, 8, 16)
#: The kernel sizes a genome's layer may have.
KERNELS = (3, 5)
#: The activations a genome's layer may have.
ACTIVATIONS = ("relu", "tanh")
#: At most this many convolutional layers (and at least one).
MAX_LAYERS = 4
_ACT = {"relu": nn.ReLU, "tanh": nn.Tanh}


def check_genome(genome):
    """Raise ``ValueError`` / ``TypeError`` unless ``genome`` is a valid CNN genome; return it.

    A genome is a tuple of 1 to :data:`MAX_LAYERS` layers, each a tuple
    ``(width, kernel, activation)`` with width in :data:`WIDTHS`, kernel in
    :data:`KERNELS` and activation in :data:`ACTIVATIONS`.
    """
    if not isinstance(genome, tuple):
        raise TypeError(f"genome must be a tuple of layers, got {type(genome).__name__}")
    if not 1 <= len(genome) <= MAX_LAYERS:
        raise ValueError(f"genome must have 1 to {MAX_LAYERS} layers, got {len(genome)}")
    for i, layer in enumerate(genome):
        if not (isinstance(layer, tuple) and len(layer) == 3 and layer[0] in WIDTHS and layer[1] in KERNELS
                and layer[2] in ACTIVATIONS):
            raise ValueError(f"genome[{i}] must be (width in {WIDTHS}, kernel in {KERNELS}, activation in "
                             f"{ACTIVATIONS}), got {layer!r}")
    return genome


def _random_layer(rng):
    return (WIDTHS[int(rng.integers(len(WIDTHS)))], KERNELS[int(rng.integers(len(KERNELS)))],
            ACTIVATIONS[int(rng.integers(len(ACTIVATIONS)))])


def random_genome(rng=None, max_layers=3):
    """A random genome of 1 to ``max_layers`` layers, each choice uniform."""
    rng = get_rng(rng)
    max_layers = check_count(max_layers, "max_layers")
    if max_layers > MAX_LAYERS:
        raise ValueError(f"max_layers must be <= {MAX_LAYERS}, got {max_layers}")
    return tuple(_random_layer(rng) for _ in range(int(rng.integers(1, max_layers + 1))))


def _other(options, value, rng):
    rest = [o for o in options if o != value]
    return rest[int(rng.integers(len(rest)))]


def mutate_genome(genome, rng=None):
    """One random mutation of a genome; the child is valid and differs from the parent.

    The mutation is drawn uniformly from those possible: add a random layer at
    a random position (below :data:`MAX_LAYERS`), remove a layer (above one),
    change one layer's kernel size, width or activation (to another value).
    """
    genome = check_genome(genome)
    rng = get_rng(rng)
    kinds = ["kernel", "width", "activation"]
    if len(genome) < MAX_LAYERS:
        kinds.append("add")
    if len(genome) > 1:
        kinds.append("remove")
    kind = kinds[int(rng.integers(len(kinds)))]
    layers = list(genome)
    if kind == "add":
        layers.insert(int(rng.integers(len(layers) + 1)), _random_layer(rng))
    elif kind == "remove":
        del layers[int(rng.integers(len(layers)))]
    else:
        i = int(rng.integers(len(layers)))
        w, k, a = layers[i]
        if kind == "kernel":
            k = _other(KERNELS, k, rng)
        elif kind == "width":
            w = _other(WIDTHS, w, rng)
        else:
            a = _other(ACTIVATIONS, a, rng)
        layers[i] = (w, k, a)
    return tuple(layers)


def build_cnn(genome, in_channels=1, image_size=28, num_classes=10, *, dtype=np.float32, rng=None):
    """The network of a genome, a :class:`~cnnlib.nn.Sequential`.

    Layer ``i``: ``Conv2d(c_in, width, kernel, padding=kernel // 2)``, the
    activation, and a 2x2 max pooling after each of the first two layers;
    then ``Flatten`` and a ``Linear`` to ``num_classes``. Input (N,
    in_channels, image_size, image_size); output (N, num_classes).
    """
    genome = check_genome(genome)
    rng = get_rng(rng)
    layers, c, size = [], check_count(in_channels, "in_channels"), check_count(image_size, "image_size")
    for i, (w, k, a) in enumerate(genome):
        layers += [nn.Conv2d(c, w, k, padding=k // 2, dtype=dtype, rng=rng), _ACT[a]()]
        if i < 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        c = w
    layers += [nn.Flatten(), nn.Linear(c * size * size, num_classes, dtype=dtype, rng=rng)]
    return nn.Sequential(*layers)


def train_steps(model, x, y, steps, batch_size=32, lr=0.05, momentum=0.9, weight_decay=0.0, min_lr=0.0,
                rng=None):
    """Train ``model`` for ``steps`` minibatches (drawn with replacement) with SGD and a cosine
    learning rate from ``lr`` to ``min_lr``; returns the training loss of each step."""
    check_float_array(x, "x", ndim=4)
    steps, batch_size = check_count(steps, "steps"), check_count(batch_size, "batch_size")
    rng = get_rng(rng)
    params = list(model.parameters())
    if hasattr(model, "weight_parameters"):
        params = model.weight_parameters()
    opt = SGD(params, lr=check_number(lr, "lr", positive=True), momentum=momentum,
              weight_decay=weight_decay)
    schedule = Cosine(lr, steps, min_lr=min_lr)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    losses = []
    for step in range(steps):
        opt.lr = schedule(step)
        idx = rng.integers(0, len(x), batch_size)
        model.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        model.backward(loss_fn.backward())
        opt.step()
        losses.append(float(loss))
    return losses


def evaluate(model, x, y, batch_size=500):
    """Accuracy of ``model`` (in evaluation mode) on (x, y)."""
    check_float_array(x, "x", ndim=4)
    model.eval()
    correct = sum(int((model(x[i:i + batch_size]).argmax(axis=1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(x), batch_size))
    model.train()
    return correct / len(x)


def train_and_evaluate(genome, x_train, y_train, x_val, y_val, steps, batch_size=32, lr=0.05, rng=None):
    """Fitness of a genome: build it, train it ``steps`` steps (:func:`train_steps`), return
    ``(validation accuracy, model)``."""
    rng = get_rng(rng)
    model = build_cnn(genome, x_train.shape[1], x_train.shape[2], int(y_train.max()) + 1,
                      dtype=x_train.dtype, rng=rng)
    train_steps(model, x_train, y_train, steps, batch_size, lr, rng=rng)
    return evaluate(model, x_val, y_val), model

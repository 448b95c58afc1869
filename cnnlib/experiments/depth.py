"""Depth separation on the sawtooth (chapter 6.1, "Expressive power").

Shallow (one hidden layer) ReLU networks of growing width are trained,
full-batch with Adam on a grid, to fit Telgarsky's ``k``-fold sawtooth; their
L1 error is measured against the deep network's exact fit with ``k`` layers of
width 2.  A second experiment asks whether gradient training finds the deep
narrow solution from a random start.  Also the chapter's figures.
"""

import numpy as np
from tqdm.auto import tqdm

from .._random import get_rng
from ..nn import Linear, ReLU, Sequential
from ..optim import Adam
from ..theory.expressive import count_linear_pieces, linear_pieces, sawtooth_network

__all__ = ["sawtooth_data", "l1_error", "shallow_network", "deep_network", "fit", "fit_output_layer", "width_sweep",
           "width_needed", "deep_training", "dead_layers", "interpolation_errors", "plot_interpolants",
           "plot_interpolation_errors", "plot_sawtooths", "plot_error_vs_width", "plot_deep_fits"]


def sawtooth_data(k, n_points=512):
    """The training grid: ``n_points`` midpoints of [0, 1] and the sawtooth ``m^k`` there.

    Returns ``x`` of shape (n_points, 1) and ``y`` of shape (n_points, 1), float64.
    """
    x = ((np.arange(n_points) + 0.5) / n_points)[:, None]
    return x, sawtooth_network(k)(x)


def l1_error(model, k):
    """``int_0^1 |model - m^k|``, exactly: both are piecewise linear.

    The union of both functions' breakpoints (from
    :func:`~cnnlib.theory.expressive.linear_pieces`) and of the difference's
    zero crossings splits [0, 1] into pieces on which ``|model - m^k|`` is
    affine, integrated by the trapezoid rule (exact there).
    """
    t1, _ = linear_pieces(model, 0.0, 1.0)
    t2, _ = linear_pieces(sawtooth_network(k), 0.0, 1.0)
    t = np.union1d(t1, t2)
    d = (model(t[:, None].astype(np.float64)) - sawtooth_network(k)(t[:, None])).ravel()
    left, right = d[:-1], d[1:]
    h = np.diff(t)
    same = left * right >= 0
    # a sign change inside a piece: two triangles, areas h/2 * l^2/(|l|+|r|) and h/2 * r^2/(|l|+|r|)
    area = np.where(same, h * (np.abs(left) + np.abs(right)) / 2,
                    h * (left ** 2 + right ** 2) / (2 * np.maximum(np.abs(left) + np.abs(right),
                                                                     np.finfo(float).tiny)))
    return float(np.sum(area))


def shallow_network(width, rng=None):
    """``Sequential(Linear(1, width), ReLU(), Linear(width, 1))`` in float64 with its kinks in [0, 1].

    Hidden weights are +-1 (random sign) and the kinks ``-b / w`` uniform on
    [0, 1], so every unit starts where the target has structure; the output
    layer keeps PyTorch's default initialisation.
    """
    rng = get_rng(rng)
    hidden, out = Linear(1, width, dtype=np.float64, rng=rng), Linear(width, 1, dtype=np.float64, rng=rng)
    sign = rng.choice([-1.0, 1.0], size=width)
    hidden.weight.data[:, 0] = sign
    hidden.bias.data[:] = -sign * rng.uniform(0.0, 1.0, size=width)
    return Sequential(hidden, ReLU(), out)


def deep_network(k, width=2, rng=None):
    """``k`` hidden layers of ``width`` ReLU units and a linear output, float64, default initialisation."""
    rng = get_rng(rng)
    layers, fan_in = [], 1
    for _ in range(k):
        layers += [Linear(fan_in, width, dtype=np.float64, rng=rng), ReLU()]
        fan_in = width
    return Sequential(*layers, Linear(fan_in, 1, dtype=np.float64, rng=rng))


def fit(model, x, y, steps=2000, lr=0.01, progress=None):
    """Full-batch Adam on the mean squared error; returns the final loss.

    ``progress``: a tqdm bar to advance by ``steps``.
    """
    opt = Adam(model.parameters(), lr=lr)
    loss = np.nan
    for _ in range(steps):
        model.zero_grad()
        r = model(x) - y
        loss = float(np.mean(r ** 2))
        model.backward(2 * r / r.size)
        opt.step()
    if progress is not None:
        progress.update(steps)
    return loss


def fit_output_layer(model, x, y):
    """Solve the last Linear layer of ``model`` by least squares, the rest fixed.

    With the hidden layers fixed the network is linear in its output weights
    and bias, so the best mean squared error over them is one ``lstsq``.
    """
    *body, last = list(model)
    h = Sequential(*body)(x) if body else x
    features = np.hstack([h, np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(features, y, rcond=None)
    last.weight.data[...] = coef[:-1].T
    last.bias.data[...] = coef[-1]
    return float(np.mean((features @ coef - y) ** 2))


def width_sweep(ks, widths, steps=1000, lr=0.001, n_points=512, seed=0, progress=True):
    """Fit a shallow network of every width to every sawtooth.

    Each run starts from ``shallow_network(width, rng=seed + width)`` (random
    kinks in [0, 1]), solves the output layer by least squares
    (:func:`fit_output_layer`), then trains all parameters with ``steps`` of
    full-batch Adam (:func:`fit`).  Returns ``{(k, width): (l1_lstsq, l1,
    pieces)}``: the :func:`l1_error` after the least-squares step and after
    Adam, and the trained network's exact number of linear pieces on [0, 1].
    """
    results = {}
    bar = tqdm(total=len(ks) * len(widths) * steps, desc="shallow fits", unit="step",
               disable=not progress)
    for k in ks:
        x, y = sawtooth_data(k, n_points)
        for w in widths:
            model = shallow_network(w, rng=seed + w)
            fit_output_layer(model, x, y)
            l1_lstsq = l1_error(model, k)
            fit(model, x, y, steps, lr, progress=bar)
            results[(k, w)] = (l1_lstsq, l1_error(model, k), count_linear_pieces(model, 0.0, 1.0))
    bar.close()
    return results


def width_needed(results, k, widths, eps, column=1):
    """The smallest width whose L1 error is below ``eps`` for sawtooth ``k`` (None if none).

    ``column``: 1 for the error after Adam, 0 after the least-squares step.
    """
    for w in sorted(widths):
        if results[(k, w)][column] < eps:
            return w
    return None


def deep_training(k, seeds, width=2, steps=2000, lr=0.01, n_points=512, progress=True):
    """Train the deep narrow architecture (``deep_network(k, width)``) on ``m^k`` from random starts.

    Full-batch Adam (:func:`fit`) from ``deep_network(k, width, rng=seed)``.
    Returns ``{seed: (l1, pieces, model)}``.
    """
    x, y = sawtooth_data(k, n_points)
    out = {}
    bar = tqdm(total=len(seeds) * steps, desc=f"deep fits, k={k}, width {width}", unit="step",
               disable=not progress)
    for s in seeds:
        model = deep_network(k, width=width, rng=s)
        fit(model, x, y, steps, lr, progress=bar)
        out[s] = (l1_error(model, k), count_linear_pieces(model, 0.0, 1.0), model)
    bar.close()
    return out


def dead_layers(model, x):
    """The ReLU layers (numbered from 0) whose units are all inactive (output 0) at every ``x``.

    A layer like that passes no gradient to the layers below it: the network
    is constant on ``x`` and stays so under gradient descent.
    """
    dead, h, i = [], x, 0
    for layer in model:
        h = layer(h)
        if isinstance(layer, ReLU):
            if np.all(h <= 0):
                dead.append(i)
            i += 1
    return dead


def interpolation_errors(functions, ns, a=0.0, b=1.0, n_eval=25601):
    """Max error of :func:`~cnnlib.theory.expressive.relu_interpolant` on a dense grid.

    ``functions``: ``{name: (f, max_abs_f2)}``.  Returns ``{(name, n): (error,
    bound)}``; the grid contains every knot and midpoint when ``n`` divides
    ``(n_eval - 1) / 2``.
    """
    from ..theory.expressive import interpolation_error_bound, relu_interpolant
    x = np.linspace(a, b, n_eval)
    out = {}
    for name, (f, f2) in functions.items():
        for n in ns:
            g = relu_interpolant(f, a, b, n)
            err = float(np.max(np.abs(g(x[:, None]).ravel() - f(x))))
            out[(name, n)] = (err, interpolation_error_bound(f2, a, b, n))
    return out


def plot_interpolants(f, a, b, ns, ax=None, label="f"):
    """``f`` and its ReLU interpolants with ``n`` pieces, knots marked."""
    import matplotlib.pyplot as plt

    from ..theory.expressive import relu_interpolant
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    x = np.linspace(a, b, 1001)
    ax.plot(x, f(x), "k", lw=2.5, label=label)
    for n in ns:
        g = relu_interpolant(f, a, b, n)
        knots = np.linspace(a, b, n + 1)
        ax.plot(x, g(x[:, None]).ravel(), lw=1.2, label=f"n = {n}")
        ax.plot(knots, g(knots[:, None]).ravel(), ".", color=ax.lines[-1].get_color())
    ax.set_xlabel("x")
    ax.legend(fontsize=8)
    return ax


def plot_interpolation_errors(errors, ax=None):
    """Log-log max error (dots) and bound (lines) against n, one colour per function."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    names = sorted({name for name, _ in errors}, key=list(dict.fromkeys(n for n, _ in errors)).index)
    for name in names:
        ns = sorted(n for m, n in errors if m == name)
        e = [errors[(name, n)][0] for n in ns]
        bound = [errors[(name, n)][1] for n in ns]
        line, = ax.loglog(ns, bound, "-", lw=1, label=f"bound, {name}")
        ax.loglog(ns, e, "o", color=line.get_color(), label=f"measured, {name}")
    ax.set_xlabel("pieces n (hidden width)")
    ax.set_ylabel("max |f - g|")
    ax.legend(fontsize=7)
    return ax


def plot_sawtooths(ks, axes=None):
    """The sawtooth ``m^k`` on [0, 1] for each ``k``, breakpoints marked, with its piece count."""
    import matplotlib.pyplot as plt
    if axes is None:
        _, axes = plt.subplots(1, len(ks), figsize=(2.6 * len(ks), 2.4), sharey=True)
    x = np.linspace(0, 1, 2049)[:, None]
    for ax, k in zip(axes, ks):
        net = sawtooth_network(k)
        knots, values = linear_pieces(net, 0.0, 1.0)
        ax.plot(x.ravel(), net(x).ravel(), "C0")
        ax.plot(knots, values.ravel(), "k.", ms=4)
        ax.set_title(f"k = {k}: {len(knots) - 1} pieces", fontsize=9)
        ax.set_xlabel("x")
    return axes


def plot_error_vs_width(results, ks, widths, eps, ax=None):
    """L1 error of the trained shallow networks against width (log-log), one line per k,
    with the lower bound of :func:`~cnnlib.theory.expressive.shallow_l1_lower_bound`."""
    import matplotlib.pyplot as plt

    from ..theory.expressive import shallow_l1_lower_bound
    ax = ax or plt.subplots(figsize=(6, 3.8))[1]
    wide = np.unique(np.geomspace(min(widths), max(widths), 60).astype(int))
    for k in ks:
        line, = ax.plot(widths, [results[(k, w)][1] for w in widths], "o-", label=f"trained, k = {k}")
        bound = np.array([shallow_l1_lower_bound(k, w + 1) for w in wide])
        ax.plot(wide[bound > 0], bound[bound > 0], ":", color=line.get_color())
    ax.axhline(eps, color="grey", lw=0.8, ls="--", label=f"eps = {eps}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden width (one hidden layer)")
    ax.set_ylabel("L1 error on [0, 1]")
    ax.legend(fontsize=7, ncol=2)
    return ax


def plot_deep_fits(k, runs, ax=None):
    """The sawtooth ``m^k`` and the deep narrow networks trained from random starts."""
    import matplotlib.pyplot as plt
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    x = np.linspace(0, 1, 2049)[:, None]
    ax.plot(x.ravel(), sawtooth_network(k)(x).ravel(), "k", lw=2.5, label=f"$m^{k}$ (the sawtooth)")
    for s, (l1, pieces, model) in runs.items():
        ax.plot(x.ravel(), model(x).ravel(), lw=1, label=f"seed {s}: {pieces} pieces, L1 {l1:.3f}")
    ax.set_xlabel("x")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return ax

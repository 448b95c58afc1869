"""Drivers and figures of the chapter "Interpretability" (Part IV, 4.3).

* :func:`ig_delta_table`: IG's mean |convergence delta| per method and n_steps;
* :func:`ig_baselines`: attributions of the same digits from several baselines;
* :func:`mnist_concept_sets`: concept examples (closed loop, thick strokes,
  slant) from the pixels of MNIST training digits;
* :func:`tcav_table`: TCAV scores (concept x layer x class) over many random
  runs, with the random-concept null and the t-test;
* :func:`plot_attributions`, :func:`plot_tcav`: the chapter's figures.
"""

import numpy as np

from .._validate import check_count
from ..analysis import attribution, tcav
from ..data import concepts

__all__ = ["ig_delta_table", "ig_baselines", "mnist_concept_sets", "tcav_table", "plot_attributions",
           "plot_tcav"]


def ig_delta_table(model, inputs, target, methods=attribution.METHODS, steps=(10, 25, 50, 100, 300),
                   baselines=None, internal_batch_size=256):
    """Mean |delta| of :func:`~cnnlib.analysis.attribution.integrated_gradients` over the inputs.

    Returns float64 (len(methods), len(steps)): entry (i, j) is the mean over
    the N inputs of |sum(attr) - (F(x) - F(x'))| for methods[i], steps[j].
    """
    table = np.empty((len(methods), len(steps)))
    for i, method in enumerate(methods):
        for j, n in enumerate(steps):
            _, delta = attribution.integrated_gradients(
                model, inputs, target, baselines, n_steps=n, method=method,
                internal_batch_size=internal_batch_size, return_convergence_delta=True)
            table[i, j] = np.abs(delta).mean()
    return table


def ig_baselines(model, inputs, target, black, n_noise=8, noise_range=None, sigma=3.0, n_steps=50,
                 rng=0, internal_batch_size=256):
    """IG of the same inputs from four baselines: zero, black, blurred, uniform noise (averaged).

    ``black`` is the value of a black pixel in the model's input space;
    ``noise_range`` (low, high) defaults to (black, max of inputs).
    Returns {name: (attributions like inputs, delta (N,), F(x') (N,))}; for
    the noise baselines delta and F(x') are averages over the n_noise draws.
    """
    x = inputs
    low, high = noise_range if noise_range is not None else (black, float(x.max()))
    bases = {"zero (grey)": np.zeros_like(x), "black": attribution.black_baseline(x, black),
             "blurred": attribution.blurred_baseline(x, sigma)}
    out = {}
    kw = dict(n_steps=n_steps, internal_batch_size=internal_batch_size)
    t = np.broadcast_to(np.asarray(target), (len(x),))
    rows = np.arange(len(x))
    for name, b in bases.items():
        attr, delta = attribution.integrated_gradients(model, x, target, b, return_convergence_delta=True,
                                                       **kw)
        out[name] = (attr, delta, model(b)[rows, t].astype(np.float64))
    noise = attribution.uniform_noise_baselines(x, n_noise, low, high, rng=rng)
    attr, delta = attribution.averaged_integrated_gradients(model, x, target, noise, **kw)
    f0 = np.mean([model(b)[rows, t] for b in noise], axis=0)
    out[f"uniform noise (mean of {n_noise})"] = (attr, delta, f0)
    return out


def mnist_concept_sets(images, n, rng=0, min_hole=10, quantile=0.9):
    """Indices of ``n`` images for each concept, measured from the pixels.

    "closed loop": hole area >= ``min_hole`` pixels; "thick strokes": stroke
    thickness in the top 10 %; "slant right": slant in the top 10 %
    (``quantile`` 0.9).  Drawn with one seeded generator.  Returns
    {name: sorted int64 (n,)}.
    """
    gen = np.random.default_rng(rng)
    return {"closed loop": concepts.concept_indices(concepts.hole_area(images), n, minimum=min_hole,
                                                    rng=gen),
            "thick strokes": concepts.concept_indices(concepts.stroke_thickness(images), n,
                                                      quantile=quantile, rng=gen),
            "slant right": concepts.concept_indices(concepts.slant(images), n, quantile=quantile,
                                                    rng=gen)}


def tcav_table(model, x_pool, concept_sets, class_inputs, layers, n_runs, n_random=50, alpha=0.01,
               rng=0, level=0.05):
    """TCAV over concepts x layers x classes, with ``n_runs`` random sets and the null.

    Inputs: x_pool (P, ...) model inputs that concept and random examples are
    taken from; concept_sets {name: indices into x_pool}; class_inputs
    {class: (M, ...) model inputs of that class}; layers {name: split index}.
    Random set i is ``n_random`` pool indices drawn without replacement (any
    digit).  Activations are computed once per layer; the CAVs depend only on
    (concept, layer, run), the null CAVs on (layer, run), and each is scored
    for every class.  Returns a list of dicts with keys concept, layer,
    class, result (a :class:`~cnnlib.analysis.tcav.TCAVResult`).
    """
    n_runs = check_count(n_runs, "n_runs", minimum=2)
    gen = np.random.default_rng(rng)
    random_idx = [gen.choice(len(x_pool), n_random, replace=False) for _ in range(n_runs)]
    rows = []
    for lname, k in layers.items():
        head = model[:k]
        acts = np.concatenate([head(x_pool[s:s + 500]) for s in range(0, len(x_pool), 500)])
        randoms = [acts[i] for i in random_idx]
        null = tcav.random_cavs(randoms, alpha, rng=gen)
        cavs = {c: tcav.train_cavs(acts[idx], randoms, alpha, rng=gen) for c, idx in concept_sets.items()}
        grads = {cls: tcav.layer_gradients(model, k, xc, cls)[1] for cls, xc in class_inputs.items()}
        for c in concept_sets:
            for cls in class_inputs:
                rows.append(dict(concept=c, layer=lname, cls=cls,
                                 result=tcav.significance(cavs[c], null, grads[cls], level)))
    return rows


def plot_attributions(images, maps, titles, row_labels, cmap="RdBu_r"):
    """A grid: the images in the first row, one row of attribution maps per entry of ``maps``.

    images (K, H, W); maps a list of (K, H, W) arrays; each map is shown on a
    symmetric colour scale of its own.  Returns the figure.
    """
    import matplotlib.pyplot as plt  # matplotlib is a dependency of the notebooks only
    k = len(images)
    fig, axes = plt.subplots(1 + len(maps), k, figsize=(1.45 * k, 1.5 * (1 + len(maps))), squeeze=False)
    for j in range(k):
        axes[0, j].imshow(images[j], cmap="gray_r")
        axes[0, j].set_title(titles[j], fontsize=8)
        for i, m in enumerate(maps):
            v = np.abs(m[j]).max() or 1.0
            axes[i + 1, j].imshow(m[j], cmap=cmap, vmin=-v, vmax=v)
    for i, label in enumerate(["digit"] + list(row_labels)):
        axes[i, 0].set_ylabel(label, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_tcav(rows, layers, classes, concepts_order):
    """Bar chart of TCAV scores (mean +- std over runs) with the null's mean +- std, one panel
    per layer; a star marks p <= 0.05.  Returns the figure."""
    import matplotlib.pyplot as plt  # matplotlib is a dependency of the notebooks only
    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 3.2), squeeze=False, sharey=True)
    width = 0.8 / (len(concepts_order) + 1)
    for ax, lname in zip(axes[0], layers):
        pos = np.arange(len(classes))
        for ci, c in enumerate(concepts_order + ["random (null)"]):
            means, stds, stars = [], [], []
            for cls in classes:
                want = concepts_order[0] if c == "random (null)" else c   # every row holds the null
                r = next(r["result"] for r in rows
                         if r["layer"] == lname and r["cls"] == cls and r["concept"] == want)
                s = r.null_scores if c == "random (null)" else r.scores
                means.append(s.mean())
                stds.append(s.std(ddof=1))
                stars.append(c != "random (null)" and r.significant)
            x = pos + (ci - len(concepts_order) / 2) * width
            ax.bar(x, means, width, yerr=stds, capsize=2, label=c,
                   color="0.75" if c == "random (null)" else None)
            for xi, m, sd, st in zip(x, means, stds, stars):
                if st:
                    ax.text(xi, min(m + sd + 0.02, 1.02), "*", ha="center", fontsize=10)
        ax.set_xticks(pos)
        ax.set_xticklabels([f"class {c}" for c in classes])
        ax.set_title(f"layer: {lname}")
        ax.set_ylim(0, 1.1)
    axes[0, 0].set_ylabel("TCAV score")
    axes[0, -1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig

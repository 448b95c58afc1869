"""Drivers for the chapter "Accelerators" (Part V): mapping layers onto systolic
arrays, and running LeNet-5 through analog crossbars.

* :func:`gemm_shapes`: the (N, K, M) im2col product of every Conv2d / Linear of a model;
* :func:`utilisation_table`, :func:`format_table`, :func:`plot_utilisation`: cycles,
  folds, mapping efficiency and utilisation of layers on arrays of several shapes;
* :func:`crossbar_sweeps`, :func:`plot_crossbar_sweeps`: test accuracy through
  crossbars as each non-ideality grows.
"""

import numpy as np

from .. import nn
from ..hardware import IOParameters, PCMParameters, SystolicArray, analog_forward
from ..hardware.crossbar import bits_to_res
from ..hardware.systolic import DATAFLOWS, conv_gemm_shape

__all__ = ["gemm_shapes", "VGG16_CONV3_2", "utilisation_table", "format_table", "best_dataflows",
           "plot_utilisation", "SWEEPS", "sweep_settings", "crossbar_accuracy", "crossbar_sweeps",
           "plot_crossbar_sweeps"]

#: The (name, (N, K, M)) of VGG-16's conv3_2 (Simonyan and Zisserman 2015), 56x56x256 to 256
#: channels, 3x3, padding 1.
VGG16_CONV3_2 = ("VGG-16 conv3_2", conv_gemm_shape((256, 56, 56), 256, 3, padding=1))


def gemm_shapes(model, input_shape):
    """[(name, (N, K, M))] for each Conv2d / Linear of a Sequential, one image of input_shape (C, H, W).

    A convolution's N is its output pixels, K = C kH kW, M its filters; a
    linear layer's is (1, in_features, out_features).
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be an nn.Sequential, got {type(model).__name__}")
    x = np.zeros((1, *input_shape), model[0].weight.dtype)
    shapes, counts = [], {"conv": 0, "fc": 0}
    for layer in model.children():
        y = layer.forward(x)
        if isinstance(layer, nn.Conv2d):
            counts["conv"] += 1
            shapes.append((f"conv{counts['conv']}", (y.shape[2] * y.shape[3],
                                                      int(np.prod(layer.weight.shape[1:])), y.shape[1])))
        elif isinstance(layer, nn.Linear):
            counts["fc"] += 1
            shapes.append((f"fc{counts['fc']}", (1, layer.in_features, layer.out_features)))
        x = y
    return shapes


def utilisation_table(layers, arrays, dataflows=DATAFLOWS):
    """One dict per (layer, array, dataflow): the numbers of the closed-form
    :class:`~cnnlib.hardware.systolic.SystolicRun`.

    layers: [(name, (N, K, M))]; arrays: [(rows, cols)].  Keys: layer,
    array, dataflow, folds, cycles, mapping_efficiency, utilisation, reads.
    """
    rows = []
    for name, (n, k, m) in layers:
        for r, c in arrays:
            for df in dataflows:
                run = SystolicArray(r, c, df).run(n, k, m)
                rows.append(dict(layer=name, array=f"{r}x{c}", dataflow=df, folds=run.folds,
                                 cycles=run.cycles, mapping_efficiency=run.mapping_efficiency,
                                 utilisation=run.utilisation, reads=sum(run.reads.values())))
    return rows


def format_table(rows):
    """The table as fixed-width text, one line per (layer, array): the folds, cycles and
    utilisation of each dataflow, and the fastest one (exact: integers and 3-decimal fractions)."""
    flows = list(dict.fromkeys(r["dataflow"] for r in rows))
    head = (f"{'layer':<15}{'array':>8}" + "".join(f"{'folds ' + f:>9}" for f in flows)
            + "".join(f"{'cycles ' + f:>11}" for f in flows) + "".join(f"{'util ' + f:>9}" for f in flows)
            + f"{'best':>6}")
    lines = [head, "-" * len(head)]
    keys = list(dict.fromkeys((r["layer"], r["array"]) for r in rows))
    best = best_dataflows(rows)
    for key in keys:
        by = {r["dataflow"]: r for r in rows if (r["layer"], r["array"]) == key}
        lines.append(f"{key[0]:<15}{key[1]:>8}" + "".join(f"{by[f]['folds']:>9}" for f in flows)
                     + "".join(f"{by[f]['cycles']:>11}" for f in flows)
                     + "".join(f"{by[f]['utilisation']:>9.3f}" for f in flows) + f"{best[key]:>6}")
    return "\n".join(lines)


def best_dataflows(rows):
    """{(layer, array): the dataflow with the fewest cycles (ties: the first of os, ws, is)}."""
    best = {}
    for r in rows:
        key = (r["layer"], r["array"])
        if key not in best or r["cycles"] < best[key]["cycles"]:
            best[key] = r
    return {k: v["dataflow"] for k, v in best.items()}


def plot_utilisation(rows, dataflow=None):
    """Figure: utilisation (bars) of each layer on each array, best dataflow per bar (or the given one)."""
    import matplotlib.pyplot as plt

    layers = list(dict.fromkeys(r["layer"] for r in rows))
    arrays = list(dict.fromkeys(r["array"] for r in rows))
    fig, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / len(arrays)
    for j, arr in enumerate(arrays):
        vals, labels = [], []
        for layer in layers:
            cand = [r for r in rows if r["layer"] == layer and r["array"] == arr
                    and (dataflow is None or r["dataflow"] == dataflow)]
            best = min(cand, key=lambda r: r["cycles"])
            vals.append(best["utilisation"])
            labels.append(best["dataflow"])
        xs = np.arange(len(layers)) + (j - (len(arrays) - 1) / 2) * width
        bars = ax.bar(xs, vals, width, label=arr)
        for bar, lab in zip(bars, labels):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, lab, ha="center",
                    fontsize=7)
    ax.set_xticks(np.arange(len(layers)), layers)
    ax.set_ylabel("utilisation (MACs / PE-cycles)")
    ax.set_ylim(0, 1.08)
    ax.legend(title="array", fontsize=8, ncols=len(arrays))
    ax.set_title("How well each layer fills the array (best dataflow written on each bar)", fontsize=10)
    fig.tight_layout()
    return fig


#: The non-idealities of the chapter and their values, each switched on alone (everything else ideal).
SWEEPS = {
    "DAC bits": [2, 3, 4, 7],
    "ADC bits": [3, 4, 5, 9],
    "conductance levels": [3, 5, 9],
    "output noise": [0.06, 0.25, 0.5, 1.0],
    "programming noise scale": [1.0, 2.0, 4.0, 8.0],
}
#: The sweeps whose non-ideality is random (run with several seeds).
RANDOM_SWEEPS = ("output noise", "programming noise scale")


def sweep_settings(name, value):
    """(IOParameters, PCMParameters) with only the named non-ideality on, at value (see :data:`SWEEPS`)."""
    io, dev = IOParameters.ideal(), PCMParameters.ideal()
    if name == "DAC bits":
        io = IOParameters.ideal(inp_res=bits_to_res(value), inp_bound=1.0)
    elif name == "ADC bits":
        io = IOParameters.ideal(out_res=bits_to_res(value), out_bound=12.0)
    elif name == "conductance levels":
        dev = PCMParameters.ideal(levels=value)
    elif name == "output noise":
        io = IOParameters.ideal(out_noise=value)
    elif name == "programming noise scale":
        dev = PCMParameters(prog_noise_scale=value)
    else:
        raise ValueError(f"name must be one of {list(SWEEPS)}, got {name!r}")
    return io, dev


def crossbar_accuracy(model, x, labels, io, device, rng):
    """Fraction of x (preprocessed images) classified right with the model's layers on crossbars."""
    return float(np.mean(analog_forward(model, x, io, device, rng).argmax(axis=1) == labels))


def crossbar_sweeps(model, x, labels, seeds=(0, 1), sweeps=None):
    """{name: (values, accuracies (len(values), n)}: n = len(seeds) for the noisy sweeps, 1 otherwise.

    Also ``"aihwkit defaults"``: ((), accuracies (1, len(seeds))) with every default on.
    """
    sweeps = SWEEPS if sweeps is None else sweeps
    out = {}
    for name, values in sweeps.items():
        runs = seeds if name in RANDOM_SWEEPS else seeds[:1]
        acc = np.array([[crossbar_accuracy(model, x, labels, *sweep_settings(name, v), rng=s) for s in runs]
                        for v in values])
        out[name] = (list(values), acc)
    out["aihwkit defaults"] = ((), np.array([[crossbar_accuracy(model, x, labels, IOParameters(),
                                                                PCMParameters(), rng=s) for s in seeds]]))
    return out


def plot_crossbar_sweeps(results, digital):
    """Figure: accuracy vs each non-ideality (one panel each; dots = seeds, line = mean)."""
    import matplotlib.pyplot as plt

    names = [n for n in results if n != "aihwkit defaults"]
    fig, axes = plt.subplots(1, len(names), figsize=(3.0 * len(names), 3.0), sharey=True)
    lowest = min(results[name][1].min() for name in names)
    for ax, name in zip(np.atleast_1d(axes), names):
        values, acc = results[name]
        xs = np.arange(len(values))
        for s in range(acc.shape[1]):
            ax.plot(xs, acc[:, s], "o", color="tab:blue", alpha=0.5, ms=4)
        ax.plot(xs, acc.mean(axis=1), "-", color="tab:blue")
        ax.axhline(digital, color="0.5", ls="--", lw=1)
        ax.set_xticks(xs, [str(v) for v in values])
        ax.set_xlabel(name)
    np.atleast_1d(axes)[0].set_ylim(max(0.0, lowest - 0.05), 1.02)
    np.atleast_1d(axes)[0].set_ylabel("test accuracy")
    fig.suptitle("LeNet-5 on crossbars, one non-ideality at a time (dashed: digital)", fontsize=10)
    fig.tight_layout()
    return fig

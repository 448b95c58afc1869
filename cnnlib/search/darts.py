"""DARTS: differentiable architecture search with hand-written backward passes.

A small version of Liu et al. (2019), following the reference code
(quark0/darts, ``cnn/operations.py``, ``cnn/model_search.py``,
``cnn/architect.py``):

* :class:`MixedOp`: an edge, ``sum_k w_k op_k(x)`` with ``w = softmax(alpha)``;
  its backward returns the gradient of the input and of ``w``;
* :class:`Cell`: two input nodes, ``steps`` intermediate nodes, each the sum
  of a mixed op on every earlier node; the output concatenates the
  intermediate nodes;
* :class:`Network`: stem, cells, global average pooling, classifier, and the
  architecture weights ``alphas`` (edges x operations), relaxed by a softmax
  or (option) by a Gumbel-softmax with a temperature;
* :class:`Architect`: the architecture step, first order or second order
  (the unrolled step with a finite-difference Hessian-vector product);
* :func:`genotype`: the discrete cell (top-2 incoming edges per node,
  excluding ``none``), and :class:`GenotypeNetwork` to retrain it;
* :func:`search`: the bilevel loop (a weight step on one half of the data,
  an architecture step on the other), with DARTS+ early stopping as a remedy
  against the collapse to skip connections.

Deviations from the reference, for a CPU: normal cells only (no reduction
cells: the stem may downsample instead), a reduced default candidate set
(:data:`SEARCH_PRIMITIVES`), no auxiliary head or drop-path.
See the chapter "Architecture search" (Part IV).
"""

from collections import namedtuple

import numpy as np

from .. import functional as F
from .. import nn
from .._random import get_rng
from .._validate import check_count, check_float_array, check_number
from ..optim import SGD, Adam
from ..optim.schedules import Cosine

__all__ = ["PRIMITIVES", "SEARCH_PRIMITIVES", "OPS", "Zero", "Identity", "ReLUConvBN", "SepConv",
           "DilConv", "PoolBN", "MixedOp", "Cell", "Network", "Architect", "Genotype", "genotype",
           "count_skips", "PARAMETER_FREE", "DiscreteCell", "GenotypeNetwork", "search"]

#: DARTS's eight candidate operations (``cnn/genotypes.py``), ``none`` first.
PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
              "dil_conv_3x3", "dil_conv_5x5")
#: The reduced set the chapter searches over (the 5x5 convolutions dropped, for time).
SEARCH_PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3",
                     "dil_conv_3x3")


class Zero(nn.Module):
    """The ``none`` operation: ``y = 0 * x`` (an edge that is absent)."""

    def forward(self, x):
        return np.zeros_like(x)

    def backward(self, grad_output):
        return np.zeros_like(grad_output)


class Identity(nn.Module):
    """``skip_connect``: ``y = x``."""

    def forward(self, x):
        return x

    def backward(self, grad_output):
        return grad_output


class _Chain(nn.Module):
    """A chain of layers kept as a :class:`~cnnlib.nn.Sequential` in ``self.op``."""

    def forward(self, x):
        return self.op(x)

    def backward(self, grad_output):
        return self.op.backward(grad_output)


class ReLUConvBN(_Chain):
    """ReLU, k x k convolution (no bias), batch norm: DARTS's preprocessing of a cell's inputs."""

    def __init__(self, c_in, c_out, kernel_size, stride=1, padding=0, affine=True, *, dtype=np.float32,
                 rng=None):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(), nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False, dtype=dtype, rng=rng),
            nn.BatchNorm2d(c_out, affine=affine, dtype=dtype))


class SepConv(_Chain):
    """DARTS's separable convolution: (ReLU, depthwise k x k, pointwise 1 x 1, BN) twice."""

    def __init__(self, c, kernel_size, padding, affine=True, *, dtype=np.float32, rng=None):
        super().__init__()
        kw = dict(dtype=dtype, rng=rng)
        self.op = nn.Sequential(
            nn.ReLU(), nn.DepthwiseSeparableConv2d(c, c, kernel_size, padding=padding, bias=False, **kw),
            nn.BatchNorm2d(c, affine=affine, dtype=dtype),
            nn.ReLU(), nn.DepthwiseSeparableConv2d(c, c, kernel_size, padding=padding, bias=False, **kw),
            nn.BatchNorm2d(c, affine=affine, dtype=dtype))


class DilConv(_Chain):
    """DARTS's dilated convolution: ReLU, depthwise k x k with dilation 2, pointwise 1 x 1, BN."""

    def __init__(self, c, kernel_size, padding, dilation=2, affine=True, *, dtype=np.float32, rng=None):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            nn.DepthwiseSeparableConv2d(c, c, kernel_size, padding=padding, dilation=dilation, bias=False,
                                        dtype=dtype, rng=rng),
            nn.BatchNorm2d(c, affine=affine, dtype=dtype))


class PoolBN(_Chain):
    """3 x 3 max or average pooling (stride 1, padding 1; the average without the padding),
    then a batch norm without affine parameters, as DARTS's ``MixedOp`` does in the search."""

    def __init__(self, kind, c, bn=True, *, dtype=np.float32):
        super().__init__()
        pool = (nn.MaxPool2d(3, 1, 1) if kind == "max"
                else nn.AvgPool2d(3, 1, 1, count_include_pad=False))
        layers = [pool, nn.BatchNorm2d(c, affine=False, dtype=dtype)] if bn else [pool]
        self.op = nn.Sequential(*layers)


def _make_op(name, c, affine, search, dtype, rng):
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return Identity()
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return PoolBN(name[:3], c, bn=search, dtype=dtype)
    k = int(name[-1])
    if name.startswith("sep_conv"):
        return SepConv(c, k, k // 2, affine=affine, dtype=dtype, rng=rng)
    return DilConv(c, k, 2 * (k // 2), affine=affine, dtype=dtype, rng=rng)


#: Constructors ``OPS[name](c, affine, dtype, rng)`` of the candidate operations (stride 1).
OPS = {name: (lambda c, affine=False, dtype=np.float32, rng=None, _n=name:
              _make_op(_n, c, affine, True, dtype, rng)) for name in PRIMITIVES}


def _check_primitives(primitives):
    primitives = tuple(primitives)
    bad = [p for p in primitives if p not in PRIMITIVES]
    if bad or len(set(primitives)) != len(primitives) or len(primitives) < 2:
        raise ValueError(f"primitives must be at least two distinct names from {PRIMITIVES}, "
                         f"got {primitives}")
    return primitives


class MixedOp(nn.Module):
    """One edge of the supernet: ``y = sum_k w_k op_k(x)`` over the candidate operations.

    Inputs of ``forward(x, weights)``:
    - x: (N, C, H, W)
    - weights: (K,) mixing weights, K = ``len(primitives)`` (usually ``softmax(alpha)``)

    Returns y of shape (N, C, H, W). ``backward(grad_output)`` returns
    ``(dx, dweights)`` with ``dweights_k = sum(grad_output * op_k(x))``; the
    operations' parameters get their gradients (each scaled by ``w_k``).
    The operations are registered under their names (``self.sep_conv_3x3``, ...).
    """

    def __init__(self, c, primitives=SEARCH_PRIMITIVES, *, dtype=np.float32, rng=None):
        super().__init__()
        self.primitives = _check_primitives(primitives)
        rng = get_rng(rng)
        for name in self.primitives:
            setattr(self, name, _make_op(name, c, False, True, dtype, rng))

    def forward(self, x, weights):
        weights = check_float_array(weights, "weights", ndim=1)
        if len(weights) != len(self.primitives):
            raise ValueError(f"weights must have {len(self.primitives)} entries (one per primitive), "
                             f"got shape {weights.shape}")
        outs = [getattr(self, name)(x) for name in self.primitives]
        y = np.zeros_like(x)
        for w, out in zip(weights, outs):
            y += w * out
        self.save_for_backward(outs, weights)
        return y

    def backward(self, grad_output):
        outs, weights = self.saved()
        dweights = np.array([np.vdot(grad_output, out) for out in outs], dtype=weights.dtype)
        dx = np.zeros_like(grad_output)
        for name, w in zip(self.primitives, weights):
            if name != "none":
                dx += getattr(self, name).backward(w * grad_output)
        return dx, dweights


class Cell(nn.Module):
    """A DARTS normal cell: two inputs, ``steps`` intermediate nodes, ``sum_{j<i} MixedOp_ij(s_j)``.

    Nodes 0 and 1 are the preprocessed inputs (ReLU, 1x1 conv, BN without
    affine); node ``i + 2`` sums a mixed op applied to every earlier node; the
    output concatenates the intermediate nodes along the channels. The
    ``2 + 3 + ... + (steps + 1)`` edges are ordered node by node, as in DARTS.

    Inputs of ``forward(s0, s1, weights)``: s0 (N, C_pp, H, W), s1 (N, C_p, H, W),
    weights (E, K). Returns (N, steps * C, H, W). ``backward(grad_output)``
    returns ``(ds0, ds1, dweights)``.
    """

    def __init__(self, steps, c_prev_prev, c_prev, c, primitives=SEARCH_PRIMITIVES, *, dtype=np.float32,
                 rng=None):
        super().__init__()
        self.steps = check_count(steps, "steps")
        self.c = c
        rng = get_rng(rng)
        self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, affine=False, dtype=dtype, rng=rng)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, affine=False, dtype=dtype, rng=rng)
        self.num_edges = sum(i + 2 for i in range(self.steps))
        for e in range(self.num_edges):
            setattr(self, f"edge{e}", MixedOp(c, primitives, dtype=dtype, rng=rng))

    def edges(self):
        """``(edge index, from node j, to intermediate node i)`` for every edge, in order."""
        out, e = [], 0
        for i in range(self.steps):
            for j in range(i + 2):
                out.append((e, j, i))
                e += 1
        return out

    def forward(self, s0, s1, weights):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            s = 0
            for e, j, node in self.edges():
                if node == i:
                    s = s + getattr(self, f"edge{e}")(states[j], weights[e])
            states.append(s)
        self.save_for_backward(len(weights), weights.dtype)
        return np.concatenate(states[2:], axis=1)

    def backward(self, grad_output):
        num_edges, dtype = self.saved()
        c = self.c
        grads = [None, None] + [grad_output[:, i * c:(i + 1) * c].copy() for i in range(self.steps)]
        dweights = np.zeros((num_edges, len(self.edge0.primitives)), dtype=dtype)
        for e, j, i in reversed(self.edges()):
            dx, dweights[e] = getattr(self, f"edge{e}").backward(grads[i + 2])
            grads[j] = dx if grads[j] is None else grads[j] + dx
        return self.preprocess0.backward(grads[0]), self.preprocess1.backward(grads[1]), dweights


def _global_avg_pool(x):
    return x.mean(axis=(2, 3))


def _stem(in_channels, c_stem, stride, dtype, rng):
    """3x3 convolution (no bias) and batch norm: the stem of the supernet and of its retrained cells."""
    return nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, stride=stride, padding=1, bias=False,
                                   dtype=dtype, rng=rng),
                         nn.BatchNorm2d(c_stem, dtype=dtype))


class Network(nn.Module):
    """The DARTS supernet: stem, ``layers`` normal cells, global average pooling, linear classifier.

    ``alphas`` (E, K) are the architecture parameters, shared by all cells
    (E edges per cell, K = ``len(primitives)``), initialised to
    ``1e-3 * randn`` as in DARTS. The mixing weights are ``softmax(alphas)``
    row by row, or, with ``gumbel=True``, a Gumbel-softmax sample at the
    temperature ``self.tau`` (fresh noise at each forward in training mode;
    the plain softmax in evaluation mode). The stem is a 3x3 convolution
    (``stem_stride`` 1 or 2, the latter standing in for a reduction cell) and BN.

    Inputs: x (N, in_channels, H, W). Returns logits (N, num_classes).
    ``backward(grad_output)`` adds the gradients of the weights and of
    ``alphas`` and returns the input's. See :meth:`weight_parameters` and
    :meth:`arch_parameters` for the two sets the bilevel optimisation updates.
    """

    def __init__(self, c=8, num_classes=10, layers=1, steps=2, primitives=SEARCH_PRIMITIVES, in_channels=1,
                 stem_multiplier=2, stem_stride=2, gumbel=False, tau=1.0, *, dtype=np.float32, rng=None):
        super().__init__()
        self.primitives = _check_primitives(primitives)
        self.layers, self.steps = check_count(layers, "layers"), check_count(steps, "steps")
        self.gumbel = bool(gumbel)
        self.tau = check_number(tau, "tau", positive=True)
        rng = get_rng(rng)
        self._rng = rng
        c_stem = stem_multiplier * c
        self.stem = _stem(in_channels, c_stem, stem_stride, dtype, rng)
        c_pp, c_p = c_stem, c_stem
        for k in range(self.layers):
            setattr(self, f"cell{k}", Cell(self.steps, c_pp, c_p, c, self.primitives, dtype=dtype, rng=rng))
            c_pp, c_p = c_p, self.steps * c
        self.classifier = nn.Linear(c_p, num_classes, dtype=dtype, rng=rng)
        num_edges = self.cell0.num_edges
        alphas = 1e-3 * rng.standard_normal((num_edges, len(self.primitives)))
        self.alphas = nn.Parameter(alphas.astype(dtype))

    def cells(self):
        return [getattr(self, f"cell{k}") for k in range(self.layers)]

    def weight_parameters(self):
        """Every parameter except ``alphas`` (what the weight optimiser updates)."""
        return [p for p in self.parameters() if p is not self.alphas]

    def arch_parameters(self):
        """``[alphas]`` (what the :class:`Architect` updates)."""
        return [self.alphas]

    def arch_weights(self):
        """``softmax(alphas)`` row by row, (E, K) float64: the mixing weights without noise."""
        a = self.alphas.data.astype(np.float64)
        return F.softmax(a, 1)

    def forward(self, x):
        a = self.alphas.data
        if self.gumbel and self.training:
            noise = F.sample_gumbel(a.shape, a.dtype, self._rng)
            weights = F.gumbel_softmax(a, self.tau, dim=1, gumbels=noise)
        else:
            noise, weights = None, F.softmax(a, 1)
        s0 = s1 = self.stem(x)
        for cell in self.cells():
            s0, s1 = s1, cell(s0, s1, weights)
        pooled = _global_avg_pool(s1)
        self.save_for_backward(s1.shape, noise, self.tau)
        return self.classifier(pooled)

    def backward(self, grad_output):
        shape, noise, tau = self.saved()
        g = self.classifier.backward(grad_output)
        g1 = np.broadcast_to(g[:, :, None, None] / (shape[2] * shape[3]), shape).astype(g.dtype)
        g0 = None
        dweights = np.zeros_like(self.alphas.data)
        for cell in reversed(self.cells()):
            ds0, ds1, dw = cell.backward(g1)
            dweights += dw
            # cell k took (s0, s1) = (output of k-2, output of k-1)
            g1 = ds1 if g0 is None else ds1 + g0
            g0 = ds0
        g_stem = g1 + g0  # the first cell's two inputs are both the stem's output
        a = self.alphas.data
        if noise is not None:
            self.alphas.grad += F.gumbel_softmax_backward(dweights, a, noise, tau, dim=1)
        else:
            self.alphas.grad += F.softmax_backward(dweights, a, 1)
        return self.stem.backward(g_stem)

    def genotype(self, max_skips=None):
        """The discrete cell of the current ``alphas``: see :func:`genotype`."""
        return genotype(self.arch_weights(), self.steps, self.primitives, max_skips=max_skips)


Genotype = namedtuple("Genotype", "normal normal_concat")
Genotype.__doc__ = """A discrete cell: ``normal`` lists ``(operation, input node)`` pairs, two per
intermediate node; ``normal_concat`` the nodes concatenated at the output (as in DARTS's genotypes.py)."""


def genotype(weights, steps, primitives=SEARCH_PRIMITIVES, max_skips=None):
    """DARTS's parsing of the architecture weights into a cell.

    For intermediate node ``i`` (edges from nodes ``0 .. i+1``), each edge's
    strength is its largest weight over the operations other than ``none``;
    the two strongest edges are kept, each with its strongest non-``none``
    operation (``model_search.py``, ``_parse``). ``max_skips`` (optional)
    limits the number of ``skip_connect`` in the result, as P-DARTS does
    (Chen et al. 2019): while there are more, the weakest skip edge takes its
    strongest other operation.

    Inputs:
    - weights: (E, K) array (softmax of the alphas), E = 2 + 3 + ... + (steps + 1)
    - steps: number of intermediate nodes
    - primitives: the K operation names, including ``none``

    Returns a :class:`Genotype`.
    """
    w = np.asarray(weights, dtype=np.float64)
    primitives = _check_primitives(primitives)
    steps = check_count(steps, "steps")
    num_edges = sum(i + 2 for i in range(steps))
    if w.shape != (num_edges, len(primitives)):
        raise ValueError(f"weights must have shape {(num_edges, len(primitives))} for steps={steps} and "
                         f"{len(primitives)} primitives, got {w.shape}")
    if "none" not in primitives:
        raise ValueError("primitives must include 'none'")
    none = primitives.index("none")
    masked = w.copy()
    masked[:, none] = -np.inf
    gene, strength, start = [], [], 0
    for i in range(steps):
        rows = masked[start:start + i + 2]
        edges = sorted(range(i + 2), key=lambda j: -rows[j].max())[:2]
        for j in edges:
            k = int(rows[j].argmax())
            gene.append([primitives[k], j])
            strength.append((rows[j].max(), start + j))
        start += i + 2
    if max_skips is not None:
        max_skips = check_count(max_skips, "max_skips", minimum=0)
        skips = [n for n, (op, _) in enumerate(gene) if op == "skip_connect"]
        skips.sort(key=lambda n: strength[n][0])
        skip = primitives.index("skip_connect") if "skip_connect" in primitives else None
        while len(skips) > max_skips:
            n = skips.pop(0)
            row = masked[strength[n][1]].copy()
            row[skip] = -np.inf
            gene[n][0] = primitives[int(row.argmax())]
    return Genotype(normal=[tuple(g) for g in gene], normal_concat=list(range(2, 2 + steps)))


#: The candidates without weights, which win early in a search (the collapse).
PARAMETER_FREE = ("skip_connect", "max_pool_3x3", "avg_pool_3x3")


def count_skips(geno, ops=("skip_connect",)):
    """The number of ``skip_connect`` operations (or of any of ``ops``) in a :class:`Genotype`."""
    return sum(op in ops for op, _ in geno.normal)


class DiscreteCell(nn.Module):
    """The cell of a :class:`Genotype`: node ``i`` is the sum of its two chosen operations.

    The operations are built with affine batch norms (as DARTS's evaluation
    network, ``model.py``); pools have no batch norm there. ``forward(s0, s1)``
    returns (N, steps * C, H, W); ``backward`` returns ``(ds0, ds1)``.
    """

    def __init__(self, geno, c_prev_prev, c_prev, c, *, dtype=np.float32, rng=None):
        super().__init__()
        if not isinstance(geno, Genotype):
            raise TypeError(f"geno must be a Genotype, got {type(geno).__name__}")
        rng = get_rng(rng)
        self.gene = list(geno.normal)
        self.steps = len(self.gene) // 2
        self.c = c
        self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, dtype=dtype, rng=rng)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, dtype=dtype, rng=rng)
        for n, (op, j) in enumerate(self.gene):
            if op == "none" or op not in PRIMITIVES:
                raise ValueError(f"geno.normal[{n}] has operation {op!r}, not a non-'none' primitive")
            if not 0 <= j < 2 + n // 2:
                raise ValueError(f"geno.normal[{n}] takes input node {j}, which does not exist yet")
            setattr(self, f"op{n}", _make_op(op, c, True, False, dtype, rng))

    def forward(self, s0, s1):
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            a, b = 2 * i, 2 * i + 1
            states.append(getattr(self, f"op{a}")(states[self.gene[a][1]])
                          + getattr(self, f"op{b}")(states[self.gene[b][1]]))
        return np.concatenate(states[2:], axis=1)

    def backward(self, grad_output):
        c = self.c
        grads = [None, None] + [grad_output[:, i * c:(i + 1) * c].copy() for i in range(self.steps)]
        for n in reversed(range(len(self.gene))):
            j = self.gene[n][1]
            dx = getattr(self, f"op{n}").backward(grads[2 + n // 2])
            grads[j] = dx if grads[j] is None else grads[j] + dx
        zero = np.zeros_like(grad_output[:, :c])
        return (self.preprocess0.backward(zero if grads[0] is None else grads[0]),
                self.preprocess1.backward(zero if grads[1] is None else grads[1]))


class GenotypeNetwork(Network):
    """The network of a found cell, for retraining: the :class:`Network` layout with
    :class:`DiscreteCell` s instead of mixed cells (no ``alphas``)."""

    def __init__(self, geno, c=8, num_classes=10, layers=1, in_channels=1, stem_multiplier=2, stem_stride=2,
                 *, dtype=np.float32, rng=None):
        nn.Module.__init__(self)
        self.layers = check_count(layers, "layers")
        rng = get_rng(rng)
        c_stem = stem_multiplier * c
        self.stem = _stem(in_channels, c_stem, stem_stride, dtype, rng)
        c_pp, c_p = c_stem, c_stem
        for k in range(self.layers):
            cell = DiscreteCell(geno, c_pp, c_p, c, dtype=dtype, rng=rng)
            setattr(self, f"cell{k}", cell)
            c_pp, c_p = c_p, cell.steps * c
        self.classifier = nn.Linear(c_p, num_classes, dtype=dtype, rng=rng)

    def weight_parameters(self):
        """Every parameter (there are no architecture parameters here)."""
        return list(self.parameters())

    def arch_parameters(self):
        return []

    def forward(self, x):
        s0 = s1 = self.stem(x)
        for cell in self.cells():
            s0, s1 = s1, cell(s0, s1)
        self.save_for_backward(s1.shape)
        return self.classifier(_global_avg_pool(s1))

    def backward(self, grad_output):
        (shape,) = self.saved()
        g = self.classifier.backward(grad_output)
        g1 = np.broadcast_to(g[:, :, None, None] / (shape[2] * shape[3]), shape).astype(g.dtype)
        g0 = None
        for cell in reversed(self.cells()):
            ds0, ds1 = cell.backward(g1)
            g1 = ds1 if g0 is None else ds1 + g0
            g0 = ds0
        return self.stem.backward(g1 + g0)


def _loss_backward(model, x, y):
    """Zero every gradient, then forward, cross-entropy and backward; returns the loss."""
    model.zero_grad()
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    return float(loss)


def _flat_norm(arrays):
    return float(np.sqrt(sum(float(np.vdot(a, a)) for a in arrays)))


class Architect:
    """DARTS's architecture step (``cnn/architect.py``): Adam on ``alphas`` with the validation loss.

    First order (``unrolled=False``): ``grad_alpha L_val(w, alpha)``.
    Second order (``unrolled=True``): the gradient at the unrolled weights
    ``w' = w - eta * (momentum * buf + grad_w L_train(w) + weight_decay * w)``
    (one step of the weight optimiser), corrected by the finite-difference
    Hessian-vector product::

        grad_alpha L_val(w', alpha)
            - eta * (grad_alpha L_train(w+) - grad_alpha L_train(w-)) / (2 eps)

    with ``v = grad_w' L_val(w', alpha)``, ``w+- = w +- eps v`` and
    ``eps = r / ||v||``, ``r = 0.01`` as in DARTS (a smaller ``r`` tracks the
    exact product more closely where the loss is smooth; ReLU and max-pool kinks
    make a step of 0.01 in the weights cost a few per cent of accuracy on tiny
    nets). The optimiser is Adam (lr 3e-4, betas (0.5, 0.999), weight decay
    1e-3 by default). ``passes`` counts the forward/backward
    passes spent: 1 per first-order step, 4 per second-order step.
    """

    def __init__(self, model, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3, unrolled=False, r=0.01):
        if not isinstance(model, Network):
            raise TypeError(f"model must be a search Network, got {type(model).__name__}")
        self.model = model
        self.unrolled = bool(unrolled)
        self.r = check_number(r, "r", positive=True)
        self.optimizer = Adam(model.arch_parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
        self.passes = 0

    def gradient(self, x_train, y_train, x_val, y_val, eta=0.0, network_optimizer=None):
        """The architecture gradient (E, K) (the model's weights are left as they were)."""
        model = self.model
        if not self.unrolled:
            _loss_backward(model, x_val, y_val)
            self.passes += 1
            return model.alphas.grad.copy()
        eta = check_number(eta, "eta")
        params = model.weight_parameters()
        w = [p.data.copy() for p in params]
        _loss_backward(model, x_train, y_train)
        momentum, weight_decay, bufs = 0.0, 0.0, [None] * len(params)
        if network_optimizer is not None:
            momentum, weight_decay = network_optimizer.momentum, network_optimizer.weight_decay
            index = {id(p): i for i, p in enumerate(network_optimizer.params)}
            bufs = [network_optimizer.state[index[id(p)]].get("momentum_buffer") if id(p) in index else None
                    for p in params]
        for p, w0, buf in zip(params, w, bufs):
            step = p.grad + weight_decay * w0
            if buf is not None:
                step = step + momentum * buf
            p.data[...] = w0 - eta * step
        _loss_backward(model, x_val, y_val)
        dalpha = model.alphas.grad.copy()
        v = [p.grad.copy() for p in params]
        r = self.r / _flat_norm(v)
        grads = []
        for sign in (1, -1):
            for p, w0, vi in zip(params, w, v):
                p.data[...] = w0 + sign * r * vi
            _loss_backward(model, x_train, y_train)
            grads.append(model.alphas.grad.copy())
        for p, w0 in zip(params, w):
            p.data[...] = w0
        self.passes += 4
        return dalpha - eta * (grads[0] - grads[1]) / (2 * r)

    def step(self, x_train, y_train, x_val, y_val, eta=0.0, network_optimizer=None):
        """One Adam step on ``alphas``; returns the gradient used."""
        g = self.gradient(x_train, y_train, x_val, y_val, eta, network_optimizer)
        self.model.zero_grad()
        self.model.alphas.grad[...] = g
        self.optimizer.step()
        self.model.alphas.grad.fill(0)
        return g


def _clip_grad_norm(params, max_norm):
    norm = _flat_norm([p.grad for p in params])
    if norm > max_norm:
        for p in params:
            p.grad *= max_norm / (norm + 1e-6)
    return norm


def search(model, x_train, y_train, x_val, y_val, steps, batch_size=32, lr=0.025, lr_min=0.001,
           momentum=0.9, weight_decay=3e-4, arch_lr=3e-4, arch_weight_decay=1e-3, unrolled=False,
           grad_clip=5.0, tau_schedule=None, stop_at_skips=None, stop_ops=("skip_connect",), check_every=None,
           rng=None):
    """DARTS's bilevel search loop (``train_search.py``), ``steps`` weight steps long.

    Each step draws a minibatch from each half of the training data; the
    :class:`Architect` updates ``alphas`` on the architecture half (``x_val``),
    then SGD (momentum 0.9, weight decay 3e-4, cosine learning rate from
    ``lr`` to ``lr_min``, gradient norm clipped at 5) updates the weights on
    the weight half. ``tau_schedule(step)`` sets the Gumbel temperature when
    the network is a Gumbel one. ``stop_at_skips=k`` is DARTS+'s early
    stopping (Liang et al. 2019): every ``check_every`` steps the genotype is
    parsed, and the search stops once it holds ``k`` or more skip connections
    (or of any of the operations in ``stop_ops``: ``PARAMETER_FREE`` extends the
    criterion to pooling, the other weight-free candidates).

    Returns a dict: ``weights`` (list of (E, K) softmax(alphas), one per step),
    ``train_loss`` per step, ``genotypes`` (step, Genotype) at each check,
    ``weight_steps``, ``arch_passes`` (forward/backward passes of the
    architect), ``stopped_at`` (the step DARTS+ stopped at, or None).
    """
    if not isinstance(model, Network):
        raise TypeError(f"model must be a search Network, got {type(model).__name__}")
    steps, batch_size = check_count(steps, "steps"), check_count(batch_size, "batch_size")
    for name, arr in (("x_train", x_train), ("x_val", x_val)):
        check_float_array(arr, name, ndim=4)
    check_every = check_count(check_every, "check_every") if check_every is not None else max(1, steps // 10)
    rng = get_rng(rng)
    params = model.weight_parameters()
    optimizer = SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    schedule = Cosine(lr, steps, min_lr=lr_min)
    architect = Architect(model, arch_lr, (0.5, 0.999), arch_weight_decay, unrolled=unrolled)
    record = dict(weights=[], train_loss=[], genotypes=[], tau=[], stopped_at=None)
    model.train()
    done = 0
    for step in range(steps):
        optimizer.lr = schedule(step)
        if tau_schedule is not None:
            model.tau = float(tau_schedule(step))
        i = rng.integers(0, len(x_train), batch_size)
        j = rng.integers(0, len(x_val), batch_size)
        architect.step(x_train[i], y_train[i], x_val[j], y_val[j], optimizer.lr, optimizer)
        loss = _loss_backward(model, x_train[i], y_train[i])
        model.alphas.grad.fill(0)
        if grad_clip is not None:
            _clip_grad_norm(params, grad_clip)
        optimizer.step()
        done += 1
        record["weights"].append(model.arch_weights())
        record["train_loss"].append(loss)
        record["tau"].append(model.tau)
        if (step + 1) % check_every == 0 or step + 1 == steps:
            geno = model.genotype()
            record["genotypes"].append((step + 1, geno))
            if stop_at_skips is not None and count_skips(geno, stop_ops) >= stop_at_skips:
                record["stopped_at"] = step + 1
                break
    record["weight_steps"] = done
    record["arch_passes"] = architect.passes
    return record

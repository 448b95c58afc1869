"""DARTS: mixed ops, cells and the supernet against central differences (float64), the
architect's first- and second-order steps against manual computations, genotype parsing."""

import numpy as np
import pytest
from naive import numerical_gradient, rel_error

from cnnlib import functional as F
from cnnlib import nn
from cnnlib.search import darts

TOL = 1e-6


def sampled_check(f, x, analytic, rng, n=12, h=1e-6):
    """Central differences of the scalar f() at n random entries of the array x (in place)."""
    for flat in rng.choice(x.size, size=min(n, x.size), replace=False):
        ix = np.unravel_index(flat, x.shape)
        old = x[ix]
        x[ix] = old + h
        pos = f()
        x[ix] = old - h
        neg = f()
        x[ix] = old
        num = (pos - neg) / (2 * h)
        assert abs(num - analytic[ix]) <= TOL * max(1.0, abs(num)), (ix, num, analytic[ix])


@pytest.mark.parametrize("name", darts.PRIMITIVES)
def test_each_candidate_operation_gradient(name):
    rng = np.random.default_rng(1)
    op = darts.OPS[name](3, False, np.float64, 0)
    x = rng.standard_normal((2, 3, 6, 6))
    y = op(x)
    assert y.shape == x.shape
    dy = rng.standard_normal(y.shape)
    dx = op.backward(dy)
    num = numerical_gradient(lambda v: op(v), x, dy)
    assert rel_error(dx, num) < TOL


def test_mixed_op_is_the_weighted_sum_and_its_gradients():
    rng = np.random.default_rng(2)
    m = darts.MixedOp(2, dtype=np.float64, rng=0)
    x = rng.standard_normal((2, 2, 5, 5))
    w = F.softmax(rng.standard_normal(len(m.primitives)), 0)
    y = m(x, w)
    outs = [getattr(m, name)(x) for name in m.primitives]
    assert np.allclose(y, sum(wk * o for wk, o in zip(w, outs)))
    m(x, w)
    dy = rng.standard_normal(y.shape)
    dx, dw = m.backward(dy)
    assert rel_error(dx, numerical_gradient(lambda v: m(v, w), x, dy)) < TOL
    assert rel_error(dw, numerical_gradient(lambda v: m(x, v), w.copy(), dy)) < TOL
    assert np.allclose(dw, [np.sum(dy * o) for o in outs])


def test_mixed_op_bad_weights():
    m = darts.MixedOp(2, dtype=np.float64, rng=0)
    x = np.zeros((1, 2, 4, 4))
    with pytest.raises(ValueError, match="weights"):
        m(x, np.ones(3))
    with pytest.raises(TypeError, match="weights"):
        m(x, [0.5] * 6)
    with pytest.raises(ValueError, match="primitives"):
        darts.MixedOp(2, primitives=("none", "conv_7x7"))


def test_cell_gradients_wrt_inputs_and_weights():
    rng = np.random.default_rng(3)
    cell = darts.Cell(2, 3, 2, 2, dtype=np.float64, rng=0)
    s0, s1 = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((2, 2, 5, 5))
    w = F.softmax(rng.standard_normal((cell.num_edges, 6)), 1)
    y = cell(s0, s1, w)
    assert y.shape == (2, 4, 5, 5)
    dy = rng.standard_normal(y.shape)
    ds0, ds1, dw = cell.backward(dy)
    assert rel_error(ds0, numerical_gradient(lambda v: cell(v, s1, w), s0, dy)) < TOL
    assert rel_error(ds1, numerical_gradient(lambda v: cell(s0, v, w), s1, dy)) < TOL
    assert rel_error(dw, numerical_gradient(lambda v: cell(s0, s1, v), w.copy(), dy)) < TOL


def tiny_network(layers=2, gumbel=False):
    return darts.Network(c=2, num_classes=3, layers=layers, steps=2, stem_multiplier=1, stem_stride=1,
                         gumbel=gumbel, tau=0.7, dtype=np.float64, rng=0)


def loss_of(model, x, y):
    return float(nn.CrossEntropyLoss()(model(x), y))


# One layer: a cell fed the stem twice.  Three layers add a cell fed the stem
# and a cell, and one fed two cells, which is all that two layers would add.
@pytest.mark.parametrize("layers", [1, 3])
def test_network_gradients_wrt_input_weights_and_alphas(layers):
    rng = np.random.default_rng(4)
    model = tiny_network(layers)
    model.alphas.data[...] = rng.standard_normal(model.alphas.shape)
    x, y = rng.standard_normal((3, 1, 5, 5)), rng.integers(0, 3, 3)
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    loss_fn(model(x), y)
    dx = model.backward(loss_fn.backward())
    sampled_check(lambda: loss_of(model, x, y), x, dx, rng)
    a = model.alphas
    assert rel_error(a.grad, numerical_gradient(lambda v: loss_of(model, x, y), a.data, 1.0)) < TOL
    for name, p in model.named_parameters():
        if p is not a:
            sampled_check(lambda: loss_of(model, x, y), p.data, p.grad, rng, n=2)


def test_gumbel_network_gradient_for_fixed_noise():
    rng = np.random.default_rng(5)
    model = tiny_network(1, gumbel=True)
    x, y = rng.standard_normal((2, 1, 5, 5)), rng.integers(0, 3, 2)
    model._rng = np.random.default_rng(9)
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())

    def f(_):
        model._rng = np.random.default_rng(9)  # the same noise at every evaluation
        return loss_of(model, x, y)

    num = numerical_gradient(f, model.alphas.data, 1.0)
    assert rel_error(model.alphas.grad, num) < TOL
    model.eval()  # evaluation: the plain softmax, no noise
    assert np.allclose(model(x), model(x))


def test_weight_and_arch_parameters_partition_the_parameters():
    model = tiny_network()
    w, a = model.weight_parameters(), model.arch_parameters()
    assert a == [model.alphas]
    assert len(w) + 1 == len(list(model.parameters()))
    assert model.alphas.shape == (5, 6)
    assert np.abs(model.alphas.data).max() < 1e-2  # 1e-3 * randn


def batch(rng, n=4):
    return rng.standard_normal((n, 1, 5, 5)), rng.integers(0, 3, n)


def test_first_order_step_equals_adam_on_the_validation_gradient():
    rng = np.random.default_rng(6)
    model = tiny_network(1)
    (xt, yt), (xv, yv) = batch(rng), batch(rng)
    a0 = model.alphas.data.copy()
    w0 = [p.data.copy() for p in model.weight_parameters()]
    model.zero_grad()
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(xv), yv)
    model.backward(loss_fn.backward())
    g = model.alphas.grad.copy() + 1e-3 * a0
    arch = darts.Architect(model)
    arch.step(xt, yt, xv, yv)
    # Adam's first step with betas (0.5, 0.999): a - lr * m_hat / (sqrt(v_hat) + eps)
    m_hat, v_hat = g, g * g
    expected = a0 - 3e-4 * m_hat / (np.sqrt(v_hat) + 1e-8)
    assert np.allclose(model.alphas.data, expected, rtol=0, atol=1e-12)
    assert all(np.array_equal(p.data, w) for p, w in zip(model.weight_parameters(), w0))
    assert arch.passes == 1


def flat_grad_alpha(model, x, y):
    model.zero_grad()
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), y)
    model.backward(loss_fn.backward())
    return model.alphas.grad.copy(), [p.grad.copy() for p in model.weight_parameters()]


def test_second_order_gradient_against_exact_unrolled_derivative():
    """d/dalpha L_val(w - eta grad_w L_train(w, alpha), alpha) by central differences of the
    whole unrolled loss, against the architect's finite-difference Hessian-vector product."""
    rng = np.random.default_rng(7)
    model = tiny_network(1)
    for bn in [m for _, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]:
        bn.momentum = 0.0  # the running statistics play no part in training mode; keep them fixed
    model.alphas.data[...] = 0.5 * rng.standard_normal(model.alphas.shape)
    (xt, yt), (xv, yv) = batch(rng), batch(rng)
    eta = 0.1
    params = model.weight_parameters()

    def unrolled_loss():
        w = [p.data.copy() for p in params]
        _, gw = flat_grad_alpha(model, xt, yt)
        for p, g in zip(params, gw):
            p.data -= eta * g
        loss = loss_of(model, xv, yv)
        for p, w0 in zip(params, w):
            p.data[...] = w0
        return loss

    num = numerical_gradient(lambda v: unrolled_loss(), model.alphas.data, 1.0, h=1e-5)
    arch = darts.Architect(model, unrolled=True, r=1e-5)
    g = arch.gradient(xt, yt, xv, yv, eta=eta)
    assert rel_error(g, num) < 1e-5   # exact up to the finite differences
    assert arch.passes == 4
    g_darts = darts.Architect(model, unrolled=True).gradient(xt, yt, xv, yv, eta=eta)  # r = 0.01
    assert rel_error(g_darts, num) < 0.1  # kinks of ReLU / max pooling within a step of 0.01
    first = darts.Architect(model).gradient(xt, yt, xv, yv)
    assert rel_error(g, first) > 1e-3  # the second-order term is not negligible here


def test_second_order_uses_the_optimizer_momentum_and_weight_decay():
    rng = np.random.default_rng(8)
    model = tiny_network(1)
    (xt, yt), (xv, yv) = batch(rng), batch(rng)
    opt = darts.SGD(model.weight_parameters(), lr=0.1, momentum=0.9, weight_decay=3e-4)
    flat_grad_alpha(model, xt, yt)
    opt.step()  # now there is a momentum buffer
    params = model.weight_parameters()
    w = [p.data.copy() for p in params]
    _, gw = flat_grad_alpha(model, xt, yt)
    bufs = [s["momentum_buffer"] for s in opt.state]
    for p, w0, g, b in zip(params, w, gw, bufs):
        p.data[...] = w0 - 0.05 * (0.9 * b + g + 3e-4 * w0)
    dalpha, v = flat_grad_alpha(model, xv, yv)
    r = 0.01 / np.sqrt(sum(np.sum(vi * vi) for vi in v))
    hv = []
    for sign in (1, -1):
        for p, w0, vi in zip(params, w, v):
            p.data[...] = w0 + sign * r * vi
        hv.append(flat_grad_alpha(model, xt, yt)[0])
    for p, w0 in zip(params, w):
        p.data[...] = w0
    expected = dalpha - 0.05 * (hv[0] - hv[1]) / (2 * r)
    got = darts.Architect(model, unrolled=True).gradient(xt, yt, xv, yv, 0.05, opt)
    assert np.allclose(got, expected, rtol=1e-10, atol=1e-12)
    assert all(np.array_equal(p.data, w0) for p, w0 in zip(params, w))


def test_genotype_keeps_the_top_two_edges_without_none():
    prims = darts.SEARCH_PRIMITIVES  # none, max, avg, skip, sep3, dil3
    w = np.full((5, 6), 0.1)
    w[:, 0] = 0.9            # 'none' is strongest everywhere: it must be ignored
    w[0, 4] = 0.5            # node 2: edges from 0 and 1 (both kept)
    w[1, 3] = 0.3
    w[2, 1] = 0.2            # node 3: edges from 0, 1, 2: keep 2 (0.6) and 0 (0.2 vs 0.15)
    w[3, 2] = 0.15
    w[4, 5] = 0.6
    geno = darts.genotype(w, 2, prims)
    assert geno.normal == [("sep_conv_3x3", 0), ("skip_connect", 1), ("dil_conv_3x3", 2), ("max_pool_3x3", 0)]
    assert geno.normal_concat == [2, 3]
    assert darts.count_skips(geno) == 1
    limited = darts.genotype(w, 2, prims, max_skips=0)
    assert darts.count_skips(limited) == 0
    assert limited.normal[1] == ("max_pool_3x3", 1)  # the next strongest (all ties at 0.1: the first)


def test_genotype_bad_input():
    with pytest.raises(ValueError, match="shape"):
        darts.genotype(np.ones((4, 6)), 2)
    with pytest.raises(ValueError, match="none"):
        darts.genotype(np.ones((5, 2)), 2, ("skip_connect", "sep_conv_3x3"))
    with pytest.raises(TypeError, match="geno"):
        darts.DiscreteCell([("skip_connect", 0)], 2, 2, 2)


def test_genotype_network_gradient_and_shapes():
    rng = np.random.default_rng(9)
    ops = [("sep_conv_3x3", 0), ("skip_connect", 1), ("max_pool_3x3", 2), ("dil_conv_3x3", 0)]
    geno = darts.Genotype(ops, [2, 3])
    model = darts.GenotypeNetwork(geno, c=2, num_classes=3, layers=2, stem_multiplier=1, stem_stride=1,
                                  dtype=np.float64, rng=0)
    x, y = rng.standard_normal((3, 1, 5, 5)), rng.integers(0, 3, 3)
    loss_fn = nn.CrossEntropyLoss()
    model.zero_grad()
    loss_fn(model(x), y)
    dx = model.backward(loss_fn.backward())
    sampled_check(lambda: loss_of(model, x, y), x, dx, rng)
    for _, p in model.named_parameters():
        sampled_check(lambda: loss_of(model, x, y), p.data, p.grad, rng, n=2)


def test_search_loop_records_and_darts_plus_stops_on_the_same_trajectory():
    rng = np.random.default_rng(10)
    x, y = rng.standard_normal((16, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 16)

    def run(**kw):
        model = darts.Network(c=2, num_classes=3, stem_stride=1, rng=0)
        return darts.search(model, x[:8], y[:8], x[8:], y[8:], steps=12, batch_size=4, arch_lr=0.05,
                            check_every=1, rng=1, **kw)

    full = run()
    assert full["weight_steps"] == 12 and full["arch_passes"] == 12
    assert len(full["weights"]) == 12 and np.allclose(full["weights"][-1].sum(axis=1), 1)
    skips = [darts.count_skips(g) for _, g in full["genotypes"]]
    k = max(skips)
    stopped = run(stop_at_skips=k)
    first = skips.index(k) + 1
    assert stopped["stopped_at"] == first == stopped["weight_steps"]
    assert np.array_equal(stopped["weights"][-1], full["weights"][first - 1])
    with pytest.raises(TypeError, match="model"):
        darts.search(nn.Linear(2, 2), x, y, x, y, steps=1)


def test_gumbel_search_follows_the_temperature_schedule():
    rng = np.random.default_rng(11)
    x, y = rng.standard_normal((8, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, 8)
    model = darts.Network(c=2, num_classes=3, stem_stride=1, gumbel=True, tau=5.0, rng=0)
    record = darts.search(model, x, y, x, y, steps=4, batch_size=4, rng=1,
                          tau_schedule=lambda step: 2.0 * 0.5 ** step)
    assert record["tau"] == [2.0, 1.0, 0.5, 0.25] and model.tau == 0.25
    assert np.all(np.isfinite(record["weights"][-1]))

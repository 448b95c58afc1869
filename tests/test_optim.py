"""Tests for cnnlib.optim: hand-computed steps, convergence, and torch.optim as reference."""

import numpy as np
import pytest

from cnnlib import optim
from cnnlib.nn import Parameter


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal(shape).astype(dtype)) for shape in [(3, 4), (5,), (2, 1, 3, 3)]]


def grads_for(params, step, seed=1):
    rng = np.random.default_rng(seed + step)
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


# ----------------------------------------------------------------------------
# Without PyTorch
# ----------------------------------------------------------------------------

def test_sgd_first_steps_by_hand():
    p = Parameter(np.array([1.0, -2.0]))
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    p.grad[...] = [1.0, 1.0]
    opt.step()
    # g = 1 + 0.5 * p = [1.5, 0.0]; buf = g; p -= 0.1 * buf
    np.testing.assert_allclose(p.data, [0.85, -2.0])
    opt.step()
    # g = 1 + 0.5 * [0.85, -2] = [1.425, 0.0]; buf = 0.9 * [1.5, 0] + g = [2.775, 0]
    np.testing.assert_allclose(p.data, [0.85 - 0.2775, -2.0])


def test_adam_first_step_is_lr_times_sign():
    # After one step the bias-corrected ratio m / sqrt(v) is sign(g) (up to eps).
    p = Parameter(np.array([1.0, 1.0, 1.0]))
    p.grad[...] = [3.0, -0.5, 1e-3]
    opt = optim.Adam([p], lr=0.01, eps=0.0)
    opt.step()
    np.testing.assert_allclose(p.data, [0.99, 1.01, 0.99])


@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.SGD(ps, lr=0.1),
    lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9),
    lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True),
    lambda ps: optim.Adam(ps, lr=0.1),
], ids=["sgd", "momentum", "nesterov", "adam"])
def test_minimises_a_quadratic(make_opt):
    # f(x) = 0.5 * sum(a * (x - c)^2) with different curvatures a.
    a = np.array([1.0, 4.0, 0.5])
    c = np.array([2.0, -1.0, 3.0])
    p = Parameter(np.zeros(3))
    opt = make_opt([p])
    for _ in range(500):
        opt.zero_grad()
        p.grad += a * (p.data - c)
        opt.step()
    np.testing.assert_allclose(p.data, c, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make_opt", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
    lambda ps: optim.Adam(ps, weight_decay=0.01),
])
def test_updates_in_place_and_keep_dtype(make_opt, dtype):
    params = make_params(dtype)
    arrays = [p.data for p in params]
    before = [a.copy() for a in arrays]
    opt = make_opt(params)
    for p, g in zip(params, grads_for(params, 0)):
        p.grad[...] = g
    opt.step()
    for p, a, b in zip(params, arrays, before):
        assert p.data is a and p.data.dtype == dtype
        assert not np.array_equal(a, b)


def test_zero_grad():
    params = make_params(np.float32)
    for p in params:
        p.grad += 1
    optim.SGD(params, lr=0.1).zero_grad()
    assert all(not p.grad.any() for p in params)


def test_state_dict_round_trip_continues_identically():
    params_a, params_b = make_params(np.float64), make_params(np.float64)
    opt_a = optim.Adam(params_a, lr=0.01)
    for p, g in zip(params_a, grads_for(params_a, 0)):
        p.grad[...] = g
    opt_a.step()
    for pa, pb in zip(params_a, params_b):
        pb.data[...] = pa.data
    opt_b = optim.Adam(params_b, lr=0.5)
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.lr == 0.01
    for params, opt in ((params_a, opt_a), (params_b, opt_b)):
        for p, g in zip(params, grads_for(params, 1)):
            p.grad[...] = g
        opt.step()
    for pa, pb in zip(params_a, params_b):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_state_dict_for_other_parameters_is_rejected():
    opt = optim.SGD(make_params(np.float64), lr=0.1, momentum=0.9)
    opt.params[0].grad += 1
    opt.step()
    other = optim.SGD([Parameter(np.zeros(2))], lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match="parameters"):
        other.load_state_dict(opt.state_dict())


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-0.1), "lr"),
    (dict(lr=0.1, momentum=-0.5), "momentum"),
    (dict(lr=0.1, weight_decay=-1e-4), "weight_decay"),
    (dict(lr=0.1, nesterov=True), "nesterov"),
    (dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
])
def test_sgd_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.SGD(make_params(np.float32), **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=-1e-3), "lr"),
    (dict(betas=(1.0, 0.999)), r"betas\[0\]"),
    (dict(betas=(0.9, -0.1)), r"betas\[1\]"),
    (dict(eps=-1e-8), "eps"),
    (dict(weight_decay=-0.1), "weight_decay"),
])
def test_adam_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.Adam(make_params(np.float32), **kwargs)


def test_rejects_bad_params():
    with pytest.raises(ValueError, match="empty"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        optim.SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(TypeError, match="single Parameter"):
        optim.SGD(Parameter(np.zeros(3)), lr=0.1)
    p = Parameter(np.zeros(3))
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p], lr=0.1)


# ----------------------------------------------------------------------------
# Against torch.optim
# ----------------------------------------------------------------------------

SETTINGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.8, dampening=0.3)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=True)),
    ("Adam", dict(lr=1e-2)),
    ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=1e-2, weight_decay=0.1)),
    ("AdamW", dict(lr=1e-2)),
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("AdamW", dict(lr=3e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.5)),
    ("AdamW", dict(lr=1e-3, weight_decay=0.0)),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, kwargs", SETTINGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SETTINGS)])
def test_matches_torch_optim(name, kwargs, dtype):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: reference comparison skipped")
    params = make_params(dtype)
    tparams = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    opt = getattr(optim, name)(params, **kwargs)
    topt = getattr(torch.optim, name)(tparams, **kwargs)
    rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-13)
    for step in range(8):
        grads = grads_for(params, step)
        opt.zero_grad()
        for p, tp, g in zip(params, tparams, grads):
            p.grad += g
            tp.grad = torch.from_numpy(g.copy())
        opt.step()
        topt.step()
        for p, tp in zip(params, tparams):
            assert p.data.dtype == dtype
            np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=rtol, atol=atol)

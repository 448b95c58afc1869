"""Tests for cnnlib.optim.AdamW (decoupled weight decay), with torch.optim.AdamW as reference."""

import numpy as np
import pytest

from cnnlib import optim
from cnnlib.nn import Parameter
from test_optim import grads_for, make_params  # shared with the SGD and Adam tests


def test_defaults_match_torch():
    p = Parameter(np.zeros(2))
    opt = optim.AdamW([p])
    assert opt.hyperparameters() == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2)
    assert repr(opt).startswith("AdamW(1 parameters")


def test_first_step_by_hand():
    # Step 1: p <- p (1 - lr wd), then the Adam step lr * sign(g) (eps = 0).
    p = Parameter(np.array([2.0, -1.0]))
    p.grad[...] = [0.3, 0.7]
    opt = optim.AdamW([p], lr=0.1, eps=0.0, weight_decay=0.5)
    opt.step()
    np.testing.assert_allclose(p.data, [2.0 * 0.95 - 0.1, -1.0 * 0.95 - 0.1])


def test_zero_decay_is_adam():
    a, b = make_params(np.float64), make_params(np.float64)
    oa, ob = optim.AdamW(a, lr=0.01, weight_decay=0), optim.Adam(b, lr=0.01)
    for step in range(5):
        for pa, pb, g in zip(a, b, grads_for(a, step)):
            pa.grad[...] = g
            pb.grad[...] = g
        oa.step()
        ob.step()
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_pure_decay_is_geometric():
    # With no loss gradient Adam's step is 0, so only the decay acts.
    p = Parameter(np.array([1.0, -3.0]))
    opt = optim.AdamW([p], lr=0.01, weight_decay=0.1)
    for _ in range(100):
        opt.step()
    np.testing.assert_allclose(p.data, np.array([1.0, -3.0]) * 0.999**100, rtol=1e-12)


def test_state_dict_round_trip():
    params = make_params(np.float64)
    opt = optim.AdamW(params, lr=0.01, weight_decay=0.2)
    for step in range(3):
        for p, g in zip(params, grads_for(params, step)):
            p.grad[...] = g
        opt.step()
    saved, data = opt.state_dict(), [p.data.copy() for p in params]
    opt.step()
    after = [p.data.copy() for p in params]
    for p, d in zip(params, data):
        p.data[...] = d
    fresh = optim.AdamW(params)
    fresh.load_state_dict(saved)
    assert fresh.weight_decay == 0.2
    fresh.step()
    for p, a in zip(params, after):
        np.testing.assert_array_equal(p.data, a)


def test_bad_settings():
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="weight_decay"):
        optim.AdamW([p], weight_decay=-0.1)
    with pytest.raises(ValueError, match="betas"):
        optim.AdamW([p], betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="lr must be a number"):
        optim.AdamW([p], lr="0.1")
    with pytest.raises(ValueError, match="params is empty"):
        optim.AdamW([])


# The step-by-step comparison with torch.optim.AdamW is in test_optim.py
# (test_matches_torch_optim), with SGD and Adam.


def test_torch_adam_weight_decay_is_coupled_and_adamw_is_not():
    torch = pytest.importorskip("torch", reason="PyTorch not installed: reference comparison skipped")
    # Same story in torch: Adam(weight_decay) != AdamW(weight_decay) after a few steps.
    w = np.array([1.0, -2.0, 0.5])
    out = {}
    for name in ("Adam", "AdamW"):
        tp = torch.tensor(w.copy(), requires_grad=True)
        opt = getattr(torch.optim, name)([tp], lr=0.1, weight_decay=0.5)
        for step in range(5):
            tp.grad = torch.tensor([0.1, 0.1, 0.1], dtype=torch.float64) * (-1) ** step
            opt.step()
        out[name] = tp.detach().numpy()
        p = Parameter(w.copy())
        ours = getattr(optim, name)([p], lr=0.1, weight_decay=0.5)
        for step in range(5):
            p.grad[...] = 0.1 * (-1) ** step
            ours.step()
        np.testing.assert_allclose(p.data, out[name], rtol=1e-12)
    assert np.abs(out["Adam"] - out["AdamW"]).max() > 0.1

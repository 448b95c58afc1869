"""Tests for cnnlib.training.amp: float16 emulation and dynamic loss scaling (memory chapter)."""

import copy

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.optim import SGD
from cnnlib.training import amp

# ----------------------------------------------------------------------------
# float16 rounding and categories
# ----------------------------------------------------------------------------

def test_constants_are_float16s_limits():
    info = np.finfo(np.float16)
    assert amp.FP16_MAX == float(info.max)
    assert amp.FP16_MIN_NORMAL == float(info.tiny)
    assert amp.FP16_MIN_SUBNORMAL == float(info.smallest_subnormal)
    assert amp.FP16_EPS == float(info.eps)


def test_round_fp16_is_numpys_cast():
    x = np.array([1 + 2 ** -11, 1 + 3 * 2 ** -11, 70000.0, -1e6, 2 ** -25, 3 * 2 ** -26, 0.1],
                 dtype=np.float32)
    r = amp.round_fp16(x)
    assert r.dtype == np.float32
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(r, x.astype(np.float16).astype(np.float32))
    assert r[0] == 1.0                      # tie to even
    assert r[1] == 1 + 2 ** -9
    assert np.isposinf(r[2]) and np.isneginf(r[3])
    assert r[4] == 0 and r[5] == 2 ** -24   # half the smallest subnormal ties to 0
    assert amp.to_fp16(x).dtype == np.float16
    with pytest.raises(TypeError, match="x"):
        amp.round_fp16(np.arange(3))


def test_fp16_categories():
    v = np.array([0.0, 2.0 ** -26, 2.0 ** -20, 1.0, 1e5, -2.0 ** -26], dtype=np.float32)
    c = amp.fp16_categories(v)
    assert c["zero"] == 1 and c["nonzero"] == 5
    assert c["underflow"] == pytest.approx(2 / 5)
    assert c["subnormal"] == pytest.approx(1 / 5)
    assert c["normal"] == pytest.approx(1 / 5)
    assert c["overflow"] == pytest.approx(1 / 5)
    c = amp.fp16_categories(v, scale=2.0 ** 10)
    assert c["underflow"] == 0 and c["subnormal"] == pytest.approx(2 / 5)
    assert c["normal"] == pytest.approx(2 / 5) and c["overflow"] == pytest.approx(1 / 5)
    with pytest.raises(ValueError, match="scale"):
        amp.fp16_categories(v, scale=0)
    with pytest.raises(TypeError, match="scale"):
        amp.fp16_categories(v, scale="1")


def test_has_inf_or_nan():
    for dtype in (np.float16, np.float32, np.float64):
        a = np.ones(5, dtype=dtype)
        assert not amp.has_inf_or_nan([a, a[::2]])
        for bad in (np.inf, -np.inf, np.nan):
            b = a.copy()
            b[3] = bad
            assert amp.has_inf_or_nan([a, b])
            assert amp.has_inf_or_nan(b)
    assert not amp.has_inf_or_nan([np.zeros(0)])
    # the kernel must not be compiled with fastmath, which may delete isfinite
    assert not amp._nonfinite_kernel.targetoptions.get("fastmath", False)
    with pytest.raises(TypeError, match="arrays"):
        amp.has_inf_or_nan([np.arange(3)])


# ----------------------------------------------------------------------------
# LossScaler: the schedule of torch.amp.GradScaler
# ----------------------------------------------------------------------------

def reference_schedule(flags, init_scale, growth_factor, backoff_factor, growth_interval):
    """GradScaler's documented update, written out (torch/amp/grad_scaler.py, update())."""
    scale, tracker, out = init_scale, 0, []
    for found_inf in flags:
        if found_inf:
            scale *= backoff_factor
            tracker = 0
        else:
            tracker += 1
            if tracker == growth_interval:
                if scale * growth_factor <= float(np.finfo(np.float32).max):   # scale is a float32
                    scale *= growth_factor
                tracker = 0
        out.append(scale)
    return out


def our_schedule(flags, **kw):
    s = amp.LossScaler(**kw)
    out = []
    for f in flags:
        s.update(f)
        out.append(s.get_scale())
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("interval", [1, 3, 7])
def test_schedule_matches_the_documented_rule(seed, interval):
    rng = np.random.default_rng(seed)
    flags = rng.random(300) < 0.2
    kw = dict(init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
              growth_interval=interval)
    assert our_schedule(flags, **kw) == reference_schedule(flags, **kw)


def test_default_schedule():
    s = amp.LossScaler()
    assert s.get_scale() == 65536.0 and s.growth_interval == 2000
    for _ in range(1999):
        s.update(False)
    assert s.get_scale() == 65536.0 and s.get_growth_tracker() == 1999
    s.update(False)
    assert s.get_scale() == 131072.0 and s.get_growth_tracker() == 0
    for _ in range(5):
        s.update(False)
    s.update(True)
    assert s.get_scale() == 65536.0 and s.get_growth_tracker() == 0
    # the outline's rule, doubling on every clean step, would be at 2**(16+n) after n steps


def test_scale_is_held_in_float32_and_stays_finite():
    s = amp.LossScaler(init_scale=2.0 ** 126, growth_interval=1)
    s.update(False)
    assert s.get_scale() == 2.0 ** 127
    s.update(False)                           # 2**128 is inf in float32: not taken
    assert s.get_scale() == 2.0 ** 127


@pytest.mark.parametrize("seed", range(3))
def test_trajectory_matches_torch_gradscaler_on_cpu(seed):
    torch = pytest.importorskip("torch")
    try:
        scaler_t = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=3)
    except Exception as err:  # pragma: no cover - older torch
        pytest.skip(f"torch.amp.GradScaler('cpu') not usable: {err}")
    rng = np.random.default_rng(seed)
    flags = rng.random(80) < 0.25
    w_t = torch.nn.Parameter(torch.ones(4))
    opt_t = torch.optim.SGD([w_t], lr=0.1)
    p = nn.Parameter(np.ones(4, dtype=np.float32))
    opt = SGD([p], lr=0.1)
    scaler = amp.LossScaler(init_scale=2.0 ** 10, growth_interval=3)
    for f in flags:
        opt_t.zero_grad()
        scaler_t.scale((w_t * torch.arange(4.0)).sum()).backward()
        if f:
            w_t.grad[1] = float("nan") if rng.random() < 0.5 else float("inf")
        scaler_t.step(opt_t)
        scaler_t.update()
        opt.zero_grad()
        p.grad[...] = scaler.scale(np.arange(4, dtype=np.float32))
        if f:
            p.grad[1] = np.inf
        stepped = amp.step(opt, scaler)
        assert stepped == (not f)
        assert scaler.get_scale() == scaler_t.get_scale()
        assert scaler.get_growth_tracker() == scaler_t._get_growth_tracker()
        np.testing.assert_allclose(p.data, w_t.detach().numpy(), rtol=1e-6)


def test_unscale_and_step_skip():
    s = amp.LossScaler(init_scale=8.0, growth_interval=2)
    p = nn.Parameter(np.ones(3, dtype=np.float32))
    opt = SGD([p], lr=1.0)
    assert s.scale(2.0) == 16.0
    np.testing.assert_array_equal(s.scale(np.ones(2, np.float32)), [8, 8])
    p.grad[...] = [8.0, 16.0, 0.0]
    assert amp.step(opt, s)
    np.testing.assert_array_equal(p.grad, [1, 2, 0])
    np.testing.assert_array_equal(p.data, [0, -1, 1])
    p.grad[...] = [np.nan, 1.0, 1.0]
    assert not amp.step(opt, s)
    np.testing.assert_array_equal(p.data, [0, -1, 1])      # skipped
    assert s.get_scale() == 4.0
    state = s.state_dict()
    t = amp.LossScaler()
    t.load_state_dict(state)
    assert t.get_scale() == 4.0 and "LossScaler(scale=4" in repr(t)
    with pytest.raises(TypeError, match="optimizer"):
        amp.step(None, s)
    with pytest.raises(TypeError, match="scaler"):
        amp.step(opt, None)


def test_scaler_bad_input():
    for kw, match in [(dict(init_scale=0), "init_scale"), (dict(growth_factor=1.0), "growth_factor"),
                      (dict(backoff_factor=1.0), "backoff_factor"),
                      (dict(growth_interval=0), "growth_interval"),
                      (dict(init_scale=np.inf), "init_scale")]:
        with pytest.raises(ValueError, match=match):
            amp.LossScaler(**kw)


# ----------------------------------------------------------------------------
# Mixed-precision steps
# ----------------------------------------------------------------------------

def data(n=32, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, 3, n)


def test_fp32_step_is_a_plain_step():
    x, y = data()
    m = amp.mlp([12, 8, 3], rng=0)
    ref = copy.deepcopy(m)
    loss_fn = nn.CrossEntropyLoss()
    r = amp.mixed_precision_step(m, loss_fn, x, y, SGD(m.parameters(), lr=0.1),
                                 precision="fp32")
    opt = SGD(ref.parameters(), lr=0.1)
    opt.zero_grad()
    loss = loss_fn(ref(x), y)
    ref.backward(loss_fn.backward())
    opt.step()
    assert r["loss"] == pytest.approx(float(loss)) and r["stepped"]
    for a, b in zip(m.parameters(), ref.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


def test_fp16_step_rounds_where_real_training_rounds():
    x, y = data()
    m = amp.mlp([12, 8, 3], rng=0)
    ref = copy.deepcopy(m)
    masters = [p.data.copy() for p in m.parameters()]
    scaler = amp.LossScaler(init_scale=2.0 ** 4)
    opt = SGD(m.parameters(), lr=0.1)
    r = amp.mixed_precision_step(m, nn.CrossEntropyLoss(), x, y, opt, scaler)
    assert r["stepped"] and r["scale"] == 16.0
    # master weights stay float32 (not on the float16 grid after the update)
    for p in m.parameters():
        assert p.data.dtype == np.float32
    assert any(not np.array_equal(p.data, amp.round_fp16(p.data)) for p in m.parameters())
    # reference written out by hand: fp16 copies, rounding after each layer
    for p, w in zip(ref.parameters(), masters):
        p.data = amp.round_fp16(w)
    h = amp.round_fp16(x)
    for layer in ref:
        h = amp.round_fp16(layer(h))
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(h, y)
    g = amp.round_fp16(loss_fn.backward() * np.float32(16))
    for layer in reversed(list(ref)):
        g = amp.round_fp16(layer.backward(g))
    for p, q, w in zip(m.parameters(), ref.parameters(), masters):
        g16 = amp.round_fp16(q.grad) / np.float32(16)
        np.testing.assert_array_equal(p.grad, g16)
        np.testing.assert_array_equal(p.data, w - np.float32(0.1) * g16)


def test_underflow_and_its_recovery_by_scaling():
    x, y = data(n=256)
    m = amp.mlp([12] + [16] * 6 + [3], weight_scale=0.2, rng=0)
    plain = amp.gradient_underflow(m, nn.CrossEntropyLoss(), x, y, scale=1.0)
    scaled = amp.gradient_underflow(m, nn.CrossEntropyLoss(), x, y, scale=2.0 ** 16)
    assert plain["lost"] > 0.2            # measured 0.31: a third of the gradients are 0
    assert scaled["lost"] == 0
    huge = amp.gradient_underflow(m, nn.CrossEntropyLoss(), x, y, scale=2.0 ** 40)
    assert huge["overflow"] > 0
    assert all(np.all(p.grad == 0) for p in m.parameters())


def test_overflow_skips_the_step_and_backs_off():
    x, y = data()
    m = amp.mlp([12, 8, 3], rng=0)
    before = [p.data.copy() for p in m.parameters()]
    scaler = amp.LossScaler(init_scale=2.0 ** 30)
    r = amp.mixed_precision_step(m, nn.CrossEntropyLoss(), x, y, SGD(m.parameters(), lr=0.1),
                                 scaler)
    assert r["found_inf"] and not r["stepped"]
    assert scaler.get_scale() == 2.0 ** 29
    for p, b in zip(m.parameters(), before):
        np.testing.assert_array_equal(p.data, b)


def test_without_master_weights_small_updates_are_lost():
    x, y = data()
    changed = {}
    for master in (True, False):
        m = amp.mlp([12, 8, 3], rng=0)
        for p in m.parameters():
            p.data[...] = amp.round_fp16(p.data)
        before = np.concatenate([p.data.ravel() for p in m.parameters()])
        amp.mixed_precision_step(m, nn.CrossEntropyLoss(), x, y, SGD(m.parameters(), lr=1e-5),
                                 amp.LossScaler(), master_weights=master)
        after = np.concatenate([p.data.ravel() for p in m.parameters()])
        changed[master] = np.mean(after != before)
    assert changed[True] > 0.9
    assert changed[False] < 0.05        # lr * grad is below half a float16 ulp of the weight


def test_train_mixed_precision_is_deterministic():
    x, y = data(n=64)
    runs = []
    for _ in range(2):
        m = amp.mlp([12, 8, 3], rng=0)
        runs.append(amp.train_mixed_precision(m, x, y, 6, batch_size=16, lr=0.1,
                                              scaler=amp.LossScaler(growth_interval=2),
                                              optimizer="adam", seed=1))
    for k in ("loss", "scale", "stepped"):
        np.testing.assert_array_equal(runs[0][k], runs[1][k])
    assert runs[0]["loss"].shape == (6,)


def test_bad_input():
    x, y = data()
    m = amp.mlp([12, 8, 3], rng=0)
    opt = SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="precision"):
        amp.mixed_precision_step(m, nn.CrossEntropyLoss(), x, y, opt, precision="bf16")
    with pytest.raises(TypeError, match="scaler"):
        amp.mixed_precision_step(m, nn.CrossEntropyLoss(), x, y, opt, scaler=2.0)
    with pytest.raises(TypeError, match="model"):
        amp.half_forward(None, x)
    with pytest.raises(TypeError, match="images"):
        amp.train_mixed_precision(m, x.astype(np.float64), y, 1)
    with pytest.raises(ValueError, match="steps"):
        amp.train_mixed_precision(m, x, y, 0)
    with pytest.raises(ValueError, match="batch_size"):
        amp.train_mixed_precision(m, x, y, 1, batch_size=1000)
    with pytest.raises(ValueError, match="optimizer"):
        amp.train_mixed_precision(m, x, y, 1, batch_size=8, optimizer="rmsprop")
    with pytest.raises(ValueError, match="labels"):
        amp.train_mixed_precision(m, x, y[:3], 1)
    with pytest.raises(ValueError, match="activation"):
        amp.mlp([3, 2], activation="gelu")
    with pytest.raises(ValueError, match="sizes"):
        amp.mlp([3])

"""Tests for cnnlib.optim.schedules: hand-computed values, torch.optim.lr_scheduler as reference, bad input."""

import math

import numpy as np
import pytest

from cnnlib.optim import schedules as S

# ----------------------------------------------------------------------------
# Without PyTorch
# ----------------------------------------------------------------------------


def test_constant_and_step_decay():
    assert S.Constant(0.1)(0) == S.Constant(0.1)(1000) == 0.1
    sd = S.StepDecay(1.0, step_size=3, gamma=0.5)
    np.testing.assert_allclose(S.sample(sd, 7), [1, 1, 1, 0.5, 0.5, 0.5, 0.25])


def test_cosine_ends_and_middle():
    c = S.Cosine(1.0, total_steps=10, min_lr=0.1)
    assert c(0) == pytest.approx(1.0)
    assert c(5) == pytest.approx(0.55)
    assert c(10) == pytest.approx(0.1)
    assert c(50) == pytest.approx(0.1)


def test_triangular_by_hand():
    # up 4 steps from 1 to 3, down 4 steps: 1, 1.5, 2, 2.5, 3, 2.5, 2, 1.5, 1, 1.5, ...
    tri = S.triangular(1.0, 3.0, step_size_up=4)
    np.testing.assert_allclose(S.sample(tri, 10), [1, 1.5, 2, 2.5, 3, 2.5, 2, 1.5, 1, 1.5])


def test_triangular2_halves_each_cycle():
    tri2 = S.triangular2(0.0, 8.0, step_size_up=2)
    peaks = [tri2(2 + 4 * c) for c in range(4)]
    np.testing.assert_allclose(peaks, [8, 4, 2, 1])


def test_exp_range_scales_by_gamma_power_step():
    base, top, gamma = 0.1, 1.1, 0.9
    er = S.exp_range(base, top, step_size_up=5, gamma=gamma)
    assert er(5) == pytest.approx(base + 1.0 * gamma ** 5)
    assert er(15) == pytest.approx(base + 1.0 * gamma ** 15)


def test_asymmetric_cycle():
    c = S.triangular(0.0, 1.0, step_size_up=1, step_size_down=3)
    np.testing.assert_allclose(S.sample(c, 5), [0, 1, 2 / 3, 1 / 3, 0])


def test_exponential_sweep_is_geometric():
    e = S.Exponential(1e-5, 10.0, num_steps=7)
    values = S.sample(e, 7)
    np.testing.assert_allclose(values, 1e-5 * 10.0 ** np.arange(7))
    np.testing.assert_allclose(values[1:] / values[:-1], 10.0)


def test_linear_sweep_spends_its_steps_in_the_top_decade():
    lin = S.sample(S.LinearSweep(1e-7, 1.0, 100), 100)
    assert lin[0] == pytest.approx(1e-7) and lin[-1] == pytest.approx(1.0)
    assert np.mean(lin >= 0.1) > 0.89


def test_warmup_ramps_then_hands_over():
    w = S.Warmup(S.Constant(1.0), warmup_steps=4, start_factor=0.2)
    np.testing.assert_allclose(S.sample(w, 6), [0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    # In front of a decaying schedule the factor multiplies the schedule's own value.
    base = S.StepDecay(1.0, 2, 0.5)
    w = S.Warmup(base, 2, 0.0)
    np.testing.assert_allclose(S.sample(w, 4), [0.0, 0.5, 0.5, 0.5])
    assert S.Warmup(S.Constant(0.3), 0)(0) == 0.3


def test_linear_scaling_and_goyal():
    assert S.linear_scaling(0.1, 256, 32) == pytest.approx(0.8)
    g = S.goyal(0.1, 32, 256, warmup_steps=7)
    assert g(0) == pytest.approx(0.1)          # starts at the small-batch rate
    assert g(7) == pytest.approx(0.8)          # reaches k * lr after the warm-up
    np.testing.assert_allclose(np.diff(S.sample(g, 8)), 0.1)   # constant increments
    no_warm = S.goyal(0.1, 32, 256, warmup_steps=0)
    assert no_warm(0) == pytest.approx(0.8)
    cos = S.goyal(0.1, 32, 64, 2, schedule=lambda lr: S.Cosine(lr, 10))
    assert cos(2) == pytest.approx(S.Cosine(0.2, 10)(2))
    # A smaller batch than the reference: no warm-up needed, factor 1.
    assert S.goyal(0.1, 32, 16, 5)(0) == pytest.approx(0.05)


def test_values_are_python_floats():
    for sched in [S.Constant(1), S.Cosine(1, 3), S.triangular(0, 1, 2), S.Exponential(1, 2, 3)]:
        assert type(sched(1)) is float


def test_repr_names_the_settings():
    assert "max_lr=3.0" in repr(S.triangular(1.0, 3.0, 4))


@pytest.mark.parametrize("call, err", [
    (lambda: S.Constant(-1.0), ValueError),
    (lambda: S.Constant("0.1"), TypeError),
    (lambda: S.Constant(True), TypeError),
    (lambda: S.Constant(math.nan), ValueError),
    (lambda: S.StepDecay(0.1, 0), ValueError),
    (lambda: S.StepDecay(0.1, 2.5), TypeError),
    (lambda: S.Cosine(0.1, 0), ValueError),
    (lambda: S.Cyclic(0.1, 1.0, 10, mode="triangle"), ValueError),
    (lambda: S.Cyclic(0.1, 1.0, 0), ValueError),
    (lambda: S.Cyclic(0.1, 1.0, 5, step_size_down=0), ValueError),
    (lambda: S.Exponential(0.0, 1.0, 10), ValueError),
    (lambda: S.Exponential(1e-3, 1.0, 1), ValueError),
    (lambda: S.LinearSweep(0.0, 1.0, 1), ValueError),
    (lambda: S.Warmup(0.1, 5), TypeError),
    (lambda: S.Warmup(S.Constant(1), -1), ValueError),
    (lambda: S.Warmup(S.Constant(1), 5, start_factor=1.5), ValueError),
    (lambda: S.linear_scaling(0.1, 0, 32), ValueError),
    (lambda: S.linear_scaling(0.1, 64, 32.0), TypeError),
    (lambda: S.goyal(0.1, 32, 64, 5, schedule=lambda lr: lr), TypeError),
    (lambda: S.Constant(0.1)(-1), ValueError),
    (lambda: S.Constant(0.1)(1.5), TypeError),
    (lambda: S.sample(0.1, 3), TypeError),
    (lambda: S.sample(S.Constant(0.1), -1), ValueError),
])
def test_bad_input(call, err):
    with pytest.raises(err):
        call()


def test_error_message_names_the_argument():
    with pytest.raises(ValueError, match="step_size_up"):
        S.triangular(0.1, 1.0, 0)


# ----------------------------------------------------------------------------
# Against torch.optim.lr_scheduler
# ----------------------------------------------------------------------------


def torch_lrs(make_scheduler, lr, steps):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr, momentum=0.9)
    sched = make_scheduler(torch.optim.lr_scheduler, opt)
    values = []
    for _ in range(steps):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(values)


@pytest.mark.parametrize("mode, gamma", [("triangular", 1.0), ("triangular2", 1.0),
                                         ("exp_range", 0.995), ("exp_range", 0.9)])
@pytest.mark.parametrize("up, down", [(10, None), (7, 3), (1, 1), (25, 40)])
def test_cyclic_matches_torch(mode, gamma, up, down):
    base, top, steps = 0.001, 0.1, 200
    ref = torch_lrs(lambda s, o: s.CyclicLR(o, base, top, step_size_up=up, step_size_down=down,
                                            mode=mode, gamma=gamma, cycle_momentum=False),
                    base, steps)
    ours = S.sample(S.Cyclic(base, top, up, down, mode=mode, gamma=gamma), steps)
    np.testing.assert_allclose(ours, ref, rtol=1e-14, atol=1e-17)


def test_step_and_cosine_match_torch():
    ref = torch_lrs(lambda s, o: s.StepLR(o, step_size=5, gamma=0.3), 0.2, 30)
    np.testing.assert_allclose(S.sample(S.StepDecay(0.2, 5, 0.3), 30), ref, rtol=1e-12)
    ref = torch_lrs(lambda s, o: s.CosineAnnealingLR(o, T_max=20, eta_min=0.01), 0.2, 21)
    np.testing.assert_allclose(S.sample(S.Cosine(0.2, 20, 0.01), 21), ref, rtol=1e-10)


@pytest.mark.parametrize("start_factor, steps", [(0.25, 8), (1 / 32, 5), (0.5, 1)])
def test_warmup_matches_torch_linear_lr(start_factor, steps):
    ref = torch_lrs(lambda s, o: s.LinearLR(o, start_factor=start_factor, end_factor=1.0,
                                            total_iters=steps), 0.4, 20)
    ours = S.sample(S.Warmup(S.Constant(0.4), steps, start_factor), 20)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)

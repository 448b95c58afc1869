"""Tests for cnnlib.training.parallel.pipeline: schedules, the bubble, stages in processes."""

import functools
import itertools

import numpy as np
import pytest

from cnnlib import nn, optim
from cnnlib.training.parallel import (
    Pipeline,
    WorkerError,
    balanced_boundaries,
    bubble_formula,
    bubble_fraction,
    flat_gradient,
    peak_stash,
    pipeline_schedule,
    profile_layers,
    simulate_pipeline,
    split_model,
)


def tiny_model(dtype=np.float64):
    return nn.Sequential(nn.Conv2d(1, 3, 3, dtype=dtype, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(27, 8, dtype=dtype, rng=1), nn.Tanh(),
                         nn.Linear(8, 4, dtype=dtype, rng=2))


def batch(n, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 8, 8)).astype(dtype), rng.integers(0, 4, n)


# --- schedules and the simulator -------------------------------------------

@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p,m", [(1, 1), (1, 4), (2, 1), (2, 3), (3, 2), (4, 8)])
def test_schedule_runs_each_op_once_forward_first(kind, p, m):
    sched = pipeline_schedule(p, m, kind)
    assert len(sched) == p
    for s, ops in enumerate(sched):
        assert sorted(ops) == sorted([("F", j) for j in range(m)] + [("B", j) for j in range(m)])
        for j in range(m):
            assert ops.index(("F", j)) < ops.index(("B", j))
        want_peak = m if kind == "gpipe" else min(p - s, m)
        assert peak_stash(ops) == want_peak


@pytest.mark.parametrize("kind", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p,m", [(1, 3), (2, 1), (2, 4), (3, 3), (4, 8), (5, 2)])
@pytest.mark.parametrize("tf,tb", [(1.0, 2.0), (1.0, 1.0), (0.5, 3.0)])
def test_equal_stages_give_the_formula(kind, p, m, tf, tb):
    events = simulate_pipeline(p, m, kind, tf, tb)
    assert len(events) == 2 * p * m
    span = max(e[4] for e in events)
    assert span == pytest.approx((m + p - 1) * (tf + tb))
    assert bubble_fraction(events, p) == pytest.approx(bubble_formula(p, m))


def test_simulation_respects_dependencies_with_unequal_stages():
    tf, tb = [1.0, 3.0, 0.5], [2.0, 1.0, 4.0]
    events = simulate_pipeline(3, 4, "1f1b", tf, tb)
    end = {(s, op, j): e for s, op, j, _, e in events}
    for s, op, j, start, stop in events:
        assert stop - start == pytest.approx(tf[s] if op == "F" else tb[s])
        if op == "F" and s > 0:
            assert start >= end[(s - 1, "F", j)]
        if op == "B" and s < 2:
            assert start >= end[(s + 1, "B", j)]
    for s in range(3):  # a stage never runs two things at once
        own = sorted((a, b) for t, _, _, a, b in events if t == s)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(own, own[1:]))
    # the bottleneck stage sets the pace: more bubble than the balanced formula
    assert bubble_fraction(events) > bubble_formula(3, 4)


def test_formula_values():
    assert bubble_formula(1, 5) == 0
    assert bubble_formula(2, 1) == 0.5
    assert bubble_formula(4, 8) == pytest.approx(3 / 11)


def test_split_model_composes_to_the_model():
    model = tiny_model()
    x, _ = batch(3)
    h = x
    for stage in split_model(model, [3, 5]):
        h = stage(h)
    np.testing.assert_array_equal(h, model(x))
    assert [len(s) for s in split_model(model, [3, 5])] == [3, 2, 2]


def test_balanced_boundaries_is_optimal():
    rng = np.random.default_rng(0)
    for _ in range(20):
        costs = rng.random(7)
        for p in (1, 2, 3, 4):
            got = balanced_boundaries(costs, p)
            def worst(b):
                edges = [0, *b, len(costs)]
                return max(costs[a:c].sum() for a, c in zip(edges, edges[1:]))
            best = min(worst(b) for b in itertools.combinations(range(1, 7), p - 1))
            assert len(got) == p - 1 and worst(got) == pytest.approx(best)


def test_profile_layers():
    model = tiny_model()
    t = profile_layers(model, batch(4)[0], repeats=2)
    assert t.shape == (len(model),) and np.all(t >= 0)
    assert all(np.all(p.grad == 0) for p in model.parameters())


def test_bad_input():
    with pytest.raises(ValueError, match="num_stages"):
        bubble_formula(0, 3)
    with pytest.raises(ValueError, match="num_microbatches"):
        pipeline_schedule(2, 0)
    with pytest.raises(ValueError, match="kind"):
        pipeline_schedule(2, 2, "zigzag")
    with pytest.raises(ValueError, match="forward_time"):
        simulate_pipeline(2, 2, forward_time=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="backward_time"):
        simulate_pipeline(2, 2, backward_time=-1.0)
    with pytest.raises(ValueError, match="empty"):
        bubble_fraction([])
    with pytest.raises(TypeError, match="Sequential"):
        split_model(nn.ReLU(), [1])
    with pytest.raises(ValueError, match="boundaries"):
        split_model(tiny_model(), [3, 3])
    with pytest.raises(ValueError, match="boundaries"):
        split_model(tiny_model(), [0])
    with pytest.raises(ValueError, match="num_stages"):
        balanced_boundaries([1.0, 2.0], 3)
    with pytest.raises(ValueError, match="costs"):
        balanced_boundaries([1.0, -2.0], 1)
    with pytest.raises(TypeError, match="stages"):
        Pipeline([])
    with pytest.raises(ValueError, match="kind"):
        Pipeline([tiny_model()], kind="zigzag")


# --- stages in processes ---------------------------------------------------

@pytest.fixture(scope="module", params=[([4], "gpipe"), ([3, 5], "1f1b")],
                ids=["p2-gpipe", "p3-1f1b"])
def pipe(request):
    bounds, kind = request.param
    with Pipeline(split_model(tiny_model(), bounds), kind=kind, warmup_shape=(1, 8, 8),
                  timeout=180) as pp:
        yield pp


@pytest.mark.parametrize("m", [1, 3, 7])
def test_pipeline_gradient_equals_single_process(pipe, m):
    x, y = batch(7, seed=m)
    loss_ref, g_ref = flat_gradient(tiny_model(), x, y)
    out = pipe.run(x, y, m)
    assert out["loss"] == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(np.concatenate(pipe.gradients()), g_ref, rtol=1e-10, atol=1e-13)
    p = pipe.num_stages
    assert len(out["events"]) == 2 * p * m
    sched = pipeline_schedule(p, m, pipe.kind)
    for s in range(p):
        ops = [(op, j) for t, op, j, _, _ in sorted(out["events"], key=lambda e: e[3]) if t == s]
        assert ops == sched[s]
        assert out["peak_stash"][s] == peak_stash(sched[s])
    assert min(e[3] for e in out["events"]) == 0.0
    assert 0.0 <= bubble_fraction(out["events"], p) < 1.0


def test_pipeline_training_matches_single_process_sgd():
    sgd = functools.partial(optim.SGD, lr=0.1, momentum=0.9)
    ref = tiny_model()
    opt = sgd(ref.parameters())
    with Pipeline(split_model(tiny_model(), [4]), sgd, kind="1f1b", timeout=180) as pp:
        for k in range(3):
            x, y = batch(6, seed=20 + k)
            loss_ref, _ = flat_gradient(ref, x, y)
            opt.step()
            assert pp.run(x, y, 3, update=True)["loss"] == pytest.approx(loss_ref, rel=1e-10)
        states = pp.state_dicts()
    want = ref.state_dict()
    np.testing.assert_allclose(states[0]["0.weight"], want["0.weight"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(states[1]["2.weight"], want["6.weight"], rtol=1e-10, atol=1e-12)


def test_stage_error_reaches_the_parent_and_stages_are_stopped():
    pp = Pipeline(split_model(tiny_model(), [4]), timeout=60)
    procs = list(pp._procs)
    with pytest.raises(WorkerError, match="worker 0 raised an exception"):
        with pp:
            pp.run(np.zeros((4, 2, 8, 8)), np.zeros(4, dtype=np.int64), 2)
    assert all(not p.is_alive() for p in procs)


def test_pipeline_rejects_bad_runs():
    with Pipeline([tiny_model()], timeout=180) as pp:
        x, y = batch(3)
        with pytest.raises(ValueError, match="num_microbatches"):
            pp.run(x, y, 4)
        with pytest.raises(RuntimeError, match="optimizer"):
            pp.run(x, y, 1, update=True)
        out = pp.run(x, y, 3)  # a single stage: no bubble at all
        assert bubble_fraction(out["events"], 1) < 0.5


def test_plot_pipeline_timeline():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from cnnlib.training.parallel import plot_pipeline_timeline
    fig = plot_pipeline_timeline(simulate_pipeline(3, 4, "1f1b"))
    assert isinstance(fig, Figure)
    assert "bubble" in fig.axes[0].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        plot_pipeline_timeline([])

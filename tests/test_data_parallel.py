"""Tests for cnnlib.training.parallel.data_parallel: replicas in processes, gradients all-reduced."""

import functools
import multiprocessing as mp

import numpy as np
import pytest

from cnnlib import nn, optim
from cnnlib.training.parallel import DataParallel, WorkerError, flat_gradient, shard_bounds


def tiny_model(dtype=np.float64):
    return nn.Sequential(nn.Conv2d(1, 3, 3, dtype=dtype, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3 * 3 * 3, 4, dtype=dtype, rng=1))


def batch(n, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 1, 8, 8)).astype(dtype), rng.integers(0, 4, n)


SGD = functools.partial(optim.SGD, lr=0.1, momentum=0.9)


@pytest.fixture(scope="module", params=[2, 3])
def pool(request):
    with DataParallel(tiny_model(), request.param, SGD, warmup_shape=(1, 8, 8),
                      timeout=180) as dp:
        yield dp


def test_shard_bounds():
    np.testing.assert_array_equal(shard_bounds(10, 3), [0, 4, 7, 10])
    np.testing.assert_array_equal(shard_bounds(2, 3), [0, 1, 2, 2])


def test_flat_gradient_is_the_concatenated_parameter_gradients():
    model = tiny_model()
    x, y = batch(5)
    loss, g = flat_gradient(model, x, y)
    assert g.shape == (model.num_parameters(),)
    np.testing.assert_array_equal(g[:27], model[0].weight.grad.ravel())
    assert loss == pytest.approx(float(nn.CrossEntropyLoss()(model(x), y)))


@pytest.mark.parametrize("n", [1, 2, 7, 37])
def test_gradient_equals_single_process_large_batch(pool, n):
    x, y = batch(n, seed=n)
    loss_ref, g_ref = flat_gradient(tiny_model(), x, y)
    loss, grads = pool.gradient(x, y, all_ranks=True)
    assert len(grads) == pool.world_size
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    np.testing.assert_allclose(grads[0], g_ref, rtol=1e-10, atol=1e-13)
    for g in grads[1:]:  # the all-gather gives every replica the same bits
        np.testing.assert_array_equal(g, grads[0])


def test_steps_keep_replicas_identical_and_equal_to_single_process_sgd():
    model = tiny_model()
    ref = tiny_model()
    opt = SGD(ref.parameters())
    with DataParallel(model, 2, SGD, timeout=180) as dp:
        for k in range(3):
            x, y = batch(11, seed=10 + k)
            loss_ref, _ = flat_gradient(ref, x, y)
            opt.step()
            assert dp.step(x, y) == pytest.approx(loss_ref, rel=1e-10)
            assert set(dp.last_stats) == {"wall", "compute", "allreduce"}
        states = dp.state_dicts()
    for name, value in ref.state_dict().items():
        np.testing.assert_allclose(states[0][name], value, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(states[1][name], states[0][name])
    # the parent's model is untouched
    np.testing.assert_array_equal(model[0].weight.data, tiny_model()[0].weight.data)


def test_single_worker_float32():
    x, y = batch(9, dtype=np.float32)
    _, g_ref = flat_gradient(tiny_model(np.float32), x, y)
    with DataParallel(tiny_model(np.float32), 1, timeout=180) as dp:
        assert set(dp.startup[0]) == {"spawn_import", "warmup"}
        _, g = dp.gradient(x, y)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, g_ref, rtol=1e-5, atol=1e-6)


def test_worker_error_reaches_the_parent_and_workers_are_stopped():
    dp = DataParallel(tiny_model(), 2, timeout=60)
    procs = list(dp._procs)
    x = np.zeros((4, 2, 8, 8))  # two channels: the workers' Conv2d rejects it
    with pytest.raises(WorkerError, match=r"(?s)worker [01] raised an exception:.*channels"):
        with dp:
            dp.gradient(x, np.zeros(4, dtype=np.int64))
    assert all(not p.is_alive() for p in procs)
    assert not mp.active_children() or all(p not in mp.active_children() for p in procs)
    with pytest.raises(RuntimeError, match="closed"):
        dp.gradient(*batch(2))


def test_bad_input():
    with pytest.raises(TypeError, match="model"):
        DataParallel("lenet", 2)
    with pytest.raises(ValueError, match="world_size"):
        DataParallel(tiny_model(), 0)
    with pytest.raises(ValueError, match="threads_per_worker"):
        DataParallel(tiny_model(), 1, threads_per_worker=0)
    with pytest.raises(TypeError, match="optimizer"):
        DataParallel(tiny_model(), 1, optimizer=3)
    with pytest.raises(ValueError, match="timeout"):
        DataParallel(tiny_model(), 1, timeout=0)
    with pytest.raises(ValueError, match="same number"):
        flat_gradient(tiny_model(), *batch(3)[:1], np.zeros(2, dtype=np.int64))
    with pytest.raises(TypeError, match="y must"):
        flat_gradient(tiny_model(), batch(3)[0], np.zeros(3))


def test_pool_rejects_bad_batches_and_step_without_optimizer():
    with DataParallel(tiny_model(), 1, timeout=180) as dp:
        with pytest.raises(RuntimeError, match="optimizer"):
            dp.step(*batch(3))
        with pytest.raises(ValueError, match="empty"):
            dp.gradient(np.zeros((0, 1, 8, 8)), np.zeros(0, dtype=np.int64))
        with pytest.raises(TypeError, match="x must"):
            dp.gradient(np.zeros((2, 1, 8, 8), dtype=np.int64), np.zeros(2, dtype=np.int64))
        _, g = dp.gradient(*batch(3))  # still usable after rejected input
        assert np.all(np.isfinite(g))


def test_benchmark_steps():
    from cnnlib.training.parallel import benchmark_steps
    x, y = batch(12)
    with DataParallel(tiny_model(), 2, SGD, timeout=180) as dp:
        out = benchmark_steps(dp, x, y, batch_size=5, steps=3, warmup=1)
        with pytest.raises(ValueError, match="batch_size"):
            benchmark_steps(dp, x, y, batch_size=13, steps=1)
        with pytest.raises(ValueError, match="steps"):
            benchmark_steps(dp, x, y, batch_size=2, steps=0)
    assert len(out["losses"]) == 4
    assert out["wall"] > 0 and out["compute"] > 0 and out["allreduce"] >= 0
    with pytest.raises(TypeError, match="pool"):
        benchmark_steps(None, x, y, 2, 1)

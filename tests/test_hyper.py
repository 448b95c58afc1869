"""Tests for cnnlib.experiments.hyper: the experiment drivers, on tiny MNIST subsets."""

import math

import numpy as np
import pytest

from cnnlib.experiments import hyper
from cnnlib.models import zoo
from cnnlib.optim import schedules


@pytest.fixture(scope="module")
def data():
    return hyper.mnist_subset(256, 128, seed=0)


@pytest.mark.mnist
def test_mnist_subset_shapes_and_determinism(data):
    x, y, xt, yt = data
    assert x.shape == (256, 1, 28, 28) and x.dtype == np.float32
    assert y.shape == (256,) and y.dtype == np.int64 and xt.shape == (128, 1, 28, 28)
    again = hyper.mnist_subset(256, 128, seed=0)
    np.testing.assert_array_equal(again[1], y)
    assert not np.array_equal(hyper.mnist_subset(256, 128, seed=1)[1], y)
    assert abs(float(x.mean())) < 0.3          # normalised as LeNet5.preprocess does


def test_lenet5_draws_every_layer_from_one_generator():
    a, b = hyper.lenet5(3), zoo.lenet5(rng=np.random.default_rng(3))
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert not np.array_equal(a[0].weight.data, hyper.lenet5(4)[0].weight.data)
    assert hyper.lenet5(0, dtype=np.float64)[0].weight.dtype == np.float64
    with pytest.raises(TypeError, match="seed"):
        hyper.lenet5(0.5)


@pytest.mark.mnist
def test_evaluate_counts_correct_predictions(data):
    x, y, _, _ = data
    model = hyper.lenet5(0)
    loss, acc = hyper.evaluate(model, x, y, batch_size=100)
    model.eval()
    logits = model(x)
    assert acc == pytest.approx(np.mean(logits.argmax(1) == y))
    assert loss == pytest.approx(math.log(10), abs=0.3)   # an untrained network guesses


@pytest.mark.mnist
def test_train_follows_the_schedule_and_is_deterministic(data):
    x, y, xt, yt = data
    sched = schedules.triangular(0.01, 0.05, 3)
    a = hyper.train(hyper.lenet5(0), x, y, sched, epochs=2, batch_size=64, rng=0,
                    x_test=xt, y_test=yt)
    b = hyper.train(hyper.lenet5(0), x, y, sched, epochs=2, batch_size=64, rng=0)
    assert a["steps"] == 8 and not a["diverged"]
    np.testing.assert_allclose(a["lr"], schedules.sample(sched, 8))
    np.testing.assert_array_equal(a["loss"], b["loss"])
    assert a["loss"][-1] < a["loss"][0]
    assert {"train_loss", "train_acc", "test_loss", "test_acc"} <= set(a)
    assert "test_acc" not in b


@pytest.mark.mnist
def test_train_reports_divergence(data):
    x, y, xt, yt = data
    h = hyper.train(hyper.lenet5(0), x, y, schedules.Constant(1e38), epochs=3, batch_size=32,
                    rng=0, x_test=xt, y_test=yt)
    assert h["diverged"] and h["steps"] < 24
    assert h["test_acc"] == 0.1 and h["test_loss"] == math.inf


@pytest.mark.mnist
def test_batch_size_sweep_rows(data):
    rows = hyper.batch_size_sweep(data, batch_sizes=(32, 128), base_lr=0.01, base_batch_size=32,
                                  epochs=1, warmup_epochs=0.5, seed=0)
    assert [(r["batch_size"], r["warmup"]) for r in rows] == [(32, False), (128, False),
                                                              (128, True)]
    assert [r["lr"] for r in rows] == pytest.approx([0.01, 0.04, 0.04])
    assert [r["steps"] for r in rows] == [8, 2, 2]
    images, loss = rows[1]["loss_curve"]
    np.testing.assert_array_equal(images, [128, 256])
    assert loss.shape == (2,)
    # without warm-up the first step already uses k * lr, with warm-up it starts at lr
    assert rows[1]["train_loss"] != rows[2]["train_loss"]


@pytest.mark.mnist
def test_generalisation_gap_rows(data):
    rows = hyper.generalisation_gap(data, batch_sizes=(64, 256), lr=0.02, epochs=1,
                                    n_sharpness=32, power_iters=3, seed=0)
    assert [r["batch_size"] for r in rows] == [64, 256]
    for r in rows:
        assert r["gap"] == pytest.approx(r["train_acc"] - r["test_acc"])
        assert math.isfinite(r["hessian_top"]) and r["eps_sharpness"] >= 0


@pytest.mark.parametrize("call, err", [
    (lambda: hyper.mnist_subset(0), ValueError),
    (lambda: hyper.mnist_subset(70000), ValueError),
    (lambda: hyper.mnist_subset(10.5), TypeError),
])
def test_mnist_subset_bad_sizes_fail_before_reading_data(call, err):
    with pytest.raises(err):
        call()


@pytest.mark.parametrize("call, err", [
    (lambda d: hyper.evaluate(hyper.lenet5(0), d[0], d[1][:-1]), ValueError),
    (lambda d: hyper.train(hyper.lenet5(0), d[0], d[1], 0.1, 1, 32), TypeError),
    (lambda d: hyper.train(hyper.lenet5(0), d[0], d[1], schedules.Constant(0.1), 0, 32),
     ValueError),
    (lambda d: hyper.train(hyper.lenet5(0), d[0], d[1], schedules.Constant(0.1), 1, 0),
     ValueError),
    (lambda d: hyper.batch_size_sweep(d, batch_sizes=(0,)), ValueError),
    (lambda d: hyper.generalisation_gap(d, batch_sizes=(32,), n_sharpness=0), ValueError),
])
@pytest.mark.mnist
def test_bad_input(data, call, err):
    with pytest.raises(err):
        call(data)

"""LeNet-5 in the zoo, its shipped weights, and the training command line."""

import json

import numpy as np
import pytest

from cnnlib.models import zoo
from cnnlib.training import loop as train


def test_lenet5_has_the_classic_parameter_count_and_shapes():
    model = zoo.lenet5(rng=0)
    assert model.num_parameters() == 61_706
    x = np.zeros((3, 1, 28, 28), np.float32)
    assert model(x).shape == (3, 10)
    shapes = [p.shape for p in model.parameters()]
    assert shapes[0] == (6, 1, 5, 5) and shapes[2] == (16, 6, 5, 5) and shapes[4] == (120, 400)


def test_lenet5_is_deterministic_for_a_seed():
    a = zoo.lenet5(rng=3).state_dict()
    b = zoo.lenet5(rng=3).state_dict()
    c = zoo.lenet5(rng=4).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.weight"], c["0.weight"])


def test_predict_preprocesses_uint8_and_rejects_other_input():
    model = zoo.lenet5(rng=0)
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = model.predict(images)
    assert labels.shape == (5,) and labels.dtype.kind == "i"
    x = model.preprocess(images)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, 0], (images[0] / 255 - zoo.MNIST_MEAN) / zoo.MNIST_STD, rtol=1e-5)
    assert model.predict(images[:0]).shape == (0,)
    with pytest.raises(TypeError, match="images must be uint8"):
        model.predict(images.astype(np.float32))
    with pytest.raises(ValueError, match="images must have shape"):
        model.predict(images[:, :27])


def test_pretrained_weights_load_with_their_record():
    model = zoo.lenet5(pretrained=True)
    info = zoo.pretrained_info()
    assert info["command"].startswith("python -m cnnlib.training lenet5")
    assert info["seed"] == 0 and info["parameters"] == 61_706
    assert info["test_accuracy"] >= 0.99
    assert np.abs(model[0].weight.data).max() > 0


@pytest.mark.mnist
def test_pretrained_weights_reach_99_percent_on_mnist_test():
    from cnnlib.data.mnist import load_mnist
    images, labels = load_mnist("test")
    model = zoo.lenet5(pretrained=True)
    acc = train.accuracy(model, images, labels)
    assert acc >= 0.99
    assert acc == pytest.approx(zoo.pretrained_info()["test_accuracy"], abs=1e-4)


def _tiny_mnist(split, data_dir=None):
    """Two well-separated synthetic 'digits' so that one epoch learns them."""
    rng = np.random.default_rng(0 if split == "train" else 1)
    n = 256 if split == "train" else 64
    labels = rng.integers(0, 2, n).astype(np.uint8)
    images = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    images[labels == 0, 4:24, 4:10] = 255   # a vertical bar
    images[labels == 1, 4:10, 4:24] = 255   # a horizontal bar
    return images, labels


def test_train_command_line_writes_weights_and_prints_accuracy(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(train, "load_mnist", _tiny_mnist)
    out = tmp_path / "w.npz"
    train.main(["lenet5", "--epochs", "2", "--batch-size", "32", "--seed", "1", "--out", str(out)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ")
    acc = float(last.split(": ")[1])
    assert acc >= 0.9
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["seed"] == 1 and record["epochs"] == 2
    assert record["command"] == f"python -m cnnlib.training lenet5 --epochs 2 --batch-size 32 --seed 1 --out {out}"
    assert len(record["history"]["epoch_seconds"]) == 2
    model = zoo.lenet5()
    with np.load(out) as data:
        model.load_state_dict({k: data[k] for k in data.files})
    images, labels = _tiny_mnist("test")
    assert train.accuracy(model, images, labels) == pytest.approx(acc)


def test_train_command_line_rejects_bad_settings(capsys):
    with pytest.raises(SystemExit):
        train.main(["lenet5", "--epochs", "0"])
    assert "must be positive" in capsys.readouterr().err


def test_training_is_reproducible(monkeypatch):
    monkeypatch.setattr(train, "load_mnist", _tiny_mnist)
    _, h1 = train.fit_lenet5(epochs=1, batch_size=64, seed=5, progress=False)
    _, h2 = train.fit_lenet5(epochs=1, batch_size=64, seed=5, progress=False)
    assert h1["train_loss"] == h2["train_loss"]


def test_a_seed_gives_each_layer_its_own_draws():
    # with one generator per layer built from the same seed, every layer
    # would start from the same uniform numbers, only scaled by its bound
    model = zoo.lenet5(rng=0)
    first = model[0].weight.data.ravel()[:20] * np.sqrt(25)    # bound 1/sqrt(fan_in)
    second = model[3].weight.data.ravel()[:20] * np.sqrt(150)
    assert not np.allclose(first, second)

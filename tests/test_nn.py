"""Tests for cnnlib.nn: modules, layers, initialisation, and a small model end to end."""

import math
import re

import numpy as np
import pytest

from cnnlib import functional as F
from cnnlib import nn, optim
from cnnlib._random import get_rng, manual_seed


def tiny_model(dtype=np.float32, rng=0):
    """Conv -> ReLU -> MaxPool -> Flatten -> Linear, for (N, 1, 6, 6) inputs and 3 classes."""
    rng = np.random.default_rng(rng)
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, dtype=dtype, rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * 3 * 3, 3, dtype=dtype, rng=rng),
    )


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 3), nn.Tanh())
        self.scale = nn.Parameter(np.ones(3, dtype=np.float32))
        self.head = nn.Linear(3, 2, bias=False)

    def forward(self, x):
        return self.head(self.features(x) * self.scale.data)


# ----------------------------------------------------------------------------
# Module mechanics
# ----------------------------------------------------------------------------

def test_parameters_are_registered_in_order_with_dotted_names():
    model = TwoLayer()
    # As in PyTorch: a module's own parameters first, then each child's in turn.
    names = [name for name, _ in model.named_parameters()]
    assert names == ["scale", "features.0.weight", "features.0.bias", "head.weight"]
    assert [p.shape for p in model.parameters()] == [(3,), (3, 4), (3,), (2, 3)]
    assert model.num_parameters() == 12 + 3 + 3 + 6
    assert [name for name, _ in tiny_model().named_parameters()] == [
        "0.weight", "0.bias", "4.weight", "4.bias"]


def test_reassigning_and_sharing_parameters():
    model = TwoLayer()
    model.scale = None  # no longer a parameter
    assert "scale" not in dict(model.named_parameters())
    shared = nn.Linear(2, 2)
    both = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(both.parameters())) == 2  # each parameter once


def test_setting_attributes_before_super_init_is_an_error():
    class Broken(nn.Module):
        def __init__(self):
            self.weight = nn.Parameter(np.zeros(2))

    with pytest.raises(RuntimeError, match=re.escape("super().__init__()")):
        Broken()


def test_parameter_grad_starts_at_zero_with_same_shape_and_dtype():
    p = nn.Parameter(np.ones((2, 3), dtype=np.float32))
    assert p.grad.shape == (2, 3) and p.grad.dtype == np.float32 and not p.grad.any()
    with pytest.raises(TypeError, match="floating-point"):
        nn.Parameter(np.arange(3))


def test_zero_grad():
    model = TwoLayer()
    for p in model.parameters():
        p.grad += 1.0
    model.zero_grad()
    assert all(not p.grad.any() for p in model.parameters())


def test_train_and_eval_propagate_to_children():
    model = TwoLayer()
    assert all(m.training for _, m in model.named_modules())
    assert model.eval() is model
    assert not any(m.training for _, m in model.named_modules())
    model.train()
    assert all(m.training for _, m in model.named_modules())


def test_state_dict_round_trip_copies_arrays():
    a, b = tiny_model(rng=1), tiny_model(rng=2)
    state = a.state_dict()
    assert list(state) == [name for name, _ in a.named_parameters()]
    state["0.bias"][...] = 7.0  # a copy: the model is unchanged
    assert not np.any(a[0].bias.data == 7.0)
    weight = b[0].weight.data
    b.load_state_dict(a.state_dict())
    assert b[0].weight.data is weight  # loaded in place
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_load_state_dict_is_strict():
    model = tiny_model()
    before = model.state_dict()
    missing = model.state_dict()
    del missing["4.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['4.bias'\]"):
        model.load_state_dict(missing)
    unexpected = {**model.state_dict(), "5.weight": np.zeros(3)}
    with pytest.raises(ValueError, match=r"unexpected keys \['5.weight'\]"):
        model.load_state_dict(unexpected)
    wrong_shape = model.state_dict()
    wrong_shape["0.weight"] = np.zeros((2, 1, 5, 5), dtype=np.float32)
    wrong_shape["0.bias"] = np.zeros(2, dtype=np.float32)
    with pytest.raises(ValueError, match=r"'0.weight'.*\(2, 1, 5, 5\).*\(2, 1, 3, 3\)"):
        model.load_state_dict(wrong_shape)
    for name, value in model.state_dict().items():  # nothing was copied
        np.testing.assert_array_equal(value, before[name])


def test_buffers_are_state_but_not_parameters():
    class Running(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("running_mean", np.zeros(3))

    model = nn.Sequential(nn.Linear(2, 3), Running())
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    state = model.state_dict()
    assert list(state) == ["0.weight", "0.bias", "1.running_mean"]
    state["1.running_mean"] = np.arange(3.0)
    model.load_state_dict(state)
    np.testing.assert_array_equal(model[1].running_mean, [0.0, 1.0, 2.0])


def test_sequential_indexing_and_len():
    model = tiny_model()
    assert len(model) == 5
    assert isinstance(model[0], nn.Conv2d) and isinstance(model[-1], nn.Linear)
    head = model[3:]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[1] is model[4]
    assert list(model) == [model[i] for i in range(5)]
    with pytest.raises(TypeError, match="position 1"):
        nn.Sequential(nn.ReLU(), np.zeros(3))


def test_repr_is_readable():
    text = repr(tiny_model())
    assert text.startswith("Sequential(\n  (0): Conv2d(1, 2, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))")
    assert "(1): ReLU()" in text and "(4): Linear(in_features=18, out_features=3, bias=True)" in text
    assert text.endswith("\n)")


@pytest.mark.parametrize("layer", [
    nn.Conv2d(1, 1, 3), nn.Linear(3, 2), nn.MaxPool2d(2), nn.AvgPool2d(2),
    nn.ReLU(), nn.Sigmoid(), nn.Tanh(), nn.Flatten(), nn.CrossEntropyLoss(), tiny_model(),
], ids=lambda m: type(m).__name__)
def test_backward_before_forward_is_an_error(layer):
    with pytest.raises(RuntimeError, match="before forward"):
        layer.backward(np.ones((1, 1), dtype=np.float32))


# ----------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("make, fan_in", [
    (lambda rng: nn.Conv2d(8, 16, 3, rng=rng), 8 * 9),
    (lambda rng: nn.Conv2d(8, 16, (3, 5), groups=4, rng=rng), 2 * 15),
    (lambda rng: nn.Linear(50, 40, rng=rng), 50),
])
def test_default_init_matches_pytorch_bounds(make, fan_in):
    layer = make(0)
    bound = 1 / math.sqrt(fan_in)
    for p in (layer.weight, layer.bias):
        assert p.dtype == np.float32
        assert np.abs(p.data).max() <= bound
    w = layer.weight.data.astype(np.float64)
    # U(-b, b): mean 0, variance b^2 / 3, so about 4 standard errors of slack.
    se = bound / math.sqrt(3 * w.size)
    assert abs(w.mean()) < 4 * se
    assert abs(w.var() / (bound**2 / 3) - 1) < 0.15
    assert np.abs(w).max() > 0.9 * bound


def test_init_is_deterministic_given_a_seed():
    a, b = nn.Conv2d(3, 4, 3, rng=5), nn.Conv2d(3, 4, 3, rng=5)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    np.testing.assert_array_equal(a.bias.data, b.bias.data)
    assert not np.array_equal(a.weight.data, nn.Conv2d(3, 4, 3, rng=6).weight.data)
    manual_seed(123)
    first = nn.Linear(4, 3).weight.data
    manual_seed(123)
    np.testing.assert_array_equal(first, nn.Linear(4, 3).weight.data)


def test_get_rng():
    g = np.random.default_rng(0)
    assert get_rng(g) is g
    assert get_rng(None) is get_rng()
    assert get_rng(3).random() == np.random.default_rng(3).random()
    with pytest.raises(TypeError, match="rng"):
        get_rng("seed")


def test_init_helpers():
    w = np.empty((5, 4, 3, 3))
    assert nn.init.calculate_fan_in_and_fan_out(w) == (36, 45)
    nn.init.kaiming_uniform_(w, nonlinearity="relu", rng=0)
    assert np.abs(w).max() <= math.sqrt(2) * math.sqrt(3 / 36)
    nn.init.uniform_(w, 2.0, 3.0, rng=0)
    assert w.min() >= 2.0 and w.max() < 3.0
    with pytest.raises(ValueError, match="mode"):
        nn.init.kaiming_uniform_(w, mode="fan")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        nn.init.kaiming_uniform_(np.empty(3))


def test_dtype_keyword():
    layer = nn.Conv2d(2, 2, 1, dtype=np.float64)
    assert layer.weight.dtype == layer.bias.dtype == np.float64
    assert nn.Linear(2, 2, bias=False, dtype="float64").bias is None


# ----------------------------------------------------------------------------
# Layers against the functional core and against PyTorch
# ----------------------------------------------------------------------------

def test_sequential_backward_is_the_chain_of_functional_backwards():
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, rng=1), nn.Sigmoid(),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 3, rng=2))
    conv, lin = model[0], model[4]
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    y = model(x)
    g = rng.standard_normal(y.shape).astype(np.float32)
    dx = model.backward(g)

    h1 = F.conv2d(x, conv.weight.data, conv.bias.data, padding=1)
    h2 = F.sigmoid(h1)
    h3 = F.avg_pool2d(h2, 2)
    h4 = h3.reshape(2, -1)
    np.testing.assert_array_equal(y, F.linear(h4, lin.weight.data, lin.bias.data))
    d4, dwl, dbl = F.linear_backward(g, h4, lin.weight.data, lin.bias.data)
    d2 = F.avg_pool2d_backward(d4.reshape(h3.shape), h2, 2)
    d1 = F.sigmoid_backward(d2, h1)
    d0, dwc, dbc = F.conv2d_backward(d1, x, conv.weight.data, conv.bias.data, padding=1)
    for got, want in [(dx, d0), (conv.weight.grad, dwc), (conv.bias.grad, dbc),
                      (lin.weight.grad, dwl), (lin.bias.grad, dbl)]:
        np.testing.assert_array_equal(got, want)

    model.backward(g)  # gradients accumulate until zero_grad
    np.testing.assert_allclose(lin.weight.grad, 2 * dwl, rtol=1e-6)


def numerical_gradient(f, x, h=1e-6):
    """Central differences of the scalar function f() with respect to array x (changed in place)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        plus = f()
        x[i] = old - h
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def rel_error(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(a) + np.abs(b)), 1e-12)


def test_gradient_check_of_a_tiny_model():
    rng = np.random.default_rng(3)
    model = tiny_model(np.float64, rng=4)
    loss_fn = nn.CrossEntropyLoss()
    x = rng.standard_normal((2, 1, 6, 6))
    target = np.array([0, 2])

    def loss():
        return float(loss_fn(model(x), target))

    loss()
    model.zero_grad()
    dx = model.backward(loss_fn.backward())
    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-6
    for name, p in model.named_parameters():
        err = rel_error(p.grad, numerical_gradient(loss, p.data))
        assert err < 1e-6, f"{name}: relative error {err:.2e}"


def test_cross_entropy_loss_reductions():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    t = np.array([0, 1, 2, 1])
    mean, total, each = (nn.CrossEntropyLoss(r) for r in ("mean", "sum", "none"))
    per_sample = each(x, t)
    assert per_sample.shape == (4,)
    np.testing.assert_allclose(total(x, t), per_sample.sum())
    np.testing.assert_allclose(mean(x, t), per_sample.mean())
    weights = np.array([1.0, 0.0, 2.0, -1.0])
    np.testing.assert_allclose(each.backward(weights), total.backward() * weights[:, None])
    np.testing.assert_allclose(mean.backward(2.0), 2 * total.backward() / 4)


def test_flatten():
    x = np.arange(120, dtype=np.float32).reshape(2, 3, 4, 5)
    flat = nn.Flatten()
    assert flat(x).shape == (2, 60)
    assert flat.backward(np.ones((2, 60))).shape == (2, 3, 4, 5)
    assert nn.Flatten(1, 2)(x).shape == (2, 12, 5)
    with pytest.raises(IndexError, match="does not fit"):   # torch: IndexError too
        nn.Flatten(4)(x)


def test_forward_and_backward_match_torch_nn():
    torch = pytest.importorskip("torch", reason="PyTorch not installed: reference comparison skipped")
    tnn = torch.nn
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, rng=0), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, rng=1), nn.Tanh(),
        nn.AvgPool2d(2, stride=1), nn.Flatten(), nn.Linear(6, 5, rng=2), nn.Sigmoid(),
        nn.Linear(5, 3, bias=False, rng=3))
    reference = tnn.Sequential(
        tnn.Conv2d(3, 4, 3, padding=1), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2), tnn.Tanh(),
        tnn.AvgPool2d(2, stride=1), tnn.Flatten(), tnn.Linear(6, 5), tnn.Sigmoid(),
        tnn.Linear(5, 3, bias=False))
    # Same names in both libraries, so the state dict carries over directly.
    reference.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 8, 8)).astype(np.float32)
    target = np.array([0, 2, 1, 2])
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(model(x), target)
    dx = model.backward(loss_fn.backward())

    tx = torch.from_numpy(x).requires_grad_(True)
    tloss = tnn.CrossEntropyLoss()(reference(tx), torch.from_numpy(target))
    tloss.backward()
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    tgrads = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tgrads[name].grad.numpy(), rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_training_reduces_the_loss():
    rng = np.random.default_rng(0)
    n = 64
    labels = rng.integers(0, 2, n)
    x = (rng.standard_normal((n, 2)) + 2.0 * (2 * labels[:, None] - 1)).astype(np.float32)
    model = nn.Sequential(nn.Linear(2, 8, rng=1), nn.Tanh(), nn.Linear(8, 2, rng=2))
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(40):
        losses.append(float(loss_fn(model(x), labels)))
        opt.zero_grad()
        model.backward(loss_fn.backward())
        opt.step()
    assert losses[-1] < 0.25 * losses[0]
    assert np.mean(model(x).argmax(axis=1) == labels) > 0.95


# ----------------------------------------------------------------------------
# Bad constructor arguments
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("make, error, match", [
    (lambda: nn.Conv2d(0, 4, 3), ValueError, "in_channels"),
    (lambda: nn.Conv2d(3, -1, 3), ValueError, "out_channels"),
    (lambda: nn.Conv2d(3, 4, 0), ValueError, "kernel_size"),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), ValueError, "stride"),
    (lambda: nn.Conv2d(3, 4, 3, padding=-1), ValueError, "padding"),
    (lambda: nn.Conv2d(3, 4, 3, padding="full"), ValueError, "padding"),
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "padding='same'"),
    (lambda: nn.Conv2d(3, 4, 3, dilation=0), ValueError, "dilation"),
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "groups=2 must divide in_channels"),
    (lambda: nn.Conv2d(4, 6, 3, groups=4), ValueError, "groups=4 must divide out_channels"),
    (lambda: nn.Conv2d(4, 4, 3, groups=0), ValueError, "groups"),
    (lambda: nn.Conv2d(3, 4, 2.5), TypeError, "kernel_size"),
    (lambda: nn.Conv2d(3, 4, 3, dtype=np.int32), TypeError, "dtype"),
    (lambda: nn.Linear(0, 3), ValueError, "in_features"),
    (lambda: nn.Linear(3, 2.0), ValueError, "out_features"),
    (lambda: nn.Linear(3, 2, dtype=np.float16), TypeError, "dtype"),
    (lambda: nn.MaxPool2d(0), ValueError, "kernel_size"),
    (lambda: nn.MaxPool2d(2, stride=0), ValueError, "stride"),
    (lambda: nn.MaxPool2d(2, padding=2), ValueError, "padding"),
    (lambda: nn.MaxPool2d(3, dilation=0), ValueError, "dilation"),
    (lambda: nn.AvgPool2d(3, padding=-1), ValueError, "padding"),
    (lambda: nn.Flatten(1.5), ValueError, "start_dim"),
    (lambda: nn.CrossEntropyLoss("average"), ValueError, "reduction"),
])
def test_bad_constructor_arguments(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_saved_values_can_be_taken_and_put_back():
    """The public hooks that pipelines, checkpointing and summaries use."""
    layer = nn.ReLU()
    assert layer.saved(required=False) is None
    with pytest.raises(RuntimeError, match="before forward"):
        layer.saved()
    x = np.array([[-1.0, 2.0]])
    layer(x)
    taken = layer.saved(required=False)
    assert isinstance(taken, tuple)
    layer.restore_saved(None)
    assert layer.saved(required=False) is None
    layer.restore_saved(taken)
    np.testing.assert_array_equal(layer.backward(np.ones((1, 2))), [[0.0, 1.0]])
    with pytest.raises(TypeError, match="tuple"):
        layer.restore_saved([x])


def test_own_parameters_and_buffers_with_recurse_false():
    model = nn.Sequential(nn.Linear(3, 2, rng=0), nn.BatchNorm2d(2))
    assert list(model.parameters(recurse=False)) == []
    assert list(model.named_buffers(recurse=False)) == []
    assert [n for n, _ in model[0].named_parameters(recurse=False)] == ["weight", "bias"]
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.weight", "1.bias"]
    assert [n for n, _ in model[1].named_buffers(recurse=False)] == [
        "running_mean", "running_var", "num_batches_tracked"]

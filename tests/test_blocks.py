"""Tests for ResNet's blocks (cnnlib.nn.blocks) and the model summary (cnnlib.analysis.summary)."""

import re

import numpy as np
import pytest
try:
    import torch
except ImportError:  # the comparisons with PyTorch skip, saying why
    torch = None
from naive import numerical_gradient, rel_error

from cnnlib import nn
from cnnlib.analysis.summary import LayerRow, Summary, count_parameters, format_summary, summary
from cnnlib.models import zoo
from cnnlib.nn.blocks import PlainBlock, ResidualBlock
from cnnlib.nn.norm_layers import BatchNorm2d

requires_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed: reference comparison skipped")

# ----------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------

def torch_block(c_in, c_out, stride, batch_norm, residual):
    """torchvision's BasicBlock written out (torchvision is not a dependency);
    defined on call, so that this file imports without PyTorch."""

    class TorchBlock(torch.nn.Module):
        def __init__(self, c_in, c_out, stride, batch_norm, residual):
            super().__init__()
            bias = not batch_norm
            self.conv1 = torch.nn.Conv2d(c_in, c_out, 3, stride, 1, bias=bias)
            self.bn1 = torch.nn.BatchNorm2d(c_out) if batch_norm else torch.nn.Identity()
            self.conv2 = torch.nn.Conv2d(c_out, c_out, 3, 1, 1, bias=bias)
            self.bn2 = torch.nn.BatchNorm2d(c_out) if batch_norm else torch.nn.Identity()
            self.residual = residual
            self.downsample = None
            if residual and (stride != 1 or c_in != c_out):
                layers = [torch.nn.Conv2d(c_in, c_out, 1, stride, bias=bias)]
                if batch_norm:
                    layers.append(torch.nn.BatchNorm2d(c_out))
                self.downsample = torch.nn.Sequential(*layers)

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            if self.residual:
                out = out + (x if self.downsample is None else self.downsample(x))
            return torch.relu(out)

    return TorchBlock(c_in, c_out, stride, batch_norm, residual)


BLOCK_CASES = [  # (block class, c_in, c_out, stride, batch_norm)
    (ResidualBlock, 3, 3, 1, True),   # identity skip
    (ResidualBlock, 2, 4, 2, True),   # projection skip: 1x1 conv stride 2 + BN
    (ResidualBlock, 3, 3, 1, False),
    (ResidualBlock, 2, 3, 1, False),  # projection without BN: 1x1 conv with bias
    (PlainBlock, 2, 3, 2, True),
    (PlainBlock, 3, 3, 1, False),
]
CASE_IDS = [f"{cls.__name__}-{ci}-{co}-s{s}-bn{bn}" for cls, ci, co, s, bn in BLOCK_CASES]


def perturbed(block, rng):
    """Give the BN layers non-trivial affine parameters and running statistics."""
    for _, m in block.named_modules():
        if isinstance(m, BatchNorm2d):
            m.weight.data[...] = rng.uniform(0.5, 1.5, m.num_features)
            m.bias.data[...] = rng.standard_normal(m.num_features) * 0.3
            m.running_mean[...] = rng.standard_normal(m.num_features) * 0.3
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
    return block


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("cls, c_in, c_out, stride, batch_norm", BLOCK_CASES, ids=CASE_IDS)
def test_block_gradient_check(cls, c_in, c_out, stride, batch_norm, training):
    rng = np.random.default_rng(0)
    block = perturbed(cls(c_in, c_out, stride, batch_norm, dtype=np.float64, rng=1), rng).train(training)
    x = rng.standard_normal((2, c_in, 5, 4))
    y = block(x)
    assert y.shape == (2, c_out, 5 // stride + (5 % stride > 0), 4 // stride)
    g = rng.standard_normal(y.shape)
    block.zero_grad()
    dx = block.backward(g)
    state = block.state_dict()

    def f(_):
        out = block(x)
        block.load_state_dict(state)  # keep the running statistics where they were
        return out

    assert rel_error(dx, numerical_gradient(f, x, g)) < 1e-6
    for name, p in block.named_parameters():
        assert rel_error(p.grad, numerical_gradient(f, p.data, g)) < 1e-6, name


@requires_torch
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, c_in, c_out, stride, batch_norm", BLOCK_CASES, ids=CASE_IDS)
def test_block_matches_torch(cls, c_in, c_out, stride, batch_norm, dtype, training):
    rng = np.random.default_rng(2)
    ours = perturbed(cls(c_in, c_out, stride, batch_norm, dtype=dtype, rng=3), rng).train(training)
    theirs = torch_block(c_in, c_out, stride, batch_norm, cls is ResidualBlock)
    theirs = theirs.to(torch.float64 if dtype == np.float64 else torch.float32).train(training)
    # The parameter and buffer names are torchvision's, so state dicts load both ways
    # (cnnlib lists all parameters before all buffers, torch module by module).
    assert sorted(ours.state_dict()) == sorted(theirs.state_dict())
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    x = rng.standard_normal((3, c_in, 6, 6)).astype(dtype)
    xt = torch.tensor(x, requires_grad=True)
    yt = theirs(xt)
    y = ours(x)
    g = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.tensor(g))
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), **tol)
    torch_params = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, torch_params[name].grad.numpy(), **tol, err_msg=name)
    for name, value in theirs.state_dict().items():  # running statistics after the step
        np.testing.assert_allclose(ours.state_dict()[name], value.numpy(), **tol, err_msg=name)


def test_residual_block_structure():
    same = ResidualBlock(4, 4)
    assert same.downsample is None
    assert [n for n, _ in same.named_parameters()] == [
        "conv1.weight", "bn1.weight", "bn1.bias", "conv2.weight", "bn2.weight", "bn2.bias"]
    proj = ResidualBlock(4, 8, stride=2)
    assert isinstance(proj.downsample[0], nn.Conv2d) and proj.downsample[0].kernel_size == (1, 1)
    assert proj.downsample[0].stride == (2, 2) and isinstance(proj.downsample[1], BatchNorm2d)
    assert ResidualBlock(4, 4, stride=2).downsample is not None
    no_bn = ResidualBlock(2, 2, batch_norm=False)
    assert [n for n, _ in no_bn.named_parameters()] == [
        "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]
    assert [n for n, _ in PlainBlock(4, 8, 2).named_parameters()] == [
        n for n, _ in proj.named_parameters() if not n.startswith("downsample")]
    assert ResidualBlock(3, 5, dtype=np.float64).conv1.weight.dtype == np.float64
    assert repr(proj).startswith("ResidualBlock(4, 8, stride=2, batch_norm=True\n  (conv1): Conv2d(4, 8")


def test_identity_skip_adds_the_gradient_itself():
    """With the main path switched off (last BN scaled to 0) the block is ReLU(x): J = I on x > 0."""
    block = ResidualBlock(2, 2, dtype=np.float64, rng=0)
    block.bn2.weight.data[...] = 0
    block.bn2.bias.data[...] = 0
    x = np.random.default_rng(1).standard_normal((2, 2, 3, 3))
    np.testing.assert_array_equal(block(x), np.maximum(x, 0))
    g = np.ones_like(x)
    np.testing.assert_array_equal(block.backward(g), (x > 0).astype(float))


def test_block_bad_input():
    with pytest.raises(ValueError, match="in_channels must be a positive int"):
        ResidualBlock(0, 4)
    with pytest.raises(ValueError, match="stride must be a positive int"):
        ResidualBlock(4, 4, stride=0)
    with pytest.raises(TypeError, match="batch_norm must be a bool"):
        PlainBlock(4, 4, batch_norm="yes")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        ResidualBlock(4, 4, dtype=np.int64)
    block = ResidualBlock(3, 3)
    with pytest.raises(ValueError, match="channels"):
        block(np.ones((2, 4, 5, 5), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        block.backward(np.ones((2, 3, 5, 5), np.float32))


# ----------------------------------------------------------------------------
# Summary
# ----------------------------------------------------------------------------

def test_summary_of_lenet5():
    model = zoo.lenet5(rng=0)
    result = summary(model, (1, 28, 28))
    assert isinstance(result, Summary)
    assert result.total_parameters == count_parameters(model) == 61_706
    assert [r.name for r in result.rows] == [str(i) for i in range(12)]
    assert result.rows[0] == LayerRow("0", "Conv2d", (6, 28, 28), 156, 6 * 28 * 28 * 25)
    assert result.rows[3] == LayerRow("3", "Conv2d", (16, 10, 10), 2416, 16 * 10 * 10 * 6 * 25)
    assert result.rows[5].output_shape == (16, 5, 5) and result.rows[6].output_shape == (400,)
    assert result.rows[7] == LayerRow("7", "Linear", (120,), 48_120, 400 * 120)
    assert result.output_shape == (10,) and result.input_shape == (1, 28, 28)
    assert result.total_macs == 117_600 + 240_000 + 48_000 + 10_080 + 840
    assert sum(r.parameters for r in result.rows) == result.total_parameters
    text = format_summary(result)
    assert str(result) == text
    assert "Total parameters: 61,706" in text and "117,600" in text
    assert re.search(r"^0\s+Conv2d\s+\(6, 28, 28\)\s+156\s+117,600$", text, re.M)


def test_summary_of_a_residual_block_has_no_side_effects():
    block = ResidualBlock(4, 8, stride=2, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 4, 6, 6)).astype(np.float32)
    y = block(x)  # training mode: the running statistics move
    before = block.state_dict()
    result = summary(block, (4, 6, 6))
    assert block.training and all(m.training for _, m in block.named_modules())
    for name, value in block.state_dict().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    assert "forward" not in block.conv1.__dict__
    # The saved activations are those of our forward, not of the summary's.
    g = np.ones_like(y)
    dx = block.backward(g)
    assert dx.shape == x.shape
    names = [r.name for r in result.rows]
    assert names == ["conv1", "bn1", "relu1", "conv2", "bn2", "downsample.0", "downsample.1", "relu2"]
    rows = {r.name: r for r in result.rows}
    assert rows["conv1"].output_shape == (8, 3, 3) and rows["conv1"].macs == 8 * 9 * 4 * 9
    assert rows["conv2"].macs == 8 * 9 * 8 * 9 and rows["downsample.0"].macs == 8 * 9 * 4
    assert rows["bn1"].parameters == 16 and rows["bn1"].macs == 0
    assert result.total_parameters == 4 * 8 * 9 + 8 * 8 * 9 + 4 * 8 + 3 * 16
    assert result.output_shape == (8, 3, 3)


def test_count_parameters_checks_vgg_claim():
    """Three stacked 3x3 convolutions (receptive field 7x7) have 27 C^2 weights, one 7x7 has 49 C^2."""
    c = 16
    stack = nn.Sequential(*[nn.Conv2d(c, c, 3, padding=1, bias=False) for _ in range(3)])
    assert count_parameters(stack) == 27 * c * c
    assert count_parameters(nn.Conv2d(c, c, 7, bias=False)) == 49 * c * c


def test_summary_of_a_model_with_own_parameters_and_shared_layers():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(np.ones(3, dtype=np.float32))
            self.lin = nn.Linear(3, 3, rng=0)

        def forward(self, x):
            return self.lin(self.lin(x) * self.scale.data)

    model = Scaled()
    result = summary(model, (3,))
    assert [(r.name, r.parameters) for r in result.rows] == [("", 3), ("lin", 12)]
    assert result.total_parameters == 15 == sum(r.parameters for r in result.rows)
    assert "(root)" in format_summary(result)
    conv = summary(nn.Conv2d(1, 6, 5, padding=2), (1, 28, 28))  # a bare layer is its own row
    assert conv.rows == [LayerRow("", "Conv2d", (6, 28, 28), 156, 117_600)]


def test_summary_bad_input():
    with pytest.raises(TypeError, match="model must be a cnnlib.nn.Module"):
        summary(lambda x: x, (2,))
    with pytest.raises(TypeError, match="model must be a cnnlib.nn.Module"):
        count_parameters("lenet")
    for shape in ((), (0, 28, 28), (1, 28.0), 28):
        with pytest.raises(ValueError, match="input_shape must be"):
            summary(zoo.lenet5(), shape)
    with pytest.raises(TypeError, match="result must be a Summary"):
        format_summary([])
    model = zoo.lenet5()
    with pytest.raises(ValueError):
        summary(model, (1, 8, 8))  # too small for the convolutions
    assert "forward" not in model[0].__dict__  # restored after the failure


def test_a_seed_gives_each_convolution_of_a_block_its_own_draws():
    from cnnlib import nn as cnn
    block = cnn.ResidualBlock(4, 4, batch_norm=False, rng=0)
    assert not np.allclose(block.conv1.weight.data, block.conv2.weight.data)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_main_layers_are_the_blocks_own_in_order(batch_norm):
    block = ResidualBlock(3, 3, batch_norm=batch_norm, rng=0)
    block.eval()
    layers = block.main_layers()
    assert layers[0] is block.conv1 and layers[-1] is (block.bn2 if batch_norm else block.conv2)
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5)).astype(np.float32)
    branch = x
    for layer in layers:
        branch = layer(branch)
    np.testing.assert_allclose(block(x), np.maximum(branch + x, 0), rtol=1e-6, atol=1e-6)

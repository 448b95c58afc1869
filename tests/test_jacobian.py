"""Tests for full Jacobians by backward and by central differences (cnnlib.analysis.jacobian)."""

import numpy as np
import pytest
from naive import rel_error

from cnnlib import nn
from cnnlib.analysis.jacobian import jacobian, numerical_jacobian, residual_jacobian
from cnnlib.nn.blocks import PlainBlock, ResidualBlock


def test_jacobian_of_linear_layer_is_its_weight():
    layer = nn.Linear(5, 3, dtype=np.float64, rng=0)
    x = np.random.default_rng(1).standard_normal((1, 5))
    np.testing.assert_allclose(jacobian(layer, x), layer.weight.data, rtol=0, atol=1e-15)


def test_jacobian_of_batch_is_block_diagonal_without_bn():
    layer = nn.Linear(4, 2, dtype=np.float64, rng=0)
    x = np.random.default_rng(1).standard_normal((3, 4))
    expected = np.kron(np.eye(3), layer.weight.data)
    np.testing.assert_allclose(jacobian(layer, x), expected, rtol=0, atol=1e-15)


def test_numerical_jacobian_of_known_functions():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4))
    x = rng.standard_normal(4)
    np.testing.assert_allclose(numerical_jacobian(lambda v: a @ v, x), a, atol=1e-9)
    np.testing.assert_allclose(numerical_jacobian(lambda v: v ** 2, x), np.diag(2 * x), atol=1e-8)


@pytest.mark.parametrize("module", [
    lambda: nn.Conv2d(2, 3, 3, stride=2, padding=1, dtype=np.float64, rng=0),
    lambda: nn.Sequential(nn.Conv2d(2, 2, 3, padding=1, dtype=np.float64, rng=0), nn.Tanh()),
    lambda: PlainBlock(2, 2, batch_norm=True, dtype=np.float64, rng=0),
    lambda: ResidualBlock(2, 2, batch_norm=True, dtype=np.float64, rng=0),
    lambda: ResidualBlock(2, 3, stride=2, batch_norm=False, dtype=np.float64, rng=0),
    lambda: nn.LocalResponseNorm(3, alpha=0.5, beta=0.75, k=2.0),
])
def test_jacobian_by_backward_matches_central_differences(module):
    m = module()
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 4)) + 0.1  # no ReLU at exactly 0
    if isinstance(m, nn.LocalResponseNorm):
        x = x * 3
    by_backward = jacobian(m, x)
    by_differences = numerical_jacobian(m, x)
    assert by_backward.shape == by_differences.shape
    assert rel_error(by_backward, by_differences) < 1e-7


def test_batch_norm_in_training_mode_couples_examples():
    block = ResidualBlock(1, 1, batch_norm=True, dtype=np.float64, rng=0)
    x = np.random.default_rng(3).standard_normal((2, 1, 2, 2))
    j = jacobian(block, x)
    assert np.abs(j[:4, 4:]).max() > 1e-6  # example 0's output depends on example 1
    block.eval()
    j = jacobian(block, x)
    assert np.abs(j[:4, 4:]).max() == 0


def test_jacobian_leaves_gradients_and_buffers_unchanged():
    block = ResidualBlock(2, 2, batch_norm=True, dtype=np.float64, rng=0)
    for p in block.parameters():
        p.grad[...] = 0.5
    before = block.state_dict()
    jacobian(block, np.random.default_rng(4).standard_normal((2, 2, 3, 3)))
    for p in block.parameters():
        assert np.all(p.grad == 0.5)
    after = block.state_dict()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


@pytest.mark.parametrize("batch_norm", [False, True])
def test_residual_jacobian_is_gated_identity_plus_branch(batch_norm):
    block = ResidualBlock(2, 2, batch_norm=batch_norm, dtype=np.float64, rng=0)
    x = np.random.default_rng(5).standard_normal((2, 2, 3, 3))
    before = block.state_dict()
    parts = residual_jacobian(block, x)
    m = x.size
    assert parts.block.shape == parts.branch.shape == (m, m) and parts.gate.shape == (m,)
    assert set(np.unique(parts.gate)) <= {0.0, 1.0} and 0 < parts.gate.sum() < m
    expected = parts.gate[:, None] * (np.eye(m) + parts.branch)
    np.testing.assert_allclose(parts.block, expected, rtol=0, atol=1e-12)
    active = parts.gate == 1
    np.testing.assert_allclose((parts.block - parts.branch)[active], np.eye(m)[active],
                               rtol=0, atol=1e-12)
    for key, value in block.state_dict().items():  # residual_jacobian changed nothing
        np.testing.assert_array_equal(before[key], value)
    # the block's Jacobian by backward agrees with central differences
    assert rel_error(parts.block, numerical_jacobian(block, x)) < 1e-7


def test_residual_jacobian_gate_matches_block_output():
    block = ResidualBlock(2, 2, batch_norm=False, dtype=np.float64, rng=0)
    x = np.random.default_rng(6).standard_normal((1, 2, 3, 3))
    parts = residual_jacobian(block, x)
    np.testing.assert_array_equal(parts.gate, (block(x) > 0).ravel().astype(np.float64))


def test_bad_input():
    layer = nn.Linear(2, 2, dtype=np.float64, rng=0)
    with pytest.raises(TypeError, match="module must be a cnnlib.nn.Module"):
        jacobian(lambda v: v, np.zeros((1, 2)))
    with pytest.raises(TypeError, match="x must be a numpy.ndarray"):
        jacobian(layer, [[1.0, 2.0]])
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        jacobian(layer, np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="x must not be empty"):
        numerical_jacobian(lambda v: v, np.zeros((0,)))
    with pytest.raises(ValueError, match="use a smaller input"):
        numerical_jacobian(lambda v: v, np.zeros(3000))
    with pytest.raises(TypeError, match="f must be callable"):
        numerical_jacobian(3, np.zeros(2))
    with pytest.raises(ValueError, match="eps must be a positive finite number"):
        numerical_jacobian(lambda v: v, np.zeros(2), eps=0)
    with pytest.raises(ValueError, match="eps must be a positive finite number"):
        numerical_jacobian(lambda v: v, np.zeros(2), eps=float("nan"))
    with pytest.raises(TypeError, match="block must be a cnnlib.nn.ResidualBlock"):
        residual_jacobian(PlainBlock(2, 2, dtype=np.float64), np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match="identity skip"):
        residual_jacobian(ResidualBlock(2, 3, dtype=np.float64), np.zeros((1, 2, 3, 3)))
    with pytest.raises(ValueError, match=r"x must have shape \(N, 2, H, W\)"):
        residual_jacobian(ResidualBlock(2, 2, dtype=np.float64), np.zeros((1, 3, 3, 3)))

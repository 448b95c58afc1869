"""Tests for the gradient-through-depth experiments (cnnlib.analysis.gradflow).

The trends are checked with generous margins; the exact numbers depend on
the seed.
"""

import numpy as np
import pytest

from cnnlib.analysis.gradflow import activation_gradient_through_depth, residual_gradient_through_depth


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_sigmoid_gradients_vanish_and_relu_with_he_init_does_not(layer):
    kw = dict(depth=10, width=16, n_samples=16, rng=0, layer=layer)
    relu = activation_gradient_through_depth("relu", **kw)
    sigmoid = activation_gradient_through_depth("sigmoid", **kw)
    tanh = activation_gradient_through_depth("tanh", **kw)
    for g in (relu, sigmoid, tanh):
        assert g.shape == (10,) and g.dtype == np.float64 and np.all(g > 0)
    # The first layer's gradient: sigmoid' <= 1/4 per layer shrinks it by orders of magnitude.
    assert sigmoid[0] < 1e-3 * relu[0]
    assert sigmoid[0] < 1e-3 * sigmoid[-1]
    assert np.all(np.diff(np.log(sigmoid)) > 0)  # smaller at every step towards the input
    assert relu.max() / relu.min() < 10  # He init: about constant through depth
    assert tanh.max() / tanh.min() < 10  # tanh'(0) = 1 with Xavier init: mild
    assert sigmoid[0] < 1e-3 * tanh[0]


def test_activation_gradient_depends_on_init_and_is_deterministic():
    a = activation_gradient_through_depth("relu", depth=6, rng=3)
    np.testing.assert_array_equal(a, activation_gradient_through_depth("relu", depth=6, rng=3))
    assert not np.array_equal(a, activation_gradient_through_depth("relu", depth=6, rng=4))
    # PyTorch's default init (variance 1 / (3 fan_in)) loses a factor ~sqrt(6) per ReLU layer.
    default = activation_gradient_through_depth("relu", depth=10, init="default", rng=0)
    assert default[0] < 0.05 * default[-1]
    np.testing.assert_array_equal(
        activation_gradient_through_depth("tanh", depth=4, rng=1),
        activation_gradient_through_depth("tanh", depth=4, rng=1, init="xavier"))


def test_residual_gradient_stays_while_plain_vanishes():
    result = residual_gradient_through_depth(depths=(1, 2, 4, 8, 16), channels=8, rng=0)
    assert set(result) == {"depth", "plain", "residual"}
    np.testing.assert_array_equal(result["depth"], [1, 2, 4, 8, 16])
    plain, residual = result["plain"], result["residual"]
    assert plain.shape == residual.shape == (5,)
    assert np.all(np.diff(plain) < 0)  # shrinks with every added block
    assert plain[-1] < 1e-6 * plain[0]
    # The identity in each block's Jacobian keeps the residual gradient of order one.
    assert np.all((residual > 0.1) & (residual < 10))
    assert residual[-1] > 1e6 * plain[-1]
    again = residual_gradient_through_depth(depths=(1, 2, 4, 8, 16), channels=8, rng=0)
    for key in result:
        np.testing.assert_array_equal(result[key], again[key])


def test_residual_gradient_with_batch_norm():
    result = residual_gradient_through_depth(depths=(1, 4, 16), channels=4, rng=0, batch_norm=True)
    assert np.all(np.isfinite(result["plain"])) and np.all(np.isfinite(result["residual"]))
    # BN keeps the plain stack's gradient from vanishing (at initialisation it grows instead).
    assert result["plain"][-1] > 0.1


def test_bad_input():
    with pytest.raises(ValueError, match="activation must be one of"):
        activation_gradient_through_depth("gelu")
    with pytest.raises(ValueError, match="depth must be a positive int"):
        activation_gradient_through_depth("relu", depth=0)
    with pytest.raises(ValueError, match="width must be a positive int"):
        activation_gradient_through_depth("relu", width=2.0)
    with pytest.raises(ValueError, match="init must be"):
        activation_gradient_through_depth("relu", init="orthogonal")
    with pytest.raises(ValueError, match="layer must be 'linear' or 'conv'"):
        activation_gradient_through_depth("relu", layer="rnn")
    with pytest.raises(TypeError, match="rng must be"):
        activation_gradient_through_depth("relu", rng="seed")
    with pytest.raises(ValueError, match="depths must be a non-empty sequence"):
        residual_gradient_through_depth(depths=())
    with pytest.raises(ValueError, match="depths must be a non-empty sequence"):
        residual_gradient_through_depth(depths=(1, 0))
    with pytest.raises(ValueError, match="channels must be a positive int"):
        residual_gradient_through_depth(channels=0)
    with pytest.raises(TypeError, match="batch_norm must be a bool"):
        residual_gradient_through_depth(batch_norm=1)
    with pytest.raises(ValueError, match="more than one value per channel"):
        residual_gradient_through_depth(batch_norm=True, n_samples=1, size=1)

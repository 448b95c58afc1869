"""cnnlib.theory.expressive: the ReLU interpolant, the sawtooth, exact piece counts (chapter 6.1)."""

import numpy as np
import pytest

from cnnlib.experiments import depth
from cnnlib.nn import Conv2d, Linear, ReLU, Sequential, Tanh
from cnnlib.theory import (count_linear_pieces, interpolation_error_bound, linear_pieces,
                           relu_interpolant, sawtooth_network, shallow_l1_lower_bound)


def tent(x):
    return np.maximum(2 * np.maximum(x, 0) - 4 * np.maximum(x - 0.5, 0), 0)


def random_net(widths, seed):
    """1 -> widths[0] -> ... -> widths[-1] -> 1, Gaussian weights and biases."""
    rng = np.random.default_rng(seed)
    layers, fan_in = [], 1
    for w in widths + [1]:
        lin = Linear(fan_in, w, dtype=np.float64, rng=0)
        lin.weight.data[...] = rng.standard_normal((w, fan_in))
        lin.bias.data[...] = rng.standard_normal(w)
        layers += [lin, ReLU()]
        fan_in = w
    return Sequential(*layers[:-1])


def shallow(kinks, coefs, bias=0.0):
    hidden, out = Linear(1, len(kinks), dtype=np.float64, rng=0), Linear(len(kinks), 1, dtype=np.float64, rng=0)
    hidden.weight.data[:] = 1.0
    hidden.bias.data[:] = -np.asarray(kinks, float)
    out.weight.data[0] = coefs
    out.bias.data[:] = bias
    return Sequential(hidden, ReLU(), out)


# ---------------------------------------------------------------- sawtooth
@pytest.mark.parametrize("k", range(1, 11))
def test_sawtooth_has_2_to_the_k_pieces(k):
    assert count_linear_pieces(sawtooth_network(k), 0.0, 1.0) == 2 ** k


def test_sawtooth_is_the_composed_tent_map_everywhere():
    x = np.random.default_rng(0).uniform(-1.5, 2.5, 2000)
    y = x.copy()
    for k in range(1, 7):
        y = tent(y)
        np.testing.assert_allclose(sawtooth_network(k)(x[:, None]).ravel(), y, atol=1e-12)


def test_sawtooth_is_two_units_wide_and_has_slopes_2_to_the_k():
    net = sawtooth_network(5)
    linears = [m for m in net if isinstance(m, Linear)]
    assert len(linears) == 6 and all(m.out_features <= 2 for m in linears)
    knots, values = linear_pieces(net, 0.0, 1.0)
    np.testing.assert_allclose(knots, np.arange(33) / 32, atol=1e-12)
    np.testing.assert_allclose(np.abs(np.diff(values.ravel()) / np.diff(knots)), 32.0)


# ---------------------------------------------------------------- counting
@pytest.mark.parametrize("widths", [[1], [3], [6], [2, 2], [3, 3], [4, 2], [2, 2, 2], [3, 3, 3]])
def test_random_networks_stay_below_the_2m_to_the_l_bound(widths):
    m, l = max(widths), len(widths)
    for seed in range(40):
        pieces = count_linear_pieces(random_net(widths, seed), -3.0, 3.0)
        assert 1 <= pieces <= (2 * m) ** l
        if l == 1:
            assert pieces <= m + 1


def test_known_breakpoints_of_a_one_hidden_layer_net():
    net = shallow([0.2, 0.5, 0.7, 1.5], [1.0, -2.0, 3.0, 1.0])
    knots, _ = linear_pieces(net, 0.0, 1.0)      # the kink at 1.5 lies outside
    np.testing.assert_allclose(knots, [0.0, 0.2, 0.5, 0.7, 1.0], atol=1e-12)
    assert count_linear_pieces(net, 0.0, 2.0) == 5


def test_a_cancelling_kink_is_merged_and_a_zero_net_is_one_piece():
    assert count_linear_pieces(shallow([0.3, 0.3, 0.6], [1.0, -1.0, 2.0]), 0.0, 1.0) == 2
    assert count_linear_pieces(shallow([0.3, 0.6], [0.0, 0.0]), 0.0, 1.0) == 1


@pytest.mark.parametrize("seed", range(20))
def test_pieces_are_affine_and_distinct_and_match_a_grid_count(seed):
    net = random_net([3, 3], seed)
    knots, values = linear_pieces(net, -2.0, 2.0)
    np.testing.assert_allclose(net(knots[:, None]), values, atol=1e-10)
    # affine on every piece: random interior points lie on the chord
    rng = np.random.default_rng(seed)
    u = rng.uniform(size=(len(knots) - 1, 5))
    x = knots[:-1, None] + u * np.diff(knots)[:, None]
    chord = values[:-1] + u * np.diff(values, axis=0)
    np.testing.assert_allclose(net(x.reshape(-1, 1)).reshape(x.shape), chord, atol=1e-9)
    slopes = np.diff(values.ravel()) / np.diff(knots)
    assert np.all(np.abs(np.diff(slopes)) > 1e-9 * np.maximum(1, np.abs(slopes[1:])))
    # a dense grid cannot miss a kink when every piece spans many grid cells
    grid = np.linspace(-2.0, 2.0, 400_001)
    if np.min(np.diff(knots)) > 1000 * (grid[1] - grid[0]):
        s = np.diff(net(grid[:, None]).ravel()) / np.diff(grid)
        changes = np.abs(np.diff(s)) > 1e-6 * np.maximum(1, np.abs(s[1:]))
        # a kink inside a grid cell changes the slope twice (in and out of that cell)
        kinks = np.count_nonzero(changes & ~np.concatenate([[False], changes[:-1]]))
        assert kinks + 1 == len(knots) - 1


# ---------------------------------------------------------------- interpolant
def test_interpolant_is_np_interp_and_has_n_pieces():
    f = np.sin
    net = relu_interpolant(f, -1.0, 2.0, 7)
    knots = np.linspace(-1.0, 2.0, 8)
    x = np.random.default_rng(1).uniform(-1.0, 2.0, 500)
    np.testing.assert_allclose(net(x[:, None]).ravel(), np.interp(x, knots, f(knots)), atol=1e-12)
    assert count_linear_pieces(net, -1.0, 2.0) == 7
    hidden = net[0]
    assert hidden.out_features == 7


@pytest.mark.parametrize("n", [1, 2, 5, 16])
def test_the_bound_is_attained_by_x_squared(n):
    net = relu_interpolant(np.square, 0.0, 2.0, n)
    x = np.linspace(0.0, 2.0, 32 * n + 1)                  # contains every midpoint
    err = np.max(np.abs(net(x[:, None]).ravel() - x ** 2))
    assert err == pytest.approx(interpolation_error_bound(2.0, 0.0, 2.0, n), rel=1e-10)


@pytest.mark.parametrize("f, f2", [(lambda x: np.sin(2 * np.pi * x), 4 * np.pi ** 2), (np.exp, np.e)])
def test_the_bound_holds(f, f2):
    for n in (2, 4, 8, 32):
        net = relu_interpolant(f, 0.0, 1.0, n)
        x = np.linspace(0, 1, 10_001)
        err = np.max(np.abs(net(x[:, None]).ravel() - f(x)))
        assert err <= interpolation_error_bound(f2, 0.0, 1.0, n) * (1 + 1e-12)


# ---------------------------------------------------------------- the L1 bound and error
def test_l1_error_exact_values():
    zero = shallow([0.5], [0.0])
    half = shallow([0.5], [0.0], bias=0.5)
    for k in (1, 3, 5):
        assert depth.l1_error(sawtooth_network(k), k) == pytest.approx(0.0, abs=1e-12)
        assert depth.l1_error(zero, k) == pytest.approx(0.5, rel=1e-12)
        assert depth.l1_error(half, k) == pytest.approx(0.25, rel=1e-12)
    assert shallow_l1_lower_bound(3, 1) == 0.25 and shallow_l1_lower_bound(3, 5) == 0.0


@pytest.mark.parametrize("k", [2, 3, 4])
def test_fitted_shallow_nets_respect_the_l1_lower_bound(k):
    x, y = depth.sawtooth_data(k, 256)
    for w in (2, 3, 5, 8):
        net = depth.shallow_network(w, rng=w)
        depth.fit_output_layer(net, x, y)
        pieces = count_linear_pieces(net, 0.0, 1.0)
        assert pieces <= w + 1
        assert depth.l1_error(net, k) >= shallow_l1_lower_bound(k, pieces) - 1e-12


def test_the_l1_bound_is_attained_by_the_best_constant():
    # one piece: the constant 1/2 is the best affine function, at L1 distance 1/4
    assert shallow_l1_lower_bound(4, 1) == pytest.approx(0.25 * (8 / 8))
    assert depth.l1_error(shallow([0.5], [0.0], bias=0.5), 4) == pytest.approx(0.25)


def test_output_layer_least_squares_is_optimal():
    x, y = depth.sawtooth_data(2, 128)
    net = depth.shallow_network(6, rng=0)
    loss = depth.fit_output_layer(net, x, y)
    assert float(np.mean((net(x) - y) ** 2)) == pytest.approx(loss, rel=1e-9)
    net[2].bias.data += 1e-3
    assert float(np.mean((net(x) - y) ** 2)) > loss


def test_width_needed():
    results = {(2, 4): (0.2, 0.3, 5), (2, 8): (0.04, 0.01, 9), (2, 16): (0.0, 0.0, 17)}
    assert depth.width_needed(results, 2, [4, 8, 16], 0.05) == 8
    assert depth.width_needed(results, 2, [4, 8, 16], 0.005) == 16
    assert depth.width_needed(results, 2, [4, 8, 16], 0.0) is None


# ---------------------------------------------------------------- bad input
def test_bad_input():
    net = sawtooth_network(2)
    with pytest.raises(ValueError, match="a < b"):
        count_linear_pieces(net, 1.0, 0.0)
    with pytest.raises(ValueError, match="a must be"):
        count_linear_pieces(net, np.nan, 1.0)
    with pytest.raises(ValueError, match="k must be"):
        sawtooth_network(0)
    with pytest.raises(ValueError, match="n_pieces"):
        relu_interpolant(np.sin, 0.0, 1.0, 0)
    with pytest.raises(TypeError, match="callable"):
        relu_interpolant(3.0, 0.0, 1.0, 4)
    with pytest.raises(ValueError, match="finite values"):
        relu_interpolant(lambda x: x[:2], 0.0, 1.0, 4)
    with pytest.raises(TypeError, match="Sequential"):
        count_linear_pieces("net", 0.0, 1.0)
    with pytest.raises(TypeError, match="Tanh"):
        count_linear_pieces(Sequential(Linear(1, 2), Tanh(), Linear(2, 1)), 0.0, 1.0)
    with pytest.raises(TypeError, match="Conv2d"):
        count_linear_pieces(Sequential(Conv2d(1, 1, 3)), 0.0, 1.0)
    with pytest.raises(ValueError, match="in_features"):
        count_linear_pieces(Sequential(Linear(2, 1)), 0.0, 1.0)
    with pytest.raises(ValueError, match="tol"):
        count_linear_pieces(net, 0.0, 1.0, tol=-1.0)
    with pytest.raises(ValueError, match="max_abs_f2"):
        interpolation_error_bound(-1.0, 0.0, 1.0, 3)
    with pytest.raises(ValueError, match="n_pieces"):
        shallow_l1_lower_bound(3, 0)


def test_dead_layers():
    x, _ = depth.sawtooth_data(3, 64)
    assert depth.dead_layers(sawtooth_network(3), x) == []
    net = sawtooth_network(3)
    net[2].weight.data[:] = 0.0
    net[2].bias.data[:] = -1.0              # the second hidden layer is off, so the third sees only 0
    assert depth.dead_layers(net, x) == [1, 2, 3]           # its output ReLU counts as layer 3
    assert count_linear_pieces(net, 0.0, 1.0) == 1

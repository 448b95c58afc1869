"""Tests for cnnlib.hardware.crossbar: the ideal tile is the exact product, each
non-ideality moves the result in the expected direction and by the expected
size (DAC error within half a step, ADC clipping at out_bound, programming
noise of the PCM polynomial, finite levels, read and output noise), the
whole model through crossbars, determinism with rng, and bad input.
"""

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.hardware import crossbar as X
from cnnlib.hardware import CrossbarTile, IOParameters, PCMParameters, analog_forward

IDEAL_IO, IDEAL_DEV = IOParameters.ideal(), PCMParameters.ideal()


def data(seed=0, n=64, k=50, m=12):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, k)), rng.standard_normal((n, k))


def test_defaults_are_aihwkits():
    io = IOParameters()
    assert io.inp_res == 1 / 126 and io.out_res == 1 / 510
    assert (io.inp_bound, io.out_bound, io.out_noise) == (1.0, 12.0, 0.06)
    assert PCMParameters().g_max == 25.0 and PCMParameters().prog_coeff == (0.26348, 1.9650, -1.1731)
    assert X.bits_to_res(7) == io.inp_res and X.bits_to_res(None) == 0
    assert X.res_to_bits(io.out_res) == pytest.approx(9)


@pytest.mark.parametrize("nm", ["abs_max", "none"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ideal_tile_is_the_exact_product(nm, dtype):
    w, x = data()
    w, x = w.astype(dtype), x.astype(dtype)
    tile = CrossbarTile(w, IOParameters.ideal(noise_management=nm), IDEAL_DEV, rng=0)
    y = tile.mvm(x)
    assert y.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(y, x @ w.T, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(tile.g_plus - tile.g_minus, 25 * w / np.abs(w).max(), rtol=tol, atol=tol)
    assert (tile.g_plus >= 0).all() and (tile.g_minus >= 0).all()
    assert ((tile.g_plus == 0) | (tile.g_minus == 0)).all()   # one device of each pair is off


def test_quantise_error_at_most_half_a_step_and_clips():
    x = np.linspace(-1.5, 1.5, 10001)
    q = X.quantise(x, 1 / 126, 1.0)
    step = 2 / 126
    inside = np.abs(x) <= 1
    assert np.abs(q - x)[inside].max() <= step / 2 + 1e-12
    assert np.abs(q - x)[inside].max() > 0.49 * step
    assert (q[x > 1] == 1).all() and (q[x < -1] == -1).all()
    assert len(np.unique(q)) == 127        # 2^7 - 1 levels
    np.testing.assert_array_equal(X.quantise(x, 0, 0), x)
    with pytest.raises(ValueError, match="bound"):
        X.quantise(x, 0.1, 0)


def test_dac_error_within_half_a_step_per_input():
    """With only the DAC on, y - x W^T = (DAC(x/a) - x/a) a W^T, each input off by <= a step / 2."""
    w, x = data(1)
    bits = 4
    tile = CrossbarTile(w, IOParameters.ideal(inp_res=X.bits_to_res(bits), inp_bound=1.0), IDEAL_DEV)
    a = np.abs(x).max(axis=1, keepdims=True)
    err = tile.mvm(x) - x @ w.T
    bound = (a * (2 / (2 ** bits - 2)) / 2) * np.abs(w).sum(axis=1)
    assert (np.abs(err) <= bound + 1e-9).all()
    assert np.abs(err).max() > 0


def test_adc_clips_at_out_bound_and_rounds():
    w = np.ones((3, 40))
    x = np.ones((2, 40))
    x[1, :20] = 0.1            # sum 20 * 1 + 20 * 0.1 = 22 -> clipped at 12 (a = 1)
    tile = CrossbarTile(w, IOParameters.ideal(out_bound=12.0), IDEAL_DEV)
    np.testing.assert_allclose(tile.mvm(x), 12.0)
    res = X.bits_to_res(9)
    tile = CrossbarTile(w * 0.01, IOParameters.ideal(out_res=res, out_bound=12.0), IDEAL_DEV)
    y = tile.mvm(x[1:])       # normalised sum 22 -> clipped 12, times w_max 0.01
    np.testing.assert_allclose(y, 0.12)
    x3 = np.full((1, 40), 0.2)
    y = tile.mvm(x3) / (0.2 * 0.01)    # normalised 40 -> clipped at 12 ... use a small input
    np.testing.assert_allclose(y, 12.0)
    step = res * 24
    x4 = np.zeros((1, 40))
    x4[0, 0] = 1.0
    x4[0, 1:6] = 0.37          # normalised sum 1 + 5 * 0.37 = 2.85: rounded to the ADC grid
    y = tile.mvm(x4) / 0.01
    assert abs(y[0, 0] - 2.85) <= step / 2 + 1e-12
    assert y[0, 0] == pytest.approx(round(2.85 / step) * step)


def test_programming_noise_has_the_pcm_std():
    w = np.full((400, 500), 0.5)
    w[0, 0] = 1.0                                   # w_max = 1: targets G+ = 12.5
    tile = CrossbarTile(w, IDEAL_IO, PCMParameters(), rng=0)
    g = tile.g_plus[1:].ravel()
    r = 0.5
    expected = 0.26348 + 1.9650 * r - 1.1731 * r * r
    assert g.mean() == pytest.approx(12.5, abs=0.01)
    assert g.std() == pytest.approx(expected, rel=0.01)
    # G- = 0 targets get the constant term, clipped at zero: half of them stay at 0
    assert np.mean(tile.g_minus == 0) == pytest.approx(0.5, abs=0.01)
    scaled = CrossbarTile(w, IDEAL_IO, PCMParameters(prog_noise_scale=2.0), rng=0)
    assert scaled.g_plus[1:].std() == pytest.approx(2 * expected, rel=0.01)


def test_finite_levels():
    w = np.linspace(-1, 1, 101)[None, :]
    tile = CrossbarTile(w, IDEAL_IO, PCMParameters.ideal(levels=5))
    assert set(np.unique(tile.g_plus)) <= {0.0, 6.25, 12.5, 18.75, 25.0}
    assert np.abs(tile.programmed - w).max() <= 0.125 + 1e-12      # half of a level step / g_max
    fine = CrossbarTile(w, IDEAL_IO, PCMParameters.ideal(levels=1001))
    assert np.abs(fine.programmed - w).max() < np.abs(tile.programmed - w).max()


@pytest.mark.parametrize("which, value", [("out_noise", 0.05), ("w_noise", 0.02), ("inp_noise", 0.01)])
def test_read_and_output_noise_size(which, value):
    w, x = data(2, n=4000, k=30, m=3)
    x[:, 0] = 3.0                                  # every row has a = 3: the same noise scale
    io = IOParameters.ideal(**{which: value})
    tile = CrossbarTile(w, io, IDEAL_DEV)
    err = (tile.mvm(x, rng=1) - x @ w.T) / (3.0 * np.abs(w).max())   # in normalised units
    u = x / 3.0
    wn = w / np.abs(w).max()
    if which == "out_noise":
        want = np.full(3, value)
    elif which == "w_noise":
        want = np.full(3, value * np.sqrt((u * u).sum(1).mean()))
    else:
        want = value * np.sqrt((wn * wn).sum(1))
    assert abs(err.mean()) < 0.1 * want.mean()
    np.testing.assert_allclose(err.std(axis=0), want, rtol=0.06)


def test_determinism_with_rng():
    w, x = data(3)
    a = CrossbarTile(w, rng=5).mvm(x, rng=7)
    b = CrossbarTile(w, rng=5).mvm(x, rng=7)
    c = CrossbarTile(w, rng=6).mvm(x, rng=7)
    d = CrossbarTile(w, rng=5).mvm(x, rng=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c) and not np.array_equal(a, d)


def test_defaults_are_close_but_not_exact():
    w, x = data(4, n=200, k=100, m=10)
    y = CrossbarTile(w, rng=0).mvm(x, rng=1)
    exact = x @ w.T
    rel = np.linalg.norm(y - exact) / np.linalg.norm(exact)
    assert 0.005 < rel < 0.2


def small_model(rng=0):
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=np.float64), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 4 * 4, 5, rng=rng, dtype=np.float64))


def test_analog_forward_ideal_equals_the_model():
    model = small_model()
    x = np.random.default_rng(0).standard_normal((6, 2, 8, 8))
    np.testing.assert_allclose(analog_forward(model, x, IDEAL_IO, IDEAL_DEV, rng=0), model.forward(x),
                               rtol=1e-10, atol=1e-12)
    noisy = analog_forward(model, x, rng=0)
    assert not np.allclose(noisy, model.forward(x))
    np.testing.assert_array_equal(noisy, analog_forward(model, x, rng=0))


def test_bad_input():
    w, x = data()
    with pytest.raises(ValueError, match="out_noise"):
        IOParameters(out_noise=-1)
    with pytest.raises(ValueError, match="noise_management"):
        IOParameters(noise_management="max")
    with pytest.raises(ValueError, match="levels"):
        PCMParameters(levels=1)
    with pytest.raises(ValueError, match="g_max"):
        PCMParameters(g_max=0)
    with pytest.raises(ValueError, match="bits"):
        X.bits_to_res(1)
    with pytest.raises(TypeError, match="weight"):
        CrossbarTile(w.astype(np.int32))
    with pytest.raises(ValueError, match="weight"):
        CrossbarTile(w.ravel())
    with pytest.raises(TypeError, match="io"):
        CrossbarTile(w, io=PCMParameters())
    tile = CrossbarTile(w, rng=0)
    with pytest.raises(ValueError, match="columns"):
        tile.mvm(x[:, :5])
    with pytest.raises(TypeError, match="x"):
        tile.mvm(x.tolist())
    with pytest.raises(TypeError, match="model"):
        analog_forward(nn.Linear(3, 2), np.ones((1, 3)))

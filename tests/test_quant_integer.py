"""Integer-only LeNet-5: the fixed-point helpers against Python big integers, the integer path
against a float64 simulation of the same arithmetic (bit for bit), and its MNIST accuracy."""

from fractions import Fraction
import math

import numpy as np
import pytest

from cnnlib import functional as F
from cnnlib.data.mnist import load_mnist
from cnnlib.models import zoo
from cnnlib.quant import integer as I

I32 = [-(2 ** 31), -(2 ** 31) + 1, -(2 ** 30), -12345, -1, 0, 1, 7, 2 ** 30, 2 ** 31 - 1]


def srdhm_ref(a, b):
    """gemmlowp's C code, transcribed with Python integers (C division truncates toward zero)."""
    if a == b == -(2 ** 31):
        return 2 ** 31 - 1
    ab = a * b
    s = ab + (2 ** 30 if ab >= 0 else 1 - 2 ** 30)
    q = abs(s) // 2 ** 31
    return q if s >= 0 else -q


def rdbpot_ref(x, e):
    mask = (1 << e) - 1
    return (x >> e) + int((x & mask) > (mask >> 1) + int(x < 0))


def test_srdhm_matches_the_c_code_and_rounds_half_up():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.integers(-(2 ** 31), 2 ** 31, 2000), np.repeat(I32, len(I32))])
    b = np.concatenate([rng.integers(-(2 ** 31), 2 ** 31, 2000), np.tile(I32, len(I32))])
    ours = I.saturating_rounding_doubling_high_mul(a, b)
    for x, y, o in zip(a.tolist(), b.tolist(), ours.tolist()):
        assert o == srdhm_ref(x, y), (x, y)
        if not x == y == -(2 ** 31):
            assert o == math.floor(Fraction(x * y, 2 ** 31) + Fraction(1, 2))


def test_rdbpot_matches_the_c_code_and_rounds_half_away_from_zero():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.integers(-(2 ** 31), 2 ** 31, 3000), I32 * 4,
                        [6, -6, 10, -10, 2, -2, 3, -3]])
    e = np.concatenate([rng.integers(0, 32, 3000), np.repeat([0, 1, 5, 31], len(I32)), [2] * 4 + [1] * 4])
    ours = I.rounding_divide_by_pot(x, e)
    for v, k, o in zip(x.tolist(), e.tolist(), ours.tolist()):
        assert o == rdbpot_ref(v, k), (v, k)
        f = Fraction(v, 2 ** k)
        assert o == (1 if f >= 0 else -1) * math.floor(abs(f) + Fraction(1, 2))
    assert I.rounding_divide_by_pot([6, -6, 10, -10], 2).tolist() == [2, -2, 3, -3]


@pytest.mark.parametrize("M", [0.5, 0.75, 1 - 2 ** -40, 0.3, 1e-3, 2.0 ** -20, 0.999999999, 1.1e-9])
def test_quantize_multiplier(M):
    m, n = I.quantize_multiplier(M)
    assert 2 ** 30 <= m < 2 ** 31 and 0 <= n <= 31
    assert 0.5 <= m / 2 ** 31 < 1
    assert abs(Fraction(m, 2 ** (31 + n)) - Fraction(M)) <= Fraction(M) * Fraction(1, 2 ** 31)


def test_requantize_is_srdhm_then_rdbpot_then_clamp():
    rng = np.random.default_rng(2)
    acc = rng.integers(-(2 ** 20), 2 ** 20, (50, 4)).astype(np.int32)
    mult = [I.quantize_multiplier(M) for M in (0.3, 1e-3, 0.07, 0.9)]
    m, n = np.array([a for a, _ in mult]), np.array([b for _, b in mult])
    out = I.requantize(acc, m, n, -5, lo=-5, hi=127)
    ref = np.clip(I.rounding_divide_by_pot(I.saturating_rounding_doubling_high_mul(acc, m), n) - 5, -5, 127)
    np.testing.assert_array_equal(out, ref)
    assert out.dtype == np.int8


def test_int8_matmul():
    rng = np.random.default_rng(3)
    a = rng.integers(-128, 128, (37, 150)).astype(np.int8)
    b = rng.integers(-128, 128, (9, 150)).astype(np.int8)
    np.testing.assert_array_equal(I.int8_matmul(a, b), a.astype(np.int64) @ b.astype(np.int64).T)
    full = np.full((2, 1000), -128, np.int8)
    assert I.int8_matmul(full, full)[0, 0] == 1000 * 128 * 128


@pytest.mark.parametrize("call, error", [
    (lambda: I.quantize_multiplier(1.0), ValueError),
    (lambda: I.quantize_multiplier(0.0), ValueError),
    (lambda: I.quantize_multiplier("0.5"), TypeError),
    (lambda: I.rounding_divide_by_pot([1], [32]), ValueError),
    (lambda: I.rounding_divide_by_pot([2 ** 31], [1]), ValueError),
    (lambda: I.saturating_rounding_doubling_high_mul([1.5], [2]), TypeError),
    (lambda: I.int8_matmul(np.ones((2, 3), np.int16), np.ones((2, 3), np.int8)), TypeError),
    (lambda: I.int8_matmul(np.ones((2, 3), np.int8), np.ones((2, 4), np.int8)), ValueError),
    (lambda: I.requantize(np.ones((2, 3), np.int64), [2 ** 30] * 3, [1] * 3, 0), TypeError),
    (lambda: I.requantize(np.ones((2, 3), np.int32), [2 ** 30] * 2, [1] * 2, 0), ValueError),
    (lambda: I.quantize_model(object(), np.zeros((1, 28, 28), np.uint8)), TypeError),
    (lambda: I.quantize_model(zoo.lenet5(), np.zeros((1, 28, 28))), TypeError),
    (lambda: I.quantize_model(zoo.lenet5(), np.zeros((0, 28, 28), np.uint8)), ValueError),
])
def test_bad_input(call, error):
    with pytest.raises(error):
        call()


# ------------------------------------------------- the integer LeNet-5

@pytest.fixture(scope="module")
def mnist():
    return load_mnist("train")[0][:1000], load_mnist("test")


@pytest.fixture(scope="module")
def qmodel(mnist):
    return I.quantize_model(zoo.lenet5(pretrained=True), mnist[0])


def float64_simulation(qm, images):
    """The same arithmetic in float64: integers held in floats, zero padding after subtracting
    the zero point (instead of padding with it and correcting with weight row sums), the
    library's float64 convolution, and the two roundings written as floor(v + 1/2)."""
    x = images.astype(np.float64)[:, None] - 128
    outs = []
    for step in qm.steps:
        if step == "pool":
            x = F.max_pool2d(x, 2)
        elif step == "flatten":
            x = x.reshape(len(x), -1)
        else:
            xr = x - step.in_zero_point
            w, b = step.weight.astype(np.float64), step.bias.astype(np.float64)
            if step.kind == "conv":
                acc = F.conv2d(xr, w, b, padding=step.padding)
                shape = (1, -1, 1, 1)
            else:
                acc = F.linear(xr, w, b)
                shape = (1, -1)
            assert np.abs(acc).max() < 2 ** 22          # so that acc * m (< 2^53) is exact
            m = step.multiplier.astype(np.float64).reshape(shape)
            p = 2.0 ** step.shift.astype(np.float64).reshape(shape)
            t = np.floor(acc * m / 2.0 ** 31 + 0.5)                  # SRDHM: round half up
            r = np.sign(t) * np.floor(np.abs(t) / p + 0.5)          # RDBPOT: half away from zero
            lo = step.out_zero_point if step.relu else -128
            x = np.clip(r + step.out_zero_point, lo, 127)
        outs.append(x)
    return outs


def test_integer_path_equals_float64_simulation_bit_for_bit(qmodel, mnist):
    images = mnist[1][0][:600]
    _, ints = qmodel.run(qmodel.quantize_input(images), record=True)
    sims = float64_simulation(qmodel, images)
    assert len(ints) == len(sims) == 8     # conv pool conv pool flatten fc fc fc (ReLUs fused)
    for k, (a, b) in enumerate(zip(ints, sims)):
        assert a.dtype == np.int8, k
        np.testing.assert_array_equal(a.astype(np.float64), b, err_msg=f"step {k}")
    assert len(np.unique(ints[-1])) > 50       # the logits use the int8 range


def test_integer_lenet5_reaches_99_percent_on_the_full_test_set(qmodel, mnist):
    test_images, test_labels = mnist[1]
    assert len(test_images) == 10000
    acc = np.mean(qmodel.predict(test_images) == test_labels)
    assert acc >= 0.990, acc


def test_quantized_parameters_follow_tflite(qmodel):
    layers = [s for s in qmodel.steps if isinstance(s, I.IntegerLayer)]
    assert [s.kind for s in layers] == ["conv", "conv", "linear", "linear", "linear"]
    for s in layers:
        assert s.weight.dtype == np.int8 and s.weight.min() >= -127 and s.weight.max() <= 127
        assert s.bias.dtype == np.int32 and s.weight_scale.shape == (len(s.weight),)
        assert np.all((s.multiplier >= 2 ** 30) & (s.multiplier < 2 ** 31))
        assert s.relu == (s is not layers[-1])
        if s.relu:
            assert s.out_zero_point == -128          # calibrated range [0, max] of a ReLU output
    assert qmodel.size_bytes() == 61706 - 6 - 16 - 120 - 84 - 10 + 4 * 236 * 3

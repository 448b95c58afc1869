"""The affine map of quantisation against torch (bit for bit, ties included) and by hand."""

import numpy as np
import pytest

from cnnlib.quant import affine as A

QD = {"quint8": (0, 255), "qint8": (-128, 127), "qint32": (-(2 ** 31), 2 ** 31 - 1)}


def ties(rng, scale, n=200, lo=-40, hi=40):
    """Values exactly at (k + 1/2) s for a power-of-two scale (x * (1/s) is then exact)."""
    k = rng.integers(lo, hi, n)
    return ((k + 0.5) * scale).astype(np.float32)


def inputs(rng, scale):
    x = (rng.standard_normal(500) * 40 * scale).astype(np.float32)
    return np.concatenate([x, ties(rng, 0.125 if scale == 0.125 else 2.0 ** -6)])


# ---------------------------------------------------------------- by hand

def test_docs_example():
    x = np.array([0.0552, 0.9730, 0.3973, -1.0780], np.float32)
    y = A.fake_quantize_per_tensor_affine(x, 0.1, 0, 0, 255)
    np.testing.assert_allclose(y, [0.1, 1.0, 0.4, 0.0], rtol=1e-6)


def test_round_half_to_even_and_clamp():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 300.0, -300.0], np.float32)
    q = A.quantize_per_tensor(x, 1.0, 0, "qint8")
    np.testing.assert_array_equal(q, [0, 2, 2, 0, -2, 127, -128])
    assert q.dtype == np.int8
    assert A.quantize_per_tensor(x, 1.0, 10, "quint8").tolist() == [10, 12, 12, 10, 8, 255, 0]


def test_reciprocal_not_division():
    # fbgemm's example: x / s = 127.499992 but x * (1/s) = 127.5 in float32, which rounds to 128
    s, x = np.float32(0.00214854861), np.float32(0.273939937)
    assert np.rint(x / s) == 127 and np.rint(x * (np.float32(1) / s)) == 128
    assert A.quantize_per_tensor(np.array([x]), s, 0, "quint8")[0] == 128
    assert A.fake_quantize_per_tensor_affine(np.array([x]), s, 0, 0, 255)[0] == np.float32(128) * s


def test_dequantize_round_trip_error_at_most_half_a_step():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 1000).astype(np.float32)
    s, z = A.choose_qparams(x.min(), x.max(), -128, 127)
    err = A.dequantize(A.quantize_per_tensor(x, s, z, "qint8"), s, z) - x
    assert np.abs(err).max() <= s / 2 * (1 + 1e-5)


def test_ste_backward_is_the_mask():
    x = np.array([-3.0, -0.4, 0.0, 0.7, 2.9, 3.4])
    y, mask = A.fake_quantize_per_tensor_affine(x, 0.5, 0, -6, 6, return_mask=True)
    np.testing.assert_array_equal(y, [-3.0, -0.5, 0.0, 0.5, 3.0, 3.0])
    g = np.arange(1.0, 7.0)
    np.testing.assert_array_equal(A.fake_quantize_per_tensor_affine_backward(g, mask), [1, 2, 3, 4, 5, 0])


def test_choose_qparams_by_hand():
    s, z = A.choose_qparams(-1.0, 3.0, 0, 255)
    assert s == np.float32(4.0) / np.float32(255) and z == 64
    s, z = A.choose_qparams(0.0, 0.0, -128, 127)
    assert s == np.finfo(np.float32).eps and z == -128
    s, z = A.choose_qparams(2.0, 5.0, -128, 127, symmetric=True)     # range extended to [0, 5]
    assert s == np.float32(5.0) / np.float32(127.5) and z == 0
    assert A.choose_qparams(-1.0, 1.0, 0, 15, symmetric=True)[1] == 7


@pytest.mark.parametrize("call, error", [
    (lambda: A.quantize_per_tensor([1.0], 1.0, 0, "qint8"), TypeError),
    (lambda: A.quantize_per_tensor(np.ones(2, np.int32), 1.0, 0, "qint8"), TypeError),
    (lambda: A.quantize_per_tensor(np.ones(2), 0.0, 0, "qint8"), ValueError),
    (lambda: A.quantize_per_tensor(np.ones(2), 1.0, 200, "qint8"), ValueError),
    (lambda: A.quantize_per_tensor(np.ones(2), 1.0, 0, "int4"), ValueError),
    (lambda: A.quantize_per_channel(np.ones((2, 3)), np.ones(3), np.zeros(3, int), 0, "qint8"), ValueError),
    (lambda: A.quantize_per_channel(np.ones((2, 3)), np.ones(2), np.zeros(2), 0, "qint8"), ValueError),
    (lambda: A.quantize_per_channel(np.ones((2, 3)), np.ones(2), np.zeros(2, int), 2, "qint8"), IndexError),
    (lambda: A.fake_quantize_per_tensor_affine(np.ones(2), 1.0, 0, 5, 1), ValueError),
    (lambda: A.fake_quantize_per_tensor_affine(np.ones(2), 1.0, 0.5, 0, 255), TypeError),
    (lambda: A.fake_quantize_per_tensor_affine_backward(np.ones(2), np.ones(3, bool)), ValueError),
    (lambda: A.fake_quantize_per_tensor_affine_backward(np.ones(2), np.ones(2)), TypeError),
    (lambda: A.dequantize(np.ones(2), 1.0, 0), TypeError),
    (lambda: A.choose_qparams(1.0, 0.0, 0, 255), ValueError),
    (lambda: A.choose_qparams(0.0, 1.0, 3, 3), ValueError),
    (lambda: A.choose_qparams(np.zeros(2), np.ones(3), 0, 255), ValueError),
    (lambda: A.choose_qparams(0.0, float("inf"), 0, 255), ValueError),
    (lambda: A.choose_qparams(0.0, 1.0, 0, 255, symmetric=1), TypeError),
])
def test_bad_input(call, error):
    with pytest.raises(error):
        call()


# ---------------------------------------------------------------- against torch

torch = pytest.importorskip("torch", reason="torch is the reference for quantisation semantics")
pytestmark = pytest.mark.filterwarnings("ignore:torch.quantize_per_tensor:UserWarning")
TD = {"quint8": torch.quint8, "qint8": torch.qint8, "qint32": torch.qint32}


@pytest.mark.parametrize("dtype", ["quint8", "qint8", "qint32"])
@pytest.mark.parametrize("scale", [0.125, 0.0371, 0.00214854861])
def test_quantize_per_tensor_matches_torch(dtype, scale):
    rng = np.random.default_rng(1)
    x = inputs(rng, scale)
    z = {"quint8": 127, "qint8": -3, "qint32": 5}[dtype]       # odd: ties then differ from z + rint
    ours = A.quantize_per_tensor(x, scale, z, dtype)
    theirs = torch.quantize_per_tensor(torch.from_numpy(x), scale, z, TD[dtype]).int_repr().numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert ours.dtype == theirs.dtype


@pytest.mark.parametrize("dtype", ["quint8", "qint8", "qint32"])
def test_quantize_per_channel_matches_torch(dtype):
    rng = np.random.default_rng(2)
    scales = np.array([0.125, 2.0 ** -6, 0.0371, 0.5], np.float32)
    x = np.stack([inputs(rng, float(s))[:600] for s in scales], axis=1).reshape(30, 4, 20)
    zps = {"quint8": [0, 128, 7, 255], "qint8": [0, -128, 7, 127], "qint32": [0, 1, -2, 3]}[dtype]
    zps = np.array(zps, np.int64)
    ours = A.quantize_per_channel(x, scales, zps, 1, dtype)
    theirs = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales.astype(np.float64)),
                                        torch.from_numpy(zps), 1, TD[dtype]).int_repr().numpy()
    np.testing.assert_array_equal(ours, theirs)
    deq = torch.quantize_per_channel(torch.from_numpy(x), torch.from_numpy(scales.astype(np.float64)),
                                     torch.from_numpy(zps), 1, TD[dtype]).dequantize().numpy()
    np.testing.assert_allclose(A.dequantize(ours, scales, zps, axis=1), deq, rtol=2e-7, atol=0)


@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_dequantize_matches_torch(dtype):
    rng = np.random.default_rng(3)
    x = inputs(rng, 0.0371)
    z = 100 if dtype == "quint8" else -20
    t = torch.quantize_per_tensor(torch.from_numpy(x), 0.0371, z, TD[dtype])
    ours = A.dequantize(A.quantize_per_tensor(x, 0.0371, z, dtype), 0.0371, z)
    # torch's vectorised kernel uses a fused multiply-add: one ulp at most
    np.testing.assert_allclose(ours, t.dequantize().numpy(), rtol=2e-7, atol=0)


@pytest.mark.parametrize("x_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale, zp, qmin, qmax", [(0.125, 0, 0, 255), (0.0371, 3, -128, 127),
                                                  (2.0 ** -6, -1, -8, 7), (0.00214854861, 0, 0, 255),
                                                  (0.3, 0, -1, 1)])
def test_fake_quantize_per_tensor_matches_torch_forward_and_backward(x_dtype, scale, zp, qmin, qmax):
    rng = np.random.default_rng(4)
    x = inputs(rng, scale).astype(x_dtype)
    y, mask = A.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax, return_mask=True)
    g = rng.standard_normal(x.shape).astype(x_dtype)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.fake_quantize_per_tensor_affine(tx, scale, zp, qmin, qmax)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(A.fake_quantize_per_tensor_affine_backward(g, mask), tx.grad.numpy())
    assert y.dtype == x_dtype


@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("qmin, qmax", [(0, 255), (-128, 127), (-3, 3)])
def test_fake_quantize_per_channel_matches_torch_forward_and_backward(axis, qmin, qmax):
    rng = np.random.default_rng(5)
    x = np.concatenate([inputs(rng, 2.0 ** -6), inputs(rng, 0.0371)])[:840].reshape(6, 10, 14)
    c = x.shape[axis]
    scales = rng.choice([0.125, 2.0 ** -6, 0.0371, 0.01], c).astype(np.float32)
    zps = rng.integers(qmin, qmax + 1, c).astype(np.int32)
    y, mask = A.fake_quantize_per_channel_affine(x, scales, zps, axis, qmin, qmax, return_mask=True)
    g = rng.standard_normal(x.shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.fake_quantize_per_channel_affine(tx, torch.from_numpy(scales), torch.from_numpy(zps),
                                                axis % 3, qmin, qmax)
    ty.backward(torch.from_numpy(g))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(A.fake_quantize_per_channel_affine_backward(g, mask), tx.grad.numpy())


RANGES = [(-1.3, 2.7), (0.4, 2.7), (-2.7, -0.4), (0.0, 0.0), (1.5, 1.5), (-1e-9, 1e-9), (-3.0, 0.0)]


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("dtype, qmin, qmax", [("qint8", -128, 127), ("quint8", 0, 255), ("qint8", -8, 7),
                                               ("quint8", 0, 15), ("qint8", -2, 1)])
def test_choose_qparams_matches_min_max_observer(symmetric, dtype, qmin, qmax):
    from torch.ao.quantization.observer import MinMaxObserver
    scheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    for lo, hi in RANGES:
        obs = MinMaxObserver(dtype=TD[dtype], qscheme=scheme, quant_min=qmin, quant_max=qmax)
        obs(torch.tensor([lo, hi], dtype=torch.float32))
        ts, tz = obs.calculate_qparams()
        s, z = A.choose_qparams(lo, hi, qmin, qmax, symmetric=symmetric)
        assert s == ts.item(), (lo, hi)
        assert z == tz.item(), (lo, hi)


@pytest.mark.parametrize("symmetric", [False, True])
def test_choose_qparams_matches_per_channel_observer(symmetric):
    from torch.ao.quantization.observer import PerChannelMinMaxObserver
    rng = np.random.default_rng(6)
    w = (rng.standard_normal((8, 50)) * rng.uniform(0.01, 2, (8, 1))).astype(np.float32)
    w[3] = 0.0
    w[5] = np.abs(w[5]) + 0.1
    scheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=scheme,
                                   quant_min=-127, quant_max=127)
    obs(torch.from_numpy(w))
    ts, tz = obs.calculate_qparams()
    s, z = A.choose_qparams(w.min(axis=1), w.max(axis=1), -127, 127, symmetric=symmetric)
    np.testing.assert_array_equal(s, ts.numpy())
    np.testing.assert_array_equal(z, tz.numpy())

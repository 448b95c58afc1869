"""Tests for cnnlib.analysis.connectivity: parameter counts against real layers
(cnnlib.nn and PyTorch), the locally connected count against the number of
non-zero entries of a convolution's input-output Jacobian (its connections),
the n^2 -> n k^2 -> k^2 scaling, and bad input.
"""

import numpy as np
import pytest

from cnnlib import functional as F
from cnnlib import nn
from cnnlib.analysis import connectivity as C

try:
    import torch
except ImportError:  # the cnnlib comparisons still run
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch not installed: reference comparison skipped")


def torch_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("n_in,n_out,bias", [(784, 10, True), (400, 120, True), (7, 3, False)])
def test_dense_matches_linear_layers(n_in, n_out, bias):
    counts = C.dense_params(n_in, n_out, bias)
    assert counts.total == nn.Linear(n_in, n_out, bias=bias).num_parameters()
    if torch is not None:
        assert counts.total == torch_params(torch.nn.Linear(n_in, n_out, bias=bias))
    assert counts.weights + counts.biases == counts.total


def test_dense_takes_shapes():
    assert C.dense_params((1, 28, 28), (6, 24, 24)) == C.dense_params(784, 3456)
    assert C.dense_params((1, 28, 28), (6, 24, 24)).weights == 784 * 3456


@pytest.mark.parametrize("c_in,c_out,k,groups,bias", [
    (1, 6, 5, 1, True), (6, 16, 5, 1, True), (4, 8, (3, 2), 2, False), (8, 8, 3, 8, True)])
def test_conv_matches_conv_layers(c_in, c_out, k, groups, bias):
    counts = C.conv_params(c_in, c_out, k, bias=bias, groups=groups)
    assert counts.total == nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias).num_parameters()
    if torch is not None:
        assert counts.total == torch_params(torch.nn.Conv2d(c_in, c_out, k, groups=groups, bias=bias))


@needs_torch
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("size,k,s,p,d", [
    (28, 5, 1, 0, 1), (28, 5, 1, 2, 1), ((13, 9), (3, 2), (2, 1), (1, 0), (1, 2)),
    (11, 3, 3, 1, 2), (9, 4, 1, "same", 1), (8, 3, 2, "valid", 1), (6, 3, 1, "full", 2)])
def test_output_size_matches_torch(size, k, s, p, d):
    h, w = size if isinstance(size, tuple) else (size, size)
    if p == "full":
        ref_pad = tuple(d * (kk - 1) for kk in ((k, k) if isinstance(k, int) else k))
    else:
        ref_pad = p
    if p == "same":
        kk = k if isinstance(k, int) else k[0]
        x = torch.zeros(1, 1, h, w)
        ref = torch.nn.functional.conv2d(x, torch.zeros(1, 1, kk, kk), padding="same", dilation=d).shape[2:]
    else:
        x = torch.zeros(1, 1, h, w)
        kt = (k, k) if isinstance(k, int) else k
        ref = torch.nn.functional.conv2d(x, torch.zeros(1, 1, *kt), stride=s, padding=ref_pad,
                                         dilation=d).shape[2:]
    assert C.local_output_size(size, k, s, p, d) == tuple(ref)


def connection_count(c_in, c_out, size, k, stride, dilation):
    """Non-zero entries of d(output)/d(input) of a valid convolution with non-zero weights:
    every (output unit, input unit) pair that a weight joins, found one input pixel at a time."""
    rng = np.random.default_rng(0)
    w = rng.uniform(0.5, 1.5, (c_out, c_in, k, k))
    h = size
    count = 0
    for c in range(c_in):
        for i in range(h):
            for j in range(h):
                x = np.zeros((1, c_in, h, h))
                x[0, c, i, j] = 1.0
                count += np.count_nonzero(F.conv2d(x, w, stride=stride, dilation=dilation))
    return count


@pytest.mark.parametrize("c_in,c_out,size,k,s,d", [
    (1, 1, 8, 3, 1, 1), (2, 3, 9, 3, 2, 1), (1, 2, 10, 3, 1, 2), (3, 1, 7, 2, 3, 1)])
def test_local_weights_are_the_connections_of_a_convolution(c_in, c_out, size, k, s, d):
    counts = C.locally_connected_params(c_in, c_out, size, k, s, 0, d)
    assert counts.weights == connection_count(c_in, c_out, size, k, s, d)
    ho, wo = C.local_output_size(size, k, s, 0, d)
    assert counts.biases == c_out * ho * wo


@needs_torch
def test_local_equals_unfold_layout():
    """A locally connected layer written with torch's unfold needs a weight of shape
    (L, C_out, C_in*k*k), L the number of windows: the count of the function."""
    x = torch.zeros(1, 3, 12, 10)
    cols = torch.nn.functional.unfold(x, kernel_size=3, stride=2, padding=1)  # (1, C_in*9, L)
    weight_shape = (cols.shape[2], 4, cols.shape[1])
    counts = C.locally_connected_params(3, 4, (12, 10), 3, stride=2, padding=1, bias=False)
    assert counts.weights == int(np.prod(weight_shape)) and counts.biases == 0


def test_outline_example_28_to_24_with_5x5():
    out = C.compare_connectivity(1, 1, 28, 5)
    assert out["output_size"] == (24, 24)
    assert out["dense"] == (784 * 576, 576, 784 * 576 + 576)
    assert out["local"] == (576 * 25, 576, 576 * 26)
    assert out["conv"] == (25, 1, 26)
    assert out["macs"] == {"dense": 784 * 576, "local": 576 * 25, "conv": 576 * 25}


@pytest.mark.parametrize("n", [8, 16, 28, 64])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_scaling_n_squared_to_k_squared(n, k):
    """'same' padding: n*n pixels -> n*n pixels; weights (n^2)^2, n^2 k^2, k^2."""
    out = C.compare_connectivity(1, 1, n, k, padding="same", bias=False)
    assert out["output_size"] == (n, n)
    assert out["dense"].weights == (n * n) ** 2
    assert out["local"].weights == n * n * k * k
    assert out["conv"].weights == k * k


@pytest.mark.parametrize("call,err", [
    (lambda: C.dense_params(0, 3), ValueError),
    (lambda: C.dense_params((1, 2.0), 3), TypeError),
    (lambda: C.dense_params((), 3), TypeError),
    (lambda: C.dense_params(3, 3, bias=1), TypeError),
    (lambda: C.conv_params(3, 4, 3, groups=2), ValueError),
    (lambda: C.conv_params(3, 4, 0), ValueError),
    (lambda: C.conv_params(3.0, 4, 3), TypeError),
    (lambda: C.locally_connected_params(1, 1, 4, 5), ValueError),
    (lambda: C.locally_connected_params(1, 1, 8, 3, stride=0), ValueError),
    (lambda: C.locally_connected_params(1, 1, 8, 3, padding=-1), ValueError),
    (lambda: C.locally_connected_params(1, 1, 8, 3, padding="half"), ValueError),
    (lambda: C.locally_connected_params(1, 1, 8, 3, padding=1.5), TypeError),
    (lambda: C.local_output_size((8, 8, 8), 3), TypeError),
])
def test_bad_input(call, err):
    with pytest.raises(err):
        call()


def test_error_names_the_argument():
    with pytest.raises(ValueError, match="out_channels"):
        C.conv_params(3, 0, 3)
    with pytest.raises(ValueError, match="in_size"):
        C.locally_connected_params(1, 1, 4, 5)

"""Tests for cnnlib.analysis.receptive: the closed-form receptive field against a
back-projection of index sets, regions and path counts against the gradient
of a chain of conv2d layers with all-ones kernels, the taps of one output
against the gradient of one output of conv2d, and bad input.
"""

import itertools

import numpy as np
import pytest

from cnnlib import functional as F
from cnnlib.analysis import receptive as R

# (kernel_size, stride, dilation, padding) chains, one axis; used squared in 2-D.
CHAINS = {
    "vgg2": [(3, 1)] * 2,
    "vgg3": [(3, 1)] * 3,
    "alexnet-like": [(11, 4, 1, 2), (3, 2), (5, 1, 1, 2), (3, 2)],
    "strided": [(3, 2), (3, 2), (3, 2)],
    "stride-then-dilate": [(2, 2), (3, 1, 2), (3, 2, 1, 1)],
    "dilated-gridding": [(3, 1, 2)] * 3,
    "dilated-hdc": [(3, 1, 1), (3, 1, 2), (3, 1, 5)],
    "same-padding": [(3, 1, 1, "same"), (4, 1, 2, "same"), (3, 1, 1, 1)],
    "full-padding": [(2, 1, 1, "full"), (3, 2, 1, 0)],
    "padded-strided": [(3, 2, 1, 1), (3, 2, 1, 1), (1, 1)],
    "pad-over-dropped": [(2, 2), (3, 1, 1, 1)],
    "single": [(5, 3, 2, 4)],
}


def all_chains():
    """Every chain of one or two layers from a small grid of settings, and a sample of three."""
    layer_grid = [(k, s, d, p) for k in (1, 2, 3) for s in (1, 2, 3) for d in (1, 2) for p in (0, 1)]
    for depth, step in ((1, 1), (2, 1), (3, 17)):
        yield from (list(c) for c in itertools.islice(itertools.product(layer_grid, repeat=depth), 0, None, step))


def settings(layer):
    k, s, d, p = tuple(layer) + (1, 0)[len(layer) - 2:]
    return k, dict(stride=s, dilation=d, padding=p)


def chain_output_shape(layers, input_size):
    x = np.ones((1, 1, *input_size))
    for layer in layers:
        k, kw = settings(layer)
        x = F.conv2d(x, np.ones((1, 1, k, k)), **kw)
    return x.shape[2:]


def chain_gradient(layers, input_size, output_index):
    """d out[i, j] / d x through conv2d layers with all-ones kernels: the path counts (2-D)."""
    inputs, x = [], np.ones((1, 1, *input_size))
    for layer in layers:
        k, kw = settings(layer)
        inputs.append((x, k, kw))
        x = F.conv2d(x, np.ones((1, 1, k, k)), **kw)
    g = np.zeros_like(x)
    g[0, 0, output_index[0], output_index[1]] = 1
    for x, k, kw in reversed(inputs):
        g = F.conv2d_backward(g, x, np.ones((1, 1, k, k)), **kw)[0]
    return g[0, 0]


# ----------------------------------------------------------------------------
# Small formulas
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("k,d,want", [(3, 1, 3), (3, 2, 5), (3, 4, 9), (5, 3, 13), (1, 7, 1), (2, 3, 4)])
def test_effective_kernel_size_and_dilated_taps(k, d, want):
    assert R.effective_kernel_size(k, d) == want == d * (k - 1) + 1
    taps = R.dilated_taps(k, d)
    assert taps.shape == (k * k, 2)
    assert taps.max() + 1 == want
    assert sorted(set(taps[:, 0])) == [d * p for p in range(k)]


def test_dilated_taps_order_and_pairs():
    np.testing.assert_array_equal(R.dilated_taps((2, 3), (3, 2)),
                                  [[0, 0], [0, 2], [0, 4], [3, 0], [3, 2], [3, 4]])


# ----------------------------------------------------------------------------
# Receptive field of a stack
# ----------------------------------------------------------------------------

def test_vgg_stacks_of_3x3_see_5x5_and_7x7():
    assert R.receptive_field([(3, 1)] * 2) == (5, 1, 0)
    assert R.receptive_field([(3, 1, 1, 1)] * 3) == R.ReceptiveField(size=7, stride=1, start=-3)
    assert R.receptive_field([(3, 1)] * 3).size == 7
    assert R.receptive_field([(7, 1)]).size == 7
    assert R.receptive_field([]) == (1, 1, 0)


def test_dilated_and_strided_stacks():
    # dilations 1, 2, 4 (a WaveNet/context-module stack): r = 1 + 2 + 4 + 8 = 15
    assert R.receptive_field([(3, 1, 1), (3, 1, 2), (3, 1, 4)]).size == 15
    assert R.receptive_field([(3, 1, 2)] * 3).size == 13
    # three 3x3 stride-2 convs: r = 1 + 2 + 4 + 8, S = 8
    assert R.receptive_field([(3, 2)] * 3)[:2] == (15, 8)
    # AlexNet's conv1 / pool1 / conv2 / pool2 geometry
    assert R.receptive_field(CHAINS["alexnet-like"])[:2] == (67, 16)


def test_closed_form_matches_back_projected_index_sets_over_a_grid_of_chains():
    count = 0
    for chain in all_chains():
        rf = R.receptive_field(chain)
        for i in (0, 1, 4):
            seen = R.receptive_field_bruteforce(chain, i)
            assert (seen[0], seen[-1] - seen[0] + 1) == (rf.start + i * rf.stride, rf.size), chain
        count += 1
    assert count > 1000


def test_region_matches_the_conv2d_gradient_over_a_grid_of_chains():
    checked = 0
    for chain in itertools.islice(all_chains(), 0, None, 5):
        try:
            h_out, _ = chain_output_shape(chain, (13, 13))
        except ValueError:  # input too small for this chain
            continue
        for i in {0, h_out // 2, h_out - 1}:
            grad = chain_gradient(chain, (13, 13), (i, i))  # both axes alike: zero iff only padding
            rows = np.flatnonzero(grad.any(axis=1))
            want = (rows.min(), rows.max() + 1) if rows.size else (0, 0)
            assert R.receptive_field_region(chain, i, 13) == want, (chain, i)
            np.testing.assert_array_equal(R.stack_coverage(chain, (13, 13), (i, i)), grad)
        checked += 1
    assert checked > 150


@pytest.mark.parametrize("name", CHAINS)
def test_named_chains_match_back_projection(name):
    rf = R.receptive_field(CHAINS[name])
    seen = R.receptive_field_bruteforce(CHAINS[name], 2)
    assert (seen[0], seen[-1] + 1) == (rf.start + 2 * rf.stride, rf.start + 2 * rf.stride + rf.size)


def test_bruteforce_shows_gridding_holes():
    np.testing.assert_array_equal(R.receptive_field_bruteforce([(3, 1, 2)] * 3), np.arange(0, 13, 2))
    np.testing.assert_array_equal(R.receptive_field_bruteforce(CHAINS["dilated-hdc"]), np.arange(17))


@pytest.mark.parametrize("name,size", [(name, size) for name in CHAINS for size in ((17, 19), (40, 33))
                                       if name != "alexnet-like" or size[0] > 30])  # 17 is too small for it
def test_region_and_coverage_match_the_gradient_of_a_conv2d_chain(name, size):
    chain = CHAINS[name]
    h_out, w_out = chain_output_shape(chain, size)
    for index in {(0, 0), (min(1, h_out - 1), min(2, w_out - 1)), (h_out - 1, w_out - 1)}:
        grad = chain_gradient(chain, size, index)
        rows, cols = np.nonzero(grad)
        region = R.receptive_field_region(chain, index, size)
        assert region == ((rows.min(), rows.max() + 1), (cols.min(), cols.max() + 1))
        assert R.receptive_field_region(chain, index[0], size[0]) == region[0]
        np.testing.assert_array_equal(R.stack_coverage(chain, size, index), grad)
        np.testing.assert_array_equal(R.receptive_field_bruteforce(chain, index[1], size[1]), np.unique(cols))


def test_region_is_the_clipped_closed_form_without_late_padding():
    chain = [(3, 2), (3, 1, 2), (2, 2)]
    rf = R.receptive_field(chain)
    for i in range(3):
        lo = rf.start + i * rf.stride
        assert R.receptive_field_region(chain, i, 30) == (max(lo, 0), min(lo + rf.size, 30))


def test_padding_over_dropped_inputs_is_not_seen():
    """Stride 2 drops input 4 of 5; a later padded layer covers that spot with zeros."""
    chain = CHAINS["pad-over-dropped"]
    rf = R.receptive_field(chain)
    lo = rf.start + 1 * rf.stride
    assert (max(lo, 0), min(lo + rf.size, 5)) == (0, 5)      # closed form, clipped
    assert R.receptive_field_region(chain, 1, 5) == (0, 4)   # what output 1 really sees
    grad = chain_gradient(chain, (5, 5), (1, 1))
    assert np.all(grad[4] == 0) and np.all(grad[:4, :4] > 0)


def test_unit_that_sees_only_padding():
    chain = [(1, 1, 1, 2)]  # a 1x1 conv with padding 2: the border outputs read only zeros
    assert R.receptive_field_region(chain, 0, 4) == (0, 0)
    assert R.receptive_field_region(chain, 2, 4) == (0, 1)
    assert R.stack_coverage(chain, 4, 0).sum() == 0


def test_stack_coverage_shows_gridding_for_dilation_2_and_none_for_1_2_5():
    grid = R.stack_coverage([(3, 1, 2)] * 3, (15, 15))
    assert grid.shape == (15, 15)
    inside = grid[1:14, 1:14]  # the receptive field of the central output
    assert np.all(inside[::2, ::2] > 0) and np.all(inside[1::2, :] == 0) and np.all(inside[:, 1::2] == 0)
    assert (inside > 0).mean() == pytest.approx(49 / 169)
    hdc = R.stack_coverage(CHAINS["dilated-hdc"], 17)
    assert np.all(hdc > 0) and hdc.sum() == 27
    dense = R.stack_coverage([(3, 1)] * 2, 5)
    np.testing.assert_array_equal(dense, [1, 2, 3, 2, 1])


# ----------------------------------------------------------------------------
# One layer: convolution arithmetic
# ----------------------------------------------------------------------------

ARITHMETIC_CASES = [
    dict(input_size=5, kernel_size=3),
    dict(input_size=(7, 6), kernel_size=3, stride=2, padding=1),
    dict(input_size=(6, 7), kernel_size=(2, 3), padding="same", dilation=(2, 1)),
    dict(input_size=5, kernel_size=(3, 2), padding="full", dilation=2),
    dict(input_size=(8, 9), kernel_size=3, stride=(3, 2), padding=(2, 0), dilation=(1, 2)),
    dict(input_size=4, kernel_size=4, stride=2, padding=3),
    dict(input_size=(5, 3), kernel_size=(1, 3), padding="valid"),
]


@pytest.mark.parametrize("case", ARITHMETIC_CASES, ids=str)
def test_input_taps_match_the_gradient_of_one_output(case):
    geo = R.conv_arithmetic(**case)
    kh, kw = geo.kernel_size
    h, w = geo.input_size
    weight = np.random.default_rng(0).uniform(0.5, 1.5, (1, 1, kh, kw))  # positive: no cancellation
    x = np.zeros((1, 1, h, w))
    settings = {k: v for k, v in case.items() if k in ("stride", "padding", "dilation")}
    y = F.conv2d(x, weight, **settings)
    assert y.shape[2:] == geo.output_size
    for i, j in np.ndindex(*geo.output_size):
        gy = np.zeros_like(y)
        gy[0, 0, i, j] = 1
        grad = F.conv2d_backward(gy, x, weight, **settings)[0][0, 0]
        taps, in_padding = R.conv_input_taps((i, j), **case)
        assert taps.shape == (kh * kw, 2) and in_padding.shape == (kh * kw,)
        real = {tuple(t) for t in taps[~in_padding]}
        assert real == set(zip(*np.nonzero(grad)))
        for (r, c), pad in zip(taps, in_padding):
            assert pad == (not (0 <= r < h and 0 <= c < w))
        # tap (p, q) carries weight[p, q]: the gradient at its input is that weight
        for (r, c), wv in zip(taps[~in_padding], weight[0, 0].ravel()[~in_padding]):
            assert grad[r, c] == pytest.approx(wv)
        np.testing.assert_array_equal(geo.input_taps((i, j))[0], taps)


def test_conv_arithmetic_fields():
    geo = R.conv_arithmetic((7, 6), 3, stride=2, padding=1, dilation=(1, 2))
    assert geo.output_size == (4, 2)
    assert geo.padding == ((1, 1), (1, 1))
    assert geo.effective_kernel_size == (3, 5)
    taps, pad = geo.input_taps((0, 0))
    assert tuple(taps[0]) == (-1, -1) and pad[0] and not pad[4]
    assert R.conv_arithmetic(5, 4, padding="same").padding == ((1, 2), (1, 2))  # as conv2d pads


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------

BAD_INPUTS = {
    "effective kernel 0": (lambda: R.effective_kernel_size(0, 1),
                           ValueError, r"^kernel_size must be positive"),
    "effective dilation 0": (lambda: R.effective_kernel_size(3, 0),
                             ValueError, r"^dilation must be positive"),
    "effective float": (lambda: R.effective_kernel_size(3.0), TypeError, r"^kernel_size must be an int"),
    "taps dilation": (lambda: R.dilated_taps(3, -1), ValueError, r"^dilation must be positive"),
    "layers not a list": (lambda: R.receptive_field("3,1"), TypeError, r"^layers must be a list"),
    "layer too short": (lambda: R.receptive_field([(3,)]), ValueError, r"^layers\[0\] must be \(kernel_size"),
    "layer too long": (lambda: R.receptive_field([(3, 1, 1, 0, 0)]), ValueError, r"^layers\[0\] must be"),
    "kernel 0": (lambda: R.receptive_field([(3, 1), (0, 1)]),
                 ValueError, r"^layers\[1\] kernel_size must be positive"),
    "stride 0": (lambda: R.receptive_field([(3, 0)]), ValueError, r"^layers\[0\] stride must be positive"),
    "dilation 0": (lambda: R.receptive_field([(3, 1, 0)]),
                   ValueError, r"^layers\[0\] dilation must be positive"),
    "stride float": (lambda: R.receptive_field([(3, 1.5)]), TypeError, r"^layers\[0\] stride must be an int"),
    "negative padding": (lambda: R.receptive_field([(3, 1, 1, -1)]),
                         ValueError, r"^layers\[0\] padding must be"),
    "unknown padding": (lambda: R.receptive_field([(3, 1, 1, "reflect")]),
                        ValueError, r"^layers\[0\] padding must be"),
    "bruteforce index": (lambda: R.receptive_field_bruteforce([(3, 1)], -1),
                         ValueError, r"^output_index must be"),
    "bruteforce index out of output": (lambda: R.receptive_field_bruteforce([(3, 1)], 3, 5),
                                       ValueError, r"^output_index must be an int in \[0, 3\)"),
    "region too small": (lambda: R.receptive_field_region([(3, 1)] * 3, 0, 5),
                         ValueError, r"^input_size 5 is too small"),
    "region input size 0": (lambda: R.receptive_field_region([(3, 1)], 0, 0),
                            ValueError, r"^input_size must be positive"),
    "region index pair": (lambda: R.receptive_field_region([(3, 1)], (0, 9), (10, 10)),
                          ValueError, r"^output_index must be an int in \[0, 8\)"),
    "region index type": (lambda: R.receptive_field_region([(3, 1)], (0, 1.0), (10, 10)),
                          TypeError, r"^output_index must be an int or a pair"),
    "coverage size": (lambda: R.stack_coverage([(3, 1)], 0), ValueError, r"^size must be positive"),
    "coverage too small": (lambda: R.stack_coverage([(5, 1)], (4, 9)),
                           ValueError, r"^input_size 4 is too small"),
    "arithmetic stride 0": (lambda: R.conv_arithmetic(5, 3, stride=0),
                            ValueError, r"^stride must be positive"),
    "arithmetic negative padding": (lambda: R.conv_arithmetic(5, 3, padding=-1),
                                    ValueError, r"^padding must be >= 0"),
    "arithmetic same stride": (lambda: R.conv_arithmetic(5, 3, 2, "same"),
                               ValueError, r"^padding='same' requires stride 1"),
    "arithmetic kernel too large": (lambda: R.conv_arithmetic(4, 3, dilation=2),
                                    ValueError, r"^kernel_size \(3, 3\) with dilation \(2, 2\) is larger"),
    "arithmetic kernel 0": (lambda: R.conv_arithmetic(4, 0), ValueError, r"^kernel_size must be positive"),
    "arithmetic input size": (lambda: R.conv_arithmetic((4, 0), 1),
                              ValueError, r"^input_size must be positive"),
    "taps out of output": (lambda: R.conv_input_taps((3, 0), 5, 3),
                           ValueError, r"^output_index must lie in the output of size \(3, 3\)"),
    "taps negative index": (lambda: R.conv_input_taps((-1, 0), 5, 3),
                            ValueError, r"^output_index must be >= 0"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_raises_a_clear_error(name):
    call, exc_type, pattern = BAD_INPUTS[name]
    with pytest.raises(exc_type, match=pattern) as info:
        call()
    assert type(info.value) is exc_type

"""Tests for EfficientNet's compound scaling (cnnlib.experiments.scaling)."""

import math

import pytest

from cnnlib.experiments import scaling
from cnnlib.experiments.scaling import (
    PAPER_COEFFICIENTS,
    Candidate,
    ScaledNetwork,
    compound_coefficients,
    flops_multiplier,
    grid_search,
    proxy_score,
    round_filters,
    round_repeats,
    scaled_network,
)

# EfficientNet-B0: layers and channels of the 7 MBConv stages (Tan & Le 2019, Table 1).
B0_DEPTHS = (1, 2, 2, 3, 3, 4, 1)
B0_WIDTHS = (16, 24, 40, 80, 112, 192, 320)


def test_compound_coefficients():
    assert compound_coefficients(0) == (1.0, 1.0, 1.0)
    assert compound_coefficients(1) == pytest.approx(PAPER_COEFFICIENTS)
    assert compound_coefficients(2) == pytest.approx((1.44, 1.21, 1.3225))
    assert compound_coefficients(0.5, 4.0, 1.0, 9.0) == pytest.approx((2.0, 1.0, 3.0))
    assert compound_coefficients(-1) == pytest.approx((1 / 1.2, 1 / 1.1, 1 / 1.15))


def test_flops_multiplier():
    assert flops_multiplier(0) == 1.0
    assert flops_multiplier(1) == pytest.approx(1.2 * 1.21 * 1.3225) == pytest.approx(1.92027)
    for phi in (1, 2, 3.5, 7):
        d, w, r = compound_coefficients(phi)
        assert flops_multiplier(phi) == pytest.approx(d * w * w * r * r)
        assert flops_multiplier(phi) == pytest.approx(flops_multiplier(1) ** phi)
    # With alpha * beta^2 * gamma^2 = 2 exactly, phi steps double the FLOPs.
    assert flops_multiplier(3, 2.0, 1.0, 1.0) == pytest.approx(8.0)


def test_round_filters_reproduces_efficientnet_channels():
    # Width multipliers and channels of the released models (B2: 1.1, B3: 1.2, B4: 1.4).
    assert round_filters(32, 1.1) == 32 and round_filters(1280, 1.1) == 1408
    assert round_filters(32, 1.2) == 40 and round_filters(1280, 1.2) == 1536
    assert [round_filters(c, 1.4) for c in B0_WIDTHS] == [24, 32, 56, 112, 160, 272, 448]
    assert round_filters(4, 1.0) == 8  # at least one divisor
    assert round_filters(4, 1.0, divisor=2, min_depth=2) == 4
    assert round_filters(12, 1.0) == 16  # rounding down to 8 would lose more than 10%


def test_round_repeats():
    # B4's depth multiplier 1.8 gives its stage depths.
    assert [round_repeats(n, 1.8) for n in B0_DEPTHS] == [2, 4, 4, 6, 6, 8, 2]
    assert round_repeats(10, 1.1) == 11  # not 12 because of 1.1 * 10 = 11.000000000000002
    assert round_repeats(5, 1.2) == 6
    assert round_repeats(3, 0.5) == 2


def test_scaled_network():
    base = scaled_network(B0_DEPTHS, B0_WIDTHS, 224, 0)
    assert base == ScaledNetwork(B0_DEPTHS, B0_WIDTHS, 224)
    s1 = scaled_network(B0_DEPTHS, B0_WIDTHS, 224, 1)
    assert s1.depths == tuple(math.ceil(n * 1.2 - 1e-9) for n in B0_DEPTHS) == (2, 3, 3, 4, 4, 5, 2)
    assert s1.widths == tuple(round_filters(c, 1.1) for c in B0_WIDTHS)
    assert all(c % 8 == 0 for c in s1.widths)
    assert s1.resolution == round(224 * 1.15) == 258
    s3 = scaled_network([1, 2], [16, 32], 224, 3)
    d, w, r = compound_coefficients(3)
    assert s3.depths == (math.ceil(d), math.ceil(2 * d))
    assert s3.resolution == round(224 * r)
    # Monotone in phi.
    nets = [scaled_network(B0_DEPTHS, B0_WIDTHS, 224, phi) for phi in range(8)]
    for a, b in zip(nets, nets[1:]):
        assert all(x <= y for x, y in zip(a.depths + a.widths, b.depths + b.widths))
        assert a.resolution < b.resolution


def test_grid_search_constraint_and_order():
    candidates = grid_search()
    assert candidates and all(isinstance(c, Candidate) for c in candidates)
    assert all(abs(c.alpha * c.beta ** 2 * c.gamma ** 2 - 2) <= 0.1 for c in candidates)
    assert all(1.0 <= v <= 2.0 for c in candidates for v in c[:3])
    scores = [c.score for c in candidates]
    assert scores == sorted(scores, reverse=True)
    paper = [c for c in candidates if (c.alpha, c.beta, c.gamma) == PAPER_COEFFICIENTS]
    assert len(paper) == 1 and paper[0].flops == pytest.approx(1.92027)
    assert candidates[0].score == pytest.approx(proxy_score(*candidates[0][:3]))
    # The grid is exhaustive: every triple meeting the constraint is there.
    grid = [1 + 0.05 * i for i in range(21)]
    count = sum(abs(a * b * b * g * g - 2) <= 0.1 for a in grid for b in grid for g in grid)
    assert len(candidates) == count


def test_grid_search_with_a_user_score_and_settings():
    # A score that prefers balanced multipliers picks alpha = beta = gamma = 2^(1/5) ~ 1.149.
    best = grid_search(lambda a, b, g: -((a - b) ** 2 + (b - g) ** 2 + (a - g) ** 2), step=0.01,
                       tol=0.02)[0]
    assert best.alpha == best.beta == best.gamma == pytest.approx(2 ** 0.2, abs=0.01)
    # Grid {1, 2}: only (1, 1, 2) and (1, 2, 1) reach 4x FLOPs; equal scores keep grid order.
    assert grid_search(lambda a, b, g: 0.0, tol=0.0, target=4.0, step=1.0) == [
        Candidate(1.0, 1.0, 2.0, 4.0, 0.0), Candidate(1.0, 2.0, 1.0, 4.0, 0.0)]
    assert grid_search(tol=0.0, target=100.0) == []  # nothing on the grid is that large


def test_proxy_score():
    assert proxy_score(1.0, 1.0, 1.0) == 0.0
    assert proxy_score(1.2, 1.1, 1.15) > proxy_score(1.1, 1.1, 1.15)
    # Diminishing returns: each doubling of depth gains less than the one before.
    gains = [proxy_score(2.0 ** (i + 1), 1, 1) - proxy_score(2.0 ** i, 1, 1) for i in range(4)]
    assert all(a > b for a, b in zip(gains, gains[1:]))
    assert proxy_score(1e9, 1, 1) == pytest.approx(1 / 3)
    assert proxy_score(2.0, 1, 1, rates=(1, 1, 1)) == pytest.approx(0.5)


def test_bad_input():
    with pytest.raises(TypeError, match="phi must be a finite real"):
        compound_coefficients("1")
    with pytest.raises(TypeError, match="phi must be a finite real"):
        flops_multiplier(float("inf"))
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        compound_coefficients(1, alpha=0.9)
    with pytest.raises(ValueError, match="gamma must be >= 1"):
        flops_multiplier(1, gamma=0.5)
    with pytest.raises(ValueError, match="filters must be a positive int"):
        round_filters(0, 1.1)
    with pytest.raises(ValueError, match="width_multiplier must be > 0"):
        round_filters(32, 0.0)
    with pytest.raises(ValueError, match="divisor must be a positive int"):
        round_filters(32, 1.1, divisor=0)
    with pytest.raises(ValueError, match="repeats must be a positive int"):
        round_repeats(1.5, 1.1)
    with pytest.raises(ValueError, match="base_depths must be a non-empty sequence"):
        scaled_network([], [16], 224, 1)
    with pytest.raises(ValueError, match="base_widths must be a non-empty sequence"):
        scaled_network([1], [16, -1], 224, 1)
    with pytest.raises(ValueError, match="base_resolution must be a positive int"):
        scaled_network([1], [16], 224.0, 1)
    with pytest.raises(TypeError, match="score must be a callable"):
        grid_search(3)
    with pytest.raises(ValueError, match="high must be >= low"):
        grid_search(low=1.5, high=1.2)
    with pytest.raises(ValueError, match="low must be >= 1"):
        grid_search(low=0.5)
    with pytest.raises(ValueError, match="step must be > 0"):
        grid_search(step=0)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        grid_search(tol=-0.1)
    with pytest.raises(ValueError, match="score must return a finite real"):
        grid_search(lambda a, b, g: float("nan"))
    with pytest.raises(ValueError, match="rates must be three positive numbers"):
        proxy_score(1.2, 1.1, 1.15, rates=(1, 2))


def test_plain_cnn_has_the_scaled_depths_widths_and_macs():
    from cnnlib.analysis.summary import summary
    net = scaling.scaled_network((1, 2), (8, 16), 16, phi=0)
    model = scaling.plain_cnn(net, rng=0)
    convs = [m for m in model if type(m).__name__ == "Conv2d"]
    assert [c.weight.shape for c in convs] == [(8, 3, 3, 3), (16, 8, 3, 3), (16, 16, 3, 3)]
    assert [c.stride for c in convs] == [(2, 2), (2, 2), (1, 1)]
    # 16x16 -> 8x8 (first stage) -> 4x4 (second stage, twice)
    expected = 8 * 8 * 8 * 27 + 16 * 4 * 4 * 72 + 16 * 4 * 4 * 144
    assert summary(model, (3, 16, 16)).total_macs == expected
    with pytest.raises(TypeError, match="net"):
        scaling.plain_cnn((1, 2))
    with pytest.raises(ValueError, match="in_channels"):
        scaling.plain_cnn(net, in_channels=0)

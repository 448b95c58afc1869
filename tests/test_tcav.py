"""TCAV: classifier, CAVs, layer gradients, scores, Student t and power (cnnlib.analysis.tcav),
and the MNIST concept detectors (cnnlib.data.concepts)."""

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.analysis import tcav as T
from cnnlib.data import concepts as C

try:
    import scipy.stats as scipy_stats
except ImportError:  # the concept and TCAV tests below do not need it
    scipy_stats = None
needs_scipy = pytest.mark.skipif(scipy_stats is None, reason="scipy not installed: reference checks skipped")


# ---------------------------------------------------------------------------
# Student t, the t-test and power, against scipy
# ---------------------------------------------------------------------------

@needs_scipy
@pytest.mark.parametrize("df", [1, 2, 3.5, 10, 38, 200])
def test_student_t_cdf_matches_scipy(df):
    t = np.array([-40, -5, -2.1, -1, -0.3, 0, 0.2, 1, 1.96, 3, 8, 60])
    np.testing.assert_allclose(T.student_t_cdf(t, df), scipy_stats.t.cdf(t, df), rtol=1e-10, atol=1e-14)
    assert T.student_t_cdf(np.inf, df) == 1.0 and T.student_t_cdf(-np.inf, df) == 0.0


@needs_scipy
@pytest.mark.parametrize("q,df", [(0.975, 10), (0.975, 38), (0.5, 4), (0.01, 2.5), (0.999, 100)])
def test_student_t_ppf_matches_scipy(q, df):
    assert T.student_t_ppf(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9, abs=1e-10)


@needs_scipy
@pytest.mark.parametrize("seed", range(5))
def test_ttest_ind_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.5, 1, 7 + seed), rng.normal(0.2 * seed, 2, 12)
    ours, ref = T.ttest_ind(a, b), scipy_stats.ttest_ind(a, b)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours.df == len(a) + len(b) - 2


def test_ttest_of_constant_samples():
    assert T.ttest_ind([1.0, 1.0], [1.0, 1.0, 1.0]).pvalue == 1.0
    res = T.ttest_ind([1.0, 1.0], [0.5, 0.5])
    assert res.pvalue == 0.0 and res.statistic == np.inf
    with pytest.raises(ValueError):
        T.ttest_ind([1.0], [1.0, 2.0])


@needs_scipy
@pytest.mark.parametrize("d,n", [(0.0, 10), (0.5, 20), (0.8, 26), (1.0, 17), (1.5, 5), (2.0, 3)])
def test_power_matches_the_noncentral_t(d, n):
    df, alpha = 2 * n - 2, 0.05
    c = scipy_stats.t.ppf(1 - alpha / 2, df)
    nc = d * np.sqrt(n / 2)
    ref = scipy_stats.nct.sf(c, df, nc) + scipy_stats.nct.cdf(-c, df, nc)
    assert T.ttest_power(d, n, alpha) == pytest.approx(ref, abs=1e-8)


def test_runs_for_power_textbook_values():
    # Cohen's table for alpha 0.05 two-sided, power 0.8: 64, 26, 17 per group
    assert [T.runs_for_power(d) for d in (0.5, 0.8, 1.0)] == [64, 26, 17]
    n = T.runs_for_power(1.2, power=0.9)
    assert T.ttest_power(1.2, n) >= 0.9 > T.ttest_power(1.2, n - 1)


@needs_scipy
def test_power_by_simulation():
    rng = np.random.default_rng(0)
    n, d, reps = 10, 1.0, 2000
    hits = sum(scipy_stats.ttest_ind(rng.normal(d, 1, n), rng.normal(0, 1, n)).pvalue <= 0.05
               for _ in range(reps))
    assert abs(hits / reps - T.ttest_power(d, n)) < 0.03   # 3 standard errors


@pytest.mark.parametrize("call", [lambda: T.student_t_cdf(1.0, 0), lambda: T.student_t_ppf(1.0, 3),
                                  lambda: T.ttest_power(-1, 5), lambda: T.ttest_power(1, 1),
                                  lambda: T.runs_for_power(0.0), lambda: T.runs_for_power(1, power=1.0)])
def test_bad_statistics_arguments(call):
    with pytest.raises((TypeError, ValueError)):
        call()


# ---------------------------------------------------------------------------
# Classifier and CAV
# ---------------------------------------------------------------------------

def test_logistic_fit_matches_a_direct_minimisation():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 5))
    y = (X @ np.array([1.0, -2, 0, 0.5, 0]) + 0.3 * rng.standard_normal(80) > 0).astype(int)
    w, b = T.fit_linear_classifier(X, y, alpha=0.01, tol=1e-12)
    s = 2 * y - 1
    m = s * (X @ w + b)
    p = 1 / (1 + np.exp(m))
    grad_w = -(X.T @ (s * p)) / 80 + 0.01 * w
    grad_b = -(s * p).sum() / 80
    assert np.abs(grad_w).max() < 1e-9 and abs(grad_b) < 1e-9


def test_cav_recovers_the_separating_direction():
    rng = np.random.default_rng(1)
    d = 30
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    random = rng.standard_normal((200, d))
    concept = rng.standard_normal((200, d)) + 3 * direction
    cav = T.train_cav(concept, random, rng=0)
    assert cav.vector @ direction > 0.9 and cav.accuracy > 0.9
    assert np.linalg.norm(cav.vector) == pytest.approx(1.0)
    flipped = T.train_cav(random, concept, rng=0)
    assert flipped.vector @ direction < -0.8


def test_cav_bad_inputs():
    a = np.ones((5, 3))
    for call in [lambda: T.train_cav(a, np.ones((5, 4))), lambda: T.train_cav(a[:1], a),
                 lambda: T.train_cav(a, a, test_fraction=1.0),
                 lambda: T.fit_linear_classifier(a, np.ones(5)),
                 lambda: T.fit_linear_classifier(a, [0, 1, 2, 0, 1]),
                 lambda: T.fit_linear_classifier(a, [0, 1, 0, 1, 0], alpha=0)]:
        with pytest.raises(ValueError):
            call()


# ---------------------------------------------------------------------------
# Layer gradients, directional derivatives, scores
# ---------------------------------------------------------------------------

def model():
    return nn.Sequential(nn.Conv2d(1, 2, 3, dtype=np.float64, rng=0), nn.Tanh(), nn.Flatten(),
                         nn.Linear(2 * 4 * 4, 6, dtype=np.float64, rng=1), nn.Tanh(),
                         nn.Linear(6, 3, dtype=np.float64, rng=2))


@pytest.mark.parametrize("layer", [1, 2, 4, 5])
@pytest.mark.parametrize("of", ["logit", "log_prob"])
def test_layer_gradients_against_finite_differences(layer, of):
    m = model()
    x = np.random.default_rng(0).standard_normal((3, 1, 6, 6))
    target = [0, 2, 1]
    acts, grads = T.layer_gradients(m, layer, x, target, of=of, batch_size=2)
    np.testing.assert_allclose(acts, m[:layer](x))
    tail = m[layer:]

    def score(a):
        z = tail(a)
        if of == "log_prob":
            z = z - np.log(np.exp(z).sum(1, keepdims=True))
        return z[np.arange(3), target]

    eps, num = 1e-6, np.zeros_like(acts)
    for idx in np.ndindex(acts.shape[1:]):
        ap, am = acts.copy(), acts.copy()
        ap[(slice(None),) + idx] += eps
        am[(slice(None),) + idx] -= eps
        num[(slice(None),) + idx] = (score(ap) - score(am)) / (2 * eps)
    np.testing.assert_allclose(grads, num, rtol=1e-6, atol=1e-9)
    # the directional derivative is the derivative along the CAV
    v = np.random.default_rng(1).standard_normal(acts[0].size)
    v /= np.linalg.norm(v)
    dd = T.directional_derivatives(grads, v)
    step = eps * v.reshape(acts.shape[1:])
    np.testing.assert_allclose(dd, (score(acts + step) - score(acts - step)) / (2 * eps), rtol=1e-6,
                               atol=1e-9)


def test_layer_gradients_bad_inputs():
    m, x = model(), np.ones((2, 1, 6, 6))
    for call, err in [(lambda: T.layer_gradients(m, 0, x, 0), ValueError),
                      (lambda: T.layer_gradients(m, 6, x, 0), ValueError),
                      (lambda: T.layer_gradients(m, 2, x, 0, of="loss"), ValueError),
                      (lambda: T.layer_gradients(m, 2, x, 3), ValueError),
                      (lambda: T.layer_gradients(nn.Tanh(), 1, x, 0), TypeError),
                      (lambda: T.directional_derivatives(np.ones((2, 4)), np.ones(3)), ValueError),
                      (lambda: T.tcav_score(np.ones((2, 2))), ValueError)]:
        with pytest.raises(err):
            call()


def test_tcav_on_a_linear_model_with_a_known_answer():
    """The class-0 logit grows along u: a concept displaced along u scores 1, against -u 0.
    (The gradient of a linear model is the same for every input, so each score is 0 or 1;
    the random-vs-random CAVs point either way and their scores average near one half.)"""
    rng = np.random.default_rng(0)
    d = 8
    lin = nn.Linear(d, 2, dtype=np.float64, rng=0)
    u = lin.weight.data[0] / np.linalg.norm(lin.weight.data[0])
    m = nn.Sequential(nn.Flatten(), lin)
    inputs = rng.standard_normal((50, d))
    _, grads = T.layer_gradients(m, 1, inputs, 0)
    randoms = [rng.standard_normal((40, d)) for _ in range(30)]
    concept = rng.standard_normal((40, d)) + 2 * u
    res = T.tcav_test(concept, randoms, grads, rng=0)
    assert np.all(res.scores == 1.0)
    assert res.significant and res.ttest.pvalue < 0.01
    assert 0.15 < res.null_scores.mean() < 0.85
    opposite = T.tcav_test(rng.standard_normal((40, d)) - 2 * u, randoms, grads, rng=0)
    assert np.all(opposite.scores == 0.0) and opposite.significant


def test_tcav_null_is_not_significant_for_a_random_concept():
    rng = np.random.default_rng(3)
    lin = nn.Linear(10, 2, dtype=np.float64, rng=0)
    m = nn.Sequential(nn.Flatten(), lin)
    _, grads = T.layer_gradients(m, 1, rng.standard_normal((60, 10)), 1)
    randoms = [rng.standard_normal((30, 10)) for _ in range(20)]
    res = T.tcav_test(rng.standard_normal((30, 10)), randoms, grads, rng=1)
    assert not res.significant


# ---------------------------------------------------------------------------
# Concept detectors
# ---------------------------------------------------------------------------

def ring(size=28, r_out=8, r_in=5):
    y, x = np.mgrid[:size, :size] - size // 2
    r = np.hypot(x, y)
    return ((r <= r_out) & (r >= r_in)).astype(np.uint8) * 255


def bar(width=3, shear=0.0, size=28):
    img = np.zeros((size, size), np.uint8)
    for row in range(4, size - 4):
        centre = size // 2 + shear * (size // 2 - row)   # shear > 0: the top moves right
        lo = int(round(centre - width / 2))
        img[row, lo:lo + width] = 255
    return img


def test_a_ring_has_a_hole_a_bar_does_not():
    areas = C.hole_area(np.stack([ring(), bar(), np.zeros((28, 28), np.uint8)]))
    y, x = np.mgrid[:28, :28] - 14
    assert areas[0] == np.sum(np.hypot(x, y) < 5) and areas[1] == 0 and areas[2] == 0
    # a ring opened by a cut is no longer closed
    cut = ring()
    cut[14:, 13:16] = 0
    assert C.hole_area(cut[None])[0] == 0
    # a diagonal gap does not leak through 4-neighbours
    diamond = np.zeros((1, 9, 9), np.uint8)
    for i, j in [(2, 4), (3, 3), (4, 2), (5, 3), (6, 4), (5, 5), (4, 6), (3, 5)]:
        diamond[0, i, j] = 255
    assert C.hole_area(diamond)[0] == 5


def test_stroke_thickness_of_bars():
    t = C.stroke_thickness(np.stack([bar(2), bar(4), bar(6)]))
    # a w x L rectangle: area w L, perimeter 2 (w + L); L = 20 rows here
    w = np.array([2, 4, 6])
    np.testing.assert_allclose(t, 2 * w * 20 / (2 * (w + 20)), rtol=1e-12)
    assert C.stroke_thickness(np.zeros((1, 5, 5), np.uint8))[0] == 0


def test_slant_sign_and_size():
    s = C.slant(np.stack([bar(3, 0.3), bar(3, 0.0), bar(3, -0.3)]))
    assert s[0] > 0.2 and abs(s[1]) < 1e-12 and s[2] < -0.2
    assert s[0] == pytest.approx(0.3, abs=0.05)


def test_concept_indices():
    v = np.arange(100.0)
    idx = C.concept_indices(v, 5, quantile=0.9, rng=0)
    assert len(idx) == 5 and np.all(v[idx] >= 89.1) and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(idx, C.concept_indices(v, 5, quantile=0.9, rng=0))
    assert np.all(C.concept_indices(v, 3, minimum=97, rng=0) == [97, 98, 99])
    for call in [lambda: C.concept_indices(v, 20, quantile=0.9), lambda: C.concept_indices(v, 2),
                 lambda: C.concept_indices(v, 2, quantile=0.5, minimum=1),
                 lambda: C.hole_area(np.zeros((28, 28))), lambda: C.slant(np.zeros((2, 3, 3), bool)),
                 lambda: C.stroke_thickness([[[0]]])]:
        with pytest.raises((TypeError, ValueError)):
            call()


# ---------------------------------------------------------------------------
# The chapter's drivers, on synthetic digits
# ---------------------------------------------------------------------------

def test_chapter_drivers_on_synthetic_digits():
    from cnnlib.experiments import interpretability as I
    from cnnlib.models import zoo
    rng = np.random.default_rng(0)
    images = np.stack([ring() if i % 3 == 0 else bar(2 + i % 4, (i % 5 - 2) / 5) for i in range(60)])
    sets = I.mnist_concept_sets(images, 5, rng=0, quantile=0.8)
    assert set(sets) == {"closed loop", "thick strokes", "slant right"}
    assert np.all(sets["closed loop"] % 3 == 0)
    m = zoo.lenet5(rng=0)
    x = m.preprocess(images)
    table = I.ig_delta_table(m, x[:2], 3, methods=("riemann_left", "gausslegendre"), steps=(4, 16))
    assert table.shape == (2, 2) and np.all(table >= 0)
    rows = I.tcav_table(m, x, sets, {0: x[:4], 1: x[4:8]}, {"pool2": 6}, n_runs=3, n_random=6, rng=0)
    assert len(rows) == 6 and all(len(r["result"].scores) == 3 for r in rows)
    base = I.ig_baselines(m, x[:2], 1, black=-0.4242, n_noise=2, n_steps=4)
    assert len(base) == 4 and all(a.shape == x[:2].shape for a, _, _ in base.values())

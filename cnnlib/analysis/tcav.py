"""Testing with concept activation vectors (TCAV, Kim et al. 2018), and the statistics it needs.

1. Split a Sequential model at layer k: activations a = model[:k](x).
2. A linear classifier separates the activations of concept examples from
   those of random examples (:func:`fit_linear_classifier`); the CAV is the
   unit normal of its boundary, pointing toward the concept (:func:`train_cav`).
3. The directional derivative of the class-c logit along the CAV,
   S(x) = grad_a F_c(model[k:](a)) . v (:func:`layer_gradients`,
   :func:`directional_derivatives`).
4. The TCAV score is the fraction of class-c inputs with S(x) > 0
   (:func:`tcav_score`).  This is captum's convention (the logit, count > 0);
   the tensorflow/tcav code takes the gradient of the cross-entropy loss and
   counts S < 0: the same rule applied to -log p_c instead of F_c, which for
   the logit would be the same test, but for the loss is a different quantity
   (``layer_gradients(..., of="log_prob")``; the chapter measures the gap).
5. Significance (:func:`tcav_test`): scores of CAVs trained against many
   random sets are compared with scores of random-vs-random CAVs by a
   two-sided Student t-test (:func:`ttest_ind`), p <= 0.05.  How many runs are
   needed is a power question (:func:`ttest_power`, :func:`runs_for_power`).

The Student-t distribution is computed here (regularised incomplete beta
function by a continued fraction), so the library needs no scipy.
See Part IV, section "Interpretability" (4.3).
"""

import math
from collections import namedtuple

import numpy as np

from .._validate import check_count, check_float_array, check_number
from ..nn.module import Sequential
from ..ops.loss import softmax
from .attribution import _check_range, _check_target, _EvalMode, _logits

__all__ = ["fit_linear_classifier", "CAV", "train_cav", "layer_gradients", "directional_derivatives",
           "tcav_score", "TTest", "ttest_ind", "student_t_cdf", "student_t_ppf", "ttest_power",
           "runs_for_power", "TCAVResult", "train_cavs", "random_cavs", "significance",
           "tcav_test"]


# ---------------------------------------------------------------------------
# The linear classifier and the CAV
# ---------------------------------------------------------------------------

def fit_linear_classifier(X, y, alpha=0.01, max_iter=100, tol=1e-10):
    """L2-regularised logistic regression, minimised by Newton's method.

    Minimises (1/n) sum_i log(1 + exp(-s_i (w . x_i + b))) + (alpha/2) |w|^2,
    s_i = 2 y_i - 1, the objective of scikit-learn's
    ``SGDClassifier(loss="log_loss", alpha=alpha)`` (the intercept is not
    penalised).  Damped Newton steps (backtracking on the objective; the
    Hessian solved through an n x n system) instead of SGD: the objective is
    strictly convex in w, so the fit is deterministic
    and reaches the minimum to rounding error in a few dozen steps; it stops
    when the gradient norm falls below ``tol`` or after ``max_iter`` steps.
    Inputs: X (n, d) float; y (n,) of 0/1.  Returns (w (d,), b) in float64.
    See Part IV, section 4.3.
    """
    X = check_float_array(X, "X", ndim=2).astype(np.float64)
    y = np.asarray(y)
    if y.shape != (X.shape[0],) or not np.isin(y, (0, 1)).all():
        raise ValueError(f"y must be {X.shape[0]} labels in {{0, 1}}, got shape {y.shape}")
    if len(np.unique(y)) < 2:
        raise ValueError("y must contain both classes 0 and 1")
    alpha = check_number(alpha, "alpha", positive=True)
    max_iter = check_count(max_iter, "max_iter")
    n, d = X.shape
    s = 2.0 * y - 1.0
    Xb = np.hstack([X, np.ones((n, 1))])
    reg = np.full(d + 1, alpha)
    reg[-1] = 0.0

    def objective(theta):
        return np.logaddexp(0.0, -s * (Xb @ theta)).mean() + 0.5 * (reg * theta) @ theta

    theta = np.zeros(d + 1)
    value = objective(theta)
    for _ in range(max_iter):
        q = 0.5 * (1 - np.tanh(0.5 * s * (Xb @ theta)))     # sigmoid(-margin)
        g = -(Xb.T @ (s * q)) / n + reg * theta
        if np.linalg.norm(g) < tol:
            break
        step = _newton_step(X, q * (1 - q) / n, alpha, g)
        t = 1.0
        while True:
            new = objective(theta - t * step)
            if new <= value - 0.25 * t * (g @ step) or t < 1e-10:
                break
            t *= 0.5
        theta, value = theta - t * step, new
    return theta[:-1], float(theta[-1])


def _newton_step(X, dw, alpha, g):
    """Solve H s = g for H = [[alpha I + X^T D X, X^T dw], [dw^T X, sum dw]], D = diag(dw).

    The d x d block is inverted with the Woodbury identity through an n x n
    system (U = sqrt(D) X: A^-1 v = (v - U^T (alpha I + U U^T)^-1 U v) / alpha),
    the intercept by the Schur complement; cheap when n << d, as for CAVs.
    """
    u = np.sqrt(dw)[:, None] * X
    k = alpha * np.eye(len(X)) + u @ u.T
    c = X.T @ dw
    rhs = np.stack([g[:-1], c], axis=1)
    ai = (rhs - u.T @ np.linalg.solve(k, u @ rhs)) / alpha        # A^-1 [g_w, c]
    schur = dw.sum() - c @ ai[:, 1]
    sb = (g[-1] - c @ ai[:, 0]) / (schur if schur > 0 else np.finfo(np.float64).tiny)
    return np.append(ai[:, 0] - ai[:, 1] * sb, sb)


CAV = namedtuple("CAV", ["vector", "intercept", "accuracy"])
CAV.__doc__ = """A concept activation vector: the unit normal ``vector`` (d,) pointing toward the
concept, the classifier's ``intercept`` (for the unit normal) and its ``accuracy``
on the held-out split."""


def train_cav(concept_acts, random_acts, alpha=0.01, test_fraction=0.33, rng=None):
    """Fit a CAV: concept activations (label 1) against random ones (label 0).

    The activations are flattened to (n, d); a seeded split keeps
    ``test_fraction`` of each set for the accuracy (tcav's test_size 0.33);
    :func:`fit_linear_classifier` on the rest gives w, and the CAV is
    w / |w|, so it points toward the concept.  (tcav labels the concept 0 and
    flips the sign of sklearn's coefficient; the vector is the same.)
    Inputs: concept_acts (n1, ...), random_acts (n2, ...) float, the same
    trailing shape.  Returns a :data:`CAV`.  See Part IV, section 4.3.
    """
    c = check_float_array(concept_acts, "concept_acts", min_ndim=2)
    r = check_float_array(random_acts, "random_acts", min_ndim=2)
    if c.shape[1:] != r.shape[1:]:
        raise ValueError(f"concept_acts {c.shape} and random_acts {r.shape} must have the same "
                         "shape after the first axis")
    if len(c) < 2 or len(r) < 2:
        raise ValueError(f"need at least 2 examples in each set, got {len(c)} and {len(r)}")
    f = check_number(test_fraction, "test_fraction")
    if not f < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    gen = np.random.default_rng(rng)
    c, r = c.reshape(len(c), -1), r.reshape(len(r), -1)
    parts = []
    for acts, label in ((c, 1), (r, 0)):
        order = gen.permutation(len(acts))
        n_test = min(int(round(f * len(acts))), len(acts) - 1)
        parts.append((acts[order[n_test:]], acts[order[:n_test]], label))
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    w, b = fit_linear_classifier(X, y, alpha)
    norm = np.linalg.norm(w)
    if norm == 0:
        raise ValueError("the classifier's weights are all zero: the two sets are identical")
    Xt = np.concatenate([p[1] for p in parts])
    if len(Xt):
        yt = np.concatenate([np.full(len(p[1]), p[2]) for p in parts])
        acc = float(np.mean(((Xt @ w + b) > 0) == (yt == 1)))
    else:
        acc = float("nan")
    return CAV(w / norm, b / norm, acc)


# ---------------------------------------------------------------------------
# Gradients at a layer and the score
# ---------------------------------------------------------------------------

def layer_gradients(model, layer, inputs, target, of="logit", batch_size=1000):
    """Activations at a layer and the gradient of a class score with respect to them.

    a = model[:layer](x); with F = model[layer:], the gradient of the
    ``target`` logit F_c(a) (``of="logit"``, captum's choice) or of its log
    softmax log p_c(a) (``of="log_prob"``, minus tcav's loss gradient) with
    respect to a, from the tail's own ``backward`` (evaluation mode; modes
    and parameter gradients restored).
    Inputs: model, a cnnlib Sequential; layer, an int in [1, len(model));
    inputs (N, ...) float; target an int or N ints.
    Returns (activations (N, ...), gradients (N, ...)), both like the layer's
    output.  See Part IV, section 4.3.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a cnnlib.nn.Sequential, got {type(model).__name__}")
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 1 <= layer < len(model):
        raise ValueError(f"layer must be an int in [1, {len(model) - 1}], got {layer!r}")
    if of not in ("logit", "log_prob"):
        raise ValueError(f"of must be 'logit' or 'log_prob', got {of!r}")
    x = check_float_array(inputs, "inputs", min_ndim=2)
    t = _check_target(target, x.shape[0])
    batch_size = check_count(batch_size, "batch_size")
    head, tail = model[:layer], model[layer:]
    acts, grads = [], []
    with _EvalMode(model):
        for s in range(0, len(x), batch_size):
            a = head(x[s:s + batch_size])
            z = _logits(tail, a)
            tt = t[s:s + batch_size]
            _check_range(tt, z.shape[1])
            up = np.zeros_like(z)
            up[np.arange(len(z)), tt] = 1
            if of == "log_prob":
                up -= softmax(np.ascontiguousarray(z), dim=1)
            grads.append(np.asarray(tail.backward(up)))
            acts.append(a)
    if not acts:
        raise ValueError("inputs must contain at least one example")
    return np.concatenate(acts), np.concatenate(grads)


def directional_derivatives(gradients, cav):
    """S(x) = grad . v for each example: gradients (N, ...) flattened to (N, d), cav (d,).

    Returns float64 (N,).  See Part IV, section 4.3.
    """
    g = check_float_array(gradients, "gradients", min_ndim=2)
    v = np.asarray(cav.vector if isinstance(cav, CAV) else cav, dtype=np.float64)
    g = g.reshape(len(g), -1)
    if v.shape != (g.shape[1],):
        raise ValueError(f"cav must have shape ({g.shape[1]},), got {v.shape}")
    return g.astype(np.float64) @ v


def tcav_score(derivatives):
    """The fraction of examples whose directional derivative is > 0 (captum's sign count).

    Inputs: derivatives (N,) from :func:`directional_derivatives`.  Returns a
    float in [0, 1].  See Part IV, section 4.3.
    """
    s = np.asarray(derivatives, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"derivatives must be a non-empty 1-d array, got shape {s.shape}")
    return float(np.mean(s > 0))


# ---------------------------------------------------------------------------
# Student's t: distribution, two-sample test, power
# ---------------------------------------------------------------------------

def _betacf(a, b, x, max_iter=300, eps=1e-15):
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, max_iter + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),
                   -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def _betainc(a, b, x, y):
    """Regularised incomplete beta I_x(a, b) for 0 <= x <= 1, given y = 1 - x accurately."""
    if x <= 0:
        return 0.0
    if y <= 0:
        return 1.0
    lbt = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
           + a * math.log(x) + b * math.log(y))
    if x < (a + 1) / (a + b + 2):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, y) / b


def _check_df(df):
    df = check_number(df, "df", positive=True)
    return df


def student_t_cdf(t, df):
    """P(T <= t) for Student's t with ``df`` degrees of freedom.

    With x = df / (df + t^2): P(T <= t) = 1 - I_x(df/2, 1/2) / 2 for t >= 0
    (and symmetric), I the regularised incomplete beta function (continued
    fraction).  t a number or an array; df > 0.  Returns float64 like t.
    See Part IV, section 4.3.
    """
    df = _check_df(df)
    ts = np.asarray(t, dtype=np.float64)
    out = np.empty(ts.shape)
    for i, v in np.ndenumerate(ts):
        if np.isnan(v):
            out[i] = np.nan
        elif np.isinf(v):
            out[i] = 1.0 if v > 0 else 0.0
        else:
            tail = 0.5 * _betainc(0.5 * df, 0.5, df / (df + v * v), v * v / (df + v * v))
            out[i] = 1.0 - tail if v > 0 else tail
    return out if out.ndim else float(out)


def student_t_ppf(q, df):
    """The quantile t with P(T <= t) = q (bisection on :func:`student_t_cdf`), 0 < q < 1."""
    q = check_number(q, "q")
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q}")
    df = _check_df(df)
    lo, hi = -1.0, 1.0
    while student_t_cdf(lo, df) > q:
        lo *= 2
    while student_t_cdf(hi, df) < q:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, abs(mid)):
            break
    return 0.5 * (lo + hi)


TTest = namedtuple("TTest", ["statistic", "pvalue", "df"])
TTest.__doc__ = "A two-sample t-test: the t ``statistic``, the two-sided ``pvalue`` and ``df``."


def ttest_ind(a, b):
    """Two-sided two-sample Student t-test with pooled variance (scipy's ``ttest_ind``).

    t = (mean a - mean b) / (s_p sqrt(1/n_a + 1/n_b)), s_p^2 the pooled
    variance, df = n_a + n_b - 2, p = 2 P(T > |t|).  If both samples are
    constant: t = +-inf and p = 0 when the means differ, t = 0 and p = 1 when
    they are equal (scipy returns nan there).  Inputs: 1-d samples of at
    least 2 values each.  Returns a :data:`TTest`.  See Part IV, section 4.3.
    """
    a, b = (np.asarray(v, dtype=np.float64) for v in (a, b))
    if a.ndim != 1 or b.ndim != 1 or len(a) < 2 or len(b) < 2:
        raise ValueError(f"a and b must be 1-d with at least 2 values each, got shapes "
                         f"{a.shape} and {b.shape}")
    na, nb = len(a), len(b)
    df = na + nb - 2
    diff = a.mean() - b.mean()
    sp2 = (((a - a.mean()) ** 2).sum() + ((b - b.mean()) ** 2).sum()) / df
    se = math.sqrt(sp2 * (1 / na + 1 / nb))
    if se == 0:
        return TTest(0.0, 1.0, df) if diff == 0 else TTest(math.copysign(math.inf, diff), 0.0, df)
    t = diff / se
    return TTest(float(t), float(2 * (1 - student_t_cdf(abs(t), df))), df)


def ttest_power(effect_size, n, alpha=0.05):
    """Power of the two-sided two-sample t-test with n per group at effect size d.

    Under the alternative, t follows a noncentral t with df = 2n - 2 and
    noncentrality delta = d sqrt(n/2); power = P(|T'| > t_(1 - alpha/2)).
    Computed as E_S[Phi(delta - c S) + Phi(-delta - c S)] over
    S = sqrt(chi2_df / df), by Simpson's rule on the density of S.
    Inputs: effect_size d >= 0 (difference of means / common sd), n >= 2,
    alpha in (0, 1).  Returns a float.  See Part IV, section 4.3.
    """
    d = check_number(effect_size, "effect_size")
    n = check_count(n, "n", minimum=2)
    alpha = check_number(alpha, "alpha", positive=True)
    if not alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    df = 2 * n - 2
    c = student_t_ppf(1 - alpha / 2, df)
    nc = d * math.sqrt(n / 2)
    # density of S = sqrt(V / df), V ~ chi2(df), on a grid wide enough for its mass
    sd = 1 / math.sqrt(2 * df)
    s = np.linspace(max(1e-12, 1 - 12 * sd), 1 + 14 * sd, 4001)
    logf = (math.log(2) + 0.5 * df * math.log(0.5 * df) - math.lgamma(0.5 * df)
            + (df - 1) * np.log(s) - 0.5 * df * s * s)
    f = np.exp(logf)
    phi = np.array([0.5 * math.erfc(-(nc - c * v) / math.sqrt(2))
                    + 0.5 * math.erfc((nc + c * v) / math.sqrt(2)) for v in s])
    h = s[1] - s[0]
    w = np.ones_like(s)
    w[1:-1:2], w[2:-1:2] = 4, 2
    return float(h / 3 * np.sum(w * f * phi))


def runs_for_power(effect_size, power=0.8, alpha=0.05, max_n=100_000):
    """The smallest n per group with :func:`ttest_power` (d, n, alpha) >= power.

    (d = 0.5 gives 64 per group, d = 0.8 26, d = 1 17.)  See Part IV, section 4.3.
    """
    d = check_number(effect_size, "effect_size", positive=True)
    power = check_number(power, "power", positive=True)
    if not power < 1:
        raise ValueError(f"power must be in (0, 1), got {power}")
    lo, hi = 2, 2
    while ttest_power(d, hi, alpha) < power:
        lo, hi = hi, hi * 2
        if hi > max_n:
            raise ValueError(f"more than {max_n} runs per group needed for d = {d}")
    while lo < hi:
        mid = (lo + hi) // 2
        if ttest_power(d, mid, alpha) >= power:
            hi = mid
        else:
            lo = mid + 1
    return hi


# ---------------------------------------------------------------------------
# The significance test over random concepts
# ---------------------------------------------------------------------------

TCAVResult = namedtuple("TCAVResult", ["scores", "null_scores", "accuracies", "ttest", "significant"])
TCAVResult.__doc__ = """Scores of the concept CAVs against each random set (``scores``), of the
random-vs-random CAVs (``null_scores``), the concept CAVs' held-out ``accuracies``,
the :data:`TTest` between the two and whether p <= the level (``significant``)."""


def train_cavs(concept_acts, random_sets, alpha=0.01, rng=None):
    """The CAVs of a concept against each of several random sets: a list of :data:`CAV`.

    ``train_cav(concept_acts, random_sets[i], alpha)`` for each i, the splits
    seeded from one generator ``np.random.default_rng(rng)``.  See Part IV, section 4.3.
    """
    if not isinstance(random_sets, (list, tuple)) or len(random_sets) < 2:
        raise ValueError("random_sets must be a list of at least 2 activation arrays")
    gen = np.random.default_rng(rng)
    return [train_cav(concept_acts, r, alpha, rng=gen) for r in random_sets]


def random_cavs(random_sets, alpha=0.01, rng=None):
    """The null CAVs: ``random_sets[i]`` (as a "concept") against ``random_sets[(i + 1) % m]``.

    tcav trains such random-vs-random CAVs for its null distribution.
    Returns a list of m :data:`CAV`.  See Part IV, section 4.3.
    """
    if not isinstance(random_sets, (list, tuple)) or len(random_sets) < 2:
        raise ValueError("random_sets must be a list of at least 2 activation arrays")
    gen = np.random.default_rng(rng)
    m = len(random_sets)
    return [train_cav(random_sets[i], random_sets[(i + 1) % m], alpha, rng=gen) for i in range(m)]


def significance(cavs, null_cavs, class_gradients, level=0.05):
    """TCAV scores of concept CAVs and of null CAVs for one class, and their t-test.

    s_i = :func:`tcav_score` along ``cavs[i]``, r_i along ``null_cavs[i]``,
    then :func:`ttest_ind` (s, r), significant if p <= ``level``.
    Inputs: lists of :data:`CAV`; class_gradients (M, ...) from
    :func:`layer_gradients` for the class inputs.  Returns a :data:`TCAVResult`.
    See Part IV, section 4.3.
    """
    level = check_number(level, "level", positive=True)
    g = check_float_array(class_gradients, "class_gradients", min_ndim=2)
    scores = np.array([tcav_score(directional_derivatives(g, c)) for c in cavs])
    null = np.array([tcav_score(directional_derivatives(g, c)) for c in null_cavs])
    test = ttest_ind(scores, null)
    return TCAVResult(scores, null, np.array([c.accuracy for c in cavs]), test,
                      bool(test.pvalue <= level))


def tcav_test(concept_acts, random_sets, class_gradients, alpha=0.01, level=0.05, rng=None):
    """TCAV scores of a concept against many random sets, with the random-concept null.

    :func:`train_cavs` and :func:`random_cavs` (alpha the classifier's
    penalty, rng seeding the held-out splits), then :func:`significance`.
    Inputs: concept_acts (n, ...), random_sets a list of m >= 2 arrays like it,
    class_gradients (M, ...) for the class inputs.  Returns a :data:`TCAVResult`.
    See Part IV, section 4.3.
    """
    gen = np.random.default_rng(rng)
    cavs = train_cavs(concept_acts, random_sets, alpha, gen)
    return significance(cavs, random_cavs(random_sets, alpha, gen), class_gradients, level)

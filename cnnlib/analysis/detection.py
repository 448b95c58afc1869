"""Scoring a detector: confusion counts, precision and recall, the ROC curve and its area,
the threshold for a false-alarm budget, and how much of an attribution falls on the defect.

A detector gives each example a score; it calls the example positive
("defect") when the score is at least a threshold ``t``.  With the true
labels that gives the four counts TP, FP, TN, FN, from which

* precision = TP / (TP + FP), recall (true-positive rate) = TP / (TP + FN),
* false-alarm rate (false-positive rate) = FP / (FP + TN).

Sweeping ``t`` over all scores traces the ROC curve, (FPR, TPR) from (0, 0)
to (1, 1) (Fawcett 2006); its area (AUC) is the probability that a random
positive scores above a random negative, ties counting one half.  The
conventions follow scikit-learn's ``roc_curve`` (with
``drop_intermediate=False``) and ``roc_auc_score``, so the results can be
checked against it.  See the applications chapter (8).
"""

from typing import NamedTuple

import numpy as np

from .._validate import check_number

__all__ = ["Counts", "confusion_counts", "precision_recall", "roc_curve", "auc", "roc_auc",
           "threshold_for_false_alarms", "attribution_inside"]


class Counts(NamedTuple):
    """The confusion counts of a detector at one threshold."""
    tp: int
    fp: int
    tn: int
    fn: int


def _labels_scores(labels, scores):
    y, s = np.asarray(labels), np.asarray(scores)
    if y.ndim != 1 or s.shape != y.shape:
        raise ValueError(f"labels and scores must be 1-D of the same length, got shapes "
                         f"{y.shape} and {s.shape}")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if y.dtype.kind not in "iu" or not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (negative) and 1 (positive)")
    if s.dtype.kind not in "iuf" or not np.isfinite(s).all():
        raise ValueError("scores must be finite real numbers")
    return y.astype(np.int64), s.astype(np.float64)


def confusion_counts(labels, scores, threshold):
    """TP, FP, TN, FN of the rule "positive when score >= threshold".

    Inputs: labels (N,) of 0/1 (or bool); scores (N,) finite reals;
    threshold a real number (``-inf`` calls everything positive, ``inf``
    nothing).  Returns a :class:`Counts`.
    """
    y, s = _labels_scores(labels, scores)
    t = float(threshold)
    if np.isnan(t):
        raise ValueError("threshold must not be nan")
    pred = s >= t
    tp = int(np.sum(pred & (y == 1)))
    fp = int(np.sum(pred & (y == 0)))
    return Counts(tp, fp, int(np.sum(y == 0)) - fp, int(np.sum(y == 1)) - tp)


def precision_recall(labels, scores, threshold):
    """(precision, recall, false-alarm rate) at a threshold.

    precision = TP / (TP + FP) (1.0 when nothing is called positive, as a
    detector that raises no alarm raises no false one), recall = TP / (TP + FN),
    false-alarm rate = FP / (FP + TN).  Inputs as in :func:`confusion_counts`;
    needs at least one positive and one negative.  Returns three floats.
    """
    c = confusion_counts(labels, scores, threshold)
    if c.tp + c.fn == 0 or c.fp + c.tn == 0:
        raise ValueError("labels must contain both classes")
    precision = c.tp / (c.tp + c.fp) if c.tp + c.fp else 1.0
    return precision, c.tp / (c.tp + c.fn), c.fp / (c.fp + c.tn)


def roc_curve(labels, scores):
    """The ROC curve: false-positive and true-positive rates at every distinct score.

    As ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``:
    thresholds are the distinct scores in decreasing order, preceded by
    ``inf`` (nothing positive), so the curve starts at (0, 0) and ends at
    (1, 1) (threshold = the smallest score: everything positive).

    Inputs: labels (N,) 0/1 with both classes present; scores (N,).
    Returns ``(fpr, tpr, thresholds)``, float64 arrays of equal length.
    """
    y, s = _labels_scores(labels, scores)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("labels must contain both classes")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]   # the last index of each distinct score
    tps = np.cumsum(y)[last]
    fps = (last + 1) - tps
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, s[last]]


def auc(x, y):
    """Area under a curve by the trapezoidal rule (x monotone), like ``sklearn.metrics.auc``."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 2:
        raise ValueError(f"x and y must be 1-D of the same length >= 2, got {x.shape} and {y.shape}")
    dx = np.diff(x)
    if (dx < 0).any() and (dx > 0).any():
        raise ValueError("x must be monotone (increasing or decreasing)")
    area = float(np.sum(dx * (y[1:] + y[:-1]) / 2))
    return -area if (dx <= 0).all() else area


def roc_auc(labels, scores):
    """Area under the ROC curve (``sklearn.metrics.roc_auc_score`` for two classes).

    Equal to the Mann-Whitney probability P(score of a positive > score of a
    negative) + P(tie) / 2.  Returns a float in [0, 1].
    """
    fpr, tpr, _ = roc_curve(labels, scores)
    return auc(fpr, tpr)


def threshold_for_false_alarms(labels, scores, max_rate):
    """The smallest threshold whose false-alarm rate on (labels, scores) is at most ``max_rate``.

    With n negatives, at most k = floor(max_rate * n) of them may score at or
    above the threshold.  The smallest such threshold (the one with the most
    recall) lies just above the (k + 1)-th largest negative score, so it is
    that score moved up by one float64 ulp (``np.nextafter``); with k >= n it
    is ``-inf``.  Chosen on a calibration set, the budget holds there by
    construction; on new data it holds only on average.

    Inputs: labels (N,) 0/1 with at least one negative; scores (N,);
    max_rate in [0, 1].  Returns the threshold, a float.
    """
    y, s = _labels_scores(labels, scores)
    rate = check_number(max_rate, "max_rate")
    if not 0 <= rate <= 1:
        raise ValueError(f"max_rate must lie in [0, 1], got {max_rate}")
    neg = np.sort(s[y == 0])[::-1]
    if len(neg) == 0:
        raise ValueError("labels must contain at least one negative")
    k = int(np.floor(rate * len(neg) + 1e-9))
    if k >= len(neg):
        return -np.inf
    return float(np.nextafter(neg[k], np.inf))


def attribution_inside(attributions, masks):
    """The fraction of each map's absolute attribution that falls inside its mask.

    ``sum over the mask of |a| / sum of |a|`` per example: 1 when all the
    attribution is on the defect, the mask's area fraction for a map spread
    evenly (the chance level, returned too), nan for an all-zero map.

    Inputs: attributions (N, H, W) or (N, 1, H, W), float; masks (N, H, W) bool.
    Returns ``(inside, area)``, two float64 arrays (N,).
    """
    a = np.asarray(attributions, dtype=np.float64)
    m = np.asarray(masks)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or m.shape != a.shape or m.dtype != bool:
        raise ValueError(f"attributions must be (N, H, W) or (N, 1, H, W) and masks a bool array "
                         f"(N, H, W) of the same size, got {np.shape(attributions)} and "
                         f"{m.shape} {m.dtype}")
    a = np.abs(a)
    total = a.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = np.where(total > 0, (a * m).sum(axis=(1, 2)) / total, np.nan)
    return inside, m.mean(axis=(1, 2))

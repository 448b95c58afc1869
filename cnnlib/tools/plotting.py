"""Evaluation helpers and their figures: confusion matrices and misclassified examples.

The counting is plain NumPy (:func:`confusion_matrix`, :func:`misclassified`);
the ``plot_*`` functions only draw, with matplotlib, which is imported when
one of them is called.
"""

import numpy as np

__all__ = ["confusion_matrix", "misclassified", "plot_confusion_matrix", "plot_misclassified"]


def _labels(a, name):
    a = np.asarray(a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-d, got shape {a.shape}")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {a.dtype}")
    return a.astype(np.int64)


def confusion_matrix(y_true, y_pred, num_classes=None):
    """Counts C (K, K) with C[i, j] = number of examples of class i predicted as j.

    ``y_true`` and ``y_pred`` are integer labels of shape (N,), in
    [0, num_classes); ``num_classes`` defaults to 1 + the largest label seen.
    Rows are true classes, columns predictions (scikit-learn's convention).
    """
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have the same shape, got {y_true.shape} "
                         f"and {y_pred.shape}")
    if num_classes is None:
        num_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    for name, a in (("y_true", y_true), ("y_pred", y_pred)):
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got values in "
                             f"[{a.min()}, {a.max()}]")
    counts = np.bincount(y_true * num_classes + y_pred, minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes)


def misclassified(y_true, y_pred, scores=None, limit=None):
    """Indices of the examples with y_pred != y_true.

    With ``scores`` (N, K) (logits or probabilities), the most confident
    mistakes come first (largest score of the predicted class); otherwise the
    indices are in order.  ``limit`` keeps the first ``limit`` of them.
    """
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    wrong = np.flatnonzero(y_true != y_pred)
    if scores is not None:
        confidence = np.asarray(scores)[wrong, y_pred[wrong]]
        wrong = wrong[np.argsort(-confidence, kind="stable")]
    return wrong if limit is None else wrong[:limit]


def plot_confusion_matrix(cm, ax=None, class_names=None, title=None):
    """Draw a confusion matrix (counts, log colour scale, zeros left blank); return the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    cm = np.asarray(cm)
    k = len(cm)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.55 * k + 1.5, 0.55 * k + 1))
    shown = np.where(cm > 0, cm, np.nan)
    ax.imshow(shown, cmap="Blues", norm=LogNorm(vmin=1, vmax=max(cm.max(), 2)))
    names = class_names if class_names is not None else [str(i) for i in range(k)]
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    threshold = np.sqrt(max(cm.max(), 1))  # the middle of the log scale
    for i in range(k):
        for j in range(k):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > threshold else "black")
    if title:
        ax.set_title(title)
    return ax


def plot_misclassified(images, y_true, y_pred, indices, ncols=8, scale=1.2):
    """A grid of the images at ``indices``, each titled "true -> predicted"; return the Figure."""
    import matplotlib.pyplot as plt

    indices = np.asarray(indices)
    nrows = max(1, -(-len(indices) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * 1.25 * nrows),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        ax.imshow(np.asarray(images[i]).squeeze(), cmap="gray_r")
        ax.set_title(f"{y_true[i]} \u2192 {y_pred[i]}", fontsize=13)
    fig.tight_layout()
    return fig

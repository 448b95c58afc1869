"""Slow, plainly correct references for the kernels in ``cnnlib.functional``.

Every function here loops over output positions in Python and reduces one
window with ``np.sum``/``np.max``; none shares code with ``cnnlib``.  They
compute in float64 whatever the input dtype, so a float32 kernel is compared
with a more accurate answer.  ``numerical_gradient`` is cs231n's
``eval_numerical_gradient_array`` (central differences).
"""

import numpy as np
from scipy.signal import correlate2d


def _pair(v):
    return (v, v) if isinstance(v, (int, np.integer)) else tuple(v)


# ----------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------

def conv_padding(padding, kernel_size, dilation):
    """((top, bottom), (left, right)) for int, pair, 'valid' or 'same'.

    'same' pads dilation*(k-1) in total per axis; when that is odd the extra
    row/column goes to the bottom/right (PyTorch's rule).
    """
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        pads = []
        for k, d in zip(kernel_size, dilation):
            total = d * (k - 1)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    ph, pw = _pair(padding)
    return (ph, ph), (pw, pw)


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """y[n, o, i, j] = b[o] + sum(w[o] * window of the o's group at (i, j))."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    c_out, c_per_group, kh, kw = w.shape
    (top, bottom), (left, right) = conv_padding(padding, (kh, kw), (dh, dw))
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    n_, c_in, hp, wp = xp.shape
    out_per_group = c_out // groups
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n_, c_out, ho, wo))
    for n in range(n_):
        for o in range(c_out):
            g = o // out_per_group
            channels = slice(g * c_per_group, (g + 1) * c_per_group)
            for i in range(ho):
                for j in range(wo):
                    window = xp[n, channels,
                                i * sh:i * sh + dh * (kh - 1) + 1:dh,
                                j * sw:j * sw + dw * (kw - 1) + 1:dw]
                    y[n, o, i, j] = np.sum(window * w[o])
            if b is not None:
                y[n, o] += b[o]
    return y


def conv2d_scipy(x, w, b=None, padding=0):
    """Second opinion for groups=1, stride 1, dilation 1: sum of 2-D
    cross-correlations (``scipy.signal.correlate2d``) over input channels."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    (top, bottom), (left, right) = conv_padding(padding, w.shape[2:], (1, 1))
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    out = []
    for n in range(x.shape[0]):
        planes = []
        for o in range(w.shape[0]):
            plane = sum(correlate2d(xp[n, c], w[o, c], mode="valid") for c in range(x.shape[1]))
            planes.append(plane + (b[o] if b is not None else 0.0))
        out.append(planes)
    return np.array(out)


# ----------------------------------------------------------------------------
# Pooling
# ----------------------------------------------------------------------------

def pool_size(size, k, s, p, d=1, ceil_mode=False):
    """PyTorch's output length; in ceil mode a last window that would start
    in the right padding (at or after ``size + p`` in padded coordinates) is dropped."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pooled(x, kernel_size, stride, padding, dilation, ceil_mode, fill, reduce_window):
    """Pad with ``fill`` (enough to hold every ceil-mode window) and apply
    ``reduce_window(padded_plane, rows, cols, (h, w, ph, pw))`` at every output position."""
    x = np.asarray(x, dtype=np.float64)
    kh, kw = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    n_, c_, h, w = x.shape
    ho = pool_size(h, kh, sh, ph, dh, ceil_mode)
    wo = pool_size(w, kw, sw, pw, dw, ceil_mode)
    extra_h = max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + 2 * ph))
    extra_w = max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + 2 * pw))
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)),
                constant_values=fill)
    y = np.zeros((n_, c_, ho, wo))
    for n in range(n_):
        for c in range(c_):
            for i in range(ho):
                for j in range(wo):
                    rows = slice(i * sh, i * sh + dh * (kh - 1) + 1, dh)
                    cols = slice(j * sw, j * sw + dw * (kw - 1) + 1, dw)
                    y[n, c, i, j] = reduce_window(xp[n, c], rows, cols, (h, w, ph, pw))
    return y


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Max over each window of the -inf padded input (NaN wins, as np.max does)."""
    return _pooled(x, kernel_size, stride, padding, dilation, ceil_mode, -np.inf,
                   lambda plane, rows, cols, _: np.max(plane[rows, cols]))


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Mean over each window of the zero-padded input, with PyTorch's divisor:
    the number of window cells inside the padded input (``count_include_pad``)
    or inside the input itself; cells past the padding (ceil mode) never count."""
    def average(plane, rows, cols, geometry):
        h, w, ph, pw = geometry
        counted = np.zeros(plane.shape)
        if count_include_pad:
            counted[:h + 2 * ph, :w + 2 * pw] = 1
        else:
            counted[ph:ph + h, pw:pw + w] = 1
        return np.sum(plane[rows, cols]) / np.sum(counted[rows, cols])
    return _pooled(x, kernel_size, stride, padding, 1, ceil_mode, 0.0, average)


# ----------------------------------------------------------------------------
# Dense layer, softmax and cross-entropy
# ----------------------------------------------------------------------------

def linear(x, w, b=None):
    """y[..., o] = sum_i x[..., i] * w[o, i] + b[o], one output at a time."""
    x = np.asarray(x, dtype=np.float64)
    flat = x.reshape(-1, x.shape[-1])
    y = np.zeros((flat.shape[0], w.shape[0]))
    for r in range(flat.shape[0]):
        for o in range(w.shape[0]):
            y[r, o] = np.sum(flat[r] * w[o]) + (b[o] if b is not None else 0.0)
    return y.reshape(x.shape[:-1] + (w.shape[0],))


def softmax(x, dim):
    """exp(x) / sum(exp(x)) along ``dim``, one slice at a time, in float64."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), dim, -1)
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        e = np.exp(x[idx] - np.max(x[idx]))
        out[idx] = e / np.sum(e)
    return np.moveaxis(out, -1, dim)


def log_softmax(x, dim):
    x = np.moveaxis(np.asarray(x, dtype=np.float64), dim, -1)
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape[:-1]):
        z = x[idx] - np.max(x[idx])
        out[idx] = z - np.log(np.sum(np.exp(z)))
    return np.moveaxis(out, -1, dim)


def cross_entropy(x, target, reduction="mean"):
    """-log_softmax(x, 1)[n, target[n, ...], ...], then mean, sum or none."""
    logp = log_softmax(x, 1)
    losses = np.zeros(target.shape)
    for idx in np.ndindex(target.shape):
        n, rest = idx[0], idx[1:]
        losses[idx] = -logp[(n, target[idx]) + rest]
    if reduction == "none":
        return losses
    return losses.sum() / (losses.size if reduction == "mean" else 1)


# ----------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------

def numerical_gradient(f, x, df, h=1e-5):
    """Central-difference gradient of ``sum(f(x) * df)`` with respect to ``x``.

    ``x`` is perturbed in place one entry at a time and restored.
    """
    grad = np.zeros_like(x)
    for ix in np.ndindex(x.shape):
        old = x[ix]
        x[ix] = old + h
        pos = np.array(f(x), dtype=np.float64)
        x[ix] = old - h
        neg = np.array(f(x), dtype=np.float64)
        x[ix] = old
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
    return grad


def rel_error(a, b):
    """Largest absolute difference over the largest magnitude of either array."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    scale = max(np.abs(a).max(initial=0), np.abs(b).max(initial=0), 1e-12)
    return np.abs(a - b).max(initial=0) / scale

"""Low-bit weights for training: fake-quantised layers, post-training quantisation,
quantisation-aware training with the straight-through estimator, and
distillation quantisation (Polino et al. 2018).

Weights of b bits are symmetric, in [-(2^(b-1) - 1), 2^(b-1) - 1] (TFLite's
restricted range: [-127, 127] for 8 bits, {-1, 0, 1} for 2 bits), with one
scale per tensor or per output channel from :func:`~cnnlib.quant.affine.choose_qparams`.  The
activations stay in floating point here: the bit width is that of the stored
weights, which is what sets the model's size (the integer model of
:mod:`cnnlib.quant.integer` quantises activations to 8 bits as well).  See the
quantisation chapter (5.2).
"""

import copy
import math

import numpy as np

from .. import functional as F
from .. import nn
from .._random import get_rng
from ..optim import SGD
from .._validate import check_bool, check_count, check_float_array, check_number
from .affine import choose_qparams, fake_quantize_per_channel_affine, fake_quantize_per_tensor_affine

__all__ = ["weight_range", "fake_quantize_weight", "FakeQuantWeight", "quantize_weights",
           "distillation_loss", "distillation_loss_backward", "train_steps", "model_size_bytes"]


def _bits(bits):
    bits = check_count(bits, "bits", minimum=2)
    if bits > 16:
        raise ValueError(f"bits must be in [2, 16], got {bits}")
    return bits


def weight_range(bits):
    """(q_min, q_max) = (-(2^(b-1) - 1), 2^(b-1) - 1) for symmetric b-bit weights."""
    q = 2 ** (_bits(bits) - 1) - 1
    return -q, q


def fake_quantize_weight(weight, bits, per_channel=True, return_mask=False):
    """Round a weight array to b-bit symmetric values and back (max-abs scale, zero point 0).

    Inputs:
    - weight: float array (C_out, ...) (a conv or linear weight)
    - bits: int in [2, 16]; per_channel: one scale per output channel (axis 0)
      or one for the tensor

    Returns the fake-quantised weight of the same shape and dtype (and the
    in-range mask, all True for a max-abs scale up to rounding, with
    ``return_mask=True``).
    """
    w = check_float_array(weight, "weight", min_ndim=1)
    qmin, qmax = weight_range(bits)
    if check_bool(per_channel, "per_channel"):
        flat = w.reshape(len(w), -1)
        s, z = choose_qparams(flat.min(axis=1), flat.max(axis=1), qmin, qmax, symmetric=True)
        out = fake_quantize_per_channel_affine(w, s, z, 0, qmin, qmax, return_mask=True)
    else:
        s, z = choose_qparams(float(w.min()), float(w.max()), qmin, qmax, symmetric=True)
        out = fake_quantize_per_tensor_affine(w, s, z, qmin, qmax, return_mask=True)
    return out if check_bool(return_mask, "return_mask") else out[0]


class _WrappedLayer(nn.Module):
    """A module around one Conv2d or Linear layer (``self.layer``) whose float
    weight stays the trained parameter; the quantised and binarised layers."""

    @property
    def weight(self):
        """The wrapped layer's float weight (the trained parameter)."""
        return self.layer.weight

    @property
    def bias(self):
        return self.layer.bias

    def _conv_settings(self):
        layer = self.layer
        return dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation, groups=layer.groups)


class FakeQuantWeight(_WrappedLayer):
    """A Conv2d or Linear layer whose weight is fake-quantised to b bits at every forward.

    The float weight stays the trained parameter (``layer.weight``); forward
    uses its quantised copy, and backward passes the weight gradient through
    the rounding unchanged where the weight was in range (the clipped
    straight-through estimator, Courbariaux et al. 2016; Jacob et al. 2018).

    Inputs of forward: as the wrapped layer's.
    """

    def __init__(self, layer, bits, per_channel=True):
        super().__init__()
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"layer must be a cnnlib.nn.Conv2d or Linear, got {type(layer).__name__}")
        self.layer = layer
        self.bits = _bits(bits)
        self.per_channel = check_bool(per_channel, "per_channel")

    def forward(self, x):
        layer, b = self.layer, None if self.layer.bias is None else self.layer.bias.data
        w, mask = fake_quantize_weight(layer.weight.data, self.bits, self.per_channel, return_mask=True)
        if isinstance(layer, nn.Conv2d):
            y = F.conv2d(x, w, b, **self._conv_settings())
        else:
            y = F.linear(x, w, b)
        self.save_for_backward(x, w, mask)
        return y

    def backward(self, grad_output):
        x, w, mask = self.saved()
        layer, b = self.layer, None if self.layer.bias is None else self.layer.bias.data
        if isinstance(layer, nn.Conv2d):
            dx, dw, db = F.conv2d_backward(grad_output, x, w, b, **self._conv_settings())
        else:
            dx, dw, db = F.linear_backward(grad_output, x, w, b)
        layer.weight.grad += dw * mask
        if layer.bias is not None:
            layer.bias.grad += db
        return dx

    def quantized_weight(self):
        """The b-bit weight the forward uses (float, on the quantisation grid)."""
        return fake_quantize_weight(self.layer.weight.data, self.bits, self.per_channel)

    def extra_repr(self):
        return f"bits={self.bits}, per_channel={self.per_channel}"


def quantize_weights(model, bits, per_channel=True):
    """A copy of a Sequential model with every Conv2d and Linear wrapped in
    :class:`FakeQuantWeight` (post-training quantisation; train the copy for QAT).

    Inputs: model (``nn.Sequential``, e.g. LeNet-5), bits in [2, 16], per_channel.
    Returns the new model (same class; the original is untouched).
    """
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"model must be a cnnlib.nn.Sequential, got {type(model).__name__}")
    bits, per_channel = _bits(bits), check_bool(per_channel, "per_channel")
    out = copy.deepcopy(model)
    # a Sequential registers its modules as "0", "1", ...; re-assigning all of them in order
    # keeps that order (an assignment moves a name to the end)
    for i, module in enumerate(list(out)):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module = FakeQuantWeight(module, bits, per_channel)
        setattr(out, str(i), module)
    return out


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _distill_args(student_logits, teacher_logits, target, temperature, alpha):
    s = check_float_array(student_logits, "student_logits", ndim=2)
    t = check_float_array(teacher_logits, "teacher_logits", ndim=2)
    if t.shape != s.shape:
        raise ValueError(f"teacher_logits must have the shape of student_logits {s.shape}, got {t.shape}")
    y = np.asarray(target)
    if y.dtype.kind not in "iu" or y.shape != (len(s),):
        raise ValueError(f"target must be integer class indices of shape ({len(s)},), "
                         f"got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"target must lie in [0, {s.shape[1]}), got values in [{y.min()}, {y.max()}]")
    if len(s) == 0:
        raise ValueError("student_logits must hold at least one row")
    T = check_number(temperature, "temperature", positive=True)
    a = check_number(alpha, "alpha")
    if a > 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    return s, t.astype(s.dtype), y.astype(np.intp), T, a


def distillation_loss(student_logits, teacher_logits, target, temperature=4.0, alpha=0.9):
    """Knowledge-distillation loss (Hinton et al. 2015), as Polino et al. 2018 train a quantised student.

    ``L = alpha T^2 KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) CE(s, y)``,
    each averaged over the batch; the factor T^2 keeps the soft term's
    gradient the same size as T changes.

    Inputs:
    - student_logits, teacher_logits: float arrays (N, C); target: int (N,)
    - temperature T > 0; alpha in [0, 1] (1: teacher only, 0: labels only)

    Returns the loss, a float of the logits' dtype.
    """
    s, t, y, T, a = _distill_args(student_logits, teacher_logits, target, temperature, alpha)
    log_ps = F.log_softmax(s / s.dtype.type(T), 1)
    log_pt = F.log_softmax(t / s.dtype.type(T), 1)
    kl = np.sum(np.exp(log_pt) * (log_pt - log_ps)) / len(s)
    ce = F.cross_entropy(s, y)
    return s.dtype.type(a * T * T * kl + (1 - a) * ce)


def distillation_loss_backward(student_logits, teacher_logits, target, temperature=4.0, alpha=0.9):
    """Gradient of :func:`distillation_loss` w.r.t. the student's logits (the loss ends the graph).

    ``dL/ds = [alpha T (softmax(s/T) - softmax(t/T)) + (1 - alpha)(softmax(s) - onehot(y))] / N``.
    Returns an array (N, C) of the logits' dtype.
    """
    s, t, y, T, a = _distill_args(student_logits, teacher_logits, target, temperature, alpha)
    Tt = s.dtype.type(T)
    soft = _softmax(s / Tt) - _softmax(t / Tt)
    hard = F.cross_entropy_backward(s, y)
    return (s.dtype.type(a * T) * soft / s.dtype.type(len(s)) + s.dtype.type(1 - a) * hard).astype(s.dtype)


def train_steps(model, x, y, steps, batch_size=64, lr=0.01, momentum=0.9, teacher_logits=None,
                temperature=4.0, alpha=0.9, rng=None):
    """Train ``model`` for a number of SGD steps on (x, y), with labels or with a teacher.

    Inputs:
    - model: a Module (e.g. from :func:`quantize_weights`, whose weights then
      learn through the straight-through estimator)
    - x: float input (N, ...), already preprocessed; y: int labels (N,)
    - steps, batch_size: ints; lr, momentum: SGD (Nesterov) settings
    - teacher_logits: (N, C) float, or None for cross-entropy on the labels;
      with it the loss is :func:`distillation_loss` (temperature, alpha)
    - rng: seed or Generator for the batch order

    Returns the list of the per-step training losses (floats).
    """
    steps, batch_size = check_count(steps, "steps"), check_count(batch_size, "batch_size")
    x = check_float_array(x, "x", min_ndim=2)
    if teacher_logits is not None and len(teacher_logits) != len(x):
        raise ValueError(f"teacher_logits must have {len(x)} rows, got {len(teacher_logits)}")
    rng = get_rng(rng)
    opt = SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=momentum > 0)
    model.train()
    losses, order, pos = [], rng.permutation(len(x)), 0
    for _ in range(steps):
        if pos + batch_size > len(x):
            order, pos = rng.permutation(len(x)), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        opt.zero_grad()
        out = model(x[idx])
        if teacher_logits is None:
            loss, grad = F.cross_entropy(out, y[idx]), F.cross_entropy_backward(out, y[idx])
        else:
            args = (out, teacher_logits[idx], y[idx], temperature, alpha)
            loss, grad = distillation_loss(*args), distillation_loss_backward(*args)
        model.backward(grad)
        opt.step()
        losses.append(float(loss))
    model.eval()
    return losses


def model_size_bytes(model, bits=32, per_channel=True):
    """Bytes to store a model's conv and linear layers with b-bit weights.

    ``sum over layers of ceil(n_weights b / 8) + 4 n_bias`` (biases stay
    32-bit), plus 4 bytes per scale when b < 32 (one per output channel or one
    per tensor).  With b = 32 this is the float32 size, so the ratio tends to
    32 / b as the weights dominate.

    Inputs: model (a Module), bits in [2, 32], per_channel. Returns an int.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a cnnlib.nn.Module, got {type(model).__name__}")
    bits = check_count(bits, "bits", minimum=2)
    if bits > 32:
        raise ValueError(f"bits must be in [2, 32], got {bits}")
    per_channel = check_bool(per_channel, "per_channel")
    total = 0
    for _, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            n_out = m.weight.shape[0]
            total += math.ceil(m.weight.size * bits / 8)
            total += 0 if m.bias is None else 4 * m.bias.size
            if bits < 32:
                total += 4 * (n_out if per_channel else 1)
    return total

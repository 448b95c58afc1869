"""Attention blocks for feature maps: squeeze-and-excitation, CBAM and the non-local block.

Each block maps x of shape (N, C, H, W) to an output of the same shape and
re-weights it:

- :class:`SqueezeExcitation` (Hu et al. 2018): one weight per channel,
  ``sigmoid(fc2(relu(fc1(avgpool(x)))))``;
- :class:`CBAM` (Woo et al. 2018): a channel gate (average- and max-pooled
  descriptors through one shared MLP) and then a spatial gate (one weight per
  position, from a k x k convolution of the channel-wise max and mean);
- :class:`NonLocal2d` (Wang et al. 2018): self-attention over the H*W
  positions, every output position a softmax-weighted sum of all (possibly
  sub-sampled) positions, added to x through a projection that starts at 0.

All have hand-written backward passes, ``dtype`` and ``rng`` like the other
layers, and keep the attention weights of their last forward pass as
attributes (``last_scale``, ``last_channel_scale`` / ``last_spatial_scale``,
``last_attention``) for plotting. See the attention chapter (Part IV).
"""

import numpy as np

from .. import functional as F
from .._random import get_rng
from .._validate import check_bool, check_float_array
from .layers import Conv2d, Linear, MaxPool2d, ReLU, _check_dtype, _positive_int
from .module import Module, Sequential
from .norm_layers import BatchNorm2d

__all__ = ["SqueezeExcitation", "CBAM", "NonLocal2d"]


def _check_input(x, channels, name):
    x = check_float_array(x, "input", ndim=4)
    if x.shape[1] != channels:
        raise ValueError(f"{name} expects {channels} input channels, got input of shape {x.shape}")
    return x


def _sigmoid_grad(grad, s):
    """Gradient of sigmoid from its output s: grad * s * (1 - s)."""
    return grad * s * (1 - s)


class SqueezeExcitation(Module):
    """Squeeze-and-excitation block, as ``torchvision.ops.SqueezeExcitation``.

    ``s = sigmoid(fc2(relu(fc1(adaptive_avg_pool2d(x, 1)))))`` and
    ``y = s * x``: a weight in (0, 1) per example and channel, computed from
    the channel means ("squeeze") by a two-layer bottleneck ("excitation").
    ``fc1`` (input_channels -> squeeze_channels) and ``fc2`` (back) are 1x1
    convolutions with biases, named as in torchvision, so state dicts load both
    ways. With all weights and biases zero, s = 0.5 and y = 0.5 x.

    Inputs: x of shape (N, input_channels, H, W). Returns y of the same shape.
    After a forward, ``last_scale`` holds s, shape (N, input_channels, 1, 1).
    See the attention chapter (Part IV).
    """

    def __init__(self, input_channels, squeeze_channels, *, dtype=np.float32, rng=None):
        super().__init__()
        self.input_channels = _positive_int(input_channels, "input_channels")
        self.squeeze_channels = _positive_int(squeeze_channels, "squeeze_channels")
        dtype = _check_dtype(dtype)
        rng = get_rng(rng)  # one generator: a seed must not give both layers the same draws
        self.fc1 = Conv2d(input_channels, squeeze_channels, 1, dtype=dtype, rng=rng)
        self.fc2 = Conv2d(squeeze_channels, input_channels, 1, dtype=dtype, rng=rng)
        self.activation = ReLU()
        self.last_scale = None

    def forward(self, x):
        x = _check_input(x, self.input_channels, "SqueezeExcitation")
        squeezed = F.adaptive_avg_pool2d(x, 1)
        s = F.sigmoid(self.fc2(self.activation(self.fc1(squeezed))))
        self.save_for_backward(x, s)
        self.last_scale = s
        return x * s

    def backward(self, grad_output):
        x, s = self.saved()
        grad_s = (grad_output * x).sum(axis=(2, 3), keepdims=True)
        grad_squeezed = self.fc1.backward(self.activation.backward(
            self.fc2.backward(_sigmoid_grad(grad_s, s))))
        return grad_output * s + F.adaptive_avg_pool2d_backward(grad_squeezed, x, 1)

    def extra_repr(self):
        return f"{self.input_channels}, {self.squeeze_channels}"


class CBAM(Module):
    """Convolutional block attention module (Woo et al. 2018), the reference code's semantics.

    Channel gate: ``a = mlp(avgpool(x)) + mlp(maxpool(x))`` (global pools to
    (N, C); one MLP ``Linear(C, C // reduction) - ReLU - Linear(C // reduction, C)``
    with biases, shared by both descriptors), ``x1 = sigmoid(a) * x``.
    Spatial gate: ``m = [max over channels, mean over channels]`` of x1
    (two maps, max first, as the reference code's ``ChannelPool``), a
    ``kernel_size`` x ``kernel_size`` convolution to one map with padding
    (k - 1) // 2, then ``y = sigmoid(conv(m)) * x1``.

    ``spatial_bn=True`` (the default) follows the reference code
    (Jongchan/attention-module, ``MODELS/cbam.py``): the spatial convolution
    has no bias and is followed by ``BatchNorm2d(1, momentum=0.01)``; the
    paper's equation has no BN. ``spatial_bn=False`` gives the paper's form
    (a convolution with bias, no BN). Both are tested against a torch
    composition of the same operations.

    Inputs: x of shape (N, channels, H, W). Returns y of the same shape.
    After a forward, ``last_channel_scale`` (N, C) and ``last_spatial_scale``
    (N, 1, H, W) hold the two gates. See the attention chapter (Part IV).
    """

    def __init__(self, channels, reduction=16, kernel_size=7, spatial_bn=True, *,
                 dtype=np.float32, rng=None):
        super().__init__()
        self.channels = _positive_int(channels, "channels")
        self.reduction = _positive_int(reduction, "reduction")
        self.kernel_size = _positive_int(kernel_size, "kernel_size")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (padding (k - 1) // 2 keeps the size), "
                             f"got {kernel_size}")
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f"channels // reduction must be at least 1, got {channels} // {reduction}")
        self.spatial_bn = check_bool(spatial_bn, "spatial_bn")
        dtype = _check_dtype(dtype)
        rng = get_rng(rng)
        self.mlp = Sequential(Linear(channels, hidden, dtype=dtype, rng=rng), ReLU(),
                              Linear(hidden, channels, dtype=dtype, rng=rng))
        self.spatial = Conv2d(2, 1, kernel_size, padding=(kernel_size - 1) // 2,
                              bias=not self.spatial_bn, dtype=dtype, rng=rng)
        self.spatial_norm = BatchNorm2d(1, momentum=0.01, dtype=dtype) if self.spatial_bn else None
        self.last_channel_scale = self.last_spatial_scale = None

    def forward(self, x):
        x = _check_input(x, self.channels, "CBAM")
        n, c = x.shape[:2]
        avg = F.adaptive_avg_pool2d(x, 1).reshape(n, c)
        mx, max_idx = F.adaptive_max_pool2d(x, 1, return_indices=True)
        # both descriptors through the shared MLP in one batch of 2N rows
        a = self.mlp(np.concatenate([avg, mx.reshape(n, c)]))
        sc = F.sigmoid(a[:n] + a[n:])
        x1 = x * sc[:, :, None, None]
        arg = x1.argmax(axis=1)[:, None]
        pooled = np.concatenate([np.take_along_axis(x1, arg, axis=1), x1.mean(axis=1, keepdims=True)],
                                axis=1)
        logits = self.spatial(pooled)
        if self.spatial_norm is not None:
            logits = self.spatial_norm(logits)
        ss = F.sigmoid(logits)
        self.save_for_backward(x, max_idx, sc, x1, arg, ss)
        self.last_channel_scale, self.last_spatial_scale = sc, ss
        return x1 * ss

    def backward(self, grad_output):
        x, max_idx, sc, x1, arg, ss = self.saved()
        n, c = x.shape[:2]
        # spatial gate
        grad_x1 = grad_output * ss
        grad_logits = _sigmoid_grad((grad_output * x1).sum(axis=1, keepdims=True), ss)
        if self.spatial_norm is not None:
            grad_logits = self.spatial_norm.backward(grad_logits)
        grad_pooled = self.spatial.backward(grad_logits)
        grad_x1 += grad_pooled[:, 1:] / x.dtype.type(c)
        grad_max = np.zeros_like(x1)
        np.put_along_axis(grad_max, arg, grad_pooled[:, :1], axis=1)
        grad_x1 += grad_max
        # channel gate
        grad_a = _sigmoid_grad((grad_x1 * x).sum(axis=(2, 3)), sc)
        grad_desc = self.mlp.backward(np.concatenate([grad_a, grad_a]))
        grad_x = grad_x1 * sc[:, :, None, None]
        grad_x += F.adaptive_avg_pool2d_backward(grad_desc[:n].reshape(n, c, 1, 1), x, 1)
        grad_x += F.adaptive_max_pool2d_backward(grad_desc[n:].reshape(n, c, 1, 1), x, 1,
                                                 indices=max_idx)
        return grad_x

    def extra_repr(self):
        return (f"{self.channels}, reduction={self.reduction}, kernel_size={self.kernel_size}, "
                f"spatial_bn={self.spatial_bn}")


class NonLocal2d(Module):
    """Non-local block (Wang et al. 2018): self-attention over the positions of a feature map.

    With theta, phi, g 1x1 convolutions (C -> C', biases; C' =
    ``inter_channels``, by default C // 2 and at least 1) and L = H*W::

        Q = theta(x) as (N, L, C'),  K = phi(x) as (N, C', M),  V = g(x) as (N, M, C')
        f = Q K  (N, L, M),  A = softmax(f) over the M keys ("embedded_gaussian")
                             or A = f / M ("dot_product")
        y = A V  (N, L, C') reshaped to (N, C', H, W),  z = W(y) + x

    With ``sub_sample`` (the default, as in the reference code) phi and g are
    followed by a 2x2 max pooling, so M = floor(H/2) * floor(W/2); otherwise
    M = L. ``W`` is a 1x1 convolution C' -> C followed by ``BatchNorm2d(C)``
    (``bn_layer=True``) whose weight and bias start at 0, or, without BN, a
    convolution whose weight and bias start at 0: either way the block starts
    as the identity, z = x. Module names follow the reference code
    (AlexHex7/Non-local_pytorch, ``lib/non_local_embedded_gaussian.py``:
    ``g``, ``W``, ``theta``, ``phi``, with ``g.0`` / ``W.1`` inside the
    ``Sequential`` s), so state dicts match it.

    Inputs: x of shape (N, in_channels, H, W) (H, W >= 2 with ``sub_sample``).
    Returns z of the same shape. After a forward, ``last_attention`` holds A,
    shape (N, L, M): row l is where position l looks. See the attention
    chapter (Part IV).
    """

    MODES = ("embedded_gaussian", "dot_product")

    def __init__(self, in_channels, inter_channels=None, mode="embedded_gaussian", sub_sample=True,
                 bn_layer=True, *, dtype=np.float32, rng=None):
        super().__init__()
        self.in_channels = _positive_int(in_channels, "in_channels")
        if inter_channels is None:
            inter_channels = max(in_channels // 2, 1)
        self.inter_channels = _positive_int(inter_channels, "inter_channels")
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.sub_sample = check_bool(sub_sample, "sub_sample")
        self.bn_layer = check_bool(bn_layer, "bn_layer")
        dtype = _check_dtype(dtype)
        rng = get_rng(rng)
        c, ci = self.in_channels, self.inter_channels
        # registration order as in the reference: g, W, theta, phi
        g = Conv2d(c, ci, 1, dtype=dtype, rng=rng)
        self.g = Sequential(g, MaxPool2d(2)) if self.sub_sample else g
        if self.bn_layer:
            self.W = Sequential(Conv2d(ci, c, 1, dtype=dtype, rng=rng), BatchNorm2d(c, dtype=dtype))
            self.W[1].weight.data[...] = 0
            self.W[1].bias.data[...] = 0
        else:
            self.W = Conv2d(ci, c, 1, dtype=dtype, rng=rng)
            self.W.weight.data[...] = 0
            self.W.bias.data[...] = 0
        self.theta = Conv2d(c, ci, 1, dtype=dtype, rng=rng)
        phi = Conv2d(c, ci, 1, dtype=dtype, rng=rng)
        self.phi = Sequential(phi, MaxPool2d(2)) if self.sub_sample else phi
        self.last_attention = None

    def forward(self, x):
        x = _check_input(x, self.in_channels, "NonLocal2d")
        n, _, h, w = x.shape
        if self.sub_sample and (h < 2 or w < 2):
            raise ValueError(f"sub_sample needs H, W >= 2 (a 2x2 max pooling), got input of shape {x.shape}")
        ci = self.inter_channels
        q = self.theta(x).reshape(n, ci, h * w).transpose(0, 2, 1)
        k = self.phi(x).reshape(n, ci, -1)
        v = self.g(x).reshape(n, ci, -1).transpose(0, 2, 1)
        f = F.bmm(q, k)
        if self.mode == "embedded_gaussian":
            a = F.softmax(f, dim=-1)
        else:
            a = f / x.dtype.type(f.shape[-1])
        y = F.bmm(a, v).transpose(0, 2, 1).reshape(n, ci, h, w)
        self.save_for_backward(x.shape, q, k, v, f, a)
        self.last_attention = a
        return self.W(y) + x

    def backward(self, grad_output):
        shape, q, k, v, f, a = self.saved()
        n, _, h, w = shape
        ci = self.inter_channels
        grad_y = self.W.backward(grad_output).reshape(n, ci, h * w).transpose(0, 2, 1)
        grad_a, grad_v = F.bmm_backward(np.ascontiguousarray(grad_y), a, v)
        if self.mode == "embedded_gaussian":
            grad_f = F.softmax_backward(grad_a, f, dim=-1)
        else:
            grad_f = grad_a / grad_a.dtype.type(f.shape[-1])
        grad_q, grad_k = F.bmm_backward(grad_f, q, k)
        pooled = (h // 2, w // 2) if self.sub_sample else (h, w)
        grad_x = grad_output.copy()
        grad_x += self.theta.backward(grad_q.transpose(0, 2, 1).reshape(n, ci, h, w))
        grad_x += self.phi.backward(grad_k.reshape(n, ci, *pooled))
        grad_x += self.g.backward(grad_v.transpose(0, 2, 1).reshape(n, ci, *pooled))
        return grad_x

    def own_macs(self, output_shape):
        """Multiply-accumulates per example of the two batched products (Q K and A V):
        2 * L * M * C' for an output of shape (C, H, W); the 1x1 convolutions are
        counted by :func:`cnnlib.analysis.summary.summary` as layers of their own."""
        _, h, w = output_shape
        m = (h // 2) * (w // 2) if self.sub_sample else h * w
        return 2 * h * w * m * self.inter_channels

    def extra_repr(self):
        return (f"{self.in_channels}, inter_channels={self.inter_channels}, mode={self.mode!r}, "
                f"sub_sample={self.sub_sample}, bn_layer={self.bn_layer}")

"""Attention blocks (cnnlib.nn.attention): shapes, gradient checks, identities, torch, bad input."""

import numpy as np
import pytest
from naive import numerical_gradient, rel_error

from cnnlib import functional as F
from cnnlib import nn
from cnnlib.nn.norm_layers import BatchNorm2d

NL_SETTINGS = [(mode, sub, bn) for mode in nn.NonLocal2d.MODES for sub in (True, False)
               for bn in (True, False)]
NL_IDS = [f"{m}-sub{s}-bn{b}" for m, s, b in NL_SETTINGS]


def randomised(block, rng):
    """Give every all-zero parameter (NonLocal2d's W) and every BN random values,
    so that no gradient is trivially zero."""
    for _, m in block.named_modules():
        if isinstance(m, BatchNorm2d):
            m.running_mean[...] = rng.standard_normal(m.num_features) * 0.3
            m.running_var[...] = rng.uniform(0.5, 1.5, m.num_features)
    for p in block.parameters():
        if not p.data.any():
            p.data[...] = rng.standard_normal(p.shape) * 0.5
    return block


def assert_gradients(block, x, rng, tol=1e-6):
    """Central differences for the input and every parameter.  A few gradients are
    exactly zero by symmetry (the bias of phi under a softmax, a bias before BN),
    so an error counts as small relative to the largest entry, or absolutely."""
    y = block(x)
    g = rng.standard_normal(y.shape)
    block.zero_grad()
    dx = block.backward(g)
    state = block.state_dict()

    def f(_):
        out = block(x)
        block.load_state_dict(state)  # keep running statistics where they were
        return out

    def close(a, b):
        return rel_error(a, b) < tol or np.abs(a - b).max() < 1e-9

    assert close(dx, numerical_gradient(f, x, g)), "input"
    for name, p in block.named_parameters():
        assert close(p.grad, numerical_gradient(f, p.data, g)), name


def blocks(dtype=np.float64, rng=0):
    return [nn.SqueezeExcitation(6, 3, dtype=dtype, rng=rng),
            nn.CBAM(6, reduction=2, kernel_size=3, dtype=dtype, rng=rng),
            nn.CBAM(6, reduction=3, kernel_size=5, spatial_bn=False, dtype=dtype, rng=rng),
            *[nn.NonLocal2d(6, mode=m, sub_sample=s, bn_layer=b, dtype=dtype, rng=rng)
              for m, s, b in NL_SETTINGS]]


# ----------------------------------------------------------------------------
# Shapes, dtypes, determinism
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 6, 5, 4), (1, 6, 8, 8), (3, 6, 2, 3)])
def test_shapes_and_dtypes(dtype, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    for block in blocks(dtype):
        y = block(x)
        assert y.shape == x.shape and y.dtype == dtype, block
        assert block.backward(np.ones_like(y)).dtype == dtype
        assert all(p.grad.dtype == dtype for p in block.parameters())


def test_attention_maps_are_kept():
    x = np.random.default_rng(1).standard_normal((2, 6, 6, 4))
    se, cbam, nl = nn.SqueezeExcitation(6, 2), nn.CBAM(6, 3), nn.NonLocal2d(6, sub_sample=False)
    se(x.astype(np.float32))
    assert se.last_scale.shape == (2, 6, 1, 1)
    cbam(x.astype(np.float32))
    assert cbam.last_channel_scale.shape == (2, 6) and cbam.last_spatial_scale.shape == (2, 1, 6, 4)
    for s in (se.last_scale, cbam.last_channel_scale, cbam.last_spatial_scale):
        assert np.all((s > 0) & (s < 1))
    nl(x.astype(np.float32))
    assert nl.last_attention.shape == (2, 24, 24)
    np.testing.assert_allclose(nl.last_attention.sum(axis=-1), 1, rtol=1e-5)  # softmax rows
    sub = nn.NonLocal2d(6)  # sub-sampled keys: 3 x 2 positions
    sub(x.astype(np.float32))
    assert sub.last_attention.shape == (2, 24, 6)


def test_same_rng_same_block_and_seeded_layers_differ():
    for a, b in zip(blocks(rng=7), blocks(rng=7)):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    se = nn.SqueezeExcitation(4, 4, rng=3)
    assert not np.array_equal(se.fc1.weight.data, se.fc2.weight.data)  # one generator for both
    nl = nn.NonLocal2d(4, sub_sample=False, rng=3)
    assert not np.array_equal(nl.theta.weight.data, nl.phi.weight.data)


def test_inter_channels_default_and_names_follow_the_reference():
    assert nn.NonLocal2d(7).inter_channels == 3 and nn.NonLocal2d(1).inter_channels == 1
    names = list(nn.NonLocal2d(4).state_dict())
    assert names[:8] == ["g.0.weight", "g.0.bias", "W.0.weight", "W.0.bias", "W.1.weight", "W.1.bias",
                         "theta.weight", "theta.bias"]
    assert "W.1.running_mean" in names
    assert list(nn.NonLocal2d(4, sub_sample=False, bn_layer=False).state_dict()) == [
        "g.weight", "g.bias", "W.weight", "W.bias", "theta.weight", "theta.bias", "phi.weight", "phi.bias"]
    assert list(nn.SqueezeExcitation(4, 2).state_dict()) == ["fc1.weight", "fc1.bias", "fc2.weight",
                                                             "fc2.bias"]


# ----------------------------------------------------------------------------
# Gradient checks (float64)
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("training", [True, False])
def test_se_gradients(training):
    rng = np.random.default_rng(0)
    block = nn.SqueezeExcitation(6, 3, dtype=np.float64, rng=1).train(training)
    assert_gradients(block, rng.standard_normal((2, 6, 5, 4)), rng)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("spatial_bn", [True, False])
@pytest.mark.parametrize("reduction, kernel_size", [(2, 3), (1, 7), (3, 1)])
def test_cbam_gradients(spatial_bn, reduction, kernel_size, training):
    rng = np.random.default_rng(0)
    block = randomised(nn.CBAM(6, reduction, kernel_size, spatial_bn, dtype=np.float64, rng=1), rng)
    x = rng.permutation(2 * 6 * 5 * 4).reshape(2, 6, 5, 4) / 40.0 - 1  # no ties for the maxima
    assert_gradients(block.train(training), x, rng)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("mode, sub_sample, bn_layer", NL_SETTINGS, ids=NL_IDS)
def test_non_local_gradients(mode, sub_sample, bn_layer, training):
    rng = np.random.default_rng(0)
    block = randomised(nn.NonLocal2d(6, mode=mode, sub_sample=sub_sample, bn_layer=bn_layer,
                                     dtype=np.float64, rng=1), rng)
    x = rng.permutation(2 * 6 * 5 * 4).reshape(2, 6, 5, 4) / 40.0 - 1
    assert_gradients(block.train(training), x, rng)


def test_non_local_gradients_with_other_inter_channels():
    rng = np.random.default_rng(5)
    block = randomised(nn.NonLocal2d(3, inter_channels=4, sub_sample=False, bn_layer=False,
                                     dtype=np.float64, rng=2), rng)
    assert_gradients(block, rng.standard_normal((2, 3, 3, 3)), rng)


# ----------------------------------------------------------------------------
# Identities
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode, sub_sample, bn_layer", NL_SETTINGS, ids=NL_IDS)
@pytest.mark.parametrize("training", [True, False])
def test_non_local_starts_as_the_identity(mode, sub_sample, bn_layer, training):
    x = np.random.default_rng(2).standard_normal((2, 5, 6, 4)).astype(np.float32)
    block = nn.NonLocal2d(5, mode=mode, sub_sample=sub_sample, bn_layer=bn_layer, rng=0).train(training)
    np.testing.assert_array_equal(block(x), x)
    g = np.random.default_rng(3).standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(block.backward(g), g)  # W is zero: nothing flows into theta, phi, g
    # ... but W itself learns: its gradient is not zero
    w = block.W[1].weight if bn_layer else block.W.weight
    assert np.abs(w.grad).max() > 0


def test_se_with_zero_weights_halves_the_input():
    x = np.random.default_rng(4).standard_normal((2, 4, 3, 5))
    block = nn.SqueezeExcitation(4, 2, dtype=np.float64)
    for p in block.parameters():
        p.data[...] = 0
    np.testing.assert_array_equal(block(x), 0.5 * x)
    np.testing.assert_array_equal(block.last_scale, 0.5)


def test_non_local_is_softmax_self_attention_over_positions():
    """z - x = W(softmax(Q K^T) V) with Q, K, V the flattened 1x1-conv maps, written out."""
    rng = np.random.default_rng(6)
    block = randomised(nn.NonLocal2d(4, sub_sample=False, bn_layer=False, dtype=np.float64, rng=0), rng)
    x = rng.standard_normal((2, 4, 3, 5))

    def flat(conv):  # (N, C, H, W) -> (N, H*W, C'), a 1x1 conv as a matrix product
        return np.einsum("nchw,oc->nhwo", x, conv.weight.data[:, :, 0, 0]).reshape(2, 15, -1) + conv.bias.data

    q, k, v = flat(block.theta), flat(block.phi), flat(block.g)
    scores = q @ k.transpose(0, 2, 1)
    attn = np.exp(scores - scores.max(-1, keepdims=True))
    attn /= attn.sum(-1, keepdims=True)
    y = attn @ v  # (N, L, C')
    out = np.einsum("nlc,oc->nlo", y, block.W.weight.data[:, :, 0, 0]) + block.W.bias.data
    expected = out.transpose(0, 2, 1).reshape(x.shape) + x
    np.testing.assert_allclose(block(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(block.last_attention, attn, rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------

def test_bad_settings():
    with pytest.raises(ValueError, match="input_channels"):
        nn.SqueezeExcitation(0, 2)
    with pytest.raises(ValueError, match="squeeze_channels"):
        nn.SqueezeExcitation(4, 1.5)
    with pytest.raises(TypeError, match="dtype"):
        nn.SqueezeExcitation(4, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="channels // reduction"):
        nn.CBAM(8, reduction=16)
    with pytest.raises(ValueError, match="odd"):
        nn.CBAM(8, reduction=2, kernel_size=4)
    with pytest.raises(TypeError, match="spatial_bn"):
        nn.CBAM(8, reduction=2, spatial_bn="yes")
    with pytest.raises(ValueError, match="mode"):
        nn.NonLocal2d(4, mode="gaussian")
    with pytest.raises(ValueError, match="inter_channels"):
        nn.NonLocal2d(4, inter_channels=0)
    with pytest.raises(TypeError, match="sub_sample"):
        nn.NonLocal2d(4, sub_sample=1)
    with pytest.raises(TypeError, match="bn_layer"):
        nn.NonLocal2d(4, bn_layer=None)


def test_bad_input():
    x = np.zeros((2, 4, 4, 4), np.float32)
    for block in (nn.SqueezeExcitation(4, 2), nn.CBAM(4, 2), nn.NonLocal2d(4)):
        with pytest.raises(ValueError, match="4-d"):
            block(x[0])
        with pytest.raises(ValueError, match="channels"):
            block(np.zeros((2, 3, 4, 4), np.float32))
        with pytest.raises(TypeError, match="dtype"):
            block(x.astype(np.int64))
        with pytest.raises(TypeError, match="dtype"):
            block(x.astype(np.float64))  # float32 weights
    with pytest.raises(ValueError, match="sub_sample needs"):
        nn.NonLocal2d(4)(np.zeros((1, 4, 1, 4), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        nn.CBAM(4, 2).backward(x)


# ----------------------------------------------------------------------------
# Against torch compositions of the same weights (torchvision is not installed)
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch", reason="PyTorch not installed: reference comparisons skipped")


def torch_params(torch, block):
    return {name: torch.tensor(p.data, requires_grad=True) for name, p in block.named_parameters()}


def torch_bn(torch, x, block, prefix, momentum):
    """torch's batch_norm with the block's running statistics (copies, updated in place)."""
    m = dict(block.named_modules())[prefix]
    rm, rv = torch.tensor(m.running_mean.copy()), torch.tensor(m.running_var.copy())
    return torch.nn.functional.batch_norm(x, rm, rv, P[prefix + ".weight"], P[prefix + ".bias"],
                                          training=block.training, momentum=momentum, eps=m.eps), (rm, rv)


P = {}  # the torch parameters of the block under test (set by compare)


def se_torch(torch, x, block):
    TF = torch.nn.functional
    s = TF.adaptive_avg_pool2d(x, 1)
    s = TF.conv2d(TF.relu(TF.conv2d(s, P["fc1.weight"], P["fc1.bias"])), P["fc2.weight"], P["fc2.bias"])
    return torch.mul(torch.sigmoid(s), x), {}


def cbam_torch(torch, x, block):
    """The reference code's ChannelGate and SpatialGate, written with torch ops."""
    TF = torch.nn.functional

    def mlp(d):
        h = TF.relu(TF.linear(d.flatten(1), P["mlp.0.weight"], P["mlp.0.bias"]))
        return TF.linear(h, P["mlp.2.weight"], P["mlp.2.bias"])

    n, c, h, w = x.shape
    avg = TF.avg_pool2d(x, (h, w), stride=(h, w))
    mx = TF.max_pool2d(x, (h, w), stride=(h, w))
    x1 = x * torch.sigmoid(mlp(avg) + mlp(mx)).unsqueeze(2).unsqueeze(3).expand_as(x)
    pooled = torch.cat((torch.max(x1, 1)[0].unsqueeze(1), torch.mean(x1, 1).unsqueeze(1)), dim=1)
    k = block.kernel_size
    logits = TF.conv2d(pooled, P["spatial.weight"], P.get("spatial.bias"), padding=(k - 1) // 2)
    stats = {}
    if block.spatial_bn:
        logits, stats["spatial_norm"] = torch_bn(torch, logits, block, "spatial_norm", 0.01)
    return x1 * torch.sigmoid(logits), stats


def non_local_torch(torch, x, block):
    """AlexHex7's _NonLocalBlockND.forward (2-D), written with torch ops."""
    TF = torch.nn.functional
    n, ci = x.shape[0], block.inter_channels
    sub = ".0" if block.sub_sample else ""

    def conv(name, z):
        return TF.conv2d(z, P[name + ".weight"], P[name + ".bias"])

    g = conv("g" + sub, x)
    phi = conv("phi" + sub, x)
    if block.sub_sample:
        g, phi = TF.max_pool2d(g, 2), TF.max_pool2d(phi, 2)
    g_x = g.view(n, ci, -1).permute(0, 2, 1)
    theta_x = conv("theta", x).view(n, ci, -1).permute(0, 2, 1)
    phi_x = phi.view(n, ci, -1)
    f = torch.matmul(theta_x, phi_x)
    f_div_c = TF.softmax(f, dim=-1) if block.mode == "embedded_gaussian" else f / f.size(-1)
    y = torch.matmul(f_div_c, g_x).permute(0, 2, 1).contiguous().view(n, ci, *x.shape[2:])
    stats = {}
    if block.bn_layer:
        wy, stats["W.1"] = torch_bn(torch, conv("W.0", y), block, "W.1", 0.1)
    else:
        wy = conv("W", y)
    return wy + x, stats


def compare(torch, block, reference, x, rng, tol):
    P.clear()
    P.update(torch_params(torch, block))
    xt = torch.tensor(x, requires_grad=True)
    zt, stats = reference(torch, xt, block)
    z = block(x)
    g = rng.standard_normal(z.shape).astype(x.dtype)
    zt.backward(torch.tensor(g))
    block.zero_grad()
    np.testing.assert_allclose(z, zt.detach().numpy(), **tol)
    np.testing.assert_allclose(block.backward(g), xt.grad.numpy(), **tol)
    for name, p in block.named_parameters():
        ref = P[name].grad.numpy()
        if block.training and name == "W.0.bias":
            # a bias right before BN in training mode: its gradient is zero in exact
            # arithmetic, so both sides hold rounding noise only
            noise = 1e-4 if x.dtype == np.float32 else 1e-12
            assert np.abs(p.grad).max() < noise and np.abs(ref).max() < noise, name
            continue
        np.testing.assert_allclose(p.grad, ref, **tol, err_msg=name)
    for prefix, (rm, rv) in stats.items():  # running statistics after the step
        m = dict(block.named_modules())[prefix]
        np.testing.assert_allclose(m.running_mean, rm.numpy(), **tol)
        np.testing.assert_allclose(m.running_var, rv.numpy(), **tol)


TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-11)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_se_matches_torch(torch, dtype):
    rng = np.random.default_rng(8)
    block = nn.SqueezeExcitation(8, 3, dtype=dtype, rng=0)
    compare(torch, block, se_torch, rng.standard_normal((3, 8, 5, 6)).astype(dtype), rng, TOL[dtype])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spatial_bn", [True, False])
def test_cbam_matches_torch(torch, spatial_bn, dtype, training):
    rng = np.random.default_rng(9)
    block = randomised(nn.CBAM(8, 4, 7, spatial_bn, dtype=dtype, rng=0), rng).train(training)
    x = (rng.permutation(3 * 8 * 9 * 7).reshape(3, 8, 9, 7) / 300.0 - 1).astype(dtype)
    compare(torch, block, cbam_torch, x, rng, TOL[dtype])


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode, sub_sample, bn_layer", NL_SETTINGS, ids=NL_IDS)
def test_non_local_matches_torch(torch, mode, sub_sample, bn_layer, dtype, training):
    rng = np.random.default_rng(10)
    block = randomised(nn.NonLocal2d(6, mode=mode, sub_sample=sub_sample, bn_layer=bn_layer,
                                     dtype=dtype, rng=0), rng).train(training)
    x = (rng.permutation(2 * 6 * 7 * 6).reshape(2, 6, 7, 6) / 100.0 - 1).astype(dtype)
    compare(torch, block, non_local_torch, x, rng, TOL[dtype])


def test_functional_sigmoid_is_used_for_the_gates():
    """The gates are F.sigmoid of the logits (a guard against a rewritten sigmoid)."""
    x = np.random.default_rng(11).standard_normal((1, 4, 3, 3))
    se = nn.SqueezeExcitation(4, 2, dtype=np.float64, rng=0)
    se(x)
    logits = se.fc2(se.activation(se.fc1(F.adaptive_avg_pool2d(x, 1))))
    np.testing.assert_array_equal(se.last_scale, F.sigmoid(logits))

"""Tests of the applications chapter's library: synthetic defects, detection metrics,
the binarised network and its XNOR-popcount product, the latency and energy arithmetic."""

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.analysis import detection as D
from cnnlib.analysis.summary import summary
from cnnlib.data import defects
from cnnlib.experiments import applications as A
from cnnlib.quant import binary as B


# ---------------------------------------------------------------------------
# The generator
# ---------------------------------------------------------------------------

def test_generator_is_deterministic_and_labels_match_masks():
    a = defects.defect_textures(60, 32, rng=3)
    b = defects.defect_textures(60, 32, rng=3)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    images, labels, masks, kinds = a
    assert images.shape == (60, 1, 32, 32) and images.dtype == np.float32
    assert masks.shape == (60, 32, 32) and masks.dtype == bool and labels.dtype == np.int64
    np.testing.assert_array_equal(labels, masks.any(axis=(1, 2)))
    np.testing.assert_array_equal(labels == 1, kinds != "")
    assert set(kinds) <= {"", *defects.KINDS}
    c = defects.defect_textures(60, 32, rng=4)[0]
    assert not np.array_equal(images, c)


def test_generator_fraction_kinds_and_contrast():
    images, labels, masks, kinds = defects.defect_textures(400, 24, defect_fraction=0.25,
                                                           kinds=("spot",), noise=0.0, rng=0)
    assert 0.18 < labels.mean() < 0.32
    assert set(kinds) == {"", "spot"}
    # spots are dark: without sensor noise the mask's pixels sit below the surface's mean
    spot = np.nonzero(labels)[0][0]
    assert images[spot, 0][masks[spot]].mean() < images[spot, 0][~masks[spot]].mean()
    none = defects.defect_textures(20, 16, defect_fraction=0.0, rng=0)
    assert none[1].sum() == 0 and not none[2].any()
    assert defects.defect_textures(20, 16, defect_fraction=1.0, rng=0)[1].all()


@pytest.mark.parametrize("kwargs", [dict(n=0), dict(size=8), dict(defect_fraction=1.5),
                                    dict(kinds=("dent",)), dict(kinds="spot"), dict(backgrounds=()),
                                    dict(contrast=(2.0, 1.0)), dict(contrast=(0.0, 1.0)),
                                    dict(noise=-1.0)])
def test_generator_bad_input(kwargs):
    args = dict(n=4, size=16) | kwargs
    with pytest.raises(ValueError):
        defects.defect_textures(**args)


# ---------------------------------------------------------------------------
# Detection metrics
# ---------------------------------------------------------------------------

LABELS = np.array([0, 0, 1, 1, 0, 1, 0, 1])
SCORES = np.array([0.1, 0.4, 0.35, 0.8, 0.7, 0.9, 0.2, 0.5])


def test_counts_precision_recall_by_hand():
    # threshold 0.5: called positive 0.7(neg), 0.8, 0.9, 0.5 -> TP 3, FP 1, TN 3, FN 1
    assert D.confusion_counts(LABELS, SCORES, 0.5) == (3, 1, 3, 1)
    p, r, f = D.precision_recall(LABELS, SCORES, 0.5)
    assert (p, r, f) == (0.75, 0.75, 0.25)
    assert D.precision_recall(LABELS, SCORES, np.inf) == (1.0, 0.0, 0.0)
    assert D.precision_recall(LABELS, SCORES, -np.inf) == (0.5, 1.0, 1.0)


def mann_whitney(y, s):
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def test_roc_by_hand_and_endpoints():
    fpr, tpr, thr = D.roc_curve(LABELS, SCORES)
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, np.inf)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0) and thr[-1] == SCORES.min()
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0) and np.all(np.diff(thr) < 0)
    # 13 of the 16 (positive, negative) pairs are ordered correctly
    assert D.roc_auc(LABELS, SCORES) == pytest.approx(13 / 16)
    assert D.roc_auc(LABELS, SCORES) == pytest.approx(mann_whitney(LABELS, SCORES))
    assert D.roc_auc(LABELS, LABELS * 2.0) == 1.0 and D.roc_auc(LABELS, -LABELS * 1.0) == 0.0


def test_ties_count_one_half():
    y, s = np.array([0, 1, 0, 1]), np.array([1.0, 1.0, 1.0, 1.0])
    fpr, tpr, thr = D.roc_curve(y, s)
    np.testing.assert_array_equal(fpr, [0, 1]) and np.testing.assert_array_equal(tpr, [0, 1])
    assert D.roc_auc(y, s) == 0.5


def test_against_sklearn():
    metrics = pytest.importorskip("sklearn.metrics", reason="the reference needs scikit-learn")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)          # rounded: many ties
    fpr, tpr, thr = D.roc_curve(y, s)
    f2, t2, th2 = metrics.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, f2)
    np.testing.assert_allclose(tpr, t2)
    np.testing.assert_array_equal(thr[1:], th2[1:])
    assert D.roc_auc(y, s) == pytest.approx(metrics.roc_auc_score(y, s), abs=1e-12)
    for t in (-0.5, 0.3, 1.2):
        p, r, _ = D.precision_recall(y, s, t)
        assert p == pytest.approx(metrics.precision_score(y, s >= t))
        assert r == pytest.approx(metrics.recall_score(y, s >= t))
    assert D.auc([0, 0.5, 1], [0, 0.8, 1]) == pytest.approx(metrics.auc([0, 0.5, 1], [0, 0.8, 1]))


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.05, 0.3, 1.0])
def test_threshold_meets_the_budget_and_is_the_smallest(rate):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 1000)
    s = np.round(rng.normal(size=1000) + 2 * y, 2)
    t = D.threshold_for_false_alarms(y, s, rate)
    assert D.precision_recall(y, s, t)[2] <= rate
    if np.isfinite(t):
        # any lower candidate threshold (a negative's score just below t) breaks the budget
        lower = s[(y == 0) & (s < t)].max()
        assert D.precision_recall(y, s, lower)[2] > rate
    else:
        assert rate * (y == 0).sum() >= (y == 0).sum()


def test_attribution_inside():
    masks = np.zeros((2, 4, 4), bool)
    masks[:, :2, :2] = True
    attr = np.zeros((2, 1, 4, 4))
    attr[0, 0, 0, 0], attr[0, 0, 3, 3] = -3.0, 1.0
    inside, area = D.attribution_inside(attr, masks)
    assert inside[0] == 0.75 and np.isnan(inside[1])
    np.testing.assert_array_equal(area, [0.25, 0.25])


@pytest.mark.parametrize("call", [
    lambda: D.roc_curve([0, 0, 0], [1.0, 2.0, 3.0]),
    lambda: D.roc_curve([0, 2, 1], [1.0, 2.0, 3.0]),
    lambda: D.roc_curve([0, 1], [1.0, np.nan]),
    lambda: D.roc_curve([0, 1], [1.0]),
    lambda: D.threshold_for_false_alarms([0, 1], [0.1, 0.2], 1.5),
    lambda: D.threshold_for_false_alarms([1, 1], [0.1, 0.2], 0.1),
    lambda: D.auc([0, 1, 0.5], [0, 1, 1]),
    lambda: D.attribution_inside(np.zeros((2, 4, 4)), np.zeros((2, 4, 4))),
])
def test_detection_bad_input(call):
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------------------
# Binarised layers and the XNOR-popcount product
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 7, 63, 64, 65, 130, 576])
def test_xnor_popcount_equals_the_sign_dot_product(n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((9, n)).astype(np.float32)
    b = rng.standard_normal((5, n))
    a[0, 0] = 0.0                                         # sign(0) = +1 on both paths
    expected = (B.binarize(a).astype(np.int64) @ B.binarize(b).astype(np.int64).T)
    got = B.xnor_popcount_matmul(B.pack_signs(a), B.pack_signs(b), n)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


def test_popcount_and_packing():
    words = np.array([0, 1, 3, 2**63, 2**64 - 1, 0x5555555555555555], dtype=np.uint64)
    np.testing.assert_array_equal(B.popcount64(words), [bin(int(w)).count("1") for w in words])
    x = np.array([[1.0, -1.0, 0.0] + [-1.0] * 62 + [1.0]])
    np.testing.assert_array_equal(B.pack_signs(x), [[0b101, 2]])


def test_binarize_and_its_straight_through_gradient():
    x = np.array([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5])
    np.testing.assert_array_equal(B.binarize(x), [-1, -1, -1, 1, 1, 1, 1])
    np.testing.assert_array_equal(B.binarize_backward(np.full(7, 2.0), x), [0, 2, 2, 2, 2, 2, 0])


def numerical_grad(f, w, eps=1e-6):
    g = np.zeros_like(w)
    for i in np.ndindex(w.shape):
        old = w[i]
        w[i] = old + eps
        up = f()
        w[i] = old - eps
        down = f()
        w[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("kind", ["conv", "linear"])
@pytest.mark.parametrize("scale", [True, False])
def test_binary_layer_forward_and_weight_gradient(kind, scale):
    """Forward = the layer with alpha sign(W); the weight gradient is the chain rule
    through alpha = mean|W| (checked numerically with sign frozen) plus the STE term."""
    rng = np.random.default_rng(0)
    if kind == "conv":
        layer = B.BinaryConv2d(2, 3, 3, padding=1, bias=True, scale=scale, dtype=np.float64, rng=0)
        ref = nn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, rng=0)
        x = rng.standard_normal((2, 2, 5, 5))
    else:
        layer = B.BinaryLinear(6, 4, bias=True, scale=scale, dtype=np.float64, rng=0)
        ref = nn.Linear(6, 4, dtype=np.float64, rng=0)
        x = rng.standard_normal((3, 6))
    w = layer.weight.data
    w *= 3                                                 # some latent weights beyond [-1, 1]
    ref.weight.data[...] = layer.effective_weight()
    ref.bias.data[...] = layer.bias.data
    y = layer(x)
    np.testing.assert_allclose(y, ref(x), rtol=1e-12)
    wb, alpha = layer.binary_weight()
    np.testing.assert_array_equal(np.abs(wb), 1)
    np.testing.assert_allclose(alpha, np.abs(w).reshape(len(w), -1).mean(1) if scale else 1)
    g = rng.standard_normal(y.shape)
    layer.zero_grad()
    dx = layer.backward(g)
    ref.zero_grad()
    np.testing.assert_allclose(dx, ref.backward(g), rtol=1e-12)
    # the reference: d/dW of <g, layer(x)> with sign(W) frozen (alpha moves), plus the
    # STE term alpha * dL/dW~ * 1{|W| <= 1}
    frozen = wb.copy()

    def loss():
        a = np.abs(w).reshape(len(w), -1).mean(1) if scale else np.ones(len(w))
        ref.weight.data[...] = frozen * a.reshape((len(w),) + (1,) * (w.ndim - 1))
        return float(np.sum(g * ref(x)))
    through_alpha = numerical_grad(loss, w)
    ref.weight.data[...] = layer.effective_weight()
    ref.zero_grad()
    ref(x)
    ref.backward(g)
    ste = ref.weight.grad * alpha.reshape((len(w),) + (1,) * (w.ndim - 1)) * (np.abs(w) <= 1)
    np.testing.assert_allclose(layer.weight.grad, through_alpha + ste, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(layer.bias.grad, ref.bias.grad, rtol=1e-12)


def test_binary_activation_and_clipping():
    act = B.BinaryActivation()
    x = np.array([[-1.5, -0.5, 0.0, 2.0]], np.float32)
    np.testing.assert_array_equal(act(x), [[-1, -1, 1, 1]])
    np.testing.assert_array_equal(act.backward(np.ones_like(x)), [[0, 1, 1, 0]])
    net = A.mnist_net(True, channels=(2, 3), rng=0)
    for layer in B.binary_layers(net):
        layer.weight.data *= 10
    B.clip_latent_weights(net)
    assert len(B.binary_layers(net)) == 3
    float_net = A.mnist_net(False, channels=(2, 3), rng=0)
    macs = summary(net, (1, 14, 14)).total_macs
    assert macs == summary(float_net, (1, 14, 14)).total_macs == 14 * 14 * 2 * 9 + 7 * 7 * 3 * 18 + 27 * 10
    assert all(np.abs(layer.weight.data).max() <= 1 for layer in B.binary_layers(net))


def test_binary_net_layers_see_only_signs():
    net = A.mnist_net(True, channels=(4, 8), rng=0)
    x = np.random.default_rng(0).standard_normal((3, 1, 14, 14)).astype(np.float32)
    net.eval()
    h = x
    seen = []
    for layer in net:
        if isinstance(layer, (B.BinaryConv2d, B.BinaryLinear)):
            seen.append(h)
        h = layer(h)
    assert h.shape == (3, 10)
    for inputs in seen[1:]:
        assert set(np.unique(inputs)) <= {-1.0, 1.0}
    # the last layer equals alpha * the XNOR-popcount product of its sign inputs
    head = net[-1]
    wb, alpha = head.binary_weight()
    xs = seen[-1].reshape(3, -1)
    dots = B.xnor_popcount_matmul(B.pack_signs(xs), B.pack_signs(wb), xs.shape[1])
    np.testing.assert_allclose(h, dots * alpha + head.bias.data, rtol=1e-5, atol=1e-5)


def test_binary_bad_input():
    with pytest.raises(TypeError):
        B.popcount64(np.array([1, 2]))
    with pytest.raises(TypeError):
        B.xnor_popcount_matmul(np.zeros((2, 1)), np.zeros((2, 1), np.uint64), 3)
    with pytest.raises(ValueError):
        B.xnor_popcount_matmul(np.zeros((2, 1), np.uint64), np.zeros((2, 2), np.uint64), 3)
    with pytest.raises(ValueError):
        B.xnor_popcount_matmul(np.zeros((2, 2), np.uint64), np.zeros((2, 2), np.uint64), 64)
    with pytest.raises(ValueError):
        B.binarize_backward(np.ones(3), np.ones(4))


# ---------------------------------------------------------------------------
# Latency and energy arithmetic
# ---------------------------------------------------------------------------

def test_resnet18_counts_match_torchvision():
    """11,689,512 parameters and 1,814,073,344 MACs at 224x224 (torchvision's resnet18;
    He et al. 2016 state 1.8e9), from the library's counter; the conv MACs scale
    exactly with the output area, so a 32x32 input gives them / 49."""
    net = A.resnet18(rng=0)
    s = summary(net, (3, 32, 32))
    assert s.total_parameters == 11_689_512
    fc = 512 * 1000
    assert (s.total_macs - fc) * 49 + fc == 1_814_073_344


def test_latency_budget_arithmetic():
    b = A.latency_budget(1.8e9, 36.0, budget_ms=100, cameras=8)
    assert b.ms_per_image == pytest.approx(100.0)
    assert b.ms_all_cameras == pytest.approx(800.0) and not b.fits
    assert b.max_macs_per_image == pytest.approx(36e9 * 0.1 / 16)
    assert A.latency_budget(b.max_macs_per_image, 36.0).fits
    with pytest.raises(ValueError):
        A.latency_budget(0, 36.0)


def test_energy_per_mac():
    assert A.mac_energy("fp32") == pytest.approx(4.6)
    assert A.mac_energy("int8") == pytest.approx(0.3)
    assert A.mac_energy("binary") == pytest.approx(0.03)
    with pytest.raises(ValueError):
        A.mac_energy("int4")


def test_small_mnist():
    images = np.zeros((2, 28, 28), np.uint8)
    images[0, :2, :2] = 255
    x = A.small_mnist(images)
    assert x.shape == (2, 1, 14, 14) and x.dtype == np.float32
    assert x[0, 0, 0, 0] > x[0, 0, 0, 1] == x[1, 0, 0, 0]
    with pytest.raises(ValueError):
        A.small_mnist(np.zeros((2, 28, 28)))

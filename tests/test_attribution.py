"""Integrated gradients, saliency, gradient x input and baselines (cnnlib.analysis.attribution)."""

import numpy as np
import pytest

from cnnlib import nn
from cnnlib.analysis import attribution as A
from cnnlib.models import zoo


class Square(nn.Module):
    """F(x) = sum over features of c * x^2 for each of two "classes" c = 1, 2 (no parameters)."""

    def forward(self, x):
        self.save_for_backward(x)
        s = (x.reshape(len(x), -1) ** 2).sum(axis=1)
        return np.stack([s, 2 * s], axis=1)

    def backward(self, g):
        (x,) = self.saved()
        c = g[:, 0] + 2 * g[:, 1]
        return 2 * x * c.reshape((-1,) + (1,) * (x.ndim - 1))


def linear_model(rng=0, dtype=np.float64):
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 3, dtype=dtype, rng=rng))


def small_cnn(dtype=np.float64):
    return nn.Sequential(nn.Conv2d(1, 3, 3, dtype=dtype, rng=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 4, dtype=dtype, rng=2))


@pytest.fixture(scope="module")
def lenet64():
    return zoo.lenet5(pretrained=True, dtype=np.float64)


def digits(n, dtype=np.float64, seed=0):
    """Smooth random "images" in the normalised range of MNIST (no data files needed)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.42, 2.8, (n, 1, 28, 28))
    return A.blurred_baseline(x, 1.0).astype(dtype)


# ---------------------------------------------------------------------------
# Nodes and weights
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 3, 10, 50])
def test_nodes_and_weights_closed_forms(n):
    w, a = A.approximation_parameters("riemann_left", n)
    np.testing.assert_allclose(a, np.arange(n) / n, atol=1e-15)
    np.testing.assert_allclose(w, 1 / n)
    w, a = A.approximation_parameters("riemann_right", n)
    np.testing.assert_allclose(a, np.arange(1, n + 1) / n, atol=1e-15)
    w, a = A.approximation_parameters("riemann_middle", n)
    np.testing.assert_allclose(a, (np.arange(n) + 0.5) / n, atol=1e-15)
    w, a = A.approximation_parameters("gausslegendre", n)
    assert np.all((a > 0) & (a < 1)) and abs(w.sum() - 1) < 1e-14
    for deg in range(2 * n):  # exact for polynomials of degree 2n - 1
        assert abs(w @ a ** deg - 1 / (deg + 1)) < 1e-13


@pytest.mark.parametrize("n", [2, 5, 50, 300])
def test_captums_trapezoid_weights_sum_to_n_minus_1_over_n(n):
    w, a = A.approximation_parameters("riemann_trapezoid", n)
    np.testing.assert_allclose(a, np.linspace(0, 1, n))
    assert w.sum() == pytest.approx((n - 1) / n, abs=1e-14)
    assert w[0] == w[-1] == pytest.approx(0.5 / n)


@pytest.mark.parametrize("method", A.METHODS)
@pytest.mark.parametrize("n", [2, 7, 50])
def test_nodes_and_weights_match_captum(method, n):
    approx = pytest.importorskip("captum.attr._utils.approximation_methods",
                                 reason="captum not installed: comparison skipped")
    sizes, alphas = approx.approximation_parameters(method)
    w, a = A.approximation_parameters(method, n)
    # captum makes the Riemann nodes with torch.linspace in float32
    np.testing.assert_allclose(a, alphas(n), atol=1e-7)
    np.testing.assert_allclose(w, sizes(n), atol=1e-15)


def test_gauss_legendre_allows_one_step_riemann_does_not():
    w, a = A.approximation_parameters("gausslegendre", 1)
    assert w.tolist() == [1.0] and a.tolist() == [0.5]
    with pytest.raises(ValueError, match="n_steps"):
        A.approximation_parameters("riemann_left", 1)


@pytest.mark.parametrize("bad,err", [(("simpson", 10), ValueError), (("gausslegendre", 0), ValueError),
                                     (("gausslegendre", 2.0), TypeError),
                                     (("riemann_middle", -3), ValueError)])
def test_bad_method_or_steps(bad, err):
    with pytest.raises(err):
        A.approximation_parameters(*bad)


# ---------------------------------------------------------------------------
# Exact cases
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("n", [2, 5, 20])
def test_x_squared_with_baseline_zero(n):
    x = np.array([[0.5, -1.5, 2.0]])
    expected = {"riemann_left": 1 - 1 / n, "riemann_right": 1 + 1 / n, "riemann_middle": 1.0,
                "gausslegendre": 1.0, "riemann_trapezoid": (n - 1) / n}
    for method, factor in expected.items():
        attr, delta = A.integrated_gradients(Square(), x, 0, n_steps=n, method=method,
                                             return_convergence_delta=True)
        np.testing.assert_allclose(attr, x ** 2 * factor, rtol=1e-13, err_msg=method)
        np.testing.assert_allclose(delta, (x ** 2).sum() * (factor - 1), atol=1e-13)


@pytest.mark.parametrize("method", A.METHODS)
def test_linear_model_is_exact_except_captums_trapezoid(method):
    model = linear_model()
    rng = np.random.default_rng(3)
    x, base = rng.standard_normal((5, 1, 3, 4)), rng.standard_normal((5, 1, 3, 4))
    attr, delta = A.integrated_gradients(model, x, [0, 1, 2, 1, 0], base, n_steps=4, method=method,
                                         return_convergence_delta=True)
    W = model[1].weight.data
    exact = (x - base).reshape(5, 12) * W[[0, 1, 2, 1, 0]]
    factor = 0.75 if method == "riemann_trapezoid" else 1.0
    np.testing.assert_allclose(attr.reshape(5, 12), factor * exact, rtol=1e-12, atol=1e-14)
    if method != "riemann_trapezoid":
        np.testing.assert_allclose(delta, 0, atol=1e-12)


def test_completeness_for_lenet5_improves_with_steps(lenet64):
    x = digits(4)
    target = lenet64(x).argmax(1)
    deltas = [np.abs(A.integrated_gradients(lenet64, x, target, n_steps=n, internal_batch_size=200,
                                            return_convergence_delta=True)[1]).mean()
              for n in (5, 20, 100)]
    assert deltas[0] > deltas[1] > deltas[2]
    assert deltas[2] < 0.02 * np.abs(lenet64(x).max(1) - lenet64(0 * x).max(1)).mean()


def test_delta_definition(lenet64):
    x, base = digits(3), digits(3, seed=1)
    attr, delta = A.integrated_gradients(lenet64, x, 4, base, n_steps=10, return_convergence_delta=True)
    f = lenet64(x)[:, 4] - lenet64(base)[:, 4]
    np.testing.assert_allclose(delta, attr.reshape(3, -1).sum(1) - f, atol=1e-12)


def test_internal_batch_size_gives_the_same_result(lenet64):
    x = digits(3)
    ref = A.integrated_gradients(lenet64, x, 1, n_steps=7, return_convergence_delta=True)
    for bs in (1, 4, 21, 100):
        out = A.integrated_gradients(lenet64, x, 1, n_steps=7, internal_batch_size=bs,
                                     return_convergence_delta=True)
        np.testing.assert_allclose(out[0], ref[0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(out[1], ref[1], rtol=1e-12, atol=1e-13)


def test_target_forms_and_baseline_forms():
    model = small_cnn()
    x = np.random.default_rng(0).standard_normal((3, 1, 6, 6))
    per = A.integrated_gradients(model, x, [2, 2, 2], n_steps=5)
    np.testing.assert_array_equal(A.integrated_gradients(model, x, 2, n_steps=5), per)
    np.testing.assert_array_equal(A.integrated_gradients(model, x, np.array([2, 2, 2]), n_steps=5), per)
    mixed = A.integrated_gradients(model, x, [0, 3, 1], n_steps=5)
    for i, t in enumerate([0, 3, 1]):
        np.testing.assert_allclose(mixed[i], A.integrated_gradients(model, x[i:i + 1], t, n_steps=5)[0],
                                   rtol=1e-12)
    np.testing.assert_array_equal(A.integrated_gradients(model, x, 2, 0.0, n_steps=5), per)
    b = np.full((1, 6, 6), 0.3)
    np.testing.assert_allclose(A.integrated_gradients(model, x, 2, b, n_steps=5),
                               A.integrated_gradients(model, x, 2, 0.3, n_steps=5), rtol=1e-13)


def test_model_state_is_left_alone():
    model = small_cnn()
    model.train()
    for p in model.parameters():
        p.grad[...] = 7.0
    A.integrated_gradients(model, np.ones((2, 1, 6, 6)), 0, n_steps=3, return_convergence_delta=True)
    A.saliency(model, np.ones((2, 1, 6, 6)), 0)
    assert all(m.training for _, m in model.named_modules())
    assert all((p.grad == 7.0).all() for p in model.parameters())


def test_float32_inputs_give_float32_attributions():
    model = small_cnn(np.float32)
    x = np.ones((2, 1, 6, 6), np.float32)
    attr, delta = A.integrated_gradients(model, x, 0, return_convergence_delta=True)
    assert attr.dtype == np.float32 and delta.dtype == np.float64 and delta.shape == (2,)


@pytest.mark.parametrize("kwargs,err", [
    (dict(inputs=np.ones((2, 1, 6, 6), np.int64)), TypeError),
    (dict(inputs=np.ones(6)), ValueError),
    (dict(inputs=[[1.0]]), TypeError),
    (dict(target=[0, 1, 2]), ValueError),
    (dict(target=5), ValueError),
    (dict(target=-1), ValueError),
    (dict(target=1.0), TypeError),
    (dict(target=None), TypeError),
    (dict(target=[0.0, 1.0]), TypeError),
    (dict(method="trapezoid"), ValueError),
    (dict(n_steps=0), ValueError),
    (dict(baselines=np.ones((3, 1, 6, 6))), ValueError),
    (dict(baselines="zero"), TypeError),
    (dict(baselines=float("nan")), ValueError),
    (dict(internal_batch_size=0), ValueError),
    (dict(model=lambda x: x), TypeError),
])
def test_bad_inputs(kwargs, err):
    args = dict(model=small_cnn(), inputs=np.ones((2, 1, 6, 6)), target=0)
    args.update(kwargs)
    with pytest.raises(err):
        A.integrated_gradients(**args)


def test_a_model_that_is_not_a_classifier_is_refused():
    with pytest.raises(ValueError, match="logits"):
        A.integrated_gradients(nn.Sequential(nn.ReLU()), np.ones((2, 1, 6, 6)), 0)


# ---------------------------------------------------------------------------
# Saliency, gradient x input, baselines
# ---------------------------------------------------------------------------

def numerical_gradient(model, x, target, eps=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        g[idx] = (model(xp)[idx[0], target[idx[0]]] - model(xm)[idx[0], target[idx[0]]]) / (2 * eps)
    return g


def test_saliency_and_gradient_x_input_against_finite_differences():
    model = small_cnn()
    x = np.random.default_rng(5).standard_normal((2, 1, 6, 6))
    target = [1, 3]
    g = numerical_gradient(model, x, target)
    np.testing.assert_allclose(A.saliency(model, x, target, abs=False), g, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(A.saliency(model, x, target), np.abs(g), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(A.gradient_x_input(model, x, target), x * g, rtol=1e-6, atol=1e-9)
    with pytest.raises(TypeError, match="abs"):
        A.saliency(model, x, target, abs=1)


def test_gradient_x_input_is_one_step_ig_for_a_linear_model():
    model = linear_model()
    x = np.random.default_rng(1).standard_normal((3, 1, 3, 4))
    np.testing.assert_allclose(A.gradient_x_input(model, x, 2),
                               A.integrated_gradients(model, x, 2, n_steps=2, method="riemann_left"),
                               rtol=1e-12)


def test_baselines():
    x = np.random.default_rng(0).standard_normal((2, 1, 9, 9))
    np.testing.assert_array_equal(A.black_baseline(x, -0.5), np.full_like(x, -0.5))
    blurred = A.blurred_baseline(x, 2.0)
    assert blurred.shape == x.shape and blurred.std() < 0.5 * x.std()
    const = np.full((1, 1, 9, 9), 3.0)
    np.testing.assert_allclose(A.blurred_baseline(const, 1.5), const)
    # the kernel sums to one and is symmetric: an impulse spreads evenly
    imp = np.zeros((1, 15, 15))
    imp[0, 7, 7] = 1
    b = A.blurred_baseline(imp, 1.0)
    assert b.sum() == pytest.approx(1.0) and np.allclose(b, b[:, ::-1, ::-1])
    noise = A.uniform_noise_baselines(x, 4, -1, 2, rng=0)
    assert noise.shape == (4,) + x.shape and noise.min() >= -1 and noise.max() < 2
    np.testing.assert_array_equal(noise, A.uniform_noise_baselines(x, 4, -1, 2, rng=0))
    for call, err in [(lambda: A.blurred_baseline(x, 0), ValueError),
                      (lambda: A.uniform_noise_baselines(x, 0, 0, 1), ValueError),
                      (lambda: A.uniform_noise_baselines(x, 2, 1, 0), ValueError),
                      (lambda: A.black_baseline(x, "black"), TypeError),
                      (lambda: A.averaged_integrated_gradients(small_cnn(), x, 0, []), ValueError)]:
        with pytest.raises(err):
            call()


def test_averaged_ig_is_the_mean_over_baselines():
    model = small_cnn()
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6))
    bases = A.uniform_noise_baselines(x, 3, -1, 1, rng=1)
    attr, delta = A.averaged_integrated_gradients(model, x, 1, bases, n_steps=8)
    runs = [A.integrated_gradients(model, x, 1, b, n_steps=8, return_convergence_delta=True) for b in bases]
    np.testing.assert_allclose(attr, np.mean([r[0] for r in runs], 0), rtol=1e-12)
    np.testing.assert_allclose(delta, np.mean([r[1] for r in runs], 0), rtol=1e-12)


# ---------------------------------------------------------------------------
# captum on the same LeNet-5 weights
# ---------------------------------------------------------------------------

def torch_lenet5(model, torch, dtype):
    t = torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(400, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10))
    t.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.state_dict().items()})
    return t.to(dtype).eval()


@pytest.mark.parametrize("method", A.METHODS)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-6), (np.float32, 2e-3)])
def test_matches_captum_on_lenet5(method, dtype, rtol):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: captum comparison skipped")
    captum_attr = pytest.importorskip("captum.attr", reason="captum not installed: comparison skipped")
    model = zoo.lenet5(pretrained=True, dtype=dtype)
    tmodel = torch_lenet5(model, torch, torch.float64 if dtype == np.float64 else torch.float32)
    x, base = digits(3, dtype), A.blurred_baseline(digits(3, dtype, seed=2), 4.0)
    target = [3, 7, 0]
    attr, delta = A.integrated_gradients(model, x, target, base, n_steps=20, method=method,
                                         return_convergence_delta=True)
    ig = captum_attr.IntegratedGradients(tmodel)
    tattr, tdelta = ig.attribute(torch.from_numpy(x), torch.from_numpy(base), target=target,
                                 n_steps=20, method=method, return_convergence_delta=True)
    tattr = tattr.detach().numpy()
    scale = np.abs(tattr).max()
    np.testing.assert_allclose(delta, tdelta.detach().numpy(), atol=rtol * scale * 10)
    if dtype == np.float64:
        # captum rounds its nodes and weights to float32, hence 1e-6 of the largest attribution
        np.testing.assert_allclose(attr, tattr, atol=rtol * scale)
    else:
        # in float32 a max-pool window or a ReLU near a tie can switch at a node, moving a
        # pixel or two by a few percent: compare the maps as wholes
        assert np.linalg.norm(attr - tattr) <= rtol * np.linalg.norm(tattr)

"""Tests for cnnlib.models.scratch (loop, vectorised and C++ LeNet-5) and cnnlib.tools.plotting."""

import matplotlib
import numpy as np
import pytest

from cnnlib import functional as F
from cnnlib.tools import plotting
from cnnlib.models import scratch, zoo

matplotlib.use("Agg")

NO_GXX = "g++ is not on the PATH: the C++ LeNet-5 cannot be compiled"


def lenet_and_input(dtype=np.float32, n=3, seed=0):
    model = zoo.lenet5(dtype=dtype, rng=seed)
    x = np.random.default_rng(seed + 1).standard_normal((n, 1, 28, 28)).astype(dtype)
    naive = scratch.NaiveLeNet5(dtype=dtype)
    naive.load_state_dict(model.state_dict())
    return model, naive, x


# --- parameter counts --------------------------------------------------------

def test_parameter_counts():
    assert scratch.NaiveLeNet5().num_parameters() == 61_706
    assert zoo.lenet5().num_parameters() == 61_706
    # The outline's own network: 28 -> 24 -> 12 -> 8 -> 4, 16*4*4 = 256 features.
    outline = scratch.SimpleCNN(conv1_padding=0)
    assert outline.layers[7].weight.shape == (120, 256)
    assert outline.num_parameters() == 156 + 2_416 + 30_840 + 10_164 + 850 == 44_426


# --- the three forwards agree --------------------------------------------------

@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_naive_vectorised_cnnlib_agree(dtype, tol):
    model, naive, x = lenet_and_input(dtype)
    expected = model.forward(x)
    loops = naive.forward(x)
    vec = scratch.forward_vectorised(naive, x)
    assert loops.dtype == vec.dtype == dtype and loops.shape == (3, 10)
    np.testing.assert_allclose(loops, expected, rtol=0, atol=tol)
    np.testing.assert_allclose(vec, expected, rtol=0, atol=tol)


def test_outline_variant_loops_match_vectorised():
    net = scratch.SimpleCNN(conv1_padding=0, dtype=np.float64, rng=0)
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28))
    np.testing.assert_allclose(net.forward(x), scratch.forward_vectorised(net, x), atol=1e-12)
    p = net.predict_proba(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p > 0).all()


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (3, 2)])
def test_conv_layers_match_functional(stride, padding):
    rng = np.random.default_rng(2)
    conv = scratch.Conv2D(3, 4, 3, stride=stride, padding=padding, dtype=np.float64, rng=rng)
    conv.bias = rng.standard_normal(4)
    x = rng.standard_normal((2, 3, 9, 8))
    expected = F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=padding)
    np.testing.assert_allclose(conv.forward(x), expected, atol=1e-12)
    np.testing.assert_allclose(scratch.conv2d_vectorised(x, conv.weight, conv.bias, stride, padding),
                               expected, atol=1e-12)


@pytest.mark.parametrize("k, stride, padding", [(2, None, 0), (3, 2, 1), (3, 1, 1)])
def test_pool_layers_match_functional(k, stride, padding):
    # All negative input: zero padding (the outline's) would wrongly win at the borders.
    x = -np.random.default_rng(3).random((2, 3, 7, 7)) - 0.5
    expected = F.max_pool2d(x, k, stride, padding)
    np.testing.assert_array_equal(scratch.MaxPool2D(k, stride, padding).forward(x), expected)
    np.testing.assert_array_equal(scratch.max_pool2d_vectorised(x, k, stride, padding), expected)
    assert (expected < 0).all()


def test_dtypes_are_kept():
    x = np.ones((1, 2, 4, 4), np.float32)
    assert scratch.ReLU().forward(x).dtype == np.float32
    assert scratch.MaxPool2D(2).forward(x).dtype == np.float32
    assert scratch.Conv2D(2, 1, 3).forward(x).dtype == np.float32
    assert scratch.Dense(4, 2).forward(np.ones((1, 4), np.float32)).dtype == np.float32


def test_load_state_dict_checks_keys_and_shapes():
    state = zoo.lenet5(rng=0).state_dict()
    outline = scratch.SimpleCNN(conv1_padding=0)
    with pytest.raises(ValueError, match=r"7\.weight: expected shape \(120, 256\)"):
        outline.load_state_dict(state)
    with pytest.raises(KeyError, match="expected keys"):
        scratch.NaiveLeNet5().load_state_dict({"0.weight": state["0.weight"]})


def test_naive_version_does_not_validate():
    """What the chapter shows: a 3-channel input runs silently through the loops."""
    model, naive, _ = lenet_and_input()
    rgb = np.zeros((1, 3, 28, 28), np.float32)
    assert naive.forward(rgb).shape == (1, 10)
    with pytest.raises(ValueError, match="input channels"):
        model.forward(rgb)


# --- PyTorch and C++ -----------------------------------------------------------

def test_torch_lenet5_matches():
    torch = pytest.importorskip("torch")
    model, _, x = lenet_and_input()
    net = scratch.torch_lenet5(model.state_dict())
    with torch.no_grad():
        out = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, model.forward(x), atol=1e-5)


@pytest.mark.skipif(scratch.cpp_compiler() is None, reason=NO_GXX)
def test_cpp_matches_cnnlib():
    model, _, x = lenet_and_input()
    logits, ms = scratch.run_cpp(model.state_dict(), x, repeats=2)
    assert logits.shape == (3, 10) and logits.dtype == np.float32 and ms > 0
    np.testing.assert_allclose(logits, model.forward(x), atol=1e-5)


@pytest.mark.skipif(scratch.cpp_compiler() is None, reason=NO_GXX)
def test_cpp_reports_bad_shapes():
    model, _, _ = lenet_and_input()
    with pytest.raises(RuntimeError, match=r"x: expected shape \(-1, 1, 28, 28\), got \(1, 1, 32, 32\)"):
        scratch.run_cpp(model.state_dict(), np.zeros((1, 1, 32, 32), np.float32))


def test_run_cpp_without_compiler(monkeypatch):
    monkeypatch.setattr(scratch, "cpp_compiler", lambda: None)
    scratch.compile_cpp.cache_clear()
    try:
        assert scratch.compile_cpp() is None
        assert scratch.run_cpp({}, np.zeros((1, 1, 28, 28), np.float32)) is None
    finally:
        scratch.compile_cpp.cache_clear()


def test_speed_table_rows():
    model, _, x = lenet_and_input(n=4)
    rows = scratch.speed_table(model, x, naive_images=1, threads=1, min_time=0.0,
                                settle=0.0)
    names = [r["implementation"] for r in rows]
    assert names[:3] == ["naive loops (NumPy)", "vectorised NumPy", "cnnlib (Numba + BLAS)"]
    assert rows[0]["images"] == 1 and rows[1]["images"] == 4
    assert rows[2]["vs_cnnlib"] == 1.0
    assert all(r["ms_per_image"] > 0 for r in rows)
    assert len(scratch.format_speed_table(rows).splitlines()) == len(rows) + 1


# --- confusion matrix and mistakes -----------------------------------------------

def test_confusion_matrix_tiny_case():
    y_true = np.array([0, 0, 1, 1, 2, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0, 2])
    cm = plotting.confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    assert cm.sum() == len(y_true) and np.trace(cm) == 5
    assert plotting.confusion_matrix(y_true, y_pred, num_classes=4).shape == (4, 4)


def test_confusion_matrix_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        plotting.confusion_matrix([0, 1], [0])
    with pytest.raises(ValueError, match=r"y_pred must lie in \[0, 2\)"):
        plotting.confusion_matrix([0, 1], [0, 2], num_classes=2)
    with pytest.raises(TypeError, match="integer class labels"):
        plotting.confusion_matrix([0.0, 1.0], [0, 1])


def test_misclassified_order():
    y_true = np.array([0, 1, 2, 3])
    y_pred = np.array([1, 1, 0, 0])
    scores = np.zeros((4, 4))
    scores[0, 1], scores[2, 0], scores[3, 0] = 0.6, 0.9, 0.7
    np.testing.assert_array_equal(plotting.misclassified(y_true, y_pred), [0, 2, 3])
    np.testing.assert_array_equal(plotting.misclassified(y_true, y_pred, scores), [2, 3, 0])
    np.testing.assert_array_equal(plotting.misclassified(y_true, y_pred, scores, limit=1), [2])


def test_plots_draw():
    import matplotlib.pyplot as plt

    cm = plotting.confusion_matrix([0, 1, 1], [0, 1, 0])
    ax = plotting.plot_confusion_matrix(cm, title="tiny")
    assert ax.get_title() == "tiny" and len(ax.texts) == 3
    images = np.zeros((3, 28, 28), np.uint8)
    fig = plotting.plot_misclassified(images, [0, 1, 1], [0, 1, 0], [2], ncols=4)
    assert [a.get_title() for a in fig.axes if a.get_title()] == ["1 \u2192 0"]
    plt.close("all")

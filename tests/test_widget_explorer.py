"""Tests for cnnlib.widgets.explorer (the static explorers of the published book) and for the
``*_explorer`` of every widget: each shows, at every grid point checked, exactly what the
widget's ``render_*`` function draws, and the live ipywidgets widget shows the same, so the
two forms cannot drift apart."""

import io
import json
import re

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from cnnlib.widgets import conv_arithmetic as WC  # noqa: E402
from cnnlib.widgets import dilation as WD  # noqa: E402
from cnnlib.widgets import loss_scaling as WL  # noqa: E402
from cnnlib.widgets import pooling as WP  # noqa: E402
from cnnlib.widgets import receptive_field as WR  # noqa: E402
from cnnlib.widgets import systolic as WS  # noqa: E402
from cnnlib.widgets import explorer as X  # noqa: E402


def png_of(color, size=(8, 6)):
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def toy_render(a, b):
    """Pictures that depend on a only; b = 'none' gives no picture."""
    if b == "none":
        return b"", f"<b>nothing</b> for a={a}"
    return png_of((40 * a, 0, 0)), f"a = {a}, b = {b} <i>&lt;ok&gt;</i>"


def toy(**kw):
    controls = [X.slider("a", [1, 2, 3], initial=2),
                X.select("b", [("left", "l"), ("right", "r"), ("empty", "none")])]
    return X.static_explorer(toy_render, controls, title="toy", **kw)


def payload(explorer):
    text = explorer.to_html()
    data = re.search(r'<script type="application/json" class="cnnlib-explorer-data">(.*?)'
                     r'</script>', text, re.S).group(1)
    assert "<" not in data          # cannot close its script element early
    return json.loads(data)


# ----------------------------------------------------------------------------
# The explorer itself
# ----------------------------------------------------------------------------

def test_grid_frames_and_dedup():
    e = toy()
    assert e.shape == (3, 3) and e.size == 9
    # three colours and the empty picture: identical frames are stored once
    assert len(e.frames) == 4 and b"" in e.frames
    assert len(e.frame_index) == len(e.summary_index) == 9
    for a in (1, 2, 3):
        for b in ("l", "r"):
            assert e.frame_for(a=a, b=b) == X.quantize_png(toy_render(a, b)[0])
            assert e.summary_for(a=a, b=b) == toy_render(a, b)[1]
        assert e.frame_for(a=a, b="none") == b""
    assert e.frame_for(a=1, b="l") == e.frame_for(a=1, b="r")
    assert e.frame_for(a=1, b="l") != e.frame_for(a=2, b="l")


def test_html_controls_and_data():
    e = toy()
    text = e._repr_html_()
    assert text.startswith('<div class="cnnlib-explorer" id="cnnlib-explorer-')
    assert text.count('type="range"') == 1 and text.count("<select") == 1
    assert 'max="2"' in text and 'value="1"' in text          # initial a = 2 is index 1
    assert '<output data-for="a">2</output>' in text
    assert text.count("<option") == 3 and '<option value="0" selected>left' in text
    data = payload(e)
    assert data["labels"] == [["1", "2", "3"], ["left", "right", "empty"]]
    assert data["frame"] == e.frame_index and data["summary"] == e.summary_index
    assert data["summaries"][e.summary_index[3]] == "a = 2, b = l <i>&lt;ok&gt;</i>"
    # the picture shown before any script runs is the initial grid point's
    import base64

    first = base64.b64encode(e.frame_for(a=2, b="l")).decode()
    assert f'src="data:image/png;base64,{first}"' in text
    assert e.nbytes == len(text.encode("utf-8"))
    assert "StaticExplorer('toy': 9 settings, 4 pictures" in repr(e)


def test_html_is_deterministic():
    assert toy().to_html() == toy().to_html()


def test_empty_initial_picture_is_hidden():
    controls = [X.select("b", ["none", "l"]), X.slider("a", [1])]
    e = X.static_explorer(toy_render, controls)
    assert 'style="max-width:100%;display:none"' in e.to_html()


def test_budget_is_enforced():
    small = toy().nbytes
    assert toy(max_bytes=small).nbytes == small
    with pytest.raises(ValueError, match="max_bytes"):
        toy(max_bytes=small - 1)


def test_grid_with_defaults():
    default = dict(a=(1, 2), b=("x",))
    assert X.grid_with_defaults(None, default) == default
    assert X.grid_with_defaults(dict(b=("y",), a=(3,)), default) == dict(a=(3,), b=("y",))
    for bad in (dict(a=(1,)), dict(a=(1,), b=("x",), c=(0,))):
        with pytest.raises(ValueError, match=r"grid must give values for \['a', 'b'\]"):
            X.grid_with_defaults(bad, default)
    with pytest.raises(ValueError, match="grid must give"):
        WR.receptive_field_explorer(np.zeros((8, 8)), dict(layers=(1,)))


def test_quantize_png():
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    png = out.getvalue()
    q = X.quantize_png(png)
    assert q == X.quantize_png(png)                   # deterministic
    with Image.open(io.BytesIO(q)) as back:
        assert back.mode == "P" and back.size == (30, 20)
    flat = png_of((10, 200, 30))
    with Image.open(io.BytesIO(X.quantize_png(flat))) as back:
        assert back.convert("RGB").getpixel((3, 3)) == (10, 200, 30)   # flat colours exact
    assert X.quantize_png(png, None) == png
    with pytest.raises(ValueError, match="colors"):
        X.quantize_png(png, 1)


def test_bad_input():
    with pytest.raises(TypeError, match="callable"):
        X.static_explorer(None, [X.slider("a", [1])])
    with pytest.raises(TypeError, match="Control"):
        X.static_explorer(toy_render, [])
    with pytest.raises(ValueError, match="distinct"):
        X.static_explorer(toy_render, [X.slider("a", [1]), X.slider("a", [2])])
    with pytest.raises(ValueError, match="max_bytes"):
        toy(max_bytes=0)
    with pytest.raises(TypeError, match="png_bytes, summary_html"):
        X.static_explorer(lambda a: b"", [X.slider("a", [1])])
    with pytest.raises(ValueError, match="initial"):
        X.slider("a", [1, 2], initial=3)
    with pytest.raises(ValueError, match="identifier"):
        X.slider("not a name", [1])
    with pytest.raises(ValueError, match="at least one"):
        X.select("a", [])
    with pytest.raises(ValueError, match="kind"):
        X.Control("a", [("1", 1)], kind="knob")
    e = toy()
    with pytest.raises(ValueError, match="grid values"):
        e.frame_for(a=4, b="l")
    with pytest.raises(ValueError, match="one value for each control"):
        e.frame_for(a=1)


# ----------------------------------------------------------------------------
# Every widget: explorer = render = live widget
# ----------------------------------------------------------------------------

def same_picture(explorer_png, rendered_png):
    assert explorer_png == X.quantize_png(rendered_png)


def test_systolic_explorer():
    e = WS.systolic_explorer(rows=2, cols=2, dpi=40)
    top = max(WS.last_cycle(f, 2, 2) for f in ("os", "ws", "is"))
    assert e.shape == (3, top + 1)
    for flow in ("os", "ws", "is"):
        for cycle in (0, 2, top):
            png, summary = WS.render_systolic(flow, cycle, 2, 2, dpi=40)
            same_picture(e.frame_for(dataflow=flow, cycle=cycle), png)
            assert e.summary_for(dataflow=flow, cycle=cycle) == summary
    # a cycle past the end of a shorter dataflow shows its last cycle
    last = WS.last_cycle("os", 2, 2)
    if last < top:
        assert e.frame_for(dataflow="os", cycle=top) == e.frame_for(dataflow="os", cycle=last)


def test_systolic_widget_draws_with_render():
    pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets")
    box = WS.systolic_widget("ws", cycle=4)
    assert (box.output.value, box.summary.value) == WS.render_systolic("ws", 4)


def test_conv_arithmetic_explorer():
    grid = dict(input_size=(5,), kernel_size=(3, 5), stride=(1, 2), padding=("same", 0),
                dilation=(1,), output=("corner", "centre"))
    e = WC.conv_arithmetic_explorer(grid, dpi=30)
    assert e.shape == (1, 2, 2, 2, 1, 2)
    png, summary = WC.render_conv_arithmetic(5, 3, 2, 0, 1, 1, 1, dpi=30)
    same_picture(e.frame_for(input_size=5, kernel_size=3, stride=2, padding=0, dilation=1,
                             output="centre"), png)
    assert "output (1, 1) reads 9 inputs" in summary
    png, summary = WC.render_conv_arithmetic(5, 5, 1, "same", 1, 0, 0, dpi=30)
    same_picture(e.frame_for(input_size=5, kernel_size=5, stride=1, padding="same",
                             dilation=1, output="corner"), png)
    # "same" with stride 2 has no output: no picture, the error as summary
    point = dict(input_size=5, kernel_size=3, stride=2, padding="same", dilation=1,
                 output="corner")
    assert e.frame_for(**point) == b"" and "no output" in e.summary_for(**point)
    with pytest.raises(ValueError, match="grid must give"):
        WC.conv_arithmetic_explorer(dict(input_size=(5,)))


def test_conv_arithmetic_widget_draws_with_render():
    pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets")
    box = WC.conv_arithmetic_widget(input_size=6, kernel_size=3, stride=2, padding=1)
    box.controls["row"].value = 2
    assert (box.output.value, box.summary.value) == \
        WC.render_conv_arithmetic(6, 3, 2, 1, 1, row=2, col=0)


def test_dilation_explorer():
    e = WD.dilation_explorer(kernel_sizes=(2, 3), dilations=(1, 3), stacks=("1, 2, 5", "2, 2"),
                             dpi=30)
    assert e.shape == (2, 2, 2) and len(e.frames) == 8
    for k in (2, 3):
        png, summary = WD.render_dilation(k, 3, "2, 2", dpi=30)
        same_picture(e.frame_for(kernel_size=k, dilation=3, stack="2, 2"), png)
        assert e.summary_for(kernel_size=k, dilation=3, stack="2, 2") == summary
    with pytest.raises(ValueError, match="dilations"):
        WD.dilation_explorer(stacks=("1, x",))


def test_dilation_widget_draws_with_render():
    pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets")
    box = WD.dilation_widget(kernel_size=5, dilation=2, stack="1, 2")
    assert (box.output.value, box.summary.value) == WD.render_dilation(5, 2, "1, 2")
    png = box.output.value
    box.controls["stack"].value = "1, x"          # does not parse: the picture stays
    assert box.output.value == png and "positive ints" in box.summary.value
    assert WD.render_dilation(5, 2, "1, x")[0] == b""


def gradients():
    rng = np.random.default_rng(0)
    return rng.standard_normal(2000) * 2.0 ** rng.uniform(-30, -2, 2000)


def test_loss_scaling_explorer():
    g = gradients()
    history = {"scale": 2.0 ** np.array([8, 9, 9, 8]), "stepped": [True, True, False, True]}
    e = WL.loss_scaling_explorer(g, history, max_log2_scale=8, step=4, dpi=30)
    assert e.shape == (3,)
    for s in (0, 4, 8):
        png, summary = WL.render_loss_scaling(g, s, history, dpi=30)
        same_picture(e.frame_for(log2_scale=s), png)
        assert e.summary_for(log2_scale=s) == summary
    with pytest.raises(ValueError, match="step"):
        WL.loss_scaling_explorer(g, max_log2_scale=8, step=9)
    with pytest.raises(ValueError, match="max_log2_scale"):
        WL.loss_scaling_explorer(g, max_log2_scale=41)


def test_loss_scaling_widget_draws_with_render():
    pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets")
    g = gradients()
    box = WL.loss_scaling_widget(g, max_log2_scale=10)
    box.controls["log2 scale"].value = 6
    picture, text = box.children[1], box.children[2]
    assert (picture.value, text.value) == WL.render_loss_scaling(g, 6)


def blob():
    y, x = np.mgrid[:16, :16]
    return np.exp(-((x - 6.0) ** 2 + (y - 8.0) ** 2) / 6.0)


def test_pooling_explorer():
    w = np.random.default_rng(1).standard_normal((2, 1, 3, 3)) * 0.3
    e = WP.pooling_invariance_explorer(blob(), w, shifts_x=(0, 1, 2), shifts_y=(0,),
                                       pools=("max", "avg"), channel=1, dpi=30)
    assert e.shape == (3, 1, 2)
    for dx in (0, 1, 2):
        png, summary = WP.render_pooling_invariance(blob(), w, dx, 0, "avg", channel=1, dpi=30)
        same_picture(e.frame_for(shift_x=dx, shift_y=0, pool="avg"), png)
        assert e.summary_for(shift_x=dx, shift_y=0, pool="avg") == summary
    # no shift, no change
    assert "pooled maps change 0.000" in e.summary_for(shift_x=0, shift_y=0, pool="max")
    e2 = WP.pooling_invariance_explorer(blob(), w, shifts_x=(0,), shifts_y=(0,), pools=("max",),
                                        windows=(2, 4), dpi=30)
    assert e2.shape == (1, 1, 1, 2) and len(e2.frames) == 2
    with pytest.raises(ValueError, match="channel"):
        WP.pooling_invariance_explorer(blob(), w, channel=2)
    with pytest.raises(ValueError, match="pools"):
        WP.pooling_invariance_explorer(blob(), w, pools=("median",))


def test_pooling_widget_draws_with_render():
    pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets")
    w = np.random.default_rng(1).standard_normal((2, 1, 3, 3)) * 0.3
    box = WP.pooling_invariance_widget(blob(), conv_weight=w, max_shift=3)
    box.controls["shift x"].value = 1
    box.controls["pooling"].value = "avg"
    picture, text = box.children[2], box.children[3]
    assert (picture.value, text.value) == WP.render_pooling_invariance(blob(), w, 1, 0, "avg")


def test_receptive_field_explorer():
    img = np.linspace(0, 1, 20 * 20).reshape(20, 20)
    grid = dict(layers=(1, 2), kernel=(3, 11), stride=(1,), pool=(False, True))
    e = WR.receptive_field_explorer(img, grid, dpi=30)
    assert e.shape == (2, 2, 1, 2)
    png, summary = WR.render_receptive_field(img, 2, 3, 1, pool=True, dpi=30)
    same_picture(e.frame_for(layers=2, kernel=3, stride=1, pool=True), png)
    assert summary.startswith("r = 1 + 2·1 + 1·1 + 2·2 + 1·2 = 10")
    # 2 x (11x11 conv + 2x2 pool) leaves nothing of a 20x20 image
    point = dict(layers=2, kernel=11, stride=1, pool=True)
    assert e.frame_for(**point) == b"" and "No output" in e.summary_for(**point)
    with pytest.raises(ValueError, match="2-d"):
        WR.receptive_field_explorer(np.zeros(5))


def test_receptive_field_widget_draws_with_render():
    pytest.importorskip("ipywidgets", reason="the widget needs ipywidgets")
    img = np.linspace(0, 1, 28 * 28).reshape(28, 28)
    box = WR.receptive_field_widget(img)
    box.controls["stride"].value = 2
    box.controls["unit"].value = "corner"
    assert (box.picture.value, box.text.value) == \
        WR.render_receptive_field(img, 3, 3, 2, unit="corner")

"""Static explorers: a widget's pictures precomputed over a coarse grid, switched in the browser.

The published HTML book has no kernel, so an ipywidgets widget shows nothing
there.  A :class:`StaticExplorer` is the same widget in a form that needs
none: every setting of a small grid of control values is rendered once, by
the same ``render`` function the live widget calls on each change, and the
pictures and summaries are stored in the notebook's HTML output together with
a few lines of self-contained JavaScript that switch between them
(``<input type="range">`` for sliders, ``<select>`` for choices).  Because
both forms call one function, the static book cannot drift from the widget.

* :func:`slider` and :func:`select` declare the controls;
* :func:`static_explorer` renders the grid (identical pictures stored once,
  PNGs reduced to a palette) and refuses one larger than its byte budget;
* :class:`StaticExplorer` is the result: ``_repr_html_`` for Jupyter and the
  book, ``nbytes`` (what it adds to the notebook) and the frames for tests.

``render(**values) -> (png_bytes, summary_html)`` is called once per grid
point, with one value per control, in the order of the controls.
"""

import base64
import hashlib
import html
import io
import itertools
import json
import numbers

__all__ = ["MAX_BYTES", "Control", "grid_with_defaults", "slider", "select", "quantize_png",
           "StaticExplorer", "static_explorer"]

#: Default budget of one explorer, in bytes (what it may add to its notebook).
MAX_BYTES = 1_000_000

_KINDS = ("range", "select")


class Control:
    """One control of a static explorer: a name (the ``render`` argument), a label, its options.

    ``options`` is a list of (label, value) pairs; ``kind`` is "range" (a
    slider over the options, in order) or "select" (a drop-down menu);
    ``initial`` is the index of the option shown first.
    """

    def __init__(self, name, options, kind="range", label=None, initial=0):
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"name must be a Python identifier, got {name!r}")
        if kind not in _KINDS:
            raise ValueError(f"kind must be 'range' or 'select', got {kind!r}")
        options = list(options)
        if not options:
            raise ValueError(f"control {name!r} needs at least one option")
        for option in options:
            if not (isinstance(option, tuple) and len(option) == 2 and isinstance(option[0], str)):
                raise ValueError(f"options of {name!r} must be (label, value) pairs with a str "
                                 f"label, got {option!r}")
        if isinstance(initial, bool) or not isinstance(initial, numbers.Integral) \
                or not 0 <= initial < len(options):
            raise ValueError(f"initial of {name!r} must be an index in [0, {len(options)}), "
                             f"got {initial!r}")
        self.name, self.kind, self.options, self.initial = name, kind, options, int(initial)
        self.label = name if label is None else str(label)

    @property
    def values(self):
        return [value for _, value in self.options]

    def __repr__(self):
        return f"Control({self.name!r}, {len(self.options)} options, kind={self.kind!r})"


def _initial_index(options, initial, name):
    if initial is None:
        return 0
    for i, (_, value) in enumerate(options):
        if value == initial:
            return i
    raise ValueError(f"initial of {name!r} must be one of its values "
                     f"{[v for _, v in options]}, got {initial!r}")


def grid_with_defaults(grid, default):
    """``grid`` (a dict of control values), or ``default`` when it is None.

    Raises ValueError unless ``grid`` names exactly the controls of ``default``.
    """
    g = dict(default if grid is None else grid)
    if set(g) != set(default):
        raise ValueError(f"grid must give values for {sorted(default)}, got {sorted(g)}")
    return g


def slider(name, values, label=None, initial=None):
    """A slider over ``values`` (labelled by ``str(value)``); ``initial`` is a value (default the first)."""
    options = [(str(v), v) for v in values]
    return Control(name, options, "range", label, _initial_index(options, initial, name))


def select(name, options, label=None, initial=None):
    """A drop-down of ``options``: values, or (label, value) pairs; ``initial`` is a value."""
    pairs = [o if isinstance(o, tuple) else (str(o), o) for o in options]
    return Control(name, pairs, "select", label, _initial_index(pairs, initial, name))


def quantize_png(png, colors=256):
    """The same picture as an 8-bit palette PNG (median cut, no dithering), usually 2-4x smaller.

    Figures of flat colours lose nothing visible; ``colors=None`` returns
    ``png`` unchanged.  Deterministic: the same input gives the same bytes.
    """
    if colors is None:
        return png
    if isinstance(colors, bool) or not isinstance(colors, numbers.Integral) \
            or not 2 <= colors <= 256:
        raise ValueError(f"colors must be an int in [2, 256] or None, got {colors!r}")
    from PIL import Image

    with Image.open(io.BytesIO(png)) as picture:
        rgb = picture.convert("RGB")
    palette = rgb.quantize(colors=int(colors), method=Image.Quantize.MEDIANCUT,
                           dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


# The switcher: one copy per explorer, identical for all, so it does not matter
# whether the page keeps one or all of them.  It initialises every explorer on
# the page that is not yet initialised, now and once the page has loaded.
_SCRIPT = """
(function () {
  function start(root) {
    if (root.dataset.ready) { return; }
    root.dataset.ready = "1";
    var data = JSON.parse(root.querySelector("script.cnnlib-explorer-data").textContent);
    var inputs = root.querySelectorAll("[data-control]");
    var img = root.querySelector("img");
    var summary = root.querySelector(".cnnlib-explorer-summary");
    function show() {
      var flat = 0;
      inputs.forEach(function (input, c) {
        var i = parseInt(input.value, 10);
        var out = root.querySelector("output[data-for='" + input.dataset.control + "']");
        if (out) { out.textContent = data.labels[c][i]; }
        flat = flat * data.labels[c].length + i;
      });
      var frame = data.frames[data.frame[flat]];
      if (frame) {
        img.src = "data:image/png;base64," + frame;
        img.style.display = "";
      } else {
        img.removeAttribute("src");
        img.style.display = "none";
      }
      summary.innerHTML = data.summaries[data.summary[flat]];
      root.dataset.frame = String(data.frame[flat]);
    }
    inputs.forEach(function (input) { input.addEventListener("input", show); });
    show();
  }
  function startAll() { document.querySelectorAll(".cnnlib-explorer").forEach(start); }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", startAll);
  } else {
    startAll();
  }
})();
"""

_STYLE = ("border:1px solid #d0d0d0;border-radius:4px;padding:0.5em 0.8em;margin:0.5em 0;"
          "max-width:100%;overflow-x:auto")


class StaticExplorer:
    """A widget's pictures over a grid of control values, shown with HTML controls and no kernel.

    Made by :func:`static_explorer`.  Attributes: ``title``, ``controls``
    (list of :class:`Control`), ``frames`` (the distinct PNGs, bytes),
    ``summaries`` (the distinct summary HTML strings), ``frame_index`` and
    ``summary_index`` (for each grid point, in row-major order of the
    controls, the index of its frame and summary).  ``nbytes`` is the size of
    the HTML it adds to a notebook; ``frame_for(**values)`` the PNG of one
    grid point.
    """

    def __init__(self, title, controls, frames, summaries, frame_index, summary_index):
        self.title, self.controls = title, list(controls)
        self.frames, self.summaries = list(frames), list(summaries)
        self.frame_index, self.summary_index = list(frame_index), list(summary_index)
        self._html = None

    @property
    def shape(self):
        return tuple(len(c.options) for c in self.controls)

    @property
    def size(self):
        """Number of grid points (settings a reader can choose)."""
        n = 1
        for length in self.shape:
            n *= length
        return n

    def _flat(self, values):
        names = [c.name for c in self.controls]
        if set(values) != set(names):
            raise ValueError(f"give one value for each control {names}, got {sorted(values)}")
        flat = 0
        for c in self.controls:
            try:
                i = c.values.index(values[c.name])
            except ValueError:
                raise ValueError(f"{c.name} must be one of the grid values {c.values}, "
                                 f"got {values[c.name]!r}") from None
            flat = flat * len(c.options) + i
        return flat

    def frame_for(self, **values):
        """The PNG bytes shown for one grid point (one value per control)."""
        return self.frames[self.frame_index[self._flat(values)]]

    def summary_for(self, **values):
        """The summary HTML shown for one grid point."""
        return self.summaries[self.summary_index[self._flat(values)]]

    def _control_html(self, c):
        name = html.escape(c.name)
        label = html.escape(c.label)
        if c.kind == "range":
            return (f'<label style="margin-right:1.2em;white-space:nowrap">{label} '
                    f'<input type="range" data-control="{name}" min="0" '
                    f'max="{len(c.options) - 1}" step="1" value="{c.initial}" '
                    f'aria-label="{label}" style="vertical-align:middle"> '
                    f'<output data-for="{name}">{html.escape(c.options[c.initial][0])}</output>'
                    f'</label>')
        options = "".join(f'<option value="{i}"{" selected" if i == c.initial else ""}>'
                          f'{html.escape(text)}</option>' for i, (text, _) in enumerate(c.options))
        return (f'<label style="margin-right:1.2em;white-space:nowrap">{label} '
                f'<select data-control="{name}" aria-label="{label}">{options}</select></label>')

    def to_html(self):
        """The self-contained HTML: controls, picture, summary, the data and the switcher."""
        if self._html is None:
            data = {
                "labels": [[text for text, _ in c.options] for c in self.controls],
                "frames": [base64.b64encode(f).decode("ascii") for f in self.frames],
                "summaries": self.summaries,
                "frame": self.frame_index,
                "summary": self.summary_index,
            }
            payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
            flat = 0
            for c in self.controls:
                flat = flat * len(c.options) + c.initial
            first = base64.b64encode(self.frames[self.frame_index[flat]]).decode("ascii")
            picture = (f'style="max-width:100%" src="data:image/png;base64,{first}"' if first
                       else 'style="max-width:100%;display:none"')
            ident = hashlib.sha1(payload.encode("utf-8")).hexdigest()[:12]
            controls = "".join(self._control_html(c) for c in self.controls)
            title = (f'<div style="font-weight:bold;margin-bottom:0.3em">'
                     f'{html.escape(self.title)}</div>' if self.title else "")
            self._html = (
                f'<div class="cnnlib-explorer" id="cnnlib-explorer-{ident}" style="{_STYLE}">'
                f'{title}<div class="cnnlib-explorer-controls" style="margin-bottom:0.4em">'
                f'{controls}</div>'
                f'<div class="cnnlib-explorer-summary" style="margin-bottom:0.4em">'
                f'{self.summaries[self.summary_index[flat]]}</div>'
                f'<img alt="{html.escape(self.title or "explorer")}" {picture}>'
                f'<script type="application/json" class="cnnlib-explorer-data">{payload}</script>'
                f'<script>{_SCRIPT}</script></div>')
        return self._html

    def _repr_html_(self):
        return self.to_html()

    @property
    def nbytes(self):
        """Bytes of HTML (UTF-8) the explorer adds to its notebook."""
        return len(self.to_html().encode("utf-8"))

    def __repr__(self):
        return (f"StaticExplorer({self.title!r}: {self.size} settings, {len(self.frames)} "
                f"pictures, {self.nbytes / 1e3:.0f} kB)")


def static_explorer(render, controls, *, title="", max_bytes=MAX_BYTES, colors=256,
                    progress=False):
    """Render ``render(**values)`` at every point of the grid of ``controls``; a :class:`StaticExplorer`.

    render: callable returning (png_bytes, summary_html), the function the live
    widget draws with.  controls: list of :class:`Control` (see :func:`slider`,
    :func:`select`); the grid is their Cartesian product.  Identical pictures
    (for example where a setting is clamped) are stored once.  PNGs are
    reduced to ``colors`` palette colours (None keeps them as rendered).
    Raises ValueError, before anything is shown, when the HTML would exceed
    ``max_bytes`` (coarsen the grid, or lower the figure's dpi).
    ``progress``: show a tqdm bar while rendering.
    """
    if not callable(render):
        raise TypeError(f"render must be callable, got {type(render).__name__}")
    controls = list(controls)
    if not controls or not all(isinstance(c, Control) for c in controls):
        raise TypeError("controls must be a non-empty list of Control (use slider or select)")
    names = [c.name for c in controls]
    if len(set(names)) != len(names):
        raise ValueError(f"control names must be distinct, got {names}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral) \
            or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
    points = list(itertools.product(*[c.values for c in controls]))
    if progress:
        from tqdm.auto import tqdm

        points = tqdm(points, desc=title or "explorer", leave=False)
    frames, frame_ids, frame_index = [], {}, []
    summaries, summary_ids, summary_index = [], {}, []
    cache = {}   # rendered PNG -> quantised PNG
    for point in points:
        result = render(**dict(zip(names, point)))
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], bytes)
                and isinstance(result[1], str)):
            raise TypeError("render must return (png_bytes, summary_html), got "
                            f"{type(result).__name__} for {dict(zip(names, point))}")
        png, summary = result
        if png not in cache:
            cache[png] = quantize_png(png, colors) if png else png
        png = cache[png]
        if png not in frame_ids:
            frame_ids[png] = len(frames)
            frames.append(png)
        if summary not in summary_ids:
            summary_ids[summary] = len(summaries)
            summaries.append(summary)
        frame_index.append(frame_ids[png])
        summary_index.append(summary_ids[summary])
    explorer = StaticExplorer(title, controls, frames, summaries, frame_index, summary_index)
    if explorer.nbytes > max_bytes:
        raise ValueError(f"the explorer {title!r} would add {explorer.nbytes:,} bytes "
                         f"({len(frames)} pictures for {explorer.size} settings), more than "
                         f"max_bytes={max_bytes:,}: coarsen the grid or lower the dpi")
    return explorer

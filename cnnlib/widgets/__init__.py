"""Interactive widgets for the chapters, one module per widget.

Each module pairs static matplotlib figures with two interactive forms of one
widget around a tested cnnlib function that does the computation: a thin
ipywidgets wrapper (``*_widget``, for JupyterLab and Binder) and a static
explorer (``*_explorer``, :mod:`cnnlib.widgets.explorer`: the same pictures
precomputed over a coarse grid and switched by plain HTML controls, for the
published book, which has no kernel).  Both draw with the module's
``render_*`` function, so they cannot drift apart.  ipywidgets and matplotlib are
imported inside the functions that need them, so ``import cnnlib`` does not
require either.
"""


__all__ = ["figure_png"]


def figure_png(fig, dpi=90):
    """Render a matplotlib figure to PNG bytes and close it.

    The widgets show their pictures in an ``ipywidgets.Image`` rather than an
    ``Output`` widget: nbval cannot compare output captured into an
    ``Output`` widget (an extra figure output appears on re-execution).
    """
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    if fig.get_layout_engine() is None:  # keep a figure's own layout engine
        fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()

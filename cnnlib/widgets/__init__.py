"""Interactive widgets for the chapters, one module per widget.

Each module pairs a static matplotlib figure (for the published HTML book)
with a thin ipywidgets wrapper (for JupyterLab and Binder) around a tested
cnnlib function that does the computation.  ipywidgets and matplotlib are
imported inside the functions that need them, so ``import cnnlib`` does not
require either.
"""

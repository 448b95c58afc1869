"""The numeric core: one module per family of operations (see cnnlib.functional)."""

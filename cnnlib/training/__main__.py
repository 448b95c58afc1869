"""``python -m cnnlib.training lenet5 --epochs 12 --out FILE``: see :func:`cnnlib.training.loop.main`."""

from .loop import main

main()

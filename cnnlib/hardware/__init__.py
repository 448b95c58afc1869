"""Hardware: how a CNN runs on an accelerator.

* :mod:`cnnlib.hardware.systolic`: a systolic array (output, weight and
  input stationary), cycle by cycle and in closed form, with convolutions
  mapped through im2col;
* :mod:`cnnlib.hardware.crossbar`: an analog in-memory-computing crossbar
  (conductance pairs, DAC/ADC, programming, read and output noise) and a way
  to run a model's layers through it.

See the chapter "Accelerators" (Part V).
"""

from . import crossbar, systolic
from .crossbar import CrossbarTile, IOParameters, PCMParameters, analog_forward
from .systolic import SystolicArray, SystolicRun, im2col

__all__ = ["systolic", "crossbar", "SystolicArray", "SystolicRun", "im2col", "CrossbarTile",
           "IOParameters", "PCMParameters", "analog_forward"]

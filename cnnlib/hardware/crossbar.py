"""In-memory computing: an analog crossbar's matrix-vector product and its non-idealities.

A crossbar stores a weight matrix W (M, K) as conductances, one differential
pair per weight, ``w ~ (G+ - G-) / G_max``; an input vector enters as row
voltages through a DAC, every column current is a dot product (Ohm's and
Kirchhoff's laws), and an ADC reads it out.  The model follows IBM's aihwkit
(``simulator/parameters/io.py``, ``simulator/tiles/analog_mvm.py``,
``inference/noise/pcm.py``), with its parameter names and defaults::

    y = ADC( (W + s_w Xi) (DAC(x / a) + s_in xi_1) + s_out xi_2 ) * a * w_max

* noise management: ``a = max_k |x_k|`` per input vector (abs-max), so the DAC
  sees values in [-1, 1];
* ``DAC``: round to a step of ``inp_res * 2 * inp_bound`` and clip to
  ``[-inp_bound, inp_bound]`` (``inp_res = 1 / (2^b - 2)`` is a b-bit DAC:
  ``2^b - 1`` levels); ``ADC``: the same with ``out_res`` and ``out_bound``
  (in units of a full-scale weight times a full-scale input);
* ``W``: the weights divided by ``w_max = max |W|``, programmed as the pair
  ``(G+, G-)`` on ``levels`` conductance levels in ``[0, G_max]``, each with
  PCM programming noise of standard deviation ``0.26348 + 1.9650 g - 1.1731 g^2``
  (micro-siemens, ``g = G / G_max``, ``G_max = 25``);
* ``s_w Xi``: read (weight) noise, a fresh Gaussian matrix per MVM: drawn here
  in its exact distribution per output, ``s_w ||DAC(x / a)|| xi``;
* ``s_in``, ``s_out``: input and output noise (``out_noise = 0.06``).

Conductance drift (``G (t / t0)^-nu``, t0 = 20 s) is not modelled.  See the
chapter "Accelerators" (Part V).
"""

import math
from dataclasses import dataclass, fields, replace

import numpy as np

from .._random import get_rng
from .._validate import check_float_array, check_number
from ..nn import Conv2d, Linear, Sequential
from .systolic import im2col

__all__ = ["IOParameters", "PCMParameters", "bits_to_res", "res_to_bits", "quantise",
           "CrossbarTile", "analog_forward"]

PCM_PROG_COEFF = (0.26348, 1.9650, -1.1731)


def bits_to_res(bits):
    """aihwkit's resolution of a ``bits``-bit converter: ``1 / (2^bits - 2)`` (0 for ``None``: exact)."""
    if bits is None:
        return 0.0
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 2:
        raise ValueError(f"bits must be an int >= 2 or None, got {bits!r}")
    return 1.0 / (2 ** bits - 2)


def res_to_bits(res):
    """The converter bits of a resolution: ``log2(1 / res + 2)`` (inf for ``res = 0``)."""
    res = check_number(res, "res")
    return math.inf if res == 0 else math.log2(1 / res + 2)


@dataclass(frozen=True)
class IOParameters:
    """The peripheral (DAC, ADC, noise) settings of a tile, with aihwkit's names and defaults.

    ``inp_res``/``out_res``: converter resolution as a fraction of the range
    ``2 * bound`` (0 = no quantisation); ``inp_bound``/``out_bound``: clipping
    bounds (0 = none); ``inp_noise``, ``out_noise``, ``w_noise``: Gaussian
    standard deviations at the input, the output and on the normalised weights
    (per MVM); ``noise_management``: ``"abs_max"`` or ``"none"``.
    :meth:`ideal` has every one of them off.
    """

    inp_res: float = 1 / (2 ** 7 - 2)
    out_res: float = 1 / (2 ** 9 - 2)
    inp_bound: float = 1.0
    out_bound: float = 12.0
    inp_noise: float = 0.0
    out_noise: float = 0.06
    w_noise: float = 0.0
    noise_management: str = "abs_max"

    def __post_init__(self):
        for f in fields(self):
            if f.name != "noise_management":
                check_number(getattr(self, f.name), f.name)
        if self.noise_management not in ("abs_max", "none"):
            raise ValueError(f"noise_management must be 'abs_max' or 'none', got {self.noise_management!r}")

    @classmethod
    def ideal(cls, **changes):
        """No quantisation, no bounds, no noise (then changes)."""
        return replace(cls(inp_res=0.0, out_res=0.0, inp_bound=0.0, out_bound=0.0, out_noise=0.0),
                       **changes)


@dataclass(frozen=True)
class PCMParameters:
    """How weights become conductances: ``g_max`` (micro-siemens), the number of
    programmable ``levels`` per device (None = continuous), the PCM
    programming-noise polynomial ``prog_coeff`` and its ``prog_noise_scale``
    (aihwkit's ``PCMLikeNoiseModel``; 1 = the measured noise, 0 = none)."""

    g_max: float = 25.0
    levels: int = None
    prog_coeff: tuple = PCM_PROG_COEFF
    prog_noise_scale: float = 1.0

    def __post_init__(self):
        check_number(self.g_max, "g_max", positive=True)
        check_number(self.prog_noise_scale, "prog_noise_scale")
        if self.levels is not None and (isinstance(self.levels, bool) or not isinstance(self.levels, int)
                                        or self.levels < 2):
            raise ValueError(f"levels must be an int >= 2 or None, got {self.levels!r}")
        if len(self.prog_coeff) != 3:
            raise ValueError(f"prog_coeff must hold 3 numbers, got {self.prog_coeff!r}")

    @classmethod
    def ideal(cls, **changes):
        """Continuous conductances, no programming noise (then changes)."""
        return replace(cls(levels=None, prog_noise_scale=0.0), **changes)

    def prog_std(self, g):
        """Programming-noise standard deviation (micro-siemens) at conductances g (micro-siemens)."""
        c0, c1, c2 = self.prog_coeff
        r = np.asarray(g, np.float64) / self.g_max
        return np.maximum(c0 + c1 * r + c2 * r * r, 0.0)


def quantise(x, res, bound):
    """Round x to a step of ``res * 2 * bound`` and clip to ``[-bound, bound]``.

    ``res = 0`` skips the rounding, ``bound = 0`` the clipping.  The
    rounding is half to even (``numpy.round``); ``|error| <= step / 2``
    inside the bound.  x: any float array; returns a new array.
    """
    res = check_number(res, "res")
    bound = check_number(bound, "bound")
    x = np.asarray(x)
    if res > 0:
        if bound == 0:
            raise ValueError("a resolution needs a bound (res is a fraction of 2 * bound), got bound=0")
        step = x.dtype.type(res * 2 * bound)
        x = np.round(x / step) * step
    if bound > 0:
        x = np.clip(x, -bound, bound)
    return x


class CrossbarTile:
    """A weight matrix W (M, K) programmed onto an analog crossbar; ``mvm(x)`` is its noisy product.

    Programming happens once, at construction, with ``rng`` (finite levels,
    programming noise); every :meth:`mvm` draws fresh read, input and output
    noise from its own ``rng``.  Attributes: ``g_plus``, ``g_minus``
    (conductances, micro-siemens, (M, K)), ``w_max`` and ``programmed``
    (the normalised weights the devices hold, ``(G+ - G-) / G_max``).
    See the module docstring for the model.
    """

    def __init__(self, weight, io=None, device=None, rng=None):
        weight = check_float_array(weight, "weight", ndim=2)
        self.io = IOParameters() if io is None else io
        self.device = PCMParameters() if device is None else device
        if not isinstance(self.io, IOParameters):
            raise TypeError(f"io must be an IOParameters, got {type(self.io).__name__}")
        if not isinstance(self.device, PCMParameters):
            raise TypeError(f"device must be a PCMParameters, got {type(self.device).__name__}")
        rng = get_rng(rng)
        self.dtype = weight.dtype
        self.w_max = float(np.abs(weight).max()) or 1.0
        dev = self.device
        w = weight.astype(np.float64) / self.w_max
        targets = [dev.g_max * np.maximum(w, 0), dev.g_max * np.maximum(-w, 0)]
        programmed = []
        for g in targets:
            if dev.levels is not None:
                step = dev.g_max / (dev.levels - 1)
                g = np.round(g / step) * step
            if dev.prog_noise_scale > 0:
                g = g + dev.prog_noise_scale * dev.prog_std(g) * rng.standard_normal(g.shape)
                g = np.clip(g, 0.0, None)
            programmed.append(g)
        self.g_plus, self.g_minus = programmed
        self.programmed = ((self.g_plus - self.g_minus) / dev.g_max).astype(self.dtype)

    @property
    def shape(self):
        return self.programmed.shape

    def mvm(self, x, rng=None):
        """y (N, M) = the tile's analog product of x (N, K) with W^T (x @ W.T when ideal)."""
        x = check_float_array(x, "x", ndim=2)
        if x.shape[1] != self.shape[1]:
            raise ValueError(f"x must have {self.shape[1]} columns (the tile's K), got shape {x.shape}")
        rng = get_rng(rng)
        io, dt = self.io, self.dtype
        x = x.astype(dt, copy=False)
        if io.noise_management == "abs_max":
            a = np.abs(x).max(axis=1, keepdims=True)
            a[a == 0] = 1
        else:
            a = np.ones((x.shape[0], 1), dt)
        u = quantise(x / a, io.inp_res, io.inp_bound)
        if io.inp_noise > 0:
            u = u + dt.type(io.inp_noise) * rng.standard_normal(u.shape, dtype=dt)
        y = u @ self.programmed.T
        if io.w_noise > 0:
            norm = np.sqrt((u * u).sum(axis=1, keepdims=True))
            y = y + dt.type(io.w_noise) * norm * rng.standard_normal(y.shape, dtype=dt)
        if io.out_noise > 0:
            y = y + dt.type(io.out_noise) * rng.standard_normal(y.shape, dtype=dt)
        y = quantise(y, io.out_res, io.out_bound)
        return (y * a * dt.type(self.w_max)).astype(dt, copy=False)


def analog_forward(model, x, io=None, device=None, rng=None):
    """Run a cnnlib ``nn.Sequential`` on x with each ``Conv2d`` and ``Linear`` on a crossbar.

    Each such layer's weight matrix (a convolution's reshaped to (M, C kH kW),
    fed by :func:`~cnnlib.hardware.systolic.im2col` rows) is programmed onto one
    :class:`CrossbarTile` (``rng`` programs the tiles, then drives the read
    noise); biases are added digitally; other layers run as usual.
    x (N, ...) -> the model's output.  Convolutions must have groups 1.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a cnnlib nn.Sequential, got {type(model).__name__}")
    x = check_float_array(x, "x", min_ndim=2)
    rng = get_rng(rng)
    for layer in model.children():
        if isinstance(layer, Conv2d):
            if layer.groups != 1 or isinstance(layer.padding, str):
                raise ValueError("analog_forward needs convolutions with groups=1 and int or pair padding")
            w = layer.weight.data
            tile = CrossbarTile(w.reshape(w.shape[0], -1), io, device, rng)
            cols, (ho, wo) = im2col(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
            y = tile.mvm(cols, rng)
            if layer.bias is not None:
                y = y + layer.bias.data
            x = np.ascontiguousarray(y.reshape(x.shape[0], ho, wo, -1).transpose(0, 3, 1, 2))
        elif isinstance(layer, Linear):
            tile = CrossbarTile(layer.weight.data, io, device, rng)
            x = tile.mvm(x, rng)
            if layer.bias is not None:
                x = x + layer.bias.data
        else:
            x = layer.forward(x)
    return x

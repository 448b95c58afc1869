"""Quantisation: the affine map with torch's semantics, integer-only LeNet-5
(Jacob et al. 2018), low-bit weights, quantisation-aware training and
distillation quantisation (Polino et al. 2018).  See the quantisation chapter (5.2);
binarised networks (Courbariaux et al. 2016, Rastegari et al. 2016) are in the
applications chapter (8).

* :mod:`cnnlib.quant.affine`: quantize / dequantize / fake-quantize (per
  tensor, per channel) with the straight-through backward, ``choose_qparams``;
* :mod:`cnnlib.quant.integer`: the fixed-point requantisation helpers, the
  int8 matrix product, ``quantize_model`` and ``IntegerLeNet5``;
* :mod:`cnnlib.quant.qat`: fake-quantised layers, post-training weight
  quantisation at b bits, the distillation loss, a short training loop, model size;
* :mod:`cnnlib.quant.binary`: 1-bit weights and activations with the
  straight-through estimator, and the XNOR-popcount dot product.
"""

from . import affine, binary, integer, qat
from .affine import (choose_qparams, dequantize, fake_quantize_per_channel_affine,
                     fake_quantize_per_channel_affine_backward, fake_quantize_per_tensor_affine,
                     fake_quantize_per_tensor_affine_backward, qrange, quantize_per_channel,
                     quantize_per_tensor)
from .integer import IntegerLeNet5, quantize_model, quantize_multiplier
from .qat import (FakeQuantWeight, distillation_loss, distillation_loss_backward, model_size_bytes,
                  quantize_weights, train_steps)
from .binary import (BinaryActivation, BinaryConv2d, BinaryLinear, binarize, binarize_backward,
                     pack_signs, xnor_popcount_matmul)

__all__ = ["affine", "integer", "qat", "binary",
           "quantize_per_tensor", "quantize_per_channel", "dequantize",
           "fake_quantize_per_tensor_affine", "fake_quantize_per_tensor_affine_backward",
           "fake_quantize_per_channel_affine", "fake_quantize_per_channel_affine_backward",
           "choose_qparams", "qrange", "quantize_model", "IntegerLeNet5", "quantize_multiplier",
           "FakeQuantWeight", "quantize_weights", "distillation_loss", "distillation_loss_backward",
           "train_steps", "model_size_bytes",
           "binarize", "binarize_backward", "BinaryActivation", "BinaryConv2d", "BinaryLinear",
           "pack_signs", "xnor_popcount_matmul"]

"""The functional API: stateless operations with the signatures of
``torch.nn.functional``, each with a ``<name>_backward``.

Arrays are NumPy, NCHW, float32 or float64 (output dtype = input dtype).
A backward takes the upstream gradient first (except ``cross_entropy``,
which ends the graph), then the forward's array inputs and settings, and
returns the gradient of each array input in order.
"""

from .ops.activation import relu, relu_backward, sigmoid, sigmoid_backward, tanh, tanh_backward
from .ops.conv import (conv2d, conv2d_backward, conv_output_size, conv_path, padding_amounts,
                       resolve_padding)
from .ops.conv_variants import (
                                conv2d_cost,
                                convolve2d,
                                convolve2d_backward,
                                depthwise_separable_conv2d,
                                depthwise_separable_conv2d_backward,
                                depthwise_separable_cost,
                                flip_kernel,
                                separable_factors,
                                spatially_separable_conv2d,
                                spatially_separable_cost,
)
from .ops.dropout import dropout, dropout2d, dropout_backward
from .ops.linear import linear, linear_backward
from .ops.loss import (
                                cross_entropy,
                                cross_entropy_backward,
                                log_softmax,
                                log_softmax_backward,
                                softmax,
                                softmax_backward,
)
from .ops.norm import batch_norm, batch_norm_backward, local_response_norm, local_response_norm_backward
from .ops.pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward, pool_output_size
# Attention (Part IV): adaptive pooling and the batched matrix product
from .ops.adaptive_pool import (adaptive_avg_pool2d, adaptive_avg_pool2d_backward, adaptive_bins,
                                adaptive_max_pool2d, adaptive_max_pool2d_backward)
from .ops.matmul import bmm, bmm_backward
# Part IV, "Architecture search": the Gumbel-softmax relaxation
from .ops.sampling import gumbel_softmax, gumbel_softmax_backward, sample_gumbel
from .ops.pool_variants import (
                                fractional_intervals,
                                fractional_max_pool2d,
                                fractional_max_pool2d_backward,
                                fractional_output_size,
                                stochastic_pool2d,
                                stochastic_pool2d_backward,
)

__all__ = [
    "conv2d", "conv2d_backward", "conv_output_size", "conv_path", "padding_amounts", "resolve_padding",
    "convolve2d", "convolve2d_backward", "flip_kernel", "separable_factors",
    "spatially_separable_conv2d", "depthwise_separable_conv2d",
    "depthwise_separable_conv2d_backward", "conv2d_cost", "depthwise_separable_cost",
    "spatially_separable_cost",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "pool_output_size",
    "fractional_max_pool2d", "fractional_max_pool2d_backward", "fractional_intervals",
    "fractional_output_size", "stochastic_pool2d", "stochastic_pool2d_backward",
    "relu", "relu_backward", "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "linear", "linear_backward", "dropout", "dropout2d", "dropout_backward",
    "local_response_norm", "local_response_norm_backward", "batch_norm", "batch_norm_backward",
    "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
    "cross_entropy", "cross_entropy_backward",
    # Attention (Part IV)
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d",
    "adaptive_max_pool2d_backward", "adaptive_bins", "bmm", "bmm_backward",
    "gumbel_softmax", "gumbel_softmax_backward", "sample_gumbel",
]

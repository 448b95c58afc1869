"""Batched matrix product, as ``torch.bmm``: the two products of attention.

Self-attention over the H*W positions of a feature map is two batched
products, ``f = theta^T phi`` (every query against every key) and
``y = softmax(f) g`` (a weighted sum of the values); see the attention
chapter (Part IV).  The kernels are NumPy's ``matmul`` (BLAS): a public op
is worth having for its checks and its backward, not for a new loop.
"""

import numpy as np

from .._validate import check_float_array, check_same_dtype, check_shape

__all__ = ["bmm", "bmm_backward"]


def _bmm_settings(input, mat2):
    a = check_float_array(input, "input", ndim=3)
    b = check_float_array(mat2, "mat2", ndim=3)
    check_same_dtype(a, "input", b, "mat2")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"input and mat2 must have the same batch size, got shapes {a.shape} and {b.shape}")
    if a.shape[2] != b.shape[1]:
        raise ValueError(f"input's columns must equal mat2's rows (B, n, m) @ (B, m, p), "
                         f"got shapes {a.shape} and {b.shape}")
    return a, b


def bmm(input, mat2):
    """Batched matrix product ``out[b] = input[b] @ mat2[b]``, as ``torch.bmm``.

    input (B, n, m), mat2 (B, m, p), same dtype -> out (B, n, p).
    """
    a, b = _bmm_settings(input, mat2)
    return np.matmul(a, b)


def bmm_backward(grad_output, input, mat2):
    """Gradients of :func:`bmm`: returns (grad_input, grad_mat2).

    grad_input[b] = grad_output[b] @ mat2[b]^T, shape (B, n, m);
    grad_mat2[b] = input[b]^T @ grad_output[b], shape (B, m, p).
    """
    a, b = _bmm_settings(input, mat2)
    g = check_float_array(grad_output, "grad_output", ndim=3)
    check_same_dtype(a, "input", g, "grad_output")
    check_shape(g, "grad_output", (a.shape[0], a.shape[1], b.shape[2]))
    return np.matmul(g, b.transpose(0, 2, 1)), np.matmul(a.transpose(0, 2, 1), g)

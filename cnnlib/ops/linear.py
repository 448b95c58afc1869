"""Fully connected (affine) layer: y = x W^T + b."""

from .._validate import check_float_array, check_same_dtype, check_shape


def _linear_settings(x, w, bias):
    x = check_float_array(x, "input", min_ndim=1)
    w = check_float_array(w, "weight", ndim=2)
    check_same_dtype(x, "input", w, "weight")
    if x.shape[-1] != w.shape[1]:
        raise ValueError(
            f"input's last dimension ({x.shape[-1]}, shape {x.shape}) must equal "
            f"weight.shape[1] = in_features ({w.shape[1]})"
        )
    if bias is not None:
        bias = check_float_array(bias, "bias", ndim=1)
        check_same_dtype(x, "input", bias, "bias")
        check_shape(bias, "bias", (w.shape[0],))
    return x, w, bias


def linear(input, weight, bias=None):
    """Affine map, as ``torch.nn.functional.linear``.

    input (*, in_features), weight (out_features, in_features), bias
    (out_features,) or None -> output (*, out_features).
    """
    x, w, bias = _linear_settings(input, weight, bias)
    y = x @ w.T
    if bias is not None:
        y += bias
    return y


def linear_backward(grad_output, input, weight, bias=None):
    """Gradients of ``linear``: returns (grad_input, grad_weight, grad_bias).

    grad_input = grad_output W, grad_weight = grad_output^T x summed over all
    leading dimensions, grad_bias = grad_output summed likewise (None when
    ``bias`` is None).
    """
    x, w, bias = _linear_settings(input, weight, bias)
    gy = check_float_array(grad_output, "grad_output")
    check_same_dtype(x, "input", gy, "grad_output")
    check_shape(gy, "grad_output", x.shape[:-1] + (w.shape[0],))
    gy2 = gy.reshape(-1, w.shape[0])
    x2 = x.reshape(-1, w.shape[1])
    grad_bias = gy2.sum(axis=0) if bias is not None else None
    return gy @ w, gy2.T @ x2, grad_bias

"""Dropout layers: :class:`Dropout` (element-wise) and :class:`Dropout2d` (channel-wise).

In training mode each forward draws a fresh keep-mask from ``self.rng``
(always that generator, so that the gradient-checkpointing wrapper of
:mod:`cnnlib.training.checkpoint`, which rewinds every ``np.random.Generator``
attribute of a module, replays exactly the same masks) and keeps it for
``backward``.  In evaluation mode the layer is the identity.  See the
regularisation chapter (Part III).
"""

from .._random import get_rng
from ..ops.dropout import check_dropout_p, dropout, dropout2d, dropout_backward
from .module import Module

__all__ = ["Dropout", "Dropout2d"]


class Dropout(Module):
    """Inverted dropout, like ``torch.nn.Dropout``.

    Inputs:
    - x: array of any shape, float32/float64

    Returns y of the same shape: in training mode ``x * m / (1 - p)`` with
    ``m ~ Bernoulli(1 - p)`` drawn independently per element, in evaluation
    mode ``x`` itself.  ``p`` is in [0, 1] (``p = 1`` gives zeros, as in
    PyTorch); ``rng`` is None (the library's default generator), a seed or a
    ``np.random.Generator``.  ``backward`` multiplies by the same mask and
    scale, following the mode of the last forward.
    """

    _functional = staticmethod(dropout)

    def __init__(self, p=0.5, rng=None):
        super().__init__()
        self.p = check_dropout_p(p)
        self.rng = get_rng(rng)

    def forward(self, x):
        if self.training:
            y, mask = self._functional(x, self.p, training=True, rng=self.rng, return_mask=True)
        else:
            y, mask = self._functional(x, self.p, training=False), None
        self.save_for_backward(mask, self.training)
        return y

    def backward(self, grad_output):
        mask, training = self.saved()
        return dropout_backward(grad_output, mask, self.p, training=training)

    def extra_repr(self):
        return f"p={self.p}"


class Dropout2d(Dropout):
    """Channel-wise dropout, like ``torch.nn.Dropout2d`` (4-d input only).

    Inputs:
    - x: (N, C, H, W), float32/float64

    Returns y of shape (N, C, H, W): each feature map ``x[n, c]`` is either
    zeroed or scaled by ``1 / (1 - p)``, one draw per (sample, channel); the
    identity in evaluation mode.
    """

    _functional = staticmethod(dropout2d)

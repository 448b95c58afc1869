"""Optimisers: SGD (with momentum, Nesterov, weight decay) and Adam.

The update rules are exactly those of ``torch.optim`` (single-tensor code
path, ``maximize=False``, no AMSGrad), so a reader can check every step
against PyTorch. Each ``step()`` reads ``param.grad`` and updates
``param.data`` in place, keeping its dtype. The hyperparameters are plain
attributes (``opt.lr = 0.01`` changes the learning rate from the next step).
See the optimisation chapter.
"""

import math

import numpy as np

from ..nn.module import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW"]


class Optimizer:
    """Base class: holds the parameters and per-parameter state.

    ``params`` is an iterable of :class:`~cnnlib.nn.Parameter` (for example
    ``model.parameters()``). ``self.state[i]`` is a dict of arrays for
    ``self.params[i]``, filled lazily by ``step``.
    """

    def __init__(self, params, lr):
        if isinstance(params, Parameter):
            raise TypeError("params must be an iterable of Parameters, got a single Parameter")
        self.params = list(params)
        if not self.params:
            raise ValueError("params is empty: the optimiser has nothing to update")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}] must be a Parameter, got {type(p).__name__}")
        if len({id(p) for p in self.params}) != len(self.params):
            raise ValueError("params contains the same Parameter more than once")
        _check_nonnegative(lr, "lr")
        self.lr = lr
        self.state = [{} for _ in self.params]

    def zero_grad(self):
        """Set the gradient of every parameter to zero."""
        for p in self.params:
            p.zero_grad()

    def step(self):
        """Update every parameter in place from its ``.grad`` (one optimisation step)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement step")

    def hyperparameters(self):
        """The settings of this optimiser, as a dict."""
        raise NotImplementedError

    def state_dict(self):
        """Copies of the hyperparameters and of the per-parameter state."""
        state = [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                 for s in self.state]
        return {"hyperparameters": dict(self.hyperparameters()), "state": state}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned (for the same parameters)."""
        state = state_dict["state"]
        if len(state) != len(self.params):
            raise ValueError(f"state_dict has state for {len(state)} parameters, "
                             f"this optimiser has {len(self.params)}")
        for i, (s, p) in enumerate(zip(state, self.params)):
            for k, v in s.items():
                if isinstance(v, np.ndarray) and v.shape != p.shape:
                    raise ValueError(f"state[{i}][{k!r}] has shape {v.shape}, expected {p.shape}")
        for name, value in state_dict["hyperparameters"].items():
            setattr(self, name, value)
        self.state = [{k: (np.array(v, dtype=p.dtype) if isinstance(v, np.ndarray) else v)
                       for k, v in s.items()} for s, p in zip(state, self.params)]

    def __repr__(self):
        settings = ", ".join(f"{k}={v}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} parameters, {settings})"


def _check_nonnegative(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


class SGD(Optimizer):
    """Stochastic gradient descent, as ``torch.optim.SGD``.

    For each parameter ``p`` with gradient ``g``::

        g = g + weight_decay * p
        if momentum:
            buf = g                                     (first step)
            buf = momentum * buf + (1 - dampening) * g  (later steps)
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
    """

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        super().__init__(params, lr)
        _check_nonnegative(momentum, "momentum")
        _check_nonnegative(weight_decay, "weight_decay")
        if isinstance(dampening, bool) or not isinstance(dampening, (int, float, np.number)):
            raise TypeError(f"dampening must be a number, got {dampening!r}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(f"nesterov=True requires momentum > 0 and dampening = 0, "
                             f"got momentum={momentum}, dampening={dampening}")
        self.momentum = momentum
        self.dampening = dampening
        self.weight_decay = weight_decay
        self.nesterov = bool(nesterov)

    def hyperparameters(self):
        return dict(lr=self.lr, momentum=self.momentum, dampening=self.dampening,
                    weight_decay=self.weight_decay, nesterov=self.nesterov)

    def step(self):
        """Update every parameter once from its ``.grad``."""
        for p, state in zip(self.params, self.state):
            g = p.grad
            if self.weight_decay != 0:
                g = g + self.weight_decay * p.data
            if self.momentum != 0:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = g.copy()
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= self.lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba), as ``torch.optim.Adam`` (L2 weight decay, no AMSGrad).

    For each parameter ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

        g = g + weight_decay * p
        m = beta1 * m + (1 - beta1) * g          (m, v start at zero)
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0):
        super().__init__(params, lr)
        _check_nonnegative(eps, "eps")
        _check_nonnegative(weight_decay, "weight_decay")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"betas must be a pair of numbers, got {betas!r}")
        for i, beta in enumerate(betas):
            _check_nonnegative(beta, f"betas[{i}]")
            if not beta < 1:
                raise ValueError(f"betas[{i}] must be in [0, 1), got {beta}")
        self.betas = tuple(betas)
        self.eps = eps
        self.weight_decay = weight_decay

    def hyperparameters(self):
        return dict(lr=self.lr, betas=self.betas, eps=self.eps, weight_decay=self.weight_decay)

    def _gradient(self, p):
        """The gradient Adam's moments see: coupled (L2) weight decay enters it."""
        if self.weight_decay != 0:
            return p.grad + self.weight_decay * p.data
        return p.grad

    def step(self):
        """Update every parameter once from its ``.grad``."""
        beta1, beta2 = self.betas
        for p, state in zip(self.params, self.state):
            g = self._gradient(p)
            if not state:
                state["step"] = 0
                state["exp_avg"] = np.zeros_like(p.data)
                state["exp_avg_sq"] = np.zeros_like(p.data)
            state["step"] += 1
            t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
            m += (1 - beta1) * (g - m)  # torch's lerp: m -> beta1*m + (1-beta1)*g
            v *= beta2
            v += (1 - beta2) * g * g
            step_size = self.lr / (1 - beta1**t)
            denom = np.sqrt(v) / math.sqrt(1 - beta2**t) + self.eps
            p.data -= step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019), as ``torch.optim.AdamW``.

    The decay shrinks the weights directly instead of entering the gradient,
    so Adam's per-parameter scaling never touches it.  For each parameter
    ``p`` with gradient ``g``, at step ``t = 1, 2, ...``::

        p = p * (1 - lr * weight_decay)          (decoupled: before the Adam step)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        p = p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    With ``Adam(weight_decay=wd)`` (or an L2 penalty in the loss) the term
    ``wd * p`` is added to ``g`` instead and is then divided by ``sqrt(v)``:
    weights with large gradients are decayed less.  For plain SGD the two
    forms coincide.  See the regularisation chapter (Part III).
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _gradient(self, p):
        """Decay the weights directly (decoupled), leaving the gradient untouched."""
        if self.weight_decay != 0:
            p.data *= 1 - self.lr * self.weight_decay
        return p.grad

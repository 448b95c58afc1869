"""Parameters, modules and containers: the layer API of the book.

A layer is a :class:`Module` with a ``forward`` and a hand-written
``backward``; there is no autograd. To add a layer in a later chapter:

1. Subclass :class:`Module`, call ``super().__init__()`` first, then assign
   :class:`Parameter` s (and sub-modules) as attributes; they are registered
   in the order they are assigned.
2. In ``forward(x)``, compute the output with :mod:`cnnlib.functional` and
   keep what the backward needs with ``self.save_for_backward(...)``.
3. In ``backward(grad_output)``, fetch it with ``self.saved()``, *add* the
   gradient of each parameter into ``param.grad`` and return the gradient of
   the input.

``backward`` always uses the most recent ``forward`` call (in training and in
evaluation mode alike); calling it before any ``forward`` raises
``RuntimeError``. State that is not learned but belongs in a checkpoint (the
running statistics of a normalisation layer, say) is registered with
:meth:`~cnnlib.nn.Module.register_buffer`.
"""

from collections import OrderedDict

import numpy as np

__all__ = ["Parameter", "Module", "Sequential"]


class Parameter:
    """A learnable array and the gradient accumulated for it.

    ``data`` holds the values (a floating-point ndarray, updated in place by
    the optimisers); ``grad`` is an array of the same shape and dtype, zero at
    first, into which each ``backward`` adds.
    """

    def __init__(self, data):
        data = np.array(data, copy=True)
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"Parameter data must be a floating-point array, got dtype {data.dtype}")
        self.data = data
        self.grad = np.zeros_like(data)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def zero_grad(self):
        """Set the accumulated gradient to zero (in place)."""
        self.grad.fill(0)

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    """Base class of every layer and model.

    Assigning a :class:`Parameter` or a :class:`Module` to an attribute
    registers it; :meth:`named_parameters`, :meth:`state_dict` and friends walk
    the registered children in assignment order, with dotted names like
    PyTorch's (``"0.weight"``, ``"features.conv1.bias"``).
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_saved", None)

    # --- registration -----------------------------------------------------

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}.__init__ must call super().__init__() "
                f"before assigning attribute {name!r}"
            )
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        elif name in self._buffers:
            self._buffers[name] = self._check_buffer(name, value)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers.pop(name, None)
        object.__delattr__(self, name)

    @staticmethod
    def _check_buffer(name, value):
        if not isinstance(value, np.ndarray):
            raise TypeError(f"buffer {name!r} must be an ndarray, got {type(value).__name__}")
        return value

    def register_buffer(self, name, array):
        """Register a non-learned array (e.g. running statistics) as state.

        The buffer is readable as ``self.<name>``, is saved by
        :meth:`state_dict` and restored by :meth:`load_state_dict`, but it is
        not a parameter: optimisers do not see it.
        """
        if "_buffers" not in self.__dict__:
            raise RuntimeError("call super().__init__() before register_buffer")
        self._buffers[name] = self._check_buffer(name, array)
        setattr(self, name, array)

    # --- computation ------------------------------------------------------

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_output):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def save_for_backward(self, *values):
        """Keep values from ``forward`` for the next ``backward``."""
        object.__setattr__(self, "_saved", values)

    def saved(self, required=True):
        """Return the values stored by the most recent ``forward``.

        Raises ``RuntimeError`` if ``forward`` has not been called yet, or
        returns ``None`` then if ``required`` is false (for code that moves
        saved values around: pipeline stages, checkpointing, summaries).
        """
        if self._saved is None and required:
            raise RuntimeError(
                f"{type(self).__name__}.backward called before forward: "
                "backward uses the values stored by the most recent forward"
            )
        return self._saved

    def restore_saved(self, values):
        """Put back values taken with ``saved(required=False)``; ``None`` forgets them.

        A pipeline stage keeps one set of saved values per micro-batch in
        flight, and checkpointing drops them to free memory: both use this
        instead of touching the module's private state.
        """
        if values is not None and not isinstance(values, tuple):
            raise TypeError(f"values must be a tuple (as saved() returns) or None, "
                            f"got {type(values).__name__}")
        object.__setattr__(self, "_saved", values)

    # --- traversal --------------------------------------------------------

    def children(self):
        """Iterate over the direct sub-modules."""
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        """Yield ``(name, module)`` for this module and every descendant."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self, recurse=True):
        """Yield ``(dotted_name, Parameter)``, each parameter once.

        With ``recurse=False``, only the module's own parameters (not its
        sub-modules'), as in PyTorch.
        """
        seen = set()
        for module_name, module in (self.named_modules() if recurse else [("", self)]):
            for name, param in module._parameters.items():
                if id(param) not in seen:
                    seen.add(id(param))
                    yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self, recurse=True):
        """Yield every parameter once, in registration order (``recurse`` as in
        :meth:`named_parameters`)."""
        for _, param in self.named_parameters(recurse):
            yield param

    def named_buffers(self, recurse=True):
        """Yield ``(dotted_name, array)`` for every registered buffer (only the
        module's own with ``recurse=False``)."""
        for module_name, module in (self.named_modules() if recurse else [("", self)]):
            for name, buf in module._buffers.items():
                yield (f"{module_name}.{name}" if module_name else name), buf

    def num_parameters(self):
        """Total number of learnable scalars."""
        return sum(p.size for p in self.parameters())

    def zero_grad(self):
        """Set the gradient of every parameter to zero."""
        for param in self.parameters():
            param.zero_grad()

    def train(self, mode=True):
        """Set training mode (``mode=True``) or evaluation mode, recursively."""
        for _, module in self.named_modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        """Set evaluation mode, recursively (same as ``train(False)``)."""
        return self.train(False)

    # --- checkpoints ------------------------------------------------------

    def state_dict(self):
        """Return an ordered ``{dotted_name: copy of array}`` of parameters and buffers."""
        state = OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())
        state.update((name, b.copy()) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state_dict):
        """Copy arrays from ``state_dict`` into the parameters and buffers, in place.

        Strict: the keys must be exactly those of :meth:`state_dict` and each
        shape must match, otherwise ``ValueError`` (nothing is copied then).
        Values are cast to the dtype of the module's arrays.
        """
        targets = OrderedDict((name, p.data) for name, p in self.named_parameters())
        targets.update(self.named_buffers())
        missing = [k for k in targets if k not in state_dict]
        unexpected = [k for k in state_dict if k not in targets]
        if missing or unexpected:
            raise ValueError(
                f"state_dict does not match {type(self).__name__}: "
                f"missing keys {missing}, unexpected keys {unexpected}"
            )
        for name, target in targets.items():
            shape = np.shape(state_dict[name])
            if shape != target.shape:
                raise ValueError(
                    f"state_dict[{name!r}] has shape {shape}, expected {target.shape}"
                )
        for name, target in targets.items():
            target[...] = state_dict[name]

    # --- printing ---------------------------------------------------------

    def extra_repr(self):
        """The settings shown inside the parentheses of ``repr``."""
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        if not lines:
            return f"{type(self).__name__}({self.extra_repr()})"
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """A chain of modules: ``forward`` runs them in order, ``backward`` in reverse.

    The modules are registered as ``"0"``, ``"1"``, ...; ``model[i]`` returns
    one, ``model[i:j]`` a new ``Sequential`` sharing them, ``len(model)`` counts
    them.
    """

    def __init__(self, *modules):
        super().__init__()
        for i, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(
                    f"Sequential arguments must be Modules, got {type(module).__name__} at position {i}"
                )
            setattr(self, str(i), module)

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x

    def backward(self, grad_output):
        for module in reversed(self._modules.values()):
            grad_output = module.backward(grad_output)
        return grad_output

    def __getitem__(self, index):
        modules = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(*modules[index])
        return modules[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

"""Containers: ``Sequential`` and ``Identity``."""

from __future__ import annotations

from collections import OrderedDict

from .module import Module

__all__ = ["Sequential", "Identity"]


class Identity(Module):
    """Returns its input unchanged (and the gradient in backward)."""

    def forward(self, x):
        return x

    def backward(self, grad_out, input_grad=True):
        return grad_out if input_grad else None


class Sequential(Module):
    """Modules applied in order; backward runs them in reverse.

    Parameters
    ----------
    *modules : Module, or one OrderedDict of name -> Module
        Children are named ``"0"``, ``"1"``, ... (or by the dict's keys), so
        state-dict keys are PyTorch's (``"3.weight"``, ``"features.0.weight"``).

    Notes
    -----
    ``backward(grad, input_grad=False)`` stops at the first layer that has
    trainable parameters: layers before it (e.g. a frozen backbone) are not
    run backward at all, and the first trainable layer skips its own input
    gradient.  Indexing (``seq[i]``, negative too), ``len``, iteration,
    ``seq[i] = module`` and ``append`` work as in PyTorch.
    """

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            items = modules[0].items()
        else:
            items = ((str(i), m) for i, m in enumerate(modules))
        for name, m in items:
            if not isinstance(m, Module):
                raise TypeError(
                    f"Sequential: child {name!r} must be a Module, got {type(m).__name__}"
                )
            setattr(self, name, m)

    def _name(self, index):
        names = list(self._modules)
        if not isinstance(index, int):
            raise TypeError(f"Sequential indices must be integers, got {type(index).__name__}")
        if not -len(names) <= index < len(names):
            raise IndexError(f"index {index} is out of range for a Sequential of {len(names)}")
        return names[index]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return self._modules[self._name(index)]

    def __setitem__(self, index, module):
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: a child must be a Module, got {type(module).__name__}")
        setattr(self, self._name(index), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        """Add ``module`` at the end (named by its index); returns self."""
        if not isinstance(module, Module):
            raise TypeError(f"Sequential: a child must be a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def backward(self, grad_out, input_grad=True):
        mods = list(self._modules.values())
        stop = 0
        if not input_grad:  # nothing before the first trainable layer needs a gradient
            trainable = [i for i, m in enumerate(mods) if m.has_trainable()]
            if not trainable:
                return None
            stop = trainable[0]
        g = grad_out
        for i in range(len(mods) - 1, stop - 1, -1):
            g = mods[i].backward(g, input_grad=input_grad or i > stop)
        return g

"""Optimizers: ``SGD`` and ``Adam``, the same update rules as ``torch.optim``.

Both update ``Parameter.data`` in place from ``Parameter.grad``; a parameter
with ``requires_grad = False`` or no gradient is skipped (so freezing and
unfreezing after the optimizer was built both work).
"""

from __future__ import annotations

import numpy as np

from .module import Module, Parameter

__all__ = ["Optimizer", "SGD", "Adam"]


class Optimizer:
    """Base class: holds the parameters and per-parameter state.

    Parameters
    ----------
    params : Module or iterable of Parameter
        A module means all its parameters (``module.parameters()``).
    lr : float
    """

    def __init__(self, params, lr):
        if isinstance(params, Module):
            params = params.parameters()
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not isinstance(p, Parameter):
                raise TypeError(
                    f"{type(self).__name__}: params[{i}] is a {type(p).__name__}, "
                    "expected a Parameter (pass module.parameters())"
                )
        if not float(lr) > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        self.lr = float(lr)
        self.state = {}

    def zero_grad(self):
        """Set every parameter's gradient to None (PyTorch's ``set_to_none=True``)."""
        for p in self.params:
            p.grad = None

    def _active(self):
        for p in self.params:
            if p.requires_grad and p.grad is not None:
                yield p

    def step(self):
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    ``g = grad + weight_decay * p``; with momentum ``buf = g`` on the first
    step, then ``buf = momentum * buf + (1 - dampening) * g``; the step is
    ``buf`` (or ``g + momentum * buf`` with ``nesterov``); ``p -= lr * step``.

    Parameters
    ----------
    params : Module or iterable of Parameter
    lr : float
    momentum, dampening, weight_decay : float, optional
    nesterov : bool, optional
        Needs ``momentum > 0`` and ``dampening == 0``.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        super().__init__(params, lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError(
                f"momentum and weight_decay must be >= 0, got {momentum}, {weight_decay}"
            )
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov requires momentum > 0 and dampening == 0")
        self.momentum = float(momentum)
        self.dampening = float(dampening)
        self.weight_decay = float(weight_decay)
        self.nesterov = bool(nesterov)

    def step(self):
        """Update every trainable parameter that has a gradient."""
        for p in self._active():
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            if self.momentum:
                buf = self.state.get(id(p))
                if buf is None:
                    buf = self.state[id(p)] = np.array(g, copy=True)
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p.data -= (self.lr * g).astype(p.dtype, copy=False)


class Adam(Optimizer):
    """Adam, as ``torch.optim.Adam`` (L2 ``weight_decay`` added to the gradient;
    bias-corrected moments; ``eps`` added after the bias-corrected square root).

    Parameters
    ----------
    params : Module or iterable of Parameter
    lr : float, optional
    betas : (float, float), optional
    eps : float, optional
    weight_decay : float, optional
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        if weight_decay < 0 or eps < 0:
            raise ValueError(f"eps and weight_decay must be >= 0, got {eps}, {weight_decay}")
        self.betas = (float(b1), float(b2))
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)

    def step(self):
        """Update every trainable parameter that has a gradient."""
        b1, b2 = self.betas
        for p in self._active():
            g = p.grad
            if self.weight_decay:
                g = g + self.weight_decay * p.data
            st = self.state.get(id(p))
            if st is None:
                st = self.state[id(p)] = {
                    "step": 0,
                    "m": np.zeros_like(p.data),
                    "v": np.zeros_like(p.data),
                }
            st["step"] += 1
            t = st["step"]
            m, v = st["m"], st["v"]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * np.square(g)
            bc1 = 1 - b1**t
            bc2 = 1 - b2**t
            denom = np.sqrt(v) / np.sqrt(bc2) + self.eps
            p.data -= ((self.lr / bc1) * m / denom).astype(p.dtype, copy=False)

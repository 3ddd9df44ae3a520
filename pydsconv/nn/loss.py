"""Loss functions."""

from __future__ import annotations

import numpy as np

__all__ = ["CrossEntropyLoss", "log_softmax"]


def log_softmax(logits):
    """Numerically stable ``log(softmax(logits))`` along the last axis."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class CrossEntropyLoss:
    """Softmax cross-entropy from logits, as PyTorch's ``nn.CrossEntropyLoss``.

    ``loss = -mean_i log softmax(logits_i)[target_i]`` (``reduction="sum"``:
    the sum), computed with a shifted log-sum-exp, so large logits neither
    overflow nor lose precision.

    Parameters
    ----------
    reduction : "mean" or "sum", optional

    Examples
    --------
    >>> crit = CrossEntropyLoss()
    >>> loss = crit(logits, labels)        # a float  # doctest: +SKIP
    >>> grad_logits = crit.backward()      # d loss / d logits  # doctest: +SKIP
    """

    def __init__(self, reduction="mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self._cache = None

    def __call__(self, logits, target):
        return self.forward(logits, target)

    def forward(self, logits, target):
        """The loss (a Python float) of ``logits`` (N, classes) against integer ``target`` (N,)."""
        if not isinstance(logits, np.ndarray) or logits.ndim != 2:
            raise ValueError(
                "CrossEntropyLoss: logits must be a 2-D array (N, classes), got "
                f"{getattr(logits, 'shape', type(logits).__name__)}"
            )
        target = np.asarray(target)
        if target.dtype.kind not in "iu":
            raise TypeError(
                f"CrossEntropyLoss: target must hold integer class indices, got "
                f"dtype {target.dtype}"
            )
        n, k = logits.shape
        if target.shape != (n,):
            raise ValueError(f"CrossEntropyLoss: target must have shape ({n},), got {target.shape}")
        if n and (target.min() < 0 or target.max() >= k):
            raise ValueError(
                f"CrossEntropyLoss: target values must be in [0, {k}), got "
                f"[{target.min()}, {target.max()}]"
            )
        logp = log_softmax(logits)
        picked = logp[np.arange(n), target]
        self._cache = (logp, target)
        total = -float(picked.sum(dtype=np.float64))
        return total / n if self.reduction == "mean" else total

    def backward(self):
        """Gradient of the last loss w.r.t. the logits: ``(softmax - onehot) / N`` for the mean."""
        if self._cache is None:
            raise RuntimeError("CrossEntropyLoss.backward() called before computing a loss")
        logp, target = self._cache
        n = logp.shape[0]
        grad = np.exp(logp)
        grad[np.arange(n), target] -= 1
        if self.reduction == "mean" and n:
            grad /= n
        return grad

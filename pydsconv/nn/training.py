"""Minimal training-loop helpers: mini-batches, one epoch, prediction, accuracy."""

from __future__ import annotations

import numpy as np

from ._util import as_rng, check_int

__all__ = ["minibatches", "train_epoch", "predict", "accuracy"]


def minibatches(n, batch_size, rng=None, shuffle=True):
    """Index arrays covering ``range(n)`` in batches of ``batch_size`` (the last may be smaller)."""
    batch_size = check_int("batch_size", batch_size)
    order = as_rng(rng).permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_epoch(model, optimizer, criterion, x, y, batch_size, rng=None, progress=None):
    """One pass over ``(x, y)`` in shuffled mini-batches; returns the mean loss.

    Each step: forward, loss, ``optimizer.zero_grad()``, ``model.backward(..,
    input_grad=False)`` (layers before the first trainable one are skipped),
    ``optimizer.step()``.  ``progress`` (e.g. a tqdm bar) gets ``update(len(batch))``
    and ``set_postfix(loss=...)`` when given.  The model's modes are left as
    they are (call ``model.train()`` first, and ``.eval()`` on frozen parts).
    """
    total, count = 0.0, 0
    for idx in minibatches(len(x), batch_size, rng):
        xb = np.ascontiguousarray(x[idx])
        loss = criterion(model(xb), y[idx])
        optimizer.zero_grad()
        model.backward(criterion.backward(), input_grad=False)
        optimizer.step()
        total += loss * len(idx)
        count += len(idx)
        if progress is not None:
            progress.update(len(idx))
            progress.set_postfix(loss=f"{loss:.4f}", refresh=False)
    return total / max(count, 1)


def predict(model, x, batch_size=256):
    """Logits of ``model`` on ``x`` in eval mode (every module's mode is restored after)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        outs = [
            model(np.ascontiguousarray(x[i : i + batch_size])) for i in range(0, len(x), batch_size)
        ]
    finally:
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
    return np.concatenate(outs) if outs else np.zeros((0, 0))


def accuracy(model, x, y, batch_size=256):
    """Fraction of ``x`` whose arg-max logit equals ``y``."""
    return float(np.mean(predict(model, x, batch_size).argmax(axis=1) == np.asarray(y)))

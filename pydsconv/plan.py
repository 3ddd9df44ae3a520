"""``pydsconv.Plan``: a whole network compiled into one C++ object.

Made by :func:`pydsconv.nn.compile`; see its docstring for what a plan
holds and which compile-time passes built it.
"""

from __future__ import annotations

import operator

import numpy as np

__all__ = ["Plan"]


class Plan:
    """A network compiled for one input shape, run in one C++ call.

    Not constructed directly: :func:`pydsconv.nn.compile` returns one.  A plan
    is immutable, safe to call from several Python threads at once (each call
    takes its activation memory from its own thread's arena), releases the
    GIL while it runs, and gives the same bits for any thread count.
    Call it as ``plan(x, out=None)``; ``plan.summary()`` describes its steps
    (one line each: op, shapes, MACs, what was fused into it),
    ``plan.profile(x, repeats=10)`` times them and ``plan.steps()`` lists them.

    Attributes
    ----------
    input_shape, output_shape : tuple of int
        In the caller's ``layout`` (the output is ``(N, features)`` after a
        pooling or flattening head).
    layout : "NCHW" or "NHWC"
    dtype : numpy.dtype
        float32 or float64, the model's.
    num_threads : int or None
        As given to ``compile``; None follows :func:`pydsconv.set_num_threads`.
    arena_bytes : int
        Activation memory one call uses (every intermediate tensor at an
        offset planned from the tensors' lifetimes, plus the scratch of a
        standard convolution's im2col or of squeeze-and-excitation), reused
        by later calls of the thread.
    """

    __slots__ = ("_core",)

    def __init__(self, core):
        object.__setattr__(self, "_core", core)

    def __setattr__(self, name, value):
        raise AttributeError("a Plan is immutable")

    @property
    def input_shape(self):
        return self._core.input_shape

    @property
    def output_shape(self):
        return self._core.output_shape

    @property
    def layout(self):
        return self._core.layout

    @property
    def dtype(self):
        return np.dtype(self._core.dtype)

    @property
    def num_threads(self):
        return self._core.num_threads or None

    @property
    def arena_bytes(self):
        return self._core.arena_bytes

    def __call__(self, x, *, out=None):
        """Run the network on ``x``.

        Parameters
        ----------
        x : numpy.ndarray
            Exactly :attr:`input_shape` and :attr:`dtype` (TypeError for
            another dtype, ValueError naming the expected shape otherwise).
            C-contiguous arrays are read in place; others are copied once.
        out : numpy.ndarray, optional
            C-contiguous, writable, of :attr:`output_shape` and :attr:`dtype`,
            not overlapping ``x``; then nothing is allocated and ``out`` is
            returned.

        Returns
        -------
        numpy.ndarray
            The output, in the caller's layout.
        """
        return self._core.run(x, out)

    def steps(self):
        """The executed steps, in order: a list of dicts with ``op``,
        ``name`` (the layers it came from), ``fused`` (what compile-time
        passes folded into it), ``in_shape``, ``out_shape`` (NHWC inside the
        plan) and ``macs``."""
        return self._core.steps()

    def summary(self):
        """A table with one line per executed step: op, layers, input and
        output shapes, multiply-accumulates and what was fused into it.

        Returns
        -------
        str
            A header line, then one line per step.
        """
        steps = self.steps()
        total = sum(s["macs"] for s in steps)
        threads = self.num_threads or "default"
        lines = [
            f"Plan {self.input_shape} -> {self.output_shape}, {self.dtype.name} "
            f"{self.layout}, {len(steps)} steps, {total:,} MACs, "
            f"{self.arena_bytes:,} arena bytes, threads {threads}"
        ]
        for i, s in enumerate(steps):
            shapes = f"{s['in_shape']} -> {s['out_shape']}"
            fused = f"  [{s['fused']}]" if s["fused"] else ""
            lines.append(
                f"{i:3d}  {s['op']:<15} {s['name']:<30} {shapes:<40} {s['macs']:>14,} MACs{fused}"
            )
        return "\n".join(lines)

    def profile(self, x, repeats=10):
        """Time every step over ``repeats`` runs of the whole plan on ``x``.

        Parameters
        ----------
        x : numpy.ndarray
            As for a call.
        repeats : int, optional
            Runs (>= 1); each step's time is taken in every run.

        Returns
        -------
        list of dict
            One per step (as :meth:`steps`), with ``seconds`` (the median
            over the runs) and ``min_seconds`` added.
        """
        try:
            repeats = operator.index(repeats)
        except TypeError:
            raise TypeError(f"repeats must be an int, got {repeats!r}") from None
        times = np.asarray(self._core.profile(x, repeats)).reshape(repeats, -1)
        result = []
        for s, column in zip(self.steps(), times.T):
            s["seconds"] = float(np.median(column))
            s["min_seconds"] = float(column.min())
            result.append(s)
        return result

    def __repr__(self):
        return (
            f"Plan(input_shape={self.input_shape}, output_shape={self.output_shape}, "
            f"dtype={self.dtype.name}, layout={self.layout!r}, steps={len(self.steps())})"
        )

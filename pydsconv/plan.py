"""``pydsconv.Plan``: a whole network compiled into one C++ object.

Made by :func:`pydsconv.nn.compile`; see its docstring for what a plan
holds and which compile-time passes built it.
"""

from __future__ import annotations

import operator
import os
import struct

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

    ``plan.save(path)`` writes the plan's steps to a file that
    :meth:`Plan.load` and the C++ ``pydsconv-bench --plan`` read back.
    """

    __slots__ = ("_core", "_specs")

    def __init__(self, core, specs=None):
        object.__setattr__(self, "_core", core)
        object.__setattr__(self, "_specs", specs)

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

    def save(self, path):
        """Write the plan's step list (its weights after BatchNorm folding,
        unpacked) to the file ``path``, for :meth:`Plan.load` and
        ``pydsconv-bench --plan``.

        The format (version 1, described in ``cpp/plan_file.h``): the 8 bytes
        ``PYDSPLAN``, the format version and the header's length (uint32
        little-endian each), an ASCII header (one ``key value`` a line: dtype,
        layout, input shape, then each step's kind, names, geometry,
        activations and arrays), then the arrays, little-endian, C order,
        each at a 64-byte aligned offset.

        Parameters
        ----------
        path : str or os.PathLike
        """
        if self._specs is None:
            raise ValueError("save: this plan has no step list to save")
        dt = np.dtype(self.dtype).newbyteorder("<")
        header, blobs = [], []
        offset = 0  # of the next array, relative to the data section

        def line(key, *values):
            text = " ".join(str(v) for v in values)
            header.append(f"{key} {text}".rstrip(" ") if values else key)

        def words(text):  # names and fused lists: one line each
            return " ".join(str(text).split())

        line("dtype", self.dtype.name)
        line("layout", self.layout)
        line("input_shape", *self.input_shape)
        line("steps", len(self._specs))
        arrays = []
        for spec in self._specs:
            if len(spec) not in (10, 11):
                raise ValueError(
                    f"save: a step spec of {len(spec)} fields; plan file version 1 "
                    "stores compiler.py's (kind, name, fused, stride, dilation, "
                    "pad_mode, pad, mid_act, act, arrays[, skip])"
                )
            kind, name, fused, stride, dilation, pad_mode, pad, mid_act, act, arrs = spec[:10]
            skip = spec[10] if len(spec) == 11 else -1
            line("step", kind)
            line("name", words(name))
            line("fused", words(fused))
            line("stride", *stride)
            line("dilation", *dilation)
            line("pad_mode", pad_mode)
            line("pad", *pad)
            line("mid_act", mid_act or "none")
            line("act", act or "none")
            line("skip", skip)
            line("arrays", len(arrs))
            for a in arrs:
                if a is None:
                    line("array", "none")
                    continue
                a = np.ascontiguousarray(a, dtype=dt)
                line("array", "@", a.nbytes, a.ndim, *a.shape)  # offset filled in below
                arrays.append((len(header) - 1, a))
                blobs.append(a)
        line("end")
        # The data section starts at the first 64-byte boundary after the
        # header; the header's length depends on the offsets written into it,
        # so place the arrays against a generous estimate of it.
        estimate = sum(len(h) + 1 for h in header) + 24 * len(arrays)
        start = -(-(16 + estimate) // 64) * 64
        offset = start
        for i, a in arrays:
            header[i] = header[i].replace("@", str(offset), 1)
            offset += -(-a.nbytes // 64) * 64
        text = ("\n".join(header) + "\n").encode("ascii", errors="replace")
        assert 16 + len(text) <= start
        with open(os.fspath(path), "wb") as f:
            f.write(b"PYDSPLAN" + struct.pack("<II", 1, len(text)) + text)
            f.write(b"\0" * (start - 16 - len(text)))
            for a in blobs:
                f.write(a.tobytes())
                f.write(b"\0" * (-a.nbytes % 64))

    @classmethod
    def load(cls, path, *, batch=None, num_threads=None):
        """A plan from a file written by :meth:`save`, read by the C++ reader
        that ``pydsconv-bench --plan`` uses.

        Parameters
        ----------
        path : str or os.PathLike
        batch : int, optional
            Another batch size than the saved plan's.
        num_threads : int, optional
            As for :func:`pydsconv.nn.compile` (the saved plan's count is not
            kept).

        Raises
        ------
        ValueError
            A file that is not a plan file, of another format version,
            truncated or inconsistent, or one that cannot be read (the
            message names the file and what is wrong).
        """
        from . import _core
        from .conv import _threads

        dtype, layout, shape, specs = _core.read_plan_file(os.fspath(path))
        shape = tuple(shape)
        if batch is not None:
            b = operator.index(batch)
            if b < 0:
                raise ValueError(f"batch must be >= 0, got {batch!r}")
            shape = (b,) + shape[1:]
        core = _core.compile_plan(specs, shape, layout, dtype == "float64", _threads(num_threads))
        return cls(core, specs)

    def __repr__(self):
        return (
            f"Plan(input_shape={self.input_shape}, output_shape={self.output_shape}, "
            f"dtype={self.dtype.name}, layout={self.layout!r}, steps={len(self.steps())})"
        )

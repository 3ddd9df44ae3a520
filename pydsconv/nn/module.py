"""``Parameter`` and ``Module``: the base of every layer.

A module owns parameters (trainable arrays with a gradient), buffers
(state that is saved but not trained, e.g. BatchNorm's running statistics)
and child modules, all registered by attribute assignment as in PyTorch, so
``state_dict()`` names are PyTorch's (``"features.0.weight"``).

Forward and backward are explicit: ``y = m(x)`` (or ``m.forward(x)``) caches
what the backward pass needs, and ``gx = m.backward(gy)`` returns the
gradient w.r.t. the input and **accumulates** each trainable parameter's
gradient into ``param.grad`` (call ``zero_grad()`` between steps, or let the
optimizer do it).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import secrets
import zipfile
import zlib
from collections import OrderedDict

import numpy as np

from ._util import check_dtype

__all__ = ["Parameter", "Module", "save", "load", "load_metadata"]

_METADATA_KEY = "__metadata__"
_SAME_KIND = {"f": "f", "i": "iu", "u": "iu"}  # value kinds a target kind takes
_KIND_NAMES = {"f": "floating", "i": "integer", "u": "integer"}
_NOT_A_CHECKPOINT = "is not a pydsconv checkpoint (an .npz file written by pydsconv.nn.save)"


class Parameter:
    """A trainable array and its gradient.

    Parameters
    ----------
    data : ndarray
        The value (float32 or float64), used in place: layers read
        ``param.data`` and optimizers update it in place.
    requires_grad : bool, optional
        False freezes the parameter: layers skip computing its gradient and
        optimizers leave it unchanged.

    Attributes
    ----------
    grad : ndarray or None
        Accumulated gradient, same shape and dtype as ``data``; None until a
        backward pass produces one (and after ``zero_grad()``).
    """

    __slots__ = ("data", "grad", "requires_grad")

    def __init__(self, data, requires_grad=True):
        data = np.asarray(data)
        check_dtype(data.dtype)
        self.data = np.ascontiguousarray(data)
        self.grad = None
        self.requires_grad = bool(requires_grad)

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def accumulate(self, grad):
        """Add ``grad`` to ``self.grad`` (a no-op when ``grad`` is None)."""
        if grad is None:
            return
        grad = grad.reshape(self.data.shape)
        if self.grad is None:
            self.grad = np.array(grad, dtype=self.data.dtype, copy=True)
        else:
            self.grad += grad

    def __repr__(self):
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{frozen})"


class Module:
    """Base class of every layer and model.

    Subclasses set parameters, buffers and child modules as attributes
    (``self.weight = Parameter(...)``, ``self.register_buffer("running_mean",
    arr)``, ``self.block = Conv2d(...)``) and implement ``forward(x)`` and
    ``backward(grad_out, input_grad=True)``.

    Attributes
    ----------
    training : bool
        True after ``train()`` (the default), False after ``eval()``.
        Changes BatchNorm (batch vs running statistics), Dropout, and
        :class:`SeparableConv2d` (composed vs fused forward).
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}.__init__ must call super().__init__() "
                f"before setting {name!r}"
            )
        if isinstance(value, Parameter):
            target = self._parameters
        elif isinstance(value, Module):
            target = self._modules
        elif name in self.__dict__.get("_buffer_names", ()):
            target = self._buffers
        else:
            target = None
        for table in (self._parameters, self._buffers, self._modules):
            if table is not target:
                table.pop(name, None)
        if target is not None:
            target[name] = value  # an existing key keeps its place (state-dict order)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name, value):
        """Register ``value`` (an ndarray) as state saved in ``state_dict()`` but not trained."""
        self.__dict__.setdefault("_buffer_names", set()).add(name)
        setattr(self, name, value)

    # -- calling -----------------------------------------------------------
    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad_out, input_grad=True):
        """Back-propagate ``grad_out`` (the gradient w.r.t. the last forward output).

        Accumulates the gradients of trainable parameters into ``.grad`` and
        returns the gradient w.r.t. the input (None if ``input_grad`` is
        False, which lets a layer skip that computation).
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def _saved(self, name="_x"):
        """The cache of the last forward pass, or a clear error if there is none."""
        value = self.__dict__.get(name)
        if value is None:
            raise RuntimeError(
                f"{self!r}: backward() called before forward(); run a forward "
                "pass first (backward uses the input it saved)"
            )
        return value

    # -- traversal ---------------------------------------------------------
    def named_children(self):
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix=""):
        """(name, module) for this module and every descendant, depth first."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix=""):
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self):
        """Every parameter (frozen ones included), in registration order."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self, prefix=""):
        for mname, m in self.named_modules(prefix):
            for bname, b in m._buffers.items():
                yield (f"{mname}.{bname}" if mname else bname), b

    def num_parameters(self, trainable_only=False):
        """Number of scalars in the parameters (buffers are not parameters)."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    def has_trainable(self):
        """Whether any parameter of this module or its children requires a gradient."""
        return any(p.requires_grad for p in self.parameters())

    # -- modes ---------------------------------------------------------------
    def train(self, mode=True):
        """Set training mode (``mode=False`` is :meth:`eval`) here and in every child; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Inference mode: BatchNorm uses running statistics, Dropout is off,
        SeparableConv2d runs the fused op.  Returns self."""
        return self.train(False)

    def freeze(self):
        """``requires_grad = False`` on every parameter: no gradient is computed
        for them and optimizers skip them.  BatchNorm running statistics still
        update in training mode; call ``.eval()`` on the frozen part too to
        keep them fixed (as in PyTorch).  Returns self."""
        for p in self.parameters():
            p.requires_grad = False
        return self

    def unfreeze(self):
        """``requires_grad = True`` on every parameter.  Returns self."""
        for p in self.parameters():
            p.requires_grad = True
        return self

    def zero_grad(self):
        """Reset every parameter's gradient to None."""
        for p in self.parameters():
            p.grad = None

    # -- dtype -----------------------------------------------------------------
    def to(self, dtype):
        """Convert parameters and floating buffers to ``dtype`` (float32 or float64) in place; returns self."""
        dt = check_dtype(dtype)
        for m in self.modules():
            for p in m._parameters.values():
                p.data = np.ascontiguousarray(p.data, dtype=dt)
                p.grad = None if p.grad is None else p.grad.astype(dt)
            for name, b in list(m._buffers.items()):
                if isinstance(b, np.ndarray) and b.dtype.kind == "f":
                    setattr(m, name, b.astype(dt))
            m._on_dtype(dt)
        return self

    def _on_dtype(self, dtype):
        """Hook for layers holding other dtype-dependent constants."""

    @property
    def dtype(self):
        """The dtype of the first parameter (None for a module without parameters)."""
        for p in self.parameters():
            return p.dtype
        return None

    def copy(self):
        """A deep copy (parameters, buffers and caches are copied)."""
        return copy.deepcopy(self)

    # -- state ---------------------------------------------------------------
    def state_dict(self):
        """Parameters and buffers by PyTorch-style dotted name.

        The arrays are the module's own (not copies), as PyTorch's tensors
        share storage: copy them before changing them if the module must
        not see the change.
        """
        state = OrderedDict()
        for mname, m in self.named_modules():
            prefix = f"{mname}." if mname else ""
            for pname, p in m._parameters.items():
                state[prefix + pname] = p.data
            for bname, b in m._buffers.items():
                state[prefix + bname] = b
        return state

    def load_state_dict(self, state, strict=True):
        """Copy arrays from ``state`` into this module's parameters and buffers, in place.

        Everything is checked before anything is written: when an error is
        raised, the module is unchanged.

        Parameters
        ----------
        state : mapping of name -> array
            E.g. another module's ``state_dict()``, a PyTorch state dict
            converted with ``.numpy()``, or :func:`load`'s result.
        strict : bool, optional
            Whether a missing or unexpected key is an error.

        Returns
        -------
        (missing_keys, unexpected_keys) : (list of str, list of str)

        Raises
        ------
        KeyError
            With ``strict``, a missing or unexpected key (all are listed).
        ValueError
            A shape that differs from the module's (naming the key).
        TypeError
            A value whose kind differs from the module's: a floating
            parameter or buffer takes floating values only (bool, integer,
            complex or object arrays are refused, naming the key); float
            precision is converted (float64 into float32 and back).
        """
        own = self.state_dict()
        state = {k: v for k, v in state.items() if k != _METADATA_KEY}
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        checked = []
        for key, target in own.items():
            if key not in state:
                continue
            value = np.asarray(state[key])
            if value.shape != np.shape(target):
                raise ValueError(
                    f"load_state_dict: {key!r} has shape {value.shape}, expected {np.shape(target)}"
                )
            want = np.asarray(target).dtype
            if value.dtype.kind not in _SAME_KIND.get(want.kind, want.kind):
                raise TypeError(
                    f"load_state_dict: {key!r} has dtype {value.dtype}, expected "
                    f"{_KIND_NAMES.get(want.kind, str(want))} values like {want} "
                    "(pydsconv never casts them silently)"
                )
            checked.append((target, value))
        for target, value in checked:
            np.copyto(target, value, casting="unsafe")
        return missing, unexpected

    def save(self, path, metadata=None):
        """Save ``state_dict()`` to an ``.npz`` file; returns the path written (see :func:`save`)."""
        return save(self, path, metadata)

    def load(self, path, strict=True):
        """Load an ``.npz`` file written by :meth:`save` into this module; returns self.

        See :func:`load` and :meth:`load_state_dict` for the errors; on an
        error the module is unchanged.
        """
        self.load_state_dict(load(path), strict=strict)
        return self

    # -- printing -------------------------------------------------------------
    def extra_repr(self):
        return ""

    def __repr__(self):
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._modules:
            return head + ")"
        lines = [head]
        for name, child in self._modules.items():
            text = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {text}")
        return "\n".join(lines) + "\n)"


def save(module_or_state, path, metadata=None):
    """Write a module's ``state_dict()`` (or a state dict) to ``path`` (``.npz``), atomically.

    The arrays go to a temporary file in the same directory, which is
    flushed to disk and then renamed over ``path``: a save that is
    interrupted (an exception, Ctrl-C, a killed process, a full disk) leaves
    any previous file at ``path`` intact, never a partial one.  (A killed
    process may leave its temporary ``.<name>.<random>.tmp`` file behind.)

    Parameters
    ----------
    module_or_state : Module or mapping of name -> ndarray
    path : str, path-like or writable binary file object
        ``.npz`` is appended if the name lacks it (as NumPy does).  A file
        object is written as it is (not atomically).
    metadata : dict, optional
        JSON-serialisable data (e.g. the model's configuration) stored
        alongside under the key ``"__metadata__"``; read it back with
        :func:`load_metadata`.  Loading weights ignores it.

    Returns
    -------
    str or file object
        The path actually written (with ``.npz``), or the file object.
    """
    state = module_or_state.state_dict() if isinstance(module_or_state, Module) else module_or_state
    arrays = {k: np.asarray(v) for k, v in state.items()}
    if metadata is not None:
        arrays[_METADATA_KEY] = np.array(json.dumps(metadata))
    if hasattr(path, "write"):
        np.savez(path, **arrays)
        return path
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    head, name = os.path.split(path)
    tmp = os.path.join(head, f".{name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@contextlib.contextmanager
def _open(path):
    """``np.load(path)`` as an open NpzFile; a ValueError naming ``path`` if it is not one.

    A missing file, a directory or a permission problem stays the usual OSError.
    """
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile):  # ValueError: not .npy/.npz (a pickle?)
        raise ValueError(f"{os.fspath(path)!r} {_NOT_A_CHECKPOINT}") from None
    if isinstance(f, np.ndarray):
        raise ValueError(
            f"{os.fspath(path)!r} {_NOT_A_CHECKPOINT}: it holds a single array "
            "(.npy), not named arrays"
        )
    with f:
        other = [name for name in f.zip.namelist() if not name.endswith(".npy")]
        if other:
            raise ValueError(
                f"{os.fspath(path)!r} {_NOT_A_CHECKPOINT}: it holds {other[0]!r}, not an array"
            )
        yield f


def _read(f, key, path):
    """The array ``key`` of the open NpzFile ``f``, refusing object arrays and damaged members."""
    try:
        with f.zip.open(key + ".npy") as m:  # the header alone: its dtype
            version = np.lib.format.read_magic(m)
            read = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            dtype = read(m)[2]
        if dtype.hasobject:
            raise TypeError(
                f"{os.fspath(path)!r}: {key!r} holds Python objects (dtype "
                f"{dtype}), which pydsconv never unpickles; a checkpoint holds "
                "numeric arrays only"
            )
        return f[key]
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{os.fspath(path)!r} {_NOT_A_CHECKPOINT}: {exc}") from None


def load(path):
    """Read a state dict saved by :func:`save` (metadata excluded).

    Parameters
    ----------
    path : str or path-like
        The ``.npz`` file (the name :func:`save` returned).

    Returns
    -------
    OrderedDict of name -> ndarray

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError
        As ``open`` raises them.
    ValueError
        ``path`` is not a checkpoint (not an ``.npz`` file, a single ``.npy``
        array, a truncated or damaged file), naming it.  Pickled data is
        never loaded.
    TypeError
        An array of Python objects (naming its key).
    """
    with _open(path) as f:
        return OrderedDict((k, _read(f, k, path)) for k in f.files if k != _METADATA_KEY)


def load_metadata(path):
    """The ``metadata`` dict stored by :func:`save`, or ``{}`` if there is none.

    Raises the errors of :func:`load`.
    """
    with _open(path) as f:
        if _METADATA_KEY not in f.files:
            return {}
        return json.loads(str(_read(f, _METADATA_KEY, path)))

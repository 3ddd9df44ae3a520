"""pydsconv: fast depthwise separable convolution for Python on the CPU.

Ops (NumPy in, NumPy out, zero-copy for C-contiguous inputs):
``depthwise_conv2d``, ``pointwise_conv2d``, ``separable_conv2d`` (fused),
their ``*_backward``, and the 1-D twins ``*_conv1d``.  Submodules:
``reference`` (the NumPy oracle), ``weights`` (Keras <-> PyTorch layouts),
``cost`` (MACs and parameters, MobileNet figures).  Whole networks:
``pydsconv.nn.compile`` returns a ``Plan`` (one C++ call per inference).
"""

from __future__ import annotations

import warnings as _warnings

try:
    from . import _core
except ImportError as _exc:  # a source checkout without a build shadows the installed package
    import os as _os

    raise ImportError(
        f"pydsconv's compiled extension _core was not found next to {_os.path.dirname(__file__)}. "
        "If this is the source tree, you are importing it instead of the installed package: "
        "run from another directory (or use the `pydsconv` command), or build in place "
        "(see README, Development)."
    ) from _exc
from . import cost, reference, weights  # noqa: E402  (submodules users reach as attributes)
from ._core import PackedPointwise as PackedPointwise  # noqa: E402  (prepack_pointwise's result type)
from .conv import (
    depthwise_conv1d,
    depthwise_conv1d_backward,
    depthwise_conv2d,
    depthwise_conv2d_backward,
    pointwise_conv1d,
    pointwise_conv1d_backward,
    pointwise_conv2d,
    pointwise_conv2d_backward,
    prepack_pointwise,
    separable_conv1d,
    separable_conv2d,
)
from .plan import Plan  # noqa: E402  (pydsconv.nn.compile's result type)

__version__ = _core.__version__  # one source: pyproject.toml, compiled into _core

__all__ = [
    "depthwise_conv2d",
    "pointwise_conv2d",
    "separable_conv2d",
    "depthwise_conv2d_backward",
    "pointwise_conv2d_backward",
    "depthwise_conv1d",
    "pointwise_conv1d",
    "separable_conv1d",
    "depthwise_conv1d_backward",
    "pointwise_conv1d_backward",
    "prepack_pointwise",
    "Plan",
    "set_num_threads",
    "get_num_threads",
    "cpu_features",
    "cost",
    "reference",
    "weights",
]


def set_num_threads(n: int) -> None:
    """Set the default number of threads for every op.

    Parameters
    ----------
    n : int
        A positive count.  Above ``cpu_features()["max_threads"]`` (4 x the
        usable cores) it is capped there with a RuntimeWarning;
        ``cpu_features()["num_threads_requested"]`` keeps the value asked for.
    """
    from .conv import _thread_count, _thread_request

    requested = _thread_request("n", n)
    _thread_count("n", requested)  # the warning when capped
    _core.set_num_threads(min(requested, 2**31 - 1))


def get_num_threads() -> int:
    """The default number of threads, in [1, ``cpu_features()["max_threads"]``].

    ``OMP_NUM_THREADS`` if set to a valid count (capped at the limit, with a
    RuntimeWarning at import), else the usable cores; then whatever
    :func:`set_num_threads` set.  A process forked after a multithreaded call
    runs every call on one thread (``cpu_features()["fork_single_threaded"]``).
    """
    return _core.get_num_threads()


def cpu_features() -> dict:
    """The kernel set in use and what the CPU offers.

    Returns a dict: ``isa`` ("avx512", "avx2" or "scalar") chosen at import by
    CPUID + OS support (``PYDSCONV_ISA`` may force a lower one), ``best_isa``,
    the flags ``avx2``, ``fma``, ``avx512f``, the ISAs ``compiled`` in, and
    whether ``openmp`` is available.  Threads: ``usable_cores`` (CPU
    affinity), ``max_threads`` (4 x those: no call runs more),
    ``num_threads_requested`` (the default as asked, before that cap),
    ``thread_creation_failed`` (the last team size the OS refused to create,
    0 if none; calls then run the threads it could create) and
    ``fork_single_threaded`` (True in a child forked after a multithreaded
    call: OpenMP's threads do not exist there, so calls run on one thread).
    """
    return dict(_core.cpu_features())


for _key in ("env_warning", "env_threads_warning"):
    if _core.cpu_features()[_key]:
        _warnings.warn(_core.cpu_features()[_key], RuntimeWarning, stacklevel=2)
del _key

"""Which kernel paths a call took, from the private trace in ``_core``
(cpp/trace.h): tests aimed at one path assert that they reach it, so a
moved threshold in cpp/heuristics.h cannot route them through another."""

import contextlib

import numpy as np

from pydsconv import _core

# Vector bytes of each kernel set (avx512emu: the 64-byte kernels built for AVX2).
VEC_BYTES = {"scalar": 16, "avx2": 32, "avx512": 64, "avx512emu": 64}


def lanes(isa, dtype):
    """Elements of ``dtype`` in one vector of kernel set ``isa``."""
    return VEC_BYTES[isa] // np.dtype(dtype).itemsize


@contextlib.contextmanager
def taken():
    """Collects the paths taken inside the block: a dict path -> calls
    (paths not taken are left out), filled when the block ends."""
    _core._reset_path_counts()
    counts = {}
    yield counts
    counts.update({k: v for k, v in _core._path_counts().items() if v})

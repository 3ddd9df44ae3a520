"""Shared fixtures: every ISA the host runs, random data, tolerances."""

import numpy as np
import pytest

import pydsconv
from pydsconv import _core

_ORDER = ["scalar", "avx2", "avx512"]


def host_isas():
    """The kernel sets this machine can run (scalar up to the best one, and
    avx512emu where it was compiled in).

    PYDSCONV_TEST_ISAS (a comma-separated list, e.g. "scalar,best") keeps only
    those of them ("best": the host's best): CI's sanitizer run uses it to
    skip the middle ISA on AVX-512 hosts, whose kernels the plain runs and
    the sanitized bench --check still cover.
    """
    import os

    features = pydsconv.cpu_features()
    best = features["best_isa"]
    isas = _ORDER[: _ORDER.index(best) + 1]
    # The AVX-512 kernels built for AVX2 (CMake PYDSCONV_EMULATED_AVX512).
    if "avx512emu" in features["compiled"] and features["avx2"]:
        isas.append("avx512emu")
    keep = os.environ.get("PYDSCONV_TEST_ISAS")
    if keep:
        wanted = {best if w.strip() == "best" else w.strip() for w in keep.split(",")}
        isas = [i for i in isas if i in wanted] or isas
    return isas


@pytest.fixture(params=host_isas())
def isa(request):
    """Runs the test once per ISA the host has, restoring the default after."""
    before = pydsconv.cpu_features()["isa"]
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa(before)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def rand(rng, shape, dtype):
    return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)


def tol(dtype):
    """(rtol, atol) for comparing against the float64 reference."""
    return (1e-10, 1e-11) if np.dtype(dtype) == np.float64 else (2e-5, 2e-5)


def assert_close(actual, expected, dtype=None):
    dtype = dtype or expected.dtype
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    rtol, atol = tol(dtype)
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


def to_nhwc(a):
    return np.ascontiguousarray(np.moveaxis(a, 1, -1))


def python_env(env=None):
    """os.environ for a subprocess that imports the same pydsconv as these
    tests; ``env`` entries override it (None removes a variable)."""
    import os

    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(pydsconv.__file__)))
    full_env = dict(os.environ)
    for key, value in (env or {}).items():  # None removes a variable
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    full_env["PYTHONPATH"] = pkg_parent + os.pathsep + full_env.get("PYTHONPATH", "")
    return full_env


def run_python(code, args=(), env=None, timeout=300):
    """Runs ``code`` in a fresh interpreter that imports the same pydsconv as
    these tests (in-place build or installed), from a neutral directory.

    Use it for every subprocess test: running with cwd at the repo root would
    import the source tree, which has no compiled extension in a fresh clone.
    ``args`` become sys.argv[1:]; ``env`` entries override os.environ (None
    removes a variable).
    Returns the CompletedProcess (text mode); check returncode yourself.
    """
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run(
            [sys.executable, "-c", code, *map(str, args)],
            env=python_env(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def start_python(code, cwd, args=(), env=None):
    """Like :func:`run_python`, but started in the background (for tests that
    signal it): a ``subprocess.Popen`` in ``cwd`` (a temporary directory, not
    the repo root) with text-mode stdout and stderr pipes."""
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=python_env(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

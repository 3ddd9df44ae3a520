"""pydsconv in the life of a process: fork, interpreter exit, the thread limit,
thread-creation failure, and odd environment values.

Each case runs in a fresh interpreter (``run_python``) with a timeout, so a
hang or a process killed by the OpenMP runtime is a clear failure here, not a
stuck or dead test run.
"""

import json
import os
import sys

import numpy as np
import pytest
from conftest import run_python

import pydsconv

# Subprocesses (fork, exit, limits): run once, not under the sanitizers.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)"),
]

_OPENMP = pydsconv.cpu_features()["openmp"]


def _child(code, *args, env=None, timeout=300):
    r = run_python(
        code,
        args=args,
        env={"OMP_NUM_THREADS": None, "PYDSCONV_ISA": None, **(env or {})},
        timeout=timeout,
    )
    return r


# Every op family on small arrays, checked against the NumPy reference.
_OPS = r"""
import numpy as np, pydsconv
from pydsconv import reference as ref

def problems():
    rng = np.random.default_rng(7)
    r = lambda *s: rng.uniform(-1, 1, s).astype(np.float32)
    x, dw, pw, gy = r(2, 16, 24, 24), r(32, 1, 3, 3), r(8, 32), r(2, 32, 24, 24)
    x1, dw1, gy1 = r(2, 16, 40), r(16, 1, 5), r(2, 16, 40)
    packed = pydsconv.prepack_pointwise(pw)
    return {
        "depthwise_conv2d": (lambda t: pydsconv.depthwise_conv2d(x, dw, padding=1, num_threads=t),
                             lambda: ref.depthwise_conv2d(x, dw, padding=1)),
        "depthwise_conv2d_nhwc": (
            lambda t: pydsconv.depthwise_conv2d(np.moveaxis(x, 1, -1).copy(), dw, padding=1,
                                                layout="NHWC", num_threads=t),
            lambda: ref.depthwise_conv2d(np.moveaxis(x, 1, -1).copy(), dw, padding=1,
                                         layout="NHWC")),
        "pointwise_conv2d": (lambda t: pydsconv.pointwise_conv2d(gy, pw, num_threads=t),
                             lambda: ref.pointwise_conv2d(gy, pw)),
        "pointwise_prepacked": (lambda t: pydsconv.pointwise_conv2d(gy, packed, num_threads=t),
                                lambda: ref.pointwise_conv2d(gy, pw)),
        "separable_conv2d": (
            lambda t: pydsconv.separable_conv2d(x, dw, pw, padding=1, num_threads=t),
            lambda: ref.separable_conv2d(x, dw, pw, padding=1)),
        "depthwise_conv2d_backward": (
            lambda t: pydsconv.depthwise_conv2d_backward(gy, x, dw, padding=1, num_threads=t),
            lambda: ref.depthwise_conv2d_backward(gy, x, dw, padding=1)),
        "pointwise_conv2d_backward": (
            lambda t: pydsconv.pointwise_conv2d_backward(r(2, 8, 24, 24) * 0 + 1, gy, pw,
                                                         num_threads=t),
            lambda: ref.pointwise_conv2d_backward(r(2, 8, 24, 24) * 0 + 1, gy, pw)),
        "separable_conv1d": (
            lambda t: pydsconv.separable_conv1d(x1, dw1, pw[:, :16], padding="causal",
                                                num_threads=t),
            lambda: ref.separable_conv1d(x1, dw1, pw[:, :16], padding="causal")),
        "depthwise_conv1d_backward": (
            lambda t: pydsconv.depthwise_conv1d_backward(gy1, x1, dw1, padding=2, num_threads=t),
            lambda: ref.depthwise_conv1d_backward(gy1, x1, dw1, padding=2)),
    }

def check(results, want):
    bad = []
    for name, got in results.items():
        got = got if isinstance(got, tuple) else (got,)
        exp = want[name] if isinstance(want[name], tuple) else (want[name],)
        for g, e in zip(got, exp):
            if g is None and e is None:
                continue
            if not np.allclose(g, e, rtol=1e-4, atol=1e-4):
                bad.append(name)
    return bad
"""

_FORK = (
    _OPS
    + r"""
import os, sys, json, time
parent_threads = int(sys.argv[1])
P = problems()
want = {name: oracle() for name, (_, oracle) in P.items()}
# The parent's calls: multithreaded (the OpenMP pool then exists) or not.
for name, (fn, _) in P.items():
    fn(parent_threads)
rfd, wfd = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(rfd)
    out = {"single": pydsconv.cpu_features()["fork_single_threaded"], "bad": []}
    for t in (None, 1, 2, 3):
        res = {name: fn(t) for name, (fn, _) in P.items()}
        out["bad"] += [f"{n} threads={t}" for n in check(res, want)]
    os.write(wfd, json.dumps(out).encode())
    os._exit(0)
os.close(wfd)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print(json.dumps({"hung": True}))
    sys.exit(0)
data = os.read(rfd, 1 << 20).decode()
print(json.dumps({"hung": False, "status": status, "child": json.loads(data or "null")}))
"""
)


@pytest.mark.parametrize("parent_threads", [1, 2, 3])
def test_forked_child_computes_every_op(parent_threads):
    r = _child(_FORK, parent_threads)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert not res["hung"], "the forked child's call never returned"
    assert res["status"] == 0 and res["child"] is not None, res
    assert res["child"]["bad"] == [], res["child"]["bad"]
    # After a multithreaded parent call the child runs single-threaded (the
    # OpenMP pool's threads do not exist in it); after a single-threaded one
    # it keeps its threads.
    assert res["child"]["single"] == (parent_threads > 1 and _OPENMP)


_POOL = (
    _OPS
    + r"""
import multiprocessing as mp
P = problems()

def work(name):
    return name, check({name: P[name][0](2)}, {name: P[name][1]()})

if __name__ == "__main__":
    for name, (fn, _) in P.items():
        fn(2)
    with mp.get_context("fork").Pool(2) as pool:
        res = pool.map_async(work, list(P)).get(timeout=120)
    print(sum(len(bad) for _, bad in res), len(res))
"""
)


def test_multiprocessing_fork_pool_after_threaded_calls():
    r = _child(_POOL)
    assert r.returncode == 0, r.stderr[-3000:]
    bad, n = map(int, r.stdout.split())
    assert bad == 0 and n >= 9


_EXIT = r"""
import sys, threading, numpy as np, pydsconv
x = np.random.default_rng(0).random((2, 64, 96, 96), dtype=np.float32)
w = np.ones((64, 1, 7, 7), np.float32)
pw = np.ones((32, 64), np.float32)
started = threading.Barrier(5)

def loop(fn):
    started.wait()
    while True:
        fn()

fns = [lambda: pydsconv.depthwise_conv2d(x, w, padding=3),
       lambda: pydsconv.separable_conv2d(x, w, pw, padding=3, num_threads=1),
       lambda: pydsconv.depthwise_conv2d_backward(x, x, w, padding=3),
       lambda: pydsconv.prepack_pointwise(pw)]
for fn in fns:
    threading.Thread(target=loop, args=(fn,), daemon=True).start()
started.wait()
pydsconv.depthwise_conv2d(x, w, padding=3)
print("exiting", flush=True)
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("status", [0, 3])
def test_interpreter_exit_with_daemon_threads_inside_calls(status):
    # Before: "terminate called without an active exception", SIGABRT.
    for _ in range(3):
        r = _child(_EXIT, status)
        assert "terminate called" not in r.stderr, r.stderr[-2000:]
        assert r.returncode == status, (r.returncode, r.stderr[-2000:])
        assert r.stdout.strip() == "exiting"


# ---------------------------------------------------------------------------
# The thread limit
# ---------------------------------------------------------------------------


def test_limit_is_a_small_multiple_of_the_usable_cores():
    f = pydsconv.cpu_features()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert f["usable_cores"] == cores
    assert f["max_threads"] == 4 * cores
    assert 1 <= pydsconv.get_num_threads() <= f["max_threads"]


def test_set_num_threads_above_the_limit_is_capped_and_reported():
    limit = pydsconv.cpu_features()["max_threads"]
    before = pydsconv.get_num_threads()
    try:
        for n in (limit + 1, 65536, 2**40):
            with pytest.warns(RuntimeWarning, match=f"n={n} is above pydsconv's limit of {limit}"):
                pydsconv.set_num_threads(n)
            assert pydsconv.get_num_threads() == limit
            assert pydsconv.cpu_features()["num_threads_requested"] == min(n, 2**31 - 1)
        pydsconv.set_num_threads(limit)
        assert pydsconv.get_num_threads() == limit
    finally:
        pydsconv.set_num_threads(before)


def test_num_threads_above_the_limit_is_capped_with_the_same_bits():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (2, 32, 48, 48)).astype(np.float32)
    dw = rng.uniform(-1, 1, (32, 1, 3, 3)).astype(np.float32)
    pw = rng.uniform(-1, 1, (16, 32)).astype(np.float32)
    one = pydsconv.separable_conv2d(x, dw, pw, padding=1, num_threads=1)
    with pytest.warns(RuntimeWarning, match="num_threads=65536 is above"):
        many = pydsconv.separable_conv2d(x, dw, pw, padding=1, num_threads=65536)
    assert np.array_equal(one, many)


@pytest.mark.parametrize("bad", [1.5, "2", (2,), True, None])
def test_set_num_threads_says_what_is_accepted(bad):
    with pytest.raises(TypeError, match=r"^n must be a positive int, got"):
        pydsconv.set_num_threads(bad)


@pytest.mark.parametrize("bad", [0, -1])
def test_num_threads_below_one(bad):
    x = np.ones((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"^num_threads must be a positive int, got"):
        pydsconv.depthwise_conv2d(x, np.ones((2, 1, 3, 3), np.float32), num_threads=bad)
    with pytest.raises(TypeError, match=r"num_threads must be a positive int \(or None"):
        pydsconv.depthwise_conv2d(x, np.ones((2, 1, 3, 3), np.float32), num_threads=2.0)


_PRINT = (
    "import json, pydsconv; f = pydsconv.cpu_features(); "
    "print(json.dumps([pydsconv.get_num_threads(), f['max_threads'], "
    "f['num_threads_requested']]))"
)


@pytest.mark.parametrize("value", ["65536", "1000000000000", "9" * 40, "64,2"])
def test_omp_num_threads_above_the_limit(value):
    r = _child(_PRINT, env={"OMP_NUM_THREADS": value})
    assert r.returncode == 0, r.stderr[-2000:]
    used, limit, _ = json.loads(r.stdout)
    assert used == min(limit, int(value.split(",")[0]))
    if used == limit < int(value.split(",")[0]):
        assert "above pydsconv's limit" in r.stderr and "RuntimeWarning" in r.stderr


@pytest.mark.parametrize("value", ["abc", "0", "-4", "", " "])
def test_omp_num_threads_invalid_warns_and_uses_the_cores(value):
    r = _child(_PRINT, env={"OMP_NUM_THREADS": value})
    assert r.returncode == 0, r.stderr[-2000:]
    used, limit, _ = json.loads(r.stdout)
    assert 1 <= used <= limit
    assert used == pydsconv.cpu_features()["usable_cores"]
    assert "not a positive thread count" in r.stderr


_RLIMIT = r"""
import json, resource, numpy as np, pydsconv
x = np.ones((2, 64, 64, 64), np.float32)
w = np.ones((64, 1, 3, 3), np.float32)
one = pydsconv.depthwise_conv2d(x, w, padding=1, num_threads=1)
limit = pydsconv.cpu_features()["max_threads"]
# Room for the call's memory but not for limit - 1 new thread stacks (8 MiB
# each by default): the OS refuses most of the team.
with open("/proc/self/status") as f:
    vm = next(int(l.split()[1]) for l in f if l.startswith("VmSize:")) * 1024
stack = resource.getrlimit(resource.RLIMIT_STACK)[0]
stack = 8 << 20 if stack == resource.RLIM_INFINITY or stack <= 0 else stack
resource.setrlimit(resource.RLIMIT_AS, (vm + stack + (4 << 20), resource.RLIM_INFINITY))
got = pydsconv.depthwise_conv2d(x, w, padding=1, num_threads=limit)
print(json.dumps({"same": bool(np.array_equal(got, one)),
                  "failed": pydsconv.cpu_features()["thread_creation_failed"], "limit": limit}))
"""


@pytest.mark.skipif(not _OPENMP, reason="built without OpenMP: no threads to create")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")
def test_thread_creation_failure_lowers_the_count_instead_of_exiting():
    # Before: libgomp printed "Thread creation failed" and called exit(1).
    r = _child(_RLIMIT)
    if "ASAN" in r.stderr or "AddressSanitizer" in r.stderr:
        pytest.skip("AddressSanitizer reserves its address space up front: RLIMIT_AS is moot")
    assert r.returncode == 0, (r.returncode, r.stderr[-2000:])
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["same"]
    assert res["failed"] == res["limit"] or res["limit"] <= 2


# ---------------------------------------------------------------------------
# PYDSCONV_ISA
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["\udcff", "avx\udce92", "\udcc3(", "sca\x01lar"])
def test_pydsconv_isa_not_utf8_warns_and_falls_back(value):
    # The environment holds bytes; "\udcXX" is how Python passes byte 0xXX
    # that is not UTF-8.  Before: UnicodeDecodeError at import.
    code = (
        "import json, pydsconv; f = pydsconv.cpu_features(); "
        "print(json.dumps([f['isa'], f['best_isa'], f['env_isa']]))"
    )
    r = _child(code, env={"PYDSCONV_ISA": value})
    assert r.returncode == 0, r.stderr[-2000:]
    isa, best, shown = json.loads(r.stdout)
    assert isa == best
    assert "is not one of 'scalar', 'avx2', 'avx512'" in r.stderr
    assert "RuntimeWarning" in r.stderr
    assert shown.isascii() and "\\x" in shown


# ---------------------------------------------------------------------------
# A CPU without AVX-512
# ---------------------------------------------------------------------------

_NO_AVX512 = r"""
import numpy as np, pydsconv
from pydsconv import reference as ref
f = pydsconv.cpu_features()
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (2, 8, 9, 9)).astype(np.float32)
w = rng.uniform(-1, 1, (8, 1, 3, 3)).astype(np.float32)
pw = rng.uniform(-1, 1, (4, 8)).astype(np.float32)
assert np.allclose(pydsconv.separable_conv2d(x, w, pw, padding=1),
                   ref.separable_conv2d(x, w, pw, padding=1), atol=1e-4)
assert np.allclose(pydsconv.depthwise_conv2d_backward(x, x, w, padding=1)[1],
                   ref.depthwise_conv2d_backward(x, x, w, padding=1)[1], atol=1e-3)
print(f["best_isa"])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="valgrind: Linux")
def test_import_and_ops_on_a_cpu_without_avx512():
    # valgrind's CPU has no AVX-512 (its CPUID hides it and it cannot run
    # AVX-512 instructions): reading the kernel tables at import, choosing the
    # ISA and running ops must not execute one (SIGILL).  A table built at
    # run time inside the -mavx512f unit did, once.
    import shutil

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        pytest.skip("valgrind is not installed (apt-get install valgrind)")
    if "avx512" not in pydsconv.cpu_features()["compiled"]:
        pytest.skip("built without the AVX-512 unit")
    import subprocess

    from conftest import python_env

    env = python_env({"OMP_NUM_THREADS": "1", "PYDSCONV_ISA": None})
    r = subprocess.run(
        [valgrind, "--tool=none", "-q", sys.executable, "-c", _NO_AVX512],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
    )
    if "ASan" in r.stderr or "AddressSanitizer" in r.stderr:
        pytest.skip("not under AddressSanitizer")
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-1] in ("avx2", "scalar")

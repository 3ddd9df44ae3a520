"""Resident memory stays flat over 10,000 calls of each op (subprocess tests).

One fresh interpreter per op family (depthwise, pointwise, separable) runs a
loop whose every iteration calls each op of the family in every flavour: 2-D
and 1-D, both layouts, with ``out=`` and without, a strided input (the copy
path of the binding), the backward ops (every combination of requested
gradients over the iterations), and calls that fail: a ``ValueError`` from the
validator, a ``ValueError`` raised *after* the binding has copied a strided
input (``out`` of the wrong dtype), a ``TypeError`` from the dtype check, and
one from Python argument parsing.  Error paths leak too.

After 200 warm-up iterations (thread pool, NumPy caches, pymalloc arenas) the
resident set size (``/proc/self/statm``) and the reference counts of every
array passed in (and of the dtypes) are recorded; after 10,000 more
iterations RSS may have grown by less than ``MAX_GROWTH`` and no reference
count may have changed.  The arrays are a few KiB each, so leaking one of
them (or a result, or a copy) per call would add tens of MiB; a leaked
reference to an input would show in its reference count even though it
costs no memory.
"""

import json

import pytest
from conftest import run_python

# Subprocesses that loop thousands of calls: run once, not under the sanitizers.
pytestmark = [pytest.mark.slow]

MiB = 1 << 20
MAX_GROWTH = 4 * MiB
ITERATIONS = 10_000
WARMUP = 200

_PRELUDE = r"""
import gc, json, os, sys, time
import numpy as np
import pydsconv

PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE

rng = np.random.default_rng(0)
def rand(*shape, dtype=np.float32):
    return rng.uniform(-1, 1, size=shape).astype(dtype)

def strided(a):  # a non-contiguous view with a's values
    big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
    v = big[..., ::2]
    v[...] = a
    return v

def expect(exc, f):
    try:
        f()
    except exc:
        return
    raise AssertionError(f"{exc.__name__} not raised")

def measure(step, tracked, iterations, warmup):
    for i in range(warmup):
        step(i)
    gc.collect()
    refs0 = [sys.getrefcount(o) for o in tracked]
    r0 = rss()
    t = time.perf_counter()
    for i in range(iterations):
        step(i)
    secs = time.perf_counter() - t
    gc.collect()
    r1 = rss()
    refs1 = [sys.getrefcount(o) for o in tracked]
    changed = [(k, a, b) for k, (a, b) in enumerate(zip(refs0, refs1)) if a != b]
    with open("/proc/self/maps") as f:
        asan = "libasan" in f.read()
    print(json.dumps({"growth": r1 - r0, "rss": r1, "secs": secs, "refs_changed": changed,
                      "calls": calls[0], "asan": asan}))

calls = [0]
# Tiny problems run on the calling thread anyway (plan_threads).  Every 50th
# iteration below also runs a problem big enough to split on 2 threads, so the
# parallel paths (per-thread scratch) are measured too, without making a
# loaded 2-core CI machine spin on OpenMP barriers 10,000 times.
pydsconv.set_num_threads(1)
"""

_FAMILIES = {
    "depthwise": r"""
x4 = rand(2, 4, 8, 8)                   # 2 KiB; results 4 KiB
x4l = np.ascontiguousarray(np.moveaxis(x4, 1, -1))
w4 = rand(8, 1, 3, 3)
b16 = rand(8)
x3 = rand(2, 4, 64)
x3l = np.ascontiguousarray(np.moveaxis(x3, 1, -1))
w3 = rand(8, 1, 5)
xs = strided(x4)
x4d = x4.astype(np.float64)
w4d = w4.astype(np.float64)
out4 = np.empty((2, 8, 8, 8), np.float32)
out4l = np.empty((2, 8, 8, 8), np.float32)
out3l = np.empty((2, 64, 8), np.float32)
out_bad = np.empty((2, 8, 8, 8), np.float64)
gy4 = rand(2, 8, 8, 8)
gy4l = np.ascontiguousarray(np.moveaxis(gy4, 1, -1))
gy3 = rand(2, 8, 64)
w_big = rand(4, 1, 40, 3)
xi = x4.astype(np.int32)
xt = rand(2, 16, 32, 32)                # threaded: 300k multiply-adds
wt = rand(16, 1, 3, 3)
gyt = rand(2, 16, 32, 32)
tracked = [x4, x4l, w4, b16, x3, x3l, w3, xs, x4d, w4d, out4, out4l, out3l, out_bad, gy4, gy4l,
           gy3, w_big, xi, xt, wt, gyt, np.dtype(np.float32), np.dtype(np.float64), "NCHW",
           "NHWC"]

def step(i):
    f = (i % 2 == 0, i % 3 != 0, i % 5 != 0)
    if i % 50 == 0:
        pydsconv.depthwise_conv2d(xt, wt, padding=1, num_threads=2)
        pydsconv.depthwise_conv2d_backward(gyt, xt, wt, padding=1, num_threads=2)
    pydsconv.depthwise_conv2d(x4, w4, b16, padding=1)
    pydsconv.depthwise_conv2d(x4l, w4, b16, padding="same", layout="NHWC", out=out4l,
                              activation="relu")
    pydsconv.depthwise_conv2d(x4, w4, padding=1, out=out4)
    pydsconv.depthwise_conv2d(xs, w4, b16, stride=2, padding=1)          # copied once
    pydsconv.depthwise_conv2d(x4d, w4d, padding=1, dilation=2)
    pydsconv.depthwise_conv1d(x3, w3, padding=2)
    pydsconv.depthwise_conv1d(x3l, w3, b16, padding="causal", layout="NLC", out=out3l)
    pydsconv.depthwise_conv2d_backward(gy4, x4, w4, padding=1)
    pydsconv.depthwise_conv2d_backward(gy4l, x4l, w4, padding=1, layout="NHWC", input_grad=f[0],
                                       weight_grad=f[1], bias_grad=f[2])
    pydsconv.depthwise_conv1d_backward(gy3, x3, w3, padding=2, input_grad=f[1])
    expect(ValueError, lambda: pydsconv.depthwise_conv2d(x4, w_big))           # validator
    expect(ValueError, lambda: pydsconv.depthwise_conv2d(xs, w4, padding=1, out=out_bad))
    expect(ValueError, lambda: pydsconv.depthwise_conv2d_backward(gy3, x4, w4, padding=1))
    expect(TypeError, lambda: pydsconv.depthwise_conv2d(xi, w4))
    expect(ValueError, lambda: pydsconv.depthwise_conv2d(x4, w4, stride=0))
    expect(ValueError, lambda: pydsconv.depthwise_conv1d(x3, w3, padding="sideways"))
    calls[0] += 16
""",
    "pointwise": r"""
x4 = rand(2, 8, 6, 6)                   # 2.3 KiB; results 3.4 KiB
x4l = np.ascontiguousarray(np.moveaxis(x4, 1, -1))
w2 = rand(12, 8)
w4 = w2.reshape(12, 8, 1, 1).copy()
b24 = rand(12)
x3 = rand(2, 8, 32)
x3l = np.ascontiguousarray(np.moveaxis(x3, 1, -1))
w3 = w2.reshape(12, 8, 1).copy()
xs = strided(x4)
x4d = x4.astype(np.float64)
w2d = w2.astype(np.float64)
out4 = np.empty((2, 12, 6, 6), np.float32)
out3l = np.empty((2, 32, 12), np.float32)
out_bad = np.empty((2, 12, 6, 6), np.float64)
gy4 = rand(2, 12, 6, 6)
gy3l = rand(2, 32, 12)
w_bad = rand(12, 7)
xi = x4.astype(np.int64)
xt = rand(2, 32, 32, 32)                # threaded: 2M multiply-adds
wt = rand(32, 32)
gyt = rand(2, 32, 32, 32)
tracked = [x4, x4l, w2, w4, b24, x3, x3l, w3, xs, x4d, w2d, out4, out3l, out_bad, gy4, gy3l,
           w_bad, xi, xt, wt, gyt, np.dtype(np.float32), np.dtype(np.float64), "NCHW", "NHWC"]

def step(i):
    f = (i % 2 == 0, i % 3 != 0, i % 5 != 0)
    if i % 50 == 0:
        pydsconv.pointwise_conv2d(xt, wt, num_threads=2)
        pydsconv.pointwise_conv2d_backward(gyt, xt, wt, num_threads=2)
    pydsconv.pointwise_conv2d(x4, w2, b24)
    pydsconv.pointwise_conv2d(x4, w4, b24, out=out4, activation="relu6")
    pydsconv.pointwise_conv2d(x4l, w2, layout="NHWC")
    pydsconv.pointwise_conv2d(xs, w2, b24)                                 # copied once
    pydsconv.pointwise_conv2d(x4d, w2d)
    pydsconv.pointwise_conv1d(x3, w3, b24)
    pydsconv.pointwise_conv1d(x3l, w2, layout="NLC", out=out3l)
    pydsconv.pointwise_conv2d_backward(gy4, x4, w4)
    pydsconv.pointwise_conv2d_backward(gy4, xs, w2, input_grad=f[0], weight_grad=f[1],
                                       bias_grad=f[2])
    pydsconv.pointwise_conv1d_backward(gy3l, x3l, w3, layout="NLC", weight_grad=f[0])
    expect(ValueError, lambda: pydsconv.pointwise_conv2d(x4, w_bad))
    expect(ValueError, lambda: pydsconv.pointwise_conv2d(xs, w2, out=out_bad))
    expect(ValueError, lambda: pydsconv.pointwise_conv2d_backward(gy3l, x4, w2))
    expect(TypeError, lambda: pydsconv.pointwise_conv2d(xi, w2))
    expect(ValueError, lambda: pydsconv.pointwise_conv2d(x4, w2, layout="CHWN"))
    calls[0] += 15
""",
    "separable": r"""
x4 = rand(2, 4, 8, 8)                   # 2 KiB; results 3 KiB
x4l = np.ascontiguousarray(np.moveaxis(x4, 1, -1))
dw = rand(8, 1, 3, 3)
pw = rand(6, 8)
db = rand(8)
pb = rand(6)
x3 = rand(2, 4, 64)
x3l = np.ascontiguousarray(np.moveaxis(x3, 1, -1))
dw3 = rand(8, 1, 3)
xs = strided(x4)
x4d = x4.astype(np.float64)
dwd, pwd = dw.astype(np.float64), pw.astype(np.float64)
out4 = np.empty((2, 6, 8, 8), np.float32)
out3l = np.empty((2, 64, 6), np.float32)
out_bad = np.empty((2, 6, 8, 8), np.float64)
pw_bad = rand(6, 7)
xi = x4.astype(np.int16)
xt = rand(2, 16, 32, 32)                # threaded: ~900k multiply-adds
dwt = rand(16, 1, 3, 3)
pwt = rand(24, 16)
tracked = [x4, x4l, dw, pw, db, pb, x3, x3l, dw3, xs, x4d, dwd, pwd, out4, out3l, out_bad,
           pw_bad, xi, xt, dwt, pwt, np.dtype(np.float32), np.dtype(np.float64), "NCHW", "NHWC"]

def step(i):
    if i % 50 == 0:
        pydsconv.separable_conv2d(xt, dwt, pwt, padding=1, num_threads=2)
    pydsconv.separable_conv2d(x4, dw, pw, db, pb, padding=1)
    pydsconv.separable_conv2d(x4, dw, pw, padding=1, out=out4, mid_activation="relu")
    pydsconv.separable_conv2d(x4l, dw, pw, db, pb, padding="same", layout="NHWC",
                              activation="relu6")
    pydsconv.separable_conv2d(xs, dw, pw, db, pb, stride=2, padding=1)       # copied once
    pydsconv.separable_conv2d(x4d, dwd, pwd, padding=1, dilation=2)
    pydsconv.separable_conv1d(x3, dw3, pw, db, pb, padding=1)
    pydsconv.separable_conv1d(x3l, dw3, pw, padding="causal", layout="NLC", out=out3l)
    expect(ValueError, lambda: pydsconv.separable_conv2d(x4, dw, pw_bad, padding=1))
    expect(ValueError, lambda: pydsconv.separable_conv2d(xs, dw, pw, padding=1, out=out_bad))
    expect(TypeError, lambda: pydsconv.separable_conv2d(xi, dw, pw))
    expect(ValueError, lambda: pydsconv.separable_conv2d(x4, dw, pw, mid_activation="gelu"))
    calls[0] += 11
""",
}

_RUN = r"""
measure(step, tracked, int(sys.argv[1]), int(sys.argv[2]))
"""


def _run(family):
    code = _PRELUDE + _FAMILIES[family] + _RUN
    r = run_python(code, args=(ITERATIONS, WARMUP), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("family", list(_FAMILIES))
def test_memory_flat_over_10000_calls(family):
    res = _run(family)
    assert res["calls"] >= ITERATIONS * 10
    assert not res["refs_changed"], (
        f"{family}: reference counts changed (index, before, after): {res['refs_changed']}"
    )
    if res["asan"]:  # freed memory sits in ASan's quarantine (256 MiB): RSS says nothing
        pytest.skip("RSS is not meaningful under AddressSanitizer (reference counts checked)")
    assert res["growth"] < MAX_GROWTH, (
        f"{family}: RSS grew by {res['growth'] / MiB:.1f} MiB over {ITERATIONS} iterations "
        f"({res['calls']} calls, {res['secs']:.1f} s)"
    )


def test_the_measurement_can_fail():
    # Proves both checks can see a leak: the same loop, keeping every result
    # alive (32 KiB each) and one more reference to the weight per call.
    code = (
        _PRELUDE
        + r"""
x = rand(2, 8, 16, 16)
w = rand(16, 1, 3, 3)
kept = []
def step(i):
    kept.append(pydsconv.depthwise_conv2d(x, w, padding=1))
    kept.append(w)
    calls[0] += 1
measure(step, [x, w], 1000, 10)
"""
    )
    r = run_python(code, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["growth"] > 16 * MiB, res
    assert [k for k, _, _ in res["refs_changed"]] == [1], res


def test_recycled_result_memory_is_bounded():
    """Freed results are kept for reuse (result_pool.h's ResultPool), 256 MiB at
    most: 600 results of distinct sizes (1-2 MiB each, 0.9 GiB in all), each
    freed at once, leave RSS less than 256 + 16 MiB above where it started
    (kept blocks are mapped apart from malloc's heap, so they pin no free
    holes there: taken from the heap they once left 95 MiB more); the last
    100 sizes again (kept: the newest blocks stay) reuse them, with RSS
    within 16 MiB."""
    code = (
        _PRELUDE
        + r"""
w = rand(1, 1, 3, 3)
def sweep(sizes):
    for i in sizes:
        x = np.ones((1, 1, 512, 512 + i), np.float32)
        y = pydsconv.depthwise_conv2d(x, w, padding=1)
        assert y[0, 0, 1, 1] != 0
        del x, y
    gc.collect()
with open("/proc/self/maps") as f:
    asan = "libasan" in f.read()
r0 = rss()
sweep(range(600))
r1 = rss()
sweep(range(500, 600))
r2 = rss()
print(json.dumps({"first": r1 - r0, "again": r2 - r1, "asan": asan}))
"""
    )
    r = run_python(code, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if res["asan"]:
        pytest.skip("RSS is not meaningful under AddressSanitizer")
    assert res["first"] < 272 * MiB, res
    assert res["again"] < 16 * MiB, res

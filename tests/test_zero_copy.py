"""Zero-copy: C-contiguous inputs are read in place, out= is written in place.

The memory checks run in a subprocess (so the peak RSS is this one job's):
a 1 GiB float32 x, shape (1, 16, 4096, 4096), touched, then every op is
called on it with results 1/16 of x or smaller, into preallocated, touched
outs.  ``ru_maxrss`` may grow by far less than 1 GiB (a copy of x would add
1 GiB; the separable op's intermediate would add 1 GiB too if it were
materialised).  The opposite check proves the measurement can fail: a
transposed (non-contiguous) view of x is documented to be copied once, and
the peak does grow by ~1 GiB (a reversed-channel view; a transposed view
behaves the same, only its copy is slower).

In-process checks: out= is returned and shares memory with itself, inputs
are never written, read-only and offset C-contiguous inputs work, and
strided inputs give the same bits as their contiguous copies.
"""

import json

import numpy as np
import pytest
from conftest import rand, run_python

import pydsconv

# Subprocesses with GiB-sized arrays: run once, not under the sanitizers.
pytestmark = [pytest.mark.slow]

MiB = 1 << 20
GiB = 1 << 30

# Subprocesses with GiB-sized arrays: run once, not under the sanitizers.
pytestmark = [pytest.mark.slow]

_SCRIPT = r"""
import json, resource, sys
import numpy as np
import pydsconv

def peak():  # bytes; Linux reports ru_maxrss in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

layout = sys.argv[1]
S, C = 4096, 16
shape = (1, C, S, S) if layout == "NCHW" else (1, S, S, C)
def oshape(c, s):
    return (1, c, s, s) if layout == "NCHW" else (1, s, s, c)

x = np.empty(shape, np.float32)          # 1 GiB, C-contiguous
x[...] = 1.0                             # touch every page
pw = np.full((1, C), 0.5, np.float32)
dw1 = np.full((C, 1, 1, 1), 2.0, np.float32)
dw3 = np.full((C, 1, 3, 3), 1.0, np.float32)
out_pw = np.empty(oshape(1, S), np.float32); out_pw[...] = 0           # 64 MiB
out_dw = np.empty(oshape(C, S // 4), np.float32); out_dw[...] = 0      # 64 MiB
out_sep = np.empty(oshape(1, S), np.float32); out_sep[...] = 0         # 64 MiB
gy_pw = np.ones(oshape(1, S), np.float32)                             # 64 MiB
gy_dw = np.ones(oshape(C, S // 4), np.float32)                        # 64 MiB
# Warm up: the first calls start the thread pool and fault in code pages.
xs = np.ones(oshape(C, 64) if layout == "NCHW" else (1, 64, 64, C), np.float32)
pydsconv.pointwise_conv2d(xs, pw, layout=layout)
pydsconv.depthwise_conv2d(xs, dw1, stride=4, layout=layout)
pydsconv.separable_conv2d(xs, dw1, pw, layout=layout)
pydsconv.pointwise_conv2d_backward(np.ones(oshape(1, 64), np.float32), xs, pw, layout=layout,
                                   input_grad=False)
pydsconv.depthwise_conv2d_backward(np.ones(oshape(C, 16), np.float32), xs, dw1, stride=4,
                                   layout=layout, input_grad=False)

import time
T = [time.perf_counter()]
def lap(name):
    T.append(time.perf_counter()); res["t_" + name] = round(T[-1] - T[-2], 3)

def all_equal(a, v):
    # chunk by chunk: a whole-array comparison would allocate a big bool array
    # and raise the peak RSS this script measures
    flat = a.reshape(-1, 1 << 22)
    return all(bool(np.all(flat[i] == v)) for i in range(flat.shape[0]))

res = {"layout": layout}
base = peak()
T.append(time.perf_counter())
res["base"] = base
r = pydsconv.pointwise_conv2d(x, pw, layout=layout, out=out_pw)
res["pw_is_out"] = r is out_pw
res["pw_ok"] = bool(all_equal(out_pw, 8.0))
res["after_pw"] = peak()
lap("pw")
r = pydsconv.depthwise_conv2d(x, dw1, stride=4, layout=layout, out=out_dw)
res["dw_is_out"] = r is out_dw
res["dw_ok"] = bool(all_equal(out_dw, 2.0))
res["after_dw"] = peak()
lap("dw")
r = pydsconv.depthwise_conv2d(x, dw3, stride=4, padding=1, layout=layout, out=out_dw)
res["dw3_ok"] = bool(out_dw[(0,) * 4] == 4.0 and np.all(out_dw.max() == 9.0))
res["after_dw3"] = peak()
lap("dw3")
# Fused separable: the (1, 16, 4096, 4096) intermediate would be 1 GiB.
r = pydsconv.separable_conv2d(x, dw1, pw, layout=layout, out=out_sep)
res["sep_is_out"] = r is out_sep
res["sep_ok"] = bool(all_equal(out_sep, 16.0))
res["after_sep"] = peak()
lap("sep")
gx, gw, gb = pydsconv.pointwise_conv2d_backward(gy_pw, x, pw, layout=layout, input_grad=False)
res["pwb_ok"] = gx is None and bool(np.all(gw == float(S * S))) and float(gb[0]) == S * S
res["after_pwb"] = peak()
lap("pwb")
gx, gw, gb = pydsconv.depthwise_conv2d_backward(gy_dw, x, dw1, stride=4, layout=layout,
                                                input_grad=False)
res["dwb_ok"] = gx is None and bool(np.all(gw == float((S // 4) ** 2)))
res["after_dwb"] = peak()
lap("dwb")
res["x_untouched"] = all_equal(x, 1.0)
mode = sys.argv[2]
if mode == "copy":
    # The opposite check: a non-contiguous view is copied once (documented).
    # (Channels reversed: a negative stride; a transposed view would do too,
    # but its copy is a slow cache-unfriendly gather.)
    xt = x[:, ::-1] if layout == "NCHW" else x[..., ::-1]
    assert not xt.flags.c_contiguous and np.shares_memory(xt, x)
    before = peak()
    r = pydsconv.pointwise_conv2d(xt, pw, layout=layout, out=out_pw)
    res["copy_is_out"] = r is out_pw
    res["copy_ok"] = bool(all_equal(out_pw, 8.0))
    res["copy_growth"] = peak() - before
    lap("copy")
print(json.dumps(res))
"""


def _measure(layout, mode):
    r = run_python(_SCRIPT, args=(layout, mode), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _growth(res, key, since="base"):
    return res[key] - res[since]


@pytest.fixture(scope="module")
def nchw():
    return _measure("NCHW", "copy")


@pytest.fixture(scope="module")
def nhwc():
    return _measure("NHWC", "none")


def _check_no_copy(res):
    assert res["pw_is_out"] and res["dw_is_out"] and res["sep_is_out"]
    assert res["pw_ok"] and res["dw_ok"] and res["dw3_ok"] and res["sep_ok"]
    assert res["pwb_ok"] and res["dwb_ok"] and res["x_untouched"]
    steps = ["after_pw", "after_dw", "after_dw3", "after_sep", "after_pwb", "after_dwb"]
    prev = "base"
    for key in steps:
        grew = _growth(res, key, prev)
        assert grew < 256 * MiB, f"{key}: peak RSS grew by {grew / MiB:.0f} MiB"
        prev = key
    total = _growth(res, "after_dwb")
    assert total < 256 * MiB, f"peak RSS grew by {total / MiB:.0f} MiB over all ops"


def test_contiguous_nchw_input_is_not_copied(nchw):
    _check_no_copy(nchw)


def test_contiguous_nhwc_input_is_not_copied(nhwc):
    _check_no_copy(nhwc)


def test_non_contiguous_view_is_copied_once(nchw):
    # Proves the RSS measurement above can fail: this call copies x (1 GiB).
    assert nchw["copy_is_out"] and nchw["copy_ok"]
    grew = nchw["copy_growth"]
    assert grew > 0.75 * GiB, f"peak RSS grew by only {grew / MiB:.0f} MiB"
    assert grew < 1.5 * GiB, f"copied more than once: {grew / MiB:.0f} MiB"


# ---------------------------------------------------------------------------
# In-process checks
# ---------------------------------------------------------------------------


def _ops(rng, dtype=np.float32, layout="NCHW"):
    x = rand(rng, (2, 8, 12, 12), dtype)
    if layout == "NHWC":
        x = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    dw = rand(rng, (16, 1, 3, 3), dtype)
    pw = rand(rng, (6, 16), dtype)
    pw8 = rand(rng, (6, 8, 1, 1), dtype)
    b16, b6 = rand(rng, (16,), dtype), rand(rng, (6,), dtype)
    kw = dict(layout=layout)
    return [
        (pydsconv.depthwise_conv2d, (x, dw, b16), dict(kw, padding=1, stride=2)),
        (pydsconv.pointwise_conv2d, (x, pw8, b6), kw),
        (pydsconv.separable_conv2d, (x, dw, pw, b16, b6), dict(kw, padding="same")),
    ]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_is_written_in_place(rng, layout, dtype):
    for fn, args, kw in _ops(rng, dtype, layout):
        want = fn(*args, **kw)
        out = np.full(want.shape, np.nan, dtype)
        ptr = out.__array_interface__["data"][0]
        got = fn(*args, **kw, out=out)
        assert got is out
        assert np.shares_memory(got, out)
        assert out.__array_interface__["data"][0] == ptr
        assert np.array_equal(out, want)


def test_out_can_be_a_contiguous_view_into_a_bigger_buffer(rng):
    for fn, args, kw in _ops(rng):
        want = fn(*args, **kw)
        buf = np.full((3,) + want.shape, -1.0, np.float32)
        out = buf[1]
        assert out.flags.c_contiguous and out.base is buf
        assert fn(*args, **kw, out=out) is out
        assert np.array_equal(buf[1], want)
        assert np.all(buf[0] == -1.0) and np.all(buf[2] == -1.0)  # nothing outside out


def test_inputs_are_never_written(rng):
    for fn, args, kw in _ops(rng):
        copies = [a.copy() for a in args]
        fn(*args, **kw)
        fn(*args, **kw, activation="relu")
        for a, c in zip(args, copies):
            assert np.array_equal(a, c)


def test_read_only_inputs_are_accepted_in_place(rng):
    for fn, args, kw in _ops(rng):
        want = fn(*args, **kw)
        ro = []
        for a in args:
            a = a.copy()
            a.setflags(write=False)
            ro.append(a)
        assert np.array_equal(fn(*ro, **kw), want)


def test_backward_read_only_inputs(rng):
    x = rand(rng, (2, 8, 12, 12), np.float32)
    w = rand(rng, (8, 1, 3, 3), np.float32)
    gy = rand(rng, (2, 8, 12, 12), np.float32)
    want = pydsconv.depthwise_conv2d_backward(gy, x, w, padding=1)
    for a in (x, w, gy):
        a.setflags(write=False)
    got = pydsconv.depthwise_conv2d_backward(gy, x, w, padding=1)
    for g, h in zip(got, want):
        assert np.array_equal(g, h)


def test_contiguous_input_at_an_offset_is_read_correctly(rng):
    # A C-contiguous view that starts inside a bigger buffer (used in place).
    for fn, args, kw in _ops(rng):
        want = fn(*args, **kw)
        buf = np.zeros((2,) + args[0].shape, np.float32)
        buf[1] = args[0]
        x = buf[1]
        assert x.flags.c_contiguous
        assert np.array_equal(fn(x, *args[1:], **kw), want)


@pytest.mark.parametrize("kind", ["transposed", "strided", "fortran", "negative", "unaligned"])
def test_strided_inputs_same_bits_as_contiguous(rng, kind):
    for fn, args, kw in _ops(rng):
        want = fn(*args, **kw)
        x = args[0]
        if kind == "transposed":
            v = np.ascontiguousarray(x.swapaxes(2, 3)).swapaxes(2, 3)
        elif kind == "strided":
            v = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)[..., ::2]
            v[...] = x
        elif kind == "fortran":
            v = np.asfortranarray(x)
        elif kind == "negative":
            v = np.ascontiguousarray(x[..., ::-1])[..., ::-1]
        else:
            raw = np.zeros(x.nbytes + 1, np.uint8)
            v = raw[1:].view(x.dtype).reshape(x.shape)
            v[...] = x
            assert not v.flags.aligned
        assert np.array_equal(v, x)
        before = v.copy()
        assert np.array_equal(fn(v, *args[1:], **kw), want)
        assert np.array_equal(v, before)
        # strided weights too
        w = args[1]
        wv = np.asfortranarray(w)
        assert np.array_equal(fn(x, wv, *args[2:], **kw), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_are_64_byte_aligned(rng, dtype):
    """New results (forward outputs and every gradient) start on a cache
    line, whatever NumPy's own alignment (16 bytes past one for large
    arrays), so that a chain of calls feeds aligned data to the kernels."""
    x = rand(rng, (2, 16, 40, 40), dtype)
    dw = rand(rng, (16, 1, 3, 3), dtype)
    pw = rand(rng, (24, 16, 1, 1), dtype)
    b = rand(rng, (16,), dtype)
    outs = [
        pydsconv.depthwise_conv2d(x, dw, b, padding=1),
        pydsconv.pointwise_conv2d(x, pw),
        pydsconv.separable_conv2d(x, dw, pw, padding=1, layout="NCHW"),
    ]
    gy = np.ones_like(outs[0])
    outs += [g for g in pydsconv.depthwise_conv2d_backward(gy, x, dw, padding=1) if g is not None]
    for y in outs:
        assert y.ctypes.data % 64 == 0, (y.shape, y.ctypes.data % 64)
        assert y.flags.c_contiguous and y.flags.writeable and y.dtype == dtype


def test_recycled_result_memory_holds_the_new_result(rng):
    """A freed result's memory is handed out again for the next result of its
    size: the new result is the new computation's, not the old values."""
    x1, x2 = rand(rng, (1, 32, 64, 64), np.float32), rand(rng, (1, 32, 64, 64), np.float32)
    w = rand(rng, (32, 1, 3, 3), np.float32)
    want = pydsconv.depthwise_conv2d(x2, w, padding=1).copy()
    y1 = pydsconv.depthwise_conv2d(x1, w, padding=1)
    addr = y1.ctypes.data
    del y1
    y2 = pydsconv.depthwise_conv2d(x2, w, padding=1)
    np.testing.assert_array_equal(y2, want)
    with open("/proc/self/maps") as f:
        asan = "libasan" in f.read()
    if not asan:  # (under AddressSanitizer nothing is kept: it would hide a use after free)
        assert y2.ctypes.data == addr  # the same block (512 KiB), reused

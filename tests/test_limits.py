"""Sizes at and beyond the 32- and 64-bit limits (cpp/README.md rules 5 and 10).

The contract: shapes whose element counts or index arithmetic overflow 32
bits (or 64) are rejected with a clear ``ValueError`` or computed correctly,
never with memory corruption, a crash or a giant allocation.

How this is tested without allocating such shapes:

* **Zero-stride views** (``as_strided(np.zeros(1), huge_shape, strides=0)``)
  cost one element.  The binding describes arrays to the C++ validator *as
  given* and copies non-contiguous inputs only after the call is accepted, so
  a rejected call with a 2**32-element view must fail at once, without
  copying it.  Those calls run in a subprocess whose address space is capped
  a little above its baseline (``RLIMIT_AS``): an accidental copy would be a
  ``MemoryError`` there, not a 16 GiB allocation of the test machine.
* **Boundary arithmetic through the validator**: an accepted zero-stride view
  *would* be copied, so a valid >2**31-element view cannot be computed
  cheaply.  Instead, rules checked *after* the size rules (grad_out's shape,
  out's shape; rules 8 and 9) reject an otherwise valid call, and their
  message gives the expected shape, which must be the exact (> 2**32) size.
* **A real >2**31-element input**: ``np.zeros`` of 8 GiB is only reserved
  address space (calloc'd anonymous pages; reading them maps the shared zero
  page).  It is C-contiguous, so it is used in place; with a large stride or
  dilation the ops read a handful of pixels whose flat index is > 2**31.
  Skipped where the OS refuses the reservation.
* **Huge stride / padding / dilation on tiny arrays** (up to 2**40 - 1):
  valid calls whose outputs have a few elements but whose index arithmetic
  (``oh * stride``, ``tap * dilation``, padded sizes) is far beyond 2**32.
  Checked against a direct loop over outputs and taps (``_direct_*`` below),
  each call in its own capped subprocess with a time limit, since a failure
  here may be a segmentation fault or an endless loop.
* **Overflowing element counts** (output, intermediate, x; count and count
  times 8 bytes) are ``ValueError`` mentioning the size; just below the
  boundary the validator accepts and the allocation fails cleanly.  With a
  batch of 0 the count is 0, but the result's other dims must still fit.
* Parameters >= 2**40 are ``ValueError``, through the public API (Python
  arguments of any size) and straight into ``_core`` (the C++ rule).
"""

import json
import os
import re
import subprocess

import numpy as np
import pytest
from conftest import run_python
from numpy.lib.stride_tricks import as_strided

import pydsconv
from pydsconv import _core

MiB = 1 << 20
GiB = 1 << 30


def view(shape, dtype=np.float32, value=1.0):
    """A read-only array of ``shape`` that costs one element (all strides 0)."""
    return as_strided(
        np.full(1, value, dtype), shape=shape, strides=(0,) * len(shape), writeable=False
    )


# Code every child process starts with: a capped address space, a zero-stride
# view helper, and a warm-up (thread pool, code pages) before the cap.
_PRELUDE = r"""
import json, resource, sys, time
import numpy as np
from numpy.lib.stride_tricks import as_strided
import pydsconv

def vmsize():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")

def peak():  # bytes; Linux reports ru_maxrss in KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def cap_address_space(extra):
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    resource.setrlimit(resource.RLIMIT_AS, (vmsize() + extra, hard))

def view(shape, dtype=np.float32, value=1.0):
    return as_strided(np.full(1, value, dtype), shape=shape, strides=(0,) * len(shape),
                      writeable=False)

def _warm_up():
    x = np.ones((2, 16, 64, 64), np.float32)
    dw = np.ones((16, 1, 3, 3), np.float32)
    pw = np.ones((8, 16), np.float32)
    pydsconv.depthwise_conv2d(x, dw, padding=1)
    pydsconv.separable_conv2d(x, dw, pw, padding=1)
    pydsconv.pointwise_conv2d(x, np.ones((16, 16), np.float32))
    pydsconv.depthwise_conv2d_backward(np.ones((2, 16, 64, 64), np.float32), x, dw, padding=1)
    pydsconv.pointwise_conv2d_backward(np.ones((2, 8, 64, 64), np.float32), x, pw)
    pydsconv.depthwise_conv1d(x[:, :, 0], dw[:, :, 0], padding=1)
_warm_up()
"""


def _child_json(code, args=(), timeout=300):
    r = run_python(_PRELUDE + code, args=args, timeout=timeout)
    assert r.returncode == 0, f"child exited with {r.returncode}:\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# Huge zero-stride views: rejected at once, never copied
# ---------------------------------------------------------------------------

# name -> (code returning the call's result, expected exception, message regex).
# Every x has more than 2**31 elements (most 2**32); weights are views where
# a real one would be big.  Run in one child with 1 GiB of address space to
# spare: a copy of any of these x would need 16 GiB.
_REJECTED = {
    # kernel larger than the padded input (rule 7)
    "dw2d_nchw_kernel_taller_than_padded": (
        "pydsconv.depthwise_conv2d(view((1, 1, 2**16, 2**16)), np.ones((1, 1, 2**16 + 3, 1), "
        "np.float32), padding=1)",
        "ValueError",
        r"weight.*kernel height 65539.*larger than the padded input height 65538",
    ),
    "dw2d_nhwc_kernel_wider_than_input_weight_view": (
        "pydsconv.depthwise_conv2d(view((1, 2**15, 2**15, 4)), view((4, 1, 1, 2**15 + 1)), "
        "layout='NHWC')",
        "ValueError",
        r"weight.*kernel width 32769.*larger than the padded input width 32768",
    ),
    "dw2d_dilated_kernel_too_tall": (
        "pydsconv.depthwise_conv2d(view((2, 3, 2**15, 2**15), np.float64), "
        "np.ones((3, 1, 3, 3)), dilation=(2**14, 1))",
        "ValueError",
        r"weight.*dilation 16384, effective 32769.*padded input height 32768",
    ),
    "dw1d_ncl_kernel_longer_than_input": (
        "pydsconv.depthwise_conv1d(view((1, 2**16, 2**16)), view((2**16, 1, 2**16 + 1)))",
        "ValueError",
        r"weight.*kernel length 65537.*padded input length 65536",
    ),
    "dw1d_nlc_kernel_longer_than_input": (
        "pydsconv.depthwise_conv1d(view((4, 2**30, 1)), view((1, 1, 2**30 + 1)), layout='NLC')",
        "ValueError",
        r"weight.*kernel length 1073741825.*padded input length 1073741824",
    ),
    "sep2d_kernel_taller_than_input": (
        "pydsconv.separable_conv2d(view((1, 2**12, 2**10, 2**10)), view((2**12, 1, 2**10 + 1, 1)), "
        "np.ones((5, 2**12), np.float32))",
        "ValueError",
        r"depthwise_weight.*kernel height 1025.*padded input height 1024",
    ),
    "sep1d_kernel_longer_than_input": (
        "pydsconv.separable_conv1d(view((2, 2**16, 2**15)), view((2**16, 1, 2**15 + 2)), "
        "view((1, 2**16)), padding=(0, 1))",
        "ValueError",
        r"depthwise_weight.*kernel length 32770.*padded input length 32769",
    ),
    # channel mismatch (rule 3)
    "pw2d_c_in_mismatch": (
        "pydsconv.pointwise_conv2d(view((1, 2**16, 2**8, 2**8)), np.ones((3, 2**16 - 1), "
        "np.float32))",
        "ValueError",
        r"weight must have shape.*C_in = 65536",
    ),
    "pw1d_nlc_c_in_mismatch": (
        "pydsconv.pointwise_conv1d(view((1, 2**32, 1)), np.ones((2, 2), np.float32), layout='NLC')",
        "ValueError",
        r"weight must have shape.*C_in = 1\b",
    ),
    # a bad bias after a huge x (rule 4)
    "dw2d_bias_wrong_length": (
        "pydsconv.depthwise_conv2d(view((1, 4, 2**15, 2**15)), np.ones((8, 1, 3, 3), np.float32), "
        "np.ones(7, np.float32))",
        "ValueError",
        r"bias must be a 1-D array of shape \(8,\)",
    ),
    # strides that are not all zero, and negative ones (byte bounds of the view)
    "dw2d_row_view_kernel_too_tall": (
        "pydsconv.depthwise_conv2d(as_strided(np.ones(2**16, np.float32), "
        "shape=(1, 1, 2**16, 2**16), strides=(0, 0, 0, 4), writeable=False), "
        "np.ones((1, 1, 2**16 + 1, 1), np.float32))",
        "ValueError",
        r"kernel height 65537",
    ),
    "dw2d_reversed_row_view_kernel_too_tall": (
        "pydsconv.depthwise_conv2d(as_strided(np.ones(2**16, np.float32), "
        "shape=(1, 1, 2**16, 2**16), strides=(0, 0, 0, 4), writeable=False)[..., ::-1], "
        "np.ones((1, 1, 2**16 + 1, 1), np.float32))",
        "ValueError",
        r"kernel height 65537",
    ),
    # dtype problems are found before anything is copied either
    "dw2d_mixed_dtype": (
        "pydsconv.depthwise_conv2d(view((1, 1, 2**16, 2**16)), np.ones((1, 1, 3, 3)))",
        "TypeError",
        r"weight.*float64.*x.*float32",
    ),
    # Valid up to the size rules; rejected by a rule checked after them, whose
    # message shows the exact output size the validator computed (> 2**32).
    "dwb2d_grad_out_shape_2_32": (
        "pydsconv.depthwise_conv2d_backward(np.ones((1, 1, 1, 1), np.float32), "
        "view((1, 1, 2**16, 2**16)), np.ones((1, 1, 3, 3), np.float32), padding=1)",
        "ValueError",
        r"grad_out must have shape \(1, 1, 65536, 65536\)",
    ),
    "dwb2d_grad_out_shape_stride3": (
        "pydsconv.depthwise_conv2d_backward(np.ones((1, 1, 1, 1), np.float32), "
        "view((1, 1, 2**16, 2**16)), np.ones((1, 1, 3, 3), np.float32), stride=3)",
        "ValueError",
        r"grad_out must have shape \(1, 1, 21845, 21845\)",
    ),
    "dwb1d_nlc_grad_out_length_over_2_32": (
        "pydsconv.depthwise_conv1d_backward(np.ones((1, 1, 1), np.float32), "
        "view((1, 2**32 + 5, 1)), np.ones((1, 1, 5), np.float32), dilation=2, layout='NLC')",
        "ValueError",
        r"grad_out must have shape \(1, 4294967293, 1\)",
    ),
    "pwb2d_grad_out_shape": (
        "pydsconv.pointwise_conv2d_backward(np.ones((1, 1, 1, 1), np.float32), "
        "view((2, 2**16, 2**8, 2**8)), view((3, 2**16, 1, 1)))",
        "ValueError",
        r"grad_out must have shape \(2, 3, 256, 256\)",
    ),
    "pwb1d_grad_out_shape": (
        "pydsconv.pointwise_conv1d_backward(np.ones((1, 1, 1)), view((1, 3, 2**31 + 1), "
        "np.float64), np.ones((2, 3)))",
        "ValueError",
        r"grad_out must have shape \(1, 2, 2147483649\)",
    ),
    "dw2d_out_shape_same_stride2": (
        "pydsconv.depthwise_conv2d(view((1, 1, 2**16, 2**16)), np.ones((1, 1, 3, 3), np.float32), "
        "stride=2, padding='same', out=np.empty((1, 1, 1, 1), np.float32))",
        "ValueError",
        r"out must have shape \(1, 1, 32768, 32768\)",
    ),
    "sep2d_nhwc_out_shape": (
        "pydsconv.separable_conv2d(view((1, 2**16, 2**16, 1)), np.ones((2, 1, 3, 3), np.float32), "
        "np.ones((7, 2), np.float32), stride=5, dilation=2**10, padding='same', layout='NHWC', "
        "out=np.empty((1, 1, 1, 1), np.float32))",
        "ValueError",
        r"out must have shape \(1, 13108, 13108, 7\)",
    ),
    "sep1d_out_shape_causal": (
        "pydsconv.separable_conv1d(view((1, 1, 2**32)), np.ones((1, 1, 9), np.float32), "
        "np.ones((2, 1), np.float32), padding='causal', dilation=2**20, "
        "out=np.empty((1, 1, 1), np.float32))",
        "ValueError",
        r"out must have shape \(1, 2, 4294967296\)",
    ),
    "dw2d_out_not_contiguous": (
        "pydsconv.depthwise_conv2d(view((1, 1, 2**16, 2**16)), np.ones((1, 1, 1, 1), np.float32), "
        "out=view((1, 1, 2**16, 2**16)))",
        "ValueError",
        r"out must be C-contiguous",
    ),
    # 2**60 float32 elements: the count fits int64, count * 8 bytes does not (rule 10)
    "dw2d_x_2_60_elements": (
        "pydsconv.depthwise_conv2d(view((1, 1, 2**30, 2**30)), np.ones((1, 1, 1, 1), np.float32))",
        "ValueError",
        r"too large|overflow",
    ),
    "pw2d_x_2_60_elements": (
        "pydsconv.pointwise_conv2d(view((1, 2**30, 2**15, 2**15)), view((1, 2**30)))",
        "ValueError",
        r"too large|overflow",
    ),
    "sep2d_x_2_60_elements": (
        "pydsconv.separable_conv2d(view((4, 2**10, 2**24, 2**24)), np.ones((2**10, 1, 2, 2), "
        "np.float32), view((1, 2**10)), stride=2**20)",
        "ValueError",
        r"too large|overflow",
    ),
}

_REJECT_CHILD = r"""
cases = json.loads(sys.argv[1])
cap_address_space(1 << 30)
base = peak()
res = {}
for name, code in cases.items():
    try:
        eval(code)
        res[name] = {"type": None, "msg": "returned a result"}
    except BaseException as e:
        res[name] = {"type": type(e).__name__, "msg": str(e)}
res["__growth__"] = peak() - base
print(json.dumps(res))
"""


@pytest.fixture(scope="module")
def rejected():
    cases = {k: v[0] for k, v in _REJECTED.items()}
    return _child_json(_REJECT_CHILD, args=(json.dumps(cases),))


@pytest.mark.parametrize("name", sorted(_REJECTED))
def test_huge_view_rejected_without_copying(rejected, name):
    _, exc, pattern = _REJECTED[name]
    got = rejected[name]
    assert got["type"] == exc, f"expected {exc}, got {got['type']}: {got['msg']}"
    assert re.search(pattern, got["msg"]), got["msg"]
    # (A materialised view would show as peak-RSS growth: the next test.)


def test_huge_views_never_raised_peak_rss(rejected):
    assert rejected["__growth__"] < 64 * MiB, (
        f"peak RSS grew by {rejected['__growth__'] / MiB:.0f} MiB"
    )


def test_rejected_huge_view_in_process_never_copies():
    # The same guarantee without a subprocess, for a 2**47-element view: a
    # copy (512 TiB) could not even be mapped, so a regression is a
    # MemoryError here, never a real allocation.
    C = 2**15
    w = view((C, 1, 2**16 + 1, 1))
    for x, layout in ((view((1, C, 2**16, 2**16)), "NCHW"), (view((1, 2**16, 2**16, C)), "NHWC")):
        with pytest.raises(ValueError, match="larger than the padded input"):
            pydsconv.depthwise_conv2d(x, w, layout=layout)
        with pytest.raises(ValueError, match="larger than the padded input"):
            pydsconv.separable_conv2d(x, w, view((3, C)), layout=layout)
        with pytest.raises(ValueError, match="larger than the padded input"):
            pydsconv.depthwise_conv2d_backward(view((1, C, 1, 1)), x, w, layout=layout)


# ---------------------------------------------------------------------------
# Overflowing element counts: ValueError; just below the boundary: accepted
# ---------------------------------------------------------------------------

_TOO_LARGE = r"too large|overflow"


def test_output_count_overflows_int64_2d():
    # OH = OW = 2**40 + 1 with 2**20 channels: 2**100 elements.
    x = view((1, 2**20, 1, 1))
    with pytest.raises(ValueError, match=_TOO_LARGE):
        pydsconv.depthwise_conv2d(x, view((2**20, 1, 1, 1)), padding=2**39)
    with pytest.raises(ValueError, match=_TOO_LARGE):
        pydsconv.depthwise_conv2d(
            view((1, 1, 1, 2**20)), view((2**20, 1, 1, 1)), padding=2**39, layout="NHWC"
        )
    with pytest.raises(ValueError, match=_TOO_LARGE):
        pydsconv.separable_conv2d(x, view((2**20, 1, 1, 1)), view((3, 2**20)), padding=2**39)


def test_output_count_overflows_int64_1d():
    # (2**40 + 1) positions times 2**24 channels.
    x = view((1, 2**12, 1))
    w = view((2**24, 1, 1))
    with pytest.raises(ValueError, match=_TOO_LARGE):
        pydsconv.depthwise_conv1d(x, w, padding=(2**39, 2**39))
    with pytest.raises(ValueError, match=_TOO_LARGE):
        pydsconv.depthwise_conv1d(view((1, 1, 2**12)), w, padding=(2**39, 2**39), layout="NLC")


def test_output_bytes_overflow_just_above_boundary():
    # (2**30 + 1)**2 = 2**60 + 2**31 + 1 elements: the count fits int64, the
    # count times 8 bytes does not (rule 10).
    x = view((1, 1, 1, 1))
    w = view((1, 1, 1, 1))
    for dtype in (np.float32, np.float64):
        with pytest.raises(ValueError, match=_TOO_LARGE):
            pydsconv.depthwise_conv2d(x.astype(dtype), w.astype(dtype), padding=2**29)


def test_output_just_below_boundary_is_accepted_then_cannot_be_allocated():
    # (2**30 - 1)**2 * 8 < 2**63: the validator accepts; the 4-8 EiB result
    # cannot be allocated: a clean MemoryError (NumPy's), not a crash.  In a
    # child: AddressSanitizer aborts on such a malloc unless told to fail it.
    code = r"""
import numpy as np
from numpy.lib.stride_tricks import as_strided
import pydsconv
one = as_strided(np.ones(1, np.float32), shape=(1, 1, 1, 1), strides=(0,) * 4)
for dtype in (np.float32, np.float64):
    try:
        pydsconv.depthwise_conv2d(one.astype(dtype), one.astype(dtype), padding=2**29 - 1)
        print("returned")
    except MemoryError:
        print("MemoryError")
"""
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "allocator_may_return_null=1"]))
    r = run_python(code, env={"ASAN_OPTIONS": asan}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["MemoryError", "MemoryError"], r.stdout


def test_separable_intermediate_overflow():
    # C*M = 2**16 mid channels of (2**23 + 1)**2 pixels: ~2**62 elements, times
    # 8 bytes overflows, while the 1-channel output (~2**46 elements) fits the
    # size rules (though, at 256 TiB, no address space: never allocated).
    with pytest.raises(ValueError, match=r"intermediate.*(too large|overflow)"):
        pydsconv.separable_conv2d(
            view((1, 1, 1, 1)), view((2**16, 1, 1, 1)), view((1, 2**16)), padding=2**22
        )


def test_batch_zero_with_huge_spatial_output():
    # N = 0: the result is empty whatever the other dims, if NumPy can
    # represent its shape; (2**21 + 1)**2 fits.
    x = np.ones((0, 2, 1, 1), np.float32)
    w = np.ones((4, 1, 1, 1), np.float32)
    y = pydsconv.depthwise_conv2d(x, w, padding=2**20)
    assert y.shape == (0, 4, 2**21 + 1, 2**21 + 1) and y.dtype == np.float32
    y = pydsconv.separable_conv2d(x, w, np.ones((3, 4), np.float32), padding=2**20)
    assert y.shape == (0, 3, 2**21 + 1, 2**21 + 1)
    gy = np.ones((0, 4, 2**21 + 1, 2**21 + 1), np.float32)
    gx, gw, gb = pydsconv.depthwise_conv2d_backward(gy, x, w, padding=2**20)
    assert gx.shape == x.shape and np.all(gw == 0) and np.all(gb == 0)


def test_batch_zero_with_overflowing_spatial_output():
    # N = 0 and OH = OW = 2**40 + 1: the element count is 0, but the product
    # of the other dims (the result's strides) overflows int64: a ValueError,
    # no crash, no allocation.  In a child, so that undefined behaviour on the
    # way (a sanitizer build aborts on signed overflow) fails this test only.
    code = r"""
import numpy as np
import pydsconv
x = np.ones((0, 2, 1, 1), np.float32)
w = np.ones((4, 1, 1, 1), np.float32)
pw = np.ones((3, 4), np.float32)
gy = np.lib.stride_tricks.as_strided(np.ones(1, np.float32), shape=(0, 4, 1, 1),
                                     strides=(0,) * 4)
for name, f in [
        ("dw2d", lambda: pydsconv.depthwise_conv2d(x, w, padding=2**39)),
        ("sep2d", lambda: pydsconv.separable_conv2d(x, w, pw, padding=2**39)),
        ("dwb2d", lambda: pydsconv.depthwise_conv2d_backward(gy, x, w, padding=2**39)),
        ("dw1d", lambda: pydsconv.depthwise_conv1d(x[:, :, 0], w[:, :, 0], padding=2**39)),
        ("sep1d", lambda: pydsconv.separable_conv1d(x[:, :, 0], w[:, :, 0], pw, padding=2**39))]:
    try:
        print(name, f().shape)
    except ValueError:
        print(name, "ValueError")
"""
    r = run_python(code, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    got = dict(line.split(" ", 1) for line in r.stdout.strip().splitlines())
    assert got["dw2d"] == got["sep2d"] == got["dwb2d"] == "ValueError", got
    # 1-D: (0, C, 2**40 + 1) is representable, and empty.
    assert got["dw1d"] == "(0, 4, 1099511627777)", got
    assert got["sep1d"] == "(0, 3, 1099511627777)", got


# ---------------------------------------------------------------------------
# Parameters >= 2**40: ValueError (public API and the C++ rule itself)
# ---------------------------------------------------------------------------

_BIG = [2**40, 2**40 + 1, 2**62, 2**63 - 1, 2**63, 2**64, 10**30]


@pytest.mark.parametrize(
    "value", _BIG + [np.int64(2**40), np.uint64(2**64 - 1)], ids=lambda v: f"{type(v).__name__}_{v}"
)
@pytest.mark.parametrize("param", ["stride", "padding", "dilation"])
def test_parameter_at_or_above_2_40_is_value_error(param, value):
    x = np.ones((1, 2, 3, 3), np.float32)
    w = np.ones((2, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=param):
        pydsconv.depthwise_conv2d(x, w, **{param: value})
    with pytest.raises(ValueError, match=param):
        pydsconv.depthwise_conv2d(x, w, **{param: (1, value)})
    with pytest.raises(ValueError, match=param):
        pydsconv.separable_conv2d(x, w, np.ones((1, 2), np.float32), **{param: (value, 1)})
    with pytest.raises(ValueError, match=param):
        pydsconv.depthwise_conv2d_backward(x, x, w, **{param: value})
    with pytest.raises(ValueError, match=param):
        pydsconv.depthwise_conv1d(x[:, :, 0], w[:, :, 0], **{param: value})


@pytest.mark.parametrize("value", [-(2**40), -(2**63), -(2**64)])
def test_huge_negative_padding_is_value_error(value):
    x = np.ones((1, 2, 3, 3), np.float32)
    w = np.ones((2, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match="padding"):
        pydsconv.depthwise_conv2d(x, w, padding=value)
    with pytest.raises(ValueError, match="padding"):
        pydsconv.depthwise_conv1d(x[:, :, 0], w[:, :, 0], padding=(0, value))


def _core_dw(stride=(1, 1), dilation=(1, 1), pad=(0, 0, 0, 0), spatial=2):
    x = np.ones((1, 2, 3, 3) if spatial == 2 else (1, 2, 3), np.float32)
    w = np.ones((2, 1, 1, 1) if spatial == 2 else (2, 1, 1), np.float32)
    return _core.depthwise_forward(
        x, w, None, spatial, "NCHW", stride, dilation, "explicit", pad, None, None, 0
    )


@pytest.mark.parametrize("value", [2**40, 2**62, 2**63 - 1])
def test_core_validator_rejects_parameters_at_or_above_2_40(value):
    # The Python layer filters these first; the C++ rule must hold on its own
    # (the bench binary and any other caller go straight to validate()).
    with pytest.raises(ValueError, match=r"stride.*2\*\*40"):
        _core_dw(stride=(value, 1))
    with pytest.raises(ValueError, match=r"stride.*2\*\*40"):
        _core_dw(stride=(1, value), spatial=1)
    with pytest.raises(ValueError, match=r"dilation.*2\*\*40|2\*\*40.*dilation"):
        _core_dw(dilation=(1, value))
    for i in range(4):
        pad = [0, 0, 0, 0]
        pad[i] = value
        with pytest.raises(ValueError, match=r"padding must be < 2\*\*40"):
            _core_dw(pad=tuple(pad))
    with pytest.raises(ValueError, match=r"padding must be >= 0"):
        _core_dw(pad=(0, -(2**63), 0, 0))
    with pytest.raises(ValueError, match=r"stride must be >= 1"):
        _core_dw(stride=(-(2**63), 1))


def test_core_backward_rejects_parameters_at_or_above_2_40():
    x = np.ones((1, 2, 3, 3), np.float32)
    w = np.ones((2, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"2\*\*40"):
        _core.depthwise_backward(
            x, x, w, 2, "NCHW", (2**40, 1), (1, 1), "explicit", (0, 0, 0, 0), True, True, True, 0
        )
    with pytest.raises(ValueError, match=r"2\*\*40"):
        _core.separable_forward(
            x,
            w,
            np.ones((1, 2), np.float32),
            None,
            None,
            2,
            "NCHW",
            (1, 1),
            (1, 1),
            "explicit",
            (0, 2**40, 0, 0),
            None,
            None,
            None,
            0,
        )


def test_largest_accepted_parameters_validate():
    # 2**40 - 1 is accepted by both layers (computed in the table below).
    lim = 2**40 - 1
    x = np.ones((1, 1, 1, 1), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError, match=r"out must have shape \(1, 1, 3, 3\)"):
        pydsconv.depthwise_conv2d(
            x, w, stride=lim, padding=lim, dilation=lim, out=np.empty((1, 1, 1, 1), np.float32)
        )


# ---------------------------------------------------------------------------
# Valid calls with huge stride / padding / dilation on tiny arrays
# ---------------------------------------------------------------------------

# Shared by the parent and the child: deterministic arrays for one case.
_BUILD = r"""
def build(spec):
    import numpy as np
    dt = np.dtype(spec["dtype"])
    N, C, M, Cout = spec["N"], spec["C"], spec.get("M", 1), spec.get("Cout", 1)
    sp = tuple(spec["in"])
    k = tuple(spec["k"])
    last = spec["layout"] in ("NHWC", "NLC")
    def ramp(shape, scale):
        n = int(np.prod(shape))
        return ((np.arange(n) % 13 + 1) * scale).reshape(shape)
    x = ramp((N, C) + sp, 0.5)                      # NCHW / NCL order
    dw = ramp((C * M, 1) + k, 0.25)
    db = ramp((C * M,), 0.125)
    pw = ramp((Cout, C * M), 0.75)
    pb = ramp((Cout,), 1.0)
    tolay = (lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))) if last else (lambda a: a)
    return {"x_nchw": x.astype(dt), "x": tolay(x).astype(dt), "dw": dw.astype(dt),
            "db": db.astype(dt), "pw": pw.astype(dt), "pb": pb.astype(dt), "tolay": tolay,
            "dt": dt, "last": last}

def conv_kw(spec):
    return {"stride": spec.get("stride", 1), "padding": spec.get("padding", 0),
            "dilation": spec.get("dilation", 1), "layout": spec["layout"]}

def run(spec, grad_out_nchw=None):
    import numpy as np
    import pydsconv
    a = build(spec)
    s = "2d" if len(spec["in"]) == 2 else "1d"
    fromlay = (lambda r: np.moveaxis(r, -1, 1)) if a["last"] else (lambda r: r)
    kw = conv_kw(spec)
    if spec["op"] == "dw":
        y = getattr(pydsconv, "depthwise_conv" + s)(a["x"], a["dw"], a["db"], **kw)
        return [fromlay(y)]
    if spec["op"] == "sep":
        y = getattr(pydsconv, "separable_conv" + s)(a["x"], a["dw"], a["pw"], a["db"], a["pb"],
                                                    mid_activation="relu", **kw)
        return [fromlay(y)]
    gy = a["tolay"](np.asarray(grad_out_nchw, a["dt"])).astype(a["dt"])
    gx, gw, gb = getattr(pydsconv, "depthwise_conv" + s + "_backward")(gy, a["x"], a["dw"], **kw)
    return [fromlay(gx), gw, gb]
"""

_ns = {}
exec(_BUILD, _ns)
_build, _conv_kw = _ns["build"], _ns["conv_kw"]


def _resolve(spec):
    """(stride, dilation, ((top, bottom), (left, right)), (OH, OW)) by cpp/README.md rules 6-7,
    as 2-D (1-D: H = 1), with Python ints."""
    sp = tuple(spec["in"])
    k = tuple(spec["k"])
    two = len(sp) == 2
    hw = sp if two else (1,) + sp
    kk = k if two else (1,) + k

    def pair(v):
        if isinstance(v, (tuple, list)):
            return tuple(v) if two else (1,) + tuple(v)
        return (v, v) if two else (1, v)

    s, d = pair(spec.get("stride", 1)), pair(spec.get("dilation", 1))
    p = spec.get("padding", 0)
    pads = []
    for ax in range(2):
        eff = (kk[ax] - 1) * d[ax] + 1
        if not two and ax == 0:
            pads.append((0, 0))
        elif p == "valid":
            pads.append((0, 0))
        elif p == "same":
            out = -(-hw[ax] // s[ax])
            total = max((out - 1) * s[ax] + eff - hw[ax], 0)
            pads.append((total // 2, total - total // 2))
        elif p == "causal":
            pads.append((eff - 1, 0))
        elif isinstance(p, int):
            pads.append((p, p))
        elif two:
            e = p[ax]
            pads.append(tuple(e) if isinstance(e, (tuple, list)) else (e, e))
        else:
            pads.append(tuple(p))
    outs = tuple(
        (hw[ax] + sum(pads[ax]) - ((kk[ax] - 1) * d[ax] + 1)) // s[ax] + 1 for ax in range(2)
    )
    return s, d, pads, outs, hw, kk


def _direct_dw(spec, xget, N, C, db=True):
    """Depthwise forward by a direct loop over outputs and taps (only in-image
    taps are read), NCHW float64.  ``xget(n, c, h, w)`` gives x's values."""
    a = _build(spec)
    s, d, pads, (OH, OW), (H, W), (kh, kw) = _resolve(spec)
    w = a["dw"].astype(np.float64).reshape(-1, kh, kw)
    b = a["db"].astype(np.float64)
    CM = w.shape[0]
    M = CM // C
    y = np.zeros((N, CM, OH, OW))
    for n in range(N):
        for co in range(CM):
            for oh in range(OH):
                for ow in range(OW):
                    acc = b[co] if db else 0.0
                    for i in range(kh):
                        ih = oh * s[0] - pads[0][0] + i * d[0]
                        if not 0 <= ih < H:
                            continue
                        for j in range(kw):
                            iw = ow * s[1] - pads[1][0] + j * d[1]
                            if 0 <= iw < W:
                                acc += w[co, i, j] * xget(n, co // M, ih, iw)
                    y[n, co, oh, ow] = acc
    return y


def _direct_dw_backward(spec, gy, xget, N, C, input_grad=True):
    a = _build(spec)
    s, d, pads, (OH, OW), (H, W), (kh, kw) = _resolve(spec)
    w = a["dw"].astype(np.float64).reshape(-1, kh, kw)
    CM = w.shape[0]
    M = CM // C
    gx = np.zeros((N, C, H, W)) if input_grad else None
    gw = np.zeros((CM, kh, kw))
    for n in range(N):
        for co in range(CM):
            for oh in range(OH):
                for ow in range(OW):
                    g = gy[n, co, oh, ow]
                    for i in range(kh):
                        ih = oh * s[0] - pads[0][0] + i * d[0]
                        if not 0 <= ih < H:
                            continue
                        for j in range(kw):
                            iw = ow * s[1] - pads[1][0] + j * d[1]
                            if 0 <= iw < W:
                                gw[co, i, j] += g * xget(n, co // M, ih, iw)
                                if input_grad:
                                    gx[n, co // M, ih, iw] += g * w[co, i, j]
    return gx, gw, gy.sum(axis=(0, 2, 3))


def _expected(spec):
    a = _build(spec)
    x = a["x_nchw"].astype(np.float64)
    if len(spec["in"]) == 1:
        x = x[:, :, None, :]
    N, C = spec["N"], spec["C"]

    def xget(n, c, h, w):
        return x[n, c, h, w]

    squeeze = (lambda r: r[:, :, 0, :]) if len(spec["in"]) == 1 else (lambda r: r)
    if spec["op"] == "dw":
        return [squeeze(_direct_dw(spec, xget, N, C))]
    if spec["op"] == "sep":
        mid = np.maximum(_direct_dw(spec, xget, N, C), 0.0)
        y = np.einsum("oi,nihw->nohw", a["pw"].astype(np.float64), mid)
        return [squeeze(y + a["pb"].astype(np.float64)[None, :, None, None])]
    gy = _grad_out(spec)
    gy4 = gy[:, :, None, :] if len(spec["in"]) == 1 else gy
    gx, gw, gb = _direct_dw_backward(spec, gy4, xget, N, C)
    return [squeeze(gx), gw.reshape(a["dw"].shape), gb]


def _grad_out(spec):
    a = _build(spec)
    _, _, _, (OH, OW), _, _ = _resolve(spec)
    CM = a["dw"].shape[0]
    shape = (spec["N"], CM, OH, OW) if len(spec["in"]) == 2 else (spec["N"], CM, OW)
    return ((np.arange(int(np.prod(shape))) % 7 + 1) * 0.5).reshape(shape)


_LIM = 2**40 - 1
# A hang guard, not a speed limit: generous enough for a child interpreter
# under AddressSanitizer on a loaded machine.
_HANG_S = 120
# name -> spec.  Outputs have at most a few dozen elements; the arithmetic
# (oh * stride, tap * dilation, padded sizes) goes far beyond 2**32.
_HUGE_PARAMS = {
    "dw2d_nchw_stride_pad_2_33": dict(
        op="dw", N=1, C=1, **{"in": (1, 1)}, k=(1, 1), stride=2**33, padding=2**33, layout="NCHW"
    ),
    "dw2d_nhwc_stride_pad_2_33": dict(
        op="dw", N=1, C=1, **{"in": (1, 1)}, k=(1, 1), stride=2**33, padding=2**33, layout="NHWC"
    ),
    "dw2d_nchw_stride_pad_2_31": dict(
        op="dw",
        N=2,
        C=2,
        M=2,
        **{"in": (2, 3)},
        k=(2, 2),
        stride=2**31,
        padding=2**31,
        layout="NCHW",
    ),
    "dw2d_nchw_stride_pad_2_16": dict(
        op="dw", N=1, C=3, **{"in": (3, 2)}, k=(3, 3), stride=2**16, padding=2**16, layout="NCHW"
    ),
    "dw2d_nchw_stride_3_pad_2_31_wide": dict(
        op="dw",
        N=1,
        C=1,
        **{"in": (1, 1)},
        k=(1, 1),
        stride=(2**31, 2**27),
        padding=(2**31, 2**31),
        layout="NCHW",
    ),
    "dw2d_nchw_max_params": dict(
        op="dw",
        N=1,
        C=1,
        **{"in": (1, 1)},
        k=(1, 1),
        stride=_LIM,
        padding=_LIM,
        dilation=_LIM,
        layout="NCHW",
    ),
    "dw2d_nhwc_max_params": dict(
        op="dw",
        N=1,
        C=2,
        **{"in": (1, 1)},
        k=(1, 1),
        stride=_LIM,
        padding=_LIM,
        dilation=_LIM,
        layout="NHWC",
    ),
    "dw2d_nchw_dilation_2_40_tall": dict(
        op="dw",
        N=1,
        C=1,
        **{"in": (1, 1)},
        k=(2, 2),
        dilation=(2**40 - 1, 2**24 - 2),
        padding=((2**40 - 1, 0), (2**24 - 2, 0)),
        layout="NCHW",
    ),
    "dw2d_nhwc_dilation_2_40_tall": dict(
        op="dw",
        N=1,
        C=1,
        **{"in": (1, 1)},
        k=(2, 2),
        dilation=(2**40 - 1, 2**24 - 2),
        padding=((2**40 - 1, 0), (2**24 - 2, 0)),
        layout="NHWC",
    ),
    "dw2d_nchw_dilation_2_33_same": dict(
        op="dw", N=1, C=2, **{"in": (2, 2)}, k=(3, 3), dilation=2**33, padding="same", layout="NCHW"
    ),
    "dw2d_nchw_stride_2_39_same": dict(
        op="dw", N=1, C=1, **{"in": (3, 3)}, k=(3, 3), stride=2**39, padding="same", layout="NCHW"
    ),
    "dw1d_ncl_dilation_2_32": dict(
        op="dw", N=1, C=1, **{"in": (1,)}, k=(2,), dilation=2**32, padding=(2**32, 0), layout="NCL"
    ),
    "dw1d_nlc_dilation_2_32": dict(
        op="dw", N=1, C=1, **{"in": (1,)}, k=(2,), dilation=2**32, padding=(2**32, 0), layout="NLC"
    ),
    "dw1d_ncl_causal_dilation_2_39": dict(
        op="dw", N=1, C=2, **{"in": (3,)}, k=(3,), dilation=2**39, padding="causal", layout="NCL"
    ),
    "dw1d_ncl_stride_pad_2_35": dict(
        op="dw", N=1, C=1, M=3, **{"in": (2,)}, k=(2,), stride=2**35, padding=2**35, layout="NCL"
    ),
    "sep2d_nchw_stride_pad_2_33": dict(
        op="sep",
        N=1,
        C=2,
        M=2,
        Cout=3,
        **{"in": (1, 1)},
        k=(1, 1),
        stride=2**33,
        padding=2**33,
        layout="NCHW",
    ),
    "sep2d_nhwc_stride_pad_2_33": dict(
        op="sep",
        N=1,
        C=2,
        M=2,
        Cout=3,
        **{"in": (1, 1)},
        k=(1, 1),
        stride=2**33,
        padding=2**33,
        layout="NHWC",
    ),
    "sep2d_nchw_dilation_2_40_tall": dict(
        op="sep",
        N=1,
        C=1,
        Cout=2,
        **{"in": (1, 1)},
        k=(2, 2),
        dilation=(2**40 - 1, 2**24 - 2),
        padding=((2**40 - 1, 0), (2**24 - 2, 0)),
        layout="NCHW",
    ),
    "sep1d_ncl_dilation_2_32": dict(
        op="sep",
        N=1,
        C=1,
        Cout=2,
        **{"in": (1,)},
        k=(2,),
        dilation=2**32,
        padding=(2**32, 0),
        layout="NCL",
    ),
    "dwb2d_nchw_stride_pad_2_33": dict(
        op="dwb", N=1, C=1, **{"in": (1, 1)}, k=(1, 1), stride=2**33, padding=2**33, layout="NCHW"
    ),
    "dwb2d_nhwc_stride_pad_2_33": dict(
        op="dwb",
        N=1,
        C=2,
        M=2,
        **{"in": (1, 1)},
        k=(1, 1),
        stride=2**33,
        padding=2**33,
        layout="NHWC",
    ),
    "dwb2d_nchw_max_params": dict(
        op="dwb",
        N=1,
        C=1,
        **{"in": (1, 1)},
        k=(1, 1),
        stride=_LIM,
        padding=_LIM,
        dilation=_LIM,
        layout="NCHW",
    ),
    "dwb2d_nchw_dilation_2_40_tall": dict(
        op="dwb",
        N=1,
        C=1,
        **{"in": (1, 1)},
        k=(2, 2),
        dilation=(2**40 - 1, 2**24 - 2),
        padding=((2**40 - 1, 0), (2**24 - 2, 0)),
        layout="NCHW",
    ),
    "dwb1d_nlc_dilation_2_32": dict(
        op="dwb", N=1, C=1, **{"in": (1,)}, k=(2,), dilation=2**32, padding=(2**32, 0), layout="NLC"
    ),
    "dwb1d_ncl_causal_dilation_2_39": dict(
        op="dwb",
        N=2,
        C=1,
        M=2,
        **{"in": (3,)},
        k=(3,),
        dilation=2**39,
        padding="causal",
        layout="NCL",
    ),
}

_HUGE_CHILD = (
    _BUILD
    + r"""
spec = json.loads(sys.argv[1])
gy = json.loads(sys.argv[2])
cap_address_space(2 << 30)
try:
    outs = run(spec, gy)
    print(json.dumps({"ok": [np.asarray(o, np.float64).tolist() for o in outs]}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__ + ": " + str(e)}))
"""
)


def _as_json_spec(spec):
    return json.dumps({k: v for k, v in spec.items()})


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(_HUGE_PARAMS))
def test_huge_parameters_computed_correctly(name, dtype):
    """Valid calls: a tiny input, a tiny output, 64-bit index arithmetic.

    They must be computed correctly with a small amount of memory (the child
    has 2 GiB of address space to spare): a MemoryError here means some
    buffer was sized by the (virtual) padded input or the dilated kernel
    extent, a crash means an overflowing size or index.
    """
    spec = dict(_HUGE_PARAMS[name], dtype=dtype)
    gy = _grad_out(spec).tolist() if spec["op"] == "dwb" else None
    try:  # a few dozen outputs: well under a second when correct
        r = run_python(
            _PRELUDE + _HUGE_CHILD, args=(_as_json_spec(spec), json.dumps(gy)), timeout=_HANG_S
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"valid call {spec} hung (killed after {_HANG_S} s)")
    assert r.returncode == 0, (
        f"child crashed (exit {r.returncode}) on a valid call {spec}:\n{r.stderr[-2000:]}"
    )
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert "ok" in res, f"valid call {spec} failed: {res['error']}"
    want = _expected(spec)
    assert len(res["ok"]) == len(want)
    rtol = 1e-6 if dtype == "float32" else 1e-12
    for got, exp in zip(res["ok"], want):
        got = np.asarray(got)
        assert got.shape == exp.shape, (got.shape, exp.shape)
        np.testing.assert_allclose(got, exp, rtol=rtol, atol=rtol)


def test_direct_reference_agrees_with_pydsconv_reference():
    # The oracle of the table above, checked on small parameters against
    # pydsconv.reference (which pads for real, so only small ones).
    from pydsconv import reference as ref

    specs = [
        dict(
            op="dw",
            N=2,
            C=2,
            M=2,
            **{"in": (4, 5)},
            k=(3, 2),
            stride=(2, 3),
            padding=((1, 2), (0, 3)),
            dilation=(2, 1),
            layout="NCHW",
            dtype="float64",
        ),
        dict(
            op="dw",
            N=1,
            C=3,
            **{"in": (5,)},
            k=(3,),
            dilation=2,
            padding="causal",
            layout="NCL",
            dtype="float64",
        ),
        dict(
            op="dwb",
            N=2,
            C=2,
            M=2,
            **{"in": (4, 5)},
            k=(3, 2),
            stride=(2, 3),
            padding="same",
            dilation=(2, 1),
            layout="NCHW",
            dtype="float64",
        ),
        dict(
            op="sep",
            N=1,
            C=2,
            M=2,
            Cout=3,
            **{"in": (3, 4)},
            k=(2, 2),
            stride=2,
            padding=1,
            layout="NCHW",
            dtype="float64",
        ),
    ]
    for spec in specs:
        a = _build(spec)
        kw = _conv_kw(spec)
        s = "2d" if len(spec["in"]) == 2 else "1d"
        if spec["op"] == "dw":
            want = [getattr(ref, "depthwise_conv" + s)(a["x"], a["dw"], a["db"], **kw)]
        elif spec["op"] == "sep":
            want = [
                getattr(ref, "separable_conv" + s)(
                    a["x"], a["dw"], a["pw"], a["db"], a["pb"], mid_activation="relu", **kw
                )
            ]
        else:
            want = list(
                getattr(ref, "depthwise_conv" + s + "_backward")(
                    _grad_out(spec), a["x"], a["dw"], **kw
                )
            )
        for got, exp in zip(_expected(spec), want):
            np.testing.assert_allclose(got, exp, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# A real, C-contiguous input of more than 2**31 elements (zero pages)
# ---------------------------------------------------------------------------

_BIG_INPUT_CHILD = r"""
layout = sys.argv[1]
H, W, C = (46341, 46341, 1) if layout == "NCHW" else (32769, 32768, 2)
assert H * W * C > 2**31
with open("/proc/self/maps") as f:
    if "libasan" in f.read():  # its allocator touches (or shadows) what it hands out
        print(json.dumps({"skip": "under AddressSanitizer an 8 GiB calloc is not free"}))
        sys.exit(0)
try:
    xl = np.zeros((1, C, H, W) if layout == "NCHW" else (1, H, W, C), np.float32)  # 8 GiB, untouched
except MemoryError:
    print(json.dumps({"skip": "the OS refused to reserve 8 GiB of address space"}))
    sys.exit(0)
x = xl if layout == "NCHW" else np.moveaxis(xl, -1, 1)   # logical NCHW view (no copy)
marks = {}
for c in range(C):
    for (h, w), v in {(0, 0): 1.0, (1, 2): 2.0, (H - 1, W - 1): 3.0, (H - 2, W - 1): 4.0,
                      (H - 1, W - 3): 5.0, (H // 2, W // 2): 6.0, (H - 1, 0): 7.0,
                      (0, W - 1): 8.0}.items():
        x[0, c, h, w] = v * (c + 1)
        marks[f"{c},{h},{w}"] = v * (c + 1)
cap_address_space(2 << 30)   # a copy of x (8 GiB) or a full-size scratch would now fail
base = peak()
res = {"H": H, "W": W, "C": C, "marks": marks}
def nchw(a):
    return a if layout == "NCHW" else np.moveaxis(a, -1, 1)
def attempt(key, f):
    try:
        res[key] = np.asarray(f(), np.float64).tolist()
    except Exception as e:
        res[key] = type(e).__name__ + ": " + str(e)
w3 = np.arange(1, 9 * C + 1, dtype=np.float32).reshape(C, 1, 3, 3)
w2 = np.arange(1, 4 * C + 1, dtype=np.float32).reshape(C, 1, 2, 2)
pw = np.arange(1, 2 * C + 1, dtype=np.float32).reshape(2, C)
attempt("dw_stride", lambda: nchw(pydsconv.depthwise_conv2d(xl, w3, stride=(H - 3, W - 3),
                                                            layout=layout)))
attempt("dw_dilation", lambda: nchw(pydsconv.depthwise_conv2d(xl, w2, dilation=(H - 1, W - 1),
                                                              layout=layout)))
attempt("sep_stride", lambda: nchw(pydsconv.separable_conv2d(xl, w3, pw, stride=(H - 3, W - 3),
                                                             layout=layout)))
gy = np.arange(1, 4 * C + 1, dtype=np.float32).reshape(1, C, 2, 2)
gyl = gy if layout == "NCHW" else np.ascontiguousarray(np.moveaxis(gy, 1, -1))
attempt("dwb_weight", lambda: pydsconv.depthwise_conv2d_backward(
    gyl, xl, w3, stride=(H - 3, W - 3), layout=layout, input_grad=False, bias_grad=False)[1])
res["growth"] = peak() - base
print(json.dumps(res))
"""


@pytest.fixture(scope="module", params=["NCHW", "NHWC"])
def big_input(request):
    res = _child_json(_BIG_INPUT_CHILD, args=(request.param,), timeout=300)
    if "skip" in res:
        pytest.skip(res["skip"])
    return res


def _big_spec(res, k, stride=1, dilation=1):
    return dict(
        op="dw",
        N=1,
        C=res["C"],
        **{"in": (res["H"], res["W"])},
        k=k,
        stride=stride,
        dilation=dilation,
        padding=0,
        layout="NCHW",
        dtype="float64",
    )


def _big_xget(res):
    marks = {tuple(int(t) for t in key.split(",")): v for key, v in res["marks"].items()}
    return lambda n, c, h, w: marks.get((c, h, w), 0.0)


def _dw_weights(C, k):
    return np.arange(1, C * k * k + 1, dtype=np.float64).reshape(C, 1, k, k)


def _direct_plain(res, w, stride, dilation):
    """Depthwise without bias on the marked zero image, from explicit weights."""
    H, W = res["H"], res["W"]
    xget = _big_xget(res)
    C, _, kh, kw = w.shape
    OH = (H - ((kh - 1) * dilation[0] + 1)) // stride[0] + 1
    OW = (W - ((kw - 1) * dilation[1] + 1)) // stride[1] + 1
    y = np.zeros((1, C, OH, OW))
    for c in range(C):
        for oh in range(OH):
            for ow in range(OW):
                y[0, c, oh, ow] = sum(
                    w[c, 0, i, j]
                    * xget(0, c, oh * stride[0] + i * dilation[0], ow * stride[1] + j * dilation[1])
                    for i in range(kh)
                    for j in range(kw)
                )
    return y


def _check_big(res, key, want):
    got = res[key]
    assert not isinstance(got, str), f"{key}: {got}"
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6)


def test_big_input_depthwise_stride(big_input):
    H, W = big_input["H"], big_input["W"]
    w = _dw_weights(big_input["C"], 3)
    _check_big(big_input, "dw_stride", _direct_plain(big_input, w, (H - 3, W - 3), (1, 1)))


def test_big_input_depthwise_dilation(big_input):
    H, W = big_input["H"], big_input["W"]
    w = _dw_weights(big_input["C"], 2)
    _check_big(big_input, "dw_dilation", _direct_plain(big_input, w, (1, 1), (H - 1, W - 1)))


def test_big_input_separable_stride(big_input):
    H, W, C = big_input["H"], big_input["W"], big_input["C"]
    mid = _direct_plain(big_input, _dw_weights(C, 3), (H - 3, W - 3), (1, 1))
    pw = np.arange(1, 2 * C + 1, dtype=np.float64).reshape(2, C)
    _check_big(big_input, "sep_stride", np.einsum("oi,nihw->nohw", pw, mid))


def test_big_input_depthwise_weight_grad(big_input):
    H, W, C = big_input["H"], big_input["W"], big_input["C"]
    xget = _big_xget(big_input)
    gy = np.arange(1, 4 * C + 1, dtype=np.float64).reshape(1, C, 2, 2)
    s = (H - 3, W - 3)
    gw = np.zeros((C, 1, 3, 3))
    for c in range(C):
        for oh in range(2):
            for ow in range(2):
                for i in range(3):
                    for j in range(3):
                        gw[c, 0, i, j] += gy[0, c, oh, ow] * xget(
                            0, c, oh * s[0] + i, ow * s[1] + j
                        )
    _check_big(big_input, "dwb_weight", gw)


def test_big_input_was_not_copied(big_input):
    assert big_input["growth"] < 256 * MiB, f"peak RSS grew by {big_input['growth'] / MiB:.0f} MiB"

"""Bad input, for every argument rule (docs/api.md "Errors", cpp/README.md), for every op.

* dtype problems (integer, complex, float16, mixed, strings, ragged lists)
  are ``TypeError`` naming the argument; a list of floats is converted;
* shape problems are ``ValueError`` naming the argument and the expected
  shape (Keras-shaped kernels get a hint to ``pydsconv.weights``);
* ``out=``: wrong shape / dtype / non-contiguous / read-only / overlapping an
  input is ``ValueError``, a non-array ``TypeError``; a good one is returned;
* whenever a forward op raises, an ``out=`` that was passed is untouched
  (every error case below is run once without and once with a sentinel out);
* ``num_threads`` / ``set_num_threads`` < 1 is ``ValueError``; batch 0 works.
"""

import re

import numpy as np
import pytest
from conftest import rand, run_python

import pydsconv
from pydsconv import reference as ref
from pydsconv import weights as keras_weights

N, C, M, COUT, H, W, L, K = 2, 4, 2, 5, 7, 7, 9, 3
SENTINEL = -7.25


class Op:
    """One public op, with a valid call that the tests then break."""

    def __init__(self, name, spatial, kind):
        self.name, self.spatial, self.kind = name, spatial, kind
        self.fn = getattr(pydsconv, name)
        self.ref = getattr(ref, name)
        self.forward = kind in ("dw", "pw", "sep")
        self.backward = not self.forward
        self.has_dw = kind in ("dw", "sep", "dwb")
        self.has_pw = kind in ("pw", "sep", "pwb")
        self.layouts = ("NCHW", "NHWC") if spatial == 2 else ("NCL", "NLC")
        self.dw_name = "depthwise_weight" if kind == "sep" else "weight"
        self.pw_name = "pointwise_weight" if kind == "sep" else "weight"
        self.bias_names = {
            "dw": ["bias"],
            "pw": ["bias"],
            "sep": ["depthwise_bias", "pointwise_bias"],
        }.get(kind, [])
        self.weight_names = [
            n
            for n in ("weight", "depthwise_weight", "pointwise_weight")
            if (n == "weight" and kind != "sep") or (n != "weight" and kind == "sep")
        ]

    def __repr__(self):
        return self.name

    def channels_last(self, layout):
        return layout in ("NHWC", "NLC")

    def x_shape(self, layout, n=N, c=C, hw=None):
        sp = hw if hw is not None else ((H, W) if self.spatial == 2 else (L,))
        return (n,) + tuple(sp) + (c,) if self.channels_last(layout) else (n, c) + tuple(sp)

    def out_channels(self, c=C, m=M, cout=COUT):
        return c * m if self.kind in ("dw", "dwb") else cout

    def out_shape(self, layout, n=N, c=C, m=M, cout=COUT):
        """Forward result shape of the default call (padding keeps H, W)."""
        return self.x_shape(layout, n=n, c=self.out_channels(c, m, cout))

    def kernel(self):
        return (K, K) if self.spatial == 2 else (K,)

    def ones(self):
        return (1, 1) if self.spatial == 2 else (1,)

    def conv_kw(self):
        return {"padding": 1} if self.has_dw else {}

    def arrays(self, dtype=np.float32, layout=None, n=N, c=C, m=M, cout=COUT, seed=0):
        layout = self.layouts[0] if layout is None else layout
        rng = np.random.default_rng(seed)
        x = rand(rng, self.x_shape(layout, n, c), dtype)
        dw = rand(rng, (c * m, 1) + self.kernel(), dtype)
        if self.kind == "dw":
            return {"x": x, "weight": dw, "bias": rand(rng, (c * m,), dtype)}
        if self.kind == "pw":
            return {
                "x": x,
                "weight": rand(rng, (cout, c) + self.ones(), dtype),
                "bias": rand(rng, (cout,), dtype),
            }
        if self.kind == "sep":
            return {
                "x": x,
                "depthwise_weight": dw,
                "pointwise_weight": rand(rng, (cout, c * m) + self.ones(), dtype),
                "depthwise_bias": rand(rng, (c * m,), dtype),
                "pointwise_bias": rand(rng, (cout,), dtype),
            }
        gy = rand(rng, self.out_shape(layout, n, c, m, cout), dtype)
        if self.kind == "dwb":
            return {"grad_out": gy, "x": x, "weight": dw}
        return {"grad_out": gy, "x": x, "weight": rand(rng, (cout, c) + self.ones(), dtype)}

    def call(self, arrays, layout=None, **kw):
        kwargs = dict(self.conv_kw())
        kwargs.update(kw)
        return self.fn(**arrays, layout=self.layouts[0] if layout is None else layout, **kwargs)


OPS = [
    Op(f"{base}{d}d{suffix}", d, kind)
    for d in (2, 1)
    for base, suffix, kind in (
        ("depthwise_conv", "", "dw"),
        ("pointwise_conv", "", "pw"),
        ("separable_conv", "", "sep"),
        ("depthwise_conv", "_backward", "dwb"),
        ("pointwise_conv", "_backward", "pwb"),
    )
]
FORWARD = [op for op in OPS if op.forward]
BACKWARD = [op for op in OPS if op.backward]
DW_OPS = [op for op in OPS if op.has_dw]
PW_OPS = [op for op in OPS if op.has_pw]
OPS_2D = [op for op in OPS if op.spatial == 2]
OPS_1D = [op for op in OPS if op.spatial == 1]


def _ids(ops):
    return [op.name for op in ops]


def names(pattern_names):
    """Regexes matching each argument name as a whole word."""
    return [rf"(?<![\w.]){re.escape(n)}(?!\w)" for n in pattern_names]


def expect_error(op, arrays, exc, patterns, layout=None, out_dtype=None, **kw):
    """``op(**arrays, **kw)`` raises ``exc`` matching every regex in ``patterns``.

    For forward ops it is run a second time with an ``out`` of the valid
    call's shape and dtype filled with a sentinel, which must be untouched
    (and the same error must come out).  Inputs must be untouched too.
    """
    layout = op.layouts[0] if layout is None else layout
    snapshot = {k: v.copy() for k, v in arrays.items() if isinstance(v, np.ndarray)}
    runs = [None]
    if op.forward and "out" not in kw:
        x = arrays.get("x")
        dt = out_dtype or (
            x.dtype if isinstance(x, np.ndarray) and x.dtype.kind == "f" else np.float64
        )
        runs.append(np.full(op.out_shape(layout), SENTINEL, dtype=dt))
    for out in runs:
        extra = {} if out is None else {"out": out}
        with pytest.raises(exc) as info:
            op.call(arrays, layout=layout, **kw, **extra)
        msg = str(info.value)
        for pat in patterns:
            assert re.search(pat, msg), f"{pat!r} not found in {exc.__name__}: {msg!r}"
        if out is not None:
            assert np.all(out == SENTINEL), f"out was written to before {exc.__name__}: {msg}"
    for k, v in snapshot.items():
        assert np.array_equal(arrays[k], v), f"input {k} was modified"
    return msg


# ---------------------------------------------------------------------------
# The valid calls themselves work (the errors below are then due to the change)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
@pytest.mark.parametrize("li", [0, 1])
def test_valid_call_matches_reference(op, li):
    layout = op.layouts[li]
    a = op.arrays(np.float64, layout)
    got = op.call(a, layout=layout)
    want = op.ref(**a, layout=layout, **op.conv_kw())
    if op.forward:
        assert got.shape == op.out_shape(layout)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    else:
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# TypeError: dtypes and non-arrays
# ---------------------------------------------------------------------------


def _array_args(op):
    return [(op, n) for n in op.arrays()]


ARRAY_ARGS = [p for op in OPS for p in _array_args(op)]
ARRAY_IDS = [f"{op.name}-{n}" for op, n in ARRAY_ARGS]


@pytest.mark.parametrize("op,arg", ARRAY_ARGS, ids=ARRAY_IDS)
@pytest.mark.parametrize("int_dtype", [np.int32, np.int64])
def test_integer_array_is_type_error(op, arg, int_dtype):
    a = op.arrays()
    a[arg] = (a[arg] * 10).astype(int_dtype)
    expect_error(op, a, TypeError, names([arg]) + [re.escape(np.dtype(int_dtype).name)])


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_integer_x_is_type_error_even_with_float64_weights(op):
    # No silent int -> float cast, not even to the weights' dtype.
    a = op.arrays(np.float64)
    a["x"] = np.ones(a["x"].shape, np.int64)
    expect_error(op, a, TypeError, names(["x"]) + ["int64"])


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_complex_weight_is_type_error(op):
    for wname in op.weight_names:
        a = op.arrays(np.float64)
        a[wname] = a[wname].astype(np.complex128)
        expect_error(op, a, TypeError, names([wname]) + ["complex"])


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_complex_x_is_type_error(op):
    a = op.arrays(np.float32)
    a["x"] = a["x"].astype(np.complex64)
    expect_error(op, a, TypeError, names(["x"]) + ["complex"])


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float16_bias_is_type_error(op, dtype):
    for bname in op.bias_names:
        a = op.arrays(dtype)
        a[bname] = a[bname].astype(np.float16)
        expect_error(op, a, TypeError, names([bname]) + ["float16"])


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_float16_everything_is_type_error(op):
    a = {k: v.astype(np.float16) for k, v in op.arrays().items()}
    expect_error(op, a, TypeError, ["float16"], out_dtype=np.float32)


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_mixed_x_and_weight_is_type_error(op):
    for wname in op.weight_names:
        for xdt, wdt in ((np.float64, np.float32), (np.float32, np.float64)):
            a = op.arrays(xdt)
            a[wname] = a[wname].astype(wdt)
            # names the odd argument and says what it disagrees with
            other = ["x"] if op.forward else []
            expect_error(op, a, TypeError, names([wname] + other) + ["float32", "float64"])


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
def test_mixed_x_and_bias_is_type_error(op):
    for bname in op.bias_names:
        for xdt, bdt in ((np.float64, np.float32), (np.float32, np.float64)):
            a = op.arrays(xdt)
            a[bname] = a[bname].astype(bdt)
            expect_error(op, a, TypeError, names([bname, "x"]) + ["float32", "float64"])


@pytest.mark.parametrize("op", BACKWARD, ids=_ids(BACKWARD))
def test_mixed_grad_out_and_x_is_type_error(op):
    for gdt, xdt in ((np.float64, np.float32), (np.float32, np.float64)):
        a = op.arrays(xdt)
        a["grad_out"] = a["grad_out"].astype(gdt)
        expect_error(op, a, TypeError, names(["grad_out", "x"]) + ["float32", "float64"])


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
@pytest.mark.parametrize(
    "bad", ["abc", None, object(), {"a": 1}], ids=["str", "None", "object", "dict"]
)
def test_non_array_x_is_type_error(op, bad):
    a = op.arrays(np.float64)
    a["x"] = bad
    expect_error(op, a, TypeError, names(["x"]))


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_string_weight_is_type_error(op):
    for wname in op.weight_names:
        a = op.arrays(np.float64)
        a[wname] = "weights.npy"
        expect_error(op, a, TypeError, names([wname]))


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_none_weight_is_type_error(op):
    # np.asarray(None) is an object array: not a float array, so TypeError.
    for wname in op.weight_names:
        a = op.arrays(np.float64)
        a[wname] = None
        expect_error(op, a, TypeError, names([wname]))


_NONE_GRAD_OUT = """
import numpy as np, pydsconv
op = getattr(pydsconv, {name!r})
x = np.ones({x_shape}, np.float32)
w = np.ones({w_shape}, np.float32)
try:
    op(None, x, w, **{kw!r})
except Exception as e:
    print(type(e).__name__, e)
else:
    print("returned")
"""


@pytest.mark.parametrize("op", BACKWARD, ids=_ids(BACKWARD))
def test_none_grad_out_is_type_error(op):
    # In a subprocess: a crash here must not take the test run down.
    a = op.arrays()
    script = _NONE_GRAD_OUT.format(
        name=op.name, x_shape=a["x"].shape, w_shape=a["weight"].shape, kw=op.conv_kw()
    )
    r = run_python(script, timeout=300)
    assert r.returncode == 0, f"{op.name}(None, x, w) crashed: rc={r.returncode} {r.stderr[-500:]}"
    assert r.stdout.startswith("TypeError") and "grad_out" in r.stdout, r.stdout


@pytest.mark.parametrize("op", BACKWARD, ids=_ids(BACKWARD))
def test_string_grad_out_is_type_error(op):
    a = op.arrays(np.float64)
    a["grad_out"] = "grad"
    expect_error(op, a, TypeError, names(["grad_out"]))


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_ragged_list_x_is_type_error(op):
    a = op.arrays(np.float64)
    a["x"] = [[[1.0, 2.0], [3.0]], [[4.0]]]
    expect_error(op, a, TypeError, names(["x"]))


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_ragged_list_weight_is_type_error(op):
    a = op.arrays(np.float64)
    a[op.weight_names[0]] = [[1.0, 2.0], [3.0]]
    expect_error(op, a, TypeError, names([op.weight_names[0]]))


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_list_of_floats_x_is_accepted_as_float64(op):
    a = op.arrays(np.float64)
    want = op.call(a)
    b = dict(a)
    b["x"] = a["x"].tolist()
    got = op.call(b)
    if op.forward:
        assert isinstance(got, np.ndarray) and got.dtype == np.float64
        assert np.array_equal(got, want)
    else:
        for g, w in zip(got, want):
            assert g.dtype == np.float64 and np.array_equal(g, w)


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_all_lists_are_accepted_as_float64(op):
    a = op.arrays(np.float64)
    want = op.call(a)
    got = op.call({k: v.tolist() for k, v in a.items()})
    if op.forward:
        assert got.dtype == np.float64 and np.array_equal(got, want)
    else:
        for g, w in zip(got, want):
            assert g.dtype == np.float64 and np.array_equal(g, w)


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_list_x_with_float32_weights_is_type_error(op):
    # The list becomes float64; float32 weights then disagree: no silent cast.
    a = op.arrays(np.float32)
    a["x"] = a["x"].tolist()
    expect_error(op, a, TypeError, ["float32", "float64"], out_dtype=np.float32)


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_non_native_byte_order_is_type_error_or_accepted(op):
    # Not in the contract either way; it must never be misread silently.
    a = op.arrays(np.float64)
    want = op.call(a)
    b = dict(a)
    b["x"] = a["x"].astype(a["x"].dtype.newbyteorder())
    try:
        got = op.call(b)
    except TypeError as e:
        assert re.search(names(["x"])[0], str(e))
        return
    if op.forward:
        assert np.array_equal(got, want)
    else:
        for g, w in zip(got, want):
            assert np.array_equal(g, w)


# ---------------------------------------------------------------------------
# TypeError: non-integer parameters
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
@pytest.mark.parametrize(
    "param,value",
    [("stride", "2"), ("stride", 1.5), ("dilation", 1.0), ("padding", 1.5), ("stride", None)],
)
def test_non_integer_parameter_is_type_error(op, param, value):
    expect_error(op, op.arrays(), TypeError, names([param]), **{param: value})


def _clear_error(call, name):
    """None if ``call()`` works or raises a ValueError/TypeError naming ``name``
    (pybind11's "incompatible function arguments" does not count); else a
    short description of what went wrong."""
    try:
        call()
    except (ValueError, TypeError) as e:
        msg = str(e)
        if re.search(names([name])[0], msg) and "incompatible function arguments" not in msg:
            return None
        return f"{type(e).__name__}: {msg[:160]}"
    return None


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
@pytest.mark.parametrize("param", ["stride", "dilation", "padding"])
def test_huge_integer_parameter_is_clear(op, param):
    # An int too large for the core: either it works or the error names the
    # argument (not pybind11's "incompatible function arguments").
    a = op.arrays()
    problem = _clear_error(lambda: op.call(a, **{param: 2**63}), param)
    assert problem is None, problem


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_huge_num_threads_is_capped_with_a_warning(op):
    a = op.arrays()
    with pytest.warns(RuntimeWarning, match=r"num_threads=2147483648 is above pydsconv's limit"):
        op.call(a, num_threads=2**31)


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
@pytest.mark.parametrize("bad", [["NCHW"], 0, b"NCHW"], ids=["list", "int", "bytes"])
def test_non_string_layout_names_layout(op, bad):
    a = op.arrays()
    with pytest.raises((ValueError, TypeError)):
        op.call(a, layout=bad)
    problem = _clear_error(lambda: op.call(a, layout=bad), "layout")
    assert problem is None, problem


# ---------------------------------------------------------------------------
# ValueError: x
# ---------------------------------------------------------------------------


def _dims(op, layout):
    return {"NCHW": "(N, C, H, W)", "NHWC": "(N, H, W, C)", "NCL": "(N, C, L)", "NLC": "(N, L, C)"}[
        layout
    ]


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
@pytest.mark.parametrize("li", [0, 1])
@pytest.mark.parametrize("change", ["drop_batch", "extra_axis", "1d"])
def test_wrong_ndim_x(op, li, change):
    layout = op.layouts[li]
    a = op.arrays(layout=layout)
    x = a["x"]
    a["x"] = {"drop_batch": x[0], "extra_axis": x[None], "1d": x.ravel()}[change]
    expect_error(
        op,
        a,
        ValueError,
        names(["x"])
        + [re.escape(_dims(op, layout)), f"{op.spatial + 2}-D", re.escape(str(a["x"].shape))],
        layout=layout,
    )


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_x_with_zero_channels_or_pixels(op):
    for zero_axis in (1, 2):
        a = op.arrays()
        shape = list(a["x"].shape)
        shape[zero_axis] = 0
        a["x"] = np.zeros(shape, np.float32)
        expect_error(op, a, ValueError, names(["x"]))


# ---------------------------------------------------------------------------
# ValueError: depthwise weight
# ---------------------------------------------------------------------------


def _dw_expect(op):
    return re.escape("(C*M, 1, kH, kW)" if op.spatial == 2 else "(C*M, 1, k)")


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
@pytest.mark.parametrize("li", [0, 1])
@pytest.mark.parametrize("first", [C + 1, C - 1, 2 * C + 1])
def test_depthwise_weight_wrong_channel_count(op, li, first):
    layout = op.layouts[li]
    a = op.arrays(layout=layout)
    a[op.dw_name] = np.ones((first, 1) + op.kernel(), np.float32)
    expect_error(
        op,
        a,
        ValueError,
        names([op.dw_name]) + [_dw_expect(op), f"C = {C}\\b", re.escape(str(a[op.dw_name].shape))],
        layout=layout,
    )


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
@pytest.mark.parametrize("second", [0, 2, C])
def test_depthwise_weight_second_dim_not_one(op, second):
    a = op.arrays()
    a[op.dw_name] = np.ones((C * M, second) + op.kernel(), np.float32)
    expect_error(
        op,
        a,
        ValueError,
        names([op.dw_name]) + [_dw_expect(op), re.escape(str(a[op.dw_name].shape))],
    )


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
def test_depthwise_weight_wrong_ndim(op):
    for shape in [(C * M,) + op.kernel(), (C * M, 1, 1) + op.kernel(), (C * M, 1)]:
        a = op.arrays()
        a[op.dw_name] = np.ones(shape, np.float32)
        expect_error(op, a, ValueError, names([op.dw_name]) + [_dw_expect(op)])


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
def test_depthwise_weight_empty_kernel(op):
    kern = (0, K) if op.spatial == 2 else (0,)
    a = op.arrays()
    a[op.dw_name] = np.ones((C * M, 1) + kern, np.float32)
    expect_error(op, a, ValueError, names([op.dw_name]))


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
@pytest.mark.parametrize("c,m", [(32, 1), (8, 3)])
@pytest.mark.parametrize("li", [0, 1])
def test_keras_depthwise_kernel_gets_a_hint(op, c, m, li):
    layout = op.layouts[li]
    a = op.arrays(layout=layout, c=c, m=m)
    keras = rand(np.random.default_rng(1), (3, 3, c, m)[2 - op.spatial :], np.float32)
    a[op.dw_name] = keras
    hint = "from_keras_depthwise" if op.spatial == 2 else "from_keras_depthwise1d"
    expect = "(C*M, 1, kH, kW)" if op.spatial == 2 else "(C*M, 1, k)"
    with pytest.raises(ValueError) as info:
        op.call(a, layout=layout)
    msg = str(info.value)
    for pat in names([op.dw_name]) + ["Keras", rf"pydsconv\.weights\.{hint}\b", re.escape(expect)]:
        assert re.search(pat, msg), (pat, msg)
    if op.forward:
        out = np.full(op.out_shape(layout, c=c, m=m), SENTINEL, np.float32)
        with pytest.raises(ValueError, match="Keras"):
            op.call(a, layout=layout, out=out)
        assert np.all(out == SENTINEL)
    # The hint works: the converted kernel is accepted and right.
    fixed = getattr(keras_weights, hint)(keras)
    assert fixed.shape == (c * m, 1) + op.kernel()
    a[op.dw_name] = fixed
    got = op.call(a, layout=layout)
    want = op.ref(**a, layout=layout, **op.conv_kw())
    for g, w in zip(got if op.backward else [got], want if op.backward else [want]):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-5 * 9)


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
def test_plain_wrong_depthwise_weight_gets_no_keras_hint(op):
    a = op.arrays()
    a[op.dw_name] = np.ones((C + 1, 1) + op.kernel(), np.float32)
    msg = expect_error(op, a, ValueError, names([op.dw_name]))
    assert "Keras" not in msg


# ---------------------------------------------------------------------------
# ValueError: pointwise weight
# ---------------------------------------------------------------------------


def _pw_expect(op):
    return re.escape(
        "(C_out, C_in, 1, 1) or (C_out, C_in)"
        if op.spatial == 2
        else "(C_out, C_in, 1) or (C_out, C_in)"
    )


@pytest.mark.parametrize("op", PW_OPS, ids=_ids(PW_OPS))
@pytest.mark.parametrize("li", [0, 1])
@pytest.mark.parametrize("full", [True, False], ids=["full", "2d"])
def test_pointwise_weight_c_in_mismatch(op, li, full):
    layout = op.layouts[li]
    cin = C * M if op.kind == "sep" else C
    for wrong in (cin + 1, cin - 1, 1):
        a = op.arrays(layout=layout)
        a[op.pw_name] = np.ones((COUT, wrong) + (op.ones() if full else ()), np.float32)
        expect_error(
            op,
            a,
            ValueError,
            names([op.pw_name])
            + [_pw_expect(op), f"C_in = {cin}\\b", re.escape(str(a[op.pw_name].shape))],
            layout=layout,
        )


@pytest.mark.parametrize("op", PW_OPS, ids=_ids(PW_OPS))
def test_pointwise_weight_bad_shapes(op):
    cin = C * M if op.kind == "sep" else C
    bad = [
        (COUT,),
        (COUT, cin, 3) + (() if op.spatial == 1 else (1,)),
        (COUT, cin, 1, 1, 1),
        (0, cin),
        (COUT, cin, 2, 2)[: op.spatial + 2],
    ]
    if op.spatial == 1:
        bad.append((COUT, cin, 1, 1))  # a 2-D op's weight on a 1-D op
    for shape in bad:
        a = op.arrays()
        a[op.pw_name] = np.ones(shape, np.float32)
        expect_error(op, a, ValueError, names([op.pw_name]) + [_pw_expect(op)])


@pytest.mark.parametrize("op", PW_OPS, ids=_ids(PW_OPS))
@pytest.mark.parametrize("li", [0, 1])
def test_keras_pointwise_kernel_gets_a_hint(op, li):
    layout = op.layouts[li]
    c, cout = 32, 48
    cin = c * M if op.kind == "sep" else c
    a = op.arrays(layout=layout, c=c, cout=cout)
    keras = rand(np.random.default_rng(1), (1, 1, cin, cout)[2 - op.spatial :], np.float32)
    a[op.pw_name] = keras
    hint = "from_keras_pointwise" if op.spatial == 2 else "from_keras_pointwise1d"
    with pytest.raises(ValueError) as info:
        op.call(a, layout=layout)
    msg = str(info.value)
    for pat in names([op.pw_name]) + ["Keras", rf"pydsconv\.weights\.{hint}\b", _pw_expect(op)]:
        assert re.search(pat, msg), (pat, msg)
    if op.forward:
        out = np.full(op.out_shape(layout, c=c, cout=cout), SENTINEL, np.float32)
        with pytest.raises(ValueError, match="Keras"):
            op.call(a, layout=layout, out=out)
        assert np.all(out == SENTINEL)
    fixed = getattr(keras_weights, hint)(keras)
    assert fixed.shape[:2] == (cout, cin)
    a[op.pw_name] = fixed
    got = op.call(a, layout=layout)
    want = op.ref(**a, layout=layout, **op.conv_kw())
    for g, w in zip(got if op.backward else [got], want if op.backward else [want]):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-4)


# ---------------------------------------------------------------------------
# ValueError: biases
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
def test_bias_wrong_length_or_ndim(op):
    for bname in op.bias_names:
        n = C * M if bname in ("depthwise_bias",) or op.kind == "dw" else COUT
        for shape in [(n + 1,), (n - 1,), (1,), (1, n), (n, 1), ()]:
            if shape == (1,) and n == 1:
                continue
            a = op.arrays()
            a[bname] = np.ones(shape, np.float32)
            expect_error(op, a, ValueError, names([bname]) + ["1-D", re.escape(f"({n},)")])


# ---------------------------------------------------------------------------
# ValueError: stride, dilation, padding, kernel size
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
def test_kernel_larger_than_padded_input(op):
    big = (H + 3, K) if op.spatial == 2 else (L + 1,)
    a = op.arrays()
    a[op.dw_name] = np.ones((C * M, 1) + big, np.float32)
    if op.kind == "dwb":  # the valid out shape does not matter here
        a["grad_out"] = np.ones((N, C * M, 1, 1)[: op.spatial + 2], np.float32)
    axis = "height" if op.spatial == 2 else "length"
    expect_error(
        op,
        a,
        ValueError,
        names([op.dw_name]) + [f"kernel {axis} {big[0]}", "larger", "padded input"],
        padding=0,
    )
    # "same" pads enough for any kernel: no error.
    if op.kind != "dwb":
        op.call(a, padding="same")


@pytest.mark.parametrize(
    "op", [o for o in DW_OPS if o.spatial == 2], ids=_ids([o for o in DW_OPS if o.spatial == 2])
)
def test_kernel_larger_than_padded_width(op):
    a = op.arrays()
    a[op.dw_name] = np.ones((C * M, 1, K, W + 3), np.float32)
    expect_error(op, a, ValueError, names([op.dw_name]) + ["width", "larger"], padding=1)


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
def test_kernel_exactly_the_padded_input_is_fine(op):
    size = H if op.spatial == 2 else L
    a = op.arrays()
    a[op.dw_name] = np.ones(
        (C * M, 1) + ((size + 2, size + 2) if op.spatial == 2 else (size + 2,)), np.float32
    )
    if op.kind == "dwb":
        a["grad_out"] = np.ones((N, C * M) + (1,) * op.spatial, np.float32)
    got = op.call(a, padding=1)
    # One output per image and channel, which reads the whole padded input:
    # the same as the reference (the padding taps multiply zeros).
    want = getattr(ref, op.name)(
        **{k: v.astype(np.float64) for k, v in a.items()}, layout=op.layouts[0], padding=1
    )
    if op.forward:
        assert got.shape[2:] == (1,) * op.spatial
    for g, w in zip(
        got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)
    ):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
def test_dilated_kernel_larger_than_padded_input(op):
    a = op.arrays()
    # effective kernel (K - 1) * 5 + 1 = 11 > 7 + 2 (or 9 + 2)
    dil = 5 if op.spatial == 2 else 6
    expect_error(
        op, a, ValueError, names([op.dw_name]) + ["larger", f"dilation {dil}"], dilation=dil
    )


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
@pytest.mark.parametrize("param", ["stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1, "pair0"])
def test_stride_and_dilation_below_one(op, param, value):
    if value == "pair0":
        if op.spatial == 1:
            value = (0,)
        else:
            value = (1, 0)
    expect_error(op, op.arrays(), ValueError, names([param]) + [">= 1"], **{param: value})


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
@pytest.mark.parametrize("param", ["stride", "dilation"])
def test_stride_and_dilation_wrong_length_tuple(op, param):
    value = (1, 1, 1)
    expect_error(op, op.arrays(), ValueError, names([param]), **{param: value})


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
def test_negative_padding(op):
    forms = (
        [-1, (-1, 0), (0, -1)]
        if op.spatial == 1
        else [-1, (0, -1), (-1, 1), ((0, 0), (0, -1)), ((-2, 0), (1, 1))]
    )
    for pad in forms:
        expect_error(op, op.arrays(), ValueError, names(["padding"]) + [">= 0"], padding=pad)


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
@pytest.mark.parametrize("pad", ["full", "", "SAME!", "reflect"])
def test_bad_padding_string(op, pad):
    msg = expect_error(op, op.arrays(), ValueError, names(["padding"]), padding=pad)
    assert "same" in msg and "valid" in msg


@pytest.mark.parametrize("op", DW_OPS, ids=_ids(DW_OPS))
def test_bad_padding_tuple_length(op):
    bad = [(1, 1, 1)] if op.spatial == 1 else [(1, 1, 1), (1,), ((1, 1, 1), (1, 1))]
    for pad in bad:
        expect_error(op, op.arrays(), ValueError, names(["padding"]), padding=pad)


@pytest.mark.parametrize(
    "op", [o for o in DW_OPS if o.spatial == 2], ids=_ids([o for o in DW_OPS if o.spatial == 2])
)
def test_causal_padding_on_2d_op(op):
    expect_error(op, op.arrays(), ValueError, names(["padding"]) + ["causal"], padding="causal")


@pytest.mark.parametrize(
    "op",
    [o for o in DW_OPS if o.spatial == 1 and o.forward],
    ids=_ids([o for o in DW_OPS if o.spatial == 1 and o.forward]),
)
def test_causal_padding_on_1d_op_is_fine(op):
    a = op.arrays(np.float64)
    got = op.call(a, padding="causal")
    want = op.ref(**a, padding="causal")
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# ValueError: layout and activations
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_bad_layout(op):
    other = ("NCL", "NLC") if op.spatial == 2 else ("NCHW", "NHWC")
    for bad in ("NWHC", "NCWH", "channels_last", "") + other:
        msg = expect_error(op, op.arrays(), ValueError, names(["layout"]), layout=bad)
        for good in op.layouts:
            assert good in msg, msg


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
@pytest.mark.parametrize("act", ["gelu", "Sigmoid", "", "relu7", "swish"])
def test_bad_activation(op, act):
    msg = expect_error(op, op.arrays(), ValueError, names(["activation"]), activation=act)
    for name in ("relu", "relu6", "hardswish", "hardsigmoid", "silu", "sigmoid"):
        assert f"'{name}'" in msg, msg


@pytest.mark.parametrize(
    "op", [o for o in FORWARD if o.kind == "sep"], ids=_ids([o for o in FORWARD if o.kind == "sep"])
)
def test_bad_mid_activation(op):
    expect_error(op, op.arrays(), ValueError, names(["mid_activation"]), mid_activation="tanh")


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
@pytest.mark.parametrize("act", [None, "relu", "relu6"])
def test_good_activations(op, act):
    a = op.arrays(np.float64)
    got = op.call(a, activation=act)
    want = op.ref(**a, activation=act, layout=op.layouts[0], **op.conv_kw())
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------------------
# ValueError: grad_out
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", BACKWARD, ids=_ids(BACKWARD))
@pytest.mark.parametrize("li", [0, 1])
def test_grad_out_wrong_shape(op, li):
    layout = op.layouts[li]
    want_shape = op.out_shape(layout)
    wrongs = [
        tuple(s + (i == 1) for i, s in enumerate(want_shape)),
        tuple(s + (i == len(want_shape) - 1) for i, s in enumerate(want_shape)),
        want_shape[1:],
        want_shape + (1,),
        (want_shape[0] + 1,) + want_shape[1:],
    ]
    for wrong in wrongs:
        a = op.arrays(layout=layout)
        a["grad_out"] = np.ones(wrong, np.float32)
        expect_error(
            op,
            a,
            ValueError,
            names(["grad_out"]) + [re.escape(str(tuple(want_shape))), re.escape(str(tuple(wrong)))],
            layout=layout,
        )


@pytest.mark.parametrize(
    "op",
    [o for o in BACKWARD if o.kind == "dwb"],
    ids=_ids([o for o in BACKWARD if o.kind == "dwb"]),
)
def test_grad_out_shape_follows_stride(op):
    a = op.arrays()
    # With stride 2 the forward output is smaller: the padding-1 shape is wrong.
    with pytest.raises(ValueError, match="grad_out"):
        op.call(a, stride=2)


# ---------------------------------------------------------------------------
# out=
# ---------------------------------------------------------------------------


def _sentinel(shape, dtype=np.float32):
    return np.full(shape, SENTINEL, dtype=dtype)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
@pytest.mark.parametrize("li", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_good_out_is_returned(op, li, dtype):
    layout = op.layouts[li]
    a = op.arrays(dtype, layout)
    want = op.call(a, layout=layout)
    out = _sentinel(op.out_shape(layout), dtype)
    got = op.call(a, layout=layout, out=out)
    assert got is out
    assert np.shares_memory(got, out)
    assert np.array_equal(out, want)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
def test_out_wrong_shape(op):
    shape = op.out_shape(op.layouts[0])
    wrongs = [
        shape[:-1] + (shape[-1] + 1,),
        shape[::-1],
        shape[1:],
        (1,) + shape,
        (shape[0] + 1,) + shape[1:],
        (int(np.prod(shape)),),
    ]
    for wrong in wrongs:
        out = _sentinel(wrong)
        expect_error(
            op, op.arrays(), ValueError, names(["out"]) + [re.escape(str(tuple(shape)))], out=out
        )
        assert np.all(out == SENTINEL)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
@pytest.mark.parametrize(
    "dtype,out_dtype",
    [
        (np.float32, np.float64),
        (np.float64, np.float32),
        (np.float32, np.int32),
        (np.float32, np.float16),
        (np.float64, np.complex128),
    ],
)
def test_out_wrong_dtype(op, dtype, out_dtype):
    out = _sentinel(op.out_shape(op.layouts[0]), out_dtype)
    before = out.copy()
    expect_error(op, op.arrays(dtype), ValueError, names(["out"]) + [np.dtype(dtype).name], out=out)
    assert np.array_equal(out, before)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
@pytest.mark.parametrize("kind", ["strided", "fortran", "transposed"])
def test_out_not_c_contiguous(op, kind):
    shape = op.out_shape(op.layouts[0])
    if kind == "strided":
        base = _sentinel(shape[:-1] + (2 * shape[-1],))
        out = base[..., ::2]
    elif kind == "fortran":
        base = out = np.asfortranarray(_sentinel(shape))
    else:
        base = _sentinel(shape[::-1])
        out = base.T
    assert out.shape == shape and not out.flags.c_contiguous
    expect_error(op, op.arrays(), ValueError, names(["out"]) + ["contiguous"], out=out)
    assert np.all(base == SENTINEL)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
def test_out_read_only(op):
    out = _sentinel(op.out_shape(op.layouts[0]))
    out.setflags(write=False)
    expect_error(op, op.arrays(), ValueError, names(["out"]) + ["writ"], out=out)
    assert np.all(out == SENTINEL)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
def test_out_read_only_view_of_writable_base(op):
    base = _sentinel(op.out_shape(op.layouts[0]))
    out = base.view()
    out.setflags(write=False)
    expect_error(op, op.arrays(), ValueError, names(["out"]) + ["writ"], out=out)
    assert np.all(base == SENTINEL)


def _overlapping(op, a, name, shift):
    """Rebuild input ``name`` inside a buffer that also holds ``out``."""
    shape = op.out_shape(op.layouts[0])
    n_in, n_out = a[name].size, int(np.prod(shape))
    buf = np.full(n_in + n_out, SENTINEL, np.float32)
    inp = buf[:n_in].reshape(a[name].shape)
    inp[...] = a[name]
    start = max(0, n_in - shift)
    out = buf[start : start + n_out].reshape(shape)
    a[name] = inp
    return out, buf


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
@pytest.mark.parametrize("shift", [1, 10**9], ids=["one_element", "same_start"])
def test_out_overlapping_x(op, shift):
    a = op.arrays()
    out, buf = _overlapping(op, a, "x", shift)
    before = buf.copy()
    expect_error(op, a, ValueError, names(["out"]) + ["overlap", r"'x'"], out=out)
    assert np.array_equal(buf, before)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
def test_out_is_x(op):
    # M = 1 / C_out = C_in with padding keeping the size: the result has
    # x's shape, and out=x (in-place) must still be refused.
    a = op.arrays(m=1, cout=C)
    x = a["x"]
    assert op.out_shape(op.layouts[0], m=1, cout=C) == x.shape
    before = x.copy()
    with pytest.raises(ValueError, match=r"out.*overlap.*'x'"):
        op.call(a, out=x)
    assert np.array_equal(x, before)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
def test_out_overlapping_weights_and_biases(op):
    for name in op.weight_names + op.bias_names:
        a = op.arrays()
        out, buf = _overlapping(op, a, name, 1)
        before = buf.copy()
        expect_error(op, a, ValueError, names(["out"]) + ["overlap", f"'{name}'"], out=out)
        assert np.array_equal(buf, before)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
def test_out_overlapping_non_contiguous_x(op):
    # x is a strided view (copied once by pydsconv); out lies in x's buffer.
    a = op.arrays()
    shape = a["x"].shape
    base = np.full(shape[:-1] + (2 * shape[-1],), SENTINEL, np.float32)
    x = base[..., ::2]
    x[...] = a["x"]
    a["x"] = x
    n_out = int(np.prod(op.out_shape(op.layouts[0])))
    out = base.reshape(-1)[:n_out].reshape(op.out_shape(op.layouts[0]))
    before = base.copy()
    expect_error(op, a, ValueError, names(["out"]) + ["overlap"], out=out)
    assert np.array_equal(base, before)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
def test_out_adjacent_to_x_is_fine(op):
    # Same buffer, no shared bytes: allowed.
    a = op.arrays()
    want = op.call(a)
    shape = op.out_shape(op.layouts[0])
    n_in, n_out = a["x"].size, int(np.prod(shape))
    buf = np.zeros(n_in + n_out, np.float32)
    buf[:n_in] = a["x"].ravel()
    a["x"] = buf[:n_in].reshape(a["x"].shape)
    out = buf[n_in:].reshape(shape)
    assert op.call(a, out=out) is out
    assert np.array_equal(out, want)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
@pytest.mark.parametrize(
    "bad",
    [[0.0] * 4, (1.0,), "out", 3.0, memoryview(b"abcd")],
    ids=["list", "tuple", "str", "float", "memoryview"],
)
def test_out_not_an_ndarray(op, bad):
    expect_error(op, op.arrays(), TypeError, names(["out"]), out=bad)


@pytest.mark.parametrize("op", FORWARD, ids=_ids(FORWARD))
def test_out_untouched_on_every_kind_of_error(op):
    """A correct out is never written when another argument is wrong."""
    out = _sentinel(op.out_shape(op.layouts[0]))
    cases = [
        (TypeError, {"x": lambda a: a["x"].astype(np.int32)}, {}),
        (ValueError, {}, {"activation": "swish"}),
        (ValueError, {}, {"layout": "NWCH"}),
        (ValueError, {}, {"num_threads": 0}),
        (ValueError, {op.weight_names[-1]: lambda a: a[op.weight_names[-1]][:1]}, {}),
    ]
    if op.has_dw:
        cases += [
            (ValueError, {}, {"stride": 0}),
            (ValueError, {}, {"padding": -1}),
            (ValueError, {}, {"dilation": 9}),
        ]
    for exc, changes, kw in cases:
        a = op.arrays()
        for k, f in changes.items():
            a[k] = f(a)
        with pytest.raises(exc):
            op.call(a, out=out, **kw)
        assert np.all(out == SENTINEL), (exc, changes, kw)


# ---------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
@pytest.mark.parametrize("n", [0, -1, -100])
def test_num_threads_below_one(op, n):
    expect_error(op, op.arrays(), ValueError, names(["num_threads"]), num_threads=n)


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
@pytest.mark.parametrize("n", [1.5, "2", True])
def test_num_threads_not_an_int(op, n):
    expect_error(op, op.arrays(), TypeError, names(["num_threads"]), num_threads=n)


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
@pytest.mark.parametrize("n", [None, 1, 2, np.int64(3)])
def test_num_threads_good_values(op, n):
    a = op.arrays()
    want = op.call(a, num_threads=1)
    got = op.call(a, num_threads=n)
    if op.forward:
        assert np.array_equal(got, want)
    else:
        for g, w in zip(got, want):
            assert np.array_equal(g, w)


@pytest.mark.parametrize("n", [0, -1])
def test_set_num_threads_below_one(n):
    before = pydsconv.get_num_threads()
    with pytest.raises(ValueError, match=r"\bn\b|num_threads|threads"):
        pydsconv.set_num_threads(n)
    assert pydsconv.get_num_threads() == before


def test_set_num_threads_huge_is_capped_with_a_warning():
    before = pydsconv.get_num_threads()
    try:
        with pytest.warns(RuntimeWarning, match=r"n=2147483648 is above pydsconv's limit"):
            pydsconv.set_num_threads(2**31)
        assert pydsconv.get_num_threads() == pydsconv.cpu_features()["max_threads"]
    finally:
        pydsconv.set_num_threads(before)


@pytest.mark.parametrize("n", [1.5, "2", None])
def test_set_num_threads_not_an_int(n):
    before = pydsconv.get_num_threads()
    with pytest.raises(TypeError):
        pydsconv.set_num_threads(n)
    assert pydsconv.get_num_threads() == before


# ---------------------------------------------------------------------------
# Batch 0
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
@pytest.mark.parametrize("li", [0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_zero(op, li, dtype):
    layout = op.layouts[li]
    a = op.arrays(dtype, layout, n=0)
    got = op.call(a, layout=layout)
    if op.forward:
        assert isinstance(got, np.ndarray)
        assert got.shape == op.out_shape(layout, n=0) and got.dtype == dtype
        out = np.empty(op.out_shape(layout, n=0), dtype)
        assert op.call(a, layout=layout, out=out) is out
    else:
        gx, gw, gb = got
        assert gx.shape == a["x"].shape and gx.dtype == dtype
        assert gw.shape == a["weight"].shape and gw.dtype == dtype
        assert np.array_equal(gw, np.zeros_like(gw))
        assert gb.shape == (op.out_channels(),) and gb.dtype == dtype
        assert np.array_equal(gb, np.zeros_like(gb))


@pytest.mark.parametrize(
    "op", [o for o in DW_OPS if o.forward], ids=_ids([o for o in DW_OPS if o.forward])
)
def test_batch_zero_with_stride_and_same(op):
    a = op.arrays(n=0)
    got = op.call(a, stride=2, padding="same")
    sp = (4, 4) if op.spatial == 2 else (5,)
    assert got.shape == (0, op.out_channels()) + sp


@pytest.mark.parametrize("op", OPS, ids=_ids(OPS))
def test_batch_zero_still_checks_shapes(op):
    a = op.arrays(n=0)
    name = op.weight_names[-1]
    shape = list(a[name].shape)
    shape[1 if op.has_pw else 0] += 1
    a[name] = np.ones(shape, np.float32)
    expect_error(op, a, ValueError, names([name]))

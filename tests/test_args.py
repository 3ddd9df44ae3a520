"""pydsconv._args: the argument rules shared by the ops, pydsconv.torch,
pydsconv.nn and pydsconv.cost agree with what the ops compute."""

import itertools

import numpy as np
import pytest

import pydsconv
from pydsconv import _args, cost


@pytest.mark.parametrize("padding", [0, 1, 2, (0, 1), ((0, 2), (1, 0)), "same", "SAME", "valid"])
def test_output_size_matches_the_ops_2d(padding):
    for size, k, stride, dilation in itertools.product((1, 4, 7), (1, 2, 3), (1, 2, 3), (1, 2)):
        x = np.zeros((1, 1, size, size + 1), np.float32)
        w = np.zeros((1, 1, k, k), np.float32)
        kw = dict(stride=stride, padding=padding, dilation=dilation)
        try:
            y = pydsconv.depthwise_conv2d(x, w, **kw)
        except ValueError:
            with pytest.raises(ValueError, match="kernel_size"):
                _args.output_size((size, size + 1), (k, k), (stride,) * 2, padding, (dilation,) * 2)
            continue
        assert (
            _args.output_size((size, size + 1), (k, k), (stride,) * 2, padding, (dilation,) * 2)
            == y.shape[2:]
        ), kw
        assert cost.output_size((size, size + 1), k, **kw) == y.shape[2:]


@pytest.mark.parametrize("padding", [0, 2, (1, 0), "same", "valid", "causal"])
def test_output_size_matches_the_ops_1d(padding):
    for size, k, stride, dilation in itertools.product((1, 5, 8), (1, 3), (1, 2, 3), (1, 2)):
        x = np.zeros((1, 1, size), np.float32)
        w = np.zeros((1, 1, k), np.float32)
        kw = dict(stride=stride, padding=padding, dilation=dilation)
        try:
            y = pydsconv.depthwise_conv1d(x, w, **kw)
        except ValueError:
            continue
        assert (
            _args.output_size((size,), (k,), (stride,), padding, (dilation,), spatial=1)
            == y.shape[2:]
        ), kw


def test_same_padding_puts_the_odd_pixel_after():
    assert _args.same_padding(5, 3, 1, 1) == (1, 1)
    assert _args.same_padding(6, 3, 2, 1) == (0, 1)
    assert _args.same_padding(7, 3, 2, 2) == (2, 2)
    assert _args.same_padding(1, 5, 3, 1) == (2, 2)


def test_padding_forms():
    assert _args.to_padding(1) == ("explicit", (1, 1, 1, 1))
    assert _args.to_padding((1, 2)) == ("explicit", (1, 1, 2, 2))
    assert _args.to_padding(((0, 1), (2, 3))) == ("explicit", (0, 1, 2, 3))
    assert _args.to_padding("Same") == ("same", (0, 0, 0, 0))
    assert _args.to_padding((1, 2), spatial=1) == ("explicit", (0, 0, 1, 2))
    assert _args.to_padding("causal", spatial=1)[0] == "causal"
    with pytest.raises(ValueError, match="causal"):
        _args.to_padding("causal")
    with pytest.raises(ValueError, match="padding must be >= 0"):
        _args.to_padding((0, -1), minimum=0)
    assert _args.to_padding((0, -1)) == ("explicit", (0, 0, -1, -1))  # the core refuses it
    with pytest.raises(TypeError, match="padding"):
        _args.to_padding(1.5)
    assert _args.padding_spec(*_args.to_padding(((1, 1), (2, 2)))) == (1, 2)
    assert _args.padding_spec(*_args.to_padding(((0, 1), (2, 2)))) == ((0, 1), (2, 2))
    assert _args.padding_spec(*_args.to_padding("VALID")) == "valid"


def test_pairs_and_ints():
    assert _args.to_pair("stride", 2) == (2, 2)
    assert _args.to_pair("stride", [1, 3]) == (1, 3)
    assert _args.to_pair("stride", 4, spatial=1) == (4,)
    with pytest.raises(ValueError, match="stride must be an int or a tuple of 2 ints"):
        _args.to_pair("stride", (1, 2, 3))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        _args.to_pair("stride", (1, 0), minimum=1)
    with pytest.raises(TypeError, match="dilation"):
        _args.to_pair("dilation", True)
    with pytest.raises(ValueError, match="smaller than"):
        _args.to_pair("dilation", 2**40)
    assert _args.to_int("n", np.int64(3), 1) == 3


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activation_grad(dtype):
    y = np.array([-1.0, 0.0, 0.5, 6.0, 7.0, np.nan], dtype)
    g = np.array([1.0, 2.0, 3.0, 4.0, np.inf, 5.0], dtype)
    before = g.copy()
    assert _args.activation_grad(g, y, None) is g
    np.testing.assert_array_equal(_args.activation_grad(g, y, "relu"), [0, 0, 3, 4, np.inf, 0])
    r6 = _args.activation_grad(g, y, "relu6")
    np.testing.assert_array_equal(r6, [0, 0, 3, 0, 0, 0])
    assert r6.dtype == dtype
    np.testing.assert_array_equal(g, before)
    with pytest.raises(
        ValueError,
        match="mid_activation must be None, 'relu', 'relu6', 'hardswish', 'hardsigmoid', "
        "'silu' or 'sigmoid', got 'gelu'",
    ):
        _args.check_activation("mid_activation", "gelu")

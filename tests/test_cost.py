"""Tests for pydsconv.cost: layer costs, output sizes and MobileNet v1 totals."""

import math
from fractions import Fraction

import numpy as np
import pytest

from pydsconv import cost


def mega(n):
    return n / 1e6


# --------------------------------------------------------------------------
# output sizes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 5, 6, 7, 112, 224, 225])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_output_size_same_is_ceil(size, stride, k):
    assert (
        cost.output_size(size, k, stride=stride, padding="same") == (math.ceil(size / stride),) * 2
    )


@pytest.mark.parametrize("size", [3, 5, 6, 7, 224])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_output_size_valid(size, stride, k):
    expected = (size - k) // stride + 1
    assert cost.output_size(size, k, stride=stride, padding="valid") == (expected, expected)
    # TF's documented rule for "valid": ceil((in - k + 1) / stride)
    assert expected == math.ceil((size - k + 1) / stride)


def test_output_size_hand_cases():
    assert cost.output_size(224, 3, stride=2) == (112, 112)
    assert cost.output_size(7, 3, stride=2, padding="same") == (4, 4)
    assert cost.output_size(7, 3, stride=2, padding="valid") == (3, 3)
    assert cost.output_size(6, 3, stride=2, padding="valid") == (2, 2)
    assert cost.output_size((5, 7), 3, padding="valid") == (3, 5)
    assert cost.output_size((5, 7), (3, 1), padding="valid") == (3, 7)
    assert cost.output_size(5, 3, padding=1) == (5, 5)
    assert cost.output_size(5, 3, padding=(1, 0)) == (5, 3)
    assert cost.output_size(5, 3, padding=((2, 0), (0, 1))) == (5, 4)
    # dilation 2: effective kernel 5
    assert cost.output_size(9, 3, dilation=2, padding="valid") == (5, 5)
    assert cost.output_size(9, 3, dilation=2, padding="same") == (9, 9)
    assert cost.output_size(9, 3, stride=2, dilation=2, padding="same") == (5, 5)
    # kernel exactly as large as the input
    assert cost.output_size(3, 3, padding="valid") == (1, 1)
    # "same" never fails, even with a kernel larger than the input
    assert cost.output_size(2, 5, padding="same") == (2, 2)


def test_output_size_accepts_numpy_ints():
    assert cost.output_size(np.int64(224), np.int32(3), stride=np.int64(2)) == (112, 112)


# --------------------------------------------------------------------------
# single layers, hand-computed
# --------------------------------------------------------------------------


def test_conv2d_hand_case():
    # 3x3 conv 3->8 on 5x5 "valid": 3x3 output, 3*3*3 taps per output
    r = cost.conv2d(3, 8, 3, 5, padding="valid")
    assert r == {"macs": 3 * 3 * 3 * 8 * 3 * 3, "params": 3 * 3 * 3 * 8}
    assert cost.conv2d(3, 8, 3, 5, padding="valid", bias=True)["params"] == 3 * 3 * 3 * 8 + 8
    # bias additions are not MACs
    assert cost.conv2d(3, 8, 3, 5, padding="valid", bias=True)["macs"] == r["macs"]


def test_conv2d_same_and_stride():
    # "same" keeps 5x5; padding taps are counted
    assert cost.conv2d(3, 8, 3, 5)["macs"] == 5 * 5 * 8 * 9 * 3
    # stride 2 "same" on 5x5 -> 3x3
    assert cost.conv2d(3, 8, 3, 5, stride=2)["macs"] == 3 * 3 * 8 * 9 * 3
    # rectangular everything
    r = cost.conv2d(4, 6, (3, 1), (10, 8), stride=(2, 1), padding="valid")
    assert r == {"macs": 4 * 8 * 6 * 3 * 1 * 4, "params": 6 * 4 * 3}


def test_conv2d_grouped():
    r = cost.conv2d(8, 16, 3, 4, groups=4)
    assert r == {"macs": 4 * 4 * 16 * 9 * 2, "params": 16 * 2 * 9}


def test_depthwise_hand_case():
    # C=4, M=2, 3x3 on 6x6 "valid" -> 4x4
    r = cost.depthwise_conv2d(4, 3, 6, multiplier=2, padding="valid")
    assert r == {"macs": 4 * 4 * 8 * 9, "params": 8 * 9}
    assert cost.depthwise_conv2d(4, 3, 6, multiplier=2, bias=True)["params"] == 8 * 9 + 8
    # equals a conv with groups=C
    assert r == cost.conv2d(4, 8, 3, 6, groups=4, padding="valid")


def test_pointwise_hand_case():
    assert cost.pointwise_conv2d(32, 64, 112) == {"macs": 112 * 112 * 32 * 64, "params": 32 * 64}
    assert cost.pointwise_conv2d(32, 64, (2, 3), bias=True) == {
        "macs": 6 * 32 * 64,
        "params": 32 * 64 + 64,
    }


def test_separable_is_sum_of_stages():
    # MobileNet's first block: dw 3x3 on 112x112x32, pw 32 -> 64
    r = cost.separable_conv2d(32, 64, 3, 112)
    assert r["macs"] == 112 * 112 * 32 * 9 + 112 * 112 * 32 * 64
    assert r["params"] == 32 * 9 + 32 * 64
    # stride 2: the pointwise stage runs at the depthwise *output* size
    r = cost.separable_conv2d(64, 128, 3, 112, stride=2)
    assert r["macs"] == 56 * 56 * 64 * 9 + 56 * 56 * 64 * 128
    # multiplier: pw reads C*M channels
    r = cost.separable_conv2d(3, 5, 3, 7, multiplier=2, padding="valid")
    assert r["macs"] == 5 * 5 * 6 * 9 + 5 * 5 * 6 * 5
    assert r["params"] == 6 * 9 + 6 * 5


def test_separable_bias_options():
    base = cost.separable_conv2d(3, 5, 3, 7)["params"]
    assert cost.separable_conv2d(3, 5, 3, 7, bias=True)["params"] == base + 3 + 5
    assert cost.separable_conv2d(3, 5, 3, 7, bias=(False, True))["params"] == base + 5
    assert cost.separable_conv2d(3, 5, 3, 7, bias=(True, False))["params"] == base + 3


def test_returns_plain_ints():
    for r in (
        cost.conv2d(3, 8, 3, 5),
        cost.depthwise_conv2d(3, 3, 5),
        cost.pointwise_conv2d(3, 8, 5),
        cost.separable_conv2d(3, 8, 3, 5),
        cost.mobilenet_v1(),
    ):
        assert type(r["macs"]) is int and type(r["params"]) is int


# --------------------------------------------------------------------------
# MobileNet eq. 5: separable / standard = 1/C_out + 1/k^2
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cin,cout,k,size",
    [
        (32, 64, 3, 112),
        (64, 128, 3, 56),
        (512, 512, 3, 14),
        (1024, 1024, 3, 7),
        (3, 7, 5, 9),
        (16, 1, 1, 4),
        (8, 24, 7, 10),
    ],
)
def test_reduction_identity(cin, cout, k, size):
    expected = Fraction(1, cout) + Fraction(1, k * k)
    sep = cost.separable_conv2d(cin, cout, k, size)
    std = cost.conv2d(cin, cout, k, size)
    assert Fraction(sep["macs"], std["macs"]) == expected
    # without biases the parameter ratio is the same number
    assert Fraction(sep["params"], std["params"]) == expected
    assert cost.reduction(cin, cout, k, size) == pytest.approx(float(expected), rel=1e-15)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", ["same", "valid", 1])
def test_reduction_independent_of_stride_and_padding(stride, padding):
    # both convolutions share the output grid, so eq. 5 holds for any of them
    r = cost.reduction(16, 48, 3, 13, stride=stride, padding=padding)
    assert r == pytest.approx(1 / 48 + 1 / 9, rel=1e-15)


def test_reduction_rectangular_kernel_and_multiplier():
    # general form: M/C_out + M/(kH*kW)
    r = cost.reduction(8, 20, (3, 5), 11, multiplier=3)
    assert r == pytest.approx(3 / 20 + 3 / 15, rel=1e-15)


def test_reduction_mobilenet_is_8_to_9_times():
    # "uses between 8 to 9 times less computation" (paper, Section 3.1):
    # 1 / (1/C_out + 1/9) for MobileNet's widths 128..1024; the first block
    # (C_out = 64) saves a little less, 7.89x.
    for cout in (128, 256, 512, 1024):
        assert 8 < 1 / cost.reduction(cout // 2, cout, 3, 14) < 9
    assert 1 / cost.reduction(32, 64, 3, 112) == pytest.approx(576 / 73)


# --------------------------------------------------------------------------
# MobileNet v1: the paper's published figures
# --------------------------------------------------------------------------

# (width_multiplier, resolution) -> (mult-adds in M, params in M) as printed
# in Howard et al. 2017, Tables 4, 6 and 7.
PAPER = {
    (1.0, 224): (569, 4.2),
    (0.75, 224): (325, 2.6),
    (0.5, 224): (149, 1.3),
    (0.25, 224): (41, 0.5),
    (1.0, 192): (418, 4.2),
    (1.0, 160): (290, 4.2),
    (1.0, 128): (186, 4.2),
}

# Every figure that the exact layer-by-layer count reproduces.
EXACT_MATCH = [key for key in PAPER if key != (1.0, 160)]


@pytest.mark.parametrize("alpha,res", EXACT_MATCH)
def test_mobilenet_mult_adds_match_paper(alpha, res):
    r = cost.mobilenet_v1(alpha, res)
    assert round(mega(r["macs"])) == PAPER[alpha, res][0]


@pytest.mark.parametrize("alpha,res", list(PAPER))
def test_mobilenet_params_match_paper(alpha, res):
    r = cost.mobilenet_v1(alpha, res)
    assert round(mega(r["params"]), 1) == PAPER[alpha, res][1]


def test_mobilenet_160_paper_figure_is_rho_squared_scaling():
    # The exact count at 160 is 290.68 M (TF-slim's table for the same
    # checkpoint prints 291); the paper's 290 is the 224 total scaled by
    # rho^2, its Section 3.3 rule.  That rule gives every Table 7 figure.
    exact = mega(cost.mobilenet_v1(1.0, 160)["macs"])
    assert exact == pytest.approx(290.6752)
    assert abs(exact - PAPER[1.0, 160][0]) < 1
    full = cost.mobilenet_v1(1.0, 224)["macs"]
    for res in (192, 160, 128):
        assert round(mega(full * (res / 224) ** 2)) == PAPER[1.0, res][0]


def test_conv_mobilenet_matches_paper():
    # Table 4: Conv MobileNet (standard 3x3 convolutions): 4866 M, 29.3 M.
    r = cost.mobilenet_v1(1.0, 224, separable=False)
    assert round(mega(r["params"]), 1) == 29.3
    # 4867.29 M with the FC layer; the printed 4866 is the count without
    # the FC layer's 1.024 M mult-adds.
    assert mega(r["macs"]) == pytest.approx(4867.293184)
    assert round(mega(r["macs"] - r["by_kind"]["fc"]["macs"])) == 4866
    assert r["by_kind"]["fc"]["macs"] == 1024 * 1000


def test_mobilenet_table2_breakdown():
    # Table 2 (1.0 MobileNet-224): share of mult-adds / parameters per kind.
    # (The paper prints 1.19 % for the 3x3 stem; its column then sums to
    # 99.29 %.  1.91 % is the exact value and makes it sum to 100 %.)
    r = cost.mobilenet_v1()
    k = r["by_kind"]

    def pct(kind, what):
        return round(100 * k[kind][what] / r[what], 2)

    assert pct("pw", "macs") == 94.86
    assert pct("pw", "params") == 74.59
    assert pct("dw", "macs") == 3.06
    assert pct("dw", "params") == 1.06
    assert pct("conv", "macs") == 1.91
    assert pct("conv", "params") == 0.02
    assert pct("fc", "macs") == 0.18
    assert pct("fc", "params") == 24.33


def test_mobilenet_exact_totals():
    r = cost.mobilenet_v1()
    assert r["macs"] == 568_740_352
    assert r["params"] == 4_209_088
    assert r["by_kind"]["fc"] == {"macs": 1_024_000, "params": 1_024_000}
    assert r["resolution"] == (224, 224)
    assert r["num_layers"] == 1 + 2 * 13 + 1
    # the paper's headline comparison: separable vs full convolutions
    full = cost.mobilenet_v1(separable=False)
    assert full["macs"] / r["macs"] > 8


def test_mobilenet_layers_table1():
    layers = cost.mobilenet_v1_layers()
    assert len(layers) == 28
    assert [l["kind"] for l in layers] == (["conv"] + ["dw", "pw"] * 13 + ["fc"])
    stem = layers[0]
    assert stem["name"] == "conv1"
    assert (stem["in_channels"], stem["out_channels"]) == (3, 32)
    assert stem["input_size"] == (224, 224) and stem["output_size"] == (112, 112)
    assert stem["stride"] == (2, 2) and stem["kernel_size"] == (3, 3)
    dws = [l for l in layers if l["kind"] == "dw"]
    pws = [l for l in layers if l["kind"] == "pw"]
    assert [l["stride"][0] for l in dws] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    assert [l["out_channels"] for l in pws] == (
        [64, 128, 128, 256, 256, 512] + [512] * 5 + [1024, 1024]
    )
    assert [l["input_size"][0] for l in dws] == ([112, 112, 56, 56, 28, 28] + [14] * 6 + [7])
    for l in dws:
        assert l["in_channels"] == l["out_channels"] == l["groups"]
        assert l["params"] == 9 * l["in_channels"]
    for a, b in zip(layers, layers[1:-1]):
        assert a["out_channels"] == b["in_channels"]
        assert a["output_size"] == b["input_size"]
    fc = layers[-1]
    assert (fc["name"], fc["in_channels"], fc["out_channels"]) == ("fc", 1024, 1000)
    assert fc["macs"] == fc["params"] == 1024 * 1000
    # every layer's cost agrees with the single-layer functions
    for l in layers[:-1]:
        if l["kind"] == "dw":
            ref = cost.depthwise_conv2d(l["in_channels"], 3, l["input_size"], stride=l["stride"])
        else:
            ref = cost.conv2d(
                l["in_channels"],
                l["out_channels"],
                l["kernel_size"],
                l["input_size"],
                stride=l["stride"],
            )
        assert {"macs": l["macs"], "params": l["params"]} == ref
    assert sum(l["macs"] for l in layers) == cost.mobilenet_v1()["macs"]


def test_mobilenet_width_multiplier_truncates():
    layers = cost.mobilenet_v1_layers(0.3)
    # int(32*0.3) = 9, int(64*0.3) = 19, int(1024*0.3) = 307
    assert layers[0]["out_channels"] == 9
    assert layers[2]["out_channels"] == 19
    assert layers[-1]["in_channels"] == 307
    assert layers[-1]["out_channels"] == 1000  # classes are not scaled


def test_mobilenet_separable_false_layers():
    layers = cost.mobilenet_v1_layers(separable=False)
    assert len(layers) == 15
    assert all(l["kind"] == "conv" for l in layers[:-1])
    assert layers[1]["params"] == 9 * 32 * 64


def test_mobilenet_odd_resolution_and_classes():
    layers = cost.mobilenet_v1_layers(1.0, (225, 100), num_classes=10)
    assert layers[0]["output_size"] == (113, 50)
    assert layers[-2]["output_size"] == (8, 4)
    assert layers[-1]["out_channels"] == 10
    r = cost.mobilenet_v1(1.0, 224, num_classes=10)
    assert r["params"] == 4_209_088 - 1024 * 990


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: cost.conv2d(0, 8, 3, 5), "in_channels"),
        (lambda: cost.conv2d(3, -1, 3, 5), "out_channels"),
        (lambda: cost.conv2d(3, 8, 0, 5), "kernel_size"),
        (lambda: cost.conv2d(3, 8, 3, 0), "input_size"),
        (lambda: cost.conv2d(3, 8, 3, (5, 0)), "input_size"),
        (lambda: cost.conv2d(3, 8, 3, 5, stride=0), "stride"),
        (lambda: cost.conv2d(3, 8, 3, 5, dilation=0), "dilation"),
        (lambda: cost.conv2d(3, 8, 3, 5, padding=-1), "padding"),
        (lambda: cost.conv2d(3, 8, 3, 5, padding="full"), "padding"),
        (lambda: cost.conv2d(3, 8, 3, 5, padding=(1, 2, 3)), "padding"),
        (lambda: cost.conv2d(3, 8, 3, 5, groups=2), "groups"),
        (lambda: cost.conv2d(3, 8, (1, 2, 3), 5), "kernel_size"),
        # kernel larger than the (padded) input
        (lambda: cost.conv2d(3, 8, 7, 5, padding="valid"), "kernel_size"),
        (lambda: cost.conv2d(3, 8, 7, 5, padding=0), "kernel_size"),
        (lambda: cost.conv2d(3, 8, 3, 5, padding="valid", dilation=3), "kernel_size"),
        (lambda: cost.depthwise_conv2d(0, 3, 5), "channels"),
        (lambda: cost.depthwise_conv2d(4, 3, 5, multiplier=0), "multiplier"),
        (lambda: cost.depthwise_conv2d(4, 9, 5, padding="valid"), "kernel_size"),
        (lambda: cost.pointwise_conv2d(4, 0, 5), "out_channels"),
        (lambda: cost.separable_conv2d(4, 8, 3, 5, multiplier=-2), "multiplier"),
        (lambda: cost.separable_conv2d(4, 8, 6, 5, padding="valid"), "kernel_size"),
        (lambda: cost.separable_conv2d(4, 8, 3, 5, bias=(True,)), "bias"),
        (lambda: cost.reduction(4, 8, 3, -5), "input_size"),
        (lambda: cost.mobilenet_v1(0.0), "width_multiplier"),
        (lambda: cost.mobilenet_v1(-1.0), "width_multiplier"),
        (lambda: cost.mobilenet_v1(float("nan")), "width_multiplier"),
        (lambda: cost.mobilenet_v1(0.01), "width_multiplier"),  # int(32*0.01)=0
        (lambda: cost.mobilenet_v1(1.0, 0), "resolution"),
        (lambda: cost.mobilenet_v1(num_classes=0), "num_classes"),
        (lambda: cost.mobilenet_v1_layers(1.0, -224), "resolution"),
    ],
)
def test_value_errors_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_kernel_too_large_message_mentions_input():
    with pytest.raises(ValueError, match="input_size"):
        cost.conv2d(3, 8, 7, 5, padding="valid")
    # padding makes it fit
    assert cost.conv2d(3, 8, 7, 5, padding=1)["macs"] == 1 * 1 * 8 * 49 * 3


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: cost.conv2d(3.0, 8, 3, 5), "in_channels"),
        (lambda: cost.conv2d(3, 8, 3.5, 5), "kernel_size"),
        (lambda: cost.conv2d(3, 8, 3, "5"), "input_size"),
        (lambda: cost.conv2d(True, 8, 3, 5), "in_channels"),
        (lambda: cost.mobilenet_v1("1.0"), "width_multiplier"),
    ],
)
def test_type_errors_name_the_argument(call, name):
    with pytest.raises(TypeError, match=name):
        call()

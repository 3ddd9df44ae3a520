"""Analytic cost model: multiply-accumulates (MACs) and parameter counts.

Every function here is pure integer arithmetic on shapes; nothing is
allocated or run.  The counting conventions are those of the MobileNet paper
(Howard et al., 2017, "MobileNets: Efficient Convolutional Neural Networks for
Mobile Vision Applications", arXiv:1704.04861):

* **MACs** ("mult-adds" in the paper) of a convolution are
  ``output elements x kernel taps x input channels per group``, i.e.
  ``H_out * W_out * C_out * kH * kW * C_in / groups`` for one image.  Taps
  that fall on zero padding are counted (the kernel still runs over them).
  Bias additions, batch normalisation, activations and pooling are not
  multiply-accumulates and are **not** counted.
* **Parameters** are the weights, plus ``C_out`` per layer when ``bias=True``.

Costs are for **one image** (batch size 1); multiply by the batch size for a
batch.  Output sizes follow the same padding rules as the ops of
:mod:`pydsconv` (see :func:`output_size`).

Functions
---------
conv2d, depthwise_conv2d, pointwise_conv2d, separable_conv2d
    ``{"macs": int, "params": int}`` of one layer.
reduction
    Cost of a depthwise separable convolution relative to the standard
    convolution it replaces (MobileNet eq. 5).
output_size
    Spatial output size under ``"same"``/``"valid"``/explicit padding.
mobilenet_v1, mobilenet_v1_layers
    Totals and per-layer table of MobileNet v1 (paper Table 1).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, List, Tuple, Union

from . import _args
from ._args import IntOrPair, Padding2D

__all__ = [
    "output_size",
    "conv2d",
    "depthwise_conv2d",
    "pointwise_conv2d",
    "separable_conv2d",
    "reduction",
    "mobilenet_v1_layers",
    "mobilenet_v1",
]


# --------------------------------------------------------------------------
# argument checking
# --------------------------------------------------------------------------


def _int(value, name, minimum):
    """``value`` as a Python int >= ``minimum``: a bool or a non-integer
    (``3.0``) is a TypeError, a smaller value a ValueError naming ``name``."""
    return _args.to_int(name, value, minimum)


def _pair(value, name, minimum):
    """Int or 2-sequence of ints -> tuple of two ints >= ``minimum``."""
    return _args.to_pair(name, value, 2, minimum=minimum, limit=None)


def _geometry(kernel_size, input_size, stride, padding, dilation):
    """``(kernel (kH, kW), input (H, W), output (H_out, W_out))``, with the
    padding rules of the ops (pydsconv._args: TensorFlow's "same" included)."""
    k = _pair(kernel_size, "kernel_size", 1)
    size = _pair(input_size, "input_size", 1)
    s = _args.to_pair("stride", stride, 2, minimum=1)
    d = _args.to_pair("dilation", dilation, 2, minimum=1)
    return k, size, _args.output_size(size, k, s, padding, d)


def _bias_pair(bias):
    if isinstance(bias, (tuple, list)):
        if len(bias) != 2:
            raise ValueError(
                f"bias must be a bool or a (depthwise_bias, pointwise_bias) "
                f"pair of bools, got {bias!r}"
            )
        return bool(bias[0]), bool(bias[1])
    return bool(bias), bool(bias)


# --------------------------------------------------------------------------
# single layers
# --------------------------------------------------------------------------


def output_size(
    input_size: IntOrPair,
    kernel_size: IntOrPair,
    *,
    stride: IntOrPair = 1,
    padding: Padding2D = "same",
    dilation: IntOrPair = 1,
) -> Tuple[int, int]:
    """Spatial output size of a 2-D convolution or depthwise convolution.

    Parameters
    ----------
    input_size : int or (int, int)
        Input height and width ``(H, W)``; an int means a square input.
    kernel_size : int or (int, int)
        Kernel size ``(kH, kW)``.
    stride : int or (int, int), optional
        Stride, each >= 1.
    padding : {"same", "valid"} or int or (int, int) or ((int, int), (int, int)), optional
        ``"same"`` follows TensorFlow for every stride: output
        ``ceil(in / stride)``.  ``"valid"`` is no padding.  An int or
        ``(ph, pw)`` pads both sides symmetrically; ``((top, bottom),
        (left, right))`` pads each side explicitly.  Default ``"same"``.
    dilation : int or (int, int), optional
        Dilation, each >= 1.

    Returns
    -------
    (int, int)
        ``(H_out, W_out)``; with explicit padding
        ``(H + top + bottom - dilation*(kH-1) - 1) // stride + 1``.

    Raises
    ------
    ValueError
        Non-positive sizes, stride or dilation < 1, negative padding, or a
        (dilated) kernel larger than the padded input.
    TypeError
        A size that is not an integer.

    Examples
    --------
    >>> output_size(224, 3, stride=2)
    (112, 112)
    >>> output_size((5, 7), 3, padding="valid")
    (3, 5)
    """
    return _geometry(kernel_size, input_size, stride, padding, dilation)[2]


def conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    input_size: IntOrPair,
    *,
    stride: IntOrPair = 1,
    padding: Padding2D = "same",
    dilation: IntOrPair = 1,
    groups: int = 1,
    bias: bool = False,
) -> Dict[str, int]:
    """Cost of a standard (optionally grouped) 2-D convolution, one image.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts, each >= 1.
    kernel_size : int or (int, int)
        ``(kH, kW)``.
    input_size : int or (int, int)
        Input ``(H, W)``.
    stride, padding, dilation
        As in :func:`output_size` (default ``"same"`` padding).
    groups : int, optional
        Number of groups; must divide both channel counts.  ``groups ==
        in_channels`` is a depthwise convolution.
    bias : bool, optional
        Count ``out_channels`` bias parameters.  Bias additions are not MACs.

    Returns
    -------
    dict
        ``{"macs": H_out*W_out*out_channels*kH*kW*(in_channels//groups),
        "params": out_channels*(in_channels//groups)*kH*kW [+ out_channels]}``.

    Raises
    ------
    ValueError
        Non-positive counts or sizes, ``groups`` not dividing the channels,
        stride/dilation < 1, negative padding, kernel larger than the padded
        input.

    Examples
    --------
    >>> conv2d(3, 8, 3, 5, padding="valid")
    {'macs': 1944, 'params': 216}
    """
    cin = _int(in_channels, "in_channels", 1)
    cout = _int(out_channels, "out_channels", 1)
    g = _int(groups, "groups", 1)
    if cin % g or cout % g:
        raise ValueError(f"groups={g} must divide in_channels={cin} and out_channels={cout}")
    (kh, kw), _, (ho, wo) = _geometry(kernel_size, input_size, stride, padding, dilation)
    weights = cout * (cin // g) * kh * kw
    return {"macs": ho * wo * weights, "params": weights + (cout if bias else 0)}


def depthwise_conv2d(
    channels: int,
    kernel_size: IntOrPair,
    input_size: IntOrPair,
    *,
    multiplier: int = 1,
    stride: IntOrPair = 1,
    padding: Padding2D = "same",
    dilation: IntOrPair = 1,
    bias: bool = False,
) -> Dict[str, int]:
    """Cost of a depthwise convolution (one filter per input channel).

    Weight shape ``(channels*multiplier, 1, kH, kW)``; each of the
    ``channels*multiplier`` output channels reads a single input channel.

    Parameters
    ----------
    channels : int
        Input channels ``C``.
    kernel_size : int or (int, int)
        ``(kH, kW)``.
    input_size : int or (int, int)
        Input ``(H, W)``.
    multiplier : int, optional
        Channel (depth) multiplier ``M``; output has ``C*M`` channels.
    stride, padding, dilation
        As in :func:`output_size` (default ``"same"`` padding).
    bias : bool, optional
        Count ``C*M`` bias parameters.

    Returns
    -------
    dict
        ``{"macs": H_out*W_out*C*M*kH*kW, "params": C*M*kH*kW [+ C*M]}``.

    Examples
    --------
    >>> depthwise_conv2d(32, 3, 112)
    {'macs': 3612672, 'params': 288}
    """
    c = _int(channels, "channels", 1)
    m = _int(multiplier, "multiplier", 1)
    return conv2d(
        c,
        c * m,
        kernel_size,
        input_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=c,
        bias=bias,
    )


def pointwise_conv2d(
    in_channels: int, out_channels: int, input_size: IntOrPair, *, bias: bool = False
) -> Dict[str, int]:
    """Cost of a pointwise (1x1, stride 1) convolution.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    input_size : int or (int, int)
        Input ``(H, W)`` (equal to the output size).
    bias : bool, optional
        Count ``out_channels`` bias parameters.

    Returns
    -------
    dict
        ``{"macs": H*W*C_in*C_out, "params": C_in*C_out [+ C_out]}``.
    """
    return conv2d(
        in_channels,
        out_channels,
        1,
        input_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=bias,
    )


def separable_conv2d(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    input_size: IntOrPair,
    *,
    multiplier: int = 1,
    stride: IntOrPair = 1,
    padding: Padding2D = "same",
    dilation: IntOrPair = 1,
    bias: Union[bool, Tuple[bool, bool]] = False,
) -> Dict[str, int]:
    """Cost of a depthwise separable convolution (depthwise then pointwise).

    The depthwise stage (``in_channels*multiplier`` channels, with the given
    stride/padding/dilation) is followed by a 1x1 pointwise convolution
    ``in_channels*multiplier -> out_channels`` at the depthwise output size.
    The cost is the sum of the two stages: the stages run one after the
    other, they do not multiply.

    Parameters
    ----------
    in_channels, out_channels : int
        ``C_in`` and ``C_out``.
    kernel_size : int or (int, int)
        Depthwise kernel ``(kH, kW)``.
    input_size : int or (int, int)
        Input ``(H, W)``.
    multiplier : int, optional
        Depthwise channel multiplier ``M``.
    stride, padding, dilation
        Of the depthwise stage, as in :func:`output_size` (default ``"same"``).
    bias : bool or (bool, bool), optional
        Count biases: ``True`` counts a bias on both stages (PyTorch style,
        ``depthwise_bias`` and ``pointwise_bias`` of
        :func:`pydsconv.separable_conv2d`); ``(False, True)`` counts only the
        pointwise bias, as Keras ``SeparableConv2D`` has.

    Returns
    -------
    dict
        ``{"macs": H_out*W_out*C_in*M*(kH*kW + C_out),
        "params": C_in*M*(kH*kW + C_out) [+ biases]}``.

    Examples
    --------
    >>> separable_conv2d(32, 64, 3, 112)
    {'macs': 29302784, 'params': 2336}
    """
    cin = _int(in_channels, "in_channels", 1)
    cout = _int(out_channels, "out_channels", 1)
    m = _int(multiplier, "multiplier", 1)
    dw_bias, pw_bias = _bias_pair(bias)
    dw = depthwise_conv2d(
        cin,
        kernel_size,
        input_size,
        multiplier=m,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=dw_bias,
    )
    mid = output_size(input_size, kernel_size, stride=stride, padding=padding, dilation=dilation)
    pw = pointwise_conv2d(cin * m, cout, mid, bias=pw_bias)
    return {"macs": dw["macs"] + pw["macs"], "params": dw["params"] + pw["params"]}


def reduction(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    input_size: IntOrPair,
    *,
    multiplier: int = 1,
    stride: IntOrPair = 1,
    padding: Padding2D = "same",
    dilation: IntOrPair = 1,
) -> float:
    """MACs of a separable convolution divided by those of a standard one.

    Compares :func:`separable_conv2d` with the :func:`conv2d` it replaces
    (same channels, kernel, stride, padding and dilation, no bias).  Both
    produce the same output grid, so the ratio does not depend on the input
    size, stride or padding (MobileNet eq. 5)::

        (kH*kW*C_in*M + C_in*M*C_out) / (kH*kW*C_in*C_out)
            = M/C_out + M/(kH*kW)

    i.e. ``1/C_out + 1/k**2`` for ``multiplier=1``: about 1/8 to 1/9 for a
    3x3 kernel.  The parameter ratio (without biases) is the same number.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, input_size, multiplier, stride, padding, dilation
        As in :func:`separable_conv2d`.

    Returns
    -------
    float
        ``separable_macs / standard_macs``.

    Examples
    --------
    >>> reduction(512, 512, 3, 14) == 1/512 + 1/9
    True
    """
    sep = separable_conv2d(
        in_channels,
        out_channels,
        kernel_size,
        input_size,
        multiplier=multiplier,
        stride=stride,
        padding=padding,
        dilation=dilation,
    )
    std = conv2d(
        in_channels,
        out_channels,
        kernel_size,
        input_size,
        stride=stride,
        padding=padding,
        dilation=dilation,
    )
    return sep["macs"] / std["macs"]


# --------------------------------------------------------------------------
# MobileNet v1
# --------------------------------------------------------------------------

#: Paper Table 1: stem width and (depthwise stride, pointwise width) of the
#: 13 depthwise separable blocks.  Table 1 prints "s2" for the 13th depthwise
#: layer although its input and output are both 7x7: that is a typo, the
#: stride is 1 (as in the reference TF-slim and Keras implementations).
_STEM_WIDTH = 32
_BLOCKS = (
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (2, 1024),
    (1, 1024),
)
_LAST_WIDTH = 1024


def _width(channels, alpha):
    c = int(channels * alpha)
    if c < 1:
        raise ValueError(
            f"width_multiplier={alpha!r} leaves a layer of {channels} "
            f"channels with int({channels}*{alpha!r}) = {c} channels; "
            f"expected width_multiplier >= {1 / channels}"
        )
    return c


def _layer(name, kind, cin, cout, kernel, stride, groups, size):
    if kind == "fc":
        out = (1, 1)
        weights = cin * cout
        macs = weights
    else:
        out = output_size(size, kernel, stride=stride, padding="same")
        weights = cout * (cin // groups) * kernel * kernel
        macs = out[0] * out[1] * weights
    return {
        "name": name,
        "kind": kind,
        "in_channels": cin,
        "out_channels": cout,
        "kernel_size": (kernel, kernel),
        "stride": (stride, stride),
        "padding": "same",
        "groups": groups,
        "input_size": tuple(size),
        "output_size": out,
        "macs": macs,
        "params": weights,
    }


def mobilenet_v1_layers(
    width_multiplier: float = 1.0,
    resolution: IntOrPair = 224,
    *,
    separable: bool = True,
    num_classes: int = 1000,
) -> List[Dict[str, Any]]:
    """Per-layer table of MobileNet v1 (Howard et al. 2017, Table 1).

    The network: a 3x3 stride-2 standard convolution with 32 filters (the
    stem), 13 depthwise separable blocks (3x3 depthwise with strides
    1,2,1,2,1,2,1,1,1,1,1,2,1, each followed by a 1x1 pointwise convolution
    to 64, 128, 128, 256, 256, 512, 512 (x5), 1024, 1024 channels), global
    average pooling and a fully connected layer 1024 -> ``num_classes``.
    All convolutions use ``"same"`` padding, so a 224 input gives
    112-56-28-14-7 feature maps.  Batch normalisation, ReLU, pooling and
    softmax carry no MACs and are not listed.

    Parameters
    ----------
    width_multiplier : float, optional
        The paper's alpha: every layer width ``c`` (the stem and all blocks,
        not the classes) becomes ``int(c * alpha)`` (truncation, as Keras'
        ``MobileNet(alpha=...)``).  Must leave every layer >= 1 channel.
    resolution : int or (int, int), optional
        Input height and width (the paper's rho * 224).  3 input channels.
    separable : bool, optional
        ``False`` builds the paper's "Conv MobileNet" baseline (Table 4):
        each depthwise separable block replaced by one standard 3x3
        convolution of the same stride and output width.
    num_classes : int, optional
        Outputs of the fully connected layer.

    Returns
    -------
    list of dict
        One dict per layer, in order, with keys ``"name"`` (``"conv1"``,
        ``"conv_dw_1"``, ``"conv_pw_1"``, ..., ``"conv_13"`` in the
        non-separable variant, ``"fc"``), ``"kind"`` (``"conv"``, ``"dw"``,
        ``"pw"`` or ``"fc"``), ``"in_channels"``, ``"out_channels"``,
        ``"kernel_size"`` and ``"stride"`` (``(h, w)`` pairs),
        ``"padding"`` (``"same"``), ``"groups"`` (``in_channels`` for
        depthwise layers, else 1), ``"input_size"``, ``"output_size"``
        (``(H, W)``; ``(1, 1)`` for the fully connected layer, which acts on
        the pooled vector), ``"macs"`` and ``"params"`` (weights only, no
        biases; see :func:`mobilenet_v1`).

    Raises
    ------
    ValueError
        Non-positive ``resolution`` or ``num_classes``, or a
        ``width_multiplier`` that is not > 0 or leaves a layer empty.
    """
    if isinstance(width_multiplier, bool) or not isinstance(width_multiplier, numbers.Real):
        raise TypeError(
            f"width_multiplier must be a real number, got "
            f"{type(width_multiplier).__name__} {width_multiplier!r}"
        )
    alpha = float(width_multiplier)
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"width_multiplier must be a finite number > 0, got {width_multiplier!r}")
    size = _pair(resolution, "resolution", 1)
    classes = _int(num_classes, "num_classes", 1)

    layers = []
    c = _width(_STEM_WIDTH, alpha)
    layers.append(_layer("conv1", "conv", 3, c, 3, 2, 1, size))
    size = layers[-1]["output_size"]
    for i, (stride, width) in enumerate(_BLOCKS, start=1):
        w = _width(width, alpha)
        if separable:
            layers.append(_layer(f"conv_dw_{i}", "dw", c, c, 3, stride, c, size))
            size = layers[-1]["output_size"]
            layers.append(_layer(f"conv_pw_{i}", "pw", c, w, 1, 1, 1, size))
        else:
            layers.append(_layer(f"conv_{i}", "conv", c, w, 3, stride, 1, size))
        size = layers[-1]["output_size"]
        c = w
    layers.append(_layer("fc", "fc", c, classes, 1, 1, 1, (1, 1)))
    return layers


def mobilenet_v1(
    width_multiplier: float = 1.0,
    resolution: IntOrPair = 224,
    *,
    separable: bool = True,
    num_classes: int = 1000,
) -> Dict[str, Any]:
    """Total MACs and parameters of MobileNet v1, for one image.

    Sums :func:`mobilenet_v1_layers`.  The conventions are those that
    reproduce the paper's Table 2 breakdown (1x1 conv 94.86 % of mult-adds
    and 74.59 % of parameters, depthwise 3.06 % / 1.06 %, fully connected
    24.33 % of parameters):

    * mult-adds = MACs of every convolution (padding taps included) **plus
      the fully connected layer** (``1024 * 1000``); batch norm, ReLU,
      average pooling, softmax and bias additions are not counted;
    * parameters = convolution and fully connected **weights only**: no
      biases, no batch-norm scale/shift/statistics (counting the 1000 FC
      biases too gives 4.21 M instead of 4.209 M for the 1.0-224 model);
    * the width multiplier truncates: ``int(c * alpha)`` channels;
    * ``"same"`` padding: a 224 input gives 112, 56, 28, 14, 7 feature maps.

    With these, the exact counts and the paper's printed figures (rounded
    to 1 M mult-adds and 0.1 M parameters) are:

    ==================  ================  ===========  ====================
    model               mult-adds (M)     params (M)   paper (Tables 4-7)
    ==================  ================  ===========  ====================
    1.0 MobileNet-224   568.74            4.209        569 / 4.2
    0.75 MobileNet-224  325.40            2.569        325 / 2.6
    0.5 MobileNet-224   149.50            1.321        149 / 1.3
    0.25 MobileNet-224  41.03             0.465        41 / 0.5
    1.0 MobileNet-192   418.12            4.209        418 / 4.2
    1.0 MobileNet-160   290.68            4.209        290 / 4.2
    1.0 MobileNet-128   186.40            4.209        186 / 4.2
    Conv MobileNet-224  4867.29           29.281       4866 / 29.3
    ==================  ================  ===========  ====================

    Two printed figures are off by one from the exact count and no
    counting convention fixes all figures at once:

    * 1.0 MobileNet-160: the exact count is 290.68 M (TF-slim's own table
      for this checkpoint prints 291).  The paper's Table 7 figures are the
      224 total scaled by rho**2 (its Section 3.3 rule; the FC layer does
      not actually scale): ``568.74 * (160/224)**2 = 290.2``, and likewise
      417.9 and 185.7 for 192 and 128.
    * Conv MobileNet: 4867.29 M with the FC layer; the printed 4866 equals
      the count without the FC layer's 1.02 M (4866.27 M).  Leaving the FC
      mult-adds out everywhere would instead break 569 (567.72), 418 and
      186, and the Table 2 breakdown (FC 0.18 % of mult-adds).

    Parameters
    ----------
    width_multiplier, resolution, separable, num_classes
        As in :func:`mobilenet_v1_layers`.

    Returns
    -------
    dict
        ``"macs"`` and ``"params"`` (ints, network totals);
        ``"by_kind"``: ``{kind: {"macs": int, "params": int}}`` for the kinds
        present (``"conv"``, ``"dw"``, ``"pw"``, ``"fc"``); and the
        arguments ``"width_multiplier"``, ``"resolution"`` (``(H, W)``),
        ``"separable"``, ``"num_classes"``, and ``"num_layers"``.

    Examples
    --------
    >>> r = mobilenet_v1()
    >>> round(r["macs"] / 1e6), round(r["params"] / 1e6, 1)
    (569, 4.2)
    """
    layers = mobilenet_v1_layers(
        width_multiplier, resolution, separable=separable, num_classes=num_classes
    )
    by_kind: Dict[str, Dict[str, int]] = {}
    for layer in layers:
        acc = by_kind.setdefault(layer["kind"], {"macs": 0, "params": 0})
        acc["macs"] += layer["macs"]
        acc["params"] += layer["params"]
    return {
        "macs": sum(layer["macs"] for layer in layers),
        "params": sum(layer["params"] for layer in layers),
        "by_kind": by_kind,
        "width_multiplier": float(width_multiplier),
        "resolution": layers[0]["input_size"],
        "separable": bool(separable),
        "num_classes": layers[-1]["out_channels"],
        "num_layers": len(layers),
    }

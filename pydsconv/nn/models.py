"""Ready-made networks: ``SeparableConvNet`` (small), ``MobileNetV1`` (the paper's),
and torchvision's ``MobileNetV2``, ``MobileNetV3Large`` and ``EfficientNetB0``.

The first two are :class:`Sequential` s of ``features`` (a stem convolution and
depthwise separable blocks, each stage ``conv -> BatchNorm2d -> ReLU``),
``pool`` (:class:`GlobalAvgPool2d`), ``dropout`` and ``classifier``
(:class:`Linear`), so their state-dict names are ``features.0.weight``,
``classifier.weight``...  Replace the head for fine-tuning with
``model.classifier = Linear(...)`` and freeze the rest with
``model.features.freeze()``.

``MobileNetV2``, ``MobileNetV3Large`` and ``EfficientNetB0`` follow
torchvision's definitions layer for layer (``features``, ``pool``,
``classifier``) with torchvision's state-dict keys, so a torchvision
checkpoint converted to NumPy loads with ``load_state_dict``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import cost
from ._util import as_rng, check_int, check_layout
from .activation import Hardsigmoid, Hardswish, ReLU, ReLU6, Sigmoid, SiLU
from .blocks import ConvNormActivation, InvertedResidual, make_divisible
from .container import Sequential
from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d
from .dropout import Dropout
from .linear import Linear
from .norm import BatchNorm2d
from .pooling import GlobalAvgPool2d

__all__ = [
    "SeparableConvNet",
    "MobileNetV1",
    "MobileNetV2",
    "MobileNetV3Large",
    "EfficientNetB0",
    "weight_count",
]


def weight_count(module):
    """Scalars in the convolution and fully connected **weights** of ``module``.

    The MobileNet paper's (and :func:`pydsconv.cost.mobilenet_v1`'s)
    parameter convention: the weights of Conv2d, DepthwiseConv2d,
    PointwiseConv2d, SeparableConv2d and Linear layers; no biases, no
    BatchNorm scale/shift (and running statistics are buffers, never
    parameters).  ``module.num_parameters()`` counts everything trainable.
    """
    kinds = (Conv2d, DepthwiseConv2d, PointwiseConv2d, Linear)
    return sum(m.weight.size for m in module.modules() if isinstance(m, kinds))


def _block(layers, c_in, c_out, stride, padding, layout, dtype, rng):
    """Append one separable block: dw -> BN -> ReLU -> pw -> BN -> ReLU."""
    layers += [
        DepthwiseConv2d(
            c_in, 3, stride=stride, padding=padding, bias=False, layout=layout, dtype=dtype, rng=rng
        ),
        BatchNorm2d(c_in, layout=layout, dtype=dtype),
        ReLU(),
        PointwiseConv2d(c_in, c_out, bias=False, layout=layout, dtype=dtype, rng=rng),
        BatchNorm2d(c_out, layout=layout, dtype=dtype),
        ReLU(),
    ]


def _assemble(self, layers, width, num_classes, dropout, dtype, rng, layout):
    Sequential.__init__(
        self,
        OrderedDict(
            [
                ("features", Sequential(*layers)),
                ("pool", GlobalAvgPool2d(layout)),
                ("dropout", Dropout(dropout, rng=rng)),
                ("classifier", Linear(width, num_classes, dtype=dtype, rng=rng)),
            ]
        ),
    )


class SeparableConvNet(Sequential):
    """A small depthwise separable CNN: stem conv, separable blocks, pool, linear.

    ``features``: a 3x3 :class:`Conv2d` stem (``stem_width`` filters,
    stride 1, padding 1, no bias) -> BatchNorm -> ReLU, then for each
    ``(width, stride)`` a block 3x3 :class:`DepthwiseConv2d` (padding 1) ->
    BatchNorm -> ReLU -> :class:`PointwiseConv2d` to ``width`` -> BatchNorm ->
    ReLU; then global average pooling, dropout and a :class:`Linear` layer
    ``widths[-1] -> num_classes``.  Convolutions have no bias (BatchNorm
    follows each).  Pooling globally makes the classifier's input size
    independent of the image size, so the shapes line up for any
    ``input_size``.

    Parameters
    ----------
    in_channels : int, optional
        Image channels (1 for the 8x8 digits).
    num_classes : int, optional
    input_size : int, optional
        The image size the network is built for (square); it fixes
        :attr:`feature_size` and :meth:`macs` (other sizes also run).
    stem_width : int, optional
    widths : sequence of int, optional
        Output channels of the separable blocks.
    strides : sequence of int, optional
        Depthwise stride of each block (same length as ``widths``).
    dropout : float, optional
        Before the classifier.
    layout : "NCHW" or "NHWC", optional
    dtype : float32 or float64, optional
    rng : None, int or numpy.random.Generator, optional
        Seeds the initial weights (and dropout masks).

    Attributes
    ----------
    feature_size : int
        Spatial size of the last feature map for ``input_size`` inputs.
    """

    def __init__(
        self,
        in_channels=1,
        num_classes=10,
        input_size=8,
        stem_width=16,
        widths=(32, 64, 128),
        strides=(1, 2, 2),
        dropout=0.0,
        layout="NCHW",
        dtype=np.float32,
        rng=None,
    ):
        in_channels = check_int("in_channels", in_channels)
        num_classes = check_int("num_classes", num_classes)
        input_size = check_int("input_size", input_size)
        stem_width = check_int("stem_width", stem_width)
        widths = [check_int(f"widths[{i}]", w) for i, w in enumerate(widths)]
        strides = [check_int(f"strides[{i}]", s) for i, s in enumerate(strides)]
        if not widths or len(widths) != len(strides):
            raise ValueError(
                f"widths and strides must be non-empty and of equal length, got "
                f"{len(widths)} widths and {len(strides)} strides"
            )
        layout = check_layout(layout)
        rng = as_rng(rng)
        layers = [
            Conv2d(
                in_channels,
                stem_width,
                3,
                padding=1,
                bias=False,
                layout=layout,
                dtype=dtype,
                rng=rng,
            ),
            BatchNorm2d(stem_width, layout=layout, dtype=dtype),
            ReLU(),
        ]
        size, c = input_size, stem_width
        plan = [("conv", in_channels, stem_width, 1, size)]
        for w, s in zip(widths, strides):
            _block(layers, c, w, s, 1, layout, dtype, rng)
            plan.append(("sep", c, w, s, size))
            size = cost.output_size(size, 3, stride=s, padding=1)[0]
            c = w
        _assemble(self, layers, c, num_classes, dropout, dtype, rng, layout)
        self.input_size = input_size
        self.feature_size = size
        self._plan = plan
        self.config = dict(
            in_channels=in_channels,
            num_classes=num_classes,
            input_size=input_size,
            stem_width=stem_width,
            widths=widths,
            strides=strides,
            dropout=float(dropout),
            layout=layout,
        )

    def macs(self):
        """Multiply-accumulates for one ``input_size`` image (pydsconv.cost conventions)."""
        total = 0
        for kind, cin, cout, s, size in self._plan:
            f = cost.conv2d if kind == "conv" else cost.separable_conv2d
            total += f(cin, cout, 3, size, stride=s, padding=1)["macs"]
        return total + self.classifier.weight.size


class MobileNetV1(Sequential):
    """MobileNet v1 (Howard et al. 2017, Table 1), with width multiplier.

    ``features``: a 3x3 stride-2 :class:`Conv2d` with ``int(32*alpha)``
    filters, then 13 blocks of 3x3 :class:`DepthwiseConv2d` (strides
    1,2,1,2,1,2,1,1,1,1,1,2,1) and :class:`PointwiseConv2d` to
    ``int(c*alpha)`` of 64, 128, 128, 256, 256, 512, 512 (x5), 1024, 1024
    channels, every convolution without bias and followed by BatchNorm and
    ReLU; then global average pooling, dropout and a 1024*alpha ->
    ``num_classes`` :class:`Linear` with bias.

    **Parameter counts.**  ``weight_count(model)`` (convolution and linear
    weights only) equals ``pydsconv.cost.mobilenet_v1(width_multiplier,
    input_size, num_classes=num_classes)["params"]`` (4,209,088 for
    1.0-224, the paper's 4.2 M).  ``model.num_parameters()`` adds the
    trainable BatchNorm scale and shift (2 per channel of each of the 27
    BatchNorms) and the ``num_classes`` classifier biases; the BatchNorm
    running statistics are buffers and counted in neither.

    Parameters
    ----------
    width_multiplier : float, optional
        The paper's alpha; widths are ``int(c * alpha)`` (as Keras).
    num_classes : int, optional
    input_size : int, optional
        The resolution the network is built for (the paper's rho * 224);
        :meth:`cost` uses it.  Other sizes also run.
    layout : "NCHW" or "NHWC", optional
    padding : optional
        Of the 3x3 convolutions: ``"same"`` (default, TensorFlow's rule, as
        the paper's reference implementation and the cost model) or ``1``
        (PyTorch ports).  The parameter count does not depend on it.
    dropout : float, optional
        Before the classifier (Keras uses 1e-3).
    dtype : float32 or float64, optional
    rng : None, int or numpy.random.Generator, optional
    """

    _STEM = 32
    _BLOCKS = (
        (64, 1),
        (128, 2),
        (128, 1),
        (256, 2),
        (256, 1),
        (512, 2),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (512, 1),
        (1024, 2),
        (1024, 1),
    )

    def __init__(
        self,
        width_multiplier=1.0,
        num_classes=1000,
        input_size=224,
        layout="NCHW",
        padding="same",
        dropout=0.0,
        dtype=np.float32,
        rng=None,
    ):
        alpha = float(width_multiplier)
        if not alpha > 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}")
        num_classes = check_int("num_classes", num_classes)
        input_size = check_int("input_size", input_size)
        layout = check_layout(layout)
        rng = as_rng(rng)

        def width(c):
            w = int(c * alpha)
            if w < 1:
                raise ValueError(f"width_multiplier={alpha} leaves a {c}-channel layer empty")
            return w

        c = width(self._STEM)
        layers = [
            Conv2d(
                3, c, 3, stride=2, padding=padding, bias=False, layout=layout, dtype=dtype, rng=rng
            ),
            BatchNorm2d(c, layout=layout, dtype=dtype),
            ReLU(),
        ]
        for w, s in self._BLOCKS:
            _block(layers, c, width(w), s, padding, layout, dtype, rng)
            c = width(w)
        _assemble(self, layers, c, num_classes, dropout, dtype, rng, layout)
        self.input_size = input_size
        self.width_multiplier = alpha
        self.num_classes = num_classes

    def cost(self):
        """:func:`pydsconv.cost.mobilenet_v1` for this width, input size and classes."""
        return cost.mobilenet_v1(
            self.width_multiplier, self.input_size, num_classes=self.num_classes
        )


def _head(self, features, pool_layout, classifier):
    Sequential.__init__(
        self,
        OrderedDict(
            [
                ("features", Sequential(*features)),
                ("pool", GlobalAvgPool2d(pool_layout)),
                ("classifier", Sequential(*classifier)),
            ]
        ),
    )


class MobileNetV2(Sequential):
    """MobileNet v2 (Sandler et al. 2018), exactly torchvision's ``mobilenet_v2``.

    ``features``: a 3x3 stride-2 :class:`ConvNormActivation` (ReLU6) to 32
    channels, 17 :class:`InvertedResidual` blocks (expansion t, channels c,
    repeats n, first stride s: (1,16,1,1), (6,24,2,2), (6,32,3,2),
    (6,64,4,2), (6,96,3,1), (6,160,3,2), (6,320,1,1); ReLU6; residual where
    the stride is 1 and the width unchanged) and a 1x1 ConvNormActivation to
    1280; then ``pool`` (:class:`GlobalAvgPool2d`) and ``classifier``
    (``Dropout``, ``Linear``).  Widths are ``make_divisible(c * width, 8)``;
    padding is PyTorch's (1 for the 3x3 convolutions, also at stride 2).
    BatchNorm eps 1e-5.

    State-dict keys equal torchvision's (``features.0.0.weight``,
    ``features.1.conv.0.0.weight``, ``features.2.conv.1.1.running_mean``,
    ``classifier.1.weight``); ``num_parameters()`` is 3,504,872 for
    width 1.0 and 1000 classes, as torchvision's.

    Parameters
    ----------
    num_classes : int, optional
    width_multiplier : float, optional
    dropout : float, optional
        Before the classifier (torchvision: 0.2).
    layout : "NCHW" or "NHWC", optional
    dtype : float32 or float64, optional
    rng : None, int or numpy.random.Generator, optional
    """

    _SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1))  # fmt: skip

    def __init__(
        self,
        num_classes=1000,
        width_multiplier=1.0,
        dropout=0.2,
        layout="NCHW",
        dtype=np.float32,
        rng=None,
    ):
        alpha = float(width_multiplier)
        if not alpha > 0:
            raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}")
        num_classes = check_int("num_classes", num_classes)
        layout = check_layout(layout)
        rng = as_rng(rng)
        common = dict(layout=layout, dtype=dtype, rng=rng)
        c = make_divisible(32 * alpha)
        last = make_divisible(1280 * max(1.0, alpha))
        features = [ConvNormActivation(3, c, 3, 2, activation=ReLU6, **common)]
        for t, ch, n, s in self._SETTING:
            out = make_divisible(ch * alpha)
            for i in range(n):
                features.append(
                    InvertedResidual(
                        c, out, int(round(c * t)), s if i == 0 else 1, 3, ReLU6, **common
                    )
                )
                c = out
        features.append(ConvNormActivation(c, last, 1, activation=ReLU6, **common))
        _head(
            self,
            features,
            layout,
            [Dropout(dropout, rng=rng), Linear(last, num_classes, dtype=dtype, rng=rng)],
        )
        self.num_classes = num_classes
        self.width_multiplier = alpha


class MobileNetV3Large(Sequential):
    """MobileNet v3-Large (Howard et al. 2019), exactly torchvision's ``mobilenet_v3_large``.

    ``features``: a 3x3 stride-2 :class:`ConvNormActivation` (Hardswish) to
    16 channels; 15 :class:`InvertedResidual` blocks (kernel, expanded and
    output channels, squeeze-and-excitation, ReLU or Hardswish and stride as
    the paper's Table 1; SE squeeze channels ``make_divisible(expanded // 4,
    8)`` with ReLU and a Hardsigmoid gate; the projection a
    ConvNormActivation without activation; children named ``block``); a 1x1
    ConvNormActivation 160 -> 960 (Hardswish); ``pool``; ``classifier``:
    ``Linear(960, 1280)``, ``Hardswish``, ``Dropout``, ``Linear(1280,
    num_classes)``.  Every BatchNorm has eps 1e-3 and momentum 0.01 (as
    torchvision).  ``num_parameters()`` is 5,483,032 for 1000 classes.

    Parameters
    ----------
    num_classes : int, optional
    dropout : float, optional
        In the classifier (torchvision: 0.2).
    layout, dtype, rng : optional
    """

    # input, kernel, expanded, output, SE, activation, stride
    _SETTING = (
        (16, 3, 16, 16, False, "RE", 1),
        (16, 3, 64, 24, False, "RE", 2),
        (24, 3, 72, 24, False, "RE", 1),
        (24, 5, 72, 40, True, "RE", 2),
        (40, 5, 120, 40, True, "RE", 1),
        (40, 5, 120, 40, True, "RE", 1),
        (40, 3, 240, 80, False, "HS", 2),
        (80, 3, 200, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 184, 80, False, "HS", 1),
        (80, 3, 480, 112, True, "HS", 1),
        (112, 3, 672, 112, True, "HS", 1),
        (112, 5, 672, 160, True, "HS", 2),
        (160, 5, 960, 160, True, "HS", 1),
        (160, 5, 960, 160, True, "HS", 1),
    )

    def __init__(self, num_classes=1000, dropout=0.2, layout="NCHW", dtype=np.float32, rng=None):
        num_classes = check_int("num_classes", num_classes)
        layout = check_layout(layout)
        rng = as_rng(rng)
        hswish, hsigmoid = Hardswish, Hardsigmoid
        common = dict(eps=1e-3, momentum=0.01, layout=layout, dtype=dtype, rng=rng)
        features = [ConvNormActivation(3, 16, 3, 2, activation=hswish, **common)]
        for cin, k, exp, cout, se, act, s in self._SETTING:
            features.append(
                InvertedResidual(
                    cin,
                    cout,
                    exp,
                    s,
                    k,
                    hswish if act == "HS" else ReLU,
                    se_channels=make_divisible(exp // 4, 8) if se else None,
                    se_activation=ReLU,
                    se_gate=hsigmoid,
                    project_activation_module=True,
                    body_name="block",
                    **common,
                )
            )
        features.append(ConvNormActivation(160, 960, 1, activation=hswish, **common))
        _head(
            self,
            features,
            layout,
            [
                Linear(960, 1280, dtype=dtype, rng=rng),
                hswish(),
                Dropout(dropout, rng=rng),
                Linear(1280, num_classes, dtype=dtype, rng=rng),
            ],
        )
        self.num_classes = num_classes


class EfficientNetB0(Sequential):
    """EfficientNet-B0 (Tan and Le 2019), exactly torchvision's ``efficientnet_b0``.

    ``features``: a 3x3 stride-2 :class:`ConvNormActivation` (SiLU) to 32
    channels; 7 stages (each a :class:`Sequential`) of MBConv blocks
    (:class:`InvertedResidual` with SiLU, children named ``block``; expansion
    t, kernel k, first stride s, channels and repeats (1,3,1,32,16,1),
    (6,3,2,16,24,2), (6,5,2,24,40,2), (6,3,2,40,80,3), (6,5,1,80,112,3),
    (6,5,2,112,192,4), (6,3,1,192,320,1); expanded channels
    ``make_divisible(c_in * t, 8)``; squeeze-and-excitation with
    ``max(1, c_in // 4)`` squeeze channels, SiLU and a sigmoid gate); a 1x1
    ConvNormActivation 320 -> 1280 (SiLU); ``pool``; ``classifier``
    (``Dropout``, ``Linear``).  BatchNorm eps 1e-5.  ``num_parameters()`` is
    5,288,548 for 1000 classes.

    Stochastic depth: block ``i`` of 16 drops its residual branch with
    probability ``stochastic_depth * i / 16`` per image while training
    (torchvision's "row" mode; 0 switches it off); identity in eval mode.

    Parameters
    ----------
    num_classes : int, optional
    dropout : float, optional
        Before the classifier (torchvision: 0.2).
    stochastic_depth : float, optional
        torchvision's ``stochastic_depth_prob`` (0.2).
    layout, dtype, rng : optional
    """

    # expansion, kernel, stride, input, output, repeats
    _SETTING = ((1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2),
                (6, 3, 2, 40, 80, 3), (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4),
                (6, 3, 1, 192, 320, 1))  # fmt: skip

    def __init__(
        self,
        num_classes=1000,
        dropout=0.2,
        stochastic_depth=0.2,
        layout="NCHW",
        dtype=np.float32,
        rng=None,
    ):
        num_classes = check_int("num_classes", num_classes)
        layout = check_layout(layout)
        rng = as_rng(rng)
        silu, sigmoid = SiLU, Sigmoid
        common = dict(layout=layout, dtype=dtype, rng=rng)
        features = [ConvNormActivation(3, 32, 3, 2, activation=silu, **common)]
        total = sum(n for *_, n in self._SETTING)
        index = 0
        for t, k, s, cin, cout, n in self._SETTING:
            stage = []
            for i in range(n):
                c = cin if i == 0 else cout
                stage.append(
                    InvertedResidual(
                        c,
                        cout,
                        make_divisible(c * t),
                        s if i == 0 else 1,
                        k,
                        silu,
                        se_channels=max(1, c // 4),
                        se_activation=silu,
                        se_gate=sigmoid,
                        project_activation_module=True,
                        body_name="block",
                        stochastic_depth=float(stochastic_depth) * index / total,
                        **common,
                    )
                )
                index += 1
            features.append(Sequential(*stage))
        features.append(ConvNormActivation(320, 1280, 1, activation=silu, **common))
        _head(
            self,
            features,
            layout,
            [Dropout(dropout, rng=rng), Linear(1280, num_classes, dtype=dtype, rng=rng)],
        )
        self.num_classes = num_classes

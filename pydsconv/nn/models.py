"""Ready-made networks: ``SeparableConvNet`` (small) and ``MobileNetV1`` (the paper's).

Both are :class:`Sequential` s of ``features`` (a stem convolution and
depthwise separable blocks, each stage ``conv -> BatchNorm2d -> ReLU``),
``pool`` (:class:`GlobalAvgPool2d`), ``dropout`` and ``classifier``
(:class:`Linear`), so their state-dict names are ``features.0.weight``,
``classifier.weight``...  Replace the head for fine-tuning with
``model.classifier = Linear(...)`` and freeze the rest with
``model.features.freeze()``.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .. import cost
from ._util import as_rng, check_int, check_layout
from .activation import ReLU
from .container import Sequential
from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d
from .dropout import Dropout
from .linear import Linear
from .norm import BatchNorm2d
from .pooling import GlobalAvgPool2d

__all__ = ["SeparableConvNet", "MobileNetV1", "weight_count"]


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

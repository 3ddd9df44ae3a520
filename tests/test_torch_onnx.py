"""ONNX export of models built from pydsconv.torch layers (issue 20, item 1):
both exporters give standard ``Conv`` nodes (``group = C`` for the depthwise
ones) that ONNX Runtime runs with the eager outputs.
"""

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import pydsconv.torch as pt  # noqa: E402

nn = torch.nn

EXPORTERS = [
    pytest.param(False, id="torchscript"),
    pytest.param(
        True,
        id="dynamo",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("onnxscript") is None,
            reason="the dynamo ONNX exporter needs onnxscript, which is not installed",
        ),
    ),
]


def _model2d():
    torch.manual_seed(0)
    return nn.Sequential(
        pt.SeparableConv2d(4, 8, 3, stride=2, padding="same", mid_activation="relu6"),
        nn.BatchNorm2d(8),
        pt.DepthwiseConv2d(
            8, (3, 5), padding=((1, 0), (2, 2)), depth_multiplier=2, activation="relu"
        ),
        pt.PointwiseConv2d(16, 6, activation="relu6"),
        pt.DepthwiseConv2d(6, 3, stride=2, dilation=2, padding=2, bias=False),
    ).eval()


def _model1d():
    torch.manual_seed(1)
    return nn.Sequential(
        pt.SeparableConv1d(3, 6, 3, padding="causal", dilation=2, activation="relu"),
        pt.DepthwiseConv1d(6, 5, stride=2, padding="same"),
        pt.PointwiseConv1d(6, 2, activation="relu6"),
    ).eval()


def _export(model, x, path, dynamo):
    kwargs = dict(input_names=["x"], output_names=["y"], dynamo=dynamo)
    if not dynamo:
        kwargs["opset_version"] = 17
    torch.onnx.export(model, (x,), str(path), **kwargs)
    return onnx.load(str(path))


def _run(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def _convs(graph):
    return [n for n in graph.node if n.op_type == "Conv"]


def _group(node):
    return next((a.i for a in node.attribute if a.name == "group"), 1)


@pytest.mark.parametrize("dynamo", EXPORTERS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_onnx_export_2d_standard_conv_nodes(tmp_path, dynamo, channels_last):
    model = _model2d()
    x = torch.randn(2, 4, 13, 11)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    with torch.no_grad():
        want = model(x).numpy()
    m = _export(model, x, tmp_path / "m.onnx", dynamo)
    onnx.checker.check_model(m)
    assert {n.domain for n in m.graph.node} <= {"", "ai.onnx"}, "only standard ONNX ops"
    assert not any("pydsconv" in n.op_type for n in m.graph.node)
    groups = sorted(_group(n) for n in _convs(m.graph))
    # separable (depthwise C=4, pointwise), depthwise C=8 (M=2), pointwise, depthwise C=6
    assert groups == [1, 1, 4, 6, 8]
    got = _run(tmp_path / "m.onnx", x.contiguous())
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # eager calls after the export still run pydsconv
    with torch.no_grad():
        np.testing.assert_array_equal(model(x).numpy(), want)


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_onnx_export_1d(tmp_path, dynamo):
    model = _model1d()
    x = torch.randn(2, 3, 17)
    with torch.no_grad():
        want = model(x).numpy()
    m = _export(model, x, tmp_path / "m.onnx", dynamo)
    assert sorted(_group(n) for n in _convs(m.graph)) == [1, 1, 3, 6]
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dynamo", EXPORTERS)
def test_onnx_export_other_activations(tmp_path, dynamo):
    torch.manual_seed(3)
    model = nn.Sequential(
        pt.SeparableConv2d(4, 8, 3, padding=1, mid_activation="hardswish", activation="silu"),
        pt.DepthwiseConv2d(8, 3, stride=2, padding=1, activation="hardsigmoid"),
        pt.PointwiseConv2d(8, 4, activation="sigmoid"),
    ).eval()
    x = torch.randn(1, 4, 10, 10)
    with torch.no_grad():
        want = model(x).numpy()
    m = _export(model, x, tmp_path / "m.onnx", dynamo)
    assert sorted(_group(n) for n in _convs(m.graph)) == [1, 1, 4, 8]
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), want, rtol=1e-4, atol=1e-5)


def test_onnx_export_pointwise_2d_weight(tmp_path):
    """The functional form's (C_out, C_in) pointwise weight exports too."""
    w = torch.randn(5, 3)

    class M(nn.Module):
        def forward(self, x):
            return pt.pointwise_conv2d(x, w, None, "relu")

    x = torch.randn(1, 3, 4, 4)
    m = _export(M(), x, tmp_path / "m.onnx", False)
    assert len(_convs(m.graph)) == 1
    want = torch.relu(torch.nn.functional.conv2d(x, w[:, :, None, None])).numpy()
    np.testing.assert_allclose(_run(tmp_path / "m.onnx", x), want, rtol=1e-5, atol=1e-6)

"""Errors that say what to do: a packed weight where an array is needed, an
empty weight to prepack_pointwise, a PyTorch tensor that requires grad."""

import numpy as np
import pytest

import pydsconv

F = np.float32


def _packed():
    return pydsconv.prepack_pointwise(np.ones((4, 3), F))


@pytest.mark.parametrize(
    "op, shapes",
    [
        (pydsconv.pointwise_conv2d_backward, ((1, 4, 2, 2), (1, 3, 2, 2))),
        (pydsconv.pointwise_conv1d_backward, ((1, 4, 5), (1, 3, 5))),
    ],
)
def test_packed_weight_in_a_backward_op(op, shapes):
    g, x = (np.ones(s, F) for s in shapes)
    with pytest.raises(
        TypeError,
        match=r"^weight .*PackedPointwise.*backward ops take the "
        r"plain weight array \(packed\.weight gives it\)",
    ):
        op(g, x, _packed())
    gx, gw, gb = op(g, x, _packed().weight)  # what the message says to pass
    assert gw.shape == (4, 3)


def test_packed_weight_where_no_op_takes_one():
    x = np.ones((1, 3, 4, 4), F)
    with pytest.raises(TypeError, match="^x .*PackedPointwise"):
        pydsconv.pointwise_conv2d(_packed(), np.ones((4, 3), F))
    with pytest.raises(TypeError, match="^bias .*PackedPointwise"):
        pydsconv.pointwise_conv2d(x, np.ones((4, 3), F), _packed())
    with pytest.raises(TypeError, match="^weight .*PackedPointwise"):
        pydsconv.depthwise_conv2d(x, _packed())
    with pytest.raises(TypeError, match="^weight .*PackedPointwise"):
        pydsconv.depthwise_conv2d_backward(x, x, _packed())
    with pytest.raises(TypeError, match="^depthwise_weight .*PackedPointwise"):
        pydsconv.separable_conv2d(x, _packed(), np.ones((4, 3), F))


@pytest.mark.parametrize(
    "shape", [(0, 3), (3, 0), (0, 0), (0, 3, 1), (3, 0, 1), (0, 3, 1, 1), (3, 0, 1, 1)]
)
def test_prepack_refuses_empty_weights_like_the_ops(shape):
    with pytest.raises(
        ValueError,
        match=r"^weight must have shape \(C_out, C_in\).*"
        + str(shape).replace("(", r"\(").replace(")", r"\)"),
    ):
        pydsconv.prepack_pointwise(np.ones(shape, F))
    x = np.ones((1, 3, 2, 2), F) if len(shape) != 3 else np.ones((1, 3, 2), F)
    op = pydsconv.pointwise_conv1d if len(shape) == 3 else pydsconv.pointwise_conv2d
    with pytest.raises(ValueError, match="^weight must have shape"):
        op(x, np.ones(shape, F))  # the ops agree


def test_prepack_still_takes_every_weight_shape():
    for shape in [(1, 1), (4, 3), (4, 3, 1), (4, 3, 1, 1)]:
        assert pydsconv.prepack_pointwise(np.ones(shape, F)).weight.shape == shape


def test_torch_tensor_that_requires_grad():
    torch = pytest.importorskip("torch")
    x = torch.ones(1, 3, 4, 4, requires_grad=True)
    w = np.ones((4, 3), F)
    with pytest.raises(
        TypeError,
        match=r"^x is a PyTorch tensor that requires grad.*"
        r"x\.detach\(\).*pydsconv\.torch",
    ):
        pydsconv.pointwise_conv2d(x, w)
    with pytest.raises(TypeError, match=r"^weight is a PyTorch tensor that requires grad"):
        pydsconv.pointwise_conv2d(x.detach().numpy(), torch.ones(4, 3, requires_grad=True))
    with pytest.raises(TypeError, match=r"^grad_out is a PyTorch tensor"):
        pydsconv.pointwise_conv2d_backward(
            torch.ones(1, 4, 4, 4, requires_grad=True), x.detach(), w
        )
    with pytest.raises(TypeError, match=r"^weight is a PyTorch tensor"):
        pydsconv.prepack_pointwise(torch.ones(4, 3, requires_grad=True))
    # as before: tensors that do not require grad are converted (zero-copy on the CPU)
    y = pydsconv.pointwise_conv2d(x.detach(), w)
    np.testing.assert_allclose(y, np.full((1, 4, 4, 4), 3, F))
    with torch.no_grad():
        y2 = pydsconv.pointwise_conv2d(torch.ones(1, 3, 4, 4), torch.ones(4, 3))
    np.testing.assert_array_equal(y, y2)

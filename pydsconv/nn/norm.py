"""Batch normalisation and folding it into the preceding convolution."""

from __future__ import annotations

import numpy as np

from ._util import (
    check_dtype,
    check_grad,
    check_input,
    check_int,
    check_layout,
    per_channel,
)
from .module import Module, Parameter

__all__ = ["BatchNorm2d", "fuse_conv_bn", "fold_batchnorm"]


class BatchNorm2d(Module):
    """Batch normalisation over (N, H, W) per channel, as PyTorch's ``nn.BatchNorm2d``.

    Training mode normalises with the batch mean and biased variance and
    updates the running statistics: ``running = (1 - momentum) * running +
    momentum * batch`` with the *unbiased* batch variance (``momentum=None``
    is a cumulative average, as PyTorch).  Eval mode normalises with the
    running statistics.  Backward is exact in both modes (in eval mode the
    layer is an affine map).

    Parameters
    ----------
    num_features : int
        Channels C.
    eps : float, optional
        Added to the variance.
    momentum : float or None, optional
    affine : bool, optional
        Learn a per-channel scale ``weight`` (ones) and shift ``bias`` (zeros).
    track_running_stats : bool, optional
        Keep ``running_mean``, ``running_var`` and ``num_batches_tracked``
        (buffers, saved in the state dict).  Without them eval mode also uses
        batch statistics.
    layout : "NCHW" or "NHWC", optional
    dtype : float32 or float64, optional
    """

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        layout="NCHW",
        dtype=np.float32,
    ):
        super().__init__()
        self.num_features = check_int("num_features", num_features)
        self.eps = float(eps)
        if momentum is not None and not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"momentum must be None or in [0, 1], got {momentum!r}")
        self.momentum = None if momentum is None else float(momentum)
        self.layout = check_layout(layout)
        dt = self._dtype = check_dtype(dtype)
        c = self.num_features
        self.weight = Parameter(np.ones(c, dt)) if affine else None
        self.bias = Parameter(np.zeros(c, dt)) if affine else None
        self.track_running_stats = bool(track_running_stats)
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dt))
            self.register_buffer("running_var", np.ones(c, dt))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        self._cache = None

    def _on_dtype(self, dtype):
        self._dtype = dtype

    def _axes(self):
        return (0, 2, 3) if self.layout == "NCHW" else (0, 1, 2)

    def _stats(self):
        """(scale, shift) of eval mode: ``y = x * scale + shift``, per channel."""
        invstd = 1.0 / np.sqrt(self.running_var + self.eps)
        gamma = 1.0 if self.weight is None else self.weight.data
        beta = 0.0 if self.bias is None else self.bias.data
        scale = (gamma * invstd).astype(self.running_var.dtype)
        shift = (beta - self.running_mean * scale).astype(self.running_var.dtype)
        return scale, shift

    def forward(self, x):
        check_input(self, x, self.num_features, self.layout, 4, self._dtype)
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            count = x.size // self.num_features
            if count <= 1:
                raise ValueError(
                    f"{self!r}: expected more than 1 value per channel when "
                    f"training, got input shape {x.shape}"
                )
            axes = self._axes()
            mean = x.mean(axis=axes)
            centred = x - per_channel(mean, self.layout)
            var = np.mean(np.square(centred), axis=axes)
            invstd = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)
            xhat = centred * per_channel(invstd, self.layout)
            if self.training and self.track_running_stats:
                self.num_batches_tracked += 1
                f = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean *= 1 - f
                self.running_mean += f * mean
                self.running_var *= 1 - f
                self.running_var += f * var * (count / (count - 1))
            y = xhat
            if self.weight is not None:
                y = xhat * per_channel(self.weight.data, self.layout) + per_channel(
                    self.bias.data, self.layout
                )
            self._cache = ("batch", xhat, invstd, y.shape)
            return y
        invstd = (1.0 / np.sqrt(self.running_var + self.eps)).astype(x.dtype)
        xhat = (x - per_channel(self.running_mean, self.layout)) * per_channel(invstd, self.layout)
        y = xhat
        if self.weight is not None:
            y = xhat * per_channel(self.weight.data, self.layout) + per_channel(
                self.bias.data, self.layout
            )
        self._cache = ("running", xhat, invstd, y.shape)
        return y

    def backward(self, grad_out, input_grad=True):
        mode, xhat, invstd, shape = self._saved("_cache")
        g = check_grad(self, grad_out, shape, xhat.dtype)
        axes = self._axes()
        if self.weight is not None:
            if self.weight.requires_grad:
                self.weight.accumulate(np.sum(g * xhat, axis=axes))
            if self.bias.requires_grad:
                self.bias.accumulate(np.sum(g, axis=axes))
        if not input_grad:
            return None
        gamma = 1.0 if self.weight is None else self.weight.data
        dxhat = (
            g * per_channel(gamma * invstd, self.layout)
            if self.weight is not None
            else g * per_channel(invstd, self.layout)
        )
        if mode == "running":  # affine in x
            return dxhat.astype(g.dtype, copy=False)
        # dx = invstd/m * (m*dxhat' - sum(dxhat') - xhat*sum(dxhat'*xhat)), dxhat' = g*gamma;
        # invstd is folded into dxhat above.
        m = g.size // self.num_features
        s1 = per_channel(np.sum(dxhat, axis=axes) / m, self.layout)
        s2 = per_channel(np.sum(dxhat * xhat, axis=axes) / m, self.layout)
        return (dxhat - s1 - xhat * s2).astype(g.dtype, copy=False)

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.weight is not None}, layout={self.layout!r}"
        )


def fuse_conv_bn(conv, bn):
    """A new convolution equal to ``bn(conv(x))`` with ``bn`` in eval mode.

    The running statistics and affine parameters are folded into the
    convolution's weight and bias (created if the convolution had none):
    ``w' = w * s`` per output channel and ``b' = (b - running_mean) * s +
    beta`` with ``s = gamma / sqrt(running_var + eps)``.  For inference only:
    the result no longer normalises with batch statistics.

    Parameters
    ----------
    conv : Conv2d, DepthwiseConv2d, PointwiseConv2d or SeparableConv2d
        Without an output activation (BatchNorm must act on the linear
        output).  A SeparableConv2d folds into its pointwise stage.
    bn : BatchNorm2d
        With running statistics, ``num_features == conv.out_channels`` and
        the same layout.

    Returns
    -------
    The same type as ``conv``, a deep copy; the inputs are not changed.
    """
    from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d, SeparableConv2d

    if not isinstance(bn, BatchNorm2d):
        raise TypeError(f"bn must be a BatchNorm2d, got {type(bn).__name__}")
    if not bn.track_running_stats:
        raise ValueError("fuse_conv_bn: bn has no running statistics (track_running_stats=False)")
    if not isinstance(conv, (Conv2d, DepthwiseConv2d, PointwiseConv2d, SeparableConv2d)):
        raise TypeError(
            "conv must be a Conv2d, DepthwiseConv2d, PointwiseConv2d or "
            f"SeparableConv2d, got {type(conv).__name__}"
        )
    fused = conv.copy()
    target = fused.pointwise if isinstance(fused, SeparableConv2d) else fused
    if target.activation is not None:
        raise ValueError(
            f"fuse_conv_bn: {conv!r} applies activation={target.activation!r} "
            "before the BatchNorm; only a linear convolution can absorb it"
        )
    if bn.num_features != target.out_channels:
        raise ValueError(
            f"fuse_conv_bn: bn has {bn.num_features} features, the convolution "
            f"{target.out_channels} output channels"
        )
    if bn.layout != target.layout:
        raise ValueError(f"fuse_conv_bn: layouts differ (conv {target.layout!r}, bn {bn.layout!r})")
    scale, shift = bn._stats()
    dt = target.weight.dtype
    w = target.weight.data * scale.reshape(-1, *([1] * (target.weight.data.ndim - 1)))
    target.weight.data = np.ascontiguousarray(w, dtype=dt)
    b = 0.0 if target.bias is None else target.bias.data
    target.bias = Parameter(
        np.ascontiguousarray(b * scale + shift, dtype=dt), requires_grad=target.weight.requires_grad
    )
    return fused.eval()


def fold_batchnorm(model):
    """A copy of ``model`` for inference with every (conv, BatchNorm2d) pair folded.

    Walks every :class:`Sequential` in ``model``; where a convolution layer
    without an activation is directly followed by a ``BatchNorm2d``, the
    convolution becomes :func:`fuse_conv_bn`'s result and the BatchNorm an
    :class:`Identity` (indices, hence state-dict names of the other layers,
    are unchanged).  The copy is in eval mode; ``model`` is not changed.
    """
    from .container import Identity, Sequential
    from .conv import Conv2d, DepthwiseConv2d, PointwiseConv2d, SeparableConv2d

    convs = (Conv2d, DepthwiseConv2d, PointwiseConv2d, SeparableConv2d)
    folded = model.copy().eval()
    for m in folded.modules():
        if not isinstance(m, Sequential):
            continue
        names = list(m._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = m._modules[a], m._modules[b]
            if isinstance(conv, convs) and isinstance(bn, BatchNorm2d) and bn.track_running_stats:
                tgt = conv.pointwise if isinstance(conv, SeparableConv2d) else conv
                if tgt.activation is None:
                    setattr(m, a, fuse_conv_bn(conv, bn))
                    setattr(m, b, Identity())
    return folded

"""Faster CPU inference for three layer kinds, with unchanged parameters and results.

Measured on this project's 2-core machine (fp32, torch 2.13): the default paths leave speed
on the table for the shapes DepthSplat uses, and each replacement here computes the same
function (to float32 rounding, about 1e-6 relative) with the same parameter names:

* :class:`Linear`: oneDNN's matrix product on the dense tensors instead of the default one
  for inference in float32 on the CPU, faster on the token-by-width products of the ViT and
  of the multi-view Transformer; :func:`linear_gelu` adds the GELU of their MLPs in the same
  call;
* :func:`nhwc`: convolutions of the DPT and Gaussian heads on channels-last inputs, 1.2-2x
  faster in oneDNN at their full- and half-resolution widths;
* :class:`PointwiseConv2d`: 1x1 convolutions as one matrix product over channels-last pixels
  (the default CPU path for 1x1 kernels copies its input and adds the bias separately).

Training (autograd enabled) and other devices take the default paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _onednn_inference(x: Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


ONEDNN_MIN_CHANNELS = 128


def onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None, gelu: bool = False) -> Tensor:
    """``F.linear(x, weight, bias)``, then the exact GELU if ``gelu``, in one oneDNN call.

    oneDNN reads the dense tensors as they are (no conversion to its own format and back) and
    applies the GELU while the output is in cache.
    """
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters) whose CPU float32 inference runs in oneDNN."""

    def forward(self, x: Tensor) -> Tensor:  # [..., in] -> [..., out]
        if not _onednn_inference(x):
            return F.linear(x, self.weight, self.bias)
        return onednn_linear(x, self.weight, self.bias)


def linear_gelu(layer: nn.Linear, x: Tensor) -> Tensor:
    """``F.gelu(layer(x))``: one fused oneDNN call on the CPU fast path."""
    if not _onednn_inference(x):
        return F.gelu(layer(x))
    return onednn_linear(x, layer.weight, layer.bias, gelu=True)


def nhwc(x: Tensor) -> Tensor:
    """``x`` [N, C, H, W] stored channels-last (same values and shape).

    Convolutions keep their outputs channels-last, and so do the elementwise ops, paddings
    and interpolations between them.
    """
    return x.contiguous(memory_format=torch.channels_last)


def cat_nhwc(tensors: Sequence[Tensor]) -> Tensor:
    """``torch.cat(tensors, dim=1)`` written straight into a channels-last tensor (a plain
    concatenation with one-channel maps would come out contiguous and need a copy)."""
    first = tensors[0]
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        # cat(out=...) has no autograd; training (scripts/train_demo.py) takes the copy.
        return torch.cat(tuple(tensors), dim=1).contiguous(memory_format=torch.channels_last)
    shape = (first.shape[0], sum(t.shape[1] for t in tensors), *first.shape[2:])
    out = torch.empty(
        shape, dtype=first.dtype, device=first.device, memory_format=torch.channels_last
    )
    return torch.cat(tuple(tensors), dim=1, out=out)


class PointwiseConv2d(nn.Conv2d):
    """A 1x1 ``nn.Conv2d`` (same parameters) computed as a matrix product over the pixels.

    Output is stored channels-last; a channels-last input needs no copy. From
    ``ONEDNN_MIN_CHANNELS`` input channels the product runs in oneDNN (1.3-1.9x faster there,
    slower for narrower inputs).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:  # [N, C_in, H, W] -> [N, C_out, H, W]
        pixels = x.permute(0, 2, 3, 1)
        if self.in_channels >= ONEDNN_MIN_CHANNELS and _onednn_inference(x):
            out = onednn_linear(pixels, self.weight.flatten(1), self.bias)
        else:
            out = F.linear(pixels, self.weight.flatten(1), self.bias)
        return out.permute(0, 3, 1, 2)

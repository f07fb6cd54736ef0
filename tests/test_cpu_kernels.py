"""The CPU fast paths compute what the default layers compute, with the same parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dsviewer.model.encoder.common import cpu_kernels
from dsviewer.model.encoder.common.cpu_kernels import (
    Linear,
    PointwiseConv2d,
    cat_nhwc,
    linear_gelu,
    nhwc,
)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(7, 5), (2, 3, 5), (2, 3, 4, 5), (2, 3000, 5)])
def test_linear_matches_the_default(bias, shape):
    layer = Linear(5, 11, bias=bias)
    x = torch.randn(shape)
    x_strided = torch.randn(*shape[:-1], 10)[..., ::2]  # a view with a stride, as oneDNN gets it
    with torch.inference_mode():
        fast, fast_strided = layer(x), layer(x_strided)
    expected = F.linear(x, layer.weight, layer.bias)  # autograd on: the default path
    assert fast.shape == (*shape[:-1], 11)
    torch.testing.assert_close(fast, expected, rtol=1e-5, atol=1e-6)
    expected = F.linear(x_strided, layer.weight, layer.bias)
    torch.testing.assert_close(fast_strided, expected, rtol=1e-5, atol=1e-6)
    assert set(layer.state_dict()) == set(nn.Linear(5, 11, bias=bias).state_dict())


def test_linear_gelu_is_gelu_of_the_product():
    layer = Linear(16, 24)
    x = torch.randn(3, 50, 16)
    with torch.inference_mode():
        fused = linear_gelu(layer, x)
    expected = F.gelu(F.linear(x, layer.weight, layer.bias))  # exact (erf) GELU, default path
    torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("in_channels", [6, cpu_kernels.ONEDNN_MIN_CHANNELS])
def test_pointwise_conv_matches_conv2d(in_channels):
    layer = PointwiseConv2d(in_channels, 4)
    reference = nn.Conv2d(in_channels, 4, 1)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, in_channels, 5, 7)
    with torch.inference_mode():
        for inputs in (x, nhwc(x)):
            out = layer(inputs)
            torch.testing.assert_close(out, reference(x), rtol=1e-5, atol=1e-6)
            assert out.is_contiguous(memory_format=torch.channels_last)


def test_nhwc_and_cat_nhwc_keep_values_and_shape():
    x = torch.randn(2, 3, 4, 5)
    y = nhwc(x)
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y, x)
    one_channel = torch.randn(2, 1, 4, 5)
    joined = cat_nhwc((y, one_channel, x))
    assert joined.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(joined, torch.cat((x, one_channel, x), dim=1))

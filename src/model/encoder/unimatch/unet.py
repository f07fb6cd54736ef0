"""The 2-D UNet of the depth regressor, with attention jointly over the tokens of all views.

This is the path of the latent-diffusion UNet that DepthSplat uses (no time embedding,
pre-norm residual blocks, GroupNorm with 8 groups, strided-conv downsampling, nearest
upsampling + conv), with the checkpoint's parameter names:
``input_blocks.<i>.<j>``, ``middle_block.{0,2}``, ``output_blocks.<i>.<j>``, ``out.{0,2}``.

Inputs are [B*V, C, h, w], view-major within each batch element; the attention blocks
regroup the V views of an element and attend over all V*h'*w' tokens together.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(8 if channels % 8 == 0 else 4, channels)


class ResBlock(nn.Module):
    """GN-SiLU-conv twice, plus a skip (1x1 conv when the channel count changes)."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.out_layers = nn.Sequential(
            group_norm(out_channels),
            nn.SiLU(),
            nn.Identity(),  # dropout slot (p = 0); keeps the checkpoint index of the conv
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection: nn.Module = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.skip_connection(x) + self.out_layers(self.in_layers(x))


class CrossViewAttention(nn.Module):
    """Pre-norm multi-head self-attention over the tokens of all views of a batch element.

    The fused qkv projection is laid out per head as (q, k, v) blocks of ``head_channels``.
    """

    def __init__(self, channels: int, head_channels: int = 32) -> None:
        super().__init__()
        if channels % head_channels:
            raise ValueError(
                f"UNet attention: {channels} channels not divisible by {head_channels}."
            )
        self.num_heads = channels // head_channels
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor, num_views: int) -> Tensor:
        """x: [B*V, C, h, w] -> same shape."""
        bv, c, h, w = x.shape
        b, length = bv // num_views, h * w
        tokens = x.reshape(bv, c, length)
        qkv = self.qkv(self.norm(tokens))  # [B*V, 3C, L]
        # [B*V, heads*3*ch, L] -> [B, heads, 3, ch, V*L] -> q, k, v as [B, heads, V*L, ch]
        ch = c // self.num_heads
        qkv = qkv.view(b, num_views, self.num_heads, 3, ch, length).permute(0, 2, 3, 1, 5, 4)
        qkv = qkv.reshape(b, self.num_heads, 3, num_views * length, ch)
        out = F.scaled_dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        # [B, heads, V*L, ch] -> [B*V, C, L]
        out = out.view(b, self.num_heads, num_views, length, ch).permute(0, 2, 1, 4, 3)
        out = self.proj_out(out.reshape(bv, c, length))
        return (tokens + out).reshape(bv, c, h, w)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class UNetStage(nn.Sequential):
    """One input/output block: its modules in order; attention also gets the view count."""

    def forward(self, x: Tensor, num_views: int) -> Tensor:  # type: ignore[override]
        for module in self:
            x = module(x, num_views) if isinstance(module, CrossViewAttention) else module(x)
        return x


class UNetModel(nn.Module):
    """UNet with ``len(channel_mult)`` levels (``len - 1`` stride-2 steps).

    Args:
        channels: input, base and output channels.
        channel_mult: channel multiplier per level.
        attention_resolutions: downsampling factors (1, 2, 4, ...) that get cross-view attention.
        num_res_blocks: residual blocks per level on the way down (one more on the way up).
        head_channels: channels per attention head.
    """

    def __init__(
        self,
        channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 1),
        attention_resolutions: Sequence[int] = (4,),
        num_res_blocks: int = 1,
        head_channels: int = 32,
    ) -> None:
        super().__init__()
        self.input_blocks = nn.ModuleList([UNetStage(nn.Conv2d(channels, channels, 3, padding=1))])
        skip_channels = [channels]
        ch, ds = channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, mult * channels)]
                ch = mult * channels
                if ds in attention_resolutions:
                    layers.append(CrossViewAttention(ch, head_channels))
                self.input_blocks.append(UNetStage(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(UNetStage(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2
        # index 1 is an empty slot in the checkpoint layout
        self.middle_block = nn.Sequential(ResBlock(ch, ch), nn.Identity(), ResBlock(ch, ch))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), channels * mult)]
                ch = channels * mult
                if ds in attention_resolutions:
                    layers.append(CrossViewAttention(ch, head_channels))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(UNetStage(*layers))
        self.out = nn.Sequential(
            group_norm(ch), nn.SiLU(), nn.Conv2d(channels, channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, x: Tensor, num_views: int) -> Tensor:
        """x: [B*V, C, h, w] (h, w divisible by 2^(levels-1)) -> [B*V, C, h, w]."""
        skips = []
        for block in self.input_blocks:
            x = block(x, num_views)
            skips.append(x)
        x = self.middle_block(x)
        for block in self.output_blocks:
            x = block(torch.cat((x, skips.pop()), dim=1), num_views)
        return self.out(x)

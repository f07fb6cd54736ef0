"""Sine position encoding (DETR style) added to the CNN features before the Transformer."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sine_position_encoding(
    height: int, width: int, channels: int, device: torch.device | None = None
) -> Tensor:
    """[1, channels, height, width] encoding: channels/2 for y then channels/2 for x.

    Positions 1..n are normalized to (0, 2*pi] per axis; each half interleaves sin (even
    frequencies) and cos (odd), with frequencies 10000^(2*(i//2)/(channels/2)).
    """
    num_feats = channels // 2
    eps = 1e-6
    y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    y = y / (y[-1:] + eps) * (2 * math.pi)
    x = x / (x[-1:] + eps) * (2 * math.pi)
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = 10000 ** (2 * (dim_t // 2) / num_feats)

    def encode(positions: Tensor) -> Tensor:  # [n] -> [n, num_feats]
        angles = positions[:, None] / dim_t
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, num_feats)
    pos_x = encode(x)[None, :, :].expand(height, width, num_feats)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).unsqueeze(0)


def add_windowed_position(features: Tensor, num_splits: int) -> Tensor:
    """Add the encoding of one attention window to each of the num_splits^2 windows.

    features: [N, C, H, W] with H and W divisible by num_splits. Returns the same shape.
    """
    _, channels, height, width = features.shape
    if height % num_splits or width % num_splits:
        raise ValueError(
            f"feature map {height}x{width} must be divisible by the attention split {num_splits}."
        )
    window = sine_position_encoding(
        height // num_splits, width // num_splits, channels, features.device
    )
    return features + window.to(features.dtype).repeat(1, 1, num_splits, num_splits)

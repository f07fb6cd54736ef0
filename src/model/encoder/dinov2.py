"""A local DINOv2 vision transformer (ViT-S/B/L, patch 14), the monocular branch of DepthSplat.

Only what DepthSplat uses is built: no register tokens, no mask token, MLP feed-forward,
LayerScale, no drop-path. Parameter names match the released checkpoints
(``pretrained.blocks.<i>.attn.qkv.weight``, ``pretrained.blocks.<i>.ls1.gamma``, ...).
Nothing is downloaded: weights come from a state dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common.cpu_kernels import Linear, linear_gelu


@dataclass(frozen=True)
class ViTConfig:
    """Size of a DINOv2 ViT and which blocks DepthSplat taps."""

    embed_dim: int = 384
    depth: int = 12
    num_heads: int = 6
    tapped_layers: tuple[int, ...] = (2, 5, 8, 11)
    patch_size: int = 14
    # The learned position grid covers img_size / patch_size patches per side (37 for 518).
    img_size: int = 518
    mlp_ratio: float = 4.0


VIT_PRESETS: dict[str, ViTConfig] = {
    "vits": ViTConfig(embed_dim=384, depth=12, num_heads=6, tapped_layers=(2, 5, 8, 11)),
    "vitb": ViTConfig(embed_dim=768, depth=12, num_heads=12, tapped_layers=(2, 5, 8, 11)),
    "vitl": ViTConfig(embed_dim=1024, depth=24, num_heads=16, tapped_layers=(4, 11, 17, 23)),
}


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: [N, 3, H, W] -> [N, H/p * W/p, C] (row-major)."""

    def __init__(self, patch_size: int, embed_dim: int, in_channels: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (SDPA kernel)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = Linear(dim, dim * 3)
        self.proj = Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # [N, L, C]
        n, length, dim = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, dim // self.num_heads)
        q, k, v = (t.transpose(1, 2) for t in qkv.unbind(2))  # [N, heads, L, C/heads]
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, length, dim))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden_dim)
        self.fc2 = Linear(hidden_dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # fc2(GELU(fc1(x)))
        return self.fc2(linear_gelu(self.fc1, x))


class LayerScale(nn.Module):
    """Per-channel learned scale of a residual branch."""

    def __init__(self, dim: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init_value))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """DINOv2 backbone; :meth:`intermediate_maps` is the only entry point DepthSplat needs."""

    def __init__(self, config: ViTConfig = VIT_PRESETS["vits"]) -> None:
        super().__init__()
        if max(config.tapped_layers) >= config.depth:
            raise ValueError(
                f"ViT tapped layers {config.tapped_layers} must all be below depth {config.depth}."
            )
        self.config = config
        dim = config.embed_dim
        grid = config.img_size // config.patch_size
        self.patch_embed = PatchEmbed(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def position_embedding(self, rows: int, cols: int) -> Tensor:
        """Position embedding for a rows x cols patch grid, cls first: [1, 1 + rows*cols, C].

        The stored square grid is resized bicubically with a scale factor of
        (n + 0.1) / grid per axis (not a target size) and no antialiasing, as DINOv2 does,
        so the interpolation weights match the official model exactly.
        """
        pos = self.pos_embed
        grid = round((pos.shape[1] - 1) ** 0.5)
        if rows == grid and cols == grid:
            return pos
        dim = pos.shape[-1]
        patch_pos = pos[:, 1:].reshape(1, grid, grid, dim).permute(0, 3, 1, 2)
        offset = 0.1
        patch_pos = F.interpolate(
            patch_pos,
            scale_factor=((rows + offset) / grid, (cols + offset) / grid),
            mode="bicubic",
            antialias=False,
        )
        assert patch_pos.shape[-2:] == (rows, cols)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)
        return torch.cat((pos[:, :1], patch_pos), dim=1)

    def intermediate_maps(self, images: Tensor) -> list[Tensor]:
        """Final-LayerNorm'ed patch tokens of the tapped blocks, as feature maps.

        Args:
            images: [N, 3, H, W] with H and W multiples of the patch size.
        Returns:
            one [N, C, H/14, W/14] map per tapped layer (cls token dropped), in tap order.
        """
        n, _, height, width = images.shape
        p = self.config.patch_size
        if height % p or width % p:
            raise ValueError(f"ViT input {height}x{width} must be a multiple of {p} per side.")
        rows, cols = height // p, width // p
        tokens = self.patch_embed(images)
        tokens = torch.cat((self.cls_token.expand(n, -1, -1), tokens), dim=1)
        tokens = tokens + self.position_embedding(rows, cols)
        taps = set(self.config.tapped_layers)
        maps = []
        for index, block in enumerate(self.blocks[: max(taps) + 1]):
            tokens = block(tokens)
            if index in taps:
                patch_tokens = self.norm(tokens)[:, 1:]  # [N, rows*cols, C]
                maps.append(
                    patch_tokens.reshape(n, rows, cols, -1).permute(0, 3, 1, 2).contiguous()
                )
        return maps

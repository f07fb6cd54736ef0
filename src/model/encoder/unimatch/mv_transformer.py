"""Multi-view feature Transformer: windowed self-attention, then cross-attention to other views.

Each of the ``num_layers`` blocks runs self-attention inside each of the ``num_splits^2``
windows of a view (Swin style; odd blocks shift the windows by half a window and mask
the wrapped regions), then cross-attention from a view's window to the same window of its
source views, followed by an FFN. Source views are all other views, or, with a
nearest-camera matrix, its listed nearest views.

Layouts: features are [B, V, C, h, w] at the API; inside, tokens are channel-last
[B*V, h, w, C] (view-major within a batch element) so that projections run once per view.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common.cpu_kernels import Linear, linear_gelu


def source_view_indices(
    batch: int, num_views: int, nn_matrix: Tensor | None, device: torch.device
) -> Tensor:
    """Indices of the source views of every view: [B, V, M].

    Without a nearest-camera matrix, view i uses all other views in increasing order
    (M = V-1). With ``nn_matrix`` [B, V, K] (column 0 is the view itself), it uses
    columns 1..K-1 in that order (M = K-1); the order matters for the attention masks below.
    """
    if nn_matrix is not None:
        return nn_matrix[:, :, 1:].to(device=device, dtype=torch.long)
    views = torch.arange(num_views, device=device)
    others = torch.stack([torch.cat((views[:i], views[i + 1 :])) for i in range(num_views)])
    return others.unsqueeze(0).expand(batch, -1, -1)


def gather_views(x: Tensor, batch: int, sources: Tensor) -> Tensor:
    """Per-view source tensors: x [B*V, ...] -> [B*V, M, ...] following sources [B, V, M]."""
    num_views = sources.shape[1]
    offsets = torch.arange(batch, device=x.device).view(batch, 1, 1) * num_views
    return x[(sources + offsets).reshape(batch * num_views, -1)]


def shifted_window_mask(height: int, width: int, num_splits: int, device: torch.device) -> Tensor:
    """Additive mask for shifted windows: [K*K, L, L], L = (h/K)*(w/K), values 0 or -100.

    After rolling by half a window, the last window row/column mixes pixels from three
    bands per axis; tokens in different bands must not attend to each other.
    """
    win_h, win_w = height // num_splits, width // num_splits
    shift_h, shift_w = win_h // 2, win_w // 2

    def bands(size: int, win: int, shift: int) -> Tensor:
        label = torch.zeros(size, device=device)
        label[size - win : size - shift] = 1
        label[size - shift :] = 2
        return label

    labels = bands(height, win_h, shift_h)[:, None] * 3 + bands(width, win_w, shift_w)[None, :]
    windows = split_windows(labels[None, :, :, None], num_splits).reshape(-1, win_h * win_w)
    diff = windows[:, None, :] - windows[:, :, None]
    return torch.where(diff != 0, -100.0, 0.0)


def expand_shift_mask(shift_mask: Tensor, num_views: int, num_heads: int) -> Tensor:
    """[K*K, L, L] window mask -> [1, K*K*heads, L, L*M] for :func:`window_attention`.

    The mask is tiled M times along the key axis, so key j gets mask column j mod L. For
    M > 1 this pairs keys with the mask columns of other tokens (keys are token-major);
    the released models were trained this way, so it is reproduced exactly. SDPA broadcasts
    it over the batch on its fast CPU kernel, with the results of a contiguous per-row copy
    (which would take N times the memory: 0.5 GB for base with 6 views at 448x768).
    """
    mask = shift_mask.repeat(1, 1, num_views).repeat_interleave(num_heads, dim=0)
    return mask.unsqueeze(0)


def split_windows(x: Tensor, num_splits: int) -> Tensor:
    """[N, H, W, C] -> [N*K*K, H/K, W/K, C], windows ordered (n, row, col)."""
    n, height, width, channels = x.shape
    k = num_splits
    x = x.view(n, k, height // k, k, width // k, channels).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(n * k * k, height // k, width // k, channels)


def window_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    num_splits: int,
    num_heads: int,
    attn_mask: Tensor | None,
) -> Tensor:
    """Attention within windows, keys and values from M views at once.

    Args:
        query: [N, h, w, C].
        key, value: [N, M, h, w, C]; a query token attends to every token of the same window
            in all M views (one softmax over the L*M keys).
        attn_mask: [1, K*K*heads, L, L*M] from :func:`expand_shift_mask` when the inputs are
            already rolled by half a window (shifted windows), else None.
    Returns:
        [N, h, w, C].

    Keys are ordered token-major then view within a window (key j = token j // M of view
    j mod M); see :func:`expand_shift_mask` for how the mask lines up with them.
    """
    n, height, width, channels = query.shape
    m = key.shape[1]
    k = num_splits
    win_h, win_w = height // k, width // k
    length = win_h * win_w
    head_dim = channels // num_heads

    def windows(x: Tensor) -> Tensor:  # [N, M, h, w, C] -> [N, KK*heads, L*M, d], one copy
        x = x.view(n, m, k, win_h, k, win_w, num_heads, head_dim)
        x = x.permute(0, 2, 4, 6, 3, 5, 1, 7)  # [N, K, K, heads, win_h, win_w, M, d]
        return x.reshape(n, k * k * num_heads, length * m, head_dim)

    q = query.view(n, k, win_h, k, win_w, num_heads, head_dim).permute(0, 1, 3, 5, 2, 4, 6)
    q = q.reshape(n, k * k * num_heads, length, head_dim)
    out = F.scaled_dot_product_attention(q, windows(key), windows(value), attn_mask=attn_mask)
    out = out.view(n, k, k, num_heads, win_h, win_w, head_dim).permute(0, 1, 4, 2, 5, 3, 6)
    return out.reshape(n, height, width, channels)


class TransformerLayer(nn.Module):
    """Projected window attention, merge + LayerNorm, optional FFN on [source, message]."""

    def __init__(self, d_model: int, num_heads: int, with_ffn: bool, ffn_expansion: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = Linear(d_model, d_model, bias=False)
        self.k_proj = Linear(d_model, d_model, bias=False)
        self.v_proj = Linear(d_model, d_model, bias=False)
        self.merge = Linear(d_model, d_model, bias=False)
        self.norm1 = nn.LayerNorm(d_model)
        self.mlp: nn.Sequential | None = None
        if with_ffn:
            hidden = 2 * d_model * ffn_expansion
            self.mlp = nn.Sequential(
                Linear(2 * d_model, hidden, bias=False),
                nn.GELU(),
                Linear(hidden, d_model, bias=False),
            )
            self.norm2 = nn.LayerNorm(d_model)

    def forward(
        self,
        source: Tensor,
        target: Tensor,
        batch: int,
        sources: Tensor | None,
        num_splits: int,
        attn_mask: Tensor | None,
    ) -> Tensor:
        """Queries from source [B*V, h, w, C]; keys/values from target [B*V, h, w, C].

        sources: [B, V, M] views of ``target`` to attend to (cross-attention), or None to
        attend to the same view (self-attention).
        """
        query = self.q_proj(source)
        key, value = self.k_proj(target), self.v_proj(target)
        if sources is None:
            key, value = key.unsqueeze(1), value.unsqueeze(1)  # [B*V, 1, h, w, C]
        else:
            key, value = gather_views(key, batch, sources), gather_views(value, batch, sources)
        message = window_attention(query, key, value, num_splits, self.num_heads, attn_mask)
        message = self.norm1(self.merge(message))
        if self.mlp is not None:
            hidden = linear_gelu(self.mlp[0], torch.cat((source, message), dim=-1))
            message = self.norm2(self.mlp[2](hidden))  # mlp[1] is that GELU
        return source + message


class TransformerBlock(nn.Module):
    """Self-attention (no FFN), then cross-attention with FFN.

    The cross-attention keys and values are the other views' features as they entered the
    block (before this block's self-attention), as in the released models.
    """

    def __init__(self, d_model: int, num_heads: int, ffn_expansion: int, shifted: bool) -> None:
        super().__init__()
        self.shifted = shifted
        self.self_attn = TransformerLayer(d_model, num_heads, False, ffn_expansion)
        self.cross_attn_ffn = TransformerLayer(d_model, num_heads, True, ffn_expansion)

    def forward(
        self,
        x: Tensor,
        batch: int,
        sources: Tensor,
        num_splits: int,
        masks: tuple[Tensor, Tensor] | None,
    ) -> Tensor:
        """x: [B*V, h, w, C]; masks: (self, cross) shift masks, used by shifted blocks.

        A shifted block rolls its input by half a window once, attends in the rolled frame
        (every other operation is per token) and rolls back.
        """
        if not (self.shifted and masks is not None):
            attended = self.self_attn(x, x, batch, None, num_splits, None)
            return self.cross_attn_ffn(attended, x, batch, sources, num_splits, None)
        shift = (x.shape[1] // num_splits // 2, x.shape[2] // num_splits // 2)
        x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        attended = self.self_attn(x, x, batch, None, num_splits, masks[0])
        x = self.cross_attn_ffn(attended, x, batch, sources, num_splits, masks[1])
        return torch.roll(x, shifts=shift, dims=(1, 2))


class MultiViewFeatureTransformer(nn.Module):
    """Stack of :class:`TransformerBlock`; odd blocks use shifted windows."""

    def __init__(
        self,
        num_layers: int = 6,
        d_model: int = 128,
        num_heads: int = 1,
        ffn_expansion: int = 4,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(
            TransformerBlock(d_model, num_heads, ffn_expansion, shifted=i % 2 == 1)
            for i in range(num_layers)
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(
        self, features: Tensor, num_splits: int = 2, nn_matrix: Tensor | None = None
    ) -> Tensor:
        """features: [B, V, C, h, w] (position already added); nn_matrix: [B, V, K] or None.

        Returns [B, V, C, h, w].
        """
        b, v, c, h, w = features.shape
        if c != self.d_model:
            raise ValueError(f"transformer expects {self.d_model} channels, got {c}.")
        if h % num_splits or w % num_splits:
            raise ValueError(f"feature map {h}x{w} is not divisible by the split {num_splits}.")
        sources = source_view_indices(b, v, nn_matrix, features.device)
        masks = None
        if num_splits > 1 and len(self.layers) > 1:
            window_mask = shifted_window_mask(h, w, num_splits, features.device).to(features.dtype)
            heads = self.layers[0].self_attn.num_heads
            masks = (
                expand_shift_mask(window_mask, 1, heads),
                expand_shift_mask(window_mask, sources.shape[-1], heads),
            )
        x = features.reshape(b * v, c, h, w).permute(0, 2, 3, 1)  # [B*V, h, w, C]
        for layer in self.layers:
            x = layer(x, b, sources, num_splits, masks)
        return x.permute(0, 3, 1, 2).reshape(b, v, c, h, w).contiguous()

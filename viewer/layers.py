"""Per-pixel geometry derived from one prediction: the data every view layer and export reads.

Everything here is derived from ``(SceneViews, Prediction)`` by :func:`build_layers`; nothing is
recomputed by the consumers. All maps are dense ``[V, H, W, ...]`` over the context views so that
per-view toggles and filters are plain indexing; flattening follows ``(v, h, w)`` order, the same
order as the pixel-aligned Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from src.dataset.types import SceneViews
from src.geometry.projection import unproject_depth
from src.model.types import Gaussians, Prediction


@dataclass
class Layers:
    rgb: Tensor  # [V, H, W, 3] uint8, the context images
    coarse_depth: Tensor  # [V, H, W] metric, 1 / clamp(coarse_inv_depth, 1/far, 1/near)
    final_depth: Tensor  # [V, H, W] metric, the model's output
    residual_inv: Tensor  # [V, H, W] mono residual in inverse depth, as the model adds it
    residual_metric: Tensor  # [V, H, W] final_depth - coarse_depth
    confidence: Tensor  # [V, H, W] last-scale max match probability, nearest-upsampled
    coarse_points: Tensor  # [V, H, W, 3] world points of the coarse depth
    final_points: Tensor  # [V, H, W, 3] world points of the final depth
    near: Tensor  # [V]
    far: Tensor  # [V]
    gt_depth: Tensor | None = None  # [V, H, W] metric, 0 where unknown
    gt_points: Tensor | None = None  # [V, H, W, 3]
    gaussians: Gaussians | None = None  # B = 1, N = V * H * W in (v, h, w) order

    @property
    def num_views(self) -> int:
        return int(self.final_depth.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        return int(self.final_depth.shape[1]), int(self.final_depth.shape[2])

    @property
    def gt_valid(self) -> Tensor | None:
        """``[V, H, W]`` bool: pixels with a known GT depth."""
        return None if self.gt_depth is None else self.gt_depth > 0

    def pixel_grid(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(view, v, u)`` index maps, each ``[V, H, W]`` int64."""
        V, H, W = self.final_depth.shape
        return torch.meshgrid(torch.arange(V), torch.arange(H), torch.arange(W), indexing="ij")


def build_layers(scene: SceneViews, prediction: Prediction) -> Layers:
    """Unproject the coarse, final and GT depths of every context view into world points."""
    context = scene.context
    K, T_world_cam = context.intrinsics.float(), context.extrinsics.float()
    near = prediction.near.float().cpu()
    far = prediction.far.float().cpu()
    inv_low = (1.0 / far)[:, None, None]
    inv_high = (1.0 / near)[:, None, None]

    coarse_inv = prediction.coarse_inv_depth.float().cpu()
    coarse_depth = 1.0 / coarse_inv.clamp(min=inv_low, max=inv_high)
    final_depth = prediction.final_depth.float().cpu()
    H, W = final_depth.shape[-2:]
    # Nearest upsampling, as the official encoder does before the Gaussian head.
    confidence = F.interpolate(prediction.match_prob.float().cpu()[:, None], size=(H, W), mode="nearest")[:, 0]

    gt_points = None
    gt_depth = context.depth
    if gt_depth is not None:
        gt_depth = gt_depth.float()
        gt_points = unproject_depth(gt_depth, K, T_world_cam)

    rgb = (context.image.float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
    gaussians = None if prediction.gaussians is None else _on_cpu(prediction.gaussians)
    return Layers(
        rgb=rgb.contiguous(),
        coarse_depth=coarse_depth,
        final_depth=final_depth,
        residual_inv=prediction.mono_inv_residual.float().cpu(),
        residual_metric=final_depth - coarse_depth,
        confidence=confidence,
        coarse_points=unproject_depth(coarse_depth, K, T_world_cam),
        final_points=unproject_depth(final_depth, K, T_world_cam),
        near=near,
        far=far,
        gt_depth=gt_depth,
        gt_points=gt_points,
        gaussians=gaussians,
    )


def _on_cpu(gaussians: Gaussians) -> Gaussians:
    """The Gaussians as float32 CPU tensors, like every other map here (the model may be on CUDA)."""
    moved = {
        f.name: getattr(gaussians, f.name).detach().float().cpu()
        for f in fields(gaussians)
        if getattr(gaussians, f.name) is not None
    }
    return replace(gaussians, **moved)

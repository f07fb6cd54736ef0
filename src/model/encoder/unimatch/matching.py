"""Plane-sweep warping and the dot-product cost volume of the multi-view depth branch.

Conventions (those of the released model, kept exactly): intrinsics are in pixels of the
feature map, pixel (x, y) sits at integer coordinates 0..w-1 / 0..h-1, the reference
view's intrinsics are used for both back-projection and projection into the source view,
and extrinsics are camera-to-world.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def relative_poses(extrinsics_ref: Tensor, extrinsics_src: Tensor) -> Tensor:
    """Reference-camera to source-camera transforms: [N, 4, 4], [N, M, 4, 4] -> [N, M, 4, 4]."""
    return torch.matmul(torch.inverse(extrinsics_src), extrinsics_ref.unsqueeze(1))


def warp_to_reference(
    source_features: Tensor,
    intrinsics: Tensor,
    pose: Tensor,
    depth: Tensor,
    min_z: float = 1e-3,
) -> Tensor:
    """Sample source features at the projections of reference pixels at candidate depths.

    Args:
        source_features: [N, C, h, w] (one source view per row).
        intrinsics: [N, 3, 3] pixel intrinsics of the reference view at this resolution.
        pose: [N, 4, 4] reference-to-source transform.
        depth: [N, D, h, w] candidate metric depths per reference pixel.
    Returns:
        [N, C, D, h, w]; zero where the projection falls outside the source image.
    """
    n, d, h, w = depth.shape
    c = source_features.shape[1]
    with torch.no_grad():
        ys, xs = torch.meshgrid(
            torch.arange(h, device=depth.device),
            torch.arange(w, device=depth.device),
            indexing="ij",
        )
        pixels = torch.stack((xs, ys, torch.ones_like(xs)), dim=0).float().reshape(1, 3, h * w)
        rays = torch.inverse(intrinsics).bmm(pixels.expand(n, -1, -1))  # [N, 3, h*w]
        rays = torch.bmm(pose[:, :3, :3], rays)
        points = rays.unsqueeze(2) * depth.view(n, 1, d, h * w) + pose[:, :3, 3:].unsqueeze(-1)
        projected = torch.bmm(intrinsics, points.view(n, 3, -1)).view(n, 3, d, h * w)
        xy = projected[:, :2] / projected[:, 2:].clamp(min=min_z)  # [N, 2, D, h*w]
        grid = torch.stack((2 * xy[:, 0] / (w - 1) - 1, 2 * xy[:, 1] / (h - 1) - 1), dim=-1)
    warped = F.grid_sample(
        source_features,
        grid.view(n, d * h, w, 2),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=True,
    )
    return warped.view(n, c, d, h, w)


def cost_volume(
    reference: Tensor,
    sources: Tensor,
    intrinsics: Tensor,
    poses: Tensor,
    inv_depth_candidates: Tensor,
    max_chunk_bytes: int = 1 << 28,
) -> Tensor:
    """Correlation of reference features with warped source features, averaged over sources.

    Args:
        reference: [N, C, h, w] reference-view features (N = B*V, view-major).
        sources: [N, M, C, h, w] features of the M source views of each reference view.
        intrinsics: [N, 3, 3] pixel intrinsics of the reference view at this resolution.
        poses: [N, M, 4, 4] reference-to-source transforms.
        inv_depth_candidates: [N, D, h, w] inverse-depth candidates.
        max_chunk_bytes: bound on the warped-feature buffer; candidates are processed in
            chunks (every candidate is independent, so the result does not change).
    Returns:
        [N, D, h, w]: sum_c(ref * warped) / sqrt(C), mean over the M sources.
    """
    n, m, c, h, w = sources.shape
    d = inv_depth_candidates.shape[1]
    per_candidate = n * m * c * h * w * sources.element_size()
    chunk = max(1, min(d, max_chunk_bytes // max(per_candidate, 1)))
    flat_sources = sources.reshape(n * m, c, h, w)
    flat_intrinsics = intrinsics.unsqueeze(1).expand(n, m, 3, 3).reshape(n * m, 3, 3)
    flat_poses = poses.reshape(n * m, 4, 4)
    ref = reference.view(n, 1, c, 1, h, w)
    volume = reference.new_empty(n, d, h, w)
    for start in range(0, d, chunk):
        inv = inv_depth_candidates[:, start : start + chunk]
        dc = inv.shape[1]
        depth = (1.0 / inv).unsqueeze(1).expand(n, m, dc, h, w).reshape(n * m, dc, h, w)
        warped = warp_to_reference(flat_sources, flat_intrinsics, flat_poses, depth)
        correlation = (ref * warped.view(n, m, c, dc, h, w)).sum(2) / (c**0.5)  # [N, M, dc, h, w]
        volume[:, start : start + dc] = correlation.mean(1)
    return volume

"""Multi-view consistency: each view's points checked against the other views' depth maps.

Each context view's points are projected into every *other* context view. Where the projection
lands inside that view (all bilinear neighbours valid) and in front of it, the other view's depth
there is looked up and compared with the point's own z-depth in that camera:
``rel_error = |z_point - z_lookup| / z_lookup``. The bilinear lookup interpolates *inverse*
depth, which is exact on planes; pixels on a depth edge of the other view are not used for
lookups, so foreground and background are never blended. A pixel's error is the mean over the
other views that see it; it is *inconsistent* when that error exceeds the threshold. The sign
tells *in front* (the point floats in space the other view sees through: a free-space violation)
from *behind* (occluded in the other view, or too far). By default occlusions count as
disagreements; ``occlusions="skip"`` leaves "behind" projections out, so that wide baselines
with occluders are not blamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from dsviewer.geometry.projection import project_points
from dsviewer.viewer.analysis.flags import depth_edges

Lookup = Literal["bilinear", "nearest"]
Occlusions = Literal["count", "skip"]


@dataclass
class Consistency:
    pair_signed_error: Tensor  # [V_src, V_dst, H, W] (z_point - z_lookup) / z_lookup; NaN where
    # not checked (diagonal, outside the other view, behind it, or skipped as occluded)
    threshold: float
    occlusions: Occlusions

    @property
    def pair_rel_error(self) -> Tensor:
        """``[V_src, V_dst, H, W]`` absolute relative error per pair of views."""
        return self.pair_signed_error.abs()

    @cached_property
    def rel_error(self) -> Tensor:
        """``[V, H, W]`` mean absolute error over the other views that check the pixel."""
        return _nanmean(self.pair_rel_error, dim=1)

    @property
    def checked(self) -> Tensor:
        """``[V, H, W]`` bool: pixels checked against at least one other view."""
        return torch.isfinite(self.pair_signed_error).any(dim=1)

    @property
    def inconsistent(self) -> Tensor:
        """``[V, H, W]`` bool: checked pixels whose error exceeds the threshold."""
        return self.checked & (self.rel_error > self.threshold)

    @property
    def in_front(self) -> Tensor:
        """``[V, H, W]`` bool: in front of another view's surface (that view sees through it)."""
        return (self.pair_signed_error < -self.threshold).any(dim=1)

    @property
    def behind(self) -> Tensor:
        """``[V, H, W]`` bool: behind another view's surface (occluded there, or too far)."""
        return (self.pair_signed_error > self.threshold).any(dim=1)

    def summary(self) -> dict:
        rel_error, checked = self.rel_error, self.checked
        in_front, behind = self.in_front, self.behind

        def stats(view: int | None) -> dict:
            pick = slice(None) if view is None else view
            out = _error_stats(rel_error[pick], checked[pick], self.threshold)
            if out["checked_pixels"]:
                count = out["checked_pixels"]
                out["in_front_share"] = int(in_front[pick].sum()) / count
                out["behind_share"] = int(behind[pick].sum()) / count
            return out

        pairs = {}
        num_views = self.pair_signed_error.shape[0]
        for src in range(num_views):
            for dst in range(num_views):
                if src != dst:
                    errors = self.pair_rel_error[src, dst]
                    stats_pair = _error_stats(errors, torch.isfinite(errors), self.threshold)
                    pairs[f"{src}->{dst}"] = stats_pair
        return {
            "threshold": self.threshold,
            "occlusions": self.occlusions,
            "overall": stats(None),
            "per_view": [stats(view) for view in range(num_views)],
            "pairs": pairs,
        }


def _error_stats(errors: Tensor, checked: Tensor, threshold: float) -> dict:
    values = errors[checked].double()
    count = int(values.numel())
    if count == 0:
        return {"checked_pixels": 0, "mean_rel_error": None, "median_rel_error": None,
                "inconsistent_share": None}  # fmt: skip
    return {
        "checked_pixels": count,
        "mean_rel_error": float(values.mean()),
        "median_rel_error": float(values.median()),
        "inconsistent_share": float((values > threshold).double().mean()),
    }


def multiview_consistency(
    points: Tensor,
    depth: Tensor,
    intrinsics: Tensor,
    extrinsics: Tensor,
    *,
    threshold: float = 0.05,
    lookup: Lookup = "bilinear",
    occlusions: Occlusions = "count",
    edge_threshold: float | None = 0.1,
) -> Consistency:
    """Cross-check every view's points against the other views' depth maps.

    Args:
        points: ``[V, H, W, 3]`` world points of each view (pixel ``(v, h, w)``).
        depth: ``[V, H, W]`` the depth maps those points come from; ``<= 0`` or non-finite
            means invalid (never checked, never looked up).
        intrinsics: ``[V, 3, 3]`` normalized. extrinsics: ``[V, 4, 4]`` ``T_world_cam``.
        threshold: relative error above which a pixel is inconsistent.
        lookup: ``bilinear`` (inverse depth, needs all four neighbours valid) or ``nearest``.
        occlusions: ``count`` compares every projection; ``skip`` leaves out projections that
            land more than ``threshold`` behind the other view's surface (they may be occluded
            there), so only free-space violations remain. A point that is too far is then still
            caught from the other side: the other view's points lie in front of it.
        edge_threshold: pixels on a depth edge of the *other* view (see :func:`depth_edges`)
            are not used for lookups, so a lookup never blends foreground and background;
            None uses every valid pixel.

    Returns:
        :class:`Consistency` (see the module docstring for the definition).
    """
    num_views, height, width = depth.shape
    assert points.shape == (num_views, height, width, 3), points.shape
    depth = depth.float()
    valid = torch.isfinite(depth) & (depth > 0)  # [V, H, W]
    inv_depth = torch.where(valid, 1.0 / depth.clamp_min(1e-12), torch.zeros_like(depth))
    lookup_ok = valid
    if edge_threshold is not None:
        lookup_ok = valid & ~depth_edges(depth, edge_threshold)[0]
    flat_points = points.float().reshape(-1, 3)  # [V*H*W, 3]
    if occlusions not in ("count", "skip"):
        raise ValueError(f"unknown occlusion mode {occlusions!r}; use 'count' or 'skip'")
    pair = torch.full((num_views, num_views, height, width), float("nan"))
    for dst in range(num_views):
        coords, z_point = project_points(
            flat_points, intrinsics[dst].float(), extrinsics[dst].float()
        )  # [N, 2], [N]
        z_lookup, seen = _lookup_depth(inv_depth[dst], lookup_ok[dst], coords, lookup)
        seen = seen & (z_point > 0) & valid.reshape(-1)
        errors = (z_point - z_lookup) / z_lookup.clamp_min(1e-12)
        if occlusions == "skip":
            seen = seen & (errors <= threshold)
        errors = torch.where(seen, errors, torch.full_like(errors, float("nan")))
        pair[:, dst] = errors.reshape(num_views, height, width)
        pair[dst, dst] = float("nan")
    return Consistency(pair_signed_error=pair, threshold=threshold, occlusions=occlusions)


def _lookup_depth(
    inv_depth: Tensor, valid: Tensor, coords: Tensor, lookup: Lookup
) -> tuple[Tensor, Tensor]:
    """Depth ``[N]`` of one view at normalized coordinates ``[N, 2]``, and where it is defined."""
    grid = (coords * 2.0 - 1.0).reshape(1, 1, -1, 2)  # align_corners=False: pixel centres match
    maps = torch.stack((inv_depth, valid.float()))[None]  # [1, 2, H, W]
    if lookup == "nearest":
        sampled = F.grid_sample(maps, grid, mode="nearest", align_corners=False)[0, :, 0]
        inside = (coords >= 0).all(-1) & (coords[:, 0] < 1) & (coords[:, 1] < 1)
        seen = inside & (sampled[1] > 0.5)
        inv = sampled[0]
    elif lookup == "bilinear":
        sampled = F.grid_sample(maps, grid, mode="bilinear", align_corners=False)[0, :, 0]
        # All four neighbours valid and inside the image <=> the valid weight sums to one.
        seen = sampled[1] > 1.0 - 1e-4
        inv = sampled[0] / sampled[1].clamp_min(1e-6)
    else:
        raise ValueError(f"unknown lookup {lookup!r}; use 'bilinear' or 'nearest'")
    seen = seen & (inv > 0) & torch.isfinite(coords).all(-1)
    return 1.0 / inv.clamp_min(1e-12), seen


def _nanmean(values: Tensor, dim: int) -> Tensor:
    finite = torch.isfinite(values)
    total = torch.where(finite, values, torch.zeros_like(values)).sum(dim)
    count = finite.sum(dim)
    return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("nan")))



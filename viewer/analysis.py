"""Geometry diagnostics on :class:`~viewer.layers.Layers`: pure functions, no GUI, no files.

Every analysis gives a dense per-pixel map ``[V, H, W]`` (usable as a colour mode; ``NaN`` where
the quantity is undefined) plus summary statistics. The maps are in the frame and units of the
``Layers`` they are computed from: the exporter first moves the layers to the user's units.

Definitions (also written into ``metrics.json``):

* **Multi-view consistency.** Each context view's points are projected into every *other* context
  view. Where the projection lands inside that view (all bilinear neighbours valid) and in front
  of it, the other view's depth there is looked up and compared with the point's own z-depth in
  that camera: ``rel_error = |z_point - z_lookup| / z_lookup``. The bilinear lookup interpolates
  *inverse* depth, which is exact on planes; pixels on a depth edge of the other view are not
  used for lookups, so foreground and background are never blended. A pixel's error is the
  mean over the other views that see it; it is *inconsistent* when that error exceeds
  ``consistency_threshold``. The sign tells *in front* (the point floats in space the other
  view sees through: a free-space violation) from *behind* (the point is occluded in the other
  view, or too far). By default occlusions count as disagreements;
  ``consistency_occlusions="skip"`` leaves "behind" projections out, so that wide baselines
  with occluders are not blamed.
* **Clamp.** A depth sits at the near (far) clamp when its inverse depth equals ``1/near``
  (``1/far``) up to a relative tolerance ``clamp_rtol``.
* **Depth edges and flying pixels.** Two 4-neighbours *jump* when their depths differ by more
  than a factor ``1 + edge_threshold``. A pixel with any jump lies on a depth edge; a pixel that
  jumps to *both* neighbours along a row or a column (it belongs to neither side) is a flying
  pixel. Pixels are flagged, never removed.
* **GT metrics** on pixels with ``gt > 0``: AbsRel ``mean(|d - gt| / gt)``, RMSE
  ``sqrt(mean((d - gt)^2))``, delta ``mean(max(d / gt, gt / d) < 1.25)``. ``overall`` pools the
  pixels of all views (it is not the mean of the per-view values).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from src.geometry.projection import project_points
from src.model.types import Gaussians, Prediction
from viewer.layers import Layers

Lookup = Literal["bilinear", "nearest"]
Occlusions = Literal["count", "skip"]


@dataclass(frozen=True)
class AnalysisSettings:
    consistency_threshold: float = 0.05
    """Relative depth error above which a pixel counts as inconsistent across views."""

    consistency_lookup: Lookup = "bilinear"
    """How the other view's depth is read at a projected point."""

    consistency_occlusions: Occlusions = "count"
    """``skip``: leave out projections behind the other view's surface (possible occlusions)."""

    clamp_rtol: float = 1e-5
    """Relative tolerance on inverse depth for 'at the near/far clamp'."""

    edge_threshold: float = 0.1
    """Relative depth jump between 4-neighbours that marks a depth edge."""

    delta_threshold: float = 1.25
    """Ratio threshold of the delta accuracy metric."""


# --- multi-view consistency -----------------------------------------------------------------


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


# --- clamps, edges, flying pixels -----------------------------------------------------------


def clamp_masks(
    depth: Tensor, near: Tensor, far: Tensor, rtol: float = 1e-5
) -> tuple[Tensor, Tensor]:
    """``(at_near, at_far)``, each ``[V, H, W]`` bool, for depth ``[V, H, W]``, near/far ``[V]``.

    Compared in inverse depth, where the model clamps: ``|1/d - 1/near| <= rtol / near``.
    """
    inv = 1.0 / depth.double()
    inv_near = (1.0 / near.double())[:, None, None]
    inv_far = (1.0 / far.double())[:, None, None]
    at_near = (inv - inv_near).abs() <= rtol * inv_near
    at_far = (inv - inv_far).abs() <= rtol * inv_far
    return at_near, at_far


def depth_edges(depth: Tensor, threshold: float = 0.1) -> tuple[Tensor, Tensor]:
    """``(edge, flying)``, each ``[V, H, W]`` bool, for depth ``[V, H, W]`` (see module doc)."""
    valid = torch.isfinite(depth) & (depth > 0)
    log_depth = torch.where(valid, depth.clamp_min(1e-12).log(), torch.full_like(depth, torch.nan))
    limit = float(np.log1p(threshold))
    jump_x = (log_depth[:, :, 1:] - log_depth[:, :, :-1]).abs() > limit  # [V, H, W-1]
    jump_y = (log_depth[:, 1:, :] - log_depth[:, :-1, :]).abs() > limit  # [V, H-1, W]
    left = F.pad(jump_x, (1, 0), value=False)  # jump to the left neighbour
    right = F.pad(jump_x, (0, 1), value=False)
    up = F.pad(jump_y, (0, 0, 1, 0), value=False)
    down = F.pad(jump_y, (0, 0, 0, 1), value=False)
    edge = left | right | up | down
    flying = (left & right) | (up & down)
    return edge, flying


# --- residual vectors -----------------------------------------------------------------------


@dataclass
class ResidualSegments:
    """Coarse -> final line segments, ready for viser ``scene.add_line_segments``."""

    points: np.ndarray  # [N, 2, 3] float32, (coarse point, final point)
    colors: np.ndarray  # [N, 2, 3] uint8
    view: np.ndarray  # [N] int64
    u: np.ndarray  # [N] int64, column
    v: np.ndarray  # [N] int64, row


TOWARD_COLOR = (33, 102, 172)  # final point closer to the camera than the coarse one
AWAY_COLOR = (178, 24, 43)


def residual_segments(
    layers: Layers,
    *,
    stride: int = 4,
    max_segments: int = 20_000,
    views: list[int] | None = None,
    min_length: float = 0.0,
) -> ResidualSegments:
    """Segments from each coarse point to its final point on a regular pixel subsample.

    Every ``stride``-th pixel along rows and columns (grid offset ``stride // 2``), then evenly
    thinned to at most ``max_segments``. Segments shorter than ``min_length`` (world units) are
    dropped. Blue: the residual moved the point toward the camera; red: away from it.
    """
    num_views, height, width = layers.final_depth.shape
    selected = range(num_views) if views is None else views
    mask = torch.zeros(num_views, height, width, dtype=torch.bool)
    offset = stride // 2
    for view in selected:
        mask[view, offset::stride, offset::stride] = True
    delta = layers.final_points - layers.coarse_points  # [V, H, W, 3]
    mask &= delta.norm(dim=-1) >= min_length
    mask &= torch.isfinite(delta).all(-1)
    view_idx, row, col = torch.nonzero(mask, as_tuple=True)
    if view_idx.numel() > max_segments:
        keep = torch.linspace(0, view_idx.numel() - 1, max_segments).round().long()
        view_idx, row, col = view_idx[keep], row[keep], col[keep]
    start = layers.coarse_points[view_idx, row, col]
    end = layers.final_points[view_idx, row, col]
    toward = (layers.residual_metric[view_idx, row, col] < 0).numpy()
    colors = np.where(toward[:, None], np.array(TOWARD_COLOR), np.array(AWAY_COLOR))
    colors = np.repeat(colors[:, None, :], 2, axis=1).astype(np.uint8)
    return ResidualSegments(
        points=torch.stack((start, end), dim=1).float().numpy(),
        colors=colors,
        view=view_idx.numpy(),
        u=col.numpy(),
        v=row.numpy(),
    )


# --- Gaussians ------------------------------------------------------------------------------


def gaussian_scalar(gaussians: Gaussians, mode: Literal["opacity", "scale"]) -> Tensor:
    """Per-Gaussian scalar ``[N]`` of batch element 0 for colouring.

    ``opacity``: in [0, 1]. ``scale``: the largest standard deviation of the world covariance
    (``sqrt`` of its largest eigenvalue), in world units.
    """
    if mode == "opacity":
        return gaussians.opacities[0].float()
    if mode == "scale":
        eigenvalues = torch.linalg.eigvalsh(gaussians.covariances[0].double())  # [N, 3]
        return eigenvalues[:, -1].clamp_min(0).sqrt().float()
    raise ValueError(f"unknown Gaussian colour mode {mode!r}; use 'opacity' or 'scale'")


def gaussian_colors(
    gaussians: Gaussians,
    mode: Literal["opacity", "scale"],
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """``[N, 3]`` uint8 colours of :func:`gaussian_scalar` on the sequential colormap.

    Range: ``value_range``, else [0, 1] for opacity and the 2nd-98th percentile for scale.
    """
    from viewer.colormaps import apply_sequential

    values = gaussian_scalar(gaussians, mode).numpy()
    if value_range is None:
        finite = values[np.isfinite(values)]
        if mode == "opacity" or finite.size == 0:
            value_range = (0.0, 1.0)
        else:
            low, high = np.percentile(finite, [2.0, 98.0])
            value_range = (float(low), float(high))
    return apply_sequential(values, value_range[0], value_range[1])


def gaussian_keep_mask(gaussians: Gaussians, min_opacity: float) -> Tensor:
    """``[N]`` bool: Gaussians of batch element 0 at least as opaque as ``min_opacity``."""
    return gaussians.opacities[0] >= min_opacity


# --- GT depth -------------------------------------------------------------------------------


def depth_metrics(depth: Tensor, gt: Tensor, delta_threshold: float = 1.25) -> dict:
    """AbsRel, RMSE and delta accuracy over pixels with ``gt > 0`` (and finite ``depth > 0``)."""
    valid = (gt > 0) & torch.isfinite(depth) & (depth > 0)
    d = depth[valid].double()
    g = gt[valid].double()
    count = int(d.numel())
    if count == 0:
        return {"pixels": 0, "abs_rel": None, "rmse": None, "delta": None}
    ratio = torch.maximum(d / g, g / d)
    return {
        "pixels": count,
        "abs_rel": float(((d - g).abs() / g).mean()),
        "rmse": float(((d - g) ** 2).mean().sqrt()),
        "delta": float((ratio < delta_threshold).double().mean()),
    }


def gt_metrics(depth: Tensor, gt: Tensor, delta_threshold: float = 1.25) -> dict:
    """``{"overall": ..., "per_view": [...]}`` of :func:`depth_metrics` for ``[V, H, W]`` maps."""
    return {
        "overall": depth_metrics(depth, gt, delta_threshold),
        "per_view": [depth_metrics(depth[v], gt[v], delta_threshold) for v in range(len(depth))],
    }


def gt_error_map(depth: Tensor, gt: Tensor) -> Tensor:
    """Signed relative error ``(d - gt) / gt`` ``[V, H, W]``; NaN where GT is unknown."""
    valid = gt > 0
    return torch.where(valid, (depth - gt) / gt.clamp_min(1e-12), torch.full_like(depth, torch.nan))


# --- cost volume ----------------------------------------------------------------------------


def cost_volume_stats(prediction: Prediction) -> dict:
    """How peaked the last-scale matching softmax is, per view and overall.

    ``normalized_entropy`` is ``-sum p log p / log D`` per feature pixel: 0 for a one-hot
    match, 1 for a uniform one (no multi-view evidence).
    """
    probs = prediction.match_probs.detach().double().cpu()  # [V, D, h, w]
    num_candidates = probs.shape[1]
    entropy = -(probs * probs.clamp_min(1e-30).log()).sum(dim=1)  # [V, h, w]
    normalized = entropy / np.log(num_candidates) if num_candidates > 1 else entropy
    max_prob = probs.max(dim=1).values
    return {
        "candidates": int(num_candidates),
        "feature_shape": [int(probs.shape[2]), int(probs.shape[3])],
        "mean_max_probability": float(max_prob.mean()),
        "mean_normalized_entropy": float(normalized.mean()),
        "per_view_mean_max_probability": [float(m.mean()) for m in max_prob],
        "per_view_mean_normalized_entropy": [float(e.mean()) for e in normalized],
    }


# --- histograms and summaries ---------------------------------------------------------------


def histogram(
    values: Tensor, bins: int = 64, value_range: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(edges [bins + 1], counts [bins])`` of the finite entries of ``values``.

    Without ``value_range`` the 1st-99th percentile range is used, so outliers do not squash
    the plot; values outside the range are not counted.
    """
    flat = values.detach().reshape(-1).double().numpy()
    flat = flat[np.isfinite(flat)]
    if value_range is None:
        if flat.size == 0:
            value_range = (0.0, 1.0)
        else:
            low, high = np.percentile(flat, [1.0, 99.0])
            value_range = (float(low), float(high) if high > low else float(low) + 1e-6)
    counts, edges = np.histogram(flat, bins=bins, range=value_range)
    return edges, counts


def value_stats(values: Tensor) -> dict:
    """Mean, std, percentiles (1, 50, 99) and count of the finite entries of ``values``."""
    flat = values.detach().reshape(-1).double()
    flat = flat[torch.isfinite(flat)]
    if flat.numel() == 0:
        return {"count": 0}
    p1, p50, p99 = np.percentile(flat.numpy(), [1.0, 50.0, 99.0])
    return {
        "count": int(flat.numel()),
        "mean": float(flat.mean()),
        "std": float(flat.std(unbiased=False)),
        "p1": float(p1),
        "median": float(p50),
        "p99": float(p99),
        "min": float(flat.min()),
        "max": float(flat.max()),
    }


def chamfer_distances(points_a: np.ndarray, points_b: np.ndarray) -> dict:
    """Nearest-neighbour distances between two clouds ``[N, 3]``, ``[M, 3]`` (open3d KD-tree).

    ``chamfer`` is the mean of the two directed mean distances.
    """
    import open3d as o3d  # lazy: only exports need it

    def cloud(points: np.ndarray):
        finite = np.isfinite(points).all(axis=1)
        pcd = o3d.geometry.PointCloud()
        pcd.points = o3d.utility.Vector3dVector(points[finite].astype(np.float64))
        return pcd

    a, b = cloud(points_a), cloud(points_b)
    a_to_b = np.asarray(a.compute_point_cloud_distance(b))
    b_to_a = np.asarray(b.compute_point_cloud_distance(a))
    if a_to_b.size == 0 or b_to_a.size == 0:
        return {"a_to_b_mean": None, "b_to_a_mean": None, "chamfer": None}
    return {
        "a_to_b_mean": float(a_to_b.mean()),
        "a_to_b_median": float(np.median(a_to_b)),
        "b_to_a_mean": float(b_to_a.mean()),
        "b_to_a_median": float(np.median(b_to_a)),
        "chamfer": float(0.5 * (a_to_b.mean() + b_to_a.mean())),
    }


# --- everything at once ---------------------------------------------------------------------


@dataclass
class SceneAnalysis:
    """All per-pixel diagnostics of one scene; see :func:`analyze`."""

    settings: AnalysisSettings
    consistency_final: Consistency
    consistency_coarse: Consistency
    final_at_near: Tensor  # [V, H, W] bool
    final_at_far: Tensor  # [V, H, W] bool
    coarse_at_near: Tensor  # [V, H, W] bool
    coarse_at_far: Tensor  # [V, H, W] bool
    edge: Tensor  # [V, H, W] bool, on the final depth
    flying: Tensor  # [V, H, W] bool, on the final depth
    gt_error_coarse: Tensor | None = None  # [V, H, W] signed relative error, NaN without GT
    gt_error_final: Tensor | None = None
    gt_metrics_coarse: dict | None = None
    gt_metrics_final: dict | None = None
    extra: dict = field(default_factory=dict)

    def color_modes(self) -> dict[str, Tensor]:
        """Per-pixel ``[V, H, W]`` float maps by name, NaN where undefined.

        Flags are 0/1; ``clamp_final`` is -1 at near, +1 at far, 0 elsewhere.
        """
        modes = {
            "consistency_final": self.consistency_final.rel_error,
            "consistency_coarse": self.consistency_coarse.rel_error,
            "inconsistent_final": self.consistency_final.inconsistent.float(),
            "clamp_final": self.final_at_far.float() - self.final_at_near.float(),
            "depth_edge": self.edge.float(),
            "flying_pixel": self.flying.float(),
        }
        if self.gt_error_final is not None and self.gt_error_coarse is not None:
            modes["gt_error_final"] = self.gt_error_final
            modes["gt_error_coarse"] = self.gt_error_coarse
        return modes

    def summary(self) -> dict:
        """JSON-ready statistics (plain floats, ints, lists, dicts)."""

        def share(mask: Tensor) -> float:
            return float(mask.double().mean())

        out = {
            "settings": {
                "consistency_threshold": self.settings.consistency_threshold,
                "consistency_lookup": self.settings.consistency_lookup,
                "consistency_occlusions": self.settings.consistency_occlusions,
                "clamp_rtol": self.settings.clamp_rtol,
                "edge_threshold": self.settings.edge_threshold,
                "delta_threshold": self.settings.delta_threshold,
            },
            "consistency": {
                "final": self.consistency_final.summary(),
                "coarse": self.consistency_coarse.summary(),
            },
            "clamp": {
                "final_at_near_share": share(self.final_at_near),
                "final_at_far_share": share(self.final_at_far),
                "coarse_at_near_share": share(self.coarse_at_near),
                "coarse_at_far_share": share(self.coarse_at_far),
                "per_view_final_at_near_share": [share(m) for m in self.final_at_near],
                "per_view_final_at_far_share": [share(m) for m in self.final_at_far],
            },
            "edges": {
                "edge_share": share(self.edge),
                "flying_share": share(self.flying),
                "per_view_flying_share": [share(m) for m in self.flying],
            },
        }
        if self.gt_metrics_final is not None:
            out["gt"] = {"coarse": self.gt_metrics_coarse, "final": self.gt_metrics_final}
        out.update(self.extra)
        return out


def analyze(
    layers: Layers,
    intrinsics: Tensor,
    extrinsics: Tensor,
    settings: AnalysisSettings = AnalysisSettings(),
) -> SceneAnalysis:
    """Every analysis of this module on one scene.

    Args:
        layers: the scene's layers (any frame; results are in its units).
        intrinsics: ``[V, 3, 3]`` normalized; extrinsics: ``[V, 4, 4]`` ``T_world_cam`` in the
            same frame as the layers' points.
    """

    def consistency(points: Tensor, depth: Tensor) -> Consistency:
        return multiview_consistency(
            points, depth, intrinsics, extrinsics,
            threshold=settings.consistency_threshold, lookup=settings.consistency_lookup,
            occlusions=settings.consistency_occlusions, edge_threshold=settings.edge_threshold,
        )  # fmt: skip

    final_at_near, final_at_far = clamp_masks(
        layers.final_depth, layers.near, layers.far, settings.clamp_rtol
    )
    coarse_at_near, coarse_at_far = clamp_masks(
        layers.coarse_depth, layers.near, layers.far, settings.clamp_rtol
    )
    edge, flying = depth_edges(layers.final_depth, settings.edge_threshold)
    analysis = SceneAnalysis(
        settings=settings,
        consistency_final=consistency(layers.final_points, layers.final_depth),
        consistency_coarse=consistency(layers.coarse_points, layers.coarse_depth),
        final_at_near=final_at_near,
        final_at_far=final_at_far,
        coarse_at_near=coarse_at_near,
        coarse_at_far=coarse_at_far,
        edge=edge,
        flying=flying,
    )
    if layers.gt_depth is not None:
        gt = layers.gt_depth
        analysis.gt_error_coarse = gt_error_map(layers.coarse_depth, gt)
        analysis.gt_error_final = gt_error_map(layers.final_depth, gt)
        analysis.gt_metrics_coarse = gt_metrics(layers.coarse_depth, gt, settings.delta_threshold)
        analysis.gt_metrics_final = gt_metrics(layers.final_depth, gt, settings.delta_threshold)
    analysis.extra["residual"] = {
        "metric": value_stats(layers.residual_metric),
        "inverse": value_stats(layers.residual_inv),
        "abs_metric_mean": float(layers.residual_metric.abs().double().nanmean()),
    }
    analysis.extra["confidence"] = value_stats(layers.confidence)
    if layers.gaussians is not None:
        opacity = gaussian_scalar(layers.gaussians, "opacity")
        analysis.extra["gaussians"] = {
            "count": int(opacity.numel()),
            "opacity": value_stats(opacity),
            "scale": value_stats(gaussian_scalar(layers.gaussians, "scale")),
            "below_0.05_opacity_share": float((opacity < 0.05).double().mean()),
        }
    return analysis

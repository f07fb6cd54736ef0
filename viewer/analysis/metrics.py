"""Numbers about one scene: depth metrics against GT, value statistics, histograms, Chamfer.

GT metrics (defined in :mod:`dsviewer.depth_metrics`) count the pixels with ``gt > 0`` and a finite
positive prediction. ``overall`` pools the pixels of all views (it is not the mean of the
per-view values).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dsviewer.depth_metrics import DELTA_THRESHOLD, abs_rel, delta_accuracy, rmse
from dsviewer.viewer.colormaps import robust_range
from dsviewer.viewer.layers import CostVolume


def depth_metrics(depth: Tensor, gt: Tensor, delta_threshold: float = DELTA_THRESHOLD) -> dict:
    """AbsRel, RMSE and delta accuracy over pixels with ``gt > 0`` (and finite ``depth > 0``)."""
    valid = (gt > 0) & torch.isfinite(depth) & (depth > 0)
    count = int(valid.sum())
    if count == 0:
        return {"pixels": 0, "abs_rel": None, "rmse": None, "delta": None}
    d, g = depth[valid].double(), gt[valid].double()  # one gather for the three metrics
    return {
        "pixels": count,
        "abs_rel": float(abs_rel(d, g)),
        "rmse": float(rmse(d, g)),
        "delta": float(delta_accuracy(d, g, threshold=delta_threshold)),
    }


def gt_metrics(depth: Tensor, gt: Tensor, delta_threshold: float = DELTA_THRESHOLD) -> dict:
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


def cost_volume_stats(cost_volume: CostVolume) -> dict:
    """How peaked the last-scale matching softmax is, per view and overall.

    ``normalized_entropy`` is ``-sum p log p / log D`` per feature pixel: 0 for a one-hot
    match, 1 for a uniform one (no multi-view evidence).
    """
    probs = cost_volume.probabilities.double()  # [V, D, h, w]
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
        value_range = robust_range(flat, 1.0, 99.0)
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
    if a.is_empty() or b.is_empty():  # checked first: open3d warns on an empty KD-tree
        return {"a_to_b_mean": None, "b_to_a_mean": None, "chamfer": None}
    a_to_b = np.asarray(a.compute_point_cloud_distance(b))
    b_to_a = np.asarray(b.compute_point_cloud_distance(a))
    return {
        "a_to_b_mean": float(a_to_b.mean()),
        "a_to_b_median": float(np.median(a_to_b)),
        "b_to_a_mean": float(b_to_a.mean()),
        "b_to_a_median": float(np.median(b_to_a)),
        "chamfer": float(0.5 * (a_to_b.mean() + b_to_a.mean())),
    }

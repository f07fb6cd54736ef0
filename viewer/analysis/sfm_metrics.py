"""Depth metrics against a capture's SfM points: a sparse, real reference.

The predicted depth map ``[V, H, W]`` is sampled **bilinearly** at each observation's
continuous pixel (``grid_sample``, ``align_corners=False``: the centre of pixel ``c`` is at
``c + 0.5``, as everywhere in the project; edges clamp to the border pixel), and compared with
the SfM z-depth using :mod:`dsviewer.depth_metrics`: AbsRel, delta < 1.25 and the median ratio
predicted / SfM (1 when unbiased; a wrong near/far or normalisation shows as a scale). A
number rests on the observations where the prediction is finite and positive (``points``);
below :data:`MIN_POINTS` it is None with the reason "too few SfM points". ``overall`` pools
the observations of all views.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dsviewer.dataset.sfm_types import MIN_POINTS
from dsviewer.depth_metrics import DELTA_THRESHOLD, abs_rel, delta_accuracy, median_ratio
from dsviewer.viewer.sfm_layer import SfmSamples

TOO_FEW = "too few SfM points"
SFM_SAMPLING = "bilinear at the observed pixel"


def sample_depth(depth: Tensor, samples: SfmSamples) -> Tensor:
    """``depth [V, H, W]`` read bilinearly at each observation: ``[N]`` float64 (NaN where a
    neighbour is NaN)."""
    V, H, W = depth.shape
    out = torch.empty(samples.count, dtype=torch.float64)
    for v in range(V):
        mine = samples.view == v
        if not mine.any():
            continue
        uv = samples.uv[mine]
        grid = torch.stack([2 * uv[:, 0] / W - 1, 2 * uv[:, 1] / H - 1], dim=-1)
        read = F.grid_sample(depth[v][None, None].double(), grid[None, None], mode="bilinear",
                             padding_mode="border", align_corners=False)
        out[mine] = read[0, 0, 0]
    return out


def relative_error(depth: Tensor, samples: SfmSamples) -> Tensor:
    """``(d - sfm) / sfm`` ``[N]`` of ``depth [V, H, W]`` at each observation."""
    return (sample_depth(depth, samples) - samples.depth) / samples.depth.clamp_min(1e-12)


def _metrics(predicted: Tensor, reference: Tensor, min_points: int,
             delta_threshold: float) -> dict:  # fmt: skip
    valid = torch.isfinite(predicted) & (predicted > 0) & (reference > 0)
    count = int(valid.sum())
    if count < min_points:
        return {"points": count, "abs_rel": None, "delta": None, "median_ratio": None,
                "reason": f"{TOO_FEW} ({count} < {min_points})"}
    return {
        "points": count,
        "abs_rel": float(abs_rel(predicted, reference, valid)),
        "delta": float(delta_accuracy(predicted, reference, valid, delta_threshold)),
        "median_ratio": float(median_ratio(predicted, reference, valid)),
        "reason": None,
    }


def sfm_metrics(depth: Tensor, samples: SfmSamples, min_points: int = MIN_POINTS,
                delta_threshold: float = DELTA_THRESHOLD) -> dict:
    """``{"overall": ..., "per_view": [...]}``, each ``{points, abs_rel, delta, median_ratio,
    reason}``, of ``depth [V, H, W]`` against the SfM observations."""
    predicted = sample_depth(depth, samples)
    return {
        "overall": _metrics(predicted, samples.depth, min_points, delta_threshold),
        "per_view": [_metrics(predicted[samples.view == v], samples.depth[samples.view == v],
                              min_points, delta_threshold) for v in range(depth.shape[0])],
    }


def sfm_summary(samples: SfmSamples, num_views: int, coarse: dict, final: dict,
                min_points: int = MIN_POINTS) -> dict:
    """The ``sfm`` entry of metrics.json: what the reference is and the two layers' metrics."""
    return {
        "source": samples.source,
        "file": samples.path,
        "max_error_px": samples.max_error if samples.max_error != float("inf") else None,
        "min_points": min_points,
        "sampling": SFM_SAMPLING,
        "points": samples.count,
        "per_view_points": samples.per_view_counts(num_views),
        "per_view_left_out": samples.dropped,
        "coarse": coarse,
        "final": final,
    }

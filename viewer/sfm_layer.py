"""The SfM reference of a capture's context views in the USER's frame, sparse and on pixels.

``dsviewer.dataset.sfm`` keeps, per context view, the SfM points observed there (model frame,
model units). :func:`sfm_samples` moves them to the user's frame once (called by
``layers.build_layers``) and lays them out twice: as a flat list of observations (``view``,
continuous pixel ``uv``, depth, point), which the metrics sample the prediction at, and as
``[V, H, W]`` maps holding each observation at the pixel that contains its ``uv`` (NaN
elsewhere), so that the "SfM points" layer works with every per-pixel consumer (colour modes,
picking, PLY, scene.html). Where two observations of one view fall in one pixel the map keeps
the nearer; the metrics use them all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from dsviewer.dataset.sfm import SfmReference
from dsviewer.geometry.similarity import Similarity


@dataclass
class SfmSamples:
    """N observations over V context views of ``H x W`` pixels, user frame and units."""

    view: Tensor  # [N] int64 context view
    uv: Tensor  # [N, 2] float64 pixel coordinates (centre of pixel c at c + 0.5)
    depth: Tensor  # [N] float64 z-depth in that view's camera
    points: Tensor  # [N, 3] float64 the SfM point, user frame
    rgb: Tensor  # [N, 3] uint8 its colour
    error: Tensor  # [N] float64 COLMAP reprojection error (px), NaN when unknown
    dropped: list[dict[str, int]]  # per view: reason -> observations left out
    source: str  # "tracks" or "point_cloud"
    max_error: float  # px, inf when errors are unknown
    path: str
    index_map: Tensor  # [V, H, W] int64 the observation shown at each pixel, -1 for none
    depth_map: Tensor  # [V, H, W] float32, NaN without an observation
    points_map: Tensor  # [V, H, W, 3] float32, NaN without an observation
    rgb_map: Tensor  # [V, H, W, 3] uint8, 0 without an observation

    @property
    def count(self) -> int:
        return int(self.view.numel())

    def per_view_counts(self, num_views: int) -> list[int]:
        return torch.bincount(self.view, minlength=num_views).tolist()


def sfm_samples(reference: SfmReference, to_user: Similarity, shape: tuple[int, int]
                ) -> SfmSamples:  # fmt: skip
    """The reference's observations in the user's frame, listed and on ``shape`` pixel maps."""
    height, width = shape
    views = reference.views
    num_views = len(views)
    view = np.concatenate([np.full(v.count, k, dtype=np.int64) for k, v in enumerate(views)])
    uv = np.concatenate([v.uv for v in views]).reshape(-1, 2)
    depth = np.concatenate([v.depth for v in views])
    point = np.concatenate([v.point for v in views]).astype(np.int64)
    xyz = to_user.points(torch.from_numpy(reference.xyz[point].astype(np.float64)))
    rgb = torch.from_numpy(reference.rgb[point].astype(np.uint8))
    depth_user = to_user.lengths(torch.from_numpy(depth.astype(np.float64)))

    # nearest first, so the first write to a pixel (kept below) is the nearest observation
    order = np.lexsort((depth, view))
    col = np.clip(np.floor(uv[:, 0]).astype(np.int64), 0, width - 1)
    row = np.clip(np.floor(uv[:, 1]).astype(np.int64), 0, height - 1)
    flat = (view * height + row) * width + col
    _, first = np.unique(flat[order], return_index=True)
    shown = order[first]
    index_map = torch.full((num_views * height * width,), -1, dtype=torch.int64)
    index_map[torch.from_numpy(flat[shown])] = torch.from_numpy(shown)
    index_map = index_map.reshape(num_views, height, width)
    has = index_map >= 0
    safe = index_map.clamp_min(0)
    depth_map = torch.where(has, depth_user.float()[safe], torch.tensor(float("nan")))
    points_map = torch.where(has[..., None], xyz.float()[safe], torch.tensor(float("nan")))
    rgb_map = torch.where(has[..., None], rgb[safe], torch.zeros((), dtype=torch.uint8))
    return SfmSamples(
        view=torch.from_numpy(view), uv=torch.from_numpy(uv.astype(np.float64)),
        depth=depth_user, points=xyz, rgb=rgb,
        error=torch.from_numpy(np.concatenate([v.error for v in views]).astype(np.float64)),
        dropped=[dict(v.dropped) for v in views], source=reference.source,
        max_error=reference.max_error, path=reference.path, index_map=index_map,
        depth_map=depth_map, points_map=points_map, rgb_map=rgb_map)

"""Default context and target views of a capture, for ordered video frames and unordered photos.

Neighbours in file-name order are a poor default for photo collections (two names apart can be
two sides of a building), so the choice uses geometry:

* **Context, with a COLMAP model:** covisibility. Every 3D point seen by two frames adds the
  view-selection weight of MVSNet (Yao et al. 2018, used with COLMAP models): a Gaussian of the
  triangulation angle at the point, peaking at 5 degrees (sigma 1 below, 10 above), so pairs
  that see much of the same surface with useful parallax win (without point positions, each
  shared point counts 1). The best pair starts (or ``anchor`` and its best partner); further
  views add the highest summed score to those chosen.
* **Context, without points** (``transforms.json``) or when no two frames share a point: the
  anchor (the middle frame unless given) and the frames of lowest *camera cost*:
  ``distance / spacing + angle / ANGLE_PER_BASELINE``, where ``spacing`` is the median distance
  of a camera to its nearest camera elsewhere and ``angle`` the angle between viewing
  directions.
* **Targets:** the frames of lowest cost to their nearest context camera, ``distance /
  context_baseline + angle / ANGLE_PER_BASELINE``, at most ``max_targets``, in frame order.
* **Copies:** two frames with the same pose (one photo listed twice, or copied into two split
  folders) have no baseline: the anchor's nearest cameras skip copies of a chosen pose, and
  copies of a context camera come last as targets.

Explicit ``--context`` / ``--target`` always win over these defaults.

Everything here is linear in the number of frames (video captures have tens of thousands):
covisibility is kept per pair that shares points, never as an N x N matrix, and the spacing of a
long capture is the median over :data:`SPACING_SAMPLES` cameras spread through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..geometry.view_geometry import pairwise_view_geometry, ray_angles
from .capture_frame import Capture

ANGLE_PER_BASELINE = 15.0
"""Degrees of viewing-direction change that cost as much as one baseline of distance."""
PEAK_ANGLE, SIGMA_BELOW, SIGMA_ABOVE = 5.0, 1.0, 10.0  # MVSNet's view-selection weights
MAX_PAIR_EVALUATIONS = 2_000_000  # points are thinned evenly beyond this many (point, pair)s
SPACING_SAMPLES = 256  # cameras (evenly spread) whose nearest neighbour gives the spacing
DISTANCE_ROWS = 64  # cameras measured against all others at once (bounds the memory)


def _poses(capture: Capture, frames: list[int]) -> torch.Tensor:
    return torch.from_numpy(np.stack([capture.frames[i].T_world_cam for i in frames]))


@dataclass(frozen=True)
class Covisibility:
    """View-selection scores of the frame pairs that share points: positions ``a < b`` in the
    frame list, ``score`` summed over their shared points (pairs sharing none are absent)."""

    num_frames: int
    a: np.ndarray  # [P] int64
    b: np.ndarray  # [P] int64
    score: np.ndarray  # [P] float64

    def row(self, position: int) -> np.ndarray:
        """``[N]`` scores of one frame with every frame (0 with itself)."""
        out = np.zeros(self.num_frames)
        out[self.b[self.a == position]] = self.score[self.a == position]
        out[self.a[self.b == position]] = self.score[self.b == position]
        return out


def covisibility(capture: Capture, frames: list[int]) -> Covisibility | None:
    """Scores between ``frames`` (None without point ids)."""
    seen = [capture.frames[i].point_ids for i in frames]
    if any(ids is None for ids in seen):
        return None
    owner = np.concatenate([np.full(len(ids), k) for k, ids in enumerate(seen)]).astype(np.int64)
    point = np.concatenate(seen).astype(np.int64)
    order = np.argsort(point, kind="stable")
    owner, point = owner[order], point[order]
    unique, start, length = np.unique(point, return_index=True, return_counts=True)
    shared = length >= 2
    unique, start, length = unique[shared], start[shared], length[shared]
    work = (length * (length - 1) // 2).sum()
    if work > MAX_PAIR_EVALUATIONS:
        keep = np.arange(0, len(unique), int(np.ceil(work / MAX_PAIR_EVALUATIONS)))
        unique, start, length = unique[keep], start[keep], length[keep]
    xyz = None
    if capture.tracks is not None:
        ids = capture.tracks.ids
        sorter = np.argsort(ids)
        slot = np.clip(np.searchsorted(ids, unique, sorter=sorter), 0, max(len(sorter) - 1, 0))
        known = len(sorter) > 0 and np.array_equal(ids[sorter[slot]], unique)
        xyz = capture.tracks.xyz[sorter[slot]] if known else None
    centers = _poses(capture, frames)[:, :3, 3]
    pairs, weights = [np.zeros(0, dtype=np.int64)], [np.zeros(0)]
    for size in np.unique(length):
        group = np.nonzero(length == size)[0]
        tracks = owner[start[group][:, None] + np.arange(size)]  # [M, size] frame positions
        first, second = np.triu_indices(size, k=1)
        a, b = tracks[:, first].ravel(), tracks[:, second].ravel()
        if xyz is None:
            weight = np.ones(len(a))
        else:
            points = torch.from_numpy(np.repeat(xyz[group], len(first), axis=0))
            angle = ray_angles(points, centers[a], centers[b]).numpy()
            sigma = np.where(angle <= PEAK_ANGLE, SIGMA_BELOW, SIGMA_ABOVE)
            weight = np.exp(-((angle - PEAK_ANGLE) ** 2) / (2 * sigma**2))
        low, high = np.minimum(a, b), np.maximum(a, b)
        keep = low != high  # a point seen twice by one image pairs it with nothing
        pairs.append(low[keep] * len(frames) + high[keep])
        weights.append(weight[keep])
    codes, where = np.unique(np.concatenate(pairs), return_inverse=True)
    score = np.bincount(where, weights=np.concatenate(weights), minlength=len(codes))
    return Covisibility(len(frames), codes // len(frames), codes % len(frames), score)


def camera_costs(capture: Capture, frames: list[int], others: list[int], unit: float
                 ) -> np.ndarray:
    """``[len(frames), len(others)]`` of ``distance / unit + angle / ANGLE_PER_BASELINE``."""
    distance, angle = pairwise_view_geometry(_poses(capture, frames), _poses(capture, others))
    return (distance / max(unit, 1e-12) + angle / ANGLE_PER_BASELINE).numpy()


def camera_spacing(capture: Capture, frames: list[int]) -> float:
    """Median distance from a camera to its nearest camera at another position (0 when all
    cameras share one position); over :data:`SPACING_SAMPLES` cameras evenly spread through
    longer captures (each against every camera), which keeps the cost linear."""
    centers = _poses(capture, frames)[:, :3, 3]  # [N, 3] float64
    sample = centers
    if len(centers) > SPACING_SAMPLES:
        sample = centers[np.linspace(0, len(centers) - 1, SPACING_SAMPLES).round().astype(int)]
    nearest = []
    for rows in torch.split(sample, DISTANCE_ROWS):
        distance = torch.cdist(rows, centers)  # [R, N]
        nearest.append(distance.masked_fill(distance <= 0, float("inf")).min(dim=1).values)
    nearest = torch.cat(nearest)
    nearest = nearest[torch.isfinite(nearest)]
    return float(nearest.median()) if len(nearest) else 0.0


def choose_context(capture: Capture, frames: list[int], num_context: int,
                   anchor: int | None) -> tuple[list[int], str]:
    """Default context frames among ``frames`` and one sentence on how they were chosen."""
    scores = covisibility(capture, frames)
    position = None if anchor is None else frames.index(anchor)
    if scores is not None and len(scores.score) and scores.score.max() > 0 and num_context >= 2:
        if position is None:
            best = int(np.argmax(scores.score))
            chosen = [int(scores.a[best]), int(scores.b[best])]
        else:
            partner = scores.row(position)
            partner[position] = -1.0
            chosen = [position, int(np.argmax(partner))]
        total = scores.row(chosen[0]) + scores.row(chosen[1])
        while len(chosen) < num_context:
            total[chosen] = -1.0
            chosen.append(int(np.argmax(total)))
            total += scores.row(chosen[-1])
        pair = scores.row(chosen[0])[chosen[1]]
        how = (f"by COLMAP covisibility (the first two share 3D points worth {pair:.0f} of "
               "MVSNet's view-selection score)")
    else:
        position = len(frames) // 2 if position is None else position
        cost = camera_costs(capture, [frames[position]], frames, camera_spacing(capture, frames))
        cost[0, position] = np.inf
        chosen = _nearest_distinct(capture, frames, position, cost[0], num_context)
        how = ("as the anchor frame and its nearest cameras (distance and viewing angle; the "
               "capture has no shared 3D points)")
    return sorted(frames[k] for k in chosen), how


def _same_pose(capture: Capture, a: int, b: int) -> bool:
    return np.allclose(capture.frames[a].T_world_cam, capture.frames[b].T_world_cam,
                       rtol=1e-9, atol=1e-12)


def _nearest_distinct(capture: Capture, frames: list[int], position: int, cost: np.ndarray,
                      count: int) -> list[int]:
    """``position`` and the lowest-cost others, skipping copies of a pose already chosen (the
    same photo listed twice has no baseline to match); copies only when nothing else is left."""
    order = np.argsort(cost, kind="stable").tolist()
    chosen = [position]
    for k in order:
        if len(chosen) == count:
            return chosen
        if k != position and not any(_same_pose(capture, frames[k], frames[c]) for c in chosen):
            chosen.append(k)
    return chosen + [k for k in order if k not in chosen][: count - len(chosen)]


def choose_targets(capture: Capture, frames: list[int], context: list[int],
                   max_targets: int) -> list[int]:
    """Default targets: the frames of ``frames`` nearest to the context (see module doc)."""
    candidates = [i for i in frames if i not in context]
    if not candidates or max_targets <= 0:
        return []
    baseline = camera_spacing(capture, context) if len(context) > 1 else 0.0
    unit = baseline if baseline > 0 else camera_spacing(capture, frames)
    cost = camera_costs(capture, candidates, context, unit).min(axis=1)
    cost[cost <= 0] = np.inf  # a copy of a context camera renders an input: last
    picked = np.argsort(cost, kind="stable")[:max_targets]
    return sorted(candidates[k] for k in picked)

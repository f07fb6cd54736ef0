"""Two depth predictions of one scene compared pixel by pixel: runs against runs, or against GT.

A comparison reads what a run predicted as a :class:`DepthSource` (its context cameras, depth
and points in the user's frame). Runs differ in checkpoint, resolution, crop and context views,
so pixels are matched through geometry, never by index: for each view of ``a``, ``b``'s view of
the same context frame (matched by frame index) is looked up *along a's pixel rays*.

Along a's rays
--------------
Pixel ``(u, v)`` of ``a`` defines the ray through its centre (conventions of
:mod:`dsviewer.geometry.projection`). ``b``'s depth map, sampled bilinearly, is a surface; the
result is the z-depth *in a's camera* of the nearest point of a's ray on that surface (where
the sampled depth equals the point's z-depth in b's camera). It depends on a's cameras only,
never on a's depth. When both cameras share their centre (one frame in two runs: the usual
case) the ray is one image point of ``b`` and one sample gives it. Otherwise the ray's image in
``b`` is a segment, walked in steps of at most one pixel for the first crossing of the
surface, which is then bisected; rays that never cross it are NaN.

Sampling: bilinear in *depth* (not inverse depth), with every neighbour that has a non-zero
weight valid (finite, > 0), else NaN; outside b's pixel centres NaN. Positions within
:data:`SNAP_PIXELS` of a pixel centre take that pixel's value, so a run compared with itself
gives exactly 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from dsviewer.depth_metrics import abs_rel
from dsviewer.geometry.projection import camera_rays, pixel_centers
from dsviewer.viewer.layers import Cameras, valid_depth
from dsviewer.viewer.session.specs import GT_NAME, SFM_NAME

if TYPE_CHECKING:
    from dsviewer.viewer.session.loaded import LoadedScene
    from dsviewer.viewer.session.runs import Run

SNAP_PIXELS = 1e-6  # sample positions this close to a pixel centre read that pixel alone
SHARED_CENTER = 1e-9  # centres closer than this (times b's depth) are one centre
MAX_STEPS = 256  # steps along a ray's image in b (at most one pixel each, up to this many)
BISECTIONS = 48


@dataclass
class DepthSource:
    """What a comparison needs of one run (or of the GT depth), in the user's frame."""

    name: str
    cameras: Cameras  # context cameras
    depth: Tensor  # [V, H, W] z-depth, user units; <= 0 or non-finite: invalid
    points: Tensor  # [V, H, W, 3] world points of ``depth``


def run_source(loaded: LoadedScene) -> DepthSource:
    """The run's final depth, named after the run."""
    layers = loaded.layers
    return DepthSource(loaded.run_name, layers.context, layers.final_depth, layers.final_points)


def gt_source(loaded: LoadedScene) -> DepthSource | None:
    """The scene's GT depth (as preprocessed for this run), named ``gt``; None without GT."""
    layers = loaded.layers
    if layers.gt_depth is None or not bool((layers.gt_depth > 0).any()):
        return None
    return DepthSource(GT_NAME, layers.context, layers.gt_depth, layers.gt_points)


def sfm_source(loaded: LoadedScene) -> DepthSource | None:
    """The capture's SfM points as a sparse depth, named ``sfm``: each observation at the pixel
    that holds it (``sfm_layer.py``), invalid elsewhere; None without SfM points."""
    sfm = loaded.layers.sfm
    if sfm is None or sfm.count == 0:
        return None
    return DepthSource(SFM_NAME, loaded.layers.context, sfm.depth_map, sfm.points_map)


def has_gt(runs: Sequence[Run]) -> bool:
    """Whether any run's scene has GT depth to compare with (B = ``gt``)."""
    return any(gt_source(run.loaded) is not None for run in runs)


def matching_views(a: Cameras, b: Cameras) -> list[int | None]:
    """For each view of ``a``, the index of b's view of the same frame (None if b has none)."""
    b_frames = [int(f) for f in b.frames]
    return [b_frames.index(int(f)) if int(f) in b_frames else None for f in a.frames]


def shared_frames(a: Cameras, b: Cameras) -> list[int]:
    """The context frames both runs predicted depth for (the only ones a comparison covers)."""
    return [int(f) for f, view_b in zip(a.frames, matching_views(a, b)) if view_b is not None]


def comparison_problem(a: DepthSource, b: DepthSource | None, b_name: str) -> str | None:
    """Why ``b`` cannot be compared with ``a`` (a sentence), or None when it can."""
    if b is None:
        return f"There is no depth of {b_name} to compare with {a.name}."
    if not shared_frames(a.cameras, b.cameras):
        return (f"{a.name} (frames {a.cameras.frames.tolist()}) and {b.name} (frames "
                f"{b.cameras.frames.tolist()}) share no context frame, and depth is compared "
                "frame by frame: give the runs a common context frame.")  # fmt: skip
    return None


def _bilinear(depth: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """``depth [H, W]`` (float64) at pixel coordinates ``u``, ``v`` ``[N]`` (pixel centres at
    integers); NaN outside the centres or where a neighbour with a non-zero weight is invalid."""
    height, width = depth.shape
    axes = []  # per axis: (lower index, weight of the upper neighbour, inside)
    for coordinate, size in ((u, width), (v, height)):
        base = torch.floor(coordinate)
        frac = coordinate - base
        up = frac > 1.0 - SNAP_PIXELS
        base = torch.where(up, base + 1, base)
        frac = torch.where(up | (frac < SNAP_PIXELS), torch.zeros_like(frac), frac)
        inside = (base >= 0) & ((base < size - 1) | ((base == size - 1) & (frac == 0)))
        safe = torch.where(inside, base, torch.zeros_like(base)).long()  # NaN/inf never index
        axes.append((safe, torch.where(inside, frac, torch.zeros_like(frac)), inside))
    (u0, fu, inside_u), (v0, fv, inside_v) = axes
    u1 = (u0 + 1).clamp(max=width - 1)
    v1 = (v0 + 1).clamp(max=height - 1)
    ok = inside_u & inside_v
    value = torch.zeros_like(u)
    for row, column, weight in ((v0, u0, (1 - fu) * (1 - fv)), (v0, u1, fu * (1 - fv)),
                                (v1, u0, (1 - fu) * fv), (v1, u1, fu * fv)):  # fmt: skip
        corner = depth[row, column]
        used = weight > 0
        ok &= ~used | valid_depth(corner)
        value = value + torch.where(used, weight * corner, torch.zeros_like(value))
    return torch.where(ok, value, torch.full_like(value, float("nan")))


def _sample(depth_b: Tensor, K_b: Tensor, m: Tensor) -> Tensor:
    """b's depth ``[N]`` at normalized camera coordinates ``m = (X/Z, Y/Z)`` ``[N, 2]``."""
    height, width = depth_b.shape
    x = (K_b[0, 0] * m[:, 0] + K_b[0, 2]) * width - 0.5
    y = (K_b[1, 1] * m[:, 1] + K_b[1, 2]) * height - 0.5
    return _bilinear(depth_b, x, y)


def _ray_interval(rays: Tensor, origin: Tensor, K_b: Tensor, shape_b: tuple[int, int],
                  z_range: tuple[float, float]) -> tuple[Tensor, Tensor]:  # fmt: skip
    """``(t_min, t_max)`` ``[N]``: the part of each ray ``origin + t * rays`` (b's camera frame)
    that projects inside b's pixel centres with its b-depth in ``z_range``; empty: min > max."""
    height, width = shape_b
    fx, fy, cx, cy = K_b[0, 0], K_b[1, 1], K_b[0, 2], K_b[1, 2]
    # The outer pixel centres as X / Z, widened by the snap distance that sampling accepts.
    edge = 0.5 - SNAP_PIXELS
    x_lo, x_hi = (edge / width - cx) / fx, (1 - edge / width - cx) / fx
    y_lo, y_hi = (edge / height - cy) / fy, (1 - edge / height - cy) / fy
    X, Y, Z = origin
    rx, ry, rz = rays.unbind(-1)
    # Each bound is a + b t >= 0 (image bounds multiplied by Z > 0, which the depth bounds keep).
    bounds = [(X - x_lo * Z, rx - x_lo * rz), (x_hi * Z - X, x_hi * rz - rx),
              (Y - y_lo * Z, ry - y_lo * rz), (y_hi * Z - Y, y_hi * rz - ry),
              (Z - z_range[0], rz), (z_range[1] - Z, -rz)]  # fmt: skip
    t_min = torch.zeros_like(rz)
    t_max = torch.full_like(rz, float("inf"))
    for a, b in bounds:
        a = torch.as_tensor(a, dtype=rz.dtype).expand_as(rz)
        limit = -a / torch.where(b == 0, torch.ones_like(b), b)
        t_min = torch.where(b > 0, torch.maximum(t_min, limit), t_min)
        t_max = torch.where(b < 0, torch.minimum(t_max, limit), t_max)
        t_max = torch.where((b == 0) & (a < 0), torch.full_like(t_max, -1.0), t_max)
    return t_min, t_max


def _first_hit(rays: Tensor, origin: Tensor, K_b: Tensor, depth_b: Tensor) -> Tensor:
    """Rays ``[N, 3]`` from ``origin`` (b's camera frame, a different centre): the smallest
    ``t`` where ``origin + t * rays`` lies on b's depth surface; NaN where there is none.

    The ray's image in b is a segment; it is walked in steps of at most a pixel (at most
    :data:`MAX_STEPS`) for the first change of sign of ``gap`` = b's depth - the point's b-depth,
    which is then bisected."""
    valid = valid_depth(depth_b)
    if not bool(valid.any()):
        return torch.full_like(rays[:, 0], float("nan"))
    lowest, highest = float(depth_b[valid].min()), float(depth_b[valid].max())
    z_range = (lowest * (1 - 1e-6), highest * (1 + 1e-6))  # the hit's b-depth lies in here
    t_min, t_max = _ray_interval(rays, origin, K_b, tuple(depth_b.shape), z_range)
    usable = torch.isfinite(t_max) & (t_min <= t_max)
    if not bool(usable.any()):
        return torch.full_like(rays[:, 0], float("nan"))
    t_min = torch.where(usable, t_min, torch.ones_like(t_min))
    t_max = torch.where(usable, t_max, torch.ones_like(t_max))

    def image(t: Tensor) -> Tensor:  # [N, 2] normalized coordinates in b
        point = origin + t[:, None] * rays
        return point[:, :2] / point[:, 2:]

    m0, m1 = image(t_min), image(t_max)
    axis = (m1 - m0).abs().argmax(dim=1, keepdim=True)  # solve for t along the longer axis
    o_axis, r_axis = origin[axis[:, 0]], rays.gather(1, axis)[:, 0]
    degenerate = (m1 - m0).abs().amax(dim=1) < 1e-15

    def gap(step: Tensor) -> tuple[Tensor, Tensor]:
        """``(gap, t)`` at the fraction ``step`` ``[N]`` of each segment."""
        m = m0 + step[:, None] * (m1 - m0)
        m_axis = m.gather(1, axis)[:, 0]
        t = (m_axis * origin[2] - o_axis) / (r_axis - m_axis * rays[:, 2])
        t = torch.where(degenerate, t_min, t)
        return _sample(depth_b, K_b, m) - (origin[2] + t * rays[:, 2]), t

    height, width = depth_b.shape
    pixels = ((m1 - m0) * torch.stack((K_b[0, 0] * width, K_b[1, 1] * height))).norm(dim=1)
    steps = min(MAX_STEPS, max(1, math.ceil(float(pixels[usable].max()))))
    found = torch.zeros_like(usable)
    low = torch.zeros_like(t_min)
    previous, _ = gap(low)
    for k in range(1, steps + 1):
        fraction = torch.full_like(t_min, k / steps)
        current, _ = gap(fraction)
        change = ~found & usable & torch.isfinite(previous) & torch.isfinite(current)
        change &= (previous >= 0) != (current >= 0)
        low = torch.where(change | found, low, fraction)
        found |= change
        previous = current
    # Bisect each bracket [low, low + 1 / steps]; the sign at ``low`` is kept on the low side.
    high = low + 1.0 / steps
    sign_low = gap(low)[0] >= 0
    for _ in range(BISECTIONS):
        middle = 0.5 * (low + high)
        value, _ = gap(middle)
        same = (value >= 0) == sign_low
        found &= torch.isfinite(value)
        low, high = torch.where(same, middle, low), torch.where(same, high, middle)
    _, t = gap(0.5 * (low + high))
    return torch.where(found & (t > 0), t, torch.full_like(t, float("nan")))


def _view_along_rays(a: DepthSource, view_a: int, b: DepthSource, view_b: int) -> Tensor:
    height, width = a.depth.shape[1:]
    K_a = a.cameras.intrinsics[view_a].double()
    rays_a = camera_rays(pixel_centers(height, width, dtype=torch.float64), K_a).reshape(-1, 3)
    T_a = a.cameras.T_world_cam[view_a].double()
    T_b = b.cameras.T_world_cam[view_b].double()
    K_b = b.cameras.intrinsics[view_b].double()
    depth_b = b.depth[view_b].double()
    if torch.equal(T_a, T_b):  # exact: no round-off from composing a pose with its inverse
        rays, origin = rays_a, torch.zeros(3, dtype=torch.float64)
    else:
        R_cam_b_world = torch.linalg.inv(T_b[:3, :3])
        rays = rays_a @ (R_cam_b_world @ T_a[:3, :3]).T  # a's rays in b's camera frame
        origin = R_cam_b_world @ (T_a[:3, 3] - T_b[:3, 3])  # a's centre in b's camera frame
    scale = float(torch.where(valid_depth(depth_b), depth_b, 0.0).max().clamp_min(1e-12))
    if float(origin.norm()) > SHARED_CENTER * scale:
        along = _first_hit(rays, origin, K_b, depth_b)
    else:  # one centre: the ray is one image point of b, b's depth there is the hit
        forward = rays[:, 2] > 0
        z = torch.where(forward, rays[:, 2], torch.ones_like(rays[:, 2]))
        along = _sample(depth_b, K_b, rays[:, :2] / z[:, None]) / z
        along = torch.where(forward, along, torch.full_like(along, float("nan")))
    return along.reshape(height, width)


def depth_along_rays(a: DepthSource, b: DepthSource) -> Tensor:
    """b's depth along a's pixel rays, as z-depth in a's cameras.

    Args:
        a: cameras of ``V_a`` views with depth ``[V_a, H_a, W_a]`` (only the rays are used).
        b: any resolution and crop; its views are matched to a's by frame index.

    Returns:
        ``[V_a, H_a, W_a]`` float64; NaN where b has no view of the frame, where the ray leaves
        b's image or meets invalid depth (see the module docstring).
    """
    out = torch.full(tuple(a.depth.shape), float("nan"), dtype=torch.float64)
    for view_a, view_b in enumerate(matching_views(a.cameras, b.cameras)):
        if view_b is not None:
            out[view_a] = _view_along_rays(a, view_a, b, view_b)
    return out


def difference_maps(a: DepthSource, b: DepthSource) -> dict[str, Tensor]:
    """``"metric"``: ``d_b - d_a`` (user units) and ``"inverse"``: ``1/d_b - 1/d_a``, with
    ``d_b`` along a's rays; each ``[V_a, H_a, W_a]`` float32, NaN where either is undefined."""
    along = depth_along_rays(a, b)
    own = a.depth.double()
    defined = valid_depth(own) & torch.isfinite(along)
    nan = torch.full_like(own, float("nan"))
    safe_a = torch.where(defined, own, torch.ones_like(own))
    safe_b = torch.where(defined, along, torch.ones_like(along))
    return {
        "metric": torch.where(defined, safe_b - safe_a, nan).float(),
        "inverse": torch.where(defined, 1.0 / safe_b - 1.0 / safe_a, nan).float(),
    }


def _abs_rel(along: Tensor, own: Tensor) -> dict:
    """Mean ``|d_b - d_a| / d_a`` over a's valid pixels that have a sample of b."""
    compared = valid_depth(own) & torch.isfinite(along)
    count = int(compared.sum())
    value = float(abs_rel(along, own, compared)) if count else None
    return {"depth_abs_rel_b_vs_a": value, "pixels": count,
            "a_pixels": int(valid_depth(own).sum())}  # fmt: skip


def compare_pair(a: DepthSource, b: DepthSource) -> dict:
    """Depth AbsRel of b against a along a's rays (overall and per view of a), and Chamfer.

    ``depth_abs_rel_b_vs_a`` pools the pixels of all views; ``pixels`` counts the compared
    pixels, ``a_pixels`` a's valid ones. Chamfer: between the valid points of the two sources
    (:func:`dsviewer.viewer.analysis.metrics.chamfer_distances`, user units).
    """
    from dsviewer.viewer.analysis.metrics import chamfer_distances

    along = depth_along_rays(a, b)
    own = a.depth.double()
    per_view = []
    for view_a, view_b in enumerate(matching_views(a.cameras, b.cameras)):
        per_view.append({"frame": int(a.cameras.frames[view_a]), "view_a": view_a,
                         "view_b": view_b, **_abs_rel(along[view_a], own[view_a])})  # fmt: skip

    def cloud(source: DepthSource) -> np.ndarray:
        return source.points[valid_depth(source.depth)].double().numpy()

    return {
        "a": a.name,
        "b": b.name,
        "shared_frames": shared_frames(a.cameras, b.cameras),
        **_abs_rel(along, own),
        "per_view": per_view,
        "chamfer": chamfer_distances(cloud(a), cloud(b)),
    }

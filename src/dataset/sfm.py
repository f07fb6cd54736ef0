"""SfM points as a sparse reference depth for a capture's context views.

A COLMAP model knows, for each 3D point, which images observed it and where (its track, read
with the rest of the model by ``colmap_files.py``). For each context view we keep every point
whose track includes that image: its **observed** pixel (the feature COLMAP matched, not the
point's reprojection), taken through the same undistortion and crops as the view's image, and
its z-depth in that camera.
What is kept is in the model's units and frame (``SceneViews.world_from_model`` maps it back to
the user's), so it can be compared with the prediction directly.

Observations are left out, each counted under the first reason that applies
(:data:`DROP_REASONS`): a track naming a feature the image lacks, a point behind the camera, a
mean reprojection error above ``max_error`` pixels (COLMAP's own per-point error, in the source
image's pixels), a pixel the lens model cannot undistort (beyond a fold), or a pixel outside the
model's image once cropped.

A nerfstudio ``transforms.json`` with a ``ply_file_path`` has points but no tracks: each point is
projected into each context view and kept when it lands inside, in front, and not behind a
nearer point of the cloud (the nearest depth over the 3x3 :data:`OCCLUSION_CELL` pixel cells
around it, within :data:`OCCLUSION_TOLERANCE`). Such a reference is weaker; its note says so.

Pixels ``uv`` are continuous coordinates of the model image: pixel ``(col, row)`` has its centre
at ``(col + 0.5, row + 0.5)``, i.e. the normalized coordinate ``uv / (W, H)`` of
``geometry/projection.py``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..geometry.projection import project_points
from ..geometry.similarity import Similarity
from .camera_models import PINHOLE_MODELS, Camera
from .capture_frame import Capture
from .colmap_files import ImageRecord, PointTracks
from .errors import CaptureFormatError, SceneError
from .sfm_types import SfmReference, SfmView
from .types import SceneNote, ViewSet
from .undistort import lift_pixels, radial_fold

DEFAULT_MAX_ERROR = 2.0  # pixels: COLMAP's mean reprojection error of a point
OCCLUSION_CELL = 4  # pixels of the model image, point clouds without tracks only
OCCLUSION_TOLERANCE = 0.05  # kept when within 5 % of the nearest depth in its cell
def check_max_error(max_error: float) -> float:
    if not (math.isfinite(max_error) and max_error > 0):
        raise SceneError(f"The SfM reprojection-error threshold (--sfm-max-error) is "
                         f"{max_error}; give a positive number of pixels (the default is "
                         f"{DEFAULT_MAX_ERROR}).")
    return float(max_error)


def _lift(camera: Camera, xy: np.ndarray) -> np.ndarray:
    """Observed pixels ``[N, 2]`` (COLMAP convention) to normalized pinhole coordinates, NaN
    where the lens model has no ray (beyond a fold, or no convergence)."""
    fx, fy, cx, cy = camera.pinhole
    if camera.model in PINHOLE_MODELS or not camera.has_distortion:
        return (xy - [cx, cy]) / [fx, fy]
    if len(xy) == 0:
        return np.zeros((0, 2))
    normal = lift_pixels(camera, xy)
    fold = radial_fold(camera)
    if fold is not None:  # as the image: beyond the fold there is no ray
        beyond = np.hypot(*((xy - [cx, cy]) / [fx, fy]).T) > fold.distorted_radius
        normal[beyond] = np.nan
    return normal


def _to_model_pixels(normal: np.ndarray, K: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Normalized pinhole coordinates ``[N, 2]`` to pixels of the preprocessed image whose
    normalized intrinsics ``K`` (after every crop) the model uses."""
    k = K.double().numpy()
    height, width = shape
    u = (k[0, 0] * normal[:, 0] + k[0, 2]) * width
    v = (k[1, 1] * normal[:, 1] + k[1, 2]) * height
    return np.stack([u, v], axis=-1)


def _inside(uv: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    with np.errstate(invalid="ignore"):
        return (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)


def _z_depth(T_world_cam: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """z of world points ``[N, 3]`` in a camera, in the world's units."""
    R, t = T_world_cam[:3, :3], T_world_cam[:3, 3]
    return (xyz - t) @ R[:, 2]  # the camera's z axis in world coordinates, from its centre


def _sift(frame: int, reasons: list[tuple[str, np.ndarray]], uv: np.ndarray, depth: np.ndarray,
          error: np.ndarray, point: np.ndarray) -> SfmView:
    """Keep the observations no reason drops; count each dropped one under its first reason."""
    keep = np.ones(len(depth), dtype=bool)
    dropped = {}
    for reason, bad in reasons:
        dropped[reason] = int((keep & bad).sum())
        keep &= ~bad
    return SfmView(frame, uv[keep], depth[keep], error[keep], point[keep], dropped)


def _track_view(frame: int, features: ImageRecord | None, tracks: PointTracks,
                camera: Camera, T_world_cam: np.ndarray, scale: float, K: torch.Tensor,
                shape: tuple[int, int], max_error: float) -> SfmView:
    if features is None:
        empty = np.zeros(0)
        return SfmView(frame, np.zeros((0, 2)), empty, empty, np.zeros(0, dtype=np.int64))
    mine = tracks.track_image == features.image_id
    point, feature = tracks.track_point[mine], tracks.track_feature[mine]
    valid = feature < len(features.xy)
    safe = np.where(valid, feature, 0)
    if len(features.xy):
        valid &= features.point_ids[safe] == tracks.ids[point]
    xy = features.xy[safe] if len(features.xy) else np.zeros((len(point), 2))
    depth = _z_depth(T_world_cam, tracks.xyz[point]) / scale
    error = tracks.error[point]
    uv = _to_model_pixels(_lift(camera, xy), K, shape)
    with np.errstate(invalid="ignore"):
        reasons = [("bad_track", ~valid), ("behind", ~(depth > 0)), ("error", error > max_error),
                   ("unliftable", ~np.isfinite(uv).all(axis=1)), ("outside", ~_inside(uv, shape))]
    return _sift(frame, reasons, uv, depth, error, point)


def colmap_reference(capture: Capture, context: list[int], views: ViewSet,
                     world_from_model: Similarity, max_error: float = DEFAULT_MAX_ERROR
                     ) -> SfmReference | None:
    """The reference of a COLMAP capture's context frames ``context`` (preprocessed as
    ``views``), or None when its model has no points3D file."""
    if capture.tracks is None:
        return None
    tracks = capture.tracks
    max_error = check_max_error(max_error)
    out = []
    for v, i in enumerate(context):
        frame = capture.frames[i]
        out.append(_track_view(i, frame.sfm_image, tracks, frame.camera,
                               frame.T_world_cam, world_from_model.scale, views.intrinsics[v],
                               views.image_shape, max_error))
    xyz = world_from_model.inverse().points(torch.from_numpy(tracks.xyz)).numpy()
    return SfmReference(xyz, tracks.rgb, tracks.error, tuple(out), max_error, "tracks",
                        str(capture.sfm_points))


def _unoccluded(uv: np.ndarray, depth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Points that no nearer point hides: the nearest depth over the point's
    :data:`OCCLUSION_CELL` pixel cell and the 8 cells around it (so a cell border never splits
    a point from its occluder), within the tolerance. Points outside count as not hidden (they
    are dropped anyway)."""
    height, width = shape
    rows, cols = -(-height // OCCLUSION_CELL), -(-width // OCCLUSION_CELL)
    inside = _inside(uv, shape) & (depth > 0)
    r = (uv[inside, 1] // OCCLUSION_CELL).astype(np.int64)
    c = (uv[inside, 0] // OCCLUSION_CELL).astype(np.int64)
    nearest = np.full((rows + 2, cols + 2), np.inf)  # one cell of padding on each side
    np.minimum.at(nearest, (r + 1, c + 1), depth[inside])
    around = np.min([nearest[1 + dr : rows + 1 + dr, 1 + dc : cols + 1 + dc]
                     for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=0)
    visible = np.ones(len(depth), dtype=bool)
    visible[inside] = depth[inside] <= around[r, c] * (1 + OCCLUSION_TOLERANCE)
    return visible


def cloud_reference(xyz_world: np.ndarray, rgb: np.ndarray, path: str, context: list[int],
                    views: ViewSet, world_from_model: Similarity) -> SfmReference:
    """The reference from a point cloud without tracks (see the module docstring).

    Args:
        xyz_world: ``[P, 3]`` in the capture's own frame and units; ``rgb``: ``[P, 3]`` uint8.
    """
    xyz = world_from_model.inverse().points(torch.from_numpy(xyz_world.astype(np.float64)))
    out = []
    for v, i in enumerate(context):
        coordinates, depth = project_points(xyz, views.intrinsics[v].double(),
                                            views.extrinsics[v].double())
        height, width = views.image_shape
        uv = coordinates.numpy() * [width, height]
        depth = depth.numpy()
        point = np.arange(len(depth), dtype=np.int64)
        reasons = [("behind", ~(depth > 0)), ("outside", ~_inside(uv, views.image_shape)),
                   ("occluded", ~_unoccluded(uv, depth, views.image_shape))]
        out.append(_sift(i, reasons, uv, depth, np.full(len(depth), np.nan), point))
    error = np.full(len(xyz), np.nan)
    return SfmReference(xyz.numpy(), rgb, error, tuple(out), math.inf, "point_cloud", path)


def _read_cloud(path: Path, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from ..io.ply import PlyFormatError, read_point_cloud_ply

    try:
        cloud = read_point_cloud_ply(path)
    except PlyFormatError as exc:  # other errors are the file system's or ours
        raise CaptureFormatError(folder, f"its ply_file_path {path.name} cannot be read as a "
                                 f"point cloud ({exc}); fix or remove the entry") from None
    rgb = cloud.colors if cloud.colors is not None else np.full((len(cloud.points), 3), 200,
                                                                 dtype=np.uint8)
    return cloud.points.astype(np.float64), rgb


def sfm_reference(capture: Capture, context: list[int], views: ViewSet,
                  world_from_model: Similarity, max_error: float = DEFAULT_MAX_ERROR
                  ) -> tuple[SfmReference | None, list[SceneNote]]:
    """The capture's SfM reference for its context views, and a note saying what it rests on
    (none when the capture has no SfM points)."""
    path = capture.sfm_points
    if path is None:
        return None, []
    if path.suffix.lower() == ".ply":
        xyz, rgb = _read_cloud(path, capture.folder)
        reference = cloud_reference(xyz, rgb, str(path), context, views, world_from_model)
        how = (f"SfM reference depth from the point cloud {path.name} ({len(xyz)} points). "
               "It has no tracks, so which image saw each point is unknown: points were "
               "projected into each context view and kept in front of it, inside it and not "
               f"behind a nearer point within {2 * OCCLUSION_CELL} px; occluded points may "
               "remain. ")
    else:
        reference = colmap_reference(capture, context, views, world_from_model, max_error)
        if reference is None:
            return None, []
        how = (f"SfM reference depth from {path.name} ({len(reference.xyz)} points): each "
               "point at the pixel where COLMAP observed it in a context view, with mean "
               f"reprojection error at most {reference.max_error:g} px. ")
    return reference, [SceneNote("sfm_reference", how + reference.summary() + ".")]

"""How a scene is looked at: point size unit, frustum size, up direction and the start camera.

Computed once per scene from its :class:`~dsviewer.viewer.layers.Layers` (user frame) and used by
the live
viewer and by ``scene.html`` alike, so both open on the same view with the same sizes.

Start camera: it looks along the context cameras' mean viewing direction, tilted down from
their "up" by :data:`START_TILT`, at the centre of the final points (their 2nd-98th percentile
box), from far enough that the points and the camera centres fit in its field of view. The
viewer docks its panel beside the canvas, so nothing the camera frames is hidden under it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsviewer.viewer.colormaps import robust_range
from dsviewer.viewer.layers import Layers

START_FOV = math.radians(55.0)  # vertical field of view of the start camera
START_TILT = 0.45  # how much the start camera looks down (tan of the tilt)
FRAME_MARGIN = 1.15  # framing slack around the bounding sphere
FRUSTUM_FRACTION = 0.1  # frustum size: this share of the median final depth
DEFAULT_POINT_PIXELS = 1.5  # default point size in context pixels at the median depth


@dataclass(frozen=True)
class StartCamera:
    position: np.ndarray  # [3]
    look_at: np.ndarray  # [3]
    up: np.ndarray  # [3]
    fov: float  # vertical, radians


@dataclass(frozen=True)
class ViewParameters:
    median_depth: float
    pixel_footprint: float
    """World size of one context pixel at the median depth (median depth / median fx in px)."""
    frustum_scale: float
    up: np.ndarray  # [3] world up: the mean of the context cameras' -Y axes
    start: StartCamera

    def point_size(self, pixels: float = DEFAULT_POINT_PIXELS) -> float:
        """A point size in world units that covers ``pixels`` context pixels at the median depth."""
        return float(pixels) * self.pixel_footprint


def up_direction(T_world_cam: np.ndarray) -> np.ndarray:
    """World 'up' ``[3]``: the mean of the cameras' -Y axes (OpenCV's Y points down)."""
    up = -np.asarray(T_world_cam)[:, :3, 1].mean(axis=0)
    norm = np.linalg.norm(up)
    return up / norm if norm > 1e-9 else np.array([0.0, 0.0, 1.0])


def view_parameters(layers: Layers) -> ViewParameters:
    T = layers.context.T_world_cam.numpy()  # [V, 4, 4] float64
    depth = layers.final_depth.numpy()
    valid = np.isfinite(depth) & (depth > 0)
    median_depth = float(np.median(depth[valid])) if valid.any() else 1.0
    width = layers.image_shape[1]
    fx_pixels = float(np.median(layers.context.intrinsics[:, 0, 0].numpy())) * width
    up = up_direction(T)
    return ViewParameters(
        median_depth=median_depth,
        pixel_footprint=median_depth / max(fx_pixels, 1e-9),
        frustum_scale=FRUSTUM_FRACTION * median_depth,
        up=up,
        start=framing_camera(layers.final_points.numpy()[valid], T, up),
    )


def framing_camera(points: np.ndarray, T_world_cam: np.ndarray, up: np.ndarray) -> StartCamera:
    """A camera that frames ``points`` ``[n, 3]`` (their 2-98 % box) and the camera centres."""
    centers = T_world_cam[:, :3, 3]
    if len(points):
        low, high = np.array([robust_range(points[:, axis]) for axis in range(3)]).T
    else:
        low = high = centers.mean(axis=0)
    center = 0.5 * (low + high)
    framed = np.vstack([low, high, centers])
    forward = T_world_cam[:, :3, 2].mean(axis=0)
    forward -= up * float(forward @ up)  # level, then tilted down by START_TILT
    norm = np.linalg.norm(forward)
    forward = forward / norm if norm > 1e-9 else np.cross(up, [1.0, 0.0, 0.0])
    direction = forward - START_TILT * up
    direction /= np.linalg.norm(direction)
    radius = float(np.linalg.norm(framed - center, axis=1).max()) or 1.0
    distance = FRAME_MARGIN * radius / math.sin(0.5 * START_FOV)
    return StartCamera(position=center - distance * direction, look_at=center, up=up, fov=START_FOV)

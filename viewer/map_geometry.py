"""Where the map pictures lie in the scene, and which pixel a click's ray hits on them.

A picture is a rectangle in the local ``z = depth`` plane of a node posed by ``T_world_node``
(OpenCV axes: +X right, +Y down), its top-left corner at ``(-half_w, -half_h)``: viser 1.1.1
draws a frustum's image so (``CameraFrustumVariants.tsx``: a plane of ``2 aspect y`` by
``2 y`` at depth ``z``, turned by pi about X so that the image's top row is at -Y), and a scene
image likewise at depth 0 (``ThreeAssets.tsx``). The rectangle a frustum draws is centred on
its axis: for a centred principal point a picture's pixel is where the camera projects, for an
off-centre one it is the picture's pixel (what the user sees and clicked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dsviewer.viewer.view_params import FRAME_MARGIN, StartCamera

GRID_GAP_RADII = 0.15  # space between the scene and the grid, in scene radii


@dataclass(frozen=True)
class Picture:
    """A picture's rectangle: ``T_world_node`` ``[4, 4]``, half sizes and depth (local units)."""

    T_world_node: np.ndarray
    half_w: float
    half_h: float
    depth: float = 0.0


def frustum_picture_plane(fov: float, aspect: float, scale: float) -> tuple[float, float, float]:
    """``(half_w, half_h, depth)`` of the image viser 1.1.1 draws in a frustum of vertical
    ``fov`` (radians), ``aspect`` (W / H) and ``scale``: the frustum's volume is normalised
    before ``scale`` multiplies it."""
    y = math.tan(fov / 2.0)
    x = y * aspect
    norm = (x * y * 1.0 / 3.0) ** (1.0 / 3.0)
    return x / norm * scale, y / norm * scale, 1.0 / norm * scale


def pose_matrix(wxyz, position) -> np.ndarray:
    """``T_world_node`` ``[4, 4]`` of a viser node's ``wxyz`` and ``position``."""
    import viser.transforms as vtf

    T = np.eye(4)
    T[:3, :3] = vtf.SO3(np.asarray(wxyz, np.float64)).as_matrix()
    T[:3, 3] = np.asarray(position, np.float64)
    return T


def hit_picture(origin, direction, picture: Picture) -> tuple[float, float, float] | None:
    """``(distance, s, t)``: where the ray ``origin + lambda direction`` (world) meets the
    picture, as its distance along the ray and fractions of the picture's width and height from
    its top-left corner; None when it passes by or the picture is behind it."""
    T = picture.T_world_node
    R = T[:3, :3]
    o = R.T @ (np.asarray(origin, np.float64) - T[:3, 3])  # the ray in the node's frame
    d = R.T @ np.asarray(direction, np.float64)
    if abs(d[2]) < 1e-12:
        return None
    along = (picture.depth - o[2]) / d[2]
    if along <= 0:
        return None
    x, y = o[:2] + along * d[:2]
    s = (x + picture.half_w) / (2.0 * picture.half_w)
    t = (y + picture.half_h) / (2.0 * picture.half_h)
    if not (0.0 <= s < 1.0 and 0.0 <= t < 1.0):
        return None
    return float(along * np.linalg.norm(d)), float(s), float(t)


def picture_point(picture: Picture, s: float, t: float) -> np.ndarray:
    """The world point ``[3]`` at fractions ``(s, t)`` of a picture (the inverse of the hit)."""
    local = np.array([(2 * s - 1) * picture.half_w, (2 * t - 1) * picture.half_h, picture.depth])
    return picture.T_world_node[:3, :3] @ local + picture.T_world_node[:3, 3]


def facing_rotation(start: StartCamera) -> np.ndarray:
    """``R_world_node`` ``[3, 3]`` of a node that faces the start camera upright (OpenCV axes:
    +Z along its view, +Y down the screen)."""
    forward = np.asarray(start.look_at, np.float64) - np.asarray(start.position, np.float64)
    forward /= np.linalg.norm(forward)
    down = -np.asarray(start.up, np.float64)
    down -= forward * float(down @ forward)
    down /= max(np.linalg.norm(down), 1e-12)
    return np.stack([np.cross(down, forward), down, forward], axis=1)


def grid_placement(start: StartCamera, grid_hw: tuple[int, int]) -> Picture:
    """The grid beside the scene: in the plane through the start camera's target, facing it,
    as tall as the scene's framed diameter, right of the scene (the panel docks on the right of
    the canvas, the grid stays inside it)."""
    R = facing_rotation(start)
    distance = float(np.linalg.norm(np.asarray(start.look_at) - np.asarray(start.position)))
    radius = distance * math.sin(start.fov / 2.0) / FRAME_MARGIN  # framed by the start camera
    half_h = radius
    half_w = radius * grid_hw[1] / grid_hw[0]
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(start.look_at) + R[:, 0] * (radius * (1 + GRID_GAP_RADII) + half_w)
    return Picture(T, half_w, half_h)


def framing_both(start: StartCamera, grid: Picture, aspect: float) -> tuple[np.ndarray, np.ndarray]:
    """``(position, look_at)`` of a camera with the start camera's direction and field of view
    that frames the scene and the grid beside it on a canvas of ``aspect`` (W / H)."""
    R = grid.T_world_node[:3, :3]
    distance = float(np.linalg.norm(np.asarray(start.look_at) - np.asarray(start.position)))
    radius = distance * math.sin(start.fov / 2.0) / FRAME_MARGIN
    left = np.asarray(start.look_at) - R[:, 0] * radius
    right = grid.T_world_node[:3, 3] + R[:, 0] * grid.half_w
    look_at = 0.5 * (left + right)
    half_w = 0.5 * float(np.linalg.norm(right - left))
    half_h = max(radius, grid.half_h)
    tan = math.tan(start.fov / 2.0)
    back = FRAME_MARGIN * max(half_h / tan, half_w / (tan * max(aspect, 1e-3)))
    return look_at - R[:, 2] * back, look_at

"""Camera conventions, stated once for the whole project.

Convention
----------
* Intrinsics ``K`` are **normalized**: row 0 is divided by the image width and row 1 by the
  image height, so ``fx``, ``cx`` are fractions of the width and ``fy``, ``cy`` of the height.
* Extrinsics ``T_world_cam`` are **camera-to-world** 4x4 matrices with OpenCV axes
  (+X right, +Y down, +Z forward): ``x_world = T_world_cam @ x_cam``.
* Pixel ``(u, v)`` (column, row) of an ``H x W`` image has its centre at the normalized
  coordinate ``((u + 0.5) / W, (v + 0.5) / H)``.
* ``depth`` is **z-depth** (distance along the optical axis), never the length of the ray.
  Inverse depth is always named as such (``inv_depth``).

Everything else in the project calls these helpers instead of re-deriving the conventions.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pixel_centers(height: int, width: int, device=None, dtype=torch.float32) -> Tensor:
    """Normalized pixel-centre coordinates ``[H, W, 2]`` as ``(x, y)`` in [0, 1]."""
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1)


def normalize_intrinsics(K_pixels: Tensor, height: int, width: int) -> Tensor:
    """Pixel intrinsics ``[..., 3, 3]`` of an ``H x W`` image (pixel centres at ``u + 0.5``) to
    normalized intrinsics: row 0 over the width, row 1 over the height."""
    K = K_pixels.clone()
    K[..., 0, :] = K[..., 0, :] / width
    K[..., 1, :] = K[..., 1, :] / height
    return K


def denormalize_intrinsics(K: Tensor, height: int, width: int) -> Tensor:
    """Normalized intrinsics ``[..., 3, 3]`` to pixel intrinsics for an ``H x W`` image."""
    K_pixels = K.clone()
    K_pixels[..., 0, :] = K_pixels[..., 0, :] * width
    K_pixels[..., 1, :] = K_pixels[..., 1, :] * height
    return K_pixels


def camera_rays(coordinates: Tensor, K: Tensor) -> Tensor:
    """Camera-frame ray directions scaled to ``z = 1``.

    Args:
        coordinates: ``[..., 2]`` normalized image coordinates ``(x, y)``.
        K: ``[..., 3, 3]`` normalized intrinsics, broadcastable against ``coordinates``.

    Returns:
        ``[..., 3]`` directions ``((x - cx) / fx, (y - cy) / fy, 1)``.
    """
    fx, fy = K[..., 0, 0], K[..., 1, 1]
    cx, cy = K[..., 0, 2], K[..., 1, 2]
    x = (coordinates[..., 0] - cx) / fx
    y = (coordinates[..., 1] - cy) / fy
    return torch.stack((x, y, torch.ones_like(x)), dim=-1)


def unproject_depth(depth: Tensor, K: Tensor, T_world_cam: Tensor) -> Tensor:
    """Every pixel of every view to a world point.

    Args:
        depth: ``[..., H, W]`` metric z-depth.
        K: ``[..., 3, 3]`` normalized intrinsics (same leading dims as ``depth``).
        T_world_cam: ``[..., 4, 4]`` camera-to-world extrinsics, OpenCV axes.

    Returns:
        ``[..., H, W, 3]`` world points; pixel ``(v, u)`` is unprojected through its centre.
    """
    height, width = depth.shape[-2:]
    coords = pixel_centers(height, width, device=depth.device, dtype=depth.dtype)
    rays = camera_rays(coords, K[..., None, None, :, :])  # [..., H, W, 3]
    points_cam = (rays * depth[..., None]).flatten(-3, -2)  # [..., H*W, 3]
    # One [H*W, 3] x [3, 3] product per view instead of a batched 3x3 product per pixel.
    R_T = T_world_cam[..., :3, :3].transpose(-1, -2)  # [..., 3, 3]
    t = T_world_cam[..., None, :3, 3]  # [..., 1, 3]
    points_world = points_cam @ R_T + t
    return points_world.unflatten(-2, (height, width))


def project_points(points_world: Tensor, K: Tensor, T_world_cam: Tensor) -> tuple[Tensor, Tensor]:
    """World points into a camera.

    Args:
        points_world: ``[..., N, 3]``.
        K: ``[..., 3, 3]`` normalized intrinsics.
        T_world_cam: ``[..., 4, 4]`` camera-to-world extrinsics.

    Returns:
        ``(coordinates [..., N, 2], depth [..., N])``: normalized image coordinates (pixel centres
        at ``(u + 0.5) / W``) and z-depth in that camera. Points behind the camera get
        ``depth <= 0``; their coordinates are not meaningful.
    """
    T_cam_world = torch.linalg.inv(T_world_cam)
    R_T = T_cam_world[..., :3, :3].transpose(-1, -2)  # [..., 3, 3]
    t = T_cam_world[..., None, :3, 3]  # [..., 1, 3]
    points_cam = points_world @ R_T + t
    depth = points_cam[..., 2]
    safe_z = torch.where(depth.abs() > 1e-12, depth, torch.full_like(depth, 1e-12))
    xy = points_cam[..., :2] / safe_z[..., None]
    fx, fy = K[..., None, 0, 0], K[..., None, 1, 1]
    cx, cy = K[..., None, 0, 2], K[..., None, 1, 2]
    coordinates = torch.stack((xy[..., 0] * fx + cx, xy[..., 1] * fy + cy), dim=-1)
    return coordinates, depth


def camera_centers(T_world_cam: Tensor) -> Tensor:
    """Camera centres ``[..., 3]`` in world coordinates."""
    return T_world_cam[..., :3, 3]


def image_corner_points(K: Tensor, T_world_cam: Tensor, depth: float) -> Tensor:
    """The four image corners at z-depth ``depth``, in the world: ``[..., 4, 3]``.

    Corners in the order top-left, top-right, bottom-right, bottom-left (the image's outer edge,
    normalized ``(0, 0)``, ``(1, 0)``, ``(1, 1)``, ``(0, 1)``, not the corner pixels' centres).
    ``K`` ``[..., 3, 3]`` normalized, ``T_world_cam`` ``[..., 4, 4]``.
    """
    corners = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=K.dtype)
    points_cam = camera_rays(corners, K[..., None, :, :]) * depth  # [..., 4, 3]
    R_T = T_world_cam[..., :3, :3].transpose(-1, -2).to(K.dtype)
    return points_cam @ R_T + T_world_cam[..., None, :3, 3].to(K.dtype)


# glTF's frame (+Y up, and a camera looks down its -Z) from ours (OpenCV: +Y down, +Z forward):
# a half turn about X, the same that turns an OpenCV camera into a glTF camera. A rotation
# (determinant +1), so handedness and distances are kept.
GLTF_FROM_OPENCV = ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, -1.0))


def opencv_to_gltf(points):
    """World points ``[..., 3]`` (numpy) in glTF's axes: ``(x, y, z) -> (x, -y, -z)``.

    The one conversion to glTF's frame; ``scene.glb`` stores every position through it.
    """
    import numpy as np

    points = np.asarray(points)
    return points @ np.asarray(GLTF_FROM_OPENCV, dtype=points.dtype).T

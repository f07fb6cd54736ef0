"""How far apart two cameras are, and how differently they look.

Used to choose context and target views and to show each target's relation to the context
cameras. Poses are ``T_world_cam`` (camera-to-world, OpenCV axes, see ``projection.py``); the
viewing direction is the camera's +Z axis in the world frame.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pairwise_view_geometry(T_world_cam_a: Tensor, T_world_cam_b: Tensor) -> tuple[Tensor, Tensor]:
    """Distance between camera centres and angle between viewing directions, for all pairs.

    Args:
        T_world_cam_a: ``[A, 4, 4]`` camera-to-world poses.
        T_world_cam_b: ``[B, 4, 4]`` camera-to-world poses.

    Returns:
        ``distance [A, B]`` in the poses' world units and ``angle [A, B]`` in degrees (0 = same
        viewing direction, 180 = opposite), both float64.
    """
    a, b = T_world_cam_a.double(), T_world_cam_b.double()
    distance = torch.cdist(a[:, :3, 3], b[:, :3, 3])  # [A, B]
    axis_a = a[:, :3, 2] / a[:, :3, 2].norm(dim=-1, keepdim=True)  # [A, 3]
    axis_b = b[:, :3, 2] / b[:, :3, 2].norm(dim=-1, keepdim=True)  # [B, 3]
    cosine = (axis_a @ axis_b.T).clamp(-1.0, 1.0)
    return distance, torch.rad2deg(torch.arccos(cosine))


def ray_angles(points: Tensor, centers_a: Tensor, centers_b: Tensor) -> Tensor:
    """Triangulation angle in degrees at each point between the rays to two cameras.

    Args:
        points, centers_a, centers_b: ``[N, 3]`` (row i: a point and the two camera centres).

    Returns:
        ``[N]`` angles in degrees, float64.
    """
    ray_a = (centers_a - points).double()
    ray_b = (centers_b - points).double()
    cosine = (ray_a * ray_b).sum(-1) / (ray_a.norm(dim=-1) * ray_b.norm(dim=-1)).clamp_min(1e-300)
    return torch.rad2deg(torch.arccos(cosine.clamp(-1.0, 1.0)))

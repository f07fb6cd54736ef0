"""A hand-built scene with exact geometry for the analysis and export tests (no model, no data).

A tilted plane ``n . x = c`` seen by three rotated cameras. Depth, world points and the expected
analysis results are computed here with plain float64 numpy (ray-plane intersection with the
pixel-centre convention written out), independently of ``src/geometry`` and ``viewer/``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from dsviewer.dataset.types import SceneViews, ViewSet
from dsviewer.geometry.similarity import Similarity
from dsviewer.geometry.transforms import covariance_from_scale_rotation
from dsviewer.model.types import Gaussians, Prediction

HEIGHT, WIDTH = 24, 32
FEATURE_DOWNSCALE = 4
NUM_CANDIDATES = 16
NEAR, FAR = 1.0, 20.0
PLANE_NORMAL = np.array([0.15, -0.1, 1.0]) / np.linalg.norm([0.15, -0.1, 1.0])
PLANE_OFFSET = float(PLANE_NORMAL @ np.array([0.0, 0.0, 5.0]))  # through (0, 0, 5)
GT_HOLE = (0, slice(4, 8), slice(10, 15))  # view 0 pixels without GT depth
CLAMP_FAR_PIXEL = (2, 0, 0)  # (view, row, col) whose final depth is clamped at far
CLAMP_NEAR_PIXEL = (2, 0, 1)


def rotation(yaw: float, pitch: float) -> np.ndarray:
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    R_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    R_x = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    return R_y @ R_x


def cameras(num_views: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``(K [V, 3, 3] normalized, T_world_cam [V, 4, 4])`` float64."""
    Ks, Ts = [], []
    for i in range(num_views):
        f = 0.9 + 0.02 * i
        K = np.array([[f, 0, 0.5 + 0.01 * i], [0, f * WIDTH / HEIGHT, 0.5 - 0.01 * i], [0, 0, 1]])
        T = np.eye(4)
        T[:3, :3] = rotation(0.06 * (1 - i), 0.03 * i)
        T[:3, 3] = [-0.3 + 0.3 * i, 0.05 * i, 0.1 * i]
        Ks.append(K)
        Ts.append(T)
    return np.stack(Ks), np.stack(Ts)


def pixel_rays(K: np.ndarray, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """Camera-frame rays ``[H, W, 3]`` with z = 1 through the pixel centres."""
    u = (np.arange(width) + 0.5) / width
    v = (np.arange(height) + 0.5) / height
    x = (u[None, :] - K[0, 2]) / K[0, 0]
    y = (v[:, None] - K[1, 2]) / K[1, 1]
    x, y = np.broadcast_arrays(x, y)
    return np.stack((x, y, np.ones_like(x)), axis=-1)


def plane_depth(K: np.ndarray, T: np.ndarray) -> np.ndarray:
    """z-depth ``[H, W]`` of the plane along each pixel's ray (float64)."""
    rays_world = pixel_rays(K) @ T[:3, :3].T
    return (PLANE_OFFSET - PLANE_NORMAL @ T[:3, 3]) / (rays_world @ PLANE_NORMAL)


def depth_points(depth: np.ndarray, K: np.ndarray, T: np.ndarray) -> np.ndarray:
    """World points ``[H, W, 3]`` of a depth map (float64)."""
    return (pixel_rays(K) * depth[..., None]) @ T[:3, :3].T + T[:3, 3]


@dataclass
class Case:
    scene: SceneViews
    prediction: Prediction
    K: np.ndarray  # [V, 3, 3]
    T: np.ndarray  # [V, 4, 4]
    gt: np.ndarray  # [V, H, W] float64 plane depth (no hole)
    final_target: np.ndarray  # [V, H, W] the final depth asked for (before float32 rounding)
    coarse_depth: np.ndarray  # [V, H, W] float64


def build_case(
    final_scale: tuple[float, ...] = (1.0, 1.0, 1.0),
    clamp_pixels: bool = False,
    world_from_model: np.ndarray | None = None,
    seed: int = 0,
) -> Case:
    """The plane scene and a consistent prediction.

    ``final_depth`` = plane depth times ``final_scale[view]``; the coarse depth is the final
    depth times ``1 + 0.05 sin(...)`` (so the residual varies in sign and size); with
    ``clamp_pixels`` two pixels of view 2 are pushed beyond far / near and get clamped.
    """
    rng = np.random.default_rng(seed)
    num_views = len(final_scale)
    K, T = cameras(num_views)
    gt = np.stack([plane_depth(K[i], T[i]) for i in range(num_views)])  # [V, H, W]
    final_target = gt * np.asarray(final_scale)[:, None, None]
    rows, cols = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
    sign = np.array([1.0, -1.0, 0.5])[:num_views, None, None]
    wobble = 1.0 + 0.05 * np.sin(0.5 * cols + 0.3 * rows)[None] * sign
    coarse_depth = final_target * wobble
    coarse_inv = torch.from_numpy(1.0 / coarse_depth).float()
    residual = torch.from_numpy(1.0 / final_target).float() - coarse_inv
    if clamp_pixels:
        residual[CLAMP_FAR_PIXEL] = -10.0  # inverse depth far below 1/far
        residual[CLAMP_NEAR_PIXEL] = 10.0  # far above 1/near
    near = torch.full((num_views,), NEAR)
    far = torch.full((num_views,), FAR)
    inv_final = (coarse_inv + residual).clamp(min=1.0 / FAR, max=1.0 / NEAR)
    final_depth = 1.0 / inv_final  # the model's formula, in float32

    h, w = HEIGHT // FEATURE_DOWNSCALE, WIDTH // FEATURE_DOWNSCALE
    logits = torch.from_numpy(rng.normal(0.0, 2.0, (num_views, NUM_CANDIDATES, h, w))).float()
    match_probs = torch.softmax(logits, dim=1)
    inv_candidates = torch.linspace(1.0 / FAR, 1.0 / NEAR, NUM_CANDIDATES)
    # A per-pixel shift keeps each feature pixel's candidate list distinct (checks the mapping).
    shift = torch.arange(num_views * h * w).reshape(num_views, 1, h, w) * 1e-4
    depth_candidates = inv_candidates[None, :, None, None] + shift  # [V, D, h, w]

    points = np.stack([depth_points(final_depth[i].double().numpy(), K[i], T[i])
                       for i in range(num_views)])  # fmt: skip
    N = num_views * HEIGHT * WIDTH
    scales = torch.from_numpy(rng.uniform(0.005, 0.05, (1, N, 3))).float()
    quats = torch.from_numpy(rng.normal(size=(1, N, 4))).float()
    quats = quats / quats.norm(dim=-1, keepdim=True)
    cov_cam = covariance_from_scale_rotation(scales, quats)  # [1, N, 3, 3]
    R_view = torch.from_numpy(T[:, :3, :3]).float().repeat_interleave(HEIGHT * WIDTH, dim=0)
    cov_world = R_view @ cov_cam[0] @ R_view.transpose(-1, -2)
    gaussians = Gaussians(
        means=torch.from_numpy(points.reshape(1, N, 3)).float(),
        covariances=cov_world[None],
        harmonics=torch.from_numpy(rng.normal(0.0, 0.3, (1, N, 3, 9))).float(),
        opacities=torch.from_numpy(rng.uniform(0.02, 0.98, (1, N))).float(),
        scales=scales,
        rotations_xyzw=quats,
    )
    prediction = Prediction(
        coarse_inv_depth=coarse_inv,
        mono_inv_residual=residual,
        final_depth=final_depth,
        confidence=match_probs.max(dim=1).values,
        match_probs=match_probs,
        inv_depth_candidates=depth_candidates,
        near=near,
        far=far,
        gaussians=gaussians,
    )
    gt_with_hole = gt.copy()
    gt_with_hole[GT_HOLE] = 0.0
    image = torch.from_numpy(rng.uniform(0, 1, (num_views, 3, HEIGHT, WIDTH))).float()
    context = ViewSet(
        image=image,
        intrinsics=torch.from_numpy(K).float(),
        extrinsics=torch.from_numpy(T).float(),
        near=near,
        far=far,
        index=torch.arange(num_views) * 5,
        depth=torch.from_numpy(gt_with_hole).float(),
    )
    transform = Similarity.identity()
    if world_from_model is not None:
        transform = Similarity.from_matrix(world_from_model)
    target = ViewSet(image=image[:1], intrinsics=context.intrinsics[:1],
                     extrinsics=torch.from_numpy(cameras(4)[1][3:]).float(), near=near[:1],
                     far=far[:1], index=torch.tensor([2]))  # fmt: skip
    scene = SceneViews(key="plane/test", source="test:plane", context=context, target=target,
                       world_from_model=transform)  # fmt: skip
    return Case(scene=scene, prediction=prediction, K=K, T=T, gt=gt,
                final_target=final_target, coarse_depth=coarse_depth)  # fmt: skip


def similarity(scale: float = 2.0) -> np.ndarray:
    """A user-from-model similarity: rotation about a tilted axis, scale, translation."""
    axis = np.array([0.3, 1.0, -0.2]) / np.linalg.norm([0.3, 1.0, -0.2])
    angle = 0.7
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    R = np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross
    T = np.eye(4)
    T[:3, :3] = scale * R
    T[:3, 3] = [1.0, -2.0, 0.5]
    return T

"""Hand-built scenes with exact geometry for the viewer tests (no model, no dataset).

A plane ``z = PLANE_Z`` in world coordinates seen by rotated cameras. The true z-depth of every
pixel is computed here independently of ``src/geometry`` (ray-plane intersection with the
pixel-centre convention written out), the "coarse" inverse depth is the truth minus a known
residual pattern, and the final depth is exact, so ``final - coarse`` and the residual are known.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from pathlib import Path

import torch

from dsviewer.dataset.types import SceneViews, ViewSet
from dsviewer.model.types import Gaussians, Prediction

PLANE_Z = 4.0
NEAR, FAR = 0.5, 100.0


def rotation_x(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64)


def rotation_y(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)


def camera(x: float, y: float, yaw: float, pitch: float) -> torch.Tensor:
    """``T_world_cam`` of a camera at ``(x, y, 0)`` looking roughly along +z."""
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = rotation_y(yaw) @ rotation_x(pitch)
    T[:3, 3] = torch.tensor([x, y, 0.0], dtype=torch.float64)
    return T


def plane_depth(K: torch.Tensor, T_world_cam: torch.Tensor, height: int, width: int):
    """True z-depth ``[H, W]`` of the plane z = PLANE_Z (float64), written out independently."""
    u = (torch.arange(width, dtype=torch.float64) + 0.5) / width
    v = (torch.arange(height, dtype=torch.float64) + 0.5) / height
    x_cam = (u[None, :] - K[0, 2]) / K[0, 0]  # [1, W]
    y_cam = (v[:, None] - K[1, 2]) / K[1, 1]  # [H, 1]
    R, c = T_world_cam[:3, :3], T_world_cam[:3, 3]
    # World z of the ray direction (x_cam, y_cam, 1): R[2, 0] x + R[2, 1] y + R[2, 2].
    dz = R[2, 0] * x_cam + R[2, 1] * y_cam + R[2, 2]  # [H, W]
    return (PLANE_Z - c[2]) / dz


def residual_pattern(num_views: int, height: int, width: int) -> torch.Tensor:
    """Signed inverse-depth residual ``[V, H, W]``: positive left, negative right, 0 in the middle.

    Proportional to the column offset from the centre and scaled per view, so sign and size are
    known at every pixel.
    """
    u = torch.arange(width, dtype=torch.float64) - (width - 1) / 2.0  # exact 0 only if W odd
    base = -0.002 * u[None, None, :] / (width / 2)  # [1, 1, W], >0 for u < centre
    scale = torch.arange(1, num_views + 1, dtype=torch.float64)[:, None, None]
    return (base * scale).expand(num_views, height, width).clone()


def make_views(poses: list[torch.Tensor], height: int, width: int, with_depth: bool) -> ViewSet:
    V = len(poses)
    K = torch.tensor(
        [[1.1, 0, 0.5], [0, 1.1 * width / height, 0.5], [0, 0, 1]], dtype=torch.float64
    )
    intrinsics = K.expand(V, 3, 3).clone()
    extrinsics = torch.stack(poses)
    depth = torch.stack([plane_depth(K, T, height, width) for T in poses])  # [V, H, W]
    # An image with structure: a colour gradient, so RGB mode is recognisable.
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij"
    )
    image = torch.stack((xx, yy, 0.5 * (1 - xx)), dim=0).expand(V, 3, height, width).clone()
    return ViewSet(
        image=image.float(),
        intrinsics=intrinsics.float(),
        extrinsics=extrinsics.float(),
        near=torch.full((V,), NEAR),
        far=torch.full((V,), FAR),
        index=torch.arange(V) * 10,
        depth=depth.float() if with_depth else None,
    )


def make_scene(num_views: int = 2, height: int = 24, width: int = 32, with_gt: bool = True):
    """A SceneViews of the plane with ``num_views`` context views and one target view."""
    poses = [camera(-0.4 + 0.8 * i / max(1, num_views - 1), 0.1 * i, 0.08 * (i - 0.5), -0.05)
             for i in range(num_views)]  # fmt: skip
    context = make_views(poses, height, width, with_gt)
    target = make_views([camera(0.0, -0.2, 0.0, 0.1)], height, width, with_gt)
    return SceneViews(key="plane", source="test:plane", context=context, target=target)


def make_prediction(scene: SceneViews, feature_downscale: int = 4) -> Prediction:
    """Exact final depth, coarse = final inverse depth minus the known residual pattern."""
    ctx = scene.context
    V = ctx.num_views
    H, W = ctx.image_shape
    true_depth = torch.stack(
        [
            plane_depth(ctx.intrinsics[i].double(), ctx.extrinsics[i].double(), H, W)
            for i in range(V)
        ]
    )
    residual = residual_pattern(V, H, W)
    coarse_inv = 1.0 / true_depth - residual
    h, w = H // feature_downscale, W // feature_downscale
    match_prob = torch.linspace(0.2, 0.95, V * h * w, dtype=torch.float64).reshape(V, h, w)
    D = 4
    candidates = torch.linspace(1 / FAR, 1 / NEAR, D)[None, :, None, None].expand(V, D, h, w)
    probs = torch.softmax(torch.randn(V, D, h, w), dim=1)
    points = _points(true_depth, ctx)  # [V*H*W, 3]
    N = points.shape[0]
    harmonics = torch.zeros(1, N, 3, 9)
    harmonics[0, :, 0, 0] = 1.0  # DC red = 0.5 + 0.282 -> 199
    harmonics[0, :, 2, 0] = -1.0  # DC blue = 0.5 - 0.282 -> 56
    gaussians = Gaussians(
        means=points[None].float(),
        covariances=(torch.eye(3) * 1e-4).expand(1, N, 3, 3).clone(),
        harmonics=harmonics,
        opacities=torch.linspace(0.05, 1.0, N)[None],
    )
    return Prediction(
        coarse_inv_depth=coarse_inv.float(),
        mono_inv_residual=residual.float(),
        final_depth=true_depth.float(),
        confidence=match_prob.float(),
        match_probs=probs,
        inv_depth_candidates=candidates.clone(),
        near=ctx.near.clone(),
        far=ctx.far.clone(),
        gaussians=gaussians,
    )


def _points(depth: torch.Tensor, views: ViewSet) -> torch.Tensor:
    """World points ``[V*H*W, 3]`` of ``depth`` ``[V, H, W]`` (independent of src/geometry)."""
    V, H, W = depth.shape
    out = []
    for i in range(V):
        K, T = views.intrinsics[i].double(), views.extrinsics[i].double()
        u = (torch.arange(W, dtype=torch.float64) + 0.5) / W
        v = (torch.arange(H, dtype=torch.float64) + 0.5) / H
        x = ((u[None, :] - K[0, 2]) / K[0, 0]).expand(H, W)
        y = ((v[:, None] - K[1, 2]) / K[1, 1]).expand(H, W)
        cam = torch.stack((x, y, torch.ones_like(x)), dim=-1) * depth[i][..., None]
        out.append((cam @ T[:3, :3].T + T[:3, 3]).reshape(-1, 3))
    return torch.cat(out)


def make_loaded(num_views: int = 2, height: int = 24, width: int = 32, with_gt: bool = True):
    """A :class:`dsviewer.viewer.session.loaded.LoadedScene` of the plane (through the real
    build_layers)."""
    from dsviewer.viewer.session.loaded import run_prediction

    scene = make_scene(num_views, height, width, with_gt)
    return run_prediction(scene, make_prediction)


def tiny_checkpoint() -> Path:
    """A randomly initialised, very small DepthSplat checkpoint (64x64 input), cached on disk.

    Built with the project's own ``save_checkpoint`` so that ``dsviewer --ckpt`` loads it the
    way it loads a released file. The cache lives in the temp dir.
    """
    from dsviewer.dataset import PreprocessSettings
    from dsviewer.dataset.settings import settings_to_dict
    from dsviewer.model import DepthSplat, DepthSplatConfig, save_checkpoint

    config = DepthSplatConfig(
        vit_embed_dim=32, vit_depth=4, vit_num_heads=2, vit_tapped_layers=(0, 1, 2, 3),
        feature_channels=32, num_transformer_layers=1, cnn_stage_channels=(16, 24, 32),
        unet_channels=32, dpt_features=16, dpt_out_channels=(16, 16, 16, 16),
        feature_upsampler_channels=16,
    )  # fmt: skip
    preprocess = settings_to_dict(PreprocessSettings(image_shape=(64, 64), near=0.5, far=100.0))
    torch.manual_seed(0)
    model = DepthSplat(config)
    # Keyed by the settings and the state-dict layout, so a changed model never loads a stale
    # file.
    layout = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    digest = hashlib.sha1(repr((config, preprocess, layout)).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / "dsviewer-tests" / f"tiny-{digest}.safetensors"
    if not path.is_file():
        save_checkpoint(model, path, preprocess=preprocess)  # atomic: concurrent runs are safe
    return path

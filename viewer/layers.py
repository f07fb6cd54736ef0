"""Per-pixel geometry of one prediction in the USER's frame: what every consumer reads.

:func:`build_layers` is the only place where the model frame meets the user's frame: it applies
``scene.world_from_model`` (a :class:`~dsviewer.geometry.similarity.Similarity`) once, to every
point, depth, inverse depth, camera and Gaussian. Showing, picking, inspecting, rendering and
exporting all read the resulting :class:`Layers`, so none of them converts units again and no
field can be forgotten in model units.

All per-pixel maps are dense ``[V, H, W, ...]`` over the context views (flattening follows
``(v, h, w)``, the order of the pixel-aligned Gaussians), torch CPU tensors; consumers that want
numpy take ``.numpy()`` views (no copies).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from dsviewer.dataset.types import SceneViews, ViewSet
from dsviewer.geometry.projection import unproject_depth
from dsviewer.geometry.similarity import Similarity
from dsviewer.model.types import Gaussians, Prediction
from dsviewer.viewer.sfm_layer import SfmSamples, sfm_samples


@dataclass
class Cameras:
    """A set of views in the user's frame."""

    intrinsics: Tensor  # [V, 3, 3] normalized (unit-free, unchanged by the similarity)
    T_world_cam: Tensor  # [V, 4, 4] float64 camera-to-world, user frame, OpenCV axes
    images: Tensor  # [V, 3, H, W] float in [0, 1]
    frames: Tensor  # [V] int64 frame indices in the source scene
    near: Tensor  # [V] user units
    far: Tensor  # [V] user units
    camera_models: tuple[str, ...] | None = None
    image_names: tuple[str, ...] | None = None  # the image files as the source lists them

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def centers(self) -> Tensor:
        """``[V, 3]`` float64 camera centres."""
        return self.T_world_cam[:, :3, 3]


@dataclass
class CostVolume:
    """The last-scale matching distribution, at feature resolution ``h x w``."""

    probabilities: Tensor  # [V, D, h, w] softmax over the depth candidates
    candidate_inv_depth: Tensor  # [V, D, h, w] inverse depth of each candidate, 1 / user units


@dataclass
class Layers:
    context: Cameras
    target: Cameras | None
    rgb: Tensor  # [V, H, W, 3] uint8, the context images
    coarse_depth: Tensor  # [V, H, W] 1 / clamp(coarse_inv_depth, 1/far, 1/near)
    final_depth: Tensor  # [V, H, W] the model's output depth
    residual_inv: Tensor  # [V, H, W] mono residual in inverse depth, as the model adds it
    residual_metric: Tensor  # [V, H, W] final_depth - coarse_depth
    confidence: Tensor  # [V, H, W] last-scale max match probability, nearest-upsampled
    coarse_points: Tensor  # [V, H, W, 3]
    final_points: Tensor  # [V, H, W, 3]
    cost_volume: CostVolume
    world_from_model: Similarity  # what was applied (metrics.json states its scale)
    gt_depth: Tensor | None = None  # [V, H, W], 0 where unknown
    gt_points: Tensor | None = None  # [V, H, W, 3]
    gaussians: Gaussians | None = None  # B = 1, N = V * H * W in (v, h, w) order when aligned
    sfm: SfmSamples | None = None  # the capture's SfM reference (sfm_layer.py)

    @property
    def num_views(self) -> int:
        return int(self.final_depth.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        return int(self.final_depth.shape[1]), int(self.final_depth.shape[2])

    @property
    def gaussians_pixel_aligned(self) -> bool:
        return (
            self.gaussians is not None and self.gaussians.means.shape[1] == self.final_depth.numel()
        )

    def pixel_grid(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(view, row, column)`` index maps, each ``[V, H, W]`` int64."""
        V, H, W = self.final_depth.shape
        return torch.meshgrid(torch.arange(V), torch.arange(H), torch.arange(W), indexing="ij")


def valid_depth(depth: Tensor) -> Tensor:
    """``[...]`` bool: finite and positive depth (the one validity rule of every layer)."""
    return torch.isfinite(depth) & (depth > 0)


def camera_depth(points: Tensor, T_world_cam: Tensor) -> Tensor:
    """z-depth ``[V, H, W]`` of world points ``[V, H, W, 3]`` in their own view's camera."""
    axis = T_world_cam[:, :3, 2].to(points.dtype)  # [V, 3] optical axes
    center = T_world_cam[:, :3, 3].to(points.dtype)  # [V, 3]
    return torch.einsum("vhwc,vc->vhw", points - center[:, None, None], axis)


def cameras_in_user_frame(views: ViewSet, to_user: Similarity) -> Cameras:
    return Cameras(
        intrinsics=views.intrinsics.float().cpu(),
        T_world_cam=to_user.poses(views.extrinsics.double().cpu()),
        images=views.image.float().cpu(),
        frames=views.index.cpu(),
        near=to_user.lengths(views.near.float().cpu()),
        far=to_user.lengths(views.far.float().cpu()),
        camera_models=views.camera_models,
        image_names=views.image_names,
    )


def build_layers(scene: SceneViews, prediction: Prediction) -> Layers:
    """Every layer of one prediction, moved once to the user's frame.

    Depths are clamped and inverted in the model frame (where near/far apply), then scaled;
    unprojecting the scaled depth with the moved cameras equals moving the model-frame points
    (a similarity commutes with the pinhole unprojection).
    """
    to_user = scene.world_from_model
    context = cameras_in_user_frame(scene.context, to_user)
    target = None if scene.target is None else cameras_in_user_frame(scene.target, to_user)
    coarse_depth = to_user.lengths(prediction.coarse_depth())
    final_depth = to_user.lengths(prediction.final_depth.float().cpu())
    H, W = final_depth.shape[-2:]
    K = context.intrinsics
    T = context.T_world_cam.float()

    gt_depth = gt_points = None
    if scene.context.depth is not None:
        gt_depth = to_user.lengths(scene.context.depth.float().cpu())
        gt_points = unproject_depth(gt_depth, K, T)

    rgb = (context.images.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1)
    gaussians = None
    if prediction.gaussians is not None:
        gaussians = to_user.gaussians(_on_cpu(prediction.gaussians))
    return Layers(
        context=context,
        target=target,
        rgb=rgb.contiguous(),
        coarse_depth=coarse_depth,
        final_depth=final_depth,
        residual_inv=to_user.inverse_lengths(prediction.mono_inv_residual.float().cpu()),
        residual_metric=final_depth - coarse_depth,
        confidence=prediction.pixel_confidence(),
        coarse_points=unproject_depth(coarse_depth, K, T),
        final_points=unproject_depth(final_depth, K, T),
        cost_volume=CostVolume(
            probabilities=prediction.match_probs.float().cpu(),
            candidate_inv_depth=to_user.inverse_lengths(prediction.inv_depth_candidates.float().cpu()),
        ),
        world_from_model=to_user,
        gt_depth=gt_depth,
        gt_points=gt_points,
        gaussians=gaussians,
        sfm=None if scene.context.sfm is None else sfm_samples(scene.context.sfm, to_user,
                                                                (H, W)),
    )


def _on_cpu(gaussians: Gaussians) -> Gaussians:
    """The Gaussians as float32 CPU tensors, like every other map here (the model may run on
    CUDA)."""
    moved = {
        f.name: getattr(gaussians, f.name).detach().float().cpu()
        for f in fields(gaussians)
        if getattr(gaussians, f.name) is not None
    }
    return replace(gaussians, **moved)

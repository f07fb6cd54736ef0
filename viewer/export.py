"""The export files of one scene's layers, in the user's units, written atomically.

Files (fixed names, in one output folder):

=================  =============================================================================
``coarse.ply``     coarse points: xyz, uchar rgb, ``depth``, ``confidence``, int ``view u v``
``final.ply``      final points, same properties
``residual.ply``   final points with ``residual`` (final - coarse depth), ``residual_inv``,
                   ``confidence``, ``coarse_depth``, ``final_depth``, ``view u v``, rgb
``gt.ply``         GT points (only when the scene has GT depth), ``depth``, ``view u v``, rgb
``comparison.ply`` coarse (blue) and final (orange) points in one cloud, ``layer`` 0/1
``gaussians.ply``  the predicted Gaussians in the standard 3DGS layout (when the model has them)
``scene.html``     a self-contained offline viser scene: point layers and camera frustums
``panels.png``     per view: image, coarse depth, residual, final depth, GT error
``targets.png``    per target view: the Gaussians rendered there, the GT image, ``|error|`` and
                   PSNR (only when the scene has target views and the model Gaussians)
``metrics.json``   every statistic of :mod:`viewer.analysis` plus Chamfer distances, and under
                   ``targets`` the target frames' PSNR (see :mod:`viewer.target_render`)
=================  =============================================================================

Units: the model works in a possibly rescaled frame; ``scene.world_from_model`` (a similarity)
maps it back to the user's frame. Every exported point, depth, distance and Gaussian is
transformed by it (lengths scale by its factor ``s``, inverse depths by ``1 / s``); relative
errors are unit-free. ``metrics.json`` records ``s`` under ``units``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from src.io.atomic import atomic_write
from viewer.analysis import (
    AnalysisSettings,
    SceneAnalysis,
    analyze,
    chamfer_distances,
    cost_volume_stats,
)
from viewer.layers import Layers

if TYPE_CHECKING:
    from src.dataset.types import SceneViews
    from src.model.types import Gaussians, Prediction

EXPORT_FILES = (
    "coarse.ply", "final.ply", "residual.ply", "gt.ply", "comparison.ply", "gaussians.ply",
    "scene.html", "panels.png", "targets.png", "metrics.json",
)  # fmt: skip
COARSE_COLOR = (33, 102, 172)  # comparison.ply: coarse points
FINAL_COLOR = (230, 120, 20)  # comparison.ply: final points

ProgressFn = Callable[[str, float], None]


class ExportExistsError(ValueError):
    def __init__(self, out_dir: Path, existing: Sequence[str]) -> None:
        super().__init__(
            f"{out_dir} already holds export files ({', '.join(existing)}). Choose another "
            "--out folder, or pass --overwrite (overwrite=True) to replace them."
        )


class ExportPathError(ValueError):
    def __init__(self, out_dir: Path) -> None:
        super().__init__(f"--out {out_dir} exists and is not a folder; give a folder path.")


# --- units ----------------------------------------------------------------------------------


@dataclass
class UserFrame:
    """The layers and cameras moved to the user's frame by ``world_from_model``."""

    layers: Layers
    extrinsics: Tensor  # [V, 4, 4] T_user_cam
    scale: float  # lengths multiply by this
    rotation: Tensor  # [3, 3] float64
    translation: Tensor  # [3] float64


def to_user_frame(layers: Layers, extrinsics: Tensor, world_from_model) -> UserFrame:
    """Apply ``world_from_model`` to every geometric quantity of ``layers``.

    Args:
        layers: the model-frame layers. extrinsics: ``[V, 4, 4]`` model-frame ``T_world_cam``.
        world_from_model: ``[4, 4]`` similarity.
    """
    scale, R, t = world_from_model.scale, world_from_model.rotation, world_from_model.translation

    def points(p: Tensor | None) -> Tensor | None:
        if p is None:
            return None
        return (p.double() @ (scale * R).T + t).to(p.dtype)

    user = replace(
        layers,
        coarse_depth=layers.coarse_depth * scale,
        final_depth=layers.final_depth * scale,
        residual_inv=layers.residual_inv / scale,
        residual_metric=layers.residual_metric * scale,
        coarse_points=points(layers.coarse_points),
        final_points=points(layers.final_points),
        near=layers.near * scale,
        far=layers.far * scale,
        gt_depth=None if layers.gt_depth is None else layers.gt_depth * scale,
        gt_points=points(layers.gt_points),
        gaussians=None
        if layers.gaussians is None
        else gaussians_to_user(layers.gaussians, scale, R, t),
    )
    T_user_cam = cameras_to_user(extrinsics, scale, R, t)
    return UserFrame(layers=user, extrinsics=T_user_cam, scale=scale, rotation=R,
                     translation=t)  # fmt: skip


def cameras_to_user(extrinsics: Tensor, scale: float, R: Tensor, t: Tensor) -> Tensor:
    """``T_user_cam`` ``[V, 4, 4]`` (float32) of model-frame ``T_world_cam`` under ``s R x + t``.

    The camera axes turn by ``R``; the centres move like points. The result stays rigid.
    """
    T_user_cam = extrinsics.double().clone()
    T_user_cam[:, :3, :3] = R @ extrinsics[:, :3, :3].double()
    T_user_cam[:, :3, 3] = extrinsics[:, :3, 3].double() @ (scale * R).T + t
    return T_user_cam.float()


def gaussians_to_user(gaussians: Gaussians, scale: float, R: Tensor, t: Tensor) -> Gaussians:
    """Gaussians under ``x -> s R x + t``: covariances ``s^2 R C R^T``, SH rotated by ``R``.

    The SH turn in the 3DGS basis the renderers evaluate, so the exported Gaussians render
    exactly as the in-memory ones when the cameras move with them. (The model's own e3nn-style
    ``rotate_sh`` is not a rotation of that basis; DepthSplat is not equivariant there, and an
    export must keep what was shown.) Camera-frame ``scales`` grow by ``s``; camera-frame
    ``rotations_xyzw`` are unchanged.
    """
    from src.geometry.spherical_harmonics import rotate_sh_3dgs

    dtype = gaussians.means.dtype
    Rf = R.to(dtype)
    harmonics = gaussians.harmonics
    if not torch.allclose(R, torch.eye(3, dtype=R.dtype), atol=1e-12):
        harmonics = rotate_sh_3dgs(harmonics, R)
    return replace(
        gaussians,
        means=(gaussians.means.double() @ (scale * R).T + t).to(dtype),
        covariances=(scale**2) * (Rf @ gaussians.covariances @ Rf.T),
        harmonics=harmonics,
        scales=None if gaussians.scales is None else gaussians.scales * scale,
    )


# --- PLY ------------------------------------------------------------------------------------


def _write_points_ply(path: Path, properties: dict[str, np.ndarray]) -> None:
    """``x y z``, ``red green blue`` and the other per-vertex properties in order, atomically."""
    from src.io.ply import write_point_cloud_ply

    rest = dict(properties)
    points = np.stack([rest.pop(axis) for axis in ("x", "y", "z")], axis=-1)
    colors = np.stack([rest.pop(channel) for channel in ("red", "green", "blue")], axis=-1)
    write_point_cloud_ply(path, points, colors, rest)


def _pixel_properties(layers: Layers, mask: Tensor) -> dict[str, np.ndarray]:
    """``view u v`` (int32) and uchar ``red green blue`` of the pixels in ``mask`` [V, H, W]."""
    view, row, col = (index[mask].numpy() for index in layers.pixel_grid())
    rgb = layers.rgb[mask].numpy()
    return {
        "red": rgb[:, 0], "green": rgb[:, 1], "blue": rgb[:, 2],
        "view": view.astype(np.int32), "u": col.astype(np.int32), "v": row.astype(np.int32),
    }  # fmt: skip


def _xyz(points: Tensor, mask: Tensor) -> dict[str, np.ndarray]:
    p = points[mask].float().numpy()
    return {"x": p[:, 0], "y": p[:, 1], "z": p[:, 2]}


def _f32(values: Tensor, mask: Tensor) -> np.ndarray:
    return values[mask].float().numpy()


def _valid(depth: Tensor, points: Tensor) -> Tensor:
    return torch.isfinite(depth) & (depth > 0) & torch.isfinite(points).all(-1)


def point_layer_properties(layers: Layers) -> dict[str, dict[str, np.ndarray]]:
    """The vertex properties of each point PLY by file name (``gt.ply`` only with GT)."""
    coarse_mask = _valid(layers.coarse_depth, layers.coarse_points)
    final_mask = _valid(layers.final_depth, layers.final_points)
    files = {
        "coarse.ply": {
            **_xyz(layers.coarse_points, coarse_mask),
            **_pixel_properties(layers, coarse_mask),
            "depth": _f32(layers.coarse_depth, coarse_mask),
            "confidence": _f32(layers.confidence, coarse_mask),
        },
        "final.ply": {
            **_xyz(layers.final_points, final_mask),
            **_pixel_properties(layers, final_mask),
            "depth": _f32(layers.final_depth, final_mask),
            "confidence": _f32(layers.confidence, final_mask),
        },
    }
    both = coarse_mask & final_mask
    files["residual.ply"] = {
        **_xyz(layers.final_points, both),
        **_pixel_properties(layers, both),
        "residual": _f32(layers.residual_metric, both),
        "residual_inv": _f32(layers.residual_inv, both),
        "confidence": _f32(layers.confidence, both),
        "coarse_depth": _f32(layers.coarse_depth, both),
        "final_depth": _f32(layers.final_depth, both),
    }
    comparison = {}
    for key in ("x", "y", "z", "view", "u", "v"):
        comparison[key] = np.concatenate((files["coarse.ply"][key], files["final.ply"][key]))
    num_coarse, num_final = int(coarse_mask.sum()), int(final_mask.sum())
    colors = np.concatenate((np.tile(np.array(COARSE_COLOR, np.uint8), (num_coarse, 1)),
                             np.tile(np.array(FINAL_COLOR, np.uint8), (num_final, 1))))  # fmt: skip
    comparison.update(red=colors[:, 0], green=colors[:, 1], blue=colors[:, 2])
    layer = (np.zeros(num_coarse, np.uint8), np.ones(num_final, np.uint8))
    comparison["layer"] = np.concatenate(layer)
    files["comparison.ply"] = comparison
    if layers.gt_depth is not None and layers.gt_points is not None:
        gt_mask = _valid(layers.gt_depth, layers.gt_points)
        files["gt.ply"] = {
            **_xyz(layers.gt_points, gt_mask),
            **_pixel_properties(layers, gt_mask),
            "depth": _f32(layers.gt_depth, gt_mask),
        }
    return files


# --- HTML -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportSettings:
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    html_point_budget: int = 200_000
    """Points per layer in scene.html at most (a fixed stride keeps the file small)."""
    panel_dpi: int = 100
    depth_unit: str = ""
    """Shown in the panel titles (e.g. "m"); metrics.json states the scale either way."""
    max_target_views: int | None = 8
    """Target views rendered for targets.png at most, evenly spread (None: all)."""


def scene_html(scene: SceneViews, user: UserFrame, point_budget: int) -> str:
    """A self-contained HTML document of a viser scene: frustums plus coarse/final/GT points.

    A throwaway viser server on 127.0.0.1 (random port, never announced) holds the nodes while
    they are serialized; it is stopped before returning.
    """
    import viser

    from src.dataset.types import ViewSet
    from viewer.scene import (
        CONTEXT_COLOR,
        TARGET_COLOR,
        add_frustums,
        add_point_layer,
        up_direction,
    )

    layers = user.layers
    context = scene.context
    views = ViewSet(image=context.image, intrinsics=context.intrinsics, extrinsics=user.extrinsics,
                    near=layers.near, far=layers.far, index=context.index)  # fmt: skip
    final_ok = _valid(layers.final_depth, layers.final_points)
    depths = layers.final_depth[final_ok]
    frustum_scale = 0.1 * float(depths.median()) if depths.numel() else 0.3
    point_size = _point_size(depths, context.intrinsics, layers.image_shape[1])
    clouds = {"coarse": (layers.coarse_points, layers.coarse_depth, False),
              "final": (layers.final_points, layers.final_depth, True)}  # fmt: skip
    if layers.gt_points is not None and layers.gt_depth is not None:
        clouds["gt"] = (layers.gt_points, layers.gt_depth, False)
    with contextlib.redirect_stdout(io.StringIO()):  # viser prints a banner on start/stop
        server = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    try:
        _set_initial_view(server, user.extrinsics.double().numpy(), depths, up_direction)
        add_frustums(server, "/context", views, CONTEXT_COLOR, frustum_scale)
        if scene.target is not None:
            target = scene.target
            T_user = cameras_to_user(target.extrinsics, user.scale, user.rotation,
                                     user.translation)  # fmt: skip
            add_frustums(server, "/target", replace(target, extrinsics=T_user), TARGET_COLOR,
                         frustum_scale)  # fmt: skip
        for name, (points, depth, visible) in clouds.items():
            mask = _valid(depth, points)
            p = points[mask].float().numpy()
            rgb = layers.rgb[mask].numpy()
            step = max(1, math.ceil(len(p) / point_budget))
            add_point_layer(server, f"/layers/{name}", p[::step], rgb[::step], point_size,
                            visible=visible)  # fmt: skip
        return server.scene.as_html()
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            server.stop()


def _set_initial_view(server, extrinsics: np.ndarray, depths: Tensor, up_direction) -> None:
    """Open the file from behind the context cameras, looking where they look, their up up."""
    median_depth = float(depths.median()) if depths.numel() else 1.0
    centers = extrinsics[:, :3, 3]
    forward = extrinsics[:, :3, 2].mean(axis=0)
    forward /= max(float(np.linalg.norm(forward)), 1e-9)
    up = up_direction(extrinsics)
    server.scene.set_up_direction(tuple(float(x) for x in up))
    server.initial_camera.up = tuple(float(x) for x in up)
    server.initial_camera.look_at = tuple(centers.mean(axis=0) + median_depth * forward)
    server.initial_camera.position = tuple(centers.mean(axis=0) - 0.5 * median_depth * forward)


def _point_size(depths: Tensor, intrinsics: Tensor, width: int) -> float:
    """1.5 pixel footprints at the median depth: ``depth / fx_pixels`` is one pixel's size."""
    median = float(depths.median()) if depths.numel() else 1.0
    fx_pixels = float(intrinsics[:, 0, 0].mean()) * width
    return 1.5 * median / max(fx_pixels, 1e-6)


# --- metrics --------------------------------------------------------------------------------


def export_metrics(
    scene: SceneViews, user: UserFrame, analysis: SceneAnalysis, point_counts: dict[str, int]
) -> dict:
    """Everything ``metrics.json`` holds (see the module docstring)."""
    layers = user.layers
    coarse = layers.coarse_points[_valid(layers.coarse_depth, layers.coarse_points)].numpy()
    final = layers.final_points[_valid(layers.final_depth, layers.final_points)].numpy()
    chamfer = {"coarse_vs_final": chamfer_distances(coarse, final)}
    if layers.gt_points is not None and layers.gt_depth is not None:
        gt = layers.gt_points[_valid(layers.gt_depth, layers.gt_points)].numpy()
        chamfer["coarse_vs_gt"] = chamfer_distances(coarse, gt)
        chamfer["final_vs_gt"] = chamfer_distances(final, gt)
    height, width = layers.image_shape
    return {
        "scene": {
            "key": scene.key,
            "source": scene.source,
            "context_frames": [int(i) for i in scene.context.index.tolist()],
            "image_shape": [height, width],
            "near": layers.near.tolist(),
            "far": layers.far.tolist(),
        },
        "units": {
            "frame": "user (world_from_model applied)",
            "scale_from_model": user.scale,
            "note": "points, depths, residual, RMSE and Chamfer distances are in the user's units "
            "(model units times scale_from_model); residual_inv in 1 / user units; relative "
            "errors, AbsRel, delta and shares are unit-free",
        },
        "point_counts": point_counts,
        "chamfer": chamfer,
        "chamfer_definition": "open3d compute_point_cloud_distance both ways; chamfer = mean of "
        "the two directed mean nearest-neighbour distances",
        **analysis.summary(),
    }


# --- the export -----------------------------------------------------------------------------


@dataclass
class ExportResult:
    out_dir: Path
    files: dict[str, Path]  # file name -> path, only the files written
    metrics: dict = field(default_factory=dict)


def existing_exports(out_dir: Path) -> list[str]:
    if not out_dir.exists():
        return []
    if not out_dir.is_dir():
        raise ExportPathError(out_dir)
    return [name for name in EXPORT_FILES if (out_dir / name).exists()]


def export_scene(
    out_dir: str | Path,
    scene: SceneViews,
    prediction: Prediction,
    layers: Layers,
    *,
    overwrite: bool = False,
    settings: ExportSettings = ExportSettings(),
    progress: ProgressFn | None = None,
) -> ExportResult:
    """Write every export file of one scene into ``out_dir`` (created if missing).

    Args:
        out_dir: output folder. If it already holds any of :data:`EXPORT_FILES`, nothing is
            written and :class:`ExportExistsError` is raised unless ``overwrite``.
        scene, prediction, layers: the scene, the model's prediction and ``build_layers`` of
            them (model frame; moved to the user's frame here).
        settings: analysis thresholds and output sizes.
        progress: optional ``progress(stage, fraction)`` callback.

    Returns:
        The written files and the metrics dictionary (as in ``metrics.json``).
    """
    from src.io.ply import write_gaussians_ply
    from viewer.panels import render_panels
    from viewer.target_render import (
        render_target_views,
        target_metrics,
        target_panels_png,
        target_render_unavailable,
    )

    out_dir = Path(out_dir)
    existing = existing_exports(out_dir)
    if existing and not overwrite:
        raise ExportExistsError(out_dir, existing)
    out_dir.mkdir(parents=True, exist_ok=True)

    def report(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(stage, fraction)

    report("Moving to the user's units", 0.0)
    context = scene.context
    user = to_user_frame(layers, context.extrinsics.float(), scene.world_from_model)
    report("Analysing", 0.1)
    analysis = analyze(user.layers, context.intrinsics.float(), user.extrinsics, settings.analysis)
    files: dict[str, Path] = {}
    point_counts: dict[str, int] = {}
    report("Writing point clouds", 0.3)
    for name, properties in point_layer_properties(user.layers).items():
        _write_points_ply(out_dir / name, properties)
        files[name] = out_dir / name
        point_counts[name] = len(properties["x"])
    if user.layers.gaussians is not None:
        report("Writing Gaussians", 0.45)
        write_gaussians_ply(out_dir / "gaussians.ply", user.layers.gaussians,
                            camera_rotations=_producing_camera_rotations(user))  # fmt: skip
        files["gaussians.ply"] = out_dir / "gaussians.ply"
        point_counts["gaussians.ply"] = int(user.layers.gaussians.means.shape[1])
    report("Writing scene.html", 0.55)
    html = scene_html(scene, user, settings.html_point_budget)
    _write_bytes(out_dir / "scene.html", html.encode("utf-8"))
    files["scene.html"] = out_dir / "scene.html"
    report("Drawing panels.png", 0.7)
    panels = render_panels(user.layers, analysis.gt_error_final, dpi=settings.panel_dpi,
                           depth_unit=settings.depth_unit)  # fmt: skip
    _write_bytes(out_dir / "panels.png", panels)
    files["panels.png"] = out_dir / "panels.png"
    report("Rendering the target views", 0.75)
    # Rendered in the model frame: the images and PSNR do not depend on world_from_model.
    targets = render_target_views(scene, prediction, max_views=settings.max_target_views)
    if targets is not None:
        _write_bytes(out_dir / "targets.png", target_panels_png(targets, dpi=settings.panel_dpi))
        files["targets.png"] = out_dir / "targets.png"
    report("Computing Chamfer distances", 0.85)
    metrics = export_metrics(scene, user, analysis, point_counts)
    metrics["cost_volume"] = cost_volume_stats(prediction)
    if targets is not None:
        metrics["targets"] = target_metrics(targets)
    else:
        metrics["targets_skipped"] = target_render_unavailable(scene, prediction)
    metrics["files"] = sorted([*files, "metrics.json"])
    _write_bytes(out_dir / "metrics.json", json.dumps(metrics, indent=2).encode("utf-8"))
    files["metrics.json"] = out_dir / "metrics.json"
    # A gt.ply / gaussians.ply of an earlier export must not survive an overwrite; removed only
    # now, so a failed export leaves the previous one whole (each file is replaced atomically).
    for name in set(existing) - set(files):
        (out_dir / name).unlink()
    report("Done", 1.0)
    return ExportResult(out_dir=out_dir, files=files, metrics=metrics)


def export_archive(
    scene: SceneViews,
    prediction: Prediction,
    layers: Layers,
    *,
    settings: ExportSettings | None = None,
    progress: ProgressFn | None = None,
) -> tuple[str, bytes]:
    """``(file name, zip bytes)`` of every export file, for a browser download button.

    The files are written by :func:`export_scene` into a temporary folder, which is removed.
    """
    import tempfile
    import zipfile

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", scene.key).strip("._") or "scene"
    with tempfile.TemporaryDirectory(prefix="dsviewer-export-") as folder:
        result = export_scene(Path(folder) / stem, scene, prediction, layers,
                              settings=settings or ExportSettings(), progress=progress)  # fmt: skip
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, path in sorted(result.files.items()):
                archive.write(path, arcname=f"{stem}/{name}")
    return f"{stem}_export.zip", buffer.getvalue()


def _producing_camera_rotations(user: UserFrame) -> Tensor | None:
    """``[N, 3, 3]`` c2w rotation of the view behind each pixel-aligned Gaussian, if known.

    With it the 3DGS writer uses the model's own scale/rotation factors (exact even for flat
    Gaussians) instead of factoring the covariance.
    """
    gaussians = user.layers.gaussians
    num_views, height, width = user.layers.final_depth.shape
    if gaussians is None or gaussians.scales is None or gaussians.rotations_xyzw is None:
        return None
    if gaussians.means.shape[1] != num_views * height * width:
        return None
    rotations = user.extrinsics[:, :3, :3].double()  # [V, 3, 3]
    return rotations.repeat_interleave(height * width, dim=0)  # [V*H*W, 3, 3], (v, h, w) order


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as file:
        file.write(data)

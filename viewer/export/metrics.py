"""``metrics.json`` and ``cameras.json``: the numbers and the cameras of one export.

Units: everything is in the user's frame (``world_from_model`` applied once, in
:mod:`dsviewer.viewer.layers`): points, depths, residuals, RMSE and Chamfer distances in user units,
``residual_inv`` in 1 / user units; relative errors, AbsRel, delta and shares are unit-free.
"""

from __future__ import annotations

from dsviewer.stage_timer import stage
from dsviewer.viewer.analysis import SceneAnalysis
from dsviewer.viewer.analysis.metrics import chamfer_distances, cost_volume_stats
from dsviewer.viewer.layers import Cameras, Layers
from dsviewer.viewer.session.loaded import LoadedScene
from dsviewer.viewer.session.runs import run_definition


def _cameras(cameras: Cameras) -> list[dict]:
    height, width = cameras.image_shape
    models = cameras.camera_models or ("PINHOLE",) * cameras.num_views
    return [
        {
            "frame": int(cameras.frames[i]),
            "image_size": [height, width],
            "intrinsics": cameras.intrinsics[i].double().tolist(),
            "T_world_cam": cameras.T_world_cam[i].tolist(),
            "camera_model": models[i],
            "image_file": None if cameras.image_names is None else cameras.image_names[i],
        }
        for i in range(cameras.num_views)
    ]


def cameras_json(layers: Layers) -> dict:
    """Every camera as the export's points see it (user frame, after preprocessing)."""
    return {
        "convention": "intrinsics normalized (row 0 / width, row 1 / height) for image_size "
        "[H, W]; T_world_cam camera-to-world in the user's frame, OpenCV axes (+X right, +Y "
        "down, +Z forward); camera_model: the source's model (undistorted to a pinhole when it "
        "had distortion); image_file: the view's image as the capture's camera file lists it "
        "(null for datasets and generated scenes)",
        "context": _cameras(layers.context),
        "target": [] if layers.target is None else _cameras(layers.target),
    }


def chamfer_table(loaded: LoadedScene) -> dict:
    """Chamfer distances between the coarse, final and GT point clouds."""
    with stage("analysis"):
        return _chamfer_table(loaded)


def _chamfer_table(loaded: LoadedScene) -> dict:
    clouds = {}
    for key in ("coarse", "final", "gt"):
        flat = loaded.flat(key)
        if flat is not None:
            clouds[key] = flat.points[flat.valid]
    pairs = [("coarse", "final"), ("coarse", "gt"), ("final", "gt")]
    return {f"{a}_vs_{b}": chamfer_distances(clouds[a], clouds[b])
            for a, b in pairs if a in clouds and b in clouds}  # fmt: skip


def context_baseline(layers: Layers) -> float:
    """The widest distance between two context camera centres (user units)."""
    import torch

    centers = layers.context.centers
    return float(torch.cdist(centers, centers).max())


def target_metrics(loaded: LoadedScene) -> dict:
    from dsviewer.viewer.target_render import target_render_unavailable

    renders = loaded.targets
    if renders is None:
        return {"skipped": target_render_unavailable(loaded.layers)}
    return {
        "index": [int(i) for i in renders.index.tolist()],
        "psnr": [float(p) for p in renders.psnr.tolist()],
        "mean_psnr": renders.mean_psnr,
        "psnr_definition": "-10 log10(MSE) of the clamped [0, 1] images over all pixels and RGB; "
        "black background; mean_psnr is the mean over the rendered views",
        "distance_to_context": renders.distance.tolist(),
        "angle_to_context_degrees": renders.angle.tolist(),
        "context_baseline": context_baseline(loaded.layers),
        "geometry_definition": "per target: distance to the nearest context camera centre (user "
        "units) and angle to the nearest context viewing direction; far or off-axis targets see "
        "what the context did not, so their PSNR says little about the geometry",
    }


def export_metrics(
    loaded: LoadedScene, analysis: SceneAnalysis, point_counts: dict[str, int]
) -> dict:
    """Everything ``metrics.json`` holds."""
    layers, scene = loaded.layers, loaded.scene
    height, width = layers.image_shape
    return {
        "scene": {
            "key": scene.key,
            "source": scene.source,
            "run": loaded.run_name,
            "checkpoint": loaded.checkpoint,
            "context_frames": layers.context.frames.tolist(),
            "image_shape": [height, width],
            "near": layers.context.near.tolist(),
            "far": layers.context.far.tolist(),
            "run_definition": run_definition(loaded),
        },
        "units": {
            "frame": "user (world_from_model applied)",
            "scale_from_model": layers.world_from_model.scale,
            "note": "points, depths, residual, RMSE and Chamfer distances are in the user's units "
            "(model units times scale_from_model); residual_inv in 1 / user units; relative "
            "errors, AbsRel, delta and shares are unit-free",
        },
        "notes": [{"code": n.code, "message": n.message} for n in loaded.notes],
        "checks": dict(loaded.checks),
        "capture_check": [finding.as_dict() for finding in loaded.findings],
        "point_counts": point_counts,
        "chamfer": chamfer_table(loaded),
        "chamfer_definition": "open3d compute_point_cloud_distance both ways; chamfer = mean of "
        "the two directed mean nearest-neighbour distances",
        "cost_volume": cost_volume_stats(layers.cost_volume),
        "targets": target_metrics(loaded),
        **analysis.summary(),
    }

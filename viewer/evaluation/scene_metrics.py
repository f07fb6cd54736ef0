"""The evaluation's one bridge to the viewer pipeline: a scene in, its metrics and thumbnails out.

Everything of ``viewer/`` that the evaluation runs is imported here and nowhere else in
``viewer/evaluation``: the model session, prediction to layers, the analyses, the target
renders, the colour maps and the viewer's command line. (The run spec and settings an
evaluation is given, :mod:`dsviewer.viewer.session.specs`, are plain data that ``job.py``
holds.) When the viewer's pipeline moves, only this file changes.

Metrics (named in :mod:`dsviewer.viewer.evaluation.columns`) are read from the analysis summary that
``metrics.json`` of an export holds, and ``target_psnr`` is the ``mean_psnr`` of the same target
renders, so an evaluation and an export of the same scene agree. One exception:
``residual_rel_mean`` is computed here from the same layers (``metrics.json`` has the absolute
residual only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.dataset import SYNTHETIC_PREFIX
from dsviewer.stage_timer import stage
from dsviewer.viewer.evaluation.columns import METRIC_NAMES, THUMBNAIL_NAMES

if TYPE_CHECKING:
    from dsviewer.dataset.types import SceneViews
    from dsviewer.model.types import Prediction
    from dsviewer.viewer.session.loaded import LoadedScene
    from dsviewer.viewer.session.model import ModelSession
    from dsviewer.viewer.session.specs import RunSpec, SessionSettings


@dataclass
class SceneResult:
    views: int  # context views
    targets: int  # target views in the scene (rendered: at most --max-target-views)
    metrics: dict[str, float | None]  # every name of METRIC_NAMES; None where undefined
    thumbnails: dict[str, np.ndarray]  # THUMBNAIL_NAMES -> [H, W, 3] uint8, full resolution


def open_session(ckpt: Path, settings: SessionSettings) -> ModelSession:
    """The model, loaded once per process (``settings.device``: auto, cpu, cuda or cuda:N)."""
    from dsviewer.viewer.session.model import ModelSession

    return ModelSession(ckpt, settings)


def encoder_seconds(session: ModelSession, scene: SceneViews) -> float:
    """Wall time of the model's forward pass alone on ``scene`` (the throughput bound)."""
    import time

    import torch

    start = time.perf_counter()
    session.predict(scene)
    if str(session.backend.device).startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _finite(value: object) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def predict_scene(session: ModelSession, scene: SceneViews,
                  run: RunSpec | None = None) -> tuple[SceneViews, Prediction]:  # fmt: skip
    """The model's part of a scene: ``run``'s views and planes applied, then the forward pass.
    ``run``: the views and planes asked for (None: the scene as loaded)."""
    from dsviewer.viewer.session.model import finish

    if run is not None:
        with stage("preprocess"):
            scene = finish(scene, run)
    with stage("forward"):
        return scene, session.predict(scene)


def scene_result(scene: SceneViews, prediction: Prediction,
                 max_target_views: int | None = None) -> SceneResult:  # fmt: skip
    """Everything after the forward pass: the layers, then :func:`loaded_result`. Reads
    nothing but its arguments, so it may run on another thread while the model predicts the
    next scene."""
    from dsviewer.viewer.session.loaded import run_prediction

    loaded = run_prediction(scene, lambda _: prediction)  # the forward pass is already done
    return loaded_result(loaded, max_target_views)


def loaded_result(loaded: LoadedScene, max_target_views: int | None = None) -> SceneResult:
    """The metrics and thumbnails of a scene already predicted (what :func:`evaluate_scene`
    computes after the model; a viewer that keeps its predictions calls this directly); see
    :data:`METRIC_NAMES`."""
    import torch

    from dsviewer.viewer.analysis import AnalysisSettings
    from dsviewer.viewer.target_render import render_target_views

    scene = loaded.scene
    layers = loaded.layers  # the user's frame and units, as the viewer shows them
    analysis = loaded.analysis(AnalysisSettings())
    with stage("analysis"):
        summary = analysis.summary()
        consistency = summary["consistency"]
        clamp = summary["clamp"]
        gt = summary.get("gt")
        sfm = summary.get("sfm")
        coarse = layers.coarse_depth.double()
        relative = (layers.residual_metric.double().abs() / coarse)[torch.isfinite(coarse)]
        residual_rel = float(relative.nanmean()) if relative.numel() else None
    renders = render_target_views(layers, max_views=max_target_views)
    metrics = {
        "gt_abs_rel_coarse": gt and gt["coarse"]["overall"]["abs_rel"],
        "gt_abs_rel_final": gt and gt["final"]["overall"]["abs_rel"],
        "gt_delta_final": gt and gt["final"]["overall"]["delta"],
        "sfm_abs_rel_coarse": sfm and sfm["coarse"]["overall"]["abs_rel"],
        "sfm_abs_rel_final": sfm and sfm["final"]["overall"]["abs_rel"],
        "sfm_scale_final": sfm and sfm["final"]["overall"]["median_ratio"],
        "sfm_points": sfm and sfm["final"]["overall"]["points"],
        "inconsistent_coarse": consistency["coarse"]["overall"]["inconsistent_share"],
        "inconsistent_final": consistency["final"]["overall"]["inconsistent_share"],
        "clamp_final": clamp["final_at_near_share"] + clamp["final_at_far_share"],
        "confidence_mean": summary["confidence"].get("mean"),
        "residual_abs_mean": summary["residual"]["abs_metric_mean"],
        "residual_rel_mean": residual_rel,
        "target_psnr": None if renders is None else renders.mean_psnr,
    }
    assert tuple(metrics) == METRIC_NAMES, "columns.METRICS and this table must list the same"
    with stage("thumbnails"):
        thumbnails = _thumbnails(layers)
    return SceneResult(
        views=scene.context.num_views,
        targets=0 if scene.target is None else scene.target.num_views,
        metrics={name: _finite(value) for name, value in metrics.items()},
        thumbnails=thumbnails,
    )


def evaluate_scene(
    session: ModelSession, scene: SceneViews, max_target_views: int | None = None,
    run: RunSpec | None = None,
) -> SceneResult:
    """Predict, derive the layers, analyse, render the targets, one step after the other."""
    return scene_result(*predict_scene(session, scene, run), max_target_views)


def _thumbnails(layers) -> dict[str, np.ndarray]:
    """The first context view's maps coloured as the viewer's panels colour them."""
    from dsviewer.viewer.colormaps import (
        apply_diverging,
        apply_sequential,
        robust_limit,
        robust_range,
    )

    coarse = layers.coarse_depth[0].numpy()
    final = layers.final_depth[0].numpy()
    residual = layers.residual_metric[0].numpy()
    low, high = robust_range(np.concatenate((coarse.ravel(), final.ravel())))  # one range: compare
    maps = (layers.rgb[0].numpy(), apply_sequential(coarse, low, high),
            apply_sequential(final, low, high),
            apply_diverging(residual, robust_limit(residual)))  # fmt: skip
    return dict(zip(THUMBNAIL_NAMES, maps, strict=True))


def viewer_command(
    ckpt: Path,
    spec: str,
    data_roots: Sequence[Path] = (),
    index: Path | None = None,
    config: Path | None = None,
    depthsplat_repo: Path | None = None,
    dataset_key: bool = False,
    run: RunSpec | None = None,
    context: Sequence[int] | None = None,
) -> list[str]:
    """The ``dsviewer`` arguments that open ``spec`` as the evaluation ran it, from any folder
    (``run``: its views and planes, ``context``: the frames, when they were given).

    Every path is absolute; so is ``spec`` when it names an existing folder or file (a capture)
    and is not a ``dataset_key``; keys and ``synthetic:<seed>`` stay as they are. The spec is one
    ``--scene=<spec>`` word, so a key starting with ``-`` is not read as a flag.
    """
    if not dataset_key and not spec.startswith(SYNTHETIC_PREFIX) and Path(spec).exists():
        spec = str(Path(spec).resolve())
    command = ["dsviewer", "--ckpt", str(Path(ckpt).resolve()), f"--scene={spec}"]
    for root in data_roots:
        command += ["--data-root", str(Path(root).resolve())]
    for flag, path in (("--index", index), ("--config", config),
                       ("--depthsplat-repo", depthsplat_repo)):  # fmt: skip
        if path is not None:
            command += [flag, str(Path(path).resolve())]
    if context is not None:
        command += ["--context", *map(str, context)]
    if run is not None:
        for flag, value in (("--views", run.views), ("--near", run.near), ("--far", run.far)):
            if value is not None:
                command += [flag, repr(value)]
    return command

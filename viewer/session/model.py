"""A model session: one checkpoint opened once, turning scenes and run specs into LoadedScenes.

The one loader path of dsviewer, one verb per step:

    RunSpec.checkpoint --open_backend--> ModelBackend    (read, settle settings, build: once)
    scene spec --views(spec, run)--> SceneViews           (load_scene with preprocess(run))
    SceneViews --run(scene, run)--> LoadedScene           (predict, check, build the layers)

``preprocess(run)`` is the model's own preprocessing with what the run changes (the number of
context views, near/far given in the model's units); ``finish(scene, run)`` applies what can
only be applied once the scene is loaded (near/far in the user's units, through the scene's
``world_from_model`` scale) and checks the view count. Scenes loaded another way (the batch
loader of ``dsviewer export`` and ``dsviewer eval``) go through ``finish`` too.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.errors import InputError
from dsviewer.viewer.session.loaded import LoadedScene, ProgressFn, report, run_prediction
from dsviewer.viewer.session.specs import RunSpec, SessionSettings, model_path

if TYPE_CHECKING:
    from dsviewer.backends import ModelBackend
    from dsviewer.dataset.preprocess import PreprocessSettings
    from dsviewer.dataset.types import SceneNote, SceneViews
    from dsviewer.model.types import Prediction


class RunPlanesError(InputError):
    """Near/far planes given for a run that cannot be used on its scene."""


class ViewCountError(InputError):
    """``--views N`` contradicts the context views a scene's evaluation index fixes."""


class ModelSession:
    """One checkpoint's backend, opened once, and the session's settings.

    Args:
        checkpoint: the model file (its absolute path names the session's runs).
        settings: how the model is opened (device, config, DepthSplat checkout) and where
            scenes are found (data roots, evaluation index, target frames).
        backend: this checkpoint already opened with these settings (the Python API's
            ``Model``), so that the file is not read a second time.
    """

    def __init__(self, checkpoint: str | Path, settings: SessionSettings | None = None,
                 progress: ProgressFn | None = None,
                 backend: ModelBackend | None = None) -> None:  # fmt: skip
        from dsviewer.backends import open_backend

        self.settings = settings or SessionSettings()
        self.checkpoint = model_path(checkpoint)
        if backend is not None:
            self.backend = backend
            return
        from dsviewer.model.decoder.rasterizer_numba import warm_up_in_background

        warm_up_in_background(self.settings.device)  # target renders, while the model loads
        report(progress, f"Loading model {self.checkpoint.name}", 0.0)
        self.backend: ModelBackend = open_backend(
            self.checkpoint, device=self.settings.device, config=self.settings.config,
            depthsplat_repo=self.settings.depthsplat_repo,
        )  # fmt: skip
        report(progress, "Model loaded", 1.0)

    @property
    def load_seconds(self) -> float:
        return self.backend.load_seconds

    def own_planes(self) -> tuple[float, float]:
        """The near and far plane the model uses unless a run sets others (model units)."""
        return float(self.backend.preprocess.near), float(self.backend.preprocess.far)

    def backend_notes(self) -> list[SceneNote]:
        from dsviewer.dataset.types import SceneNote

        return [SceneNote("model_warning", text) for text in getattr(self.backend, "warnings", [])]

    def preprocess(self, run: RunSpec | None = None) -> PreprocessSettings:
        """The model's preprocessing with ``run``'s view count and model-unit planes."""
        settings = self.backend.preprocess
        if run is None:
            return settings
        changes: dict = {}
        if run.views is not None:
            changes["num_context_views"] = run.views
        if run.units == "model":
            changes.update({name: value for name, value in (("near", run.near), ("far", run.far))
                            if value is not None})  # fmt: skip
        return dataclasses.replace(settings, **changes) if changes else settings

    def views(self, spec: str, run: RunSpec | None = None) -> SceneViews:
        """Load and preprocess scene ``spec`` for this model as ``run`` asks (default: the
        session's or the scene's default views and the model's own planes)."""
        from dsviewer.dataset import CaptureOptions, load_scene

        run = run or RunSpec(self.checkpoint)
        target = self.settings.target
        context = self.settings.context if run.context is None else run.context
        scene = load_scene(
            spec,
            data_roots=list(self.settings.data_root),
            index_path=self.settings.index,
            context=None if context is None else list(context),
            target=None if target is None else list(target),
            settings=self.preprocess(run),
            capture=CaptureOptions(sfm_max_error=self.settings.sfm_max_error),
        )
        return finish(scene, run)

    def predict(self, scene: SceneViews) -> Prediction:
        return self.backend.predict(scene.context)

    def run(self, scene: SceneViews, progress: ProgressFn | None = None,
            seconds: dict[str, float] | None = None, run_name: str | None = None,
            run: RunSpec | None = None) -> LoadedScene:  # fmt: skip
        """Predict on ``scene`` and build its layers; ``run`` is recorded as what was asked.
        A capture's check findings (``capture_check.py``) join its notes."""
        from dsviewer.viewer.capture_check import finding_notes
        from dsviewer.viewer.check_inputs import capture_findings

        findings = capture_findings(scene, self.preprocess(run))  # none unless a capture
        loaded = run_prediction(scene, self.predict, progress, seconds, run_name or
                                self.backend.name, self.backend_notes() + finding_notes(findings))
        loaded.findings = findings
        loaded.checkpoint = str(self.checkpoint)
        loaded.asked = (run or RunSpec(self.checkpoint)).asked()
        return loaded

    def load(self, spec: str, run: RunSpec | None = None, progress: ProgressFn | None = None,
             run_name: str | None = None) -> LoadedScene:  # fmt: skip
        """Load ``spec``, run the model, build the layers."""
        report(progress, f"Loading scene {spec}", 0.0)
        start = time.perf_counter()
        scene = self.views(spec, run)
        seconds = {"load_scene": time.perf_counter() - start}
        return self.run(scene, progress, seconds, run_name, run)


def finish(scene: SceneViews, run: RunSpec) -> SceneViews:
    """``scene`` as ``run`` asks for it once loaded: user-unit planes in, the view count checked."""
    check_view_count(scene, run)
    return with_user_planes(scene, run)


def check_view_count(scene: SceneViews, run: RunSpec) -> None:
    """``run.views`` chooses views only where dsviewer chooses them; an evaluation index entry
    that fixes another count is a contradiction to resolve, not to override silently."""
    count = scene.context.num_views
    if run.views is None or run.context is not None or count == run.views:
        return
    frames = ", ".join(str(int(f)) for f in scene.context.index)
    raise ViewCountError(
        f"--views {run.views} asks for {run.views} context views, but scene {scene.key!r} "
        f"gets {count} (frames {frames}) from the evaluation index. Drop --views to use the "
        f"index's views, or drop --index to let dsviewer choose {run.views}."
    )


def with_user_planes(scene: SceneViews, run: RunSpec) -> SceneViews:
    """Near/far given in the user's units, in the model's: divided by ``world_from_model``'s
    scale (a capture normalised by its baseline has scale != 1; datasets 1). The notes on the
    chosen views are redone with the new planes."""
    if run.units != "user" or (run.near is None and run.far is None):
        return scene
    from dsviewer.dataset.notes import selection_notes

    scale = float(scene.world_from_model.scale)
    context = scene.context
    near = context.near if run.near is None else context.near.new_full(
        context.near.shape, run.near / scale)  # fmt: skip
    far = context.far if run.far is None else context.far.new_full(
        context.far.shape, run.far / scale)  # fmt: skip
    if not bool(((near > 0) & (near < far)).all()):
        raise RunPlanesError(
            f"--near {run.near} and --far {run.far} (in the scene's units) leave no depth range "
            f"for scene {scene.key!r}: the planes would be near {float(near.min()) * scale:g}, "
            f"far {float(far.max()) * scale:g} in its units (the model's own are near "
            f"{float(context.near.min()) * scale:g}, far {float(context.far.max()) * scale:g}). "
            "Give 0 < --near < --far."
        )

    def planes(views):
        if views is None:
            return None
        count = views.num_views
        return dataclasses.replace(views, near=near[:1].expand(count).clone(),
                                   far=far[:1].expand(count).clone())  # fmt: skip

    old = selection_notes(scene.context, scene.target)
    updated = dataclasses.replace(scene, context=planes(scene.context), target=planes(scene.target))
    updated.notes = [n for n in scene.notes if n not in old] + selection_notes(
        updated.context, updated.target)
    return updated

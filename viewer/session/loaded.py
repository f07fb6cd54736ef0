"""A loaded scene: SceneViews -> Prediction -> Layers, and everything derived, computed once.

A :class:`LoadedScene` is one model run on one scene: the preprocessed views, the prediction,
the layers in the user's frame, and caches of what is derived from them for given settings (the
analysis, the target renders, the view parameters). The live viewer, the export button,
``dsviewer export`` and ``scene.html`` all read the same object, so what the GUI shows and
what the files hold cannot disagree. Heavy modules load inside the functions that need them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from dsviewer.stage_timer import stage

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dsviewer.dataset.types import SceneNote, SceneViews
    from dsviewer.model.types import Prediction
    from dsviewer.viewer.analysis import AnalysisSettings, SceneAnalysis
    from dsviewer.viewer.layers import Layers
    from dsviewer.viewer.point_layers import FlatLayer
    from dsviewer.viewer.target_render import TargetRenders
    from dsviewer.viewer.view_params import ViewParameters

ProgressFn = Callable[[str, float], None]
"""``progress(stage_description, fraction_done_in_[0, 1])``."""


def report(progress: ProgressFn | None, stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, fraction)


@dataclass(eq=False)  # identity: it holds tensors and caches
class LoadedScene:
    """One model run on one scene and everything derived from it (cached, thread-safe)."""

    scene: SceneViews
    prediction: Prediction
    layers: Layers
    run_name: str = "run"
    checkpoint: str | None = None  # the model file (None: a model given as a function)
    asked: dict = field(default_factory=dict)  # what its RunSpec asked for (RunSpec.asked)
    seconds: dict[str, float] = field(default_factory=dict)  # per stage
    notes: list[SceneNote] = field(default_factory=list)
    checks: dict[str, int] = field(default_factory=dict)  # non-finite counts of the prediction
    findings: list = field(default_factory=list)  # the capture check's (capture_check.py)
    # One lock per cache: the GUI thread asks for flat layers and cached analyses while the job
    # thread computes an analysis or renders the targets, and must not wait for either.
    _analysis_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _targets_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _flat_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _analyses: dict = field(default_factory=dict, repr=False)
    _flat: dict = field(default_factory=dict, repr=False)

    def analysis(self, settings: AnalysisSettings) -> SceneAnalysis:
        """The analysis for ``settings``, computed on first use."""
        from dsviewer.viewer.analysis import analyze

        with self._analysis_lock:
            if settings not in self._analyses:
                # A new dict, assigned at once: cached_analysis reads it without the lock.
                self._analyses = {settings: analyze(self.layers, settings)}  # keep the latest
            return self._analyses[settings]

    def cached_analysis(self, settings: AnalysisSettings) -> SceneAnalysis | None:
        """The analysis for ``settings`` if it is ready, else None (never waits)."""
        return self._analyses.get(settings)

    @cached_property
    def targets(self) -> TargetRenders | None:
        """Every target view rendered with its PSNR (None without targets or Gaussians)."""
        from dsviewer.viewer.target_render import render_target_views

        with self._targets_lock:
            return render_target_views(self.layers)

    @cached_property
    def view(self) -> ViewParameters:
        from dsviewer.viewer.view_params import view_parameters

        return view_parameters(self.layers)

    def flat(self, layer: str) -> FlatLayer | None:
        """A point layer as flat numpy views (cached)."""
        from dsviewer.viewer.point_layers import flat_layer

        with self._flat_lock:
            if layer not in self._flat:
                self._flat[layer] = flat_layer(self.layers, layer)
            return self._flat[layer]


def prediction_checks(prediction: Prediction) -> dict[str, int]:
    """How many pixels / Gaussians of a prediction hold NaN or inf (all zero when healthy)."""
    import torch

    def bad_pixels(t) -> int:
        return int((~torch.isfinite(t)).sum())

    checks = {
        "nonfinite_coarse_depth_pixels": bad_pixels(prediction.coarse_inv_depth),
        "nonfinite_mono_residual_pixels": bad_pixels(prediction.mono_inv_residual),
        "nonfinite_final_depth_pixels": bad_pixels(prediction.final_depth),
    }
    if prediction.gaussians is not None:
        checks["nonfinite_gaussians"] = int((~prediction.gaussians.finite()).sum())
    return checks


def check_notes(checks: dict[str, int]) -> list[SceneNote]:
    from dsviewer.dataset.types import SceneNote

    notes = []
    for name, count in checks.items():
        if count:
            what = name.removeprefix("nonfinite_").replace("_", " ")
            notes.append(SceneNote("nonfinite_prediction", f"The model produced {count:,} {what} "
                                   "that are NaN or infinite; they are not shown. Check the "
                                   "checkpoint's weights and the input cameras."))  # fmt: skip
    return notes


def print_notes(console, notes: Sequence[SceneNote], scene: str | None = None) -> None:
    """Each distinct note as one console line (``scene`` names it when several are exported)."""
    from dsviewer.viewer.escape import escape_rich

    where = f" ({escape_rich(scene)})" if scene else ""
    for note in dict.fromkeys(notes):
        console.print(f"[yellow]Note{where}:[/yellow] {escape_rich(note.message)}")


def run_prediction(
    scene: SceneViews,
    predict_fn: Callable[[SceneViews], Prediction],
    progress: ProgressFn | None = None,
    seconds: dict[str, float] | None = None,
    run_name: str = "run",
    extra_notes: list[SceneNote] | None = None,
) -> LoadedScene:
    """Run ``predict_fn`` on ``scene``, check the prediction and build its layers."""
    from dsviewer.viewer.layers import build_layers

    seconds = dict(seconds or {})
    views = scene.context.num_views
    height, width = scene.context.image_shape
    report(progress, f"Running the model on {views} views at {width} x {height}", 0.33)
    start = time.perf_counter()
    with stage("forward"):
        prediction = predict_fn(scene)
    seconds["predict"] = time.perf_counter() - start
    report(progress, "Unprojecting depth maps", 0.66)
    start = time.perf_counter()
    with stage("unproject"):
        layers = build_layers(scene, prediction)
        checks = prediction_checks(prediction)
    seconds["unproject"] = time.perf_counter() - start
    notes = [*scene.notes, *(extra_notes or []), *check_notes(checks)]
    report(progress, "Scene ready", 1.0)
    return LoadedScene(scene=scene, prediction=prediction, layers=layers, run_name=run_name,
                       seconds=seconds, notes=notes, checks=checks)  # fmt: skip

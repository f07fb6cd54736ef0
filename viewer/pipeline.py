"""SceneViews -> Prediction -> Layers, in stages that report progress.

Shared by the live viewer (which runs it in a worker thread) and the exporter. The model is
loaded once per session and reused when the user switches scenes. Heavy modules (torch, the
model, the dataset loaders) are imported inside the functions that need them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from viewer.options import SceneOptions

if TYPE_CHECKING:
    from src.dataset.types import SceneViews
    from src.model.types import Prediction
    from viewer.layers import Layers

ProgressFn = Callable[[str, float], None]
"""``progress(stage_description, fraction_done_in_[0, 1])``."""

class MissingOptionError(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"--{name} is required (or pass --demo to open the bundled demo). "
            "Run `dsviewer --help` for the options."
        )


def resolve_demo(options: SceneOptions) -> SceneOptions:
    """Fill the model and scene options from the bundled demo (``viewer/assets``).

    The first demo scene is opened; with :class:`ViewerOptions` the others are offered in the
    GUI's scene switcher. Raises the assets' ``DemoAssetsMissingError`` (a FileNotFoundError)
    with instructions when the files are not installed.
    """
    from viewer.assets import demo_checkpoint, demo_data_root, demo_scene_keys
    from viewer.options import ViewerOptions

    options.ckpt = demo_checkpoint()
    options.data_root = [demo_data_root(), *options.data_root]
    keys = demo_scene_keys()
    options.scene = options.scene or keys[0]
    if isinstance(options, ViewerOptions):
        options.scenes = [*options.scenes, *[k for k in keys if k != options.scene]]
    return options


@dataclass
class LoadedScene:
    """One scene, the model's prediction on it and the derived per-pixel layers."""

    scene: SceneViews
    prediction: Prediction
    layers: Layers
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


def _report(progress: ProgressFn | None, stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, fraction)


class ModelSession:
    """A loaded model plus the scene options; turns scene specs into :class:`LoadedScene`."""

    def __init__(self, options: SceneOptions, progress: ProgressFn | None = None) -> None:
        if options.ckpt is None:
            raise MissingOptionError("ckpt")
        from src.backends import open_backend

        self.options = options
        _report(progress, f"Loading model {Path(options.ckpt).name}", 0.0)
        self.backend = open_backend(options.ckpt, device=options.device, config=options.config)
        self.load_seconds = self.backend.load_seconds
        _report(progress, "Model loaded", 1.0)

    def views(self, spec: str | None = None) -> SceneViews:
        """Load and preprocess ``spec`` (default: ``options.scene``) for this model."""
        from src.dataset import load_scene

        spec = spec or self.options.scene
        if not spec:
            raise MissingOptionError("scene")
        return load_scene(
            spec,
            data_roots=list(self.options.data_root),
            index_path=self.options.index,
            context=self.options.context,
            target=self.options.target,
            settings=self.backend.preprocess,
        )

    def load(self, spec: str | None = None, progress: ProgressFn | None = None) -> LoadedScene:
        """Load ``spec``, run the model, unproject (the viewer's scene loader)."""
        _report(progress, f"Loading scene {spec or self.options.scene}", 0.0)
        start = time.perf_counter()
        scene = self.views(spec)
        seconds = {"load_scene": time.perf_counter() - start}
        return run_prediction(scene, self.predict, progress, seconds)

    def predict(self, scene: SceneViews) -> Prediction:
        return self.backend.predict(scene.context)


def run_prediction(
    scene: SceneViews,
    predict_fn: Callable[[SceneViews], Prediction],
    progress: ProgressFn | None = None,
    seconds: dict[str, float] | None = None,
) -> LoadedScene:
    """Run ``predict_fn`` on ``scene`` and derive the layers, timing each stage."""
    from viewer.layers import build_layers

    seconds = dict(seconds or {})
    views = scene.context.num_views
    height, width = scene.context.image_shape
    _report(progress, f"Running the model on {views} views at {height}x{width}", 0.33)
    start = time.perf_counter()
    prediction = predict_fn(scene)
    seconds["predict"] = time.perf_counter() - start
    _report(progress, "Unprojecting depth maps", 0.66)
    start = time.perf_counter()
    layers = build_layers(scene, prediction)
    seconds["unproject"] = time.perf_counter() - start
    _report(progress, "Scene ready", 1.0)
    return LoadedScene(scene=scene, prediction=prediction, layers=layers, seconds=seconds)

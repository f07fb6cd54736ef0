"""Runs: one model on one scene with given views and near/far; several runs of a scene compare.

A :class:`RunSpec` is a run's definition (checkpoint, context frames, near/far); it outlives
scene switches, so switching scenes re-runs every definition on the new scene. A
:class:`RunLoader` holds the loaded models (each checkpoint once) and turns a scene spec plus a
run spec into a :class:`~dsviewer.viewer.pipeline.LoadedScene`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.viewer.options import SceneOptions

if TYPE_CHECKING:
    from dsviewer.viewer.pipeline import LoadedScene, ModelSession, ProgressFn


def model_path(checkpoint: str | Path) -> Path:
    """A checkpoint's absolute path (symbolic links kept: the file name names the run)."""
    return Path(os.path.abspath(checkpoint))


def run_planes(loaded: LoadedScene) -> tuple[float, float]:
    """The near and far plane a run's model used, in the model's units (RunSpec's units; the
    layers hold them in the user's units, which differ for rescaled captures)."""
    context = loaded.scene.context
    return float(context.near[0]), float(context.far[0])


def run_definition(loaded: LoadedScene) -> dict:
    """What made a run, for the files that describe it: checkpoint, context frames, near/far
    (the model's units)."""
    near, far = run_planes(loaded)
    frames = loaded.layers.context.frames.tolist()
    return {"checkpoint": loaded.checkpoint, "context_frames": frames, "near": near, "far": far}


@dataclass(frozen=True)
class RunSpec:
    checkpoint: Path
    context: tuple[int, ...] | None = None  # None: the scene's default context views
    near: float | None = None  # in the model's units; None: the model's own near/far
    far: float | None = None

    def label(self, name: str, loaded: LoadedScene) -> str:
        """``name: frames 0, 5; near 1, far 25`` (frames and planes as the run used them; the
        planes in the model's units, as a RunSpec gives them)."""
        frames = ", ".join(str(int(f)) for f in loaded.layers.context.frames)
        near, far = run_planes(loaded)
        return f"{name}: frames {frames}; near {near:.3g}, far {far:.3g}"


@dataclass(eq=False)  # identity: a run holds tensors, and two loads of one spec are two runs
class Run:
    """A run of the shown scene: its name, its definition and its result."""

    name: str
    spec: RunSpec
    loaded: LoadedScene
    visible: bool = True

    @property
    def label(self) -> str:
        return self.spec.label(self.name, self.loaded)


class RunLoader:
    """The models of a viewer session (each checkpoint loaded once) and how runs are made."""

    def __init__(self, options: SceneOptions, progress: ProgressFn | None = None) -> None:
        from dsviewer.viewer.pipeline import ModelSession

        self.options = options
        self.sessions: dict[Path, ModelSession] = {}  # by resolved path: each file loaded once
        for checkpoint in options.ckpt:
            path = model_path(checkpoint)
            if path not in self.sessions:
                self.sessions[path] = ModelSession(options, progress, path)

    @property
    def checkpoints(self) -> list[Path]:
        return list(self.sessions)

    def own_planes(self, checkpoint: Path) -> tuple[float, float]:
        """The near and far plane a model uses unless a run sets others (the model's units)."""
        settings = self.sessions[model_path(checkpoint)].backend.preprocess
        return float(settings.near), float(settings.far)

    def default_specs(self) -> list[RunSpec]:
        """One run per --ckpt (a file given twice is two runs, as in ``dsviewer export``), with
        the scene's default views and each model's near/far."""
        return [RunSpec(model_path(checkpoint)) for checkpoint in self.options.ckpt]

    def names(self, specs: list[RunSpec]) -> list[str]:
        from dsviewer.viewer.compare import unique_names

        return unique_names([spec.checkpoint.stem for spec in specs])

    def load(self, scene_spec: str, run: RunSpec, name: str,
             progress: ProgressFn | None = None) -> LoadedScene:  # fmt: skip
        """Run ``run`` on ``scene_spec``: its views, its near/far, its model."""
        session = self.sessions[model_path(run.checkpoint)]
        settings = session.backend.preprocess
        if run.near is not None or run.far is not None:
            settings = dataclasses.replace(settings, near=run.near or settings.near,
                                           far=run.far or settings.far)  # fmt: skip
        start = time.perf_counter()
        scene = session.views(scene_spec, context=run.context, settings=settings)
        seconds = {"load_scene": time.perf_counter() - start}
        return session.run(scene, progress, seconds, run_name=name)

    def load_all(self, scene_spec: str, specs: list[RunSpec],
                 progress: ProgressFn | None = None) -> list[Run]:  # fmt: skip
        names = self.names(specs)
        return [Run(name, spec, self.load(scene_spec, spec, name, progress))
                for name, spec in zip(names, specs, strict=True)]  # fmt: skip


def estimated_bytes(loaded: LoadedScene) -> int:
    """Memory a run holds (approximate): the arrays of its scene, prediction and layers and of
    what it has cached (analysis, flat layers, target renders)."""
    import numpy as np
    import torch

    def arrays(value, seen: set[int]):
        if id(value) in seen:
            return
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            yield value.numel() * value.element_size()
        elif isinstance(value, np.ndarray):
            yield value.nbytes
        elif isinstance(value, dict):
            for item in value.values():
                yield from arrays(item, seen)
        elif isinstance(value, list | tuple):
            for item in value:
                yield from arrays(item, seen)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            for field in dataclasses.fields(value):
                yield from arrays(getattr(value, field.name), seen)

    cached = [value for name, value in vars(loaded).items() if name in CACHES]
    parts = (loaded.scene, loaded.prediction, loaded.layers, *cached)
    seen: set[int] = set()
    return sum(size for part in parts for size in arrays(part, seen))


CACHES = ("_analyses", "_flat", "targets")  # LoadedScene's caches (targets: a cached_property)

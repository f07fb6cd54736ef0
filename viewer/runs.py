"""Runs: one model on one scene with given views and near/far; several runs of a scene compare.

A :class:`RunSpec` is a run's definition (checkpoint, context frames, near/far); it outlives
scene switches, so switching scenes re-runs every definition on the new scene. A
:class:`RunLoader` holds the loaded models (each checkpoint once) and turns a scene spec plus a
run spec into a :class:`~viewer.pipeline.LoadedScene`.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from viewer.options import SceneOptions

if TYPE_CHECKING:
    from viewer.pipeline import LoadedScene, ModelSession, ProgressFn


def model_planes(loaded: LoadedScene) -> tuple[float, float]:
    """The near and far plane a run's model used, in the model's units (RunSpec's units; the
    layers hold them in the user's units, which differ for rescaled captures)."""
    context = loaded.scene.context
    return float(context.near[0]), float(context.far[0])


@dataclass(frozen=True)
class RunSpec:
    checkpoint: Path
    context: tuple[int, ...] | None = None  # None: the scene's default context views
    near: float | None = None  # in the model's units; None: the model's own near/far
    far: float | None = None

    def label(self, name: str, loaded: LoadedScene | None = None) -> str:
        """``name: frames 0, 5; near 1, far 25`` (frames and planes as the run used them; the
        planes in the model's units, as a RunSpec gives them)."""
        if loaded is None:
            frames = "default views" if self.context is None else f"frames {list(self.context)}"
            return f"{name}: {frames}"
        frames = ", ".join(str(int(f)) for f in loaded.layers.context.frames)
        near, far = model_planes(loaded)
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
        from viewer.pipeline import ModelSession

        self.options = options
        self.sessions: dict[Path, ModelSession] = {}
        for checkpoint in options.ckpt:
            self.sessions[Path(checkpoint)] = ModelSession(options, progress, checkpoint)

    @property
    def checkpoints(self) -> list[Path]:
        return list(self.sessions)

    def default_specs(self) -> list[RunSpec]:
        """One run per checkpoint, with the scene's default views and each model's near/far."""
        return [RunSpec(checkpoint) for checkpoint in self.sessions]

    def names(self, specs: list[RunSpec]) -> list[str]:
        from viewer.compare import unique_names

        return unique_names([spec.checkpoint.stem for spec in specs])

    def load(self, scene_spec: str, run: RunSpec, name: str,
             progress: ProgressFn | None = None) -> LoadedScene:  # fmt: skip
        """Run ``run`` on ``scene_spec``: its views, its near/far, its model."""
        session = self.sessions[Path(run.checkpoint)]
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
    """Memory a run holds: every tensor of its prediction and its layers."""
    import torch

    def tensors(value, seen: set[int]):
        if isinstance(value, torch.Tensor):
            if id(value) not in seen:
                seen.add(id(value))
                yield value
        elif dataclasses.is_dataclass(value):
            for field in dataclasses.fields(value):
                yield from tensors(getattr(value, field.name), seen)

    seen: set[int] = set()
    return sum(t.numel() * t.element_size() for part in (loaded.prediction, loaded.layers)
               for t in tensors(part, seen))  # fmt: skip

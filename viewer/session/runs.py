"""Runs: one model on one scene with given views and near/far; several runs of a scene compare.

A :class:`~dsviewer.viewer.session.specs.RunSpec` is a run's definition; it outlives scene
switches, so switching scenes re-runs every definition on the new scene. A :class:`RunLoader`
holds the loaded models (each checkpoint once, as :class:`ModelSession`) and turns a scene spec
plus a run spec into a :class:`Run`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.viewer.session.specs import RunSpec, SessionSettings, model_path, run_names

if TYPE_CHECKING:
    from dsviewer.viewer.session.loaded import LoadedScene, ProgressFn
    from dsviewer.viewer.session.model import ModelSession


def run_planes(loaded: LoadedScene) -> tuple[float, float]:
    """The near and far plane a run's model used, in the model's units (the GUI's New run
    units; the layers hold them in the user's units, which differ for rescaled captures)."""
    context = loaded.scene.context
    return float(context.near[0]), float(context.far[0])


def run_definition(loaded: LoadedScene) -> dict:
    """What made a run, for the files that describe it (compare.json, metrics.json): the
    checkpoint, the context frames and their count, near/far in the model's units and in the
    user's, and what its RunSpec asked for."""
    near, far = run_planes(loaded)
    frames = loaded.layers.context.frames.tolist()
    return {"checkpoint": loaded.checkpoint, "context_frames": frames, "views": len(frames),
            "near": near, "far": far, "near_user": float(loaded.layers.context.near[0]),
            "far_user": float(loaded.layers.context.far[0]),
            "asked": dict(loaded.asked)}  # fmt: skip


@dataclass(eq=False)  # identity: a run holds tensors, and two loads of one spec are two runs
class Run:
    """A run of the shown scene: its name, its definition and its result."""

    name: str
    spec: RunSpec
    loaded: LoadedScene
    visible: bool = True

    @property
    def label(self) -> str:
        """``name: frames 0, 5; near 1, far 25`` (the frames and model-unit planes it used)."""
        frames = ", ".join(str(int(f)) for f in self.loaded.layers.context.frames)
        near, far = run_planes(self.loaded)
        return f"{self.name}: frames {frames}; near {near:.3g}, far {far:.3g}"


class RunLoader:
    """The models of a session (each checkpoint loaded once) and how its runs are made.

    Args:
        specs: the session's first runs (one per ``--ckpt``; a file given twice is two runs of
            one loaded model); every checkpoint a later run may use must be among them.
        settings: how models are opened and where scenes are found.
    """

    def __init__(self, specs: Sequence[RunSpec], settings: SessionSettings | None = None,
                 progress: ProgressFn | None = None) -> None:  # fmt: skip
        from dsviewer.viewer.session.model import ModelSession

        self.specs = [dataclasses.replace(s, checkpoint=model_path(s.checkpoint)) for s in specs]
        self.settings = settings or SessionSettings()
        self.sessions: dict[Path, ModelSession] = {}  # by absolute path: each file loaded once
        for spec in self.specs:
            if spec.checkpoint not in self.sessions:
                self.sessions[spec.checkpoint] = ModelSession(spec.checkpoint, self.settings,
                                                              progress)  # fmt: skip

    @property
    def checkpoints(self) -> list[Path]:
        return list(self.sessions)

    def own_planes(self, checkpoint: Path) -> tuple[float, float]:
        """The near and far plane a model uses unless a run sets others (the model's units)."""
        return self.sessions[model_path(checkpoint)].own_planes()

    def default_specs(self) -> list[RunSpec]:
        """The session's first runs, as given."""
        return list(self.specs)

    def names(self, specs: Sequence[RunSpec]) -> list[str]:
        return run_names(specs)

    def load(self, scene_spec: str, run: RunSpec, name: str,
             progress: ProgressFn | None = None) -> LoadedScene:  # fmt: skip
        """Run ``run`` on ``scene_spec``: its views, its near/far, its model."""
        session = self.sessions[model_path(run.checkpoint)]
        start = time.perf_counter()
        scene = session.views(scene_spec, run)
        seconds = {"load_scene": time.perf_counter() - start}
        return session.run(scene, progress, seconds, run_name=name, run=run)

    def load_all(self, scene_spec: str, specs: Sequence[RunSpec],
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

"""A step is a run: the watch's runs through the viewer's own run machinery.

:class:`StepRunLoader` is the :class:`~dsviewer.viewer.session.runs.RunLoader` of a watch. The
viewer asks it for runs exactly as it asks for runs of ``--ckpt`` files (a scene switch reruns
A and B on the new scene, New run makes another run of a step's checkpoint, B - A compares two
runs), and it answers from the :class:`~dsviewer.viewer.watch.engine.WatchEngine`: the kept run
of a step when it is there, else the step run again from its checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.viewer.session.runs import Run, RunLoader
from dsviewer.viewer.session.specs import RunSpec, model_path, unique_names
from dsviewer.viewer.watch.engine import step_name

if TYPE_CHECKING:
    from dsviewer.viewer.session.loaded import LoadedScene, ProgressFn
    from dsviewer.viewer.watch.engine import WatchEngine


class StepRunLoader(RunLoader):
    """Runs of the steps of ``engine``; it opens no model itself (the engine does, one at a
    time, and drops it after use)."""

    def __init__(self, engine: WatchEngine) -> None:
        super().__init__([], engine.settings)
        self.engine = engine

    @property
    def checkpoints(self) -> list[Path]:
        """The steps' checkpoints, by step (New run offers them)."""
        return [self.engine.spec(step.step).checkpoint for step in self.engine.steps()]

    def own_planes(self, checkpoint: Path) -> tuple[float, float]:
        step = self.engine.step_of(model_path(checkpoint))
        planes = None if step is None else self.engine.own_planes(step)
        if planes is None:  # not run yet: open it once to read them
            from dsviewer.viewer.session.model import ModelSession

            return ModelSession(checkpoint, self.settings).own_planes()
        return planes

    def default_specs(self) -> list[RunSpec]:
        """The newest step's run."""
        steps = self.engine.steps()
        return [self.engine.spec(steps[-1].step)] if steps else []

    def step_of(self, spec: RunSpec) -> int | None:
        """The step ``spec`` is the default run of (None: another run of a step's file)."""
        step = self.engine.step_of(model_path(spec.checkpoint))
        return step if step is not None and spec == self.engine.spec(step) else None

    def names(self, specs: Sequence[RunSpec]) -> list[str]:
        """``step-N`` for a step's own run, the file stem for any other, made unique."""
        steps = [self.step_of(spec) for spec in specs]
        return unique_names([spec.checkpoint.stem if step is None else step_name(step)
                             for spec, step in zip(specs, steps, strict=True)])  # fmt: skip

    def load(self, scene_spec: str, run: RunSpec, name: str,
             progress: ProgressFn | None = None) -> LoadedScene:  # fmt: skip
        self.engine.show_scene(scene_spec)
        step = self.step_of(run)
        if step is None:
            return self.engine.run(scene_spec, run, name, progress)
        return self.engine.loaded(scene_spec, step, progress)  # named step-N by the engine

    def load_all(self, scene_spec: str, specs: Sequence[RunSpec],
                 progress: ProgressFn | None = None) -> list[Run]:  # fmt: skip
        """The runs of a scene switch; the steps among them are kept while on screen."""
        runs = super().load_all(scene_spec, specs, progress)
        steps = (self.step_of(run.spec) for run in runs)
        self.engine.pin({(step, scene_spec) for step in steps if step is not None})
        return runs

    def step_run(self, scene_spec: str, step: int, name: str | None = None,
                 progress: ProgressFn | None = None) -> Run:  # fmt: skip
        """The run of ``step`` on ``scene_spec`` (named ``step-N`` unless ``name``)."""
        spec = self.engine.spec(step)
        name = name or step_name(step)
        return Run(name, spec, self.load(scene_spec, spec, name, progress))

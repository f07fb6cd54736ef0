"""A rank's scenes through load, model and results, overlapped so the model waits for nothing.

Each scene takes three steps: :meth:`ScenePipeline.load` (read and preprocess),
:meth:`ScenePipeline.forward` (the model) and :meth:`ScenePipeline.finish` (layers, analyses,
target renders, thumbnails, the record written). With ``overlap`` (the default) they run as a
three-stage pipeline where the model runs on a GPU: while this thread runs the model on scene
i, a loader thread reads scene i+1 and a results thread finishes scene i-1. On a CPU, and with
``dsviewer eval --no-overlap``, each scene's steps run one after the other (see
:func:`overlaps_the_model`).

The records are the same either way: every step reads only its own scene, and the results
thread is a single worker that finishes the scenes in the order of the shard, so the records are
written in that order too. Each scene's :class:`~dsviewer.stage_timer.StageTimer` travels with
it from thread to thread, so its stage times are its own whatever ran beside it.

Threads, not processes: torch releases the GIL in its kernels, and a scene's layers stay where
they are. The helper threads keep the rank's torch thread count: float32 sums depend on it, and
the results must not depend on the loop. So that the overlap does not starve the model, the
results thread (and the torch threads it starts) runs at a lower OS priority: the model's
threads get the cores first, the results take the cycles they leave idle, and whenever the
model waits for them (at most one scene is being finished) they run alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dsviewer.stage_timer import StageTimer, add_stages, stage, timing
from dsviewer.viewer.errors import interrupted, is_user_error
from dsviewer.viewer.evaluation.columns import STATUS_FAILED, STATUS_OK
from dsviewer.viewer.evaluation.plan import PlannedScene
from dsviewer.viewer.evaluation.records import SceneRecord, frames_of, png_base64

RESULTS_NICENESS = 10  # the results thread's nice: about a tenth of a model thread's share

if TYPE_CHECKING:
    from dsviewer.dataset.types import SceneViews
    from dsviewer.model.types import Prediction
    from dsviewer.viewer.evaluation.job import EvalJob
    from dsviewer.viewer.evaluation.loading import SceneLoader
    from dsviewer.viewer.evaluation.run_log import RunLog
    from dsviewer.viewer.session.model import ModelSession


@dataclass
class SceneWork:
    """One scene on its way through the pipeline."""

    planned: PlannedScene
    timer: StageTimer = field(default_factory=StageTimer)
    scene: SceneViews | None = None
    prediction: Prediction | None = None
    error: Exception | None = None  # the first step that failed stops the scene there


@contextmanager
def _scene_step(work: SceneWork) -> Iterator[None]:
    """A step of ``work``'s scene, timed on its own timer; an error in it is kept on ``work``
    and stops the scene there (a failing scene is a row, not the end of the run)."""
    with timing(work.timer):
        try:
            yield
        except Exception as error:
            if interrupted():  # a signal that came out as another exception
                raise
            work.error = error


@dataclass
class ScenePipeline:
    """The three steps of a scene for one rank (``save``: writes a finished record)."""

    session: ModelSession
    loader: SceneLoader
    job: EvalJob
    run: str  # the run's hash, written into every record
    save: Callable[[SceneRecord], None]
    log: RunLog | None = None
    written: dict[str, float] = field(default_factory=dict)  # the rank's seconds per stage

    def load(self, planned: PlannedScene) -> SceneWork:
        work = SceneWork(planned)
        with _scene_step(work), stage("decode"):  # preprocessing is taken out of it
            work.scene = self.loader.load(planned)
        return work

    def forward(self, work: SceneWork) -> SceneWork:
        from dsviewer.viewer.evaluation.scene_metrics import predict_scene

        if work.error is None:
            with _scene_step(work):
                work.scene, work.prediction = predict_scene(self.session, work.scene,
                                                            self.job.run)  # fmt: skip
        return work

    def finish(self, work: SceneWork) -> SceneRecord:
        """The scene's record, written; its stages hold everything but that write (a file
        cannot hold the time of its own writing: the rank's totals in summary.json do)."""
        record = self.record(work)
        start = time.perf_counter()
        self.save(record)
        writes = {"writes": time.perf_counter() - start}
        self.written = add_stages(add_stages(self.written, record.stages), writes)
        return record

    def record(self, work: SceneWork) -> SceneRecord:
        from dsviewer.viewer.evaluation.scene_metrics import scene_result

        planned = work.planned
        with timing(work.timer):
            try:
                if work.error is not None:
                    raise work.error
                result = scene_result(work.scene, work.prediction, self.job.max_target_views)
                with stage("thumbnails"):
                    thumbnails = {name: png_base64(image)
                                  for name, image in result.thumbnails.items()}  # fmt: skip
                record = SceneRecord(planned.key, STATUS_OK, views=result.views,
                                     targets=result.targets, metrics=result.metrics,
                                     thumbnails=thumbnails)  # fmt: skip
            except Exception as error:  # a failing scene is a row, not the end
                if interrupted():  # a signal that came out as another exception
                    raise
                record = SceneRecord(planned.key, STATUS_FAILED, reason=self.reason(error,
                                                                                    planned))
        record.stages = work.timer.as_dict()
        record.seconds = work.timer.total()  # the time spent on this scene, on any thread
        record.run, record.source = self.run, planned.source
        record.context, record.target = frames_of(planned.context, planned.target)
        return record

    def reason(self, error: Exception, planned: PlannedScene) -> str:
        """A failed row's reason; a bug's traceback goes to the rank's log of this run."""
        from dsviewer.viewer.evaluation.run_log import RunLog

        reason = f"{type(error).__name__}: {error}"
        if not is_user_error(error):  # a bug, not bad input
            path = (self.log or RunLog()).write(error, planned.key)
            reason = f"internal error ({reason}); the traceback is in {path}"
        return reason


def run_scenes(pipeline: ScenePipeline, scenes: list[PlannedScene], stopped: Callable[[], bool],
               overlap: bool = True) -> Iterator[SceneRecord]:  # fmt: skip
    """Each scene's record, written, in the order of ``scenes``; ``stopped()`` is asked before
    each scene (another rank's error ends the run early)."""
    if not overlap or len(scenes) < 2 or not overlaps_the_model(pipeline.session):
        for planned in scenes:
            if stopped():
                return
            yield pipeline.finish(pipeline.forward(pipeline.load(planned)))
        return
    yield from _overlapped(pipeline, scenes, stopped)


def _overlapped(pipeline: ScenePipeline, scenes: list[PlannedScene],
                stopped: Callable[[], bool]) -> Iterator[SceneRecord]:  # fmt: skip
    with ThreadPoolExecutor(1, "dsviewer-load") as loading, \
            ThreadPoolExecutor(1, "dsviewer-results", _yield_to_the_model) as finishing:
        next_load: Future | None = loading.submit(pipeline.load, scenes[0])
        pending: Future | None = None  # at most one scene is being finished
        for i in range(len(scenes)):
            if stopped():
                break
            work = next_load.result()
            next_load = loading.submit(pipeline.load, scenes[i + 1]) if i + 1 < len(scenes) \
                else None
            work = pipeline.forward(work)
            if pending is not None:
                yield pending.result()
            pending = finishing.submit(pipeline.finish, work)
        if pending is not None:
            yield pending.result()


def overlaps_the_model(session: ModelSession) -> bool:
    """Whether the overlapped loop pays on the session's device: on a GPU, whose forward leaves
    the CPU idle. On a CPU the model's threads hold every core, and helper threads beside them
    only slowed the loop (1 process x 2 threads, bench/eval.py: 0.89x of one step after another
    with the results finished beside the forward, 0.95x with only the next scene read ahead;
    the forward lost more than the helpers' own work), so there the steps run in turn."""
    return str(session.backend.device).startswith("cuda")


def _yield_to_the_model() -> None:
    """The results thread (and the torch threads it starts, which inherit it) at a lower OS
    priority: the model's threads get the cores first, the results fill the gaps."""
    import os
    import threading

    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RESULTS_NICENESS)
    except (AttributeError, OSError):  # not Linux, or not allowed: equal priority, same results
        pass

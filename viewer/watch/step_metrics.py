"""One training step on one scene as a row: ``step``, ``checkpoint``, then eval's columns.

The row is eval's ``scenes.csv`` row (:data:`dsviewer.viewer.evaluation.columns.CSV_COLUMNS`,
computed by :func:`dsviewer.viewer.evaluation.scene_metrics.loaded_result`, the same code as
``dsviewer eval`` and the figures of ``dsviewer export``'s ``metrics.json``) with the step and
its checkpoint in front. ``dsviewer eval --ckpt-dir`` writes these rows to ``steps.csv``; the
viewer's curves plot them. Values are typed: None where a metric is undefined.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dsviewer.viewer.evaluation.columns import CSV_COLUMNS, STATUS_OK

if TYPE_CHECKING:
    from dsviewer.dataset.types import SceneViews
    from dsviewer.viewer.session.loaded import LoadedScene
    from dsviewer.viewer.session.model import ModelSession
    from dsviewer.viewer.session.specs import RunSpec
    from dsviewer.viewer.watch.checkpoints import StepCheckpoint

STEP_FIELDS = ("step", "checkpoint")
STEP_COLUMNS = STEP_FIELDS + CSV_COLUMNS
"""The columns of ``steps.csv`` and of every row here, in order."""


def step_row(step: StepCheckpoint, row: Mapping[str, object]) -> dict[str, object]:
    """``row`` (a ``scenes.csv`` row, typed) of ``step``: the step and the checkpoint's path
    first."""
    full = {"step": step.step, "checkpoint": str(step.path), **row}
    assert set(full) <= set(STEP_COLUMNS), sorted(set(full) - set(STEP_COLUMNS))
    return {name: full.get(name) for name in STEP_COLUMNS}


def loaded_step_row(step: StepCheckpoint, key: str, loaded: LoadedScene,
                    max_target_views: int | None = None) -> dict[str, object]:  # fmt: skip
    """The row of a scene the step's model already predicted (``loaded``: the viewer keeps
    its predictions); ``seconds`` is the time of the metrics alone."""
    from dsviewer.viewer.evaluation.records import SceneRecord
    from dsviewer.viewer.evaluation.scene_metrics import loaded_result
    from dsviewer.viewer.evaluation.tables import record_row

    start = time.perf_counter()
    result = loaded_result(loaded, max_target_views)
    record = SceneRecord(key, STATUS_OK, views=result.views, targets=result.targets,
                         seconds=time.perf_counter() - start, metrics=result.metrics)
    return step_row(step, record_row(record))


def evaluate_step(step: StepCheckpoint, session: ModelSession, key: str, scene: SceneViews,
                  max_target_views: int | None = None, run: RunSpec | None = None
                  ) -> dict[str, object]:  # fmt: skip
    """The row of ``scene`` under the step's model (``session``: that checkpoint opened),
    model time included. A scene that fails raises (eval turns it into a ``failed`` row)."""
    from dsviewer.viewer.evaluation.records import SceneRecord
    from dsviewer.viewer.evaluation.scene_metrics import evaluate_scene
    from dsviewer.viewer.evaluation.tables import record_row

    start = time.perf_counter()
    result = evaluate_scene(session, scene, max_target_views, run)
    record = SceneRecord(key, STATUS_OK, views=result.views, targets=result.targets,
                         seconds=time.perf_counter() - start, metrics=result.metrics)
    return step_row(step, record_row(record))

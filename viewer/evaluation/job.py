"""What one evaluation is asked to do (the CLI builds it from flags) and what rank 0 decided.

The run (:class:`~dsviewer.viewer.session.specs.RunSpec`: the checkpoint, its views and planes),
the session's settings (data roots, index, device, config, DepthSplat checkout) and the
evaluation's own settings. :mod:`dsviewer.viewer.evaluation.runner` and ``merge`` read this,
never the command line's dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.errors import InputError
from dsviewer.viewer.session.specs import RunSpec, SessionSettings

if TYPE_CHECKING:
    from dsviewer.viewer.evaluation.plan import PlannedScene, ScenePlan


class EvalUsageError(InputError):
    """Bad ``dsviewer eval`` arguments."""


@dataclass(frozen=True)
class EvalJob:
    """One evaluation: ``run`` over the scenes of ``settings`` (or ``scenes``) into ``out``.

    ``scenes``: run only these specs (the rows stay the test set's); ``force``: redo scenes
    with a result; ``threads``: torch CPU threads per process (None: the node's cores split
    among its ranks); ``max_target_views``: target renders per scene (0: none; None: all);
    ``sort_by``: report.html's ranking column (``auto``: GT AbsRel when any scene has GT);
    ``thumbnails``: rows of report.html with thumbnails; ``ckpt_dir``: evaluate every
    checkpoint of this training folder instead of ``run.checkpoint`` (each step as its own
    evaluation in ``out/steps/``, then ``steps.csv``; :mod:`dsviewer.viewer.evaluation.steps`);
    ``overlap``: on a GPU, read the next scene and finish the previous one while the model runs
    (False, or a CPU: one step after another; the records are the same,
    :mod:`dsviewer.viewer.evaluation.pipeline`).
    """

    run: RunSpec
    settings: SessionSettings
    out: Path
    scenes: tuple[str, ...] = ()
    force: bool = False
    threads: int | None = None
    max_target_views: int | None = None
    sort_by: str = "auto"
    thumbnails: int = 500
    ckpt_dir: Path | None = None
    overlap: bool = True

    @property
    def checkpoint(self) -> Path:
        return self.run.checkpoint


@dataclass
class Prepared:
    """Rank 0's decisions, broadcast to every rank."""

    plan: ScenePlan
    todo: list[PlannedScene]  # scenes to run now, in plan order
    resumed: int  # scenes skipped because a result exists
    identity: dict  # run.json
    run: str  # run_hash(identity), written into every record
    moved: Path | None = None  # where --force put another run's files

"""``dsviewer eval ...``: one model over every scene of a test set, ranked in an offline report.

Only the standard library, tyro and the column table are imported at module level, so
``dsviewer eval --help`` answers at once; torch and the model load after parsing. The work is
:func:`dsviewer.viewer.evaluation.runner.run_evaluation`, which takes an
:class:`~dsviewer.viewer.evaluation.job.EvalJob` (run spec and settings), not these options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from dsviewer.viewer.evaluation.columns import METRIC_NAMES  # light: the column table only
from dsviewer.viewer.evaluation.job import EvalJob, EvalUsageError  # light: dataclasses
from dsviewer.viewer.options import RunOptions, TargetRenderOptions

SortColumn = Literal[("auto", *METRIC_NAMES)]  # type: ignore[valid-type]

DESCRIPTION = """\
Run a checkpoint on every scene of a test set and rank the scenes: OUT/scenes.csv (one row per
scene), OUT/summary.json (dataset aggregates) and OUT/report.html (offline, sortable, with
thumbnails and the command that opens each scene in dsviewer). A rerun resumes. With
--ckpt-dir, every checkpoint of a training folder: OUT/steps.csv and the curves over steps.

  dsviewer eval --ckpt depthsplat-gs-base-re10k-256x256-view2-ca7b6795.pth \\
                --data-root datasets/re10k --index evaluation_index_re10k.json --out eval/re10k
  torchrun --nproc_per_node 8 --no-python dsviewer eval ...     (one process per GPU)
  dsviewer eval --ckpt-dir outputs/my-run/checkpoints --data-root ... --out eval/my-run
"""


@dataclass
class EvalOptions(RunOptions, TargetRenderOptions):
    """Evaluate a checkpoint over a whole test set (--scene: only these scenes)."""

    out: Path | None = None
    """Folder for scenes.csv, summary.json, report.html and the per-scene records."""

    force: bool = False
    """Evaluate every scene again (by default scenes with a result in --out are skipped)."""

    threads: int | None = None
    """Torch CPU threads per process; default: the node's cores split among its ranks."""

    sort_by: SortColumn = "auto"
    """Column that ranks report.html worst first; auto: gt_abs_rel_final if any scene has GT
    depth, else inconsistent_final."""

    thumbnails: int = 500
    """Embed thumbnails in report.html for this many rows from the top (they set its size)."""

    ckpt_dir: Path | None = None
    """Instead of --ckpt: a training's checkpoint folder (Lightning's checkpoints/ layout or
    .pth files). Every complete checkpoint is a step, evaluated into OUT/steps/; OUT/steps.csv
    has one row per step and scene, OUT/report.html the metrics' curves over the steps."""

    overlap: bool = True
    """On a GPU, read the next scene and finish the previous one while the model runs (on a
    CPU, whose cores the model fills, the steps always run in turn); --no-overlap runs each
    scene's steps one after another (the same results, for timing comparisons)."""

    def check_flags(self) -> None:
        """The command line's checks (run once, on rank 0, by the evaluation)."""
        if self.ckpt_dir is not None:
            if self.ckpt:
                raise EvalUsageError("--ckpt and --ckpt-dir exclude each other: give one "
                                     "checkpoint, or the folder of a training's checkpoints.")
            if self.out is None:
                raise EvalUsageError("--out DIR is required (see dsviewer eval --help).")
            self.check(need_scene=False, need_ckpt=False)
            return
        if not self.ckpt or self.out is None:
            raise EvalUsageError("--ckpt FILE and --out DIR are required (see dsviewer eval "
                                 "--help).")  # fmt: skip
        if len(self.ckpt) > 1:
            raise EvalUsageError(f"dsviewer eval evaluates one checkpoint; {len(self.ckpt)} "
                                 "--ckpt were given. Run it once per checkpoint, each with its "
                                 "own --out.")  # fmt: skip
        self.check(need_scene=False)  # without --scene, the index's or the roots' keys

    def job(self) -> EvalJob:
        """What the evaluation library takes."""
        from dsviewer.viewer.session.specs import RunSpec

        specs = self.run_specs()
        if self.ckpt_dir is not None:  # each step's checkpoint replaces it
            specs = [self.run_spec(self.ckpt_dir)]
        return EvalJob(
            run=specs[0] if specs else RunSpec(Path()), settings=self.session_settings(),
            out=Path(self.out or ""), scenes=tuple(self.scene), force=self.force,
            threads=self.threads, max_target_views=self.max_target_views, sort_by=self.sort_by,
            thumbnails=self.thumbnails, ckpt_dir=self.ckpt_dir, overlap=self.overlap,
        )  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> EvalOptions:
    return tyro.cli(EvalOptions, args=list(argv) if argv is not None else None,
                    prog="dsviewer eval", description=DESCRIPTION)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dsviewer eval``: 0 once the outputs are written (failed scenes are rows), 2 on bad
    input, 1 on a bug (one line naming the log file), 130 when interrupted."""
    import os

    from dsviewer.viewer.errors import EXIT_INTERRUPTED, Terminated, run_entry_point

    options = parse_args(argv)

    def evaluate() -> int:
        from dsviewer.viewer.evaluation.runner import run_evaluation
        from dsviewer.viewer.evaluation.steps import run_step_evaluation

        run = run_evaluation if options.ckpt_dir is None else run_step_evaluation
        try:
            return run(options.job(), check=options.check_flags)
        except (KeyboardInterrupt, Terminated):
            if os.environ.get("RANK", "0") not in ("", "0"):
                return EXIT_INTERRUPTED  # under torchrun, rank 0 alone says "interrupted"
            raise

    return run_entry_point("dsviewer eval", evaluate)


if __name__ == "__main__":
    from dsviewer.viewer.errors import exit_process

    exit_process(main())

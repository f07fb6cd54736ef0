"""``dsviewer eval ...``: one model over every scene of a test set, ranked in an offline report.

Only the standard library, tyro and the column table are imported at module level, so
``dsviewer eval --help`` answers at once; torch and the model load after parsing. The work is
:func:`dsviewer.viewer.evaluation.runner.run_evaluation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from dsviewer.viewer.evaluation.columns import METRIC_NAMES  # light: the column table only

SortColumn = Literal[("auto", *METRIC_NAMES)]  # type: ignore[valid-type]

DESCRIPTION = """\
Run a checkpoint on every scene of a test set and rank the scenes: OUT/scenes.csv (one row per
scene), OUT/summary.json (dataset aggregates) and OUT/report.html (offline, sortable, with
thumbnails and the command that opens each scene in dsviewer). A rerun resumes.

  dsviewer eval --ckpt depthsplat-gs-base-re10k-256x256-view2-ca7b6795.pth \\
                --data-root datasets/re10k --index evaluation_index_re10k.json --out eval/re10k
  torchrun --nproc_per_node 8 --no-python dsviewer eval ...     (one process per GPU)
"""


@dataclass
class EvalOptions:
    """Evaluate a checkpoint over a whole test set."""

    ckpt: Path | None = None
    """The DepthSplat checkpoint to evaluate (.pth / .ckpt / .safetensors)."""

    out: Path | None = None
    """Folder for scenes.csv, summary.json, report.html and the per-scene records."""

    data_root: Annotated[list[Path], tyro.conf.UseAppendAction] = field(default_factory=list)
    """A dataset root (chunks and index.json); repeat the flag for several."""

    index: Path | None = None
    """Evaluation index JSON: its keys are the scenes, its entries their views (null: skipped).
    Without it, every key of the data roots is evaluated."""

    scene: Annotated[list[str], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Evaluate only this scene (key, capture folder or synthetic:<seed>); repeatable."""

    force: bool = False
    """Evaluate every scene again (by default scenes with a result in --out are skipped)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the model runs; under torchrun each rank takes the GPU of its local rank."""

    threads: int | None = None
    """Torch CPU threads per process; default: the node's cores split among its ranks."""

    max_target_views: int | None = None
    """Render at most this many target views per scene for target_psnr (0: none; default all)."""

    sort_by: SortColumn = "auto"
    """Column that ranks report.html worst first; auto: gt_abs_rel_final if any scene has GT
    depth, else inconsistent_final."""

    thumbnails: int = 500
    """Embed thumbnails in report.html for this many rows from the top (they set its size)."""

    config: Path | None = None
    """Model preset YAML; default: recognised from the checkpoint."""

    depthsplat_repo: Path | None = None
    """Run your own DepthSplat checkout's code instead of the built-in model (docs/backends.md)."""


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

        try:
            return run_evaluation(options)
        except (KeyboardInterrupt, Terminated):
            if os.environ.get("RANK", "0") not in ("", "0"):
                return EXIT_INTERRUPTED  # under torchrun, rank 0 alone says "interrupted"
            raise

    return run_entry_point("dsviewer eval", evaluate)


if __name__ == "__main__":
    from dsviewer.viewer.errors import exit_process

    exit_process(main())

"""Rank 0's last step: every record of the run into ``scenes.csv``, ``summary.json`` and
``report.html``, rows in plan order (so they do not depend on how many ranks ran them).

A ``--scene`` run of a folder merges every record of the same run, not only its own scenes, so
redoing one scene never drops the others from the outputs.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from viewer.evaluation.columns import (
    DEFAULT_SORT_WITH_GT,
    DEFAULT_SORT_WITHOUT_GT,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_OK,
)
from viewer.evaluation.plan import ScenePlan
from viewer.evaluation.records import SceneRecord, frames_of, read_run_records, write_json

if TYPE_CHECKING:
    from viewer.eval_cli import EvalOptions
    from viewer.evaluation.runner import Prepared

NO_RECORD = ("no result was written: the process that ran this scene stopped early; rerun the "
             "same command to resume")  # fmt: skip


def merged_records(out: Path, plan: ScenePlan, run: str) -> list[SceneRecord]:
    """One record per planned scene, in plan order (missing scenes get theirs here), then every
    other record of this run by key (scenes an earlier ``--scene`` run of it evaluated)."""
    stored = read_run_records(out, run)
    records = []
    for planned in plan.scenes:
        record = stored.pop(planned.key, None)
        if planned.missing is not None:
            records.append(SceneRecord(planned.key, STATUS_MISSING, reason=planned.missing))
            continue
        if record is not None and (record.context, record.target) != frames_of(
                planned.context, planned.target):  # fmt: skip
            record = None  # made with other frames: not a result of this plan
        records.append(record or SceneRecord(planned.key, STATUS_FAILED, reason=NO_RECORD))
    return records + [stored[key] for key in sorted(stored)]


def dsviewer_version() -> tuple[str | None, str | None]:
    """The installed version and, when this code is a git checkout, its commit (else None)."""
    import subprocess
    from importlib import metadata

    try:
        version = metadata.version("dsviewer")
    except metadata.PackageNotFoundError:
        version = None
    root = Path(__file__).resolve().parents[2]  # the checkout holding viewer/, if it is one
    try:
        result = subprocess.run(["git", "rev-parse", "--show-toplevel", "HEAD"], cwd=root,
                                capture_output=True, text=True, timeout=5, check=False)
        lines = result.stdout.split()
    except (OSError, subprocess.SubprocessError):
        lines = []
    ours = len(lines) == 2 and Path(lines[0]).resolve() == root  # not a repo we sit inside
    return version, (lines[1] if ours else None)  # fmt: skip


def sort_column(requested: str, records: list[SceneRecord]) -> str:
    if requested != "auto":
        return requested
    has_gt = any(r.metrics.get(DEFAULT_SORT_WITH_GT) is not None for r in records)
    return DEFAULT_SORT_WITH_GT if has_gt else DEFAULT_SORT_WITHOUT_GT


def write_outputs(options: EvalOptions, prepared: Prepared, timing: dict,
                  device: str) -> list[SceneRecord]:  # fmt: skip
    """``scenes.csv``, ``summary.json`` and ``report.html`` from every record (rank 0)."""
    from src.io.atomic import atomic_write
    from viewer.evaluation.report import render_report
    from viewer.evaluation.scene_metrics import viewer_command
    from viewer.evaluation.tables import AGGREGATION, summary, write_csv

    out = Path(options.out)
    records = merged_records(out, prepared.plan, prepared.run)
    write_csv(out / "scenes.csv", records)
    version, commit = dsviewer_version()
    roots = [str(Path(r).resolve()) for r in options.data_root]
    run = {**prepared.identity, "run": prepared.run, "data_roots": roots, "device": device,
           "dsviewer_version": version, "dsviewer_commit": commit}  # fmt: skip
    content = summary(records, run, timing, prepared.plan.skipped_by_index)
    write_json(out / "summary.json", content)
    dataset_keys = {s.key for s in prepared.plan.scenes if s.chunk is not None or s.missing}
    commands = {
        r.key: shlex.join(viewer_command(options.ckpt, r.key, options.data_root, options.index,
                                         options.config, options.depthsplat_repo,
                                         dataset_key=r.key in dataset_keys))
        for r in records
    }  # fmt: skip
    counts = content["scenes"]
    facts = [
        ("checkpoint", str(Path(options.ckpt).resolve())),
        ("scenes", (f"{counts['total']}: {counts[STATUS_OK]} ok, {counts[STATUS_MISSING]} "
                    f"missing, {counts[STATUS_FAILED]} failed; {counts['skipped_by_index']} "
                    "skipped by the index (null entries)")),
        ("data roots", ", ".join(roots) or "none"),
        ("evaluation index", str(Path(options.index).resolve()) if options.index else "none"),
    ]  # fmt: skip
    page = render_report(records, sort_by=sort_column(options.sort_by, records),
                         commands=commands, max_thumbnails=options.thumbnails,
                         title=f"dsviewer eval: {Path(options.ckpt).name}", facts=facts,
                         aggregation=AGGREGATION)  # fmt: skip
    with atomic_write(out / "report.html") as handle:
        handle.write(page.encode("utf-8", "replace"))
    return records

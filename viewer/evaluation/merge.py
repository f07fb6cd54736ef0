"""Rank 0's last step: every record of the run into ``scenes.csv``, ``summary.json`` and
``report.html``, rows in plan order (so they do not depend on how many ranks ran them).

The rows are the whole test set's even when ``--scene`` ran a few of its scenes (the plan holds
every index or root key, :func:`dsviewer.viewer.evaluation.plan.plan_scenes` with ``whole``): a
scene of
it with a record of this run (the same frames, read from the same source) is its row, a missing
one a ``missing`` row, one that this run should have evaluated but has no record a ``failed``
row; scenes never evaluated in the folder are counted, not listed. Records of this run for
other specs (captures, synthetic scenes of earlier ``--scene`` runs) follow, by key.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.viewer.evaluation.columns import (
    DEFAULT_SORT_WITH_GT,
    DEFAULT_SORT_WITHOUT_GT,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_OK,
)
from dsviewer.viewer.evaluation.plan import ScenePlan, plan_scenes
from dsviewer.viewer.evaluation.records import SceneRecord, measured, read_run_records, write_json

if TYPE_CHECKING:
    from dsviewer.viewer.evaluation.job import EvalJob, Prepared

NO_RECORD = ("no result was written: the process that ran this scene stopped early; rerun the "
             "same command to resume")  # fmt: skip


def merged_records(stored: dict[str, SceneRecord], plan: ScenePlan, ran: set[str],
                   extra: ScenePlan | None = None) -> tuple[list[SceneRecord], int]:  # fmt: skip
    """(the rows, in plan order then ``extra``'s, and how many planned scenes were never
    evaluated). ``stored``: the run's records by key; ``ran``: the keys this run was to
    evaluate; ``extra``: a plan of the other keys with records (those still found there are
    merged)."""
    stored = dict(stored)
    records, never = [], 0
    rows = [(scene, True) for scene in plan.scenes]
    rows += [(scene, False) for scene in (extra.scenes if extra else [])]
    for planned, listed in rows:
        record = stored.pop(planned.key, None)
        if planned.missing is not None:
            if listed:  # a row of the test set; an extra record's data is gone: dropped
                records.append(SceneRecord(planned.key, STATUS_MISSING, reason=planned.missing))
            continue
        if record is not None and not measured(record, planned.context, planned.target,
                                               planned.source):  # fmt: skip
            record = None  # other frames or other data: not a result of this plan
        if record is None and planned.key not in ran:
            never += listed  # a scene of the test set that no run here has evaluated yet
            continue
        records.append(record or SceneRecord(planned.key, STATUS_FAILED, reason=NO_RECORD))
    return records, never


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


def open_command(job: EvalJob, key: str, source: dict | None) -> str:
    """The shell command that opens ``key`` as its record was made: the data root that held
    its chunk, or its capture folder (``source``: the record's, see ``plan.scene_source``)."""
    from dsviewer.viewer.evaluation.scene_metrics import viewer_command

    source = source or {}
    settings = job.settings
    roots = [Path(source["data_root"])] if source.get("data_root") else settings.data_root
    spec = source.get("capture", key)
    return shlex.join(viewer_command(job.checkpoint, spec, roots, settings.index, settings.config,
                                     settings.depthsplat_repo,
                                     dataset_key="capture" not in source and "synthetic" not in
                                     source, run=job.run, context=settings.context))  # fmt: skip


def sort_column(requested: str, records: list[SceneRecord]) -> str:
    if requested != "auto":
        return requested
    has_gt = any(r.metrics.get(DEFAULT_SORT_WITH_GT) is not None for r in records)
    return DEFAULT_SORT_WITH_GT if has_gt else DEFAULT_SORT_WITHOUT_GT


def write_outputs(job: EvalJob, prepared: Prepared, timing: dict,
                  device: str) -> list[SceneRecord]:  # fmt: skip
    """``scenes.csv``, ``summary.json`` and ``report.html`` from every record (rank 0)."""
    from dsviewer.io.atomic import atomic_write
    from dsviewer.viewer.evaluation.report import render_report
    from dsviewer.viewer.evaluation.tables import AGGREGATION, summary, write_csv

    out = Path(job.out)
    settings = job.settings
    plan = prepared.plan
    stored = read_run_records(out, prepared.run)
    others = sorted(set(stored) - {scene.key for scene in plan.scenes})
    extra = plan_scenes(settings.data_root, settings.index, others) if others else None
    ran = {scene.key for scene in prepared.todo}
    records, never = merged_records(stored, plan, ran, extra)
    sources = {s.key: s.source for s in [*plan.scenes, *(extra.scenes if extra else [])]}
    write_csv(out / "scenes.csv", records)
    version, commit = dsviewer_version()
    roots = [str(Path(r).resolve()) for r in settings.data_root]
    run = {**prepared.identity, "run": prepared.run, "data_roots": roots, "device": device,
           "dsviewer_version": version, "dsviewer_commit": commit}  # fmt: skip
    content = summary(records, run, timing, plan.skipped_by_index, never)
    write_json(out / "summary.json", content)
    commands = {r.key: open_command(job, r.key, r.source or sources.get(r.key))
                for r in records}  # fmt: skip
    counts = content["scenes"]
    facts = [
        ("checkpoint", str(Path(job.checkpoint).resolve())),
        ("scenes", (f"{counts['total']}: {counts[STATUS_OK]} ok, {counts[STATUS_MISSING]} "
                    f"missing, {counts[STATUS_FAILED]} failed; {counts['skipped_by_index']} "
                    f"skipped by the index (null entries); {counts['not_evaluated']} not "
                    "evaluated yet (--scene ran others)")),
        ("data roots", ", ".join(roots) or "none"),
        ("evaluation index",
         str(Path(settings.index).resolve()) if settings.index else "none"),
    ]  # fmt: skip
    page = render_report(records, sort_by=sort_column(job.sort_by, records),
                         commands=commands, max_thumbnails=job.thumbnails,
                         title=f"dsviewer eval: {Path(job.checkpoint).name}", facts=facts,
                         aggregation=AGGREGATION)  # fmt: skip
    with atomic_write(out / "report.html") as handle:
        handle.write(page.encode("utf-8", "replace"))
    return records

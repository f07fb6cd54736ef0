"""The evaluation, on one rank or many: plan on rank 0, run this rank's shard, merge on rank 0.

Rank 0 resolves the scenes (:mod:`viewer.evaluation.plan`), checks the output folder and skips
scenes that already have a result (resume), then broadcasts the list to every rank. Each rank
loads the model once, runs its contiguous block of the list and writes one record per scene.
After the last rank is done, rank 0 merges the records in plan order into ``scenes.csv``,
``summary.json`` and ``report.html``: the rows do not depend on how many ranks ran them.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from viewer.evaluation import distributed
from viewer.evaluation.columns import (
    DEFAULT_SORT_WITH_GT,
    DEFAULT_SORT_WITHOUT_GT,
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_OK,
)
from viewer.evaluation.plan import PlannedScene, ScenePlan, plan_scenes, shard
from viewer.evaluation.records import (
    SceneRecord,
    claim_folder,
    is_done,
    png_base64,
    read_record,
    run_identity,
    write_json,
    write_record,
)

if TYPE_CHECKING:
    from viewer.eval_cli import EvalOptions

USER_ERRORS = (ValueError, OSError)
OUTPUT_FILES = ("scenes.csv", "summary.json", "report.html")
NO_RECORD = ("no result was written: the process that ran this scene stopped early; rerun the "
             "same command to resume")  # fmt: skip


class EvalUsageError(ValueError):
    """Bad ``dsviewer eval`` arguments."""


@dataclass
class Prepared:
    """Rank 0's decisions, broadcast to every rank."""

    plan: ScenePlan
    todo: list[PlannedScene]  # scenes to run now, in plan order
    resumed: int  # scenes skipped because a result exists
    identity: dict  # run.json


def check_options(options: EvalOptions) -> None:
    if options.ckpt is None or options.out is None:
        raise EvalUsageError("--ckpt FILE and --out DIR are required (see dsviewer eval --help).")
    if not Path(options.ckpt).is_file():
        raise EvalUsageError(f"--ckpt {options.ckpt} does not exist or is not a file.")
    if Path(options.out).exists() and not Path(options.out).is_dir():
        raise EvalUsageError(f"--out {options.out} exists and is not a folder; give a folder.")
    if options.threads is not None and options.threads < 1:
        raise EvalUsageError("--threads must be at least 1.")
    if options.max_target_views is not None and options.max_target_views < 0:
        raise EvalUsageError("--max-target-views must be 0 or more (0 renders none).")
    if options.thumbnails < 0:
        raise EvalUsageError("--thumbnails must be 0 or more.")


def prepare(options: EvalOptions) -> Prepared:
    """Check the inputs, resolve the scenes, claim the output folder, find what is done."""
    check_options(options)
    plan = plan_scenes(options.data_root, options.index, options.scene)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    identity = run_identity(options.ckpt, options.index, options.config, options.max_target_views)
    claim_folder(out, identity, options.force)
    available = plan.available
    todo = available if options.force else [s for s in available if not is_done(out, s.key)]
    return Prepared(plan, todo, len(available) - len(todo), identity)


def run_scene(session, loader, planned: PlannedScene, max_target_views: int | None
              ) -> SceneRecord:  # fmt: skip
    """One scene to its record; any error becomes a failed record with the reason."""
    from viewer.evaluation.scene_metrics import evaluate_scene

    start = time.perf_counter()
    try:
        result = evaluate_scene(session, loader.load(planned), max_target_views)
        thumbnails = {name: png_base64(image) for name, image in result.thumbnails.items()}
        return SceneRecord(planned.key, STATUS_OK, views=result.views, targets=result.targets,
                           seconds=time.perf_counter() - start, metrics=result.metrics,
                           thumbnails=thumbnails)  # fmt: skip
    except Exception as error:  # noqa: BLE001 -- a failing scene is a row, not the end
        from viewer.errors import is_user_error, write_log

        reason = f"{type(error).__name__}: {error}"
        if not is_user_error(error):  # a bug, not bad input: its traceback goes to a log
            reason = f"internal error ({reason}); the traceback is in {write_log(error)}"
        return SceneRecord(planned.key, STATUS_FAILED, reason=reason,
                           seconds=time.perf_counter() - start)  # fmt: skip


def run_shard(options: EvalOptions, placement, scenes: list[PlannedScene], session, console
              ) -> dict:  # fmt: skip
    """Run this rank's scenes, writing a record after each; returns the rank's counts."""
    from viewer.evaluation.loading import SceneLoader
    from viewer.evaluation.progress import SceneProgress
    from viewer.evaluation.scene_metrics import preprocess_settings

    label = "Evaluating"
    if placement.distributed:
        label = f"Evaluating (rank 0's share; {placement.world_size} ranks)"
    start = time.perf_counter()
    with SceneProgress(len(scenes), label, console, enabled=placement.is_main) as progress:
        loader = SceneLoader(preprocess_settings(session)) if scenes else None
        for planned in progress.track(scenes):
            record = run_scene(session, loader, planned, options.max_target_views)
            write_record(Path(options.out), record)
            if record.status == STATUS_FAILED:
                progress.failed()
    return {"rank": placement.rank, "device": placement.device, "threads": placement.threads,
            "cores": placement.cores, "scenes": len(scenes), "failed": progress.failures,
            "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip


def merged_records(out: Path, plan: ScenePlan) -> list[SceneRecord]:
    """One record per planned scene, in plan order (missing scenes get theirs here)."""
    records = []
    for planned in plan.scenes:
        if planned.missing is not None:
            records.append(SceneRecord(planned.key, STATUS_MISSING, reason=planned.missing))
        else:
            record = read_record(out, planned.key)
            records.append(record or SceneRecord(planned.key, STATUS_FAILED, reason=NO_RECORD))
    return records


def sort_column(requested: str, records: list[SceneRecord]) -> str:
    if requested != "auto":
        return requested
    has_gt = any(r.metrics.get(DEFAULT_SORT_WITH_GT) is not None for r in records)
    return DEFAULT_SORT_WITH_GT if has_gt else DEFAULT_SORT_WITHOUT_GT


def write_outputs(options: EvalOptions, prepared: Prepared, timing: dict) -> list[SceneRecord]:
    """``scenes.csv``, ``summary.json`` and ``report.html`` from every record (rank 0)."""
    from src.io.atomic import atomic_write
    from viewer.evaluation.report import render_report
    from viewer.evaluation.scene_metrics import viewer_command
    from viewer.evaluation.tables import AGGREGATION, summary, write_csv

    out = Path(options.out)
    records = merged_records(out, prepared.plan)
    write_csv(out / "scenes.csv", records)
    content = summary(records, prepared.identity, timing, prepared.plan.skipped_by_index)
    write_json(out / "summary.json", content)
    commands = {
        r.key: shlex.join(
            viewer_command(options.ckpt, r.key, options.data_root, options.index, options.config)
        )
        for r in records
    }
    counts = content["scenes"]
    facts = [
        ("checkpoint", str(Path(options.ckpt).resolve())),
        ("scenes", (f"{counts['total']}: {counts[STATUS_OK]} ok, {counts[STATUS_MISSING]} "
                    f"missing, {counts[STATUS_FAILED]} failed; {counts['skipped_by_index']} "
                    "skipped by the index (null entries)")),
        ("data roots", ", ".join(str(Path(r).resolve()) for r in options.data_root) or "none"),
        ("evaluation index", str(Path(options.index).resolve()) if options.index else "none"),
    ]  # fmt: skip
    page = render_report(records, sort_by=sort_column(options.sort_by, records),
                         commands=commands, max_thumbnails=options.thumbnails,
                         title=f"dsviewer eval: {Path(options.ckpt).name}", facts=facts,
                         aggregation=AGGREGATION)  # fmt: skip
    with atomic_write(out / "report.html") as handle:
        handle.write(page.encode("utf-8", "replace"))
    return records


def run_evaluation(options: EvalOptions, console=None) -> int:
    """``dsviewer eval`` on this process (one of the torchrun ranks, or alone)."""
    from rich.console import Console

    console = console or Console(stderr=True, highlight=False)

    def say(text: str) -> None:
        console.print(text, markup=False)

    def fail(text: str) -> int:
        if placement.is_main:
            say(f"dsviewer eval: error: {text}")
        return 2

    placement = distributed.start(options.device, options.threads)
    try:
        decision: tuple[str, object] | None = None
        if placement.is_main:
            try:
                decision = ("ok", prepare(options))
            except USER_ERRORS as error:
                decision = ("error", str(error))
        kind, payload = distributed.broadcast(placement, decision)
        if kind == "error":
            return fail(str(payload))
        prepared: Prepared = payload
        mine = shard(prepared.todo, placement.rank, placement.world_size)
        if placement.is_main:
            plan = prepared.plan
            say(f"{len(plan.scenes)} scenes: {len(prepared.todo)} to run, {prepared.resumed} "
                f"already done (--force redoes them), {len(plan.missing)} missing from the "
                f"data roots, {plan.skipped_by_index} skipped by the index.")  # fmt: skip
        start = time.perf_counter()
        session, load_error = None, None
        if mine:
            from viewer.evaluation.scene_metrics import open_session

            try:
                session = open_session(options.ckpt, placement.device, options.config,
                                       options.depthsplat_repo)  # fmt: skip
            except (*USER_ERRORS, RuntimeError) as error:
                where = f"rank {placement.rank} " if placement.distributed else ""
                load_error = f"{where}could not load the model: {error}"
        load_errors = [e for e in distributed.all_gather(placement, load_error) if e]
        if load_errors:
            return fail(" ".join(dict.fromkeys(load_errors)))
        counts = run_shard(options, placement, mine, session, console)
        ranks = distributed.gather(placement, counts)
        if not placement.is_main:
            return 0
        wall = time.perf_counter() - start
        timing = {"world_size": placement.world_size, "ranks": ranks,
                  "evaluated_this_run": len(prepared.todo), "wall_seconds": round(wall, 3),
                  "scenes_per_second": round(len(prepared.todo) / wall, 4) if wall > 0 else None}
        records = write_outputs(options, prepared, timing)
        failed = sum(r.status == STATUS_FAILED for r in records)
        say(f"Wrote {', '.join(str(Path(options.out) / n) for n in OUTPUT_FILES)}: "
            f"{sum(r.status == STATUS_OK for r in records)} ok, {failed} failed, "
            f"{sum(r.status == STATUS_MISSING for r in records)} missing.")  # fmt: skip
        return 0  # failed scenes are rows of the answer, not a failed run (torchrun: exit 0)
    finally:
        distributed.finish(placement)

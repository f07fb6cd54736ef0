"""The evaluation, on one rank or many: plan on rank 0, run this rank's shard, merge on rank 0.

Rank 0 resolves the scenes (:mod:`dsviewer.viewer.evaluation.plan`), checks the output folder and
skips
scenes that already have a result of this run (resume), then broadcasts the list to every rank.
Each rank loads the model once, runs its contiguous block of the list and writes one record per
scene; rank 0's bar counts every rank's scenes (:class:`distributed.RunCounter`). After the
last rank is done, rank 0 merges the records (:mod:`dsviewer.viewer.evaluation.merge`).

An error on one rank (the model does not load, the disk is full, a bug) never leaves the others
waiting: the rank notes it, tells the others to stop before their next scene, and still joins
the final exchange, where rank 0 reports every rank's error in one paragraph.
"""

from __future__ import annotations

import errno
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.errors import InputError
from dsviewer.stage_timer import STAGE_MEANINGS, add_stages
from dsviewer.viewer.errors import EXIT_BUG, EXIT_USER_ERROR, interrupted, is_user_error
from dsviewer.viewer.evaluation import distributed
from dsviewer.viewer.evaluation.columns import (
    STATUS_FAILED,
    STATUS_MISSING,
    STATUS_OK,
)
from dsviewer.viewer.evaluation.folder import claim_folder
from dsviewer.viewer.evaluation.job import EvalUsageError, Prepared
from dsviewer.viewer.evaluation.plan import PlanError, PlannedScene, ScenePlan, plan_scenes, shard
from dsviewer.viewer.evaluation.records import (
    OUTPUT_FILES,
    SceneRecord,
    is_done,
    record_path,
    run_hash,
    run_identity,
    write_record,
)
from dsviewer.viewer.evaluation.run_log import RunLog

if TYPE_CHECKING:
    from collections.abc import Callable

    from dsviewer.viewer.evaluation.job import EvalJob

OS_ERROR_HINTS = {
    errno.ENOTDIR: "a part of that path is a file, not a folder",
    errno.EEXIST: "a part of that path is a file, not a folder",
    errno.EACCES: "you may not write there",
    errno.EPERM: "you may not write there",
    errno.EROFS: "that file system is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "a file-size limit was reached",
}


class OutputFolderError(InputError):
    """``--out`` cannot be created or written."""


def os_error_text(error: OSError, path: Path | None = None) -> str:
    """What the file system said about ``path`` (default: the error's file), and what it most
    likely means."""
    said = error.strerror or str(error)
    path = path or error.filename
    where = f" ({path})" if path else ""
    hint = OS_ERROR_HINTS.get(error.errno or 0)
    return f"{said}{where}" + (f": {hint}" if hint else "")


def check_job(job: EvalJob) -> None:
    """What the evaluation itself needs of its settings (the run flags are the CLI's to judge)."""
    if Path(job.out).exists() and not Path(job.out).is_dir():
        raise EvalUsageError(f"--out {job.out} exists and is not a folder; give a folder.")
    if job.ckpt_dir is None and (Path(job.out) / "steps.csv").exists():
        raise EvalUsageError(f"--out {job.out} holds an evaluation of a training's steps "
                             "(steps.csv, from --ckpt-dir); give this checkpoint its own --out.")
    if job.threads is not None and job.threads < 1:
        raise EvalUsageError("--threads must be at least 1.")
    if job.max_target_views is not None and job.max_target_views < 0:
        raise EvalUsageError("--max-target-views must be 0 or more (0 renders none).")
    if job.thumbnails < 0:
        raise EvalUsageError("--thumbnails must be 0 or more.")


def check_something_to_run(plan: ScenePlan, job: EvalJob) -> None:
    """No scene at all can be found: almost always the wrong --data-root (exit 2, not a report
    of nothing but missing rows)."""
    if plan.available:
        return
    first = plan.chosen[0]
    roots = ", ".join(str(Path(r).resolve()) for r in job.settings.data_root) or "none given"
    listed = (f"they list {plan.root_keys} keys, e.g. {plan.root_key_example!r}"
              if plan.root_keys else "they list no key")  # fmt: skip
    raise PlanError(
        f"None of the {len(plan.chosen)} scenes can be run; the first, {first.key!r}: "
        f"{first.missing.rstrip('.')}. Data roots: {roots} ({listed}). Pass as --data-root the "
        "folder of this test set that holds its index.json and chunk files (repeat the flag for "
        "several)."
    )


def prepare(job: EvalJob, check: Callable[[], None] | None = None) -> Prepared:
    """Check the inputs (``check``: the command line's own checks first), resolve the scenes,
    claim the output folder, find what is done."""
    from dsviewer.dataset.sfm import DEFAULT_MAX_ERROR
    from dsviewer.viewer.evaluation.plan import with_explicit_frames

    if check is not None:
        check()
    check_job(job)
    settings = job.settings
    plan = plan_scenes(settings.data_root, settings.index, job.scenes, whole=True)
    plan = with_explicit_frames(plan, settings.context, settings.target)
    check_something_to_run(plan, job)
    out = Path(job.out)
    own_threshold = settings.sfm_max_error != DEFAULT_MAX_ERROR  # the SfM metrics depend on it
    identity = run_identity(job.checkpoint, settings.index, settings.config,
                            job.max_target_views, settings.depthsplat_repo, job.run,
                            settings.sfm_max_error if own_threshold else None)  # fmt: skip
    run = run_hash(identity)
    try:
        out.mkdir(parents=True, exist_ok=True)
        moved = claim_folder(out, identity, job.force)
    except OSError as error:
        raise OutputFolderError(
            f"--out {out} cannot be used as the output folder: {os_error_text(error)}. Give a "
            "folder you can write to (missing parent folders are created), e.g. --out "
            "eval/run1."
        ) from None
    available = plan.available
    todo = available if job.force else [
        s for s in available if not is_done(out, s.key, run, s.context, s.target, s.source)
    ]  # fmt: skip
    return Prepared(plan, todo, len(available) - len(todo), identity, run, moved)


def save_record(out: Path, record: SceneRecord) -> None:
    try:
        write_record(out, record)
    except OSError as error:
        raise OutputFolderError(
            f"Could not write the result of scene {record.key!r} into --out {out}: "
            f"{os_error_text(error, record_path(out, record.key))}. The results written so far "
            "are kept: make room (or choose another --out) and rerun the same command to resume."
        ) from None


def rank_error(error: Exception, placement, log: RunLog) -> tuple[str, bool]:
    """(one line for the user, whether it is a bug): a user error's own paragraph, or a bug's
    type and message with the log file that holds its traceback."""
    where = f"rank {placement.rank}: " if placement.distributed else ""
    if is_user_error(error):
        return where + str(error), False
    path = log.write(error)
    text = (f"{where}internal error ({type(error).__name__}: {error}); the full traceback is in "
            f"{path}, please include it in a bug report")  # fmt: skip
    return text, True


def run_shard(job: EvalJob, placement, prepared: Prepared, scenes: list[PlannedScene],
              session, console, log: RunLog) -> dict:  # fmt: skip
    """Run this rank's scenes, writing a record after each; returns the rank's counts (with
    ``error`` and ``bug`` when it stopped early). Rank 0's bar shows every rank's scenes."""
    from dsviewer.viewer.evaluation.loading import SceneLoader
    from dsviewer.viewer.evaluation.pipeline import ScenePipeline, overlaps_the_model, run_scenes
    from dsviewer.viewer.evaluation.progress import SceneProgress

    out = Path(job.out)
    label = "Evaluating"
    if placement.distributed:
        label = f"Evaluating ({placement.world_size} ranks)"
    counter = distributed.RunCounter(placement, scope=str(out))
    if scenes and job.max_target_views != 0 and str(session.backend.device) == "cpu":
        from dsviewer.model.decoder.rasterizer_numba import warm_up

        # Like the model, the CPU rasterizer is ready before the scenes start: its warm-up (on a
        # thread since the model began loading) no longer competes with the first forward.
        warm_up()
    start = time.perf_counter()
    own_seconds = 0.0  # until this rank's last record: its loop without waiting for the others
    ran = failed = 0
    error, bug = None, False
    shown = placement.is_main and bool(prepared.todo)  # no 0/0 bar for a full resume
    pipeline = None
    with SceneProgress(len(prepared.todo), label, console, enabled=shown) as progress:
        try:
            if scenes:
                from dsviewer.dataset import CaptureOptions

                capture = CaptureOptions(sfm_max_error=job.settings.sfm_max_error)
                loader = SceneLoader(session.preprocess(job.run), job.settings.index,
                                     targets=job.max_target_views != 0,
                                     capture=capture)  # fmt: skip
                pipeline = ScenePipeline(session, loader, job, prepared.run,
                                         lambda record: save_record(out, record), log)
            # another rank's error (counter.stopped) ends the run before the next scene
            for record in run_scenes(pipeline, scenes, counter.stopped, job.overlap):
                ran += 1
                failed += record.status == STATUS_FAILED
                progress.show(*counter.scene_done(record.status == STATUS_FAILED))
                own_seconds = time.perf_counter() - start
        except Exception as caught:  # reported after the exchange, on rank 0
            if interrupted():  # a signal that came out as another exception
                raise
            error, bug = rank_error(caught, placement, log)
            counter.stop()
        finally:
            counter.rank_finished()
        if placement.is_main:
            counter.wait_for_all(progress.show)
    return {"rank": placement.rank, "device": placement.device, "threads": placement.threads,
            "cores": placement.cores, "scenes": ran, "failed": failed,
            "seconds": round(time.perf_counter() - start, 3), "loop_seconds": round(own_seconds, 3),
            "overlap": bool(job.overlap and session and overlaps_the_model(session)),
            "stages": add_stages(None, pipeline and pipeline.written), "error": error,
            "bug": bug}  # fmt: skip


def stage_totals(ranks: list[dict]) -> dict[str, float]:
    """Seconds per stage over every rank's scenes of this run (each rank's are in its entry)."""
    totals: dict[str, float] = add_stages(None, None)
    for rank in ranks:
        totals = add_stages(totals, rank["stages"])
    return totals


def run_evaluation(job: EvalJob, console=None, check: Callable[[], None] | None = None,
                   body: Callable[..., tuple[int, str | None]] | None = None) -> int:
    """``dsviewer eval`` on this process (one of the torchrun ranks, or alone): 0 once the
    outputs are written, 2 on bad input (1 after a bug on some rank; its log file is named).

    ``check``: the command line's checks of its flags, run once on rank 0 before planning (an
    error there reaches every rank). ``body``: what runs once the process group is up, with
    :func:`evaluate`'s arguments (default: :func:`evaluate`; ``--ckpt-dir`` runs its steps)."""
    import os

    from rich.console import Console

    from dsviewer.viewer.evaluation.log_once import WarningsOnce

    console = console or Console(stderr=True, highlight=False)

    def say(text: str) -> None:  # a log file gets one line per message, paths unbroken
        console.print(text, markup=False, soft_wrap=not console.is_terminal)

    try:
        placement = distributed.start(job.settings.device, job.threads)
    except distributed.PlacementError as error:  # every rank of the node finds the same
        if os.environ.get("LOCAL_RANK", "0") == "0":
            say(f"dsviewer eval: error: {error}")
        return EXIT_USER_ERROR
    try:
        # only rank 0 prints, the others' counts join its own; all before the last line
        with WarningsOnce(say if placement.is_main else None) as warnings:
            code, last_line = (body or evaluate)(job, placement, console, say, warnings, check)
        if last_line is not None:
            say(last_line)
        return code
    finally:
        distributed.finish(placement)


def evaluate(job: EvalJob, placement, console, say, warnings,
             check: Callable[[], None] | None = None) -> tuple[int, str | None]:  # fmt: skip
    """The run once the process group is up: the exit status and the line that ends the run
    (see :func:`run_evaluation`)."""

    def fail(text: str, code: int = EXIT_USER_ERROR) -> tuple[int, str | None]:
        return code, f"dsviewer eval: error: {text}" if placement.is_main else None

    decision: tuple[str, object] | None = None
    bug: Exception | None = None
    if placement.is_main:
        try:
            decision = ("ok", prepare(job, check))
        except Exception as error:  # the other ranks must hear of it
            if interrupted():  # a signal that came out as another exception
                raise
            decision = ("error", str(error))
            bug = None if is_user_error(error) else error
    kind, payload = distributed.broadcast(placement, decision)
    if bug is not None:
        raise bug  # the error boundary logs it (the other ranks stop below)
    if kind == "error":
        return fail(str(payload))
    prepared: Prepared = payload
    mine = shard(prepared.todo, placement.rank, placement.world_size)
    if placement.is_main:
        plan = prepared.plan
        if prepared.moved is not None:
            say(f"--force: the previous run's results (another checkpoint, index, config or "
                f"settings) were moved to {prepared.moved}.")  # fmt: skip
        if prepared.todo:
            say(f"{len(plan.chosen)} scenes: {len(prepared.todo)} to run, {prepared.resumed} "
                f"already done (--force redoes them), {len(plan.missing)} missing from the "
                f"data roots, {plan.skipped_by_index} skipped by the index.")  # fmt: skip
        else:
            say(f"All {prepared.resumed} scenes already done (--force redoes them); writing "
                "the outputs.")  # fmt: skip
    start = time.perf_counter()
    log = RunLog(placement.rank)
    session, load_error = None, None
    if mine:
        from dsviewer.viewer.evaluation.scene_metrics import open_session

        try:
            session = open_session(job.checkpoint, replace(job.settings,
                                                           device=placement.device))
        except Exception as error:  # every rank must reach the exchange
            if interrupted():  # a signal that came out as another exception
                raise
            # A checkpoint that does not fit is a CheckpointError, judged from its shapes before
            # torch loads it; a RuntimeError from torch here is a bug.
            text, is_bug = rank_error(error, placement, log)
            load_error = (f"could not load the model: {text}", is_bug)
    load_errors = [e for e in distributed.all_gather(placement, load_error) if e]
    if load_errors:
        code = EXIT_BUG if any(is_bug for _, is_bug in load_errors) else EXIT_USER_ERROR
        return fail(" ".join(dict.fromkeys(text for text, _ in load_errors)), code)
    counts = run_shard(job, placement, prepared, mine, session, console, log)
    counts["warnings"] = warnings.tally() if not placement.is_main else []
    ranks = distributed.all_gather(placement, counts)
    for rank in ranks:
        warnings.merge(rank.pop("warnings"))  # rank 0 prints the run's totals once
    errors = [r["error"] for r in ranks if r["error"]]
    if errors:
        code = EXIT_BUG if any(r["bug"] for r in ranks) else EXIT_USER_ERROR
        return fail(" ".join(dict.fromkeys(errors)), code)
    if not placement.is_main:
        return 0, None
    wall = time.perf_counter() - start
    for rank in ranks:
        del rank["error"], rank["bug"]
    timing = {"world_size": placement.world_size, "ranks": ranks,
              "evaluated_this_run": len(prepared.todo), "wall_seconds": round(wall, 3),
              "scenes_per_second": round(len(prepared.todo) / wall, 4) if wall > 0 else None,
              "stages": stage_totals(ranks), "stage_meanings": STAGE_MEANINGS}  # fmt: skip
    from dsviewer.viewer.evaluation.merge import write_outputs

    try:
        records = write_outputs(job, prepared, timing, placement.device)
    except OSError as error:
        raise OutputFolderError(
            f"Could not write the outputs into --out {job.out}: {os_error_text(error)}. "
            "The results of every scene are kept: make room (or choose another --out) and "
            "rerun the same command to write them."
        ) from None
    failed = sum(r.status == STATUS_FAILED for r in records)
    # failed scenes are rows of the answer, not a failed run (torchrun: exit 0)
    return 0, (f"Wrote {', '.join(str(Path(job.out) / n) for n in OUTPUT_FILES)}: "
               f"{sum(r.status == STATUS_OK for r in records)} ok, {failed} failed, "
               f"{sum(r.status == STATUS_MISSING for r in records)} missing.")  # fmt: skip

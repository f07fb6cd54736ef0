"""``dsviewer eval --ckpt-dir DIR``: every checkpoint of a training, a step each, same scenes.

Rank 0 reads the folder once (:class:`dsviewer.viewer.watch.checkpoints.CheckpointFolder`:
complete files only, a note for each file skipped) and tells every rank the steps. Each step is
a whole evaluation of its checkpoint in ``OUT/steps/step-<S>/`` (records, resume, torchrun
shards, its own ``scenes.csv`` and ``report.html``: :func:`runner.evaluate`), so a rerun while
the training goes on evaluates only the new steps. Then rank 0 writes ``OUT/steps.csv`` (each
step's ``scenes.csv`` rows with the step and checkpoint in front:
:func:`dsviewer.viewer.watch.step_metrics.step_row`) and ``OUT/report.html`` (the curves of
every metric over the steps, :mod:`dsviewer.viewer.evaluation.step_report`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dsviewer.viewer.errors import EXIT_USER_ERROR, interrupted, is_user_error
from dsviewer.viewer.evaluation import distributed
from dsviewer.viewer.evaluation.job import EvalJob, EvalUsageError
from dsviewer.viewer.evaluation.records import RUN_FILE
from dsviewer.viewer.evaluation.runner import (
    OutputFolderError,
    evaluate,
    os_error_text,
    run_evaluation,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from dsviewer.viewer.watch.checkpoints import StepCheckpoint

STEPS_DIR = "steps"
STEP_OUTPUTS = ("steps.csv", "report.html")
SETTLE_ROUNDS = 10  # polls waiting for files written right now before going on without them


def step_folder(out: Path, step: StepCheckpoint) -> Path:
    return Path(out) / STEPS_DIR / f"step-{step.step:09d}"


def folder_steps(ckpt_dir: Path) -> tuple[list[StepCheckpoint], list[str]]:
    """The folder's complete checkpoints as steps, and the notes on the files skipped. Files
    written at this moment are waited for (a few polls), then left for the next run."""
    from dsviewer.viewer.session.specs import model_path
    from dsviewer.viewer.watch.checkpoints import CheckpointFolder

    if not Path(ckpt_dir).is_dir():
        raise EvalUsageError(f"--ckpt-dir {ckpt_dir} is not a folder. Give the folder a training "
                             "writes its checkpoints to (a Lightning run folder, its "
                             "checkpoints/, or a folder of .pth files).")  # fmt: skip
    folder = CheckpointFolder(model_path(ckpt_dir))  # absolute: steps.csv names each file
    _, notes = folder.poll()
    for _ in range(SETTLE_ROUNDS):
        if not folder.pending:
            break
        time.sleep(folder.settle_s)
        notes += folder.poll()[1]
    if folder.pending:
        notes.append(f"{len(folder.pending)} file(s) still being written, left for the next run: "
                     f"{', '.join(p.name for p in folder.pending[:3])}")  # fmt: skip
    steps = folder.all_steps()
    if not steps:
        said = " Skipped: " + " ".join(notes) if notes else ""
        raise EvalUsageError(f"--ckpt-dir {ckpt_dir} holds no complete DepthSplat checkpoint "
                             f"(.ckpt, .pth, .pt or .safetensors, also in its checkpoints/)."
                             f"{said}")  # fmt: skip
    return steps, notes


def step_job(job: EvalJob, step: StepCheckpoint) -> EvalJob:
    """The evaluation of one step: its checkpoint, its own folder."""
    return replace(job, run=replace(job.run, checkpoint=step.path),
                   out=step_folder(job.out, step), ckpt_dir=None)  # fmt: skip


def evaluate_steps(job: EvalJob, placement, console, say, warnings,
                   check: Callable[[], None] | None = None) -> tuple[int, str | None]:  # fmt: skip
    """The run once the process group is up (see :func:`runner.evaluate`, which runs each
    step): the exit status and the line that ends the run."""
    decision, bug = None, None
    if placement.is_main:
        try:
            if check is not None:
                check()
            if (Path(job.out) / RUN_FILE).exists():
                raise EvalUsageError(f"--out {job.out} holds the evaluation of one checkpoint "
                                     "(run.json); give --ckpt-dir its own --out folder.")
            decision = ("ok", folder_steps(Path(job.ckpt_dir or "")))
        except Exception as error:  # the other ranks must hear of it
            if interrupted():  # a signal that came out as another exception
                raise
            decision = ("error", str(error))
            bug = None if is_user_error(error) else error
    kind, payload = distributed.broadcast(placement, decision)
    if bug is not None:
        raise bug
    if kind == "error":
        return EXIT_USER_ERROR, f"dsviewer eval: error: {payload}" if placement.is_main else None
    steps, notes = payload
    if placement.is_main:
        for note in notes:
            say(f"--ckpt-dir: {note}")
    done = []
    for number, step in enumerate(steps, 1):
        # A training that keeps its k best checkpoints deletes the others as it goes.
        if not distributed.broadcast(placement, step.path.is_file()):
            notes.append(f"{step.path.name}: deleted before its turn (step {step.step}), left out")
            if placement.is_main:
                say(f"--ckpt-dir: {notes[-1]}")
            continue
        if placement.is_main:
            say(f"Step {step.step} ({number} of {len(steps)}, {step.step_source}): {step.path}")
        code, last_line = evaluate(step_job(job, step), placement, console, say, warnings)
        if code != 0:
            return code, last_line
        if last_line is not None:
            say(last_line)
        done.append(step)
    if not placement.is_main:
        return 0, None
    steps = done
    try:
        count = write_step_outputs(job, steps, notes)
    except OSError as error:
        raise OutputFolderError(
            f"Could not write steps.csv or report.html into --out {job.out}: "
            f"{os_error_text(error)}. Every step's results are kept: make room and rerun the "
            "same command to write them."
        ) from None
    return 0, (f"Wrote {', '.join(str(Path(job.out) / n) for n in STEP_OUTPUTS)}: {len(steps)} "
               f"steps, {count} rows.")  # fmt: skip


def write_step_outputs(job: EvalJob, steps: list[StepCheckpoint], notes: list[str]) -> int:
    """``steps.csv`` and the curves' ``report.html`` from every step's ``scenes.csv``; returns
    the number of rows."""
    from dsviewer.io.atomic import atomic_write
    from dsviewer.viewer.evaluation.step_report import render_step_report
    from dsviewer.viewer.evaluation.tables import read_rows, write_rows
    from dsviewer.viewer.watch.step_metrics import STEP_COLUMNS, step_row

    out = Path(job.out)
    rows = [step_row(step, row) for step in steps
            for row in read_rows(step_folder(out, step) / "scenes.csv")]  # fmt: skip
    write_rows(out / "steps.csv", rows, STEP_COLUMNS)
    links = {step.step: f"{STEPS_DIR}/{step_folder(out, step).name}/report.html"
             for step in steps}  # fmt: skip
    page = render_step_report(rows, steps, links, notes,
                              folder=str(Path(job.ckpt_dir or "").resolve()))  # fmt: skip
    with atomic_write(out / "report.html") as handle:
        handle.write(page.encode("utf-8", "replace"))
    return len(rows)


def run_step_evaluation(job: EvalJob, console=None,
                        check: Callable[[], None] | None = None) -> int:  # fmt: skip
    """``dsviewer eval --ckpt-dir``: exit codes as :func:`runner.run_evaluation`."""
    return run_evaluation(job, console, check, body=evaluate_steps)

"""The output folder of ``dsviewer eval``: claim it for a run, and set the run before aside.

``--force`` with other inputs moves the previous run (``run.json``, ``scenes/`` and the three
outputs) to ``previous-run/``, replacing an older one there. The move never leaves a state that
mixes two runs: ``run.json`` goes first into ``previous-run.partial/`` (from then on that folder
marks an unfinished move, and the output folder has no ``run.json``), then the records and
outputs, then the older ``previous-run/`` into it, and one rename puts it in place; the new
``run.json`` is written only after that. A start that finds ``previous-run.partial/`` finishes
the move first.

It moves and deletes only what dsviewer eval wrote: a ``run.json`` that does not read as one of
ours, records without such a ``run.json``, other files among the records, an output name that
is not a file, or a ``previous-run/`` without our ``run.json`` are refused in one paragraph
(as ``dsviewer export --overwrite`` refuses folders it did not write).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from dsviewer.errors import InputError
from dsviewer.io.text_formats import parse_json
from dsviewer.viewer.evaluation.records import (
    OUTPUT_FILES,
    RECORDS_DIR,
    RUN_FILE,
    identity_fields,
    write_json,
)

PREVIOUS_RUN_DIR = "previous-run"
PARTIAL_DIR = "previous-run.partial"  # a set-aside in progress
SUPERSEDED_DIR = "superseded"  # the older previous-run, inside the one replacing it until deleted
RUN_FILE_FIELDS = ("checkpoint", "checkpoint_bytes", "checkpoint_mtime_ns", "config_sha256",
                   "max_target_views")  # every run.json of ours has these  # fmt: skip
# a record's name, or the temporary file atomic_write leaves when killed mid-write
RECORD_NAME = re.compile(r"[0-9a-f]{24}\.json|\.[0-9a-f]{24}\.json\.\d+\.[0-9a-f]{8}\.tmp")


class RunMismatchError(InputError):
    def __init__(self, out: Path, differences: list[str]) -> None:
        super().__init__(
            f"{out} holds the results of another evaluation ({'; '.join(differences)}), so "
            "resuming would mix them. Choose another --out, or pass --force to evaluate every "
            "scene again in this folder."
        )


class ForeignFilesError(InputError):
    def __init__(self, out: Path, entries: list[str]) -> None:
        from dsviewer.viewer.export.layout import describe  # lazy: the export package imports torch

        super().__init__(
            f"--out {out} holds files that dsviewer eval did not write where it keeps, moves or "
            f"deletes its own ({describe(entries)}). Nothing was changed. Move them elsewhere, "
            "or choose another --out."
        )


def read_run_file(folder: Path) -> dict | None:
    """``folder/run.json`` if it reads as a dsviewer eval run's, else None."""
    try:
        data = parse_json((Path(folder) / RUN_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    ours = isinstance(data, dict) and all(name in data for name in RUN_FILE_FIELDS)
    return data if ours else None


def _is_folder(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _exists(path: Path) -> bool:
    return path.exists() or path.is_symlink()


def has_records(out: Path) -> bool:
    folder = Path(out) / RECORDS_DIR
    return _is_folder(folder) and any(path.is_file() for path in folder.glob("*.json"))


def foreign_entries(out: Path, moving: bool = False) -> list[str]:
    """What in the places a run keeps, moves or deletes was not written by dsviewer eval, as
    paths relative to ``out``. Records count as ours beside our ``run.json``, or while
    ``moving`` (an unfinished set-aside holds the run.json)."""
    out = Path(out)
    ours = moving or read_run_file(out) is not None
    foreign = [RUN_FILE] if _exists(out / RUN_FILE) and not ours else []
    records = out / RECORDS_DIR
    if _exists(records) and not _is_folder(records):
        foreign.append(RECORDS_DIR)
    elif _exists(records):
        for entry in sorted(records.iterdir()):
            if not (RECORD_NAME.fullmatch(entry.name) and entry.is_file()
                    and not entry.is_symlink()):  # fmt: skip
                foreign.append(f"{RECORDS_DIR}/{entry.name}")
            elif not ours:
                foreign.append(f"{RECORDS_DIR}/{entry.name} (a record without a {RUN_FILE})")
    for name in OUTPUT_FILES:
        if _exists(out / name) and not ((out / name).is_file() and not (out / name).is_symlink()):
            foreign.append(name)
    for name in (PREVIOUS_RUN_DIR, PARTIAL_DIR):
        if _exists(out / name) and not (_is_folder(out / name) and read_run_file(out / name)):
            foreign.append(f"{name}/")
    return foreign


def _finish_set_aside(out: Path) -> Path:
    """Move what is left of the previous run into the partial folder, then put it in place."""
    partial, previous = out / PARTIAL_DIR, out / PREVIOUS_RUN_DIR
    for name in (RECORDS_DIR, *OUTPUT_FILES):
        if _exists(out / name):
            os.replace(out / name, partial / name)
    if _exists(previous):
        os.replace(previous, partial / SUPERSEDED_DIR)
    os.replace(partial, previous)
    shutil.rmtree(previous / SUPERSEDED_DIR, ignore_errors=True)
    return previous


def finish_interrupted_set_aside(out: Path) -> Path | None:
    """Finish a set-aside that was interrupted (see the module docstring); returns the folder
    it completed, or None when there was none."""
    out = Path(out)
    partial, previous = out / PARTIAL_DIR, out / PREVIOUS_RUN_DIR
    if _is_folder(previous) and read_run_file(previous) is not None:
        shutil.rmtree(previous / SUPERSEDED_DIR, ignore_errors=True)  # stopped while deleting
    if not _exists(partial):
        return None
    if _is_folder(partial) and read_run_file(partial) is None and not any(partial.iterdir()):
        partial.rmdir()  # stopped right after creating it: nothing was moved yet
        return None
    foreign = foreign_entries(out, moving=True)
    if (not _is_folder(partial) or read_run_file(partial) is None or _exists(out / RUN_FILE)
            or foreign):  # fmt: skip
        raise ForeignFilesError(out, foreign or [f"{PARTIAL_DIR}/"])
    return _finish_set_aside(out)


def set_aside_previous_run(out: Path) -> Path:
    """Move the previous run into ``out/previous-run`` (see the module docstring). The caller
    has checked :func:`foreign_entries`."""
    out = Path(out)
    (out / PARTIAL_DIR).mkdir()
    os.replace(out / RUN_FILE, out / PARTIAL_DIR / RUN_FILE)  # first: marks the move
    return _finish_set_aside(out)


def claim_folder(out: Path, identity: dict, force: bool) -> Path | None:
    """Check ``out``'s ``run.json`` against ``identity``, then write it.

    A folder without records is always taken (a run that stopped before its first scene, e.g.
    at the model load, leaves nothing to mix). A folder with records of another run is refused,
    unless ``force``: then that run is moved to ``out/previous-run`` first, and that folder is
    returned (None when nothing was moved). Files dsviewer eval did not write are never moved
    or deleted (:class:`ForeignFilesError`).
    """
    out = Path(out)
    moved = finish_interrupted_set_aside(out)
    previous = read_run_file(out)
    if previous is None and (_exists(out / RUN_FILE) or has_records(out)):
        raise ForeignFilesError(out, foreign_entries(out))
    differences = [
        f"{name} was {previous.get(name)!r}, now {value!r}"
        for name, value in identity_fields(identity).items()
        if previous is not None and previous.get(name) != value
    ]
    if differences and has_records(out):
        if not force:
            raise RunMismatchError(out, differences)
        foreign = foreign_entries(out)
        if foreign:
            raise ForeignFilesError(out, foreign)
        moved = set_aside_previous_run(out)
    write_json(out / RUN_FILE, identity)
    return moved

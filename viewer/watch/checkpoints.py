"""A folder where a training writes checkpoints, read as a list of training steps.

Layouts: PyTorch Lightning's ``ModelCheckpoint`` (``checkpoints/epoch=E-step=S.ckpt`` and
``last.ckpt``; the folder given may be the run folder that holds ``checkpoints/`` or that folder
itself) and plain ``.pth`` / ``.pt`` / ``.safetensors`` files. A file's step is, first that
applies: the Lightning checkpoint's ``global_step`` (read with ``read_checkpoint(mapped=True)``:
``torch.load(weights_only=True, mmap=True)`` parses the small pickle record and maps the tensor
records without reading them, so a 1.5 GB file costs milliseconds), ``step=N`` in the file name
(also ``step_N``, ``step-N``, ``stepN``), else its place among the folder's step-less files in
the order they were written (modification time, then name; the first is step 0).

``last.ckpt`` (Lightning's ``save_last``, also ``last-v1.ckpt``) is a copy of, or a link to,
the newest ``epoch=...-step=...`` file, rewritten at every save. It is used only for a step no
other file holds (a run with ``save_top_k=0``); otherwise, or without a step number of its own
(``global_step`` or in its name), it is skipped with one note.

A file still being written is never read: it is examined only once its modification time is
``settle_s`` old, its size and modification time are the same before and after the read, and
a torch zip archive has its end-of-archive record (``torch.save`` writes it last) with every
member inside the file; a legacy pickle or a safetensors file must load whole. Writers are not
assumed atomic: Lightning's ``_atomic_save``, despite its name, writes to the final name in
the 2.x releases we read (only the newest stages local files under a temporary name). A file
that fails these checks once settled gets one note and is looked at again only when its size
or time changes; a file of another architecture than the folder's
first checkpoint, a second file of one step, and a file that is no DepthSplat checkpoint get
one note each. Nothing here raises on a bad file. Notes carry file names: escape them before
HTML (``viewer/escape.py``).
"""

from __future__ import annotations

import os
import re
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dsviewer.model.checkpoint_file import RawCheckpoint
    from dsviewer.model.config import DepthSplatConfig

SUFFIXES = (".ckpt", ".pth", ".pt", ".safetensors")
LIGHTNING_FOLDER = "checkpoints"  # ModelCheckpoint's folder inside a run folder
LAST = re.compile(r"last(-v\d+)?", re.IGNORECASE)  # save_last's names (stem)
STEP_IN_NAME = re.compile(r"(?:^|[^a-z])step[=_-]?(\d+)(?!\d)", re.IGNORECASE)
DEFAULT_SETTLE_S = 1.0
STEP_SOURCES = ("global_step", "file name", "file order")


@dataclass(frozen=True)
class StepCheckpoint:
    """One training step: the checkpoint file, and where its step number came from (one of
    :data:`STEP_SOURCES`)."""

    step: int
    path: Path
    step_source: str


Stat = tuple[int, int]  # size, modification time in ns


class CheckpointFolder:
    """The steps of a training's checkpoint folder, found by polling (new files appear).
    Poll from one thread at a time (it keeps what it has seen; no lock).

    Args:
        root: the folder (a Lightning run folder: its ``checkpoints/`` is read too).
        settle_s: seconds a file's modification time must lie in the past before it is read.
    """

    def __init__(self, root: Path, settle_s: float = DEFAULT_SETTLE_S) -> None:
        self.root = Path(root)
        self.settle_s = settle_s
        self.architecture: DepthSplatConfig | None = None
        """The first accepted checkpoint's architecture, when it can be named (the file embeds
        it, or its widths are released ones); later files must have its tensor shapes."""
        self.architecture_file: Path | None = None
        self._shapes: dict[str, tuple[int, ...]] | None = None  # the first file's tensors
        self.pending: list[Path] = []
        """Files seen at the last poll but not settled yet (written within ``settle_s``)."""
        self._steps: dict[int, StepCheckpoint] = {}
        self._examined: dict[Path, Stat] = {}  # stat at the last examination, any verdict
        self._accepted: dict[Path, int] = {}  # resolved path -> step
        self._next_order = 0
        self._noted_last = False

    def all_steps(self) -> list[StepCheckpoint]:
        """Every step accepted so far, sorted by step (no new poll)."""
        return [self._steps[step] for step in sorted(self._steps)]

    def poll(self) -> tuple[list[StepCheckpoint], list[str]]:
        """New complete checkpoints since the last poll, sorted by step, and notes (one line
        each) on files skipped; never raises on a bad file."""
        new: list[StepCheckpoint] = []
        notes: list[str] = []
        now = time.time()
        self.pending = []
        candidates = self._candidates()
        for path, stat in candidates:
            if self._examined.get(path) == stat:
                continue
            if now - stat[1] / 1e9 < self.settle_s:
                self.pending.append(path)
                continue
            if _is_last(path) and self.pending:
                self.pending.append(path)  # its step's own file may still be on its way
                continue
            found = self._examine(path, stat, notes)
            if found is not None:
                new.append(found)
        return sorted(new, key=lambda s: s.step), notes

    # --- one file -------------------------------------------------------------------------------

    def _candidates(self) -> list[tuple[Path, Stat]]:
        """Checkpoint files of the folder: in the order written, save_last's copies last."""
        found = []
        for folder in (self.root, self.root / LIGHTNING_FOLDER):
            try:
                entries = list(os.scandir(folder))
            except OSError:  # not there (yet), or not a folder
                continue
            for entry in entries:
                path = Path(entry.path)
                if entry.name.startswith(".") or path.suffix.lower() not in SUFFIXES:
                    continue  # hidden: an atomic writer's temporary file
                try:
                    info = entry.stat()  # follows a save_last="link" symlink
                except OSError:
                    continue  # deleted meanwhile (save_top_k) or a dangling link
                if entry.is_file():
                    found.append((path, (info.st_size, info.st_mtime_ns)))
        found.sort(key=lambda item: (_is_last(item[0]), item[1][1], item[0].name))
        return found

    def _examine(self, path: Path, stat: Stat, notes: list[str]) -> StepCheckpoint | None:
        """Read ``path`` (settled) once: a new step, or None with at most one note."""
        from dsviewer.model.checkpoint import CheckpointError

        incomplete = _incomplete(path, stat[0])
        raw = None
        if incomplete is None:
            try:
                raw = _read(path)
            except CheckpointError as error:
                incomplete = _one_line(str(error), path)
            except OSError:
                return None  # deleted while read: nothing to say
        if _stat(path) != stat:
            return None  # written to while we read: examined again once it settles
        self._examined[path] = stat
        name = _shown(path, self.root)
        if incomplete is not None:
            notes.append(f"{name}: skipped, {incomplete}; looked at again if it changes.")
            return None
        assert raw is not None
        resolved = path.resolve()
        if path.is_symlink() and resolved in self._accepted:
            return None  # a link to a file already read (save_last="link")
        step, source = self._step_of(raw, path)
        if _is_last(path) and source == "file order":
            if not self._noted_last:  # once: it is rewritten at every save
                notes.append(f"{name}: skipped, a copy of the newest checkpoint (save_last) "
                             "without a step number (no global_step, none in its name).")
                self._noted_last = True
            return None
        if step in self._steps and self._steps[step].path == path:
            return None  # the same file touched again
        if step in self._steps:
            if _is_last(path):
                if not self._noted_last:
                    notes.append(f"{name}: skipped, a copy of the newest step, rewritten at "
                                 f"every save (Lightning's save_last; here step {step}, also in "
                                 f"{_shown(self._steps[step].path, self.root)}); it is "
                                 "used only for a step no other file holds.")
                    self._noted_last = True
                return None
            notes.append(f"{name}: skipped, step {step} ({source}) is already "
                         f"{_shown(self._steps[step].path, self.root)}.")
            return None
        problem = self._architecture_problem(raw, path)
        if problem:
            notes.append(f"{name}: skipped, {problem}.")
            return None
        if source == "file order":
            self._next_order += 1
        checkpoint = StepCheckpoint(step, path, source)
        self._steps[step] = checkpoint
        self._accepted[resolved] = step
        return checkpoint

    def _architecture_problem(self, raw: RawCheckpoint, path: Path) -> str | None:
        """Why ``raw`` cannot be a step of this folder (None: it can).

        Same architecture means the same tensor names and shapes as the first checkpoint: a
        training at widths no released file has, saved without dsviewer's embedded settings,
        has no architecture :func:`file_architecture` can name (it loads with ``--config``),
        but its files still compare. Where both are named, the note says which fields differ.
        """
        from dsviewer.model.architecture import shapes_of
        from dsviewer.model.checkpoint import CheckpointError, file_architecture
        from dsviewer.model.checkpoint_file import DEPTH_PREFIX

        shapes = shapes_of(raw.state_dict)
        if not any(key.startswith(DEPTH_PREFIX) for key in shapes):
            return (f"not a DepthSplat checkpoint ({raw.layout}, {len(shapes)} tensors, none of "
                    "a depth predictor)")
        try:
            architecture: DepthSplatConfig | None = file_architecture(raw, path)[0]
        except CheckpointError:
            architecture = None  # custom widths without embedded settings: shapes only
        if self._shapes is None:
            self._shapes, self.architecture, self.architecture_file = shapes, architecture, path
            return None
        if shapes == self._shapes:
            if self.architecture is None and architecture is not None:
                self.architecture, self.architecture_file = architecture, path  # now named
            return None
        first = _shown(self.architecture_file, self.root)
        if architecture is not None and self.architecture is not None:
            differ = _difference(self.architecture, architecture)
            if differ:
                return f"another architecture than {first} ({differ})"
        keys = [key for key in sorted(set(shapes) | set(self._shapes))
                if shapes.get(key) != self._shapes.get(key)]
        return (f"another architecture than {first}: {len(keys)} tensors differ, e.g. "
                f"{keys[0]} {self._shapes.get(keys[0])} -> {shapes.get(keys[0])}")

    def _step_of(self, raw: RawCheckpoint, path: Path) -> tuple[int, str]:
        if raw.global_step is not None:
            return raw.global_step, "global_step"
        match = STEP_IN_NAME.search(path.stem)
        if match:
            return int(match.group(1)), "file name"
        return self._next_order, "file order"


def _is_last(path: Path) -> bool:
    return LAST.fullmatch(path.stem) is not None


def _stat(path: Path) -> Stat | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return info.st_size, info.st_mtime_ns


def _incomplete(path: Path, size: int) -> str | None:
    """Why a torch zip archive is not whole yet (None: it is, or it is no zip archive)."""
    try:
        with open(path, "rb") as file:
            if file.read(2) != b"PK":
                return None  # a legacy pickle or safetensors: the full read decides
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError):
        return "the zip archive has no end record (being written, or truncated)"
    except OSError:
        return None  # gone or unreadable: the read says so
    for member in members:
        end = member.header_offset + 30 + len(member.filename) + member.compress_size
        if end > size:
            return f"zip member {member.filename!r} ends past the file (truncated)"
    return None if members else "an empty zip archive"


def _read(path: Path) -> RawCheckpoint:
    """The file's tensors and small entries; a zip archive's tensors mapped, not read. A file
    torch cannot map (e.g. unaligned records of another writer) is read whole, so that a
    note names the real fault."""
    from dsviewer.model.checkpoint_file import CheckpointError, read_checkpoint

    try:
        return read_checkpoint(path, mapped=True)
    except CheckpointError:
        return read_checkpoint(path)


def _shown(path: Path | None, root: Path) -> str:
    if path is None:
        return "?"
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name


def _one_line(text: str, path: Path) -> str:
    """A checkpoint error as one short line without the path (the note names the file)."""
    text = " ".join(text.replace(str(path), "the file").split())
    return text if len(text) <= 240 else text[:237].rstrip() + "..."


def _difference(a: DepthSplatConfig, b: DepthSplatConfig) -> str:
    first, second = a.to_dict(), b.to_dict()
    changed = [f"{key} {first.get(key)!r} -> {second.get(key)!r}"
               for key in sorted(set(first) | set(second)) if first.get(key) != second.get(key)]
    return ", ".join(changed[:3]) + (", ..." if len(changed) > 3 else "")

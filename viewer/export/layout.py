"""The folder layouts ``dsviewer export`` writes, and what in a folder is not from one of them.

``--overwrite`` replaces a folder as a whole, so it may only replace an earlier export: files
the user keeps beside the export files would go with it. An earlier export is recognised by
its layout and its marker file (written last, so a whole export has it; a JSON object with the
export's own keys, so a user's file of that name does not count):

* one scene, one checkpoint: export files only (the names the caller passes: the registry's,
  :data:`dsviewer.viewer.export.EXPORT_FILE_NAMES`), ``metrics.json`` among them;
* one scene, several checkpoints: ``runs/`` (each entry a one-scene export), ``compare.json``
  and ``compare.ply``, ``compare.json`` among them;
* several scenes: sub-folders only, each an export of one of the two layouts above.

Hidden entries of an interrupted export (their names hold the transaction marker) count as the
export's. Evaluation outputs (``scenes.csv``, ``summary.json``, ...) are not this command's.
"""

from __future__ import annotations

from pathlib import Path

from dsviewer.io.text_formats import parse_json
from dsviewer.viewer.export.transaction import MARKER

METRICS_JSON = "metrics.json"  # a one-scene export's marker
GLB_FILE = "scene.glb"
RERUN_FILE = "recording.rrd"  # only with --rerun
RUNS_FOLDER = "runs"
COMPARE_JSON = "compare.json"  # a comparison export's marker
COMPARE_PLY = "compare.ply"


MARKER_KEYS = {METRICS_JSON: ("scene", "units"), COMPARE_JSON: ("runs", "pairs")}
MARKER_MAX_BYTES = 64 << 20  # a marker is read only below this size (ours are kilobytes)


def holds_one_export(folder: Path) -> bool:
    """Whether ``folder`` itself is an export of one scene (not one sub-folder per scene)."""
    return any(_is_marker(Path(folder) / name) for name in MARKER_KEYS)


def foreign_entries(folder: Path, export_files: tuple[str, ...]) -> list[str]:
    """Entries of ``folder`` that no earlier export wrote, as paths relative to it (folders end
    in ``/``); empty for a missing or empty folder and for an earlier export. ``export_files``:
    the names a one-scene export writes."""
    folder = Path(folder)
    if not _is_folder(folder):
        return []
    foreign = _foreign_in_export(folder, export_files, comparison=True)
    if foreign is None:
        return _foreign_in_sub_exports(folder, export_files, comparison=True)
    return foreign


def _entries(folder: Path) -> list[Path]:
    return sorted(entry for entry in folder.iterdir() if MARKER not in entry.name)


def _is_folder(entry: Path) -> bool:
    return entry.is_dir() and not entry.is_symlink()  # an export writes no links


def _is_file(entry: Path, names: tuple[str, ...]) -> bool:
    return entry.name in names and entry.is_file() and not entry.is_symlink()


def _is_marker(entry: Path) -> bool:
    """A marker file as an export writes it: a JSON object with the export's own keys (a user's
    file that happens to be called ``metrics.json`` does not make its folder an export)."""
    keys = MARKER_KEYS.get(entry.name)
    if keys is None or not _is_file(entry, (entry.name,)):
        return False
    try:
        if entry.stat().st_size > MARKER_MAX_BYTES:
            return False
        content = parse_json(entry.read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(content, dict) and all(key in content for key in keys)


def _label(entry: Path) -> str:
    return entry.name + "/" if _is_folder(entry) else entry.name


def _foreign_in_export(folder: Path, export_files: tuple[str, ...], comparison: bool
                       ) -> list[str] | None:  # fmt: skip
    """Foreign entries of ``folder`` read as a one-scene export (or, if ``comparison``, a
    comparison export); None when it holds neither layout's marker."""
    entries = _entries(folder)
    if _is_marker(folder / METRICS_JSON):
        return [_label(e) for e in entries if not _is_file(e, export_files)]
    if not (comparison and _is_marker(folder / COMPARE_JSON)):
        return None
    foreign = []
    for entry in entries:
        if entry.name == RUNS_FOLDER and _is_folder(entry):
            inner = _foreign_in_sub_exports(entry, export_files, comparison=False)
            foreign += [f"{RUNS_FOLDER}/{name}" for name in inner]
        elif not _is_file(entry, (COMPARE_JSON, COMPARE_PLY)):
            foreign.append(_label(entry))
    return foreign


def _foreign_in_sub_exports(folder: Path, export_files: tuple[str, ...],
                            comparison: bool) -> list[str]:  # fmt: skip
    """Foreign entries of a folder meant to hold one export per sub-folder: a file, or a
    sub-folder without an export's marker, is foreign as a whole."""
    foreign = []
    for entry in _entries(folder):
        inner = _foreign_in_export(entry, export_files, comparison) if _is_folder(entry) else None
        if inner is None:
            foreign.append(_label(entry))
        else:
            foreign += [f"{entry.name}/{name}" for name in inner]
    return foreign


def describe(entries: list[str], shown: int = 3) -> str:
    """``a, b/ and 4 more`` for a message."""
    names = ", ".join(entries[:shown])
    return names if len(entries) <= shown else f"{names} and {len(entries) - shown} more"

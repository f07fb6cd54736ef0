"""``dsviewer export ...``: parse the command line, then export each scene with one model load.

Only the standard library, tyro and the option dataclasses are imported at module level, so
``dsviewer export --help`` answers at once; the exporter (torch, open3d) loads after parsing.
Every output folder is checked (writable, not the current folder, holding nothing or, with
``--overwrite``, only an earlier export) before any model work, and each scene's folder is
written as one transaction. The files themselves are described in :mod:`dsviewer.viewer.export`;
with
several ``--ckpt`` each model is loaded once, runs on every scene, and a scene's folder is the
comparison of :mod:`dsviewer.viewer.export.compare_files`. The work is
:func:`dsviewer.viewer.export.batch.export_scenes`, which takes run specs and settings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from dsviewer.errors import InputError
from dsviewer.viewer.options import RunOptions


@dataclass
class ExportOptions(RunOptions):
    """Export PLY comparisons, an offline HTML scene, panels and metrics for one or more scenes."""

    out: Path | None = None
    """Output folder. With several scenes, each goes to a sub-folder named after its key. With
    several --ckpt, a scene's folder holds runs/<checkpoint stem>/ (each run's files),
    compare.json and compare.ply."""

    overwrite: bool = False
    """Replace an earlier export in the output folder as a whole (never mixed with the new
    files). A folder holding other files is refused, flag or not."""

    all_from_index: bool = False
    """Export every scene key of --index that has views there (null entries are skipped)."""

    demo: bool = False
    """Export the bundled demo scenes with the bundled demo model (or the --scene keys given)."""

    rerun: bool = False
    """Also write recording.rrd, the scene as a Rerun recording (cameras, photos, depth and map
    images, points with their values, metrics); needs pip install 'dsviewer[rerun]'."""

    consistency_threshold: float = 0.05
    """Relative depth error above which a pixel is multi-view inconsistent."""

    consistency_occlusions: Literal["count", "skip"] = "count"
    """skip: ignore projections behind another view's surface (possible occlusions)."""


EXIT_SOME_FAILED = 1  # the others were written; each failure is reported


class ExportUsageError(InputError):
    """Bad ``dsviewer export`` arguments."""


def scene_specs(options: ExportOptions) -> list[str]:
    """The scene specs to export, in order, without duplicates."""
    specs = list(options.scene)
    if options.all_from_index:
        if options.index is None:
            raise ExportUsageError("--all-from-index needs --index FILE (an evaluation index).")
        from dsviewer.dataset.views import read_evaluation_index

        # Keys whose entry is null are skipped by the official evaluation too.
        index = read_evaluation_index(Path(options.index))
        specs += [key for key, selection in index.items() if selection is not None]
    if not specs:
        raise ExportUsageError(
            "no scene given: pass --scene KEY (repeat the flag for more) or "
            "--all-from-index with --index FILE."
        )
    return list(dict.fromkeys(specs))


def scene_folder(out: Path, spec: str, many: bool) -> Path:
    """``out`` for one scene; ``out/<spec made filename-safe>`` for several."""
    if not many:
        return out
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", spec).strip("._") or "scene"
    return out / name


def scene_folders(out: Path, specs: Sequence[str]) -> dict[str, Path]:
    """Each spec's output folder; specs that sanitize to the same name get ``_2``, ``_3``, ..."""
    many = len(specs) > 1
    folders: dict[str, Path] = {}
    for spec in specs:
        folder, n = scene_folder(out, spec, many), 2
        while folder in folders.values():
            folder, n = scene_folder(out, f"{spec}_{n}", many), n + 1
        folders[spec] = folder
    return folders


def parse_args(argv: Sequence[str] | None) -> ExportOptions:
    return tyro.cli(ExportOptions, args=list(argv) if argv is not None else None,
                    prog="dsviewer export")  # fmt: skip


def check_options(options: ExportOptions) -> dict[str, Path]:
    """Every check that needs no model: returns each spec's output folder."""
    from dsviewer.viewer.export import refuse_existing
    from dsviewer.viewer.export.layout import holds_one_export
    from dsviewer.viewer.export.transaction import check_writable, recover

    if options.demo:
        options.use_demo()
    if options.out is None:
        raise ExportUsageError("--out DIR is required: the folder to write the files into.")
    if not options.ckpt:
        raise ExportUsageError("--ckpt FILE is required: the DepthSplat checkpoint to run (or "
                               "--demo for the bundled model and scenes).")  # fmt: skip
    options.check(need_scene=False)  # scenes may come from --all-from-index
    if options.rerun:
        from dsviewer.viewer.export.rerun_recording import require_rerun

        require_rerun()  # before any model work
    folders = scene_folders(Path(options.out), scene_specs(options))
    if len(folders) > 1 and holds_one_export(Path(options.out)):
        raise ExportUsageError(
            f"--out {options.out} holds the export of one scene; several scenes are written into "
            "one sub-folder each, which would mix with it. Choose a new folder for --out."
        )
    for folder in folders.values():
        recover(folder)  # finish what a killed run left behind
        check_writable(folder)
        refuse_existing(folder, options.overwrite)
    return folders


def run(options: ExportOptions) -> int:
    """Export every scene; 0, or 1 when some scenes failed (each failure is reported)."""
    from rich.console import Console

    from dsviewer.viewer.analysis import AnalysisSettings
    from dsviewer.viewer.errors import EXIT_USER_ERROR
    from dsviewer.viewer.escape import escape_rich
    from dsviewer.viewer.export import ExportSettings
    from dsviewer.viewer.export.batch import export_scenes
    from dsviewer.viewer.session.loaded import print_notes

    folders = check_options(options)
    console = Console(stderr=True)
    settings = ExportSettings(analysis=AnalysisSettings(
        consistency_threshold=options.consistency_threshold,
        consistency_occlusions=options.consistency_occlusions,
    ), rerun=options.rerun)  # fmt: skip

    def written(key: str, runs) -> None:
        print_notes(console, [note for run in runs for note in run.notes],
                    key if len(folders) > 1 else None)  # fmt: skip

    failures = export_scenes(folders, options.run_specs(), options.session_settings(), settings,
                             overwrite=options.overwrite, console=console, written=written)
    for spec, message in failures:
        console.print(f"[bold red]{escape_rich(spec)}:[/bold red] {escape_rich(message)}")
    if failures:
        console.print(f"{len(failures)} of {len(folders)} scenes failed.", style="red")
        return EXIT_USER_ERROR if len(failures) == len(folders) else EXIT_SOME_FAILED
    console.print(f"Exported {len(folders)} scenes to {escape_rich(options.out)}.")
    return 0


def main(argv: Sequence[str] | ExportOptions | None = None) -> int:
    """Run ``dsviewer export``: 0; 1 when some scenes failed; 2 on bad input (or when every scene
    failed); 130 when interrupted."""
    from dsviewer.viewer.errors import run_entry_point

    options = argv if isinstance(argv, ExportOptions) else parse_args(argv)
    return run_entry_point("dsviewer export", lambda: run(options))


if __name__ == "__main__":
    from dsviewer.viewer.errors import exit_process

    exit_process(main())

"""``dsviewer export ...``: parse the command line, then export each scene with one model load.

Only the standard library, tyro and the option dataclasses are imported at module level, so
``dsviewer export --help`` answers at once; the exporter (torch, open3d) loads after parsing.
The files themselves are described in :mod:`viewer.export`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from viewer.options import SceneOptions


@dataclass
class ExportOptions(SceneOptions):
    """Export PLY comparisons, an offline HTML scene, panels and metrics for one or more scenes."""

    out: Path | None = None
    """Output folder. With several scenes, each goes to a sub-folder named after its key."""

    overwrite: bool = False
    """Replace export files already in the output folder."""

    scene: Annotated[list[str], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Scene spec: a dataset key, a capture folder or synthetic:<seed>; repeat for several."""

    all_from_index: bool = False
    """Export every scene key of --index that has views there (null entries are skipped)."""

    consistency_threshold: float = 0.05
    """Relative depth error above which a pixel is multi-view inconsistent."""

    consistency_occlusions: Literal["count", "skip"] = "count"
    """skip: ignore projections behind another view's surface (possible occlusions)."""


class ExportUsageError(ValueError):
    """Bad ``dsviewer export`` arguments."""


def scene_specs(options: ExportOptions) -> list[str]:
    """The scene specs to export, in order, without duplicates."""
    specs = list(options.scene)
    if options.all_from_index:
        if options.index is None:
            raise ExportUsageError("--all-from-index needs --index FILE (an evaluation index).")
        from src.dataset.views import read_evaluation_index

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


def main(argv: Sequence[str] | ExportOptions | None = None) -> int:
    """Run ``dsviewer export``; returns 0, or 1 when some scenes failed; exits 2 on bad input."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    options = argv if isinstance(argv, ExportOptions) else parse_args(argv)
    console = Console(stderr=True)
    try:
        if options.out is None:
            raise ExportUsageError("--out DIR is required: the folder to write the files into.")
        if options.ckpt is None:
            raise ExportUsageError("--ckpt FILE is required: the DepthSplat checkpoint to run.")
        if not Path(options.ckpt).is_file():
            raise ExportUsageError(f"--ckpt {options.ckpt} does not exist or is not a file.")
        specs = scene_specs(options)
        if not options.overwrite:
            from viewer.export import ExportExistsError, existing_exports

            for folder in scene_folders(Path(options.out), specs).values():
                existing = existing_exports(folder)
                if existing:
                    raise ExportExistsError(folder, existing)
    except (ValueError, OSError) as error:  # OSError: an --out that is a file or read-only
        console.print(f"[bold red]dsviewer export:[/bold red] {error}")
        raise SystemExit(2) from None

    from viewer.analysis import AnalysisSettings
    from viewer.export import ExportSettings, export_scene
    from viewer.pipeline import ModelSession

    settings = ExportSettings(
        analysis=AnalysisSettings(
            consistency_threshold=options.consistency_threshold,
            consistency_occlusions=options.consistency_occlusions,
        )
    )
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/"
               "{task.total:.0f}"), TimeElapsedColumn())  # fmt: skip
    failures: list[tuple[str, str]] = []
    with Progress(*columns, console=console, transient=False) as bar:
        overall = bar.add_task("Loading model", total=len(specs))
        try:
            session = ModelSession(options)
        except (ValueError, OSError) as error:
            bar.stop()
            console.print(f"[bold red]dsviewer export:[/bold red] {error}")
            raise SystemExit(2) from None
        for spec, folder in scene_folders(Path(options.out), specs).items():
            stage = bar.add_task(f"  {spec}", total=1.0)

            def progress(text: str, fraction: float, task=stage, spec=spec) -> None:
                bar.update(task, description=f"  {spec}: {text}", completed=fraction)

            bar.update(overall, description=f"Exporting {spec}")
            try:
                loaded = session.load(spec, progress=lambda t, f: progress(t, 0.3 * f))
                export_scene(folder, loaded.scene, loaded.prediction, loaded.layers,
                             overwrite=options.overwrite, settings=settings,
                             progress=lambda t, f: progress(t, 0.3 + 0.7 * f))  # fmt: skip
                bar.update(stage, description=f"  {spec}: written to {folder}", completed=1.0)
            except (ValueError, OSError, RuntimeError) as error:  # one failed scene, not all
                failures.append((spec, str(error)))
                bar.update(stage, description=f"  {spec}: [red]failed[/red]")
            bar.advance(overall)
        bar.update(overall, description="Done")
    for spec, message in failures:
        console.print(f"[bold red]{spec}:[/bold red] {message}")
    if failures:
        console.print(f"{len(failures)} of {len(specs)} scenes failed.", style="red")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

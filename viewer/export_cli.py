"""``dsviewer export ...``: parse the command line, then export each scene with one model load.

Only the standard library, tyro and the option dataclasses are imported at module level, so
``dsviewer export --help`` answers at once; the exporter (torch, open3d) loads after parsing.
Every output folder is checked (writable, not the current folder, holding nothing or, with
``--overwrite``, only an earlier export) before any model work, and each scene's folder is
written as one transaction. The files themselves are described in :mod:`dsviewer.viewer.export`;
with
several ``--ckpt`` each model is loaded once, runs on every scene, and a scene's folder is the
comparison of :mod:`dsviewer.viewer.export.compare_files`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import tyro

from dsviewer.errors import InputError
from dsviewer.viewer.options import SceneOptions


@dataclass
class ExportOptions(SceneOptions):
    """Export PLY comparisons, an offline HTML scene, panels and metrics for one or more scenes."""

    out: Path | None = None
    """Output folder. With several scenes, each goes to a sub-folder named after its key. With
    several --ckpt, a scene's folder holds runs/<checkpoint stem>/ (each run's files),
    compare.json and compare.ply."""

    overwrite: bool = False
    """Replace an earlier export in the output folder as a whole (never mixed with the new
    files). A folder holding other files is refused, flag or not."""

    scene: Annotated[list[str], tyro.conf.UseAppendAction] = field(default_factory=list)
    """Scene spec: a dataset key, a capture folder or synthetic:<seed>; repeat for several."""

    all_from_index: bool = False
    """Export every scene key of --index that has views there (null entries are skipped)."""

    demo: bool = False
    """Export the bundled demo scenes with the bundled demo model (or the --scene keys given)."""

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


def model_runs(checkpoints: Sequence[Path]) -> dict[str, Path]:
    """Run name -> checkpoint: the file stems made unique, in the order given. A file given
    twice is two runs of one loaded model."""
    from dsviewer.viewer.compare import unique_names
    from dsviewer.viewer.runs import model_path

    paths = [model_path(checkpoint) for checkpoint in checkpoints]
    return dict(zip(unique_names([Path(c).stem for c in checkpoints]), paths))


def parse_args(argv: Sequence[str] | None) -> ExportOptions:
    return tyro.cli(ExportOptions, args=list(argv) if argv is not None else None,
                    prog="dsviewer export")  # fmt: skip


def check_options(options: ExportOptions) -> dict[str, Path]:
    """Every check that needs no model: returns each spec's output folder."""
    from dsviewer.viewer.export import refuse_existing
    from dsviewer.viewer.export.layout import holds_one_export
    from dsviewer.viewer.export.transaction import check_writable, recover
    from dsviewer.viewer.pipeline import resolve_demo

    if options.demo:
        resolve_demo(options)
    if options.out is None:
        raise ExportUsageError("--out DIR is required: the folder to write the files into.")
    if not options.ckpt:
        raise ExportUsageError("--ckpt FILE is required: the DepthSplat checkpoint to run (or "
                               "--demo for the bundled model and scenes).")  # fmt: skip
    for checkpoint in options.ckpt:
        if not Path(checkpoint).is_file():
            raise ExportUsageError(f"--ckpt {checkpoint} does not exist or is not a file.")
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
    """Export every scene; 0, or 1 when some scenes failed (each failure is reported).

    Scenes are resolved once (:func:`dsviewer.viewer.evaluation.plan.plan_scenes`, linear in the
    number
    of keys) and shown on one progress bar, as ``dsviewer eval`` does.
    """
    from dataclasses import replace

    from rich.console import Console

    from dsviewer.viewer.errors import EXIT_USER_ERROR, is_user_error
    from dsviewer.viewer.escape import escape_rich
    from dsviewer.viewer.evaluation.loading import SceneLoader
    from dsviewer.viewer.evaluation.plan import plan_scenes
    from dsviewer.viewer.evaluation.progress import SceneProgress

    folders = check_options(options)
    console = Console(stderr=True)
    plan = plan_scenes(options.data_root, options.index, list(folders))
    # Explicit views win over the evaluation index (and are named as the source of bad frames).
    if options.context is not None:
        plan.scenes = [replace(s, context=tuple(options.context)) for s in plan.scenes]
    if options.target is not None:
        plan.scenes = [replace(s, target=tuple(options.target)) for s in plan.scenes]
    if options.context is not None or options.target is not None:
        plan.scenes = [replace(s, frames_from="--context/--target") for s in plan.scenes]

    from dsviewer.viewer.analysis import AnalysisSettings
    from dsviewer.viewer.export import ExportSettings, export_scene
    from dsviewer.viewer.export.compare_files import export_comparison
    from dsviewer.viewer.pipeline import ModelSession, print_notes

    settings = ExportSettings(analysis=AnalysisSettings(
        consistency_threshold=options.consistency_threshold,
        consistency_occlusions=options.consistency_occlusions,
    ))  # fmt: skip
    failures = [(scene.key, scene.missing) for scene in plan.missing]
    runs = model_runs(options.ckpt)
    # One model load per checkpoint file, every model kept for all scenes.
    checkpoints = dict.fromkeys(runs.values())  # distinct, in order
    sessions = {path: ModelSession(options, checkpoint=path) for path in checkpoints}
    loader = SceneLoader(next(iter(sessions.values())).backend.preprocess)
    with SceneProgress(len(plan.available), "Exporting", console=console) as progress:
        for planned in progress.track(plan.available):
            try:
                loaded = []
                for name, path in runs.items():
                    session = sessions[path]
                    views = loader.load(planned, session.backend.preprocess)
                    loaded.append(session.run(views, run_name=name if len(runs) > 1 else None))
                if len(loaded) == 1:
                    export_scene(folders[planned.key], loaded[0], settings,
                                 overwrite=options.overwrite)  # fmt: skip
                else:
                    export_comparison(folders[planned.key], loaded, settings,
                                      overwrite=options.overwrite)  # fmt: skip
            except Exception as error:
                if not is_user_error(error):
                    raise  # a bug: the boundary logs its traceback (exit 1)
                failures.append((planned.key, str(error)))  # bad input fails this scene alone
                progress.failed()
                continue
            print_notes(console, [note for run in loaded for note in run.notes],
                        planned.key if len(folders) > 1 else None)
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

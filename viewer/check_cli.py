"""``dsviewer check --ckpt X --scene CAPTURE``: what in a capture differs from what the checkpoint
was trained on, and which flag to try, without running the model.

Only the standard library and tyro are imported at module level, so ``--help`` answers at once.
The capture is loaded exactly as ``dsviewer`` loads it for the checkpoint (same context views,
same undistortion, rescale and crops); the findings are :mod:`dsviewer.viewer.capture_check`'s.
The checkpoint file is read for its settings only; a released checkpoint's name is enough (its
settings are in ``configs/checkpoints``), so a capture can be checked before downloading.

``--context``, ``--views``, ``--near``, ``--far``, ``--sfm-max-error`` and ``--config`` are
:class:`~dsviewer.viewer.options.ViewOptions`, declared once for every command: planes in the
capture's own units (divided by ``world_from_model``'s scale as the session layer does, before
the model sees them), and the number of context views (default: the checkpoint's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import tyro

from dsviewer.errors import InputError
from dsviewer.viewer.options import ViewOptions

DESCRIPTION = """\
Check a capture against a checkpoint before running it: the scene's depth range (from its SfM
points) against the near/far planes, the baseline against the scene's depth, the field of view,
how much the centre crop throws away, the downscale factor and the overlap of the context views.
Each finding says ok or warn, the number, and the flag to try.

  dsviewer check --ckpt depthsplat-gs-base-re10k-256x448-view2-fea94f65.pth --scene my_capture
  dsviewer check --ckpt model.pth --scene my_capture --near 0.4 --far 30 --views 3
"""


@dataclass
class CheckOptions(ViewOptions):
    """Check a capture (COLMAP model, transforms.json or NeRF-synthetic folder) for a checkpoint."""

    ckpt: Path | None = None
    """Checkpoint file, or the file name of a released checkpoint (its settings are known, the
    file need not be here)."""

    scene: str | None = None
    """The capture: a folder (COLMAP model, transforms.json) or one transforms JSON file."""



class CheckUsageError(InputError):
    """Bad ``dsviewer check`` arguments."""


def parse_args(argv: Sequence[str] | None) -> CheckOptions:
    return tyro.cli(CheckOptions, args=list(argv) if argv is not None else None,
                    prog="dsviewer check", description=DESCRIPTION)  # fmt: skip


def check_options(options: CheckOptions) -> None:
    """Every check that needs no file."""
    if options.ckpt is None:
        raise CheckUsageError("--ckpt is required: the checkpoint file (or a released "
                              "checkpoint's file name) to check the capture against.")
    if not options.scene:
        raise CheckUsageError("--scene is required: the capture folder (COLMAP model or "
                              "transforms.json) or one transforms JSON file.")
    options.check_views_and_planes()


def checkpoint_preprocess(options: CheckOptions):
    """The checkpoint's preprocessing settings, without building the model."""
    from dsviewer.backends.presets import checkpoint_settings, load_preset, preset_path

    path = Path(options.ckpt)
    if path.is_file():
        return checkpoint_settings(path, options.config).preprocess
    if options.config is not None:
        return load_preset(options.config).preprocess
    if preset_path(path.name).is_file():
        return load_preset(path.name).preprocess
    raise CheckUsageError(
        f"--ckpt {options.ckpt} does not exist and is not the name of a released checkpoint "
        "(configs/checkpoints). Pass the checkpoint file, a released file name, or --config.")


def is_capture_spec(spec: str) -> bool:
    path = Path(spec)
    return path.is_dir() or (path.is_file() and path.suffix.lower() == ".json")


def run_check(options: CheckOptions):
    """(loaded scene, findings) for the options."""
    from dataclasses import replace

    from dsviewer.dataset import CaptureOptions, load_scene
    from dsviewer.viewer.capture_check import run_checks
    from dsviewer.viewer.check_inputs import check_inputs
    from dsviewer.viewer.session.model import with_user_planes

    check_options(options)
    if not is_capture_spec(options.scene):
        raise CheckUsageError(
            f"--scene {options.scene} is not a capture folder or transforms JSON file. dsviewer "
            "check reads captures (a COLMAP model, transforms.json or a NeRF-synthetic folder); "
            "dataset scenes were prepared for the checkpoint already.")
    settings = checkpoint_preprocess(options)
    if options.views is not None:
        settings = replace(settings, num_context_views=options.views)
    scene = load_scene(options.scene, settings=settings, context=options.context, target=[],
                       capture=CaptureOptions(sfm_max_error=options.sfm_max_error))  # fmt: skip
    # The planes in the model's units, converted as every other command converts them.
    scene = with_user_planes(scene, options.run_spec(options.ckpt))
    near, far = float(scene.context.near[0]), float(scene.context.far[0])
    return scene, run_checks(check_inputs(scene, settings, near, far))


STYLES = {"ok": "green", "warn": "bold yellow", "unknown": "dim"}


def report(console, scene, findings) -> None:
    """The loader's notes, then one table row per finding, then the flags to try."""
    from rich.table import Table

    from dsviewer.viewer.escape import escape_rich
    from dsviewer.viewer.session.loaded import print_notes

    print_notes(console, scene.notes)
    table = Table(title=f"Capture check: {escape_rich(scene.source)}, context frames "
                  f"{', '.join(str(int(i)) for i in scene.context.index)}")  # fmt: skip
    for column in ("finding", "status", "value", "flag to try"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        style = STYLES[finding.status]
        table.add_row(finding.title, f"[{style}]{finding.status}[/{style}]",
                      escape_rich(finding.value), escape_rich(finding.flag or ""))  # fmt: skip
    console.print(table)
    for finding in findings:
        if finding.status != "ok":
            note = finding.note()
            console.print(f"[{STYLES[finding.status]}]{finding.status}:[/] "
                          f"{escape_rich(note.message)}")  # fmt: skip
    warned = sum(f.status == "warn" for f in findings)
    console.print(f"{warned} of {len(findings)} findings differ from what the checkpoint was "
                  "trained on." if warned else "Nothing found that differs from training.")


def run(options: CheckOptions) -> int:
    from rich.console import Console

    scene, findings = run_check(options)
    report(Console(), scene, findings)
    return 0


def main(argv: Sequence[str] | CheckOptions | None = None) -> int:
    """Run ``dsviewer check``: 0 once checked (warnings included); 2 on bad input."""
    from dsviewer.viewer.errors import run_entry_point

    options = argv if isinstance(argv, CheckOptions) else parse_args(argv)
    return run_entry_point("dsviewer check", lambda: run(options))


if __name__ == "__main__":
    from dsviewer.viewer.errors import exit_process

    exit_process(main())

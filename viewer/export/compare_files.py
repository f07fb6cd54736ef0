"""The export of several runs of one scene: every run's own files plus the comparison.

Layout of the output folder ``D`` (written as one transaction, so readers see the old folder
or the new one, never a mix)::

    D/runs/<run>/      each run's usual export (dsviewer.viewer.export.EXPORT_FILES, cameras.json
    too)
    D/compare.json     runs, and per pair of runs the depth AbsRel along rays and Chamfer
    D/compare.ply      run a's final points with b's depth difference along a's rays

``compare.json``: ``runs`` (run names, in order), ``run_definitions`` (name -> checkpoint,
context frames, near/far in the model's units), ``folders`` (name -> folder under ``D``),
``pairs``: every pair of runs ``(a, b)`` with a before b in the run order, then, when the scene
has GT depth, ``gt`` against each run (``a = "gt"``, so ``depth_abs_rel_b_vs_a`` is the run's
usual AbsRel against GT, sampled along the GT pixels' rays), and for a capture with SfM points
``sfm`` against each run likewise, on the pixels that hold an SfM observation (pixel-centre
rays: within half a pixel of the observed point; metrics.json's ``sfm`` samples the exact
pixel). Each pair is
:func:`dsviewer.viewer.compare.compare_pair`'s dict. ``notes``: pairs that could not be compared (no
shared context frame), in words.

``compare.ply``: float32 ``x y z`` of run a's valid final points, uchar ``red green blue`` (a's
image), float32 ``scalar_depth_b_minus_a`` (b's final depth along the point's pixel ray minus
a's, user units; NaN where b has no sample) and int32 ``scalar_view``, ``scalar_u``,
``scalar_v`` (a's view and pixel column, row). CloudCompare imports ``scalar_*`` properties as
scalar fields; plyfile, open3d's tensor API and trimesh read the same names.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dsviewer.errors import InputError
from dsviewer.io.atomic import atomic_write
from dsviewer.viewer.compare import (
    DepthSource,
    compare_pair,
    comparison_problem,
    difference_maps,
    gt_source,
    run_source,
    sfm_source,
)
from dsviewer.viewer.export import (
    ExportSettings,
    archive_stem,
    export_scene,
    refuse_existing,
    zip_folder,
)
from dsviewer.viewer.export.layout import COMPARE_JSON, COMPARE_PLY, RUNS_FOLDER
from dsviewer.viewer.export.point_files import pixel_columns, write_table
from dsviewer.viewer.export.transaction import export_transaction
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.session.loaded import LoadedScene, ProgressFn
from dsviewer.viewer.session.runs import run_definition
from dsviewer.viewer.session.specs import RESERVED_NAMES

DEFINITION = (
    "depth_abs_rel_b_vs_a: mean over a's valid pixels (finite depth > 0) where b has a sample "
    "of |d_b - d_a| / d_a, d_b = b's final depth sampled bilinearly (every neighbour valid) "
    "where a's pixel-centre ray meets b's depth map of the same context frame, as z-depth in "
    "a's camera; pixels counts those pixels, a_pixels a's valid ones; overall pools all views. "
    "chamfer: open3d nearest-neighbour distances between the two valid point clouds both ways, "
    "chamfer = mean of the two directed means, user units."
)


class ComparisonInputError(InputError):
    """Runs that cannot be compared as asked."""


@dataclass
class ComparisonResult:
    out_dir: Path
    runs: dict[str, list[str]]  # run name -> files written in its folder
    compare: dict  # compare.json


def run_folders(runs: Sequence[LoadedScene]) -> dict[str, str]:
    """Run name -> its folder under the export (``runs/<file-name-safe name>``, unique)."""
    names = [run.run_name for run in runs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates or set(RESERVED_NAMES) & set(names):
        raise ComparisonInputError(
            f"runs to compare need distinct names other than {' and '.join(RESERVED_NAMES)}; "
            f"got {names}. Name them with dsviewer.viewer.session.specs.unique_names (the CLI "
            "uses the checkpoint file stems)."
        )
    folders: dict[str, str] = {}
    for name in names:
        stem, n = archive_stem(name), 2
        folder = stem
        while folder in folders.values():
            folder, n = f"{stem}_{n}", n + 1
        folders[name] = folder
    return {name: f"{RUNS_FOLDER}/{folder}" for name, folder in folders.items()}


def _check_pair(runs: Sequence[LoadedScene], pair: tuple[int, int]) -> None:
    if len(runs) < 2:
        raise ComparisonInputError(f"a comparison needs at least two runs, got {len(runs)}.")
    if not all(0 <= index < len(runs) for index in pair):
        raise ComparisonInputError(f"runs {pair} for compare.ply: there are {len(runs)} runs "
                                   f"(indices 0 to {len(runs) - 1}).")  # fmt: skip


def comparison_sources(runs: Sequence[LoadedScene]) -> list[tuple[DepthSource, DepthSource]]:
    """The pairs of compare.json: runs in order (a before b), then GT and the SfM points
    against each run."""
    sources = [run_source(run) for run in runs]
    pairs = [(a, b) for i, a in enumerate(sources) for b in sources[i + 1 :]]
    for reference in (gt_source, sfm_source):
        found = next((r for r in map(reference, runs) if r is not None), None)
        if found is not None:
            pairs += [(found, source) for source in sources]
    return pairs


def compare_json(runs: Sequence[LoadedScene], ply_pair: tuple[int, int] = (0, 1)) -> dict:
    """Everything ``compare.json`` holds (see the module docstring)."""
    _check_pair(runs, ply_pair)
    first = runs[0].scene
    gt_run = next((run.run_name for run in runs if gt_source(run) is not None), None)
    pairs = comparison_sources(runs)
    problems = [comparison_problem(a, b, b.name) for a, b in pairs]
    return {
        "scene": {"key": first.key, "source": first.source},
        "runs": [run.run_name for run in runs],
        "run_definitions": {run.run_name: run_definition(run) for run in runs},
        "folders": run_folders(runs),
        "gt_from_run": gt_run,
        "sfm_from_run": next((run.run_name for run in runs if sfm_source(run) is not None),
                             None),
        "definition": DEFINITION,
        "compare_ply": {"a": runs[ply_pair[0]].run_name, "b": runs[ply_pair[1]].run_name},
        "pairs": [compare_pair(a, b) for a, b in pairs],
        "notes": [problem for problem in problems if problem is not None],
    }


def compare_table(a: LoadedScene, b: LoadedScene) -> dict:
    """``{"points", "colors", "properties"}`` of compare.ply for runs ``a`` and ``b``."""
    flat = a.flat("final")
    keep = flat.valid.reshape(-1)
    difference = difference_maps(run_source(a), run_source(b))["metric"]
    colors = POINT_LAYERS["final"].image_colors(a.layers).reshape(-1, 3).numpy()[keep]
    return {
        "points": flat.points.reshape(-1, 3)[keep],
        "colors": colors,
        "properties": {
            "scalar_depth_b_minus_a": difference.reshape(-1).numpy().astype(np.float32)[keep],
            **pixel_columns(a, keep),
        },
    }


def _part(progress: ProgressFn | None, label: str, number: int, parts: int) -> ProgressFn | None:
    """Part ``number`` of ``parts`` of a progress bar, its stages prefixed by ``label``."""
    if progress is None:
        return None
    return lambda stage, fraction: progress(f"{label}: {stage}", (number + fraction) / parts)


def export_comparison(
    out_dir: str | Path,
    runs: Sequence[LoadedScene],
    settings: ExportSettings | None = None,
    *,
    ply_pair: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ComparisonResult:
    """Write every run's export, ``compare.json`` and ``compare.ply`` into ``out_dir``.

    Args:
        runs: two or more runs of one scene with distinct names (their ``run_name``).
        ply_pair: the indices of runs a and b in compare.ply (default the first two).

    All files or none: the folder is replaced as a whole (``overwrite``), never mixed.
    """
    out_dir = Path(out_dir)
    refuse_existing(out_dir, overwrite)
    folders = run_folders(runs)
    _check_pair(runs, ply_pair)
    written: dict[str, list[str]] = {}
    settings = settings or ExportSettings()
    with export_transaction(out_dir, lambda folder: refuse_existing(folder, overwrite)) as working:
        for number, run in enumerate(runs):
            run_progress = _part(progress, run.run_name, number, len(runs) + 1)
            result = export_scene(working / folders[run.run_name], run, settings,
                                  progress=run_progress)  # fmt: skip
            written[run.run_name] = result.files
        if progress is not None:
            progress("Comparing the runs", len(runs) / (len(runs) + 1))
        compare = compare_json(runs, ply_pair)
        a, b = (runs[index] for index in ply_pair)
        write_table(working / COMPARE_PLY, compare_table(a, b))
        with atomic_write(working / COMPARE_JSON) as file:
            file.write(json.dumps(compare, indent=2).encode("utf-8"))
    if progress is not None:
        progress("Done", 1.0)
    return ComparisonResult(out_dir=out_dir, runs=written, compare=compare)


def compare_archive(
    runs: Sequence[LoadedScene], a: int, b: int, settings: ExportSettings | None = None,
    progress: ProgressFn | None = None,
) -> tuple[str, bytes]:  # fmt: skip
    """``(file name, zip bytes)`` of :func:`export_comparison` (runs ``a``, ``b`` in the PLY)."""
    import tempfile

    stem = archive_stem(runs[0].scene.key) if runs else "scene"
    with tempfile.TemporaryDirectory(prefix="dsviewer-compare-") as folder:
        result = export_comparison(Path(folder) / stem, runs, settings, ply_pair=(a, b),
                                   progress=progress)  # fmt: skip
        return f"{stem}_compare.zip", zip_folder(result.out_dir, stem)

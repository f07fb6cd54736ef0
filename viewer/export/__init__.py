"""The export files of one loaded scene, in the user's units, written as one transaction.

:data:`EXPORT_FILES` is the registry: each file is declared once (name, what it holds, how it is
written, when it exists). ``dsviewer export``, the GUI's export button (a zip) and the tests
iterate it. Every file reads the same :class:`~dsviewer.viewer.session.loaded.LoadedScene` --
its layers (user frame), its cached analysis for the export's settings and its cached target
renders -- so the files hold exactly what the viewer shows for those settings. ``metrics.json``
is written last. A set of files is one transaction (:mod:`dsviewer.viewer.export.transaction`).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dsviewer.errors import InputError
from dsviewer.io.atomic import atomic_write
from dsviewer.stage_timer import STAGE_MEANINGS, current_timer, stage
from dsviewer.viewer.analysis import AnalysisSettings, SceneAnalysis
from dsviewer.viewer.color_modes import ColorContext, ColorSettings
from dsviewer.viewer.export import point_files
from dsviewer.viewer.export.layout import (
    GLB_FILE,
    METRICS_JSON,
    RERUN_FILE,
    describe,
    foreign_entries,
)
from dsviewer.viewer.export.metrics import export_metrics
from dsviewer.viewer.export.transaction import absolute_folder, export_transaction
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.session.loaded import LoadedScene, ProgressFn


@dataclass(frozen=True)
class ExportSettings:
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    color: ColorSettings = field(default_factory=ColorSettings)
    html_point_budget: int = 200_000
    """Points per layer in scene.html at most (a fixed stride keeps the file small)."""
    panel_dpi: int = 100
    rerun: bool = False
    """Also write the Rerun recording (needs the ``rerun`` extra)."""
    scene_point_budget: int = 1_000_000
    """Points per layer in scene.glb and the Rerun recording at most (a fixed stride)."""


@dataclass
class ExportInputs:
    loaded: LoadedScene
    settings: ExportSettings
    analysis: SceneAnalysis
    context: ColorContext
    point_counts: dict[str, int] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    _metrics: dict | None = field(default=None, repr=False)
    _drawn: list | None = field(default=None, repr=False)

    def drawn_layers(self) -> list:
        """The point layers as the scene files draw them (``scene_points.DrawnLayer``), made
        once for ``scene.glb`` and the Rerun recording."""
        from dsviewer.viewer.export.scene_points import drawn_layers

        if self._drawn is None:
            self._drawn = drawn_layers(self.loaded, self.context,
                                       self.settings.scene_point_budget)
        return self._drawn

    def metrics(self) -> dict:
        """``metrics.json``'s numbers (computed once, after the point files have been counted),
        without its list of files."""
        if self._metrics is None:
            self._metrics = export_metrics(self.loaded, self.analysis, self.point_counts)
        return dict(self._metrics)


@dataclass(frozen=True)
class ExportFile:
    name: str
    description: str
    write: Callable[[ExportInputs, Path], None]
    available: Callable[[ExportInputs], bool] = lambda inputs: True
    stage: str = "writes"  # where its time goes (dsviewer.stage_timer.STAGES): figures are
    # thumbnails; the analyses and renders it triggers count as their own stages


class ExportExistsError(InputError):
    def __init__(self, out_dir: Path) -> None:
        super().__init__(
            f"{out_dir} already holds an export. Choose another --out folder, or pass "
            "--overwrite to replace the whole folder with the new export."
        )


class ForeignFilesError(InputError):
    """The output folder holds files that are not an earlier export (never replaced)."""

    def __init__(self, out_dir: Path, foreign: list[str]) -> None:
        super().__init__(
            f"{out_dir} holds files that no dsviewer export wrote ({describe(foreign)}). An "
            "export replaces its whole folder, so it is never written over other files, even "
            "with --overwrite. Choose an empty or new folder for --out."
        )


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as file:
        file.write(data)


def _point_layer_file(key: str) -> ExportFile:
    def write(inputs: ExportInputs, path: Path) -> None:
        table = point_files.layer_table(inputs.loaded, inputs.context, key)
        inputs.point_counts[path.name] = point_files.write_table(path, table)

    layer = POINT_LAYERS[key]
    return ExportFile(f"{key}.ply", f"{layer.label}: points with rgb, scalar_* values, view, u, v",
                      write, lambda inputs: inputs.loaded.flat(key) is not None)  # fmt: skip


def _comparison(inputs: ExportInputs, path: Path) -> None:
    table = point_files.comparison_table(inputs.loaded)
    inputs.point_counts[path.name] = point_files.write_table(path, table)


def _gaussians(inputs: ExportInputs, path: Path) -> None:
    from dsviewer.io.ply import write_gaussians_ply

    layers = inputs.loaded.layers
    keep = layers.gaussians.finite()[0]  # NaN / inf ones are counted in metrics.json's checks
    rotations = None
    if layers.gaussians_pixel_aligned and layers.gaussians.scales is not None:
        # The producing view's camera rotation per Gaussian: the writer then uses the model's
        # own scale/rotation factors (exact even for flat Gaussians).
        H, W = layers.image_shape
        rotations = layers.context.T_world_cam[:, :3, :3].repeat_interleave(H * W, dim=0)[keep]
    write_gaussians_ply(path, layers.gaussians.select(keep), camera_rotations=rotations)
    inputs.point_counts[path.name] = int(keep.sum())


def _cameras(inputs: ExportInputs, path: Path) -> None:
    from dsviewer.viewer.export.metrics import cameras_json

    _write_bytes(path, json.dumps(cameras_json(inputs.loaded.layers), indent=2).encode())


def _scene_html(inputs: ExportInputs, path: Path) -> None:
    from dsviewer.viewer.export.scene_html import scene_html

    html = scene_html(inputs.loaded, inputs.context, inputs.settings.html_point_budget)
    _write_bytes(path, html.encode("utf-8"))


def _panels(inputs: ExportInputs, path: Path) -> None:
    from dsviewer.viewer.panels import render_panels

    gt_error = inputs.analysis.layers["final"].gt_error
    _write_bytes(path, render_panels(inputs.loaded.layers, gt_error, dpi=inputs.settings.panel_dpi))


def _targets(inputs: ExportInputs, path: Path) -> None:
    from dsviewer.viewer.target_render import target_panels_png

    _write_bytes(path, target_panels_png(inputs.loaded.targets, dpi=inputs.settings.panel_dpi))


def _scene_glb(inputs: ExportInputs, path: Path) -> None:
    from dsviewer.viewer.export.gltf_scene import scene_glb

    _write_bytes(path, scene_glb(inputs.loaded, inputs.drawn_layers()))


def _rerun(inputs: ExportInputs, path: Path) -> None:
    from dsviewer.viewer.export.rerun_recording import write_recording

    write_recording(path, inputs.loaded, inputs.context, inputs.metrics(),
                    inputs.drawn_layers())


def _metrics(inputs: ExportInputs, path: Path) -> None:
    metrics = inputs.metrics()
    metrics["files"] = sorted([*inputs.written, path.name])
    timer = current_timer()  # dsviewer export times every scene; the GUI's button does not
    if timer is not None:  # everything up to this file (it cannot hold its own writing)
        metrics["stages"] = {"seconds": timer.as_dict(), "meanings": STAGE_MEANINGS}
    _write_bytes(path, json.dumps(metrics, indent=2).encode("utf-8"))


EXPORT_FILES: tuple[ExportFile, ...] = (
    *[_point_layer_file(key) for key in POINT_LAYERS],
    ExportFile("comparison.ply", "coarse and final points in their layer colours, scalar_layer",
               _comparison),
    ExportFile("gaussians.ply", "the predicted Gaussians in the standard 3DGS layout", _gaussians,
               lambda inputs: inputs.loaded.layers.gaussians is not None),
    ExportFile("cameras.json", "every context and target camera: frame, image size, intrinsics, "
               "camera-to-world, source camera model", _cameras),
    ExportFile("scene.html", "a self-contained offline viewer of the scene", _scene_html),
    ExportFile("panels.png", "per view: image, coarse depth, residual, final depth, GT error",
               _panels, stage="thumbnails"),
    ExportFile("targets.png", "per target view: rendered, GT, error, PSNR", _targets,
               lambda inputs: inputs.loaded.targets is not None, stage="thumbnails"),
    ExportFile(GLB_FILE, "the layers' points and the camera frustums for glTF viewers (+Y up)",
               _scene_glb),
    ExportFile(RERUN_FILE, "the scene as a Rerun recording: cameras, photos, depth and map "
               "images, points with their values, metrics (--rerun)", _rerun,
               lambda inputs: inputs.settings.rerun),
    ExportFile(METRICS_JSON, "every statistic, the settings, notes and checks", _metrics),
)  # fmt: skip
EXPORT_FILE_NAMES = tuple(f.name for f in EXPORT_FILES)


@dataclass
class ExportResult:
    out_dir: Path
    files: list[str]  # names written
    metrics: dict


def export_inputs(loaded: LoadedScene, settings: ExportSettings) -> ExportInputs:
    analysis = loaded.analysis(settings.analysis)
    return ExportInputs(
        loaded, settings, analysis, ColorContext(loaded.layers, analysis, settings.color)
    )


def refuse_existing(out_dir: Path, overwrite: bool) -> None:
    """Raise :class:`ForeignFilesError` when ``out_dir`` holds anything but an earlier export
    (:mod:`dsviewer.viewer.export.layout`), :class:`ExportExistsError` when it holds an earlier
    export
    and ``overwrite`` is off."""
    given = Path(out_dir)
    out_dir = absolute_folder(given)  # a link is judged by the folder it points to (replaced)
    foreign = foreign_entries(out_dir, EXPORT_FILE_NAMES)
    if foreign:
        raise ForeignFilesError(given, foreign)
    if not overwrite and out_dir.is_dir() and any(out_dir.iterdir()):
        raise ExportExistsError(given)


def export_scene(
    out_dir: str | Path,
    loaded: LoadedScene,
    settings: ExportSettings = ExportSettings(),
    *,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
) -> ExportResult:
    """Write every export file of ``loaded`` into ``out_dir``, all of them or none.

    The folder is replaced as a whole (``overwrite``), never mixed with an earlier export.
    """
    out_dir = Path(out_dir)
    refuse_existing(out_dir, overwrite)
    inputs = export_inputs(loaded, settings)
    files = [f for f in EXPORT_FILES if f.available(inputs)]
    with export_transaction(out_dir, lambda folder: refuse_existing(folder, overwrite)) as working:
        for number, file in enumerate(files):
            if progress is not None:
                progress(f"Writing {file.name}", number / len(files))
            try:
                with stage(file.stage):
                    file.write(inputs, working / file.name)
            except OSError as error:  # a full disk: name the file, keep the old export
                raise OSError(
                    error.errno,
                    f"{error.strerror or error} while writing "
                    f"{file.name} (the previous export in {out_dir} is kept)",
                ) from None
            inputs.written.append(file.name)
        metrics = json.loads((working / METRICS_JSON).read_text())
    if progress is not None:
        progress("Done", 1.0)
    return ExportResult(out_dir=out_dir, files=inputs.written, metrics=metrics)


def archive_stem(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._") or "scene"


def export_archive(
    loaded: LoadedScene, settings: ExportSettings = ExportSettings(),
    progress: ProgressFn | None = None,
) -> tuple[str, bytes]:  # fmt: skip
    """``(file name, zip bytes)`` of every export file, for a browser download."""
    import tempfile

    stem = archive_stem(loaded.scene.key)
    with tempfile.TemporaryDirectory(prefix="dsviewer-export-") as folder:
        result = export_scene(Path(folder) / stem, loaded, settings, progress=progress)
        return f"{stem}_export.zip", zip_folder(result.out_dir, stem)


def zip_folder(folder: Path, root: str) -> bytes:
    """Every file under ``folder`` (sub-folders included) zipped under ``root/``, sorted."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, arcname=f"{root}/{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()

"""The viewer's GUI controls (built once) and the statistics panel (rebuilt per scene).

:func:`build_controls` only creates handles; :mod:`viewer.app` attaches the callbacks. Labels are
part of the interface (the browser test finds controls by them), so they live in ``LABELS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from viewer.scene import ANALYSIS_COLOR_MODES, COLOR_MODES, POINT_LAYERS, SceneArrays

if TYPE_CHECKING:
    import viser

LAYER_LABELS = {
    "coarse": "Coarse MVS depth",
    "final": "Final depth",
    "residual": "Mono residual",
    "gt": "Ground truth",
    "centers": "Gaussian centres",
}
COLOR_MODE_LABELS = {
    "rgb": "RGB",
    "residual": "Residual",
    "confidence": "Confidence",
    "depth": "Depth",
    "gt_error": "GT error",
    "consistency_final": "Multi-view error (final)",
    "consistency_coarse": "Multi-view error (coarse)",
    "inconsistent_final": "Inconsistent (final)",
    "clamp_final": "At near / far clamp",
    "depth_edge": "Depth edges",
    "flying_pixel": "Flying pixels",
    "gt_error_final": "GT rel. error (final)",
    "gt_error_coarse": "GT rel. error (coarse)",
}
SPLAT_COLOR_LABELS = {"sh": "SH colour", "opacity": "Opacity", "scale": "Scale"}
LABELS = {
    "scene": "Scene spec",
    "load": "Load scene",
    "splats": "Gaussian splats",
    "splat_placement": "Splats placement",
    "context": "Context cameras",
    "target": "Target cameras",
    "point_size": "Point size (px)",
    "budget": "Points per layer",
    "subsample": "Subsampling",
    "confidence": "Min confidence (pct)",
    "depth_range": "Depth range (pct)",
    "color_mode": "Colour by",
    "residual_unit": "Residual unit",
    "residual_percentile": "Range (pct of |r|)",
    "reset": "Reset view",
    "residual_vectors": "Residual vectors",
    "vector_stride": "Vector stride (px)",
    "splat_color": "Splat colour",
    "min_opacity": "Min splat opacity",
    "inconsistent_only": "Inconsistent only",
    "hide_flying": "Hide flying pixels",
    "threshold": "Consistency threshold",
    "occlusions": "Occlusions",
    "inspect_view": "View",
    "inspect_u": "u (column)",
    "inspect_v": "v (row)",
    "inspect": "Inspect",
    "export": "Export zip",
    "render_camera": "Render at my camera",
}


@dataclass
class Controls:
    """Every GUI handle the app reacts to."""

    scene_spec: viser.GuiDropdownHandle | viser.GuiTextHandle
    load: viser.GuiButtonHandle
    status: viser.GuiMarkdownHandle
    progress: viser.GuiProgressBarHandle
    layer_toggles: dict[str, viser.GuiCheckboxHandle]
    splats: viser.GuiCheckboxHandle
    splat_placement: viser.GuiDropdownHandle
    context_cameras: viser.GuiCheckboxHandle
    target_cameras: viser.GuiCheckboxHandle
    views_folder: viser.GuiFolderHandle
    point_size: viser.GuiSliderHandle
    budget: viser.GuiSliderHandle
    subsample: viser.GuiDropdownHandle
    min_confidence: viser.GuiSliderHandle
    depth_range: viser.GuiMultiSliderHandle
    depth_readout: viser.GuiMarkdownHandle
    color_mode: viser.GuiDropdownHandle
    residual_unit: viser.GuiDropdownHandle
    residual_percentile: viser.GuiSliderHandle
    colorbar: viser.GuiImageHandle
    statistics: viser.GuiMarkdownHandle
    reset_view: viser.GuiButtonHandle
    # Geometry-error inspection (see viewer.analysis / viewer.inspector).
    residual_vectors: viser.GuiCheckboxHandle
    vector_stride: viser.GuiSliderHandle
    splat_color: viser.GuiDropdownHandle
    min_opacity: viser.GuiSliderHandle
    inconsistent_only: viser.GuiCheckboxHandle
    hide_flying: viser.GuiCheckboxHandle
    threshold: viser.GuiSliderHandle
    occlusions: viser.GuiDropdownHandle
    analysis_status: viser.GuiMarkdownHandle
    inspect_view: viser.GuiNumberHandle
    inspect_u: viser.GuiNumberHandle
    inspect_v: viser.GuiNumberHandle
    inspect: viser.GuiButtonHandle
    inspector_text: viser.GuiMarkdownHandle
    inspector_plot: viser.GuiUplotHandle
    histograms_folder: viser.GuiFolderHandle
    targets_text: viser.GuiMarkdownHandle
    targets_image: viser.GuiImageHandle
    render_camera: viser.GuiButtonHandle
    camera_image: viser.GuiImageHandle
    export: viser.GuiButtonHandle
    export_status: viser.GuiMarkdownHandle


def build_controls(
    server: viser.ViserServer,
    scene_specs: list[str],
    point_budget: int,
    initial_layers: tuple[str, ...] = ("final",),
) -> Controls:
    """Create the GUI folders and controls; no callbacks attached."""
    gui = server.gui
    with gui.add_folder("Scene"):
        if len(scene_specs) > 1:
            scene_spec = gui.add_dropdown(LABELS["scene"], options=scene_specs)
        else:
            scene_spec = gui.add_text(LABELS["scene"], initial_value=scene_specs[0] if scene_specs else "")
        load = gui.add_button(LABELS["load"])
        status = gui.add_markdown("Starting...")
        progress = gui.add_progress_bar(0.0, animated=True, visible=False)
    with gui.add_folder("Layers"):
        layer_toggles = {
            name: gui.add_checkbox(LAYER_LABELS[name], initial_value=name in initial_layers)
            for name in POINT_LAYERS
        }
        splats = gui.add_checkbox(LABELS["splats"], initial_value=False)
        splat_placement = gui.add_dropdown(
            LABELS["splat_placement"], options=("overlaid", "side by side"), initial_value="overlaid"
        )
        context_cameras = gui.add_checkbox(LABELS["context"], initial_value=True)
        target_cameras = gui.add_checkbox(LABELS["target"], initial_value=True)
        residual_vectors = gui.add_checkbox(LABELS["residual_vectors"], initial_value=False)
        vector_stride = gui.add_slider(
            LABELS["vector_stride"], min=1, max=32, step=1, initial_value=8
        )  # one coarse -> final segment every stride-th pixel along rows and columns
        splat_color = gui.add_dropdown(
            LABELS["splat_color"], options=tuple(SPLAT_COLOR_LABELS.values())
        )
        min_opacity = gui.add_slider(
            LABELS["min_opacity"], min=0.0, max=1.0, step=0.01, initial_value=0.0
        )
    views_folder = gui.add_folder("Views")
    with gui.add_folder("Points"):
        point_size = gui.add_slider(
            LABELS["point_size"], min=0.25, max=8.0, step=0.25, initial_value=1.5
        )  # in pixels of the context images at the median depth
        low = min(10_000, point_budget)  # tests and small machines may ask for tiny budgets
        budget = gui.add_slider(
            LABELS["budget"], min=low, max=max(3_000_000, point_budget),
            step=10_000 if low == 10_000 else 1, initial_value=point_budget,
        )  # fmt: skip
        subsample = gui.add_dropdown(LABELS["subsample"], options=("random", "stride"))
        min_confidence = gui.add_slider(
            LABELS["confidence"], min=0.0, max=99.0, step=1.0, initial_value=0.0
        )
        depth_range = gui.add_multi_slider(
            LABELS["depth_range"], min=0.0, max=100.0, step=0.5, initial_value=(0.0, 100.0)
        )
        inconsistent_only = gui.add_checkbox(LABELS["inconsistent_only"], initial_value=False)
        hide_flying = gui.add_checkbox(LABELS["hide_flying"], initial_value=False)
        depth_readout = gui.add_markdown("")
    with gui.add_folder("Colours"):
        color_mode = gui.add_dropdown(
            LABELS["color_mode"],
            options=tuple(COLOR_MODE_LABELS[m] for m in (*COLOR_MODES, *ANALYSIS_COLOR_MODES)),
            initial_value=COLOR_MODE_LABELS["rgb"],
        )
        residual_unit = gui.add_dropdown(
            LABELS["residual_unit"], options=("inverse depth", "metric (final - coarse)")
        )
        residual_percentile = gui.add_slider(
            LABELS["residual_percentile"], min=50.0, max=100.0, step=0.5, initial_value=98.0
        )
        colorbar = gui.add_image(np.full((64, 320, 3), 255, np.uint8), label="Legend")
        threshold = gui.add_slider(
            LABELS["threshold"], min=0.005, max=0.5, step=0.005, initial_value=0.05
        )  # relative depth error across views
        occlusions = gui.add_dropdown(LABELS["occlusions"], options=("count", "skip"))
        analysis_status = gui.add_markdown("")
    with gui.add_folder("Statistics", expand_by_default=False):
        statistics = gui.add_markdown("")
    with gui.add_folder("Inspector", expand_by_default=False):
        inspector_text = gui.add_markdown("Click a point in the scene, or enter a pixel.")
        inspect_view = gui.add_number(LABELS["inspect_view"], initial_value=0, min=0, step=1)
        inspect_u = gui.add_number(LABELS["inspect_u"], initial_value=0, min=0, step=1)
        inspect_v = gui.add_number(LABELS["inspect_v"], initial_value=0, min=0, step=1)
        inspect = gui.add_button(LABELS["inspect"])
        inspector_plot = gui.add_uplot(
            (np.zeros(2), np.zeros(2)),
            ({"label": "depth"}, {"label": "probability", "stroke": "#2166ac", "width": 2}),
            title="Cost-volume probability over depth", aspect=1.6,
            scales={"x": {"time": False, "distr": 3}},  # log depth: candidates are 1/d-uniform
            axes=({"label": "depth"}, {"label": "probability"}),
        )  # fmt: skip
    histograms_folder = gui.add_folder("Histograms", expand_by_default=False)
    with gui.add_folder("Target views", expand_by_default=False):
        targets_text = gui.add_markdown("")
        blank = np.full((8, 8, 3), 255, np.uint8)
        targets_image = gui.add_image(blank, label="rendered | GT | error")
        render_camera = gui.add_button(LABELS["render_camera"])
        camera_image = gui.add_image(blank, label="At my camera")
    with gui.add_folder("Export", expand_by_default=False):
        export = gui.add_button(LABELS["export"])
        export_status = gui.add_markdown("PLYs, panels, metrics and an offline scene, zipped.")
    reset_view = gui.add_button(LABELS["reset"])
    return Controls(
        scene_spec=scene_spec, load=load, status=status, progress=progress,
        layer_toggles=layer_toggles, splats=splats, splat_placement=splat_placement,
        context_cameras=context_cameras, target_cameras=target_cameras, views_folder=views_folder,
        point_size=point_size, budget=budget, subsample=subsample, min_confidence=min_confidence,
        depth_range=depth_range, depth_readout=depth_readout, color_mode=color_mode,
        residual_unit=residual_unit, residual_percentile=residual_percentile, colorbar=colorbar,
        statistics=statistics, reset_view=reset_view, residual_vectors=residual_vectors,
        vector_stride=vector_stride, splat_color=splat_color, min_opacity=min_opacity,
        inconsistent_only=inconsistent_only, hide_flying=hide_flying, threshold=threshold,
        occlusions=occlusions, analysis_status=analysis_status, inspect_view=inspect_view,
        inspect_u=inspect_u, inspect_v=inspect_v, inspect=inspect, inspector_text=inspector_text,
        inspector_plot=inspector_plot, histograms_folder=histograms_folder,
        targets_text=targets_text, targets_image=targets_image, render_camera=render_camera,
        camera_image=camera_image, export=export, export_status=export_status,
    )  # fmt: skip


def color_mode_key(label: str) -> str:
    """Dropdown label -> colour mode key."""
    return {v: k for k, v in COLOR_MODE_LABELS.items()}[label]


def splat_color_key(label: str) -> str:
    """Splat-colour dropdown label -> ``sh`` / ``opacity`` / ``scale``."""
    return {v: k for k, v in SPLAT_COLOR_LABELS.items()}[label]


def residual_unit_key(label: str) -> str:
    return "inverse" if label.startswith("inverse") else "metric"


# --- statistics ---------------------------------------------------------------------------------


@dataclass
class ViewStats:
    """Per-view summary shown in the statistics panel (residual in the chosen unit)."""

    view: int
    residual_mean: float
    residual_median: float
    residual_positive_share: float  # fraction of valid pixels with residual > 0
    confidence_mean: float
    coarse_depth_mean: float
    final_depth_mean: float
    final_depth_min: float
    final_depth_max: float
    gt_abs_rel_coarse: float | None  # mean |d - gt| / gt over pixels with GT
    gt_abs_rel_final: float | None


def view_statistics(arrays: SceneArrays, residual_unit: str, scale: float = 1.0) -> list[ViewStats]:
    """One :class:`ViewStats` per context view over its valid final-depth pixels.

    ``scale`` converts model units to the user's (``world_from_model``'s uniform scale): depths
    and metric residuals are multiplied by it, inverse-depth residuals divided.
    """
    depth_scale = float(scale)
    residual_scale = depth_scale if residual_unit == "metric" else 1.0 / depth_scale
    stats = []
    for v in range(arrays.num_views):
        ok = arrays.valid["final"][v] & arrays.valid["coarse"][v]
        residual = arrays.residual[residual_unit][v][ok].astype(np.float64) * residual_scale
        final = arrays.depth["final"][v][ok].astype(np.float64) * depth_scale
        coarse = arrays.depth["coarse"][v][ok].astype(np.float64) * depth_scale
        rel_coarse = rel_final = None
        if arrays.gt_depth is not None:
            gt = arrays.gt_depth[v][ok].astype(np.float64) * depth_scale
            known = gt > 0
            if known.any():
                rel_coarse = float(np.mean(np.abs(coarse[known] - gt[known]) / gt[known]))
                rel_final = float(np.mean(np.abs(final[known] - gt[known]) / gt[known]))
        empty = residual.size == 0
        stats.append(
            ViewStats(
                view=v,
                residual_mean=float("nan") if empty else float(residual.mean()),
                residual_median=float("nan") if empty else float(np.median(residual)),
                residual_positive_share=float("nan") if empty else float((residual > 0).mean()),
                confidence_mean=float(arrays.confidence[v].astype(np.float64).mean()),
                coarse_depth_mean=float("nan") if empty else float(coarse.mean()),
                final_depth_mean=float("nan") if empty else float(final.mean()),
                final_depth_min=float("nan") if empty else float(final.min()),
                final_depth_max=float("nan") if empty else float(final.max()),
                gt_abs_rel_coarse=rel_coarse,
                gt_abs_rel_final=rel_final,
            )
        )
    return stats


def statistics_markdown(stats: list[ViewStats], residual_unit: str) -> str:
    """Two narrow markdown tables of :func:`view_statistics` (the GUI panel is ~300 px wide)."""
    unit = "inverse depth" if residual_unit == "inverse" else "depth (final - coarse)"
    has_gt = any(s.gt_abs_rel_final is not None for s in stats)
    lines = [
        f"**Residual r** ({unit})", "",
        "| view | mean | median | r > 0 | conf |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for s in stats:
        lines.append(
            f"| {s.view} | {s.residual_mean:.3g} | {s.residual_median:.3g} | "
            f"{100 * s.residual_positive_share:.0f}% | {s.confidence_mean:.2f} |"
        )
    lines += ["", "**Depth**: coarse vs final (means)" + (", AbsRel to GT" if has_gt else ""), ""]
    if has_gt:
        lines += ["| view | coarse | final | range | AbsRel c | AbsRel f |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
    else:
        lines += ["| view | coarse | final | range |", "|---|---|---|---|"]
    for s in stats:
        row = (
            f"| {s.view} | {s.coarse_depth_mean:.3g} | {s.final_depth_mean:.3g} | "
            f"{s.final_depth_min:.3g}-{s.final_depth_max:.3g} |"
        )
        if has_gt:
            row += f" {_maybe(s.gt_abs_rel_coarse)} | {_maybe(s.gt_abs_rel_final)} |"
        lines.append(row)
    return "\n".join(lines)


def _maybe(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# --- analysis, inspector, target views ----------------------------------------------------------


def analysis_markdown(summary: dict) -> str:
    """Consistency / clamp / flying-pixel shares from ``SceneAnalysis.summary()``, as a table."""
    lines = ["| check | final | coarse |", "|---|---|---|"]
    consistency = summary.get("consistency", {})
    final, coarse = consistency.get("final", {}), consistency.get("coarse", {})

    def pct(stats: dict, key: str) -> str:
        value = stats.get("overall", stats).get(key) if isinstance(stats, dict) else None
        return "-" if value is None else f"{100 * value:.1f}%"

    lines.append(f"| inconsistent | {pct(final, 'inconsistent_share')} | "
                 f"{pct(coarse, 'inconsistent_share')} |")  # fmt: skip
    clamp, edges = summary.get("clamp", {}), summary.get("edges", {})
    at_clamp = clamp.get("final_at_near_share", 0.0) + clamp.get("final_at_far_share", 0.0)
    at_clamp_c = clamp.get("coarse_at_near_share", 0.0) + clamp.get("coarse_at_far_share", 0.0)
    lines.append(f"| at near/far clamp | {100 * at_clamp:.1f}% | {100 * at_clamp_c:.1f}% |")
    lines.append(f"| flying pixels | {100 * edges.get('flying_share', 0.0):.1f}% | - |")
    return "\n".join(lines)


def inspector_markdown(report: dict, scale: float = 1.0) -> str:
    """A two-column table of ``PixelReport.as_dict()``; lengths times ``scale`` (user units)."""

    def fmt(value, kind: str = "length") -> str:
        if value is None:
            return "-"
        factor = {"length": scale, "inverse": 1.0 / scale, "plain": 1.0}[kind]
        return f"{float(value) * factor:.4g}"

    def pair(first: str, second: str, kind: str) -> str:
        return f"{fmt(report[first], kind)} / {fmt(report[second], kind)}"

    rows = [
        ("view, pixel (u, v)", f"{report['view']}, ({report['u']}, {report['v']})"),
        ("coarse depth", fmt(report["coarse_depth"])),
        ("final depth", fmt(report["final_depth"])),
        ("residual (inverse)", fmt(report["residual_inv"], "inverse")),
        ("residual (final - coarse)", fmt(report["residual_metric"])),
        ("confidence", fmt(report["confidence"], "plain")),
        ("GT depth", fmt(report["gt_depth"])),
        ("AbsRel coarse / final", pair("gt_abs_rel_coarse", "gt_abs_rel_final", "plain")),
        ("cost volume argmax / mean", pair("argmax_depth", "expected_depth", "length")),
        ("multi-view error final / coarse",
         pair("consistency_final", "consistency_coarse", "plain")),
        ("flags", ", ".join(report["flags"]) or "none"),
    ]  # fmt: skip
    return "\n".join(["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]])


def targets_markdown(index: list[int], psnr: list[float], mean_psnr: float) -> str:
    """PSNR of each rendered target view."""
    lines = ["| target frame | PSNR (dB) |", "|---|---|"]
    lines += [f"| {i} | {p:.2f} |" for i, p in zip(index, psnr, strict=True)]
    lines.append(f"| **mean** | **{mean_psnr:.2f}** |")
    return "\n".join(lines)

"""The Analysis folder: its settings, its results as tables, and per-view residual histograms.

The analysis runs as a job for the current settings and is cached on the loaded scene, where the
export button finds it: the numbers here and in the exported metrics.json are the same object.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from dsviewer.viewer.analysis import AnalysisSettings, SceneAnalysis
from dsviewer.viewer.analysis.metrics import histogram
from dsviewer.viewer.escape import escape_markdown

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.gui.context import GuiContext
    from dsviewer.viewer.session.loaded import LoadedScene

HISTOGRAM_BINS = 64


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _num(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4g}"


def _sfm(entry: dict, key: str, show) -> str:
    """One SfM metric, or why there is none ("too few SfM points" below the minimum)."""
    return show(entry[key]) if entry["reason"] is None else entry["reason"]


def summary_markdown(summary: dict) -> str:
    """The checks of ``SceneAnalysis.summary()`` for coarse and final depth, as a table."""
    consistency, clamp, edges = summary["consistency"], summary["clamp"], summary["edges"]
    layers = ("coarse", "final")  # the pipeline's order, as in the Statistics tables
    flying = {"coarse": edges["coarse_flying_share"], "final": edges["flying_share"]}
    rows = [
        ("inconsistent", *(_pct(consistency[k]["overall"].get("inconsistent_share"))
                           for k in layers)),
        ("mean multi-view error", *(_num(consistency[k]["overall"].get("mean_rel_error"))
                                    for k in layers)),
        ("at near / far clamp", *(_pct(clamp[f"{k}_at_near_share"] + clamp[f"{k}_at_far_share"])
                                  for k in layers)),
        ("flying pixels", *(_pct(flying[k]) for k in layers)),
    ]  # fmt: skip
    if "gt" in summary:
        gt = summary["gt"]
        rows.append(("AbsRel to GT", *(_num(gt[k]["overall"]["abs_rel"]) for k in layers)))
        rows.append(("delta < 1.25", *(_pct(gt[k]["overall"]["delta"]) for k in layers)))
    if "sfm" in summary:
        sfm = {k: summary["sfm"][k]["overall"] for k in layers}
        points = sfm["final"]["points"]
        rows.append((f"AbsRel to SfM ({points} points)",
                     *(_sfm(sfm[k], "abs_rel", _num) for k in layers)))
        rows.append(("delta < 1.25 (SfM)", *(_sfm(sfm[k], "delta", _pct) for k in layers)))
        rows.append(("median ratio to SfM", *(_sfm(sfm[k], "median_ratio", _num)
                                              for k in layers)))
    lines = ["| check | coarse | final |", "|---|---|---|"]
    lines += [f"| {name} | {coarse} | {final} |" for name, coarse, final in rows]
    return "\n".join(lines)


def statistics_markdown(analysis: SceneAnalysis, residual: np.ndarray, valid: np.ndarray,
                        unit: str) -> str:  # fmt: skip
    """Per view: the residual (``[V, P]`` in the chosen unit) and the depth errors to GT."""
    lines = [
        f"**Residual r** ({unit})",
        "",
        "| view | mean | median | r > 0 |",
        "|---|---|---|---|",
    ]
    for v in range(residual.shape[0]):
        r = residual[v][valid[v]].astype(np.float64)
        if r.size == 0:
            lines.append(f"| {v} | - | - | - |")
            continue
        lines.append(f"| {v} | {r.mean():.3g} | {np.median(r):.3g} | {100 * (r > 0).mean():.0f}% |")
    final, coarse = analysis.layers["final"].gt_metrics, analysis.layers["coarse"].gt_metrics
    if final is not None:
        lines += ["", "**AbsRel to GT**", "", "| view | coarse | final |", "|---|---|---|"]
        for v, (c, f) in enumerate(zip(coarse["per_view"], final["per_view"], strict=True)):
            lines.append(f"| {v} | {_num(c['abs_rel'])} | {_num(f['abs_rel'])} |")
    final, coarse = analysis.layers["final"].sfm_metrics, analysis.layers["coarse"].sfm_metrics
    if final is not None:
        lines += ["", "**Against SfM points** (final depth's median ratio: its scale)", "",
                  "| view | points | AbsRel coarse | AbsRel final | ratio final |",
                  "|---|---|---|---|---|"]
        for v, (c, f) in enumerate(zip(coarse["per_view"], final["per_view"], strict=True)):
            lines.append(f"| {v} | {f['points']} | {_sfm(c, 'abs_rel', _num)} | "
                         f"{_sfm(f, 'abs_rel', _num)} | {_sfm(f, 'median_ratio', _num)} |")
    return "\n".join(lines)


class AnalysisPanel:
    def __init__(self, context: GuiContext, on_change: Callable[[], None]) -> None:
        """``on_change()``: an analysis setting changed (the state holds the new settings)."""
        self.context = context
        state, gui = context.state, context.server.gui
        with gui.add_folder("Analysis"):
            self.threshold = gui.add_slider(
                "Consistency threshold", min=0.005, max=0.5, step=0.005, initial_value=0.05,
                hint="Relative depth disagreement with another view above which a pixel is "
                "inconsistent.",
            )  # fmt: skip
            self.occlusions = gui.add_dropdown(
                "Occlusions", options=("count", "skip"),
                hint="count: a point hidden behind another view's surface counts as a "
                "disagreement; skip: only free-space violations count (wide baselines).",
            )  # fmt: skip
            self.described = gui.add_markdown("")  # which run the numbers below are of
            self.table = gui.add_markdown("")
        with gui.add_folder("Statistics", expand_by_default=False):
            self.statistics = gui.add_markdown("")
        self.histograms_folder = gui.add_folder("Histograms", expand_by_default=False)
        self.histograms: list[viser.GuiUplotHandle] = []

        def write() -> None:
            state.analysis = AnalysisSettings(consistency_threshold=float(self.threshold.value),
                                              consistency_occlusions=str(self.occlusions.value))

        write()
        for control in (self.threshold, self.occlusions):

            @control.on_update
            def _(_event) -> None:
                write()
                on_change()

    def computing(self) -> None:
        self.table.content = "*Analysing the geometry...*"

    def refresh(self, loaded: LoadedScene, residual_limit: float) -> None:
        """Tables and histograms of run A (``loaded``), its analysis and the colour settings;
        the histograms span +- ``residual_limit``."""
        state = self.context.state
        analysis = state.analysis_of(loaded)
        run = state.run_a
        self.described.content = (f"Of run **A: {escape_markdown(run.name)}**"
                                   if run is not None and run.loaded is loaded else "")  # fmt: skip
        if analysis is not None:
            self.table.content = summary_markdown(analysis.summary())
        settings = state.color
        field = "residual_inv" if settings.residual_unit == "inverse" else "residual_metric"
        V = loaded.layers.num_views
        residual = getattr(loaded.layers, field).reshape(V, -1).numpy()
        valid = loaded.flat("final").valid & loaded.flat("coarse").valid
        unit = "inverse depth" if settings.residual_unit == "inverse" else "final - coarse depth"
        if analysis is not None:
            self.statistics.content = statistics_markdown(analysis, residual, valid, unit)
        self._refresh_histograms(residual, valid, unit, residual_limit)

    def _refresh_histograms(self, residual: np.ndarray, valid: np.ndarray, unit: str,
                            limit: float) -> None:  # fmt: skip
        """One histogram per view on one symmetric range (so the views compare); reused handles."""
        gui = self.context.server.gui
        for v in range(residual.shape[0]):
            edges, counts = histogram(torch.from_numpy(residual[v][valid[v]]), HISTOGRAM_BINS,
                                      (-limit, limit))  # fmt: skip
            data = (0.5 * (edges[1:] + edges[:-1]), counts.astype(np.float64))
            title = f"View {v}: mono residual ({unit})"
            if v < len(self.histograms):
                handle = self.histograms[v]
                handle.data, handle.title, handle.visible = data, title, True
                continue
            with self.histograms_folder:
                series = ({"label": "residual"}, {"label": "pixels", "stroke": "#d6604d",
                                                  "fill": "rgba(214, 96, 77, 0.25)", "width": 1.5})
                self.histograms.append(gui.add_uplot(
                    data, series, title=title, aspect=2.0, scales={"x": {"time": False}},
                    axes=({}, {"label": "pixels"}),
                ))  # fmt: skip
        for handle in self.histograms[residual.shape[0] :]:
            handle.visible = False

"""The Curves folder (``dsviewer watch``): the geometry metrics of every scene over the training
steps, one plot (viser's uPlot element) for the metric chosen, with the shown step marked.

The metrics are ``scenes.csv``'s columns (:mod:`dsviewer.viewer.evaluation.columns` names and
explains them); :data:`CURVES` groups those that share a unit into one plot. The folder is
handed the numbers (:meth:`CurvesPanel.show`); it reads no other folder.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.evaluation.columns import METRIC_BY_NAME

if TYPE_CHECKING:
    from dsviewer.viewer.gui.context import GuiContext

ORDER = -1.0  # below the Timeline, above the viewer's folders


@dataclass(frozen=True)
class Curve:
    """One plot: ``columns`` (metric name -> its short label in the legend), in one unit."""

    label: str
    columns: tuple[tuple[str, str], ...]


CURVES: tuple[Curve, ...] = (
    Curve("AbsRel vs GT", (("gt_abs_rel_coarse", "coarse"), ("gt_abs_rel_final", "final"))),
    Curve("delta < 1.25 vs GT", (("gt_delta_final", "final"),)),
    Curve("AbsRel vs SfM", (("sfm_abs_rel_coarse", "coarse"), ("sfm_abs_rel_final", "final"))),
    Curve("Median depth scale (final / SfM)", (("sfm_scale_final", "final"),)),
    Curve("Multi-view inconsistency", (("inconsistent_coarse", "coarse"),
                                       ("inconsistent_final", "final"))),
    Curve("Clamp share (near + far)", (("clamp_final", "final"),)),
    Curve("Confidence", (("confidence_mean", "mean"),)),
    Curve("Residual |final - coarse|", (("residual_abs_mean", "mean"),)),
    Curve("Residual / coarse depth", (("residual_rel_mean", "mean"),)),
    Curve("Target PSNR (dB)", (("target_psnr", "mean"),)),
)  # fmt: skip
CURVE_BY_LABEL = {curve.label: curve for curve in CURVES}
SCENE_COLOURS = ("#4dabf7", "#ff922b", "#69db7c", "#f783ac", "#ffd43b", "#9775fa", "#3bc9db")
MARKER_COLOUR = "#ffffff"

Table = Mapping[str, tuple[Sequence[int], Mapping[str, Sequence[float | None]]]]
"""scene -> (its steps, metric name -> one value per step)."""


def _values(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def curve_data(curve: Curve, table: Table, shown_scene: str, shown_step: int | None):
    """The plot of ``curve``: ``(data, series)`` as uPlot takes them, or None with no values.

    ``data[0]`` is every step of any scene; one series per scene and column (NaN where a scene
    has no value at a step); the last series holds the shown scene's last column (the final
    depth's, where there are two) at the shown step only (drawn as a large point: the marker).
    """
    steps = sorted({int(s) for scene_steps, _ in table.values() for s in scene_steps})
    if not steps:
        return None
    position = {step: i for i, step in enumerate(steps)}
    data, series = [np.array(steps, dtype=np.float64)], [{"label": "step"}]
    marker = np.full(len(steps), np.nan)
    for number, (scene, (scene_steps, metrics)) in enumerate(table.items()):
        colour = SCENE_COLOURS[number % len(SCENE_COLOURS)]
        for column, (name, short) in enumerate(curve.columns):
            values = np.full(len(steps), np.nan)
            values[[position[int(s)] for s in scene_steps]] = _values(metrics.get(name, []))
            if np.isnan(values).all():
                continue
            data.append(values)
            last = column == len(curve.columns) - 1
            # uPlot writes labels and the title as text (checked in Chromium with an HTML
            # payload): scene keys go in unescaped, as escaping would show its entities.
            series.append({"label": f"{scene} {short}", "stroke": colour, "width": 2,
                           "dash": None if last else [6, 4],
                           "spanGaps": True, "points": {"show": True, "size": 5}})  # fmt: skip
            if scene == shown_scene and last and shown_step in position:
                marker[position[shown_step]] = values[position[shown_step]]
    if len(data) == 1:
        return None
    data.append(marker)
    series.append({"label": "shown step", "stroke": MARKER_COLOUR, "width": 0,
                   "points": {"show": True, "size": 12, "fill": MARKER_COLOUR}})  # fmt: skip
    return tuple(data), tuple(series)


def plot_scales(data: Sequence[np.ndarray]) -> dict:
    """Both axes' ranges, set here: uPlot takes a NaN (a step without a value, the marker's
    other steps) into its own min/max, and steps are numbers, not times."""
    steps, values = data[0], np.concatenate(data[1:])
    values = values[np.isfinite(values)]
    low, high = float(values.min()), float(values.max())
    pad = 0.08 * (high - low) or 0.05 * abs(high) or 1.0
    first, last = float(steps[0]), float(steps[-1])
    return {"x": {"time": False, "range": (first, last if last > first else first + 1)},
            "y": {"range": (low - pad, high + pad)}}


def available_curves(table: Table) -> list[str]:
    """The curves with at least one value (no GT: no GT curves; no SfM: no SfM curves)."""
    found = []
    for curve in CURVES:
        values = [v for _, metrics in table.values() for name, _ in curve.columns
                  for v in metrics.get(name, []) if v is not None and math.isfinite(v)]  # fmt: skip
        if values:
            found.append(curve.label)
    return found


class CurvesPanel:
    def __init__(self, context: GuiContext) -> None:
        gui = context.server.gui
        self.context = context
        self._last: tuple[Table, str, int | None] | None = None
        self._showing = False  # show() sets the dropdown itself: not a user's choice
        with gui.add_folder("Curves", order=ORDER):
            self.metric = gui.add_dropdown(
                "Metric", options=(CURVES[0].label,),
                hint="Which geometry metric to plot over the training steps (one line per "
                "scene; dashed: coarse, solid: final; the white point: the shown step).",
            )  # fmt: skip
            self.plot = gui.add_uplot(
                data=(np.zeros(1), np.zeros(1)), series=({"label": "step"}, {"label": "-"}),
                title="", aspect=1.4, visible=False,
                legend={"show": True, "live": False},
            )  # fmt: skip
            self.meaning = gui.add_markdown("")

        @self.metric.on_update
        def _(_event) -> None:
            if self._last is not None and not self._showing:
                last = self._last
                context.guarded(lambda: self.show(*last))

    def show(self, table: Table, shown_scene: str, shown_step: int | None) -> None:
        """Plot the chosen metric of every scene over the steps, the shown step marked."""
        self._last = (table, shown_scene, shown_step)
        labels = available_curves(table)
        if not labels:
            self.plot.visible = False
            self.meaning.content = "*No metrics yet.*"
            return
        if tuple(self.metric.options) != tuple(labels):
            chosen = self.metric.value
            self._showing = True
            try:
                self.metric.options = labels
                self.metric.value = chosen if chosen in labels else labels[0]
            finally:
                self._showing = False
        curve = CURVE_BY_LABEL[self.metric.value]
        plot = curve_data(curve, table, shown_scene, shown_step)
        if plot is None:
            self.plot.visible = False
            return
        data, series = plot
        self.plot.scales = plot_scales(data)
        self.plot.series = series
        self.plot.data = data
        self.plot.title = curve.label + ("" if shown_step is None else f" (step {shown_step})")
        self.plot.visible = True
        self.meaning.content = " ".join(
            f"*{short}*: {METRIC_BY_NAME[name].meaning}." for name, short in curve.columns
        )

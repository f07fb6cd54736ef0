"""The Inspector folder: click a point (or type a pixel) to see everything about its pixel.

A click in the scene is a ray in the user's frame; :meth:`PointClouds.pick` finds the shown point
nearest to it. The report (:mod:`viewer.inspector`) lists the depths, the residual, the
confidence, GT, every scalar colour mode's value and the flags, and plots the cost volume's
probability over the depth candidates between the view's near and far planes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from viewer.color_modes import COLOR_MODES
from viewer.inspector import PixelOutOfRangeError, PixelReport, inspect_pixel, probability_series
from viewer.point_layers import POINT_LAYERS
from viewer.scene_nodes import add_point_cloud

if TYPE_CHECKING:
    import viser

    from viewer.gui.app import ViewerApp

PROMPT = "Click a point in the scene, or enter a pixel."
MARKER_PIXELS = 6.0  # the picked point's marker, in context pixels


def _fmt(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.4g}"


def report_markdown(report: PixelReport) -> str:
    rows = [
        ("view, pixel (u, v)", f"{report.view}, ({report.u}, {report.v})"),
        ("frame", str(report.frame)),
        ("coarse depth", _fmt(report.coarse_depth)),
        ("final depth", _fmt(report.final_depth)),
        ("residual (inverse)", _fmt(report.residual_inv)),
        ("residual (final - coarse)", _fmt(report.residual_metric)),
        ("confidence", _fmt(report.confidence)),
        ("GT depth", _fmt(report.gt_depth)),
        ("rel. error coarse / final", (f"{_fmt(report.relative_error(report.coarse_depth))} / "
                                      f"{_fmt(report.relative_error(report.final_depth))}")),
        ("cost volume argmax / mean", f"{_fmt(report.argmax_depth)} / {_fmt(report.expected_depth)}"),
    ]  # fmt: skip
    rows += [(COLOR_MODES[k].label.lower() + " (final)", _fmt(v)) for k, v in report.mode_values.items()
             if k not in ("residual", "confidence", "depth")]  # fmt: skip
    rows.append(("flags", ", ".join(report.flags) or "none"))
    return "\n".join(["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]])


class InspectorPanel:
    def __init__(self, app: ViewerApp) -> None:
        self.app = app
        self.report: PixelReport | None = None
        self.marker: viser.PointCloudHandle | None = None
        gui = app.server.gui
        with gui.add_folder("Inspector", expand_by_default=False):
            self.text = gui.add_markdown(PROMPT)
            self.view = gui.add_number("View", initial_value=0, min=0, step=1)
            self.u = gui.add_number("u (column)", initial_value=0, min=0, step=1)
            self.v = gui.add_number("v (row)", initial_value=0, min=0, step=1)
            self.inspect = gui.add_button("Inspect", hint="Inspect this pixel of this context view.")
            self.plot = gui.add_uplot(
                (np.array([1.0, 2.0]), np.zeros(2)),
                ({"label": "depth"}, {"label": "probability", "stroke": "#4393c3", "width": 2}),
                title="Cost-volume probability over depth", aspect=1.6,
                scales={"x": {"time": False, "distr": 3}},  # candidates are uniform in 1/depth
                axes=({"label": "depth"}, {"label": "probability"}),
            )  # fmt: skip

        @self.inspect.on_click
        def _(_event) -> None:
            try:
                self.inspect_pixel(int(self.view.value), int(self.u.value), int(self.v.value))
            except (PixelOutOfRangeError, RuntimeError) as error:
                self.text.content = f"**{error}**"

        @app.server.scene.on_click()
        def _(event) -> None:
            with app.lock:
                if app.loaded is None:
                    return
                picked = app.points.pick(event.ray_origin, event.ray_direction)
                if picked is None:
                    return
                run, _, view, u, v = picked
                with app.server.atomic():
                    self._show(view, u, v, run.loaded)

    def reset(self) -> None:
        """A new scene: forget the last pixel and its curve."""
        self.report = None
        self.text.content = PROMPT
        self.plot.data = (np.array([1.0, 2.0]), np.zeros(2))
        if self.marker is not None:
            self.marker.visible = False

    def inspect_pixel(self, view: int, u: int, v: int) -> PixelReport:
        """Fill the inspector with pixel ``(u, v)`` of context view ``view``; returns the report."""
        with self.app.lock:
            if self.app.loaded is None:
                raise RuntimeError("no scene is shown yet")
            with self.app.server.atomic():
                return self._show(view, u, v)

    def refresh(self) -> None:
        """The analysis changed: recompute the shown pixel's report."""
        if self.report is not None:
            self._show(self.report.view, self.report.u, self.report.v)

    def _show(self, view: int, u: int, v: int, loaded=None) -> PixelReport:
        app = self.app
        loaded = loaded or app.loaded
        report = inspect_pixel(loaded.layers, view, u, v, app.current_analysis(loaded))
        self.text.content = report_markdown(report)
        series = probability_series(report)
        self.plot.data = (series.depth.astype(np.float64), series.probability.astype(np.float64))
        self.plot.scales = {"x": {"time": False, "distr": 3, "range": list(series.depth_range)}}
        self.view.value, self.u.value, self.v.value = view, u, v
        points = np.array([report.coarse_point, report.final_point], dtype=np.float32)
        colors = np.array([POINT_LAYERS["coarse"].color, POINT_LAYERS["final"].color], np.uint8)
        size = MARKER_PIXELS * loaded.view.pixel_footprint
        if self.marker is None:
            self.marker = add_point_cloud(app.server, "/inspected", points, colors, size)
        else:
            self.marker.points, self.marker.colors, self.marker.point_size = points, colors, size
            self.marker.visible = True
        self.report = report
        return report

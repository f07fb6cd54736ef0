"""What is drawn and how: the Layers, Views, Colours and Points folders.

Each folder builds its controls once, with ``hint=`` tooltips, and keeps each callback beside
its control. The controls and their labels come from the registries (:data:`POINT_LAYERS`,
:data:`COLOR_MODES`), so a new layer or colour mode appears here without an edit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer import colormaps
from dsviewer.viewer.color_modes import COLOR_MODES, ColorSettings, legend_image, mode_of_layer
from dsviewer.viewer.gui.points import PointFilter
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.view_params import DEFAULT_POINT_PIXELS

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.gui.app import ViewerApp

RESIDUAL_UNITS = {"inverse depth": "inverse", "metric (final - coarse)": "metric"}
MODE_KEY_FROM_LABEL = {mode.label: key for key, mode in COLOR_MODES.items()}


class LayersPanel:
    def __init__(self, app: ViewerApp) -> None:
        self.app = app
        gui = app.server.gui
        self.toggles: dict[str, viser.GuiCheckboxHandle] = {}
        with gui.add_folder("Layers"):
            for key, layer in POINT_LAYERS.items():
                toggle = gui.add_checkbox(layer.label, initial_value=layer.shown_at_start,
                                          hint=layer.hint)  # fmt: skip
                toggle.on_update(
                    lambda _event, key=key: app.guarded(lambda: app.on_layer_toggled(key))
                )
                self.toggles[key] = toggle

    def wanted(self, layer: str) -> bool:
        return bool(self.toggles[layer].value)

    def show(self) -> None:
        """Grey out the layers this scene does not have (no GT, a depth-only model)."""
        for key, toggle in self.toggles.items():
            toggle.disabled = self.app.loaded.flat(key) is None


class ViewsPanel:
    """One checkbox per context view; the checkboxes are reused across scenes (hidden if unused)."""

    def __init__(self, app: ViewerApp) -> None:
        self.app = app
        self.folder = app.server.gui.add_folder("Views", expand_by_default=False)
        self.toggles: list[viser.GuiCheckboxHandle] = []
        self.count = 0

    def visible(self, view: int) -> bool:
        return view >= len(self.toggles) or bool(self.toggles[view].value)

    def show(self) -> None:
        layers = self.app.loaded.layers
        self.count = layers.num_views
        with self.folder:
            while len(self.toggles) < self.count:
                toggle = self.app.server.gui.add_checkbox(
                    f"View {len(self.toggles)}", initial_value=True,
                    hint="Show this context view's points in every layer.",
                )  # fmt: skip
                toggle.on_update(lambda _event: self.app.guarded(self.app.on_view_visibility))
                self.toggles.append(toggle)
        for v, toggle in enumerate(self.toggles):
            toggle.visible = v < self.count
            if v < self.count:
                toggle.label = f"View {v} (frame {int(layers.context.frames[v])})"
                toggle.value = True


class ColoursPanel:
    def __init__(self, app: ViewerApp) -> None:
        self.app = app
        gui = app.server.gui
        with gui.add_folder("Colours"):
            self.mode_dropdown = gui.add_dropdown(
                "Colour by", options=[m.label for m in COLOR_MODES.values()],
                initial_value=COLOR_MODES["rgb"].label,
                hint="How the points of every layer are coloured (the Mono residual layer always "
                "shows the residual). Modes that need the analysis show grey until it is done.",
            )  # fmt: skip
            self.residual_unit = gui.add_dropdown(
                "Residual unit", options=list(RESIDUAL_UNITS),
                hint="inverse depth: what the model adds (+ = pulled nearer); metric: final - "
                "coarse depth (+ = farther).",
            )  # fmt: skip
            self.percentile = gui.add_slider(
                "Range (pct of |value|)", min=50.0, max=100.0, step=0.5, initial_value=98.0,
                hint="Signed maps (residual, GT error) span +- this percentile of |value|.",
            )  # fmt: skip
            self.legend = gui.add_image(np.zeros((28, 320, 3), np.uint8), label="Legend")

        @self.mode_dropdown.on_update
        def _(_event) -> None:
            app.guarded(app.on_colors_changed)

        @self.residual_unit.on_update
        def _(_event) -> None:
            app.guarded(app.on_colors_changed)

        @self.percentile.on_update
        def _(_event) -> None:
            app.guarded(app.on_colors_changed)

    def mode(self) -> str:
        return MODE_KEY_FROM_LABEL[self.mode_dropdown.value]

    def set_mode(self, key: str) -> None:
        self.mode_dropdown.value = COLOR_MODES[key].label

    def settings(self) -> ColorSettings:
        unit = RESIDUAL_UNITS[self.residual_unit.value]
        return ColorSettings(residual_unit=unit, percentile=float(self.percentile.value))

    def modes_in_use(self) -> list[str]:
        """The colour modes of the visible layers (the chosen one, and fixed ones like the
        residual layer's), in registry order; the chosen one when no layer is visible."""
        loaded = self.app.loaded
        used = {mode_of_layer(key, self.mode()) for key in POINT_LAYERS
                if self.app.layers_panel.wanted(key) and loaded.flat(key) is not None}  # fmt: skip
        return [key for key in COLOR_MODES if key in used] or [self.mode()]

    def refresh_legend(self) -> None:
        """One legend per colour mode on screen, each under its name."""
        context = self.app.color_context()
        parts = []
        for key in self.modes_in_use():
            parts += [
                colormaps.text_image(COLOR_MODES[key].label, height=20),
                legend_image(context, key),
            ]
        image = np.concatenate(parts, axis=0)
        if not np.array_equal(image, self.legend.image):  # an unchanged legend is not re-sent
            self.legend.image = image


class PointsPanel:
    def __init__(self, app: ViewerApp, point_budget: int) -> None:
        self.app = app
        gui = app.server.gui
        with gui.add_folder("Points", expand_by_default=False):
            self.size = gui.add_slider(
                "Point size (px)", min=0.25, max=8.0, step=0.25, initial_value=DEFAULT_POINT_PIXELS,
                hint="In context-image pixels at the scene's median depth.",
            )  # fmt: skip
            low = min(10_000, point_budget)  # tests and small machines may ask for tiny budgets
            self.budget = gui.add_slider(
                "Points per layer", min=low, max=max(3_000_000, point_budget),
                step=10_000 if low == 10_000 else 1, initial_value=point_budget,
                hint="Points sent per layer at most, split over the views (keeps the browser "
                "fluid).",
            )  # fmt: skip
            self.subsample = gui.add_dropdown(
                "Subsampling", options=("random", "stride"),
                hint="random: a fixed random subset (stable under filters); stride: every "
                "k-th pixel.",
            )  # fmt: skip
            self.min_confidence = gui.add_slider(
                "Min confidence (pct)", min=0.0, max=99.0, step=1.0, initial_value=0.0,
                hint="Hide the pixels whose match probability is below this percentile.",
            )  # fmt: skip
            self.depth_range = gui.add_multi_slider(
                "Depth range (pct)", min=0.0, max=100.0, step=0.5, initial_value=(0.0, 100.0),
                hint="Keep points whose depth lies between these percentiles of the final depth.",
            )  # fmt: skip
            self.inconsistent_only = gui.add_checkbox(
                "Inconsistent only", initial_value=False,
                hint="Only the pixels the multi-view check flags (after the analysis).",
            )  # fmt: skip
            self.hide_flying = gui.add_checkbox(
                "Hide flying pixels", initial_value=False,
                hint="Drop pixels that sit between two surfaces (after the analysis).",
            )  # fmt: skip
            self.readout = gui.add_markdown("")

        @self.size.on_update
        def _(_event) -> None:
            app.guarded(lambda: app.points.set_point_size(self.point_size()))

        for control in (self.budget, self.subsample, self.min_confidence, self.depth_range,
                        self.inconsistent_only, self.hide_flying):  # fmt: skip
            control.on_update(lambda _event: app.guarded(app.on_selection_changed))

    def point_size(self) -> float:
        return self.app.loaded.view.point_size(float(self.size.value))

    def point_filter(self, loaded=None) -> PointFilter:
        """The filter settings applied to a run (default: A): percentiles of its own data."""
        loaded = loaded or self.app.loaded
        final = loaded.flat("final")
        depth = final.depth[final.valid]
        low_pct, high_pct = self.depth_range.value
        low, high = -np.inf, np.inf
        if depth.size and low_pct > 0:
            low = float(np.percentile(depth, low_pct))
        if depth.size and high_pct < 100:
            high = float(np.percentile(depth, high_pct))
        confidence = loaded.layers.confidence.numpy()
        min_confidence = 0.0
        if self.min_confidence.value > 0:
            min_confidence = float(np.percentile(confidence, self.min_confidence.value))
        return PointFilter(
            min_confidence=min_confidence, depth_low=low, depth_high=high,
            budget_per_view=int(self.budget.value) // max(1, loaded.layers.num_views),
            subsample=self.subsample.value, pixel_mask=self._analysis_mask(loaded),
        )  # fmt: skip

    def _analysis_mask(self, loaded) -> np.ndarray | None:
        """``[V, P]`` bool of the analysis filters; None while off or not computed yet."""
        analysis = self.app.current_analysis(loaded)
        if analysis is None or not (self.inconsistent_only.value or self.hide_flying.value):
            return None
        final = analysis.layers["final"]
        V = final.flying.shape[0]
        mask = np.ones((V, final.flying[0].numel()), dtype=bool)
        if self.inconsistent_only.value:
            mask &= final.consistency.inconsistent.reshape(V, -1).numpy()
        if self.hide_flying.value:
            mask &= ~final.flying.reshape(V, -1).numpy()
        return mask

    def refresh_readout(self) -> None:
        filt = self.point_filter()
        low = "0" if not np.isfinite(filt.depth_low) else f"{filt.depth_low:.3g}"
        high = "inf" if not np.isfinite(filt.depth_high) else f"{filt.depth_high:.3g}"
        self.readout.content = (f"Depth {low} to {high}, match probability >= "
                                f"{filt.min_confidence:.3f}; {self.app.points.points_sent():,} "
                                "points sent.")  # fmt: skip

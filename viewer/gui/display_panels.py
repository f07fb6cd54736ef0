"""What is drawn and how: the Layers, Views, Colours and Points folders.

Each folder builds its controls once, with ``hint=`` tooltips, and keeps each callback beside
its control: the callback writes the folder's part of the
:class:`~dsviewer.viewer.gui.state.ViewState`, then calls the one callback the app gave it.
The controls and their labels come from the registries (:data:`POINT_LAYERS`,
:data:`COLOR_MODES`), so a new layer or colour mode appears here without an edit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.color_modes import COLOR_MODES, ColorSettings
from dsviewer.viewer.gui.state import PointSettings
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.view_params import DEFAULT_POINT_PIXELS

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.gui.context import GuiContext
    from dsviewer.viewer.gui.points import PointFilter
    from dsviewer.viewer.gui.state import ViewState
    from dsviewer.viewer.session.loaded import LoadedScene

RESIDUAL_UNITS = {"inverse depth": "inverse", "metric (final - coarse)": "metric"}
MODE_KEY_FROM_LABEL = {mode.label: key for key, mode in COLOR_MODES.items()}


class LayersPanel:
    def __init__(self, context: GuiContext, on_toggle: Callable[[str], None]) -> None:
        """``on_toggle(key)``: layer ``key`` was switched (the state already says how)."""
        state, gui = context.state, context.server.gui
        self.toggles: dict[str, viser.GuiCheckboxHandle] = {}
        with gui.add_folder("Layers"):
            for key, layer in POINT_LAYERS.items():
                toggle = gui.add_checkbox(layer.label, initial_value=layer.shown_at_start,
                                          hint=layer.hint)  # fmt: skip
                state.layers_shown[key] = bool(toggle.value)

                def toggled(_event, key=key, toggle=toggle) -> None:
                    state.layers_shown[key] = bool(toggle.value)
                    context.guarded(lambda: on_toggle(key))

                toggle.on_update(toggled)
                self.toggles[key] = toggle
            self.covered = gui.add_markdown("")

    def show_covered(self, state: ViewState) -> None:
        """Say why no point is drawn while overlaid splats or residual vectors are shown."""
        what = [name for name, shown in (("overlaid splats", state.splats == "overlaid"),
                                         ("residual vectors", state.vectors_shown)) if shown]
        self.covered.content = (f"*Points hidden while {' and '.join(what)} are shown (they "
                                "would cover them).*" if what else "")  # fmt: skip

    def show(self, loaded: LoadedScene) -> None:
        """Grey out the layers this scene does not have (no GT, a depth-only model)."""
        for key, toggle in self.toggles.items():
            toggle.disabled = loaded.flat(key) is None


class ViewsPanel:
    """One checkbox per context view; the checkboxes are reused across scenes (hidden if unused)."""

    def __init__(self, context: GuiContext, on_change: Callable[[], None]) -> None:
        self.context = context
        self.on_change = on_change
        self.folder = context.server.gui.add_folder("Views", expand_by_default=False)
        self.toggles: list[viser.GuiCheckboxHandle] = []

    def _toggled(self, view: int) -> None:
        hidden = self.context.state.views_hidden
        if self.toggles[view].value:
            hidden.discard(view)
        else:
            hidden.add(view)
        self.context.guarded(self.on_change)

    def show(self, loaded: LoadedScene) -> None:
        """A checkbox per view of ``loaded``, every view shown."""
        layers = loaded.layers
        count = layers.num_views
        with self.folder:
            while len(self.toggles) < count:
                toggle = self.context.server.gui.add_checkbox(
                    f"View {len(self.toggles)}", initial_value=True,
                    hint="Show this context view's points in every layer.",
                )  # fmt: skip
                view = len(self.toggles)
                toggle.on_update(lambda _event, view=view: self._toggled(view))
                self.toggles.append(toggle)
        for v, toggle in enumerate(self.toggles):
            toggle.visible = v < count
            if v < count:
                toggle.label = f"View {v} (frame {int(layers.context.frames[v])})"
                toggle.value = True
        self.context.state.views_hidden.clear()


class ColoursPanel:
    def __init__(self, context: GuiContext, on_change: Callable[[], None]) -> None:
        """``on_change()``: the colour mode or a colour setting changed."""
        state, gui = context.state, context.server.gui
        self.server = context.server
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

        def write() -> None:
            state.color_mode = MODE_KEY_FROM_LABEL[self.mode_dropdown.value]
            state.color = ColorSettings(residual_unit=RESIDUAL_UNITS[self.residual_unit.value],
                                        percentile=float(self.percentile.value))  # fmt: skip

        write()
        for control in (self.mode_dropdown, self.residual_unit, self.percentile):

            @control.on_update
            def _(event, control=control) -> None:
                write()
                context.guarded(on_change)
                self.tell_other_pages(event.client, f"{control.label}: {control.value}")

    def tell_other_pages(self, changer, change: str) -> None:
        """A notice in every page but ``changer``'s. Colours stay shared rather than per page:
        the points are scene nodes every page shares, and per-page colours would send every
        page its own copy of every cloud."""
        if changer is None:  # set by the program, not by a page
            return
        for client_id, client in self.server.get_clients().items():
            if client_id != changer.client_id:
                client.add_notification(
                    "Colours changed in another tab", f"{change}. Colour settings are shared by "
                    "every page of this viewer.", auto_close_seconds=10.0,
                )  # fmt: skip

    def set_mode(self, key: str) -> None:
        """Choose colour mode ``key`` (as a user would, callbacks included)."""
        self.mode_dropdown.value = COLOR_MODES[key].label

    def show_legend(self, image: np.ndarray) -> None:
        if not np.array_equal(image, self.legend.image):  # an unchanged legend is not re-sent
            self.legend.image = image


def readout_markdown(filt: PointFilter, points_sent: int) -> str:
    """What run A's point filter keeps, in its units, and how many points are on screen."""
    low = "0" if not np.isfinite(filt.depth_low) else f"{filt.depth_low:.3g}"
    high = "inf" if not np.isfinite(filt.depth_high) else f"{filt.depth_high:.3g}"
    return (f"Depth {low} to {high}, match probability >= {filt.min_confidence:.3f}; "
            f"{points_sent:,} points sent.")  # fmt: skip


class PointsPanel:
    def __init__(self, context: GuiContext, point_budget: int, on_size: Callable[[], None],
                 on_selection: Callable[[], None]) -> None:  # fmt: skip
        """``on_size()``: the point size changed; ``on_selection()``: a filter or the budget."""
        state, gui = context.state, context.server.gui
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

        def write() -> None:
            low_pct, high_pct = self.depth_range.value
            state.points = PointSettings(
                pixels=float(self.size.value), budget=int(self.budget.value),
                subsample=self.subsample.value, min_confidence_pct=float(self.min_confidence.value),
                depth_range_pct=(float(low_pct), float(high_pct)),
                inconsistent_only=bool(self.inconsistent_only.value),
                hide_flying=bool(self.hide_flying.value),
            )  # fmt: skip

        write()

        @self.size.on_update
        def _(_event) -> None:
            write()
            context.guarded(on_size)

        for control in (self.budget, self.subsample, self.min_confidence, self.depth_range,
                        self.inconsistent_only, self.hide_flying):  # fmt: skip

            @control.on_update
            def _(_event) -> None:
                write()
                context.guarded(on_selection)

    def show_readout(self, filt: PointFilter, points_sent: int) -> None:
        self.readout.content = readout_markdown(filt, points_sent)

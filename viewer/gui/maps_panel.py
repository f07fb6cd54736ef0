"""The Maps folder: which map the context frustums show, and the 2D grid of maps beside the scene.

Writes ``state.maps`` (:class:`~dsviewer.viewer.maps.MapSettings`, a :data:`MAPS` key, never a
label) and calls the app's callback; the pictures follow from the state
(:mod:`dsviewer.viewer.gui.map_pictures`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from dsviewer.viewer.maps import GRID_COLUMNS, MAPS, available_maps

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.gui.context import GuiContext

HOW_TO = (
    "Click a pixel of a map (on a frustum or in the grid) to inspect it; a point clicked in 3D "
    "is marked on the maps. The maps are run A's, in the points' colours and ranges."
)


class MapsPanel:
    def __init__(self, context: GuiContext, on_change: Callable[[], None],
                 on_open_grid: Callable[[viser.ClientHandle], None]) -> None:  # fmt: skip
        """``on_change()``: ``state.maps`` changed; ``on_open_grid(client)``: the grid was just
        opened from ``client``'s page (frame it there)."""
        self.context, self.state = context, context.state
        gui = context.server.gui
        self.key_of_label = {view_map.label: key for key, view_map in MAPS.items()}
        with gui.add_folder("Maps", expand_by_default=False):
            self.picture = gui.add_dropdown(
                "Frustum picture", options=[MAPS["photo"].label],
                hint="What each context camera's frustum shows: the photo or a per-pixel map, "
                "coloured as the points (Colours folder settings, run A, B - A with a run B).",
            )  # fmt: skip
            self.grid = gui.add_checkbox(
                "Map grid", initial_value=False,
                hint="A grid beside the scene: one row per context view, one column per map ("
                + ", ".join(MAPS[key].label for key in GRID_COLUMNS)
                + " where the scene has them, and the frustum picture's map); clickable like the "
                "frustums.",
            )  # fmt: skip
            self.frame = gui.add_button(
                "Frame scene and grid", hint="Move your view back to see the scene and the grid."
            )  # fmt: skip
            gui.add_markdown(HOW_TO)

        @self.picture.on_update
        def _(_event) -> None:
            key = self.key_of_label.get(self.picture.value, "photo")
            if key != self.state.maps.frustum:
                self.state.maps = dataclasses.replace(self.state.maps, frustum=key)
                context.guarded(on_change)

        @self.grid.on_update
        def _(event) -> None:
            self.state.maps = dataclasses.replace(self.state.maps, grid=bool(self.grid.value))
            context.guarded(on_change)
            if self.grid.value and event.client is not None:
                on_open_grid(event.client)

        @self.frame.on_click
        def _(event) -> None:
            if event.client is not None:
                on_open_grid(event.client)

    def show(self) -> None:
        """The maps run A has (and B - A while B is chosen) as the dropdown's options."""
        state = self.state
        keys = available_maps(state.loaded.layers, state.partner is not None)
        labels = [MAPS[key].label for key in keys]
        if list(self.picture.options) != labels:
            self.picture.options = labels
        shown = state.maps.frustum if state.maps.frustum in keys else "photo"
        if self.picture.value != MAPS[shown].label:
            self.picture.value = MAPS[shown].label

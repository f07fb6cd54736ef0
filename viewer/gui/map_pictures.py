"""The maps in the scene: each context frustum's picture, the 2D grid, the inspected pixel's
marker on both, and which map pixel a click lands on.

Everything follows from the :class:`~dsviewer.viewer.gui.state.ViewState`: run A (the maps are
its pixels; choose A in the Runs folder), ``state.maps`` (the frustums' map, the grid open or
not), the colour settings and analysis through run A's colour context (so a map and the points
share colours and ranges), B (the B - A map) and ``state.inspected`` (the marker).

Why the grid is an image plane in the scene: viser 1.1.1's GUI images (in the panel, a
floating ``add_panel`` window or a modal) send no clicks to the server; scene nodes do, with
the click's ray. So the grid is a scene image (``/maps/grid``) placed beside the scene, facing
the start camera, and opening it frames the scene and the grid side by side.

Why one click handler: viser runs a node's ``on_click`` and the scene's ``on_click`` for the
same click on its thread pool in no fixed order, so :meth:`MapPictures.pick` (the inspector's
one ``pick``) decides what the ray met first: a shown picture, or a point.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from dsviewer.viewer.inspector import corresponding_pixel
from dsviewer.viewer.map_geometry import (
    Picture,
    framing_both,
    frustum_picture_plane,
    grid_placement,
    hit_picture,
    pose_matrix,
)
from dsviewer.viewer.maps import (
    GridLayout,
    available_maps,
    frustum_picture,
    grid_cell,
    grid_columns,
    grid_image,
    grid_legends,
    mark,
    pixel_of,
)

if TYPE_CHECKING:
    import viser

    from dsviewer.viewer.color_modes import ColorContext
    from dsviewer.viewer.gui.colors import RunColors
    from dsviewer.viewer.gui.context import GuiContext
    from dsviewer.viewer.gui.points import RunClouds
    from dsviewer.viewer.session.runs import Run

GRID_NODE = "/maps/grid"
Marked = tuple[int, float, float]  # (view, s, t): a pixel centre as fractions of its image
Picked = tuple["Run", str, int, int, int]  # (run, layer, view, u, v), as RunClouds.pick


def _frustum_rectangle(handle: viser.CameraFrustumHandle) -> Picture:
    scale = handle.scale if np.isscalar(handle.scale) else handle.scale[0]
    half_w, half_h, depth = frustum_picture_plane(handle.fov, handle.aspect, float(scale))
    return Picture(pose_matrix(handle.wxyz, handle.position), half_w, half_h, depth)


class MapPictures:
    def __init__(self, context: GuiContext, colors: RunColors) -> None:
        self.context, self.state, self.colors = context, context.state, colors
        self.frustums: list[viser.CameraFrustumHandle] = []  # run A's context frustums
        self.grid: viser.ImageHandle | None = None
        self.grid_picture: Picture | None = None  # where the grid is, while it is shown
        self.layout: GridLayout | None = None
        self._plain: tuple | None = None  # (context, key, pictures): unmarked, per colouring
        self._cells: tuple = (None, {})  # (context, {(key, view): grid cell}), per colouring
        self._legends: tuple = (None, None, [])  # (context, (columns, layout), legends)

    # --- what is drawn ------------------------------------------------------------------------

    def show(self, frustums: list[viser.CameraFrustumHandle]) -> None:
        """A new run A: the frustums of its context views (their pictures: :meth:`refresh`)."""
        self.frustums = list(frustums[: self.state.loaded.layers.num_views])
        self._plain = None

    def available(self) -> list[str]:
        return available_maps(self.state.loaded.layers, self.state.partner is not None)

    def chosen(self) -> str:
        """The frustums' map: the one chosen, or the photo while run A has no such map."""
        key = self.state.maps.frustum
        return key if key in self.available() else "photo"

    def marked(self) -> Marked | None:
        """The inspected pixel on run A's maps (the same ray's pixel when another run's was
        inspected); None when there is none."""
        inspected, a = self.state.inspected, self.state.run_a
        if inspected is None or a is None:
            return None
        view, u, v = inspected.view, inspected.u, inspected.v
        if inspected.run != a.name:
            run = self.state.run_named(inspected.run)
            pixel = None if run is None else corresponding_pixel(
                run.loaded.layers.context, view, u, v, a.loaded.layers.context)  # fmt: skip
            if pixel is None:
                return None
            view, u, v = pixel
        height, width = a.loaded.layers.image_shape
        return view, (u + 0.5) / width, (v + 0.5) / height

    def refresh(self) -> None:
        """Redraw what changed: the pictures and the grid of the chosen map, colours and marker
        (an unchanged picture is not sent again)."""
        if self.state.run_a is None:
            return
        context, key, marked = self.colors.context(), self.chosen(), self.marked()
        plain = self._plain_pictures(context, key)
        for view, handle in enumerate(self.frustums):
            picture = plain[view]
            if marked is not None and marked[0] == view:
                picture = mark(picture, *marked[1:])
            if handle.image is None or not np.array_equal(handle.image, picture):
                handle.image = picture
        self._refresh_grid(context, key, marked)

    def _plain_pictures(self, context: ColorContext, key: str) -> list[np.ndarray]:
        if self._plain is None or self._plain[0] is not context or self._plain[1] != key:
            pictures = [frustum_picture(context, key, v) for v in range(len(self.frustums))]
            self._plain = (context, key, pictures)
        return self._plain[2]

    def _cell_source(self, context: ColorContext, layout: GridLayout):
        """``cell(key, view)``, computed once per colouring (a marker moves, cells stay)."""
        if self._cells[0] is not context:
            self._cells = (context, {})
        cells = self._cells[1]

        def cell(key: str, view: int) -> np.ndarray:
            if (key, view, layout) not in cells:
                cells[(key, view, layout)] = grid_cell(context, layout, key, view)
            return cells[(key, view, layout)]

        return cell

    def _refresh_grid(self, context: ColorContext, key: str, marked: Marked | None) -> None:
        if not self.state.maps.grid:
            if self.grid is not None:
                self.grid.visible = False
            self.grid_picture = None
            return
        loaded = self.state.loaded
        columns = grid_columns(self.available(), key)
        height, width = loaded.layers.image_shape
        layout = GridLayout.for_maps(loaded.layers.num_views, len(columns), height, width)
        if self._legends[0] is not context or self._legends[1] != (tuple(columns), layout):
            self._legends = (context, (tuple(columns), layout),
                             grid_legends(context, layout, columns))  # fmt: skip
        legends = self._legends[2]
        layout = dataclasses.replace(layout, legend_h=max(legend.shape[0] for legend in legends))
        image = grid_image(layout, columns, self._cell_source(context, layout), marked, legends)
        place = grid_placement(loaded.view.start, layout.shape)
        wxyz, position = _pose(place.T_world_node)
        size = (2 * place.half_w, 2 * place.half_h)
        server = self.context.server
        if self.grid is None:
            self.grid = server.scene.add_image(GRID_NODE, image, *size, wxyz=wxyz,
                                               position=position, cast_shadow=False,
                                               receive_shadow=False)  # fmt: skip
        else:
            if not np.array_equal(self.grid.image, image):
                self.grid.image = image
            if (self.grid.render_width, self.grid.render_height) != size:
                self.grid.render_width, self.grid.render_height = size
            if not np.allclose(self.grid.position, position) or not np.allclose(
                self.grid.wxyz, wxyz
            ):
                self.grid.wxyz, self.grid.position = wxyz, position
        self.grid.visible = True
        self.grid_picture, self.layout, self.columns = place, layout, columns

    def frame_grid(self, client: viser.ClientHandle) -> None:
        """Move ``client``'s camera back so that it frames the scene and the grid beside it."""
        with self.context.lock:
            if self.grid_picture is None:
                return
            start = self.state.loaded.view.start
            try:
                aspect = client.camera.aspect
            except AssertionError:  # the client has not reported its camera yet
                aspect = 16 / 9
            position, look_at = framing_both(start, self.grid_picture, aspect)
        with client.atomic():
            client.camera.up_direction = start.up
            client.camera.position = position
            client.camera.look_at = look_at
            client.camera.fov = start.fov

    # --- clicks -------------------------------------------------------------------------------

    def hit(self, origin, direction) -> tuple[float, int, int, int] | None:
        """``(distance along the ray, view, u, v)``: run A's pixel on the nearest shown map
        (a frustum's picture or the grid) that a world ray meets; None if it meets none."""
        if self.state.run_a is None:
            return None
        height, width = self.state.loaded.layers.image_shape
        best = None
        for view, handle in enumerate(self.frustums):
            if not handle.visible:
                continue
            met = hit_picture(origin, direction, _frustum_rectangle(handle))
            if met is not None and (best is None or met[0] < best[0]):
                best = (met[0], view, *pixel_of(met[1], met[2], height, width))
        if self.grid_picture is not None and self.grid is not None and self.grid.visible:
            met = hit_picture(origin, direction, self.grid_picture)
            cell = None if met is None else self.layout.locate(met[1], met[2])
            if cell is not None and (best is None or met[0] < best[0]):
                best = (met[0], cell[0], *pixel_of(cell[2], cell[3], height, width))
        return best

    def pick(self, origin, direction, clouds: RunClouds) -> Picked | None:
        """What a click's world ray selects: the pixel of the map it meets (run A's), unless a
        shown point lies nearer along the ray; else the point :meth:`RunClouds.pick` finds."""
        origin = np.asarray(origin, np.float64)
        direction = np.asarray(direction, np.float64)
        on_map = self.hit(origin, direction)
        point = clouds.pick(origin, direction)
        if on_map is None:
            return point
        if point is not None and _distance_along(point, clouds, origin, direction) < on_map[0]:
            return point
        _, view, u, v = on_map
        return self.state.run_a, "final", view, u, v


def _pose(T_world_node: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import viser.transforms as vtf

    return vtf.SO3.from_matrix(T_world_node[:3, :3]).wxyz, T_world_node[:3, 3].copy()


def _distance_along(picked: Picked, clouds: RunClouds, origin, direction) -> float:
    """How far along the ray the picked point lies (its run placed where it is drawn)."""
    run, layer, view, u, v = picked
    flat = run.loaded.flat(layer)
    width = run.loaded.layers.image_shape[1]
    offset = next((np.asarray(slot.root.position) for slot in clouds.slots if slot.run is run),
                  np.zeros(3))  # fmt: skip
    point = np.asarray(flat.points[view, v * width + u], np.float64) + offset
    return float((point - origin) @ direction / max(np.linalg.norm(direction), 1e-12))

"""Maps in the viewer (no browser): the frustum pictures and the grid against a real viser server.

The scene is the hand-built plane of ``viewer_scenes`` (centred principal points). Every
expected number is computed here another way: the picture's plane from viser's frustum
drawing rule written out, pixels by the pinhole projection, colours from the colormaps with
ranges recomputed with numpy, the grid's cells from its sizes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import free_port
from viewer_scenes import make_loaded

from dsviewer.geometry.projection import project_points
from dsviewer.viewer import colormaps
from dsviewer.viewer.map_geometry import frustum_picture_plane, hit_picture, picture_point
from dsviewer.viewer.maps import MAPS, MARKER_COLOR, GridLayout, map_colors

V, H, W = 2, 24, 32


@pytest.fixture(scope="module")
def app():
    import viser

    from dsviewer.viewer.gui.app import ViewerApp

    server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    viewer = ViewerApp(server, scene_specs=["plane"], point_budget=10**6)
    viewer.show(make_loaded(V, H, W))
    assert viewer.wait_idle(60)
    yield viewer
    viewer.close()
    server.stop()


def picture_depth_and_halves(fov: float, aspect: float, scale: float):
    """viser 1.1.1's frustum (CameraFrustumVariants.tsx), written out: the corner (tan(fov/2)
    aspect, tan(fov/2), 1) scaled so that x y z / 3 = 1, then by ``scale``."""
    corner = np.array([math.tan(fov / 2) * aspect, math.tan(fov / 2), 1.0])
    corner = corner / np.cbrt(np.prod(corner) / 3.0) * scale
    return corner[2], corner[0], corner[1]


def point_on_picture(cameras, view: int, u: float, v: float, depth: float) -> np.ndarray:
    """The world point of the pixel centre ``(u, v)`` at camera depth ``depth`` (pinhole)."""
    K = cameras.intrinsics[view].double().numpy()
    T = cameras.T_world_cam[view].double().numpy()
    x = ((u + 0.5) / W - K[0, 2]) / K[0, 0]
    y = ((v + 0.5) / H - K[1, 2]) / K[1, 1]
    return T[:3, :3] @ (np.array([x, y, 1.0]) * depth) + T[:3, 3]


def test_the_plane_of_a_frustum_picture_is_visers():
    for fov, aspect, scale in ((0.8, 1.33, 0.4), (1.2, 0.75, 2.0)):
        depth, half_w, half_h = picture_depth_and_halves(fov, aspect, scale)
        assert np.allclose(frustum_picture_plane(fov, aspect, scale), (half_w, half_h, depth))


def test_a_ray_through_a_frustum_picture_selects_the_projected_pixel(app):
    """A ray from anywhere through the picture at a pixel's place hits that pixel; the place is
    where the camera's own projection puts the pixel (centred principal point)."""
    cameras = app.loaded.layers.context
    rng = np.random.default_rng(0)
    for view in range(V):
        handle = app.map_pictures.frustums[view]
        depth, _, _ = picture_depth_and_halves(handle.fov, handle.aspect, handle.scale)
        # Pixels away from the other picture (the two overlap near the middle of the pair).
        pixels = ((0, 0), (5, 17), (12, H - 1)) if view == 0 else ((W - 1, H - 1), (20, 3))
        for u, v in pixels:
            target = point_on_picture(cameras, view, u, v, depth)
            coords, z = project_points(torch.from_numpy(target)[None],
                                       cameras.intrinsics[view].double(),
                                       cameras.T_world_cam[view].double())  # fmt: skip
            assert np.allclose(coords[0].numpy(), [(u + 0.5) / W, (v + 0.5) / H])
            assert np.isclose(float(z[0]), depth)
            # From the camera's centre, and from nearer the picture at a random slant.
            centre = cameras.T_world_cam[view, :3, 3].numpy()
            for origin in (centre, 0.5 * (centre + target) + rng.normal(size=3) * 0.05 * depth):
                hit = app.map_pictures.hit(origin, target - origin)
                assert hit is not None and hit[1:] == (view, u, v)
                assert np.isclose(hit[0], np.linalg.norm(target - origin))
    # Left of picture 0 (away from picture 1): nothing.
    outside = point_on_picture(cameras, 0, -3, H / 2, depth)
    origin = outside - 4.0 * cameras.T_world_cam[0, :3, 2].numpy()
    assert app.map_pictures.hit(origin, outside - origin) is None


def test_frustum_pictures_are_coloured_as_the_points(app):
    """The final-depth map uses the points' colours and range: the same colour as each sent
    point, and the sequential map over the 2nd-98th percentile of the valid final depth."""
    app.maps_panel.picture.value = MAPS["final_depth"].label
    assert app.state.maps.frustum == "final_depth"
    app.colours_panel.set_mode("depth")
    depth = app.loaded.layers.final_depth.numpy()
    low, high = np.percentile(depth[np.isfinite(depth) & (depth > 0)], [2, 98])
    for view in range(V):
        picture = app.map_pictures.frustums[view].image
        assert np.array_equal(picture, colormaps.apply_sequential(depth[view], low, high))
        sent = app.clouds.slots[0].shown[("final", view)]
        colors = app.server.scene._handle_from_node_name[f"/runs/0/final/view_{view}"].colors
        assert np.array_equal(picture.reshape(-1, 3)[sent], colors)
    app.colours_panel.set_mode("rgb")


def test_the_residual_map_follows_the_residual_unit(app):
    layers = app.loaded.layers
    app.maps_panel.picture.value = MAPS["residual"].label
    for label, values in (("metric (final - coarse)",
                           (layers.final_depth - layers.coarse_depth).numpy()),
                          ("inverse depth", layers.residual_inv.numpy())):  # fmt: skip
        app.colours_panel.residual_unit.value = label
        limit = np.percentile(np.abs(values[np.isfinite(values)]), 98)
        for view in range(V):
            expected = colormaps.apply_diverging(values[view], limit)
            assert np.array_equal(app.map_pictures.frustums[view].image, expected), label
    app.maps_panel.picture.value = MAPS["photo"].label
    assert np.array_equal(app.map_pictures.frustums[1].image, layers.rgb[1].numpy())


def test_grid_cells_are_the_maps_and_a_ray_on_a_cell_selects_its_pixel(app):
    app.maps_panel.grid.value = True
    pictures = app.map_pictures
    grid, layout, columns = pictures.grid.image, pictures.layout, pictures.columns
    assert columns == ["photo", "coarse_depth", "residual", "final_depth", "gt_error"]
    assert (layout.rows, layout.columns) == (V, len(columns))
    context = app.colors.context()
    # Cells: 160 px on the longer side (W), gaps of 4 px, titles 20 px high.
    cell_w, cell_h, gap, title = 160, 120, 4, 20
    legends = title + V * (cell_h + gap)  # the legend row starts here
    assert grid.shape == (legends + layout.legend_h, gap + len(columns) * (cell_w + gap), 3)
    # Under the final-depth column, its colour bar: the sequential map from end to end.
    left = gap + columns.index("final_depth") * (cell_w + gap)
    band = grid[legends:, left : left + cell_w].reshape(-1, 3)
    for end in (0, 255):
        assert (band == colormaps.lut("sequential")[end]).all(-1).any()
    for view in range(V):
        for column, key in enumerate(columns):
            top, left = title + view * (cell_h + gap), gap + column * (cell_w + gap)
            cell = grid[top : top + cell_h, left : left + cell_w]
            # Each map pixel is a 5 x 5 block (160 / 32 = 120 / 24 = 5).
            assert np.array_equal(cell[::5, ::5], map_colors(context, key, view))
    # A ray through cell (view 1, final depth) at pixel (u, v) selects that pixel.
    place = pictures.grid_picture
    rows, cols = grid.shape[:2]
    for view, column, u, v in ((1, 3, 7, 11), (0, 0, 0, 0), (1, 4, W - 1, H - 1)):
        x = gap + column * (cell_w + gap) + (u + 0.5) * 5
        y = title + view * (cell_h + gap) + (v + 0.5) * 5
        target = picture_point(place, x / cols, y / rows)
        origin = app.loaded.view.start.position
        hit = pictures.hit(origin, target - origin)
        assert hit is not None and hit[1:] == (view, u, v)
    # On a title or a gap: nothing.
    for x, y in ((gap + cell_w + 2, title + 10), (gap + 10, 5)):
        target = picture_point(place, x / cols, y / rows)
        assert hit_picture(origin, target - origin, place) is not None
        assert pictures.hit(origin, target - origin) is None
    app.maps_panel.grid.value = False
    assert pictures.grid.visible is False and pictures.hit(origin, target - origin) is None


def test_the_inspected_pixel_is_marked_on_its_view_only(app):
    app.inspector_panel.inspect_pixel(1, 9, 14)
    assert (app.state.inspected.view, app.state.inspected.u, app.state.inspected.v) == (1, 9, 14)
    marked = np.argwhere((app.map_pictures.frustums[1].image == MARKER_COLOR).all(-1))
    low, high = marked.min(axis=0), marked.max(axis=0)
    assert tuple((low + high) // 2) == (14, 9)  # (row, column) of the marked pixel
    picture = app.map_pictures.frustums[1].image
    assert not (picture[14, 9] == MARKER_COLOR).all()  # the pixel itself stays visible
    assert not (app.map_pictures.frustums[0].image == MARKER_COLOR).all(-1).any()


def test_grid_layout_locates_cells():
    layout = GridLayout(rows=3, columns=2, cell_h=10, cell_w=20, gap=2, title_h=6)
    height, width = layout.shape
    assert (height, width) == (6 + 3 * 12, 2 + 2 * 22)
    assert layout.locate((2 + 22 + 5) / width, (6 + 12 * 2 + 7.5) / height) == pytest.approx(
        (2, 1, 5 / 20, 7.5 / 10)
    )
    assert layout.locate(1 / width, 0.5) is None  # the left gap


def test_maps_follow_run_a_and_b_minus_a_is_a_map_while_b_is_chosen(app):
    """A second run whose final depth is 1.1 times A's (same cameras): B - A (metric) on A's
    pixels is 0.1 d_A, coloured on the symmetric range of its 98th percentile of |value|."""
    from pathlib import Path

    from viewer_scenes import make_prediction, make_scene

    from dsviewer.viewer.gui.state import Partner
    from dsviewer.viewer.session.loaded import run_prediction
    from dsviewer.viewer.session.runs import Run
    from dsviewer.viewer.session.specs import RunSpec

    assert "difference" not in app.map_pictures.available()
    app.inspector_panel.reset()  # no marker over the pictures
    scene = make_scene(V, H, W)
    prediction = make_prediction(scene)
    prediction.final_depth *= 1.1
    b = Run("b", RunSpec(Path("b")), run_prediction(scene, lambda _scene: prediction))
    app.add_run(b)  # B: its B - A is computed on the job thread
    assert app.wait_idle(60)
    assert "difference" in app.map_pictures.available()
    app.colours_panel.residual_unit.value = "metric (final - coarse)"
    app.maps_panel.picture.value = MAPS["difference"].label
    assert app.state.maps.frustum == "difference"
    d_a = app.loaded.layers.final_depth.double().numpy()
    limit = np.percentile(np.abs(0.1 * d_a), 98)
    for view in range(V):
        expected = colormaps.apply_diverging(0.1 * d_a[view], limit)
        assert np.array_equal(app.map_pictures.frustums[view].image, expected)
    # A = the second run: the maps are its own (its final depth on its own range).
    app.maps_panel.picture.value = MAPS["final_depth"].label
    app.set_pair(1, Partner(app.runs[0].name))
    assert app.wait_idle(60) and app.state.run_a is b
    d_b = b.loaded.layers.final_depth.numpy()
    low, high = np.percentile(d_b[np.isfinite(d_b) & (d_b > 0)], [2, 98])
    for view in range(V):
        expected = colormaps.apply_sequential(d_b[view], low, high)
        assert np.array_equal(app.map_pictures.frustums[view].image, expected)
    app.set_pair(0, Partner("b"))
    assert app.wait_idle(60)
    app.maps_panel.picture.value = MAPS["difference"].label
    app.set_pair(0, None)  # no B: B - A is no map any more, the frustums show the photo
    assert "difference" not in app.map_pictures.available()
    assert MAPS["difference"].label not in app.maps_panel.picture.options
    assert app.state.maps.frustum == "photo" and app.maps_panel.picture.value == "Photo"
    assert np.array_equal(app.map_pictures.frustums[0].image, app.loaded.layers.rgb[0].numpy())
    app.remove_run(1)
    app.show_runs(app.runs)
    app.colours_panel.residual_unit.value = "inverse depth"


def test_the_grid_lies_beside_the_scene_and_opening_it_frames_both(app):
    """The grid is right of the scene's framed sphere (no overlap), faces the start camera
    upright, and the framing camera sees the sphere and every grid corner inside its view."""
    from dsviewer.viewer.map_geometry import framing_both, grid_placement

    start = app.loaded.view.start
    grid = grid_placement(start, (358, 824))
    forward = (start.look_at - start.position) / np.linalg.norm(start.look_at - start.position)
    R = grid.T_world_node[:3, :3]
    assert np.allclose(R[:, 2], forward) and np.allclose(R.T @ R, np.eye(3))
    assert R[:, 1] @ start.up < 0  # the grid's rows go down the screen
    distance = np.linalg.norm(start.look_at - start.position)
    radius = distance * np.sin(start.fov / 2) / 1.15  # what the start camera frames
    left_edge = grid.T_world_node[:3, 3] - R[:, 0] * grid.half_w
    assert (left_edge - start.look_at) @ R[:, 0] > radius
    for aspect in (0.8, 1.2, 2.0):
        position, look_at = framing_both(start, grid, aspect)
        assert np.allclose(np.cross(look_at - position, R[:, 2]), 0)  # looks along the view
        corners = [picture_point(grid, s, t) for s in (0, 1) for t in (0, 1)]
        sphere = [start.look_at + sign * radius * axis for sign in (-1, 1) for axis in R.T]
        for point in corners + sphere:
            x, y, z = R.T @ (point - position)  # the framing camera looks along R[:, 2]
            assert z > 0
            assert abs(x / z) <= np.tan(start.fov / 2) * aspect + 1e-9
            assert abs(y / z) <= np.tan(start.fov / 2) + 1e-9

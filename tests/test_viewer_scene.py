"""The viewer's data path on a hand-built plane scene with exact depth (no server, no model).

Layers in the user's frame, the registries of point layers and colour modes (values, ranges,
colours, legends), the point selection and the view parameters, each checked against numbers
recomputed here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from viewer_scenes import PLANE_Z, make_loaded, make_prediction, make_scene, residual_pattern

from dsviewer.geometry.similarity import Similarity
from dsviewer.viewer import colormaps
from dsviewer.viewer.color_modes import (
    COLOR_MODES,
    ColorContext,
    ColorSettings,
    color_mode,
    layer_values,
    legend_image,
    point_colors,
)
from dsviewer.viewer.gui.points import PointFilter, select_points
from dsviewer.viewer.layers import build_layers
from dsviewer.viewer.point_layers import POINT_LAYERS, available_layers
from dsviewer.viewer.scene_nodes import camera_pose
from dsviewer.viewer.view_params import up_direction

V, H, W = 3, 24, 32


@pytest.fixture(scope="module")
def loaded():
    return make_loaded(V, H, W)


def _saturation(colors: np.ndarray) -> np.ndarray:
    """How far a colour is from the diverging map's neutral centre (RGB distance)."""
    return np.linalg.norm(colors.astype(np.float64) - np.array(colormaps.CENTER_COLOR), axis=-1)


def test_gt_and_final_points_lie_on_the_true_plane(loaded):
    # GT depth and the final depth are exact: every unprojected point has world z = PLANE_Z.
    for layer in ("gt", "final", "centers"):
        flat = loaded.flat(layer)
        assert np.abs(flat.points[..., 2] - PLANE_Z).max() < 1e-5 * PLANE_Z, layer
    # The coarse depth is off by the known residual, so its points leave the plane (by > 1 mm).
    assert np.abs(loaded.flat("coarse").points[..., 2] - PLANE_Z).max() > 1e-3
    # every layer but the SfM points, which only captures with SfM points have
    assert available_layers(loaded.layers) == [key for key in POINT_LAYERS if key != "sfm"]


def test_gaussian_centre_depth_is_camera_z(loaded):
    # Centres are the final points, so their depth in their own camera equals the final depth.
    np.testing.assert_allclose(loaded.flat("centers").depth, loaded.flat("final").depth, rtol=1e-5)


def test_layers_move_every_quantity_to_the_user_frame():
    """A similarity (scale 2.5, a rotation, a shift): points, depths, inverse depths, cameras,
    cost-volume candidates and Gaussians all move; nothing stays in model units."""
    scene = make_scene(V, H, W)
    prediction = make_prediction(scene)
    model = build_layers(scene, prediction)
    angle = 0.6
    c, s = np.cos(angle), np.sin(angle)
    R = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64)
    sim = Similarity(2.5, R, torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    user = build_layers(dataclasses.replace(scene, world_from_model=sim), prediction)

    def moved(p):
        return (p.double() @ (2.5 * R).T + sim.translation).float()

    for name in ("final_points", "coarse_points", "gt_points"):
        torch.testing.assert_close(getattr(user, name), moved(getattr(model, name)), atol=2e-5,
                                   rtol=1e-5)  # fmt: skip
    for name in ("final_depth", "coarse_depth", "gt_depth", "residual_metric"):
        torch.testing.assert_close(getattr(user, name), 2.5 * getattr(model, name))
    torch.testing.assert_close(user.residual_inv, model.residual_inv / 2.5)
    torch.testing.assert_close(user.cost_volume.candidate_inv_depth,
                               model.cost_volume.candidate_inv_depth / 2.5)  # fmt: skip
    torch.testing.assert_close(user.context.near, 2.5 * model.context.near)
    T_model, T_user = model.context.T_world_cam, user.context.T_world_cam
    torch.testing.assert_close(T_user[:, :3, :3], R @ T_model[:, :3, :3])  # rigid, turned
    torch.testing.assert_close(T_user[:, :3, 3], moved(T_model[:, :3, 3]).double(), atol=1e-5,
                               rtol=0)  # fmt: skip
    torch.testing.assert_close(user.gaussians.means, moved(model.gaussians.means[0])[None],
                               atol=2e-5, rtol=1e-5)  # fmt: skip
    torch.testing.assert_close(
        user.gaussians.covariances, 6.25 * (R.float() @ model.gaussians.covariances @ R.float().T)
    )
    # Relative quantities do not change.
    torch.testing.assert_close(user.confidence, model.confidence)


def test_residual_values_are_the_known_pattern(loaded):
    context = ColorContext(loaded.layers, None)
    expected = residual_pattern(V, H, W).numpy()
    np.testing.assert_allclose(layer_values(context, "residual", "coarse"), expected, atol=1e-7)
    metric = ColorContext(loaded.layers, None, ColorSettings(residual_unit="metric"))
    final, coarse = loaded.layers.final_depth.numpy(), loaded.layers.coarse_depth.numpy()
    np.testing.assert_allclose(layer_values(metric, "residual", "final"), final - coarse, atol=1e-6)
    # r > 0 adds inverse depth: final nearer than coarse, metric residual negative.
    assert (layer_values(metric, "residual", "final")[expected > 1e-6] < 0).all()


def test_residual_colours_follow_sign_and_size(loaded):
    context = ColorContext(loaded.layers, None, ColorSettings(percentile=98.0))
    r = residual_pattern(V, H, W).numpy().reshape(V, -1)
    limit = np.percentile(np.abs(r), 98.0)
    assert color_mode("residual").value_range(context)[1] == pytest.approx(limit, rel=1e-6)
    strongest = []
    for v in range(V):
        colors = point_colors(context, "residual", "final", v, np.arange(H * W))
        rv = r[v]
        red, blue = colors[:, 0].astype(int), colors[:, 2].astype(int)
        assert (red[rv > 0.02 * limit] > blue[rv > 0.02 * limit]).all()
        assert (blue[rv < -0.02 * limit] > red[rv < -0.02 * limit]).all()
        for side in (rv > 0, rv < 0):  # larger |r| on the same side: at least as saturated
            order = np.argsort(np.abs(rv[side]), kind="stable")
            sat = _saturation(colors[side][order])
            assert (np.diff(sat) >= 0).all()
        strongest.append(sat[-1])
    # One global range: views with larger residuals are more saturated, the largest strongly.
    assert strongest[0] < strongest[1] < strongest[2] and strongest[2] > 150
    colors = colormaps.apply_diverging(np.array([0.0, 1e-9, -1e-9, 5.0, -5.0]), 1.0)
    assert (colors[:3] == np.array(colormaps.CENTER_COLOR)).all()
    assert tuple(colors[3]) == tuple(colormaps.lut("diverging")[-1])
    assert tuple(colors[4]) == tuple(colormaps.lut("diverging")[0])
    x = np.linspace(0, 1, 101)[1:]  # +x and -x land on mirror entries
    np.testing.assert_array_equal(
        colormaps.diverging_index(x, 1.0) + colormaps.diverging_index(-x, 1.0), 255
    )


def test_sequential_map_is_monotonic_in_lightness():
    lut = colormaps.lut("sequential").astype(np.float64)
    luma = lut @ np.array([0.2126, 0.7152, 0.0722])
    assert (np.diff(luma) >= 0).all() and luma[-1] - luma[0] > 150
    colors = colormaps.apply_sequential(np.array([-1.0, 0.0, 10.0, 20.0]), 0.0, 10.0)
    assert tuple(colors[0]) == tuple(colors[1]) == tuple(lut[0].astype(np.uint8))
    assert tuple(colors[2]) == tuple(colors[3]) == tuple(lut[-1].astype(np.uint8))


def test_image_colours_and_gaussian_dc(loaded):
    context = ColorContext(loaded.layers, None)
    pixels = np.array([0, 5, H * W - 1])
    rgb = point_colors(context, "rgb", "final", 1, pixels)
    image = loaded.scene.context.image[1].permute(1, 2, 0).reshape(-1, 3).numpy()
    np.testing.assert_array_equal(rgb, np.floor(image[pixels] * 255 + 0.5).astype(np.uint8))
    # SH DC (1, 0, -1) -> 0.5 + C0 * dc -> (199, 128, 56).
    assert (point_colors(context, "rgb", "centers", 0, pixels) == np.array([199, 128, 56])).all()


def test_view_and_layer_modes_are_categorical(loaded):
    context = ColorContext(loaded.layers, None)
    palette = colormaps.CATEGORY_COLORS
    for v in range(V):
        colors = point_colors(context, "view", "coarse", v, np.arange(H * W))
        assert (colors == np.array(palette[v], np.uint8)).all()
    for key, layer in POINT_LAYERS.items():
        if key != "residual":  # the residual layer always shows the residual
            assert (point_colors(context, "layer", key, 0, np.arange(4)) == layer.color).all()
    labels = [c.label for c in color_mode("view").categories(context)]
    assert labels == [f"view {v} (frame {10 * v})" for v in range(V)]
    # The legend lists only colours that can appear: the residual layer keeps its own mode.
    layer_labels = [c.label for c in color_mode("layer").categories(context)]
    assert layer_labels == [layer.label for key, layer in POINT_LAYERS.items() if key != "residual"]


def test_grey_is_explained_in_every_legend_that_uses_it(loaded):
    """Modes computed by the analysis leave GT and Gaussian centres grey: their legends say so;
    B - A without a run B says what to do instead of drawing a made-up range."""
    from dsviewer.viewer.analysis import analyze
    from dsviewer.viewer.color_modes import grey_meaning

    context = ColorContext(loaded.layers, analyze(loaded.layers))
    for key in ("clamp", "depth_edge", "flying_pixel", "consistency", "inconsistent"):
        assert point_colors(context, key, "gt", 0, np.arange(4)).tolist() == [
            list(colormaps.NO_DATA_COLOR)] * 4  # fmt: skip
        assert ("not analysed: Ground truth, SfM points, Gaussian centres"
                in grey_meaning(color_mode(key)))
        if color_mode(key).legend == "categorical":
            image = legend_image(context, key).reshape(-1, 3)
            assert (image == np.array(colormaps.NO_DATA_COLOR)).all(-1).any(), key
    assert grey_meaning(color_mode("depth")) is None
    no_b = legend_image(context, "difference")
    assert np.array_equal(no_b, colormaps.text_image("choose run B (or gt) in the Runs folder"))


def test_gt_error_is_relative_and_per_layer(loaded):
    context = ColorContext(loaded.layers, None)
    gt = loaded.layers.gt_depth.numpy()
    np.testing.assert_allclose(layer_values(context, "gt_error", "final"), 0.0, atol=1e-6)
    coarse = loaded.layers.coarse_depth.numpy()
    np.testing.assert_allclose(
        layer_values(context, "gt_error", "coarse"), (coarse - gt) / gt, rtol=1e-5
    )
    colors = point_colors(context, "gt_error", "final", 0, np.arange(H * W))
    assert (colors == np.array(colormaps.CENTER_COLOR, np.uint8)).all()  # exact depth: centre


def test_every_mode_has_a_legend(loaded):
    from dsviewer.viewer.analysis import analyze

    for analysis in (None, analyze(loaded.layers)):
        context = ColorContext(loaded.layers, analysis)
        for key, mode in COLOR_MODES.items():
            image = legend_image(context, key)
            assert image.dtype == np.uint8 and image.shape[1] == 320 and image.shape[2] == 3
            # Categorical legends draw each category's swatch colour.
            if mode.legend == "categorical" and (analysis is not None or not mode.needs_analysis):
                for category in mode.categories(context):
                    assert (image.reshape(-1, 3) == np.array(category.color)).all(-1).any(), key


def test_point_selection_filters_and_budget(loaded):
    flat = loaded.flat("final")
    confidence = loaded.layers.confidence.reshape(V, -1).numpy()
    rank = np.random.default_rng(0).permutation(H * W)
    everything = PointFilter(budget_per_view=10**9)
    assert len(select_points(flat, confidence, rank, 0, everything)) == H * W
    budget = 100
    random_pick = select_points(flat, confidence, rank, 0, PointFilter(budget_per_view=budget))
    assert len(random_pick) == budget
    np.testing.assert_array_equal(random_pick, np.sort(np.argsort(rank)[:budget]))
    stride = select_points(
        flat, confidence, rank, 0, PointFilter(budget_per_view=budget, subsample="stride")
    )
    np.testing.assert_array_equal(stride, np.arange(0, H * W, int(np.ceil(H * W / budget))))
    threshold = float(np.percentile(confidence, 50.0))
    filt = PointFilter(
        min_confidence=threshold, depth_low=3.9, depth_high=4.1, budget_per_view=10**9
    )
    kept = select_points(flat, confidence, rank, 2, filt)
    d, c = flat.depth[2], confidence[2]
    np.testing.assert_array_equal(kept, np.flatnonzero((c >= threshold) & (d >= 3.9) & (d <= 4.1)))
    assert 0 < len(kept) < H * W


def test_camera_pose_and_up(loaded):
    from dsviewer.geometry.transforms import quaternion_wxyz_to_matrix

    T = loaded.layers.context.T_world_cam[1].numpy()
    wxyz, position = camera_pose(T)
    R = quaternion_wxyz_to_matrix(torch.as_tensor(wxyz)).numpy()
    np.testing.assert_allclose(R, T[:3, :3], atol=1e-6)
    np.testing.assert_allclose(position, T[:3, 3])
    # 'Up' is the mean of the cameras' -Y axes: the cameras here are pitched slightly, Y down.
    assert up_direction(loaded.layers.context.T_world_cam.numpy())[1] < -0.99


def test_start_camera_frames_points_and_cameras(loaded):
    view = loaded.view
    start = view.start
    direction = start.look_at - start.position
    direction /= np.linalg.norm(direction)
    framed = np.vstack([loaded.flat("final").points.reshape(-1, 3),
                        loaded.layers.context.centers.numpy()])  # fmt: skip
    offsets = framed - start.position
    along = offsets @ direction
    assert (along > 0).all()  # everything in front of the camera
    angles = np.arccos(np.clip(along / np.linalg.norm(offsets, axis=1), -1, 1))
    assert angles.max() < 0.5 * start.fov  # inside the vertical field of view
    assert direction @ view.up < 0  # looking down onto the scene
    fx_px = 1.1 * W  # make_views: fx = 1.1 (normalized)
    assert view.pixel_footprint == pytest.approx(np.median(loaded.flat("final").depth) / fx_px)


def test_colorbar_legend_shows_the_ramp():
    image = colormaps.colorbar_image("diverging", -0.5, 0.5, "residual")
    assert image.shape == (64, 320, 3) and image.dtype == np.uint8
    caption = ("1/depth B - 1/depth A (+ red: B nearer) "
               "(grey: not compared / unseen by the other run)")
    wrapped = colormaps.colorbar_image("diverging", -0.5, 0.5, caption)
    assert wrapped.shape == (64 + colormaps.LINE_HEIGHT, 320, 3)  # two caption lines, none cut
    assert (wrapped[:, :3] == colormaps.LEGEND_BACKGROUND).all()  # nothing runs off the left
    row = image[15]  # inside the ramp
    assert row[12, 2] > row[12, 0] and row[-12, 0] > row[-12, 2]  # blue left, red right
    assert (image[40:] > 150).any()  # the tick labels are drawn (light text on dark)

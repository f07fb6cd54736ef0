"""Viewer data path on a hand-built plane scene with exact depth (no server, no model).

Checks geometry (unprojected points on the true plane), residual colours (sign -> side of the
diverging map, |r| -> saturation, 0 -> centre colour), statistics against numbers recomputed here,
and the point selection (filters, budget, subsampling).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from viewer_scenes import PLANE_Z, make_loaded, residual_pattern

from viewer import colormaps
from viewer import scene as nodes
from viewer.gui import view_statistics

V, H, W = 3, 24, 32


@pytest.fixture(scope="module")
def loaded():
    return make_loaded(V, H, W)


@pytest.fixture(scope="module")
def arrays(loaded):
    return nodes.arrays_from_layers(loaded.layers, loaded.scene.context.extrinsics.numpy())


def _saturation(colors: np.ndarray) -> np.ndarray:
    """How far a colour is from the diverging map's neutral centre (RGB distance)."""
    return np.linalg.norm(colors.astype(np.float64) - np.array(colormaps.CENTER_COLOR), axis=-1)


def test_gt_and_final_points_lie_on_the_true_plane(arrays):
    # GT depth and the final depth are exact: every unprojected point has world z = PLANE_Z.
    for layer in ("gt", "final", "centers"):
        z = arrays.points[layer][..., 2]
        assert np.abs(z - PLANE_Z).max() < 1e-5 * PLANE_Z, layer
    # The coarse depth is off by the known residual, so its points leave the plane (by > 1 mm).
    coarse_off = np.abs(arrays.points["coarse"][..., 2] - PLANE_Z)
    assert coarse_off.max() > 1e-3


def test_gaussian_centre_depth_is_camera_z(arrays):
    # Centres are the final points, so their depth in their own camera equals the final depth.
    np.testing.assert_allclose(arrays.depth["centers"], arrays.depth["final"], rtol=1e-5)


def test_residual_arrays_are_the_known_pattern(arrays):
    expected = residual_pattern(V, H, W).numpy().reshape(V, H * W)
    np.testing.assert_allclose(arrays.residual["inverse"], expected, atol=1e-7)
    metric = arrays.depth["final"] - arrays.depth["coarse"]
    np.testing.assert_allclose(arrays.residual["metric"], metric, atol=1e-6)
    # r > 0 adds inverse depth: final nearer than coarse, metric residual negative.
    positive = expected > 1e-6
    assert (arrays.residual["metric"][positive] < 0).all()


def test_residual_colours_follow_sign_and_size(arrays):
    ranges = nodes.color_ranges(arrays, "inverse", percentile=98.0)
    r = arrays.residual["inverse"]
    limit = np.percentile(np.abs(r), 98.0)
    assert ranges.residual_limit == pytest.approx(limit, rel=1e-6)
    strongest = []
    for v in range(V):
        idx = np.arange(H * W)
        colors = nodes.point_colors(arrays, "residual", "rgb", v, idx, ranges, "inverse")
        rv = r[v]
        red, blue = colors[:, 0].astype(int), colors[:, 2].astype(int)
        assert (red[rv > 0.02 * limit] > blue[rv > 0.02 * limit]).all()
        assert (blue[rv < -0.02 * limit] > red[rv < -0.02 * limit]).all()
        # Larger |r| on the same side -> at least as saturated.
        for side in (rv > 0, rv < 0):
            order = np.argsort(np.abs(rv[side]), kind="stable")
            sat = _saturation(colors[side][order])
            assert (np.diff(sat) >= 0).all()
        strongest.append(sat[-1])
    # One global range: views with larger residuals are more saturated, the largest strongly.
    assert strongest[0] < strongest[1] < strongest[2] and strongest[2] > 150
    # Zero is exactly the centre colour; clipped extremes are the ends of the map.
    colors = colormaps.apply_diverging(np.array([0.0, 1e-9, -1e-9, 5.0, -5.0]), 1.0)
    assert (colors[:3] == np.array(colormaps.CENTER_COLOR)).all()
    assert tuple(colors[3]) == tuple(colormaps.lut("diverging")[-1])
    assert tuple(colors[4]) == tuple(colormaps.lut("diverging")[0])
    # +x and -x (x != 0) land on mirror entries of the table.
    x = np.linspace(0, 1, 101)[1:]
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


def test_rgb_and_gaussian_colours(loaded, arrays):
    idx = np.array([0, 5, H * W - 1])
    ranges = nodes.color_ranges(arrays, "inverse")
    rgb = nodes.point_colors(arrays, "final", "rgb", 1, idx, ranges, "inverse")
    image = loaded.scene.context.image[1].permute(1, 2, 0).reshape(-1, 3).numpy()
    np.testing.assert_array_equal(rgb, np.floor(image[idx] * 255 + 0.5).astype(np.uint8))
    # SH DC (1, 0, -1) -> 0.5 + C0 * dc -> (199, 128, 56).
    g = nodes.point_colors(arrays, "centers", "rgb", 0, idx, ranges, "inverse")
    assert (g == np.array([199, 128, 56], np.uint8)).all()


def test_gt_error_colours_use_the_gt(arrays):
    ranges = nodes.color_ranges(arrays, "inverse")
    idx = np.arange(H * W)
    # The final depth is exact: error 0 -> centre colour everywhere.
    final = nodes.point_colors(arrays, "final", "gt_error", 0, idx, ranges, "inverse")
    assert (final == np.array(colormaps.CENTER_COLOR, np.uint8)).all()
    coarse = nodes.point_colors(arrays, "coarse", "gt_error", 0, idx, ranges, "inverse")
    error = arrays.depth["coarse"][0] - arrays.gt_depth[0]
    assert (coarse[error > 0.05 * ranges.gt_error_limit, 0] > 200).all()  # too far: red side


def test_statistics_match_recomputed_numbers(loaded, arrays):
    stats = view_statistics(arrays, "inverse")
    residual = residual_pattern(V, H, W).numpy()
    prob = loaded.prediction.match_prob.numpy()  # [V, h, w], exact 4x nearest upsampling
    final = loaded.prediction.final_depth.numpy()
    coarse = 1.0 / loaded.prediction.coarse_inv_depth.double().numpy()
    gt = loaded.scene.context.depth.double().numpy()
    for v, s in enumerate(stats):
        assert s.residual_mean == pytest.approx(residual[v].mean(), abs=1e-9)
        assert s.residual_median == pytest.approx(np.median(residual[v]), abs=1e-9)
        assert s.residual_positive_share == pytest.approx((residual[v] > 0).mean())
        assert s.residual_positive_share == pytest.approx(0.5)  # W even, antisymmetric pattern
        assert s.confidence_mean == pytest.approx(prob[v].mean(), rel=1e-6)
        assert s.final_depth_min == pytest.approx(final[v].min(), rel=1e-6)
        assert s.final_depth_max == pytest.approx(final[v].max(), rel=1e-6)
        assert s.coarse_depth_mean == pytest.approx(coarse[v].mean(), rel=1e-5)
        assert s.gt_abs_rel_final == pytest.approx(0.0, abs=1e-6)
        assert s.gt_abs_rel_coarse == pytest.approx(
            np.mean(np.abs(coarse[v] - gt[v]) / gt[v]), rel=1e-4
        )
    metric = view_statistics(arrays, "metric")
    assert metric[0].residual_mean == pytest.approx((final[0] - coarse[0]).mean(), rel=1e-4)


def test_point_selection_filters_and_budget(arrays):
    everything = nodes.PointFilter(budget_per_view=10**9)
    assert len(nodes.select_points(arrays, "final", 0, everything)) == H * W
    # Budget: random keeps exactly `budget` points, reproducibly; stride keeps every k-th.
    budget = 100
    random_pick = nodes.select_points(arrays, "final", 0, nodes.PointFilter(budget_per_view=budget))
    again = nodes.select_points(arrays, "final", 0, nodes.PointFilter(budget_per_view=budget))
    assert len(random_pick) == budget and (random_pick == again).all()
    stride = nodes.select_points(
        arrays, "final", 0, nodes.PointFilter(budget_per_view=budget, subsample="stride")
    )
    step = int(np.ceil(H * W / budget))
    np.testing.assert_array_equal(stride, np.arange(0, H * W, step))
    # Confidence and depth filters keep exactly the pixels that pass.
    threshold = nodes.confidence_threshold(arrays, 50.0)
    low, high = 3.9, 4.1
    filt = nodes.PointFilter(min_confidence=threshold, depth_low=low, depth_high=high,
                             budget_per_view=10**9)  # fmt: skip
    kept = nodes.select_points(arrays, "final", 2, filt)
    d, c = arrays.depth["final"][2], arrays.confidence[2]
    expected = np.flatnonzero((c >= threshold) & (d >= low) & (d <= high))
    np.testing.assert_array_equal(kept, expected)
    assert 0 < len(kept) < H * W


def test_camera_pose_matches_extrinsics(loaded):
    from src.geometry.transforms import quaternion_wxyz_to_matrix

    T = loaded.scene.context.extrinsics[1].double().numpy()
    wxyz, position = nodes.camera_pose(T)
    R = quaternion_wxyz_to_matrix(torch.as_tensor(wxyz)).numpy()
    np.testing.assert_allclose(R, T[:3, :3], atol=1e-6)
    np.testing.assert_allclose(position, T[:3, 3])
    # 'Up' is the mean of the cameras' -Y axes: the cameras here are pitched slightly, Y down.
    up = nodes.up_direction(loaded.scene.context.extrinsics.numpy())
    assert up[1] < -0.99


def test_colorbar_legend_shows_the_ramp():
    image = colormaps.colorbar_image("diverging", -0.5, 0.5, "residual")
    assert image.shape == (64, 320, 3) and image.dtype == np.uint8
    row = image[5 + 10]  # inside the ramp
    assert row[12, 2] > row[12, 0]  # blue end on the left
    assert row[-12, 0] > row[-12, 2]  # red end on the right
    assert (image[40:] < 100).any()  # the tick labels are drawn (dark text)


def test_statistics_in_user_units(arrays):
    # world_from_model with scale 2: depths and metric residuals double, inverse ones halve.
    base_metric, scaled_metric = (view_statistics(arrays, "metric", k)[1] for k in (1.0, 2.0))
    assert scaled_metric.final_depth_mean == pytest.approx(2 * base_metric.final_depth_mean)
    assert scaled_metric.residual_mean == pytest.approx(2 * base_metric.residual_mean)
    assert scaled_metric.gt_abs_rel_coarse == pytest.approx(base_metric.gt_abs_rel_coarse)
    import dataclasses

    shifted = dataclasses.replace(
        arrays, residual={**arrays.residual, "inverse": arrays.residual["inverse"] + 0.001}
    )  # a non-zero mean, so the scaling shows
    base_inv, scaled_inv = (view_statistics(shifted, "inverse", k)[2] for k in (1.0, 2.0))
    assert base_inv.residual_mean == pytest.approx(0.001, rel=1e-3)
    assert scaled_inv.residual_mean == pytest.approx(0.0005, rel=1e-3)

"""Analyses and the pixel inspector on a hand-built tilted-plane scene (exact expectations).

About 5-10 s on 2 cores. Expected values are recomputed here with float64 numpy from the plane's
geometry (``tests/analysis_scenes.py``), independently of ``src/geometry`` and ``viewer/``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from analysis_scenes import (
    CLAMP_FAR_PIXEL,
    CLAMP_NEAR_PIXEL,
    FEATURE_DOWNSCALE,
    GT_HOLE,
    HEIGHT,
    PLANE_NORMAL,
    PLANE_OFFSET,
    WIDTH,
    build_case,
    depth_points,
)

from dsviewer.viewer.analysis import AnalysisSettings, analyze
from dsviewer.viewer.analysis.consistency import multiview_consistency
from dsviewer.viewer.analysis.flags import clamp_masks, depth_edges
from dsviewer.viewer.analysis.gaussians import (
    gaussian_colors,
    gaussian_keep_mask,
    gaussian_scalar,
    largest_eigenvalue,
)
from dsviewer.viewer.analysis.metrics import gt_metrics, histogram
from dsviewer.viewer.analysis.residual_vectors import residual_segments
from dsviewer.viewer.color_modes import ColorContext, layer_values
from dsviewer.viewer.inspector import PixelOutOfRangeError, inspect_pixel, probability_series
from dsviewer.viewer.layers import build_layers


@pytest.fixture(scope="module")
def exact():
    case = build_case((1.0, 1.0, 1.0))
    return case, build_layers(case.scene, case.prediction)


@pytest.fixture(scope="module")
def biased():
    """View 1's final depth scaled by 1.1; two clamped pixels in view 2."""
    case = build_case((1.0, 1.1, 1.0), clamp_pixels=True)
    return case, build_layers(case.scene, case.prediction)


def _cameras(case):
    return case.scene.context.intrinsics, case.scene.context.extrinsics


def test_consistency_is_zero_on_exact_depth(exact):
    case, layers = exact
    K, T = _cameras(case)
    pairs = ((layers.gt_points, layers.gt_depth), (layers.final_points, layers.final_depth))
    for points, depth in pairs:
        result = multiview_consistency(points, depth, K, T, threshold=0.01)
        checked = result.checked
        assert checked.float().mean() > 0.6  # the views overlap over most of the image
        assert float(result.rel_error[checked].max()) < 2e-5
        assert not result.inconsistent.any()
    # GT holes are neither checked nor used for lookups.
    gt_result = multiview_consistency(layers.gt_points, layers.gt_depth, K, T)
    assert not gt_result.checked[GT_HOLE].any()


def _expected_pair_error(case, layers, src: int, dst: int):
    """Relative error of src's final points against dst's plane depth, numpy float64.

    Returns ``(error [H, W], seen [H, W])``; valid when dst's depth is the exact plane.
    """
    K, T = case.K, case.T
    points = depth_points(layers.final_depth[src].double().numpy(), K[src], T[src])  # [H, W, 3]
    R, C = T[dst][:3, :3], T[dst][:3, 3]
    cam = (points - C) @ R  # R^T (p - C)
    z = cam[..., 2]
    x = K[dst][0, 0] * cam[..., 0] / z + K[dst][0, 2]
    y = K[dst][1, 1] * cam[..., 1] / z + K[dst][1, 2]
    ray = np.stack(((x - K[dst][0, 2]) / K[dst][0, 0], (y - K[dst][1, 2]) / K[dst][1, 1],
                    np.ones_like(x)), axis=-1)  # fmt: skip
    z_plane = (PLANE_OFFSET - PLANE_NORMAL @ C) / ((ray @ R.T) @ PLANE_NORMAL)
    inside = (x * WIDTH >= 0.5) & (x * WIDTH <= WIDTH - 0.5)
    inside &= (y * HEIGHT >= 0.5) & (y * HEIGHT <= HEIGHT - 0.5) & (z > 0)
    return np.abs(z - z_plane) / z_plane, inside


def test_consistency_grows_with_injected_depth_bias(biased):
    case, layers = biased
    K, T = _cameras(case)
    result = multiview_consistency(layers.final_points, layers.final_depth, K, T, threshold=0.05)
    pair = result.pair_rel_error.numpy()
    # View 0 is exact, view 1 is 1.1x too far: |d - 1.1 d| / (1.1 d) = 1/11 wherever they overlap.
    seen_01 = np.isfinite(pair[0, 1])
    assert seen_01.mean() > 0.6
    np.testing.assert_allclose(pair[0, 1][seen_01], 1.0 / 11.0, rtol=1e-4)
    # View 1's points against view 0's exact plane: recomputed by ray-plane intersection.
    expected, inside = _expected_pair_error(case, layers, src=1, dst=0)
    seen_10 = np.isfinite(pair[1, 0])
    assert (seen_10 == inside).mean() > 0.98  # boundary pixels may differ by float rounding
    both = seen_10 & inside
    np.testing.assert_allclose(pair[1, 0][both], expected[both], rtol=1e-4, atol=1e-6)
    assert 0.08 < expected[both].mean() < 0.12
    # Views 0 and 2 agree except next to view 2's two clamped pixels.
    seen_02 = np.isfinite(pair[0, 2])
    assert np.median(pair[0, 2][seen_02]) < 1e-5
    # The per-pixel error is the mean over the other views; view 1 disagrees with both others.
    rel = result.rel_error.numpy()
    both_others = np.isfinite(pair[0, 1]) & np.isfinite(pair[0, 2])
    np.testing.assert_allclose(rel[0][both_others],
                               0.5 * (pair[0, 1] + pair[0, 2])[both_others], rtol=1e-6)  # fmt: skip
    inconsistent = result.inconsistent.numpy()
    assert inconsistent[1][result.checked[1].numpy()].all()
    assert result.summary()["per_view"][1]["inconsistent_share"] == 1.0
    assert result.summary()["pairs"]["0->1"]["inconsistent_share"] == 1.0


def test_clamp_masks_find_exactly_the_clamped_pixels(biased):
    _, layers = biased
    at_near, at_far = clamp_masks(
        layers.final_depth, layers.context.near, layers.context.far, rtol=1e-5
    )
    assert at_far.sum() == 1 and bool(at_far[CLAMP_FAR_PIXEL])
    assert at_near.sum() == 1 and bool(at_near[CLAMP_NEAR_PIXEL])


def test_depth_edges_and_flying_pixels():
    depth = torch.full((1, 5, 7), 2.0)
    depth[0, :, 4:] = 4.0  # a step between columns 3 and 4
    depth[0, 2, 3] = 3.0  # a pixel between the two sides: flying
    edge, flying = depth_edges(depth, threshold=0.1)
    expected_edge = torch.zeros(1, 5, 7, dtype=torch.bool)
    expected_edge[0, :, 3:5] = True  # both sides of the step
    expected_edge[0, 2, 2] = True  # the flying pixel's left neighbour now jumps too
    assert torch.equal(edge, expected_edge)
    expected_flying = torch.zeros(1, 5, 7, dtype=torch.bool)
    expected_flying[0, 2, 3] = True
    assert torch.equal(flying, expected_flying)
    # Smooth slopes below the threshold are no edges.
    slope = torch.linspace(2.0, 2.5, 7).expand(1, 5, 7)
    assert not depth_edges(slope, threshold=0.1)[0].any()


def _numpy_metrics(depth: np.ndarray, gt: np.ndarray) -> tuple[float, float, float, int]:
    mask = gt > 0
    d, g = depth[mask].astype(np.float64), gt[mask].astype(np.float64)
    abs_rel = np.mean(np.abs(d - g) / g)
    rmse = np.sqrt(np.mean((d - g) ** 2))
    delta = np.mean(np.maximum(d / g, g / d) < 1.25)
    return abs_rel, rmse, delta, int(mask.sum())


def test_gt_metrics_match_numpy(biased):
    _, layers = biased
    gt = layers.gt_depth.numpy()
    for depth in (layers.final_depth, layers.coarse_depth):
        metrics = gt_metrics(depth, layers.gt_depth)
        d = depth.numpy()
        abs_rel, rmse, delta, count = _numpy_metrics(d, gt)
        overall = metrics["overall"]
        assert overall["pixels"] == count == 3 * HEIGHT * WIDTH - 4 * 5
        assert overall["abs_rel"] == pytest.approx(abs_rel, rel=1e-9)
        assert overall["rmse"] == pytest.approx(rmse, rel=1e-9)
        assert overall["delta"] == pytest.approx(delta, rel=1e-12)
        for view in range(3):
            abs_rel, rmse, delta, count = _numpy_metrics(d[view], gt[view])
            assert metrics["per_view"][view]["abs_rel"] == pytest.approx(abs_rel, rel=1e-9)
            assert metrics["per_view"][view]["rmse"] == pytest.approx(rmse, rel=1e-9)
            assert metrics["per_view"][view]["delta"] == pytest.approx(delta, rel=1e-12)
    # View 1's final depth is 1.1x: AbsRel 0.1, delta 1; view 2's two clamped pixels fail delta.
    final = gt_metrics(layers.final_depth, layers.gt_depth)["per_view"]
    assert final[1]["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    assert final[1]["delta"] == 1.0
    assert final[2]["delta"] == pytest.approx(1.0 - 2.0 / (HEIGHT * WIDTH))


def test_analyze_summary_and_color_modes(biased):
    _, layers = biased
    analysis = analyze(layers, AnalysisSettings(consistency_threshold=0.05))
    summary = json.loads(json.dumps(analysis.summary()))  # JSON-ready
    assert summary["clamp"]["per_view_final_at_far_share"] == [0.0, 0.0, 1.0 / (HEIGHT * WIDTH)]
    assert summary["consistency"]["final"]["threshold"] == 0.05
    assert summary["gt"]["final"]["per_view"][1]["abs_rel"] == pytest.approx(0.1, rel=1e-5)
    residual = layers.residual_metric.double()
    assert summary["residual"]["metric"]["mean"] == pytest.approx(float(residual.mean()), rel=1e-9)
    context = ColorContext(layers, analysis)
    for mode in ("consistency", "inconsistent", "clamp", "flying_pixel", "gt_error", "view"):
        for layer in ("coarse", "final", "residual"):
            assert layer_values(context, mode, layer).shape == (3, HEIGHT, WIDTH)
    clamp = layer_values(context, "clamp", "final")  # codes: 0 near, 1 none, 2 far
    assert clamp[CLAMP_FAR_PIXEL] == 2 and clamp[CLAMP_NEAR_PIXEL] == 0
    assert (clamp == 1).sum() == clamp.size - 2
    assert layer_values(context, "clamp", "gt") is None  # GT is not analysed
    gt_error = layer_values(context, "gt_error", "final")
    assert np.isnan(gt_error[GT_HOLE]).all()
    np.testing.assert_allclose(gt_error[1], 0.1, rtol=1e-4)
    np.testing.assert_array_equal(gt_error, analysis.layers["final"].gt_error.numpy())
    # Without the analysis, its modes have no values yet (drawn grey); the others do.
    waiting = ColorContext(layers, None)
    assert layer_values(waiting, "consistency", "final") is None
    assert layer_values(waiting, "gt_error", "coarse") is not None


def test_residual_segments_join_coarse_and_final_points(biased):
    _, layers = biased
    segments = residual_segments(layers, stride=4, max_segments=10_000)
    assert segments.points.shape == (3 * (HEIGHT // 4) * (WIDTH // 4), 2, 3)
    assert segments.colors.shape == segments.points.shape and segments.colors.dtype == np.uint8
    assert set(np.unique(segments.u)) == set(range(2, WIDTH, 4))
    view, v, u = segments.view, segments.v, segments.u
    np.testing.assert_array_equal(segments.points[:, 0], layers.coarse_points[view, v, u].numpy())
    np.testing.assert_array_equal(segments.points[:, 1], layers.final_points[view, v, u].numpy())
    toward = layers.residual_metric[view, v, u].numpy() < 0
    assert toward.any() and (~toward).any()
    assert (segments.colors[toward] == np.array([33, 102, 172], np.uint8)).all()
    assert (segments.colors[~toward] == np.array([178, 24, 43], np.uint8)).all()
    assert len(residual_segments(layers, stride=1, max_segments=100).view) == 100


def test_gaussian_scale_and_opacity(exact):
    _, layers = exact
    gaussians = layers.gaussians
    # World covariance = R (R_c S^2 R_c^T) R^T: its largest std is the largest linear scale.
    scale = gaussian_scalar(gaussians, "scale")
    np.testing.assert_allclose(scale.numpy(), gaussians.scales[0].max(-1).values.numpy(), rtol=1e-4)
    opacity = gaussian_scalar(gaussians, "opacity")
    assert torch.equal(opacity, gaussians.opacities[0])
    colors = gaussian_colors(gaussians, "opacity")
    assert colors.shape == (len(opacity), 3) and colors.dtype == np.uint8
    darkest, brightest = int(opacity.argmin()), int(opacity.argmax())  # viridis: dark -> bright
    assert colors[darkest].astype(int).sum() < colors[brightest].astype(int).sum()
    keep = gaussian_keep_mask(gaussians, 0.5)
    assert int(keep.sum()) == int((gaussians.opacities[0].numpy() >= 0.5).sum()) > 0


def test_closed_form_largest_eigenvalue_equals_lapack_on_every_kind_of_covariance():
    generator = torch.Generator().manual_seed(0)
    A = torch.randn(5000, 3, 3, dtype=torch.float64, generator=generator)
    exponent = torch.empty(5000, 1, 1, dtype=torch.float64).uniform_(-8, 2, generator=generator)
    spread = 10.0**exponent
    covariances = spread * (A @ A.transpose(-1, -2))
    special = [
        torch.eye(3, dtype=torch.float64) * 2.0,  # isotropic: p = 0
        torch.diag(torch.tensor([1.0, 1.0, 3.0], dtype=torch.float64)),  # two equal, one larger
        torch.diag(torch.tensor([4.0, 4.0, 1e-3], dtype=torch.float64)),  # a flat disc
        torch.diag(torch.tensor([5.0, 1e-12, 1e-12], dtype=torch.float64)),  # a needle
        torch.zeros(3, 3, dtype=torch.float64),
    ]
    covariances = torch.cat([torch.stack(special), covariances])
    expected = torch.linalg.eigvalsh(covariances)[:, -1]
    torch.testing.assert_close(largest_eigenvalue(covariances), expected, rtol=1e-9, atol=1e-300)
    broken = covariances[:2].clone()
    broken[0, 1, 2] = float("nan")
    broken[1, 0, 0] = float("inf")
    assert torch.isnan(largest_eigenvalue(broken)).all()


def test_gaussians_finite_flags_exactly_the_non_finite_gaussians():
    from dsviewer.model.types import Gaussians

    generator = torch.Generator().manual_seed(1)
    n = 50
    gaussians = Gaussians(torch.randn(2, n, 3, generator=generator),
                          torch.randn(2, n, 3, 3, generator=generator),
                          torch.randn(2, n, 3, 4, generator=generator), torch.rand(2, n))
    assert gaussians.finite().all()  # the one-pass proof
    broken = {(0, 3): ("means", (1,)), (0, 7): ("covariances", (2, 0)),
              (1, 11): ("harmonics", (1, 3)), (1, 12): ("opacities", ())}  # fmt: skip
    for (b, i), (name, where) in broken.items():
        getattr(gaussians, name)[(b, i, *where)] = (float("nan"), float("inf"))[i % 2]
    expected = torch.ones(2, n, dtype=torch.bool)
    for b, i in broken:
        expected[b, i] = False
    assert torch.equal(gaussians.finite(), expected)
    huge = Gaussians(torch.full((1, 4, 3), 3e38), torch.zeros(1, 4, 3, 3),
                     torch.zeros(1, 4, 3, 1), torch.ones(1, 4))  # their sum overflows
    assert huge.finite().all()


def test_histogram_counts_finite_values_in_range():
    values = torch.tensor([0.0, 0.5, 1.0, float("nan"), 2.0, float("inf")])
    edges, counts = histogram(values, bins=2, value_range=(0.0, 1.0))
    np.testing.assert_allclose(edges, [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(counts, [1, 2])


def test_inspector_reads_the_right_pixel(biased):
    case, layers = biased
    prediction = case.prediction
    view, u, v = 1, 13, 9
    report = inspect_pixel(layers, view, u, v)
    fu, fv = u // FEATURE_DOWNSCALE, v // FEATURE_DOWNSCALE
    assert (report.feature_u, report.feature_v) == (fu, fv) == (3, 2)
    probs = prediction.match_probs[view, :, fv, fu].double().numpy()
    candidates = prediction.inv_depth_candidates[view, :, fv, fu].double().numpy()
    np.testing.assert_array_equal(report.probability, probs)
    np.testing.assert_array_equal(report.candidate_inv_depth, candidates)
    assert report.probability.sum() == pytest.approx(1.0, abs=1e-6)
    assert report.confidence == pytest.approx(report.probability.max(), abs=1e-7)
    assert report.final_depth == pytest.approx(1.1 * case.gt[view, v, u], rel=1e-6)
    assert report.coarse_depth == pytest.approx(case.coarse_depth[view, v, u], rel=1e-6)
    assert report.residual_inv == float(prediction.mono_inv_residual[view, v, u])
    assert report.gt_depth == pytest.approx(case.gt[view, v, u], rel=1e-6)
    assert report.relative_error(report.final_depth) == pytest.approx(0.1, rel=1e-4)
    assert report.final_point == pytest.approx(tuple(layers.final_points[view, v, u].tolist()))
    assert report.frame == int(case.scene.context.index[view])
    series = probability_series(report)
    assert np.all(np.diff(series.depth) > 0)
    assert series.probability.sum() == pytest.approx(1.0, abs=1e-6)
    assert series.depth_range == (report.near, report.far)  # the plot spans near to far
    expected_inv = np.sum(report.probability * report.candidate_inv_depth)
    assert report.expected_depth == pytest.approx(1.0 / expected_inv)
    # With the analysis: the pixel's multi-view error and flags.
    analysis = analyze(layers)
    report = inspect_pixel(layers, view, u, v, analysis=analysis)
    expected_error = float(analysis.layers["final"].consistency.rel_error[view, v, u])
    assert report.mode_values["consistency"] == expected_error and expected_error > 0.05
    assert report.mode_values["gt_error"] == pytest.approx(0.1, rel=1e-4)
    # The coarse depth of the biased view inherits the bias: both layers are flagged.
    assert bool(analysis.layers["coarse"].consistency.inconsistent[view, v, u])
    assert report.flags == ["coarse inconsistent", "final inconsistent"]
    clamped = inspect_pixel(layers, *CLAMP_FAR_PIXEL[:1], 0, 0, analysis=analysis)
    assert "final at far clamp" in clamped.flags and "final on a depth edge" in clamped.flags
    # The GT hole and out-of-range pixels.
    assert inspect_pixel(layers, 0, 12, 5).gt_depth is None
    with pytest.raises(PixelOutOfRangeError, match="outside the context views"):
        inspect_pixel(layers, 0, WIDTH, 0)
    with pytest.raises(PixelOutOfRangeError):
        inspect_pixel(layers, 3, 0, 0)


def test_consistency_on_rendered_synthetic_scene_with_occluders():
    """The dataset's ray-cast synthetic room (GT depth, occluding objects), three views."""
    from dsviewer.dataset import PreprocessSettings, load_scene
    from dsviewer.geometry.projection import unproject_depth

    settings = PreprocessSettings(image_shape=(48, 64), near=0.5, far=100.0)
    scene = load_scene("synthetic:3", settings=settings, context=[0, 8, 16])
    context = scene.context
    K, T, depth = context.intrinsics, context.extrinsics, context.depth
    points = unproject_depth(depth, K, T)
    # Counting occlusions: every disagreement of exact depth is an occlusion ("behind").
    counted = multiview_consistency(points, depth, K, T, occlusions="count").summary()["overall"]
    assert counted["checked_pixels"] > 0.5 * depth.numel()
    assert counted["median_rel_error"] < 1e-5
    assert counted["in_front_share"] == 0.0 and counted["behind_share"] > 0.005
    # Skipping occlusions: exact depth is consistent everywhere.
    skipped = multiview_consistency(points, depth, K, T, occlusions="skip")
    errors = skipped.rel_error[skipped.checked]
    assert not skipped.inconsistent.any()
    assert float(errors.median()) < 1e-5 and float(torch.quantile(errors, 0.99)) < 0.01
    # A view 10% too far: the exact views' points float in front of its surface.
    biased_depth = depth.clone()
    biased_depth[1] *= 1.1
    biased = multiview_consistency(unproject_depth(biased_depth, K, T), biased_depth, K, T,
                                   occlusions="skip")  # fmt: skip
    pair = biased.pair_signed_error[0, 1]
    assert float(pair[torch.isfinite(pair)].median()) == pytest.approx(-1.0 / 11.0, rel=1e-3)
    assert biased.summary()["per_view"][0]["in_front_share"] > 0.5

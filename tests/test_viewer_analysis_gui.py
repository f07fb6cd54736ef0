"""The geometry-inspection GUI against a real ``viser.ViserServer`` (127.0.0.1), no browser.

The scene is the hand-built plane of ``viewer_scenes`` with two known defects in the final depth:
a patch of view 0 pushed 30 % away (multi-view inconsistent) and one flying pixel in view 1.
Expected values are recomputed here from ``viewer.analysis`` / ``viewer.inspector`` and the
colormaps, and compared with what the app sent (handles and the server's message buffer).
"""

from __future__ import annotations

import io
import types
import zipfile

import numpy as np
import pytest
import torch
from viewer_scenes import make_prediction, make_scene
from viser import _messages

from viewer import colormaps
from viewer import scene as nodes
from viewer.analysis import (
    AnalysisSettings,
    analyze,
    gaussian_colors,
    gaussian_keep_mask,
    histogram,
    residual_segments,
)
from viewer.app import HISTOGRAM_BINS, ViewerApp
from viewer.export import EXPORT_FILES
from viewer.gui import COLOR_MODE_LABELS
from viewer.inspector import inspect_pixel
from viewer.pipeline import run_prediction

V, H, W = 3, 24, 32
PATCH = (0, slice(8, 14), slice(10, 18))  # view, rows, columns pushed away
FLYING = (1, 5, 5)  # view, row, column of a pixel pulled halfway to the camera


@pytest.fixture(scope="module")
def loaded():
    scene = make_scene(V, H, W)
    prediction = make_prediction(scene)
    prediction.final_depth[PATCH] *= 1.3
    prediction.final_depth[FLYING] *= 0.5
    return run_prediction(scene, lambda _scene: prediction)


def reference_analysis(loaded, **settings) -> dict[str, np.ndarray]:
    context = loaded.scene.context
    analysis = analyze(loaded.layers, context.intrinsics.float(), context.extrinsics.float(),
                       AnalysisSettings(**settings))  # fmt: skip
    maps = {k: v.float().numpy().reshape(V, H * W) for k, v in analysis.color_modes().items()}
    return analysis, maps


@pytest.fixture()
def app(server, loaded):
    viewer = ViewerApp(server, scene_specs=["plane"], point_budget=10**6, gaussian_budget=10**6)
    viewer.show(loaded)
    assert viewer.wait_idle(60)
    return viewer


def sent(server, kind) -> list:
    buffer = server._websock_server._broadcast_buffer
    with buffer.buffer_lock:
        return [m for m in buffer.message_from_id.values() if isinstance(m, kind)]


def expected_colors(values: np.ndarray, mode: str, threshold: float, gt_limit: float):
    """Independent colouring of an analysis map (NaN -> grey)."""
    defined = np.isfinite(values)
    v = np.where(defined, values, 0.0)
    if mode.startswith("consistency"):
        out = colormaps.apply_sequential(v, 0.0, 3.0 * threshold)
    elif mode == "clamp_final":
        out = colormaps.apply_diverging(v, 1.0)
    elif mode.startswith("gt_error"):
        out = colormaps.apply_diverging(v, gt_limit)
    else:
        out = np.where((v > 0.5)[:, None], np.uint8((178, 24, 43)), np.uint8((205, 205, 205)))
    out = out.astype(np.uint8)
    out[~defined] = (128, 128, 128)
    return out


def select_mode(app, key: str) -> None:
    app.controls.color_mode.value = COLOR_MODE_LABELS[key]  # fires the app's callback


def test_analysis_colour_modes_and_recompute_on_settings(app, server, loaded):
    assert app.analysis_runs == 1
    _, maps = reference_analysis(loaded)
    assert maps["inconsistent_final"][0].reshape(H, W)[PATCH[1:]].mean() > 0.5  # defect seen
    geometry = len(sent(server, _messages.PointCloudMessage))
    gt_limit = max(colormaps.robust_limit(maps[k], 98.0)
                   for k in ("gt_error_final", "gt_error_coarse"))  # fmt: skip
    for key in ("consistency_final", "consistency_coarse", "inconsistent_final", "clamp_final",
                "flying_pixel", "gt_error_final"):  # fmt: skip
        select_mode(app, key)
        for v in range(V):
            handle = app.point_handles["final"][v]
            idx = app._indices[("final", v)]
            np.testing.assert_array_equal(
                handle.colors, expected_colors(maps[key][v, idx], key, 0.05, gt_limit), err_msg=key
            )
    assert len(sent(server, _messages.PointCloudMessage)) == geometry  # colours only
    assert app.controls.colorbar.image.shape == (64, 320, 3)

    # A new threshold recomputes once; the same settings again do not.
    select_mode(app, "consistency_final")
    app.controls.threshold.value = 0.2
    assert app.wait_idle(60) and app.analysis_runs == 2
    app.request_analysis()
    assert app.wait_idle(60) and app.analysis_runs == 2
    _, maps = reference_analysis(loaded, consistency_threshold=0.2)
    idx = app._indices[("final", 1)]
    np.testing.assert_array_equal(app.point_handles["final"][1].colors,
                                  expected_colors(maps["consistency_final"][1, idx],
                                                  "consistency_final", 0.2, gt_limit))  # fmt: skip
    app.controls.occlusions.value = "skip"
    assert app.wait_idle(60) and app.analysis_runs == 3
    assert app.state.analysis.settings.consistency_occlusions == "skip"


def test_inconsistent_only_and_hide_flying_filters(app, server, loaded):
    _, maps = reference_analysis(loaded)
    valid = app.state.arrays.valid["final"]
    app.controls.inconsistent_only.value = True
    for v in range(V):
        expected = np.flatnonzero(valid[v] & (maps["inconsistent_final"][v] > 0.5))
        np.testing.assert_array_equal(app._indices[("final", v)], expected)
    assert app._indices[("final", 0)].size >= 40  # the pushed patch
    app.controls.inconsistent_only.value = False
    app.controls.hide_flying.value = True
    flying = maps["flying_pixel"] > 0.5
    assert flying[FLYING[0], FLYING[1] * W + FLYING[2]]
    for v in range(V):
        expected = np.flatnonzero(valid[v] & ~flying[v])
        np.testing.assert_array_equal(app._indices[("final", v)], expected)


def test_residual_vectors_layer(app, server, loaded):
    assert not sent(server, _messages.LineSegmentsMessage)  # nothing before the toggle
    app.controls.residual_vectors.value = True
    msgs = {m.name: m for m in sent(server, _messages.LineSegmentsMessage)}
    for v in range(V):
        ref = residual_segments(loaded.layers, stride=8, views=[v])
        np.testing.assert_allclose(msgs[f"/layers/residual_vectors/view_{v}"].props.points,
                                   ref.points, atol=1e-6)  # fmt: skip
        assert ref.points.shape[0] == (H // 8) * (W // 8)
    app.view_toggles[1].value = False  # hides that view's vectors, sends nothing new
    assert [h.visible for h in app.vector_handles] == [True, False, True]
    assert len(sent(server, _messages.LineSegmentsMessage)) == V
    app.controls.vector_stride.value = 4
    msgs = {m.name: m for m in sent(server, _messages.LineSegmentsMessage)}
    total = sum(msgs[f"/layers/residual_vectors/view_{v}"].props.points.shape[0] for v in range(V))
    assert total == V * (H // 4) * (W // 4)
    app.controls.residual_vectors.value = False
    assert app.layer_frames["residual_vectors"].visible is False


def test_splat_opacity_filter_and_colouring(app, server, loaded):
    g = loaded.prediction.gaussians
    app.controls.splats.value = True
    app.controls.splat_color.value = "Opacity"
    app.controls.min_opacity.value = 0.6
    (message,) = sent(server, _messages.GaussianSplatsMessage)
    keep = gaussian_keep_mask(g, 0.6).numpy()
    buffer = message.props.buffer
    assert buffer.shape == (int(keep.sum()), 8)
    centers = np.ascontiguousarray(buffer[:, :3]).view(np.float32)
    np.testing.assert_array_equal(centers, g.means[0].numpy()[keep])
    rgba = np.ascontiguousarray(buffer[:, 7]).view(np.uint8).reshape(-1, 4)
    np.testing.assert_array_equal(rgba[:, :3], gaussian_colors(g, "opacity")[keep])


def test_numeric_inspector_and_click_picking(app, server, loaded):
    analysis, _ = reference_analysis(loaded)
    c = app.controls
    c.inspect_view.value, c.inspect_u.value, c.inspect_v.value = 0, 12, 10
    app._on_inspect_button()
    expected = inspect_pixel(loaded.layers, loaded.prediction, 0, 12, 10, analysis).as_dict()
    got = app.inspected.as_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == (pytest.approx(value) if isinstance(value, float) else value), key
    assert "inconsistent" in got["flags"]
    assert f"{expected['final_depth']:.4g}" in c.inspector_text.content
    depth, probability = c.inspector_plot.data
    assert probability.sum() == pytest.approx(1.0)
    assert np.all(np.diff(depth) > 0)
    # A ray from camera 2 through pixel (u, v) = (7, 3) picks that pixel.
    K = loaded.scene.context.intrinsics[2].double().numpy()
    T = loaded.scene.context.extrinsics[2].double().numpy()
    ray_cam = np.array([((7 + 0.5) / W - K[0, 2]) / K[0, 0],
                        ((3 + 0.5) / H - K[1, 2]) / K[1, 1], 1.0])  # fmt: skip
    assert app.pick(T[:3, 3], T[:3, :3] @ ray_cam) == (2, 7, 3)
    assert app.pick(T[:3, 3], -T[:3, 2]) is None  # looking away from every point
    click = types.SimpleNamespace(ray_origin=T[:3, 3], ray_direction=T[:3, :3] @ ray_cam)
    app._on_scene_click(click)  # what a canvas click (SceneClickEvent) calls
    assert (app.inspected.view, app.inspected.u, app.inspected.v) == (2, 7, 3)
    c.inspect_u.value = W + 5
    app._on_inspect_button()
    assert "outside the context views" in c.inspector_text.content


def test_residual_histograms_follow_the_unit(app, loaded):
    arrays = app.state.arrays
    for unit in ("inverse", "metric"):
        label = "inverse depth" if unit == "inverse" else "metric (final - coarse)"
        app.controls.residual_unit.value = label
        limit = app.state.ranges.residual_limit
        for v, handle in enumerate(app.histogram_handles):
            values = torch.from_numpy(arrays.residual[unit][v][arrays.valid["final"][v]])
            edges, counts = histogram(values, HISTOGRAM_BINS, (-limit, limit))
            np.testing.assert_array_equal(handle.data[1], counts)
            np.testing.assert_allclose(handle.data[0], 0.5 * (edges[1:] + edges[:-1]))
            assert handle.data[1].sum() > 0.9 * arrays.valid["final"][v].sum()


def test_export_zip_and_target_views(app, loaded):
    app.request_export(client=None)  # what the button does, without a browser client
    assert app.wait_idle(120)
    name, data = app.last_export
    assert name == "plane_export.zip"
    names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    core = {"coarse.ply", "final.ply", "residual.ply", "gt.ply", "comparison.ply",
            "gaussians.ply", "scene.html", "panels.png", "metrics.json"}  # fmt: skip
    # This scene has GT, Gaussians and a target view: every export file is there.
    assert names == {f"plane/{n}" for n in EXPORT_FILES} and names >= {f"plane/{n}" for n in core}
    # Target views: rendered once after the scene was shown, with their PSNR.
    renders = app.state.targets
    if renders is None:
        pytest.skip("no target renderer in this build")
    assert f"{float(renders.psnr[0]):.2f}" in app.controls.targets_text.content
    assert app.controls.targets_image.image.shape[0] > 8
    # "Render at my camera" with a camera looking like context view 0's.
    wxyz, position = nodes.camera_pose(loaded.scene.context.extrinsics[0].double().numpy())
    camera = types.SimpleNamespace(wxyz=wxyz, position=position, fov=0.8, aspect=1.5)
    app.request_camera_render(types.SimpleNamespace(camera=camera))
    assert app.wait_idle(120)
    image = app.last_camera_render
    assert image.shape == (256, 384, 3) and image.std() > 5  # the plane, not a black image

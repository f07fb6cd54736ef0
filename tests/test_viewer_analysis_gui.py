"""The geometry-inspection GUI against a real ``viser.ViserServer`` (127.0.0.1), no browser.

The scene is the hand-built plane of ``viewer_scenes`` with two known defects in the final depth:
a patch of view 0 pushed 30 % away (multi-view inconsistent) and one flying pixel in view 1.
Expected values are recomputed here from ``dsviewer.viewer.analysis`` /
``dsviewer.viewer.inspector`` and the
colormaps, and compared with what the app sent (handles and the server's message buffer). The GUI
is driven through its handles, as a client would.
"""

from __future__ import annotations

import io
import json
import re
import types
import zipfile

import numpy as np
import pytest
import torch
from viewer_scenes import make_prediction, make_scene
from viser import _messages

import dsviewer.viewer.analysis
from dsviewer.viewer import colormaps
from dsviewer.viewer.analysis import AnalysisSettings, analyze
from dsviewer.viewer.analysis.gaussians import gaussian_colors, gaussian_keep_mask
from dsviewer.viewer.analysis.metrics import histogram
from dsviewer.viewer.analysis.residual_vectors import residual_segments
from dsviewer.viewer.export import EXPORT_FILE_NAMES
from dsviewer.viewer.export.layout import RERUN_FILE
from dsviewer.viewer.gui.analysis_panel import HISTOGRAM_BINS
from dsviewer.viewer.gui.app import ViewerApp
from dsviewer.viewer.inspector import inspect_pixel
from dsviewer.viewer.scene_nodes import camera_pose
from dsviewer.viewer.session.loaded import run_prediction

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


@pytest.fixture()
def app(server, loaded):
    viewer = ViewerApp(server, scene_specs=["plane"], point_budget=10**6, gaussian_budget=10**6)
    viewer.show(loaded)
    assert viewer.wait_idle(60)
    yield viewer
    viewer.close()


def sent(server, kind) -> list:
    buffer = server._websock_server._broadcast_buffer
    with buffer.buffer_lock:
        return [m for m in buffer.message_from_id.values() if isinstance(m, kind)]


def final_colors(app, v: int) -> np.ndarray:
    return app.server.scene._handle_from_node_name[f"/runs/0/final/view_{v}"].colors


def expected_colors(loaded, mode: str, v: int, pixels: np.ndarray, **settings) -> np.ndarray:
    """Independent colouring of an analysis map of the final layer (NaN -> grey)."""
    analysis = analyze(loaded.layers, AnalysisSettings(**settings)).layers["final"]
    threshold = settings.get("consistency_threshold", 0.05)
    if mode == "consistency":
        values = analysis.consistency.rel_error[v].reshape(-1).numpy()[pixels]
        out = colormaps.apply_sequential(np.nan_to_num(values), 0.0, 3.0 * threshold)
        out[~np.isfinite(values)] = colormaps.NO_DATA_COLOR
        return out
    if mode == "clamp":
        codes = (1 + analysis.at_far.float() - analysis.at_near.float())[v].reshape(-1).numpy()
        palette = np.array([(33, 102, 172), (205, 205, 205), (178, 24, 43)], np.uint8)
        return palette[codes[pixels].astype(int)]
    flags = {"flying_pixel": analysis.flying, "depth_edge": analysis.edge}[mode]
    flagged = flags[v].reshape(-1).numpy()[pixels]
    return np.where(flagged[:, None], np.uint8((178, 24, 43)), np.uint8((205, 205, 205)))


def test_analysis_colour_modes_and_recompute_on_settings(app, server, loaded, monkeypatch):
    analysis = app.state.analysis_of()
    assert analysis is not None and analysis.settings == AnalysisSettings()
    inconsistent = analysis.layers["final"].consistency.inconsistent[0][PATCH[1:]]
    assert inconsistent.float().mean() > 0.5  # the defect is seen
    geometry = len(sent(server, _messages.PointCloudMessage))
    for mode in ("consistency", "clamp", "flying_pixel", "depth_edge"):
        app.colours_panel.set_mode(mode)
        for v in range(V):
            pixels = app.clouds.slots[0].shown[("final", v)]
            np.testing.assert_array_equal(
                final_colors(app, v), expected_colors(loaded, mode, v, pixels), err_msg=mode
            )
    assert len(sent(server, _messages.PointCloudMessage)) == geometry  # colours only
    # A new threshold recomputes once; the same settings again do not.
    runs = []
    real = dsviewer.viewer.analysis.analyze
    monkeypatch.setattr(dsviewer.viewer.analysis, "analyze",
                        lambda *a, **k: runs.append(1) or real(*a, **k))
    app.colours_panel.set_mode("consistency")
    app.analysis_panel.threshold.value = 0.2
    assert app.wait_idle(60) and len(runs) == 1
    app.request_analysis()
    assert app.wait_idle(60) and len(runs) == 1
    pixels = app.clouds.slots[0].shown[("final", 1)]
    np.testing.assert_array_equal(
        final_colors(app, 1),
        expected_colors(loaded, "consistency", 1, pixels, consistency_threshold=0.2),
    )
    app.analysis_panel.occlusions.value = "skip"
    assert app.wait_idle(60) and len(runs) == 2
    assert app.state.analysis_of().settings.consistency_occlusions == "skip"


def test_inconsistent_only_and_hide_flying_filters(app, loaded):
    final = app.state.analysis_of().layers["final"]
    valid = app.loaded.flat("final").valid
    inconsistent = final.consistency.inconsistent.reshape(V, -1).numpy()
    app.points_panel.inconsistent_only.value = True
    for v in range(V):
        expected = np.flatnonzero(valid[v] & inconsistent[v])
        np.testing.assert_array_equal(app.clouds.slots[0].shown[("final", v)], expected)
    assert app.clouds.slots[0].shown[("final", 0)].size >= 40  # the pushed patch
    app.points_panel.inconsistent_only.value = False
    app.points_panel.hide_flying.value = True
    flying = final.flying.reshape(V, -1).numpy()
    assert flying[FLYING[0], FLYING[1] * W + FLYING[2]]
    for v in range(V):
        np.testing.assert_array_equal(app.clouds.slots[0].shown[("final", v)],
                                      np.flatnonzero(valid[v] & ~flying[v]))  # fmt: skip


def test_residual_vectors_layer(app, server, loaded):
    assert not sent(server, _messages.LineSegmentsMessage)  # nothing before the toggle
    app.vectors_panel.toggle.value = True
    msgs = {m.name: m for m in sent(server, _messages.LineSegmentsMessage)}
    for v in range(V):
        ref = residual_segments(loaded.layers, stride=8, views=[v])
        np.testing.assert_allclose(msgs[f"/residual_vectors/view_{v}"].props.points, ref.points,
                                   atol=1e-6)  # fmt: skip
        assert ref.points.shape[0] == (H // 8) * (W // 8)
    app.views_panel.toggles[1].value = False  # hides that view's vectors, sends nothing new
    assert [h.visible for h in app.vectors_panel.handles] == [True, False, True]
    assert len(sent(server, _messages.LineSegmentsMessage)) == V
    app.vectors_panel.stride.value = 4
    msgs = {m.name: m for m in sent(server, _messages.LineSegmentsMessage)}
    total = sum(msgs[f"/residual_vectors/view_{v}"].props.points.shape[0] for v in range(V))
    assert total == V * (H // 4) * (W // 4)
    app.vectors_panel.toggle.value = False
    assert not any(h.visible for h in app.vectors_panel.handles)


def test_splat_opacity_filter_and_colouring(app, server, loaded):
    g = app.loaded.layers.gaussians
    app.gaussians_panel.toggle.value = True
    app.gaussians_panel.color.value = "Opacity"
    app.gaussians_panel.min_opacity.value = 0.6
    (message,) = sent(server, _messages.GaussianSplatsMessage)
    keep = gaussian_keep_mask(g, 0.6).numpy()
    buffer = message.props.buffer
    assert buffer.shape == (int(keep.sum()), 8)
    centers = np.ascontiguousarray(buffer[:, :3]).view(np.float32)
    np.testing.assert_array_equal(centers, g.means[0].numpy()[keep])
    rgba = np.ascontiguousarray(buffer[:, 7]).view(np.uint8).reshape(-1, 4)
    np.testing.assert_array_equal(rgba[:, :3], gaussian_colors(g, "opacity")[keep])


def test_numeric_inspector_and_click_picking(app, loaded):
    panel = app.inspector_panel
    panel.view.value, panel.u.value, panel.v.value = 0, 12, 10
    report = panel.inspect_pixel(0, 12, 10)
    expected = inspect_pixel(loaded.layers, 0, 12, 10, app.state.analysis_of())
    assert report.mode_values == expected.mode_values and report.flags == expected.flags
    assert report.final_depth == expected.final_depth
    assert "final inconsistent" in report.flags
    assert f"{expected.final_depth:.4g}" in panel.text.content
    depth, probability = panel.plot.data
    assert probability.sum() == pytest.approx(1.0) and np.all(np.diff(depth) > 0)
    assert panel.plot.scales["x"]["range"] == [report.near, report.far]  # not a power of ten
    # A ray from camera 2 through pixel (u, v) = (7, 3) picks that pixel.
    K = loaded.layers.context.intrinsics[2].double().numpy()
    T = loaded.layers.context.T_world_cam[2].numpy()
    ray_cam = np.array([((7 + 0.5) / W - K[0, 2]) / K[0, 0],
                        ((3 + 0.5) / H - K[1, 2]) / K[1, 1], 1.0])  # fmt: skip
    run, *picked = app.clouds.pick(T[:3, 3], T[:3, :3] @ ray_cam)
    assert run is app.runs[0] and picked == ["final", 2, 7, 3]
    assert app.clouds.pick(T[:3, 3], -T[:3, 2]) is None  # looking away from every point
    with pytest.raises(ValueError, match="outside the context views"):
        panel.inspect_pixel(0, W + 5, 0)


def test_residual_histograms_follow_the_unit(app, loaded):
    valid = app.loaded.flat("final").valid & app.loaded.flat("coarse").valid
    for label, field in (
        ("inverse depth", "residual_inv"),
        ("metric (final - coarse)", "residual_metric"),
    ):
        app.colours_panel.residual_unit.value = label
        limit = app.colors.residual_limit()
        residual = getattr(loaded.layers, field).reshape(V, -1).numpy()
        for v in range(V):
            handle = app.analysis_panel.histograms[v]
            edges, counts = histogram(torch.from_numpy(residual[v][valid[v]]), HISTOGRAM_BINS,
                                      (-limit, limit))  # fmt: skip
            np.testing.assert_array_equal(handle.data[1], counts)
            np.testing.assert_allclose(handle.data[0], 0.5 * (edges[1:] + edges[:-1]))
            assert handle.data[1].sum() > 0.9 * valid[v].sum()


def embedded_messages(html: str) -> list[dict]:
    """The viser messages a scene.html replays (its embedded, zstd-compressed msgpack)."""
    import base64

    import msgspec
    import zstandard

    data = base64.b64decode(re.search(r'__VISER_EMBED_DATA__="([^"]+)"', html).group(1))
    inner = zstandard.ZstdDecompressor().decompress(data[8:], max_output_size=1 << 30)
    length = int.from_bytes(inner[:8], "little")
    payload = msgspec.msgpack.decode(inner[8 : 8 + length])
    return [message for _, message in payload["messages"]]


def _percentages(markdown: str) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("check", "---"):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_export_button_metrics_equal_what_the_gui_shows(app, loaded):
    """Non-default threshold and occlusions: the zip's metrics.json holds the numbers on screen,
    and its scene.html uses the GUI's view parameters."""
    app.analysis_panel.threshold.value = 0.12
    app.analysis_panel.occlusions.value = "skip"
    assert app.wait_idle(60)
    shown = _percentages(app.analysis_panel.table.content)
    # The Export folder's "Rerun recording" option adds recording.rrd (where Rerun is installed).
    with_rerun = not app.export_panel.rerun.disabled
    app.export_panel.rerun.value = with_rerun
    app.export_panel.request_export(client=None)  # what the button does, without a browser client
    assert app.wait_idle(120)
    name, data = app.export_panel.last_export
    assert name == "plane_export.zip"
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert set(archive.namelist()) == {f"plane/{n}" for n in EXPORT_FILE_NAMES if n != "sfm.ply"
                                       and (with_rerun or n != RERUN_FILE)}  # no SfM points
    metrics = json.loads(archive.read("plane/metrics.json"))
    assert metrics["settings"]["consistency_threshold"] == 0.12
    assert metrics["settings"]["consistency_occlusions"] == "skip"
    for layer, column in (("coarse", 0), ("final", 1)):  # the table's columns
        share = metrics["consistency"][layer]["overall"]["inconsistent_share"]
        assert shown["inconsistent"][column] == f"{100 * share:.2f}%"
        error = metrics["consistency"][layer]["overall"]["mean_rel_error"]
        assert shown["mean multi-view error"][column] == f"{error:.4g}"
    assert shown["AbsRel to GT"][1] == f"{metrics['gt']['final']['overall']['abs_rel']:.4g}"
    assert metrics["consistency"]["final"]["occlusions"] == "skip"
    # scene.html opens where the GUI's start camera is, with the GUI's sizes.
    html = archive.read("plane/scene.html").decode()
    assert "dsviewer-legend" in html and "Mono residual" in html
    messages = embedded_messages(html)
    view = app.loaded.view
    camera = {m["type"]: m for m in messages if m["type"].startswith("SetCamera")}
    np.testing.assert_allclose(camera["SetCameraPositionMessage"]["position"], view.start.position)
    np.testing.assert_allclose(camera["SetCameraLookAtMessage"]["look_at"], view.start.look_at)
    assert camera["SetCameraFovMessage"]["fov"] == pytest.approx(view.start.fov)
    clouds = [m for m in messages if m["type"] == "PointCloudMessage"]
    assert clouds and all(
        m["props"]["point_size"] == pytest.approx(view.point_size()) for m in clouds
    )
    frustums = [m for m in messages if m["type"] == "CameraFrustumMessage"]
    assert all(m["props"]["scale"] == pytest.approx(view.frustum_scale) for m in frustums)
    assert len(frustums) == V + 1  # context and target cameras


def test_target_views_and_render_at_camera(app, loaded):
    renders = app.loaded.targets
    assert renders is not None
    assert f"{float(renders.psnr[0]):.2f}" in app.targets_panel.text.content
    assert app.targets_panel.image.image.shape[0] > 8
    # "Render at my camera" with a camera looking like context view 0's.
    wxyz, position = camera_pose(loaded.layers.context.T_world_cam[0].numpy())
    camera = types.SimpleNamespace(wxyz=wxyz, position=position, fov=0.8, aspect=1.5)
    app.targets_panel.request_camera_render(types.SimpleNamespace(camera=camera))
    assert app.wait_idle(120)
    image = app.targets_panel.last_camera_render
    assert image.shape == (256, 384, 3) and image.std() > 5  # the plane, not a black image

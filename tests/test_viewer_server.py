"""The viewer app against a real ``viser.ViserServer`` (127.0.0.1, a free port), no browser.

Inspects the server's scene handles and its outgoing message buffer: which nodes exist, how many
points were sent and in which dtype, and that visibility/colour changes send no new geometry.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from viewer_scenes import make_loaded
from viser import _messages

from src.geometry.similarity import Similarity
from viewer import colormaps
from viewer.app import ViewerApp

V, H, W = 3, 24, 32


@pytest.fixture(scope="module")
def loaded():
    return make_loaded(V, H, W)


def node_names(server) -> set[str]:
    return set(server.scene._handle_from_node_name)


def sent(server, kind) -> list:
    """Messages of type ``kind`` still in the broadcast buffer (what a new client receives)."""
    buffer = server._websock_server._broadcast_buffer
    with buffer.buffer_lock:
        return [m for m in buffer.message_from_id.values() if isinstance(m, kind)]


def clouds(server) -> dict[str, _messages.PointCloudMessage]:
    return {m.name: m for m in sent(server, _messages.PointCloudMessage)}


def test_scene_nodes_and_points_sent(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"], point_budget=10**6)
    app.show(loaded)
    names = node_names(server)
    assert {f"/context/{i}/frustum" for i in range(V)} <= names
    assert "/target/0/frustum" in names
    assert {f"/layers/final/view_{i}" for i in range(V)} <= names
    assert not any(n.startswith("/layers/coarse/view") for n in names)  # hidden: not sent yet
    msgs = clouds(server)
    for v in range(V):
        m = msgs[f"/layers/final/view_{v}"]
        assert m.props.points.shape == (H * W, 3)
        assert m.props.points.dtype == np.float32 and m.props.precision == "float32"
        assert m.props.colors.dtype == np.uint8 and m.props.point_shading == "flat"
        # The points sent are the unprojected final depth, as they are.
        expected = loaded.layers.final_points[v].reshape(-1, 3).numpy()
        np.testing.assert_array_equal(m.props.points, expected)
    # Frustums: the true vertical FOV from the intrinsics; aspect fy/fx (normalized).
    frustums = {m.name: m for m in sent(server, _messages.CameraFrustumMessage)}
    K = loaded.scene.context.intrinsics[0].double()
    fov = frustums["/context/0/frustum"].props.fov
    assert fov == pytest.approx(2 * np.arctan(0.5 / float(K[1, 1])), rel=1e-6)
    assert frustums["/context/0/frustum"].props.aspect == pytest.approx(float(K[1, 1] / K[0, 0]))
    T = loaded.scene.context.extrinsics[1].double().numpy()
    np.testing.assert_allclose(server.scene._handle_from_node_name["/context/1/frustum"].position,
                               T[:3, 3], atol=1e-6)  # fmt: skip


def test_budget_caps_points_per_view(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"], point_budget=30 * V)
    app.show(loaded)
    assert app.controls.budget.value == 30 * V
    for v in range(V):
        assert clouds(server)[f"/layers/final/view_{v}"].props.points.shape == (30, 3)


def test_toggles_flip_visibility_without_resending(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    c = app.controls
    c.layer_toggles["residual"].value = True  # first show: sent once
    app._on_layer_toggle("residual")
    first = clouds(server)["/layers/residual/view_0"]
    residual_colors = first.props.colors.copy()
    count = len(sent(server, _messages.PointCloudMessage))
    c.layer_toggles["residual"].value = False
    app._on_layer_toggle("residual")
    assert app.layer_frames["residual"].visible is False
    c.layer_toggles["residual"].value = True
    app._on_layer_toggle("residual")
    assert app.layer_frames["residual"].visible is True
    c.point_size.value = 3.0
    app._guarded(app._on_point_size)
    c.color_mode.value = "Depth"
    app._guarded(app._on_color_mode)
    # Visibility, size and colour changes sent no new point geometry.
    assert len(sent(server, _messages.PointCloudMessage)) == count
    handle = app.point_handles["final"][0]
    depth = app.state.arrays.depth["final"][0]
    r = app.state.ranges
    np.testing.assert_array_equal(
        handle.colors, colormaps.apply_sequential(depth, r.depth_low, r.depth_high)
    )
    # The residual layer keeps its residual colours in every colour mode.
    np.testing.assert_array_equal(app.point_handles["residual"][0].colors, residual_colors)
    # Per-view toggle: only that view's clouds hide.
    app.view_toggles[1].value = False
    app._on_view_toggle()
    assert [h.visible for h in app.point_handles["final"]] == [True, False, True]


def test_filters_resend_only_visible_layers(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    app.controls.min_confidence.value = 50.0
    app._guarded(app._on_filter)
    kept = clouds(server)["/layers/final/view_0"].props.points.shape[0]
    conf = app.state.arrays.confidence
    threshold = np.percentile(conf.reshape(-1), 50.0)
    assert kept == int((conf[0] >= threshold).sum())
    assert "coarse" in app._stale and not any(n.startswith("/layers/coarse/v") for n in node_names(server))


def test_gaussian_splats(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"], gaussian_budget=500)
    app.show(loaded)
    assert not sent(server, _messages.GaussianSplatsMessage)
    app.controls.splats.value = True
    app._guarded(app._refresh_splats)
    (message,) = sent(server, _messages.GaussianSplatsMessage)
    buffer = message.props.buffer  # [n, 8] uint32 per splat
    assert buffer.shape == (500, 8)
    rgba = np.ascontiguousarray(buffer[:, 7]).view(np.uint8).reshape(-1, 4)
    assert (rgba[:, :3] == np.array([199, 128, 56])).all()
    opacities = loaded.prediction.gaussians.opacities[0].numpy()
    assert rgba[:, 3].min() >= int(np.sort(opacities)[-500] * 255) - 1  # the most opaque kept
    app.controls.splat_placement.value = "side by side"
    app._guarded(app._refresh_splats)
    assert np.linalg.norm(app.splats.position) > 0
    assert len(sent(server, _messages.GaussianSplatsMessage)) == 1  # moved, not re-sent


def test_scene_switch_replaces_nodes_and_stays_flat(server, loaded):
    other = make_loaded(2, 16, 16, with_gt=False)
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    first = node_names(server)
    for _ in range(3):
        app.show(other)
        app.show(loaded)
    assert node_names(server) == first
    app.show(other)
    names = node_names(server)
    assert "/layers/final/view_2" not in names and "/context/2/frustum" not in names
    assert len(app.view_toggles) == 2
    # The hidden-layer caches belong to the new scene only.
    assert all(v < 2 for (_, v) in app._indices)
    assert len(sent(server, _messages.PointCloudMessage)) == 2


def test_worker_thread_keeps_gui_live_and_reports_errors(server, loaded):
    release = threading.Event()

    def slow_loader(spec, progress):
        progress("Running the model", 0.5)
        release.wait(10)
        if spec == "bad":
            raise ValueError("No scene with key 'bad'.")
        return loaded

    app = ViewerApp(server, loader=slow_loader, scene_specs=["plane", "bad"])
    worker = app.load_async("plane")
    time.sleep(0.1)
    assert worker.is_alive() and "Running the model" in app.controls.status.content
    assert app.controls.load.disabled is True
    release.set()
    worker.join(10)
    assert app.state is not None and app.state.loaded is loaded
    release.clear()
    worker = app.load_async("bad")
    release.set()
    worker.join(10)
    assert "Could not load `bad`" in app.controls.status.content
    assert app.state is not None  # the previous scene stays
    assert app.controls.load.disabled is False


class _FakeCamera:
    wxyz = position = look_at = None


class _FakeClient:
    """Stands in for a browser client: records where the app puts its camera."""

    def __init__(self) -> None:
        self.camera = _FakeCamera()

    def atomic(self):
        import contextlib

        return contextlib.nullcontext()


def test_frustum_click_moves_the_client_camera_in_world_units(server, loaded):
    import copy
    import types

    import torch

    from src.geometry.transforms import quaternion_wxyz_to_matrix

    # The model frame is the user's world scaled by 1/2 and shifted: world = 2 * model + t.
    scene = copy.copy(loaded.scene)
    M = torch.eye(4, dtype=torch.float64)
    M[:3, :3] *= 2.0
    M[:3, 3] = torch.tensor([1.0, -3.0, 0.5], dtype=torch.float64)
    scene.world_from_model = Similarity.from_matrix(M)
    shifted = copy.copy(loaded)
    shifted.scene = scene
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(shifted)
    root = server.scene._handle_from_node_name["/layers"]
    assert root.scale == pytest.approx((2.0, 2.0, 2.0)) or root.scale == pytest.approx(2.0)
    np.testing.assert_allclose(root.position, [1.0, -3.0, 0.5])

    client = _FakeClient()
    handle = app.frustums["context"][1]
    app._on_frustum_click(types.SimpleNamespace(target=handle, client=client))
    T = loaded.scene.context.extrinsics[1].double().numpy()
    np.testing.assert_allclose(client.camera.position, 2.0 * T[:3, 3] + [1.0, -3.0, 0.5], atol=1e-6)
    R = quaternion_wxyz_to_matrix(torch.as_tensor(client.camera.wxyz)).numpy()
    np.testing.assert_allclose(R, T[:3, :3], atol=1e-6)  # same orientation (OpenCV axes)
    forward = (client.camera.look_at - client.camera.position)
    np.testing.assert_allclose(forward / np.linalg.norm(forward), T[:3, 2], atol=1e-6)


def test_missing_layers_are_greyed_out(server):
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(make_loaded(2, 8, 8, with_gt=False))
    assert app.controls.layer_toggles["gt"].disabled is True
    assert app.controls.layer_toggles["centers"].disabled is False
    app.controls.layer_toggles["gt"].value = True
    app._on_layer_toggle("gt")
    assert "gt" not in app.point_handles

"""The viewer app against a real ``viser.ViserServer`` (127.0.0.1, a free port), no browser.

Driven through the GUI handles as a client would (assigning a handle's value runs its callback)
and inspected through the server's scene handles and its outgoing message buffer: which nodes
exist, how many points were sent and in which dtype, that visibility and colour changes send no
new geometry, and that scene switches leave the buffer flat.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from viewer_scenes import make_loaded
from viser import _messages

from dsviewer.viewer import colormaps
from dsviewer.viewer.color_modes import COLOR_MODES
from dsviewer.viewer.gui.app import ViewerApp
from dsviewer.viewer.gui.state import Partner

V, H, W = 3, 24, 32


@pytest.fixture(scope="module")
def loaded():
    return make_loaded(V, H, W)


def node_names(server) -> set[str]:
    return set(server.scene._handle_from_node_name)


def buffered(server) -> list:
    buffer = server._websock_server._broadcast_buffer
    with buffer.buffer_lock:
        return list(buffer.message_from_id.values())


def sent(server, kind) -> list:
    """Messages of type ``kind`` still in the broadcast buffer (what a new client receives)."""
    return [m for m in buffered(server) if isinstance(m, kind)]


def cloud(server, name: str):
    return server.scene._handle_from_node_name[name]


def test_scene_nodes_and_points_sent(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"], point_budget=10**6)
    app.show(loaded)
    names = node_names(server)
    assert {f"/cameras/context/view_{i}" for i in range(V)} <= names
    assert "/cameras/target/view_0" in names
    assert {f"/runs/0/final/view_{i}" for i in range(V)} <= names
    assert not any(n.startswith("/runs/0/coarse/view") for n in names)  # hidden: not sent yet
    for v in range(V):
        handle = cloud(server, f"/runs/0/final/view_{v}")
        assert handle.points.shape == (H * W, 3)
        assert handle.points.dtype == np.float32 and handle.precision == "float32"
        assert handle.colors.dtype == np.uint8 and handle.point_shading == "flat"
        expected = loaded.layers.final_points[v].reshape(-1, 3).numpy()
        np.testing.assert_array_equal(handle.points, expected)  # the final points as they are
    frustum = cloud(server, "/cameras/context/view_0")
    K = loaded.scene.context.intrinsics[0].double()
    assert frustum.fov == pytest.approx(2 * np.arctan(0.5 / float(K[1, 1])), rel=1e-6)
    assert frustum.aspect == pytest.approx(float(K[1, 1] / K[0, 0]))
    T = loaded.scene.context.extrinsics[1].double().numpy()
    np.testing.assert_allclose(
        cloud(server, "/cameras/context/view_1").position, T[:3, 3], atol=1e-6
    )


def test_budget_caps_points_per_view(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"], point_budget=30 * V)
    app.show(loaded)
    assert app.points_panel.budget.value == 30 * V
    for v in range(V):
        assert cloud(server, f"/runs/0/final/view_{v}").points.shape == (30, 3)


def test_toggles_flip_visibility_without_resending(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    toggle = app.layers_panel.toggles["residual"]
    toggle.value = True  # first show: sent once
    residual_colors = cloud(server, "/runs/0/residual/view_0").colors.copy()
    points_sent = len(sent(server, _messages.PointCloudMessage))
    toggle.value = False
    assert app.clouds.slots[0].frames["residual"].visible is False
    toggle.value = True
    assert app.clouds.slots[0].frames["residual"].visible is True
    app.points_panel.size.value = 3.0
    app.colours_panel.set_mode("depth")
    # Visibility, size and colour changes sent no new point geometry.
    assert len(sent(server, _messages.PointCloudMessage)) == points_sent
    depth = app.loaded.flat("final").depth[0]
    low, high = colormaps.robust_range(
        app.loaded.flat("final").depth[app.loaded.flat("final").valid]
    )
    np.testing.assert_array_equal(cloud(server, "/runs/0/final/view_0").colors,
                                  colormaps.apply_sequential(depth, low, high))  # fmt: skip
    # The residual layer keeps its residual colours in every colour mode.
    np.testing.assert_array_equal(cloud(server, "/runs/0/residual/view_0").colors, residual_colors)
    app.views_panel.toggles[1].value = False  # only that view's clouds hide
    assert [cloud(server, f"/runs/0/final/view_{v}").visible for v in range(V)] == [
        True,
        False,
        True,
    ]


def test_filters_resend_only_visible_layers(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    app.points_panel.min_confidence.value = 50.0
    confidence = loaded.layers.confidence.numpy()
    threshold = np.percentile(confidence, 50.0)
    for v in range(V):
        kept = int((confidence[v] >= threshold).sum())
        assert app.clouds.slots[0].shown[("final", v)].size == kept
        if kept:
            assert cloud(server, f"/runs/0/final/view_{v}").points.shape == (kept, 3)
        else:  # nothing left: hidden (an empty cloud would make three.js compute NaN bounds)
            assert not cloud(server, f"/runs/0/final/view_{v}").visible
    assert 0 < app.clouds.points_sent() < V * H * W
    assert "coarse" in app.clouds.slots[0].stale
    assert not any(n.startswith("/runs/0/coarse/v") for n in node_names(server))


def test_gaussian_splats(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"], gaussian_budget=500)
    app.show(loaded)
    assert not sent(server, _messages.GaussianSplatsMessage)
    app.gaussians_panel.toggle.value = True
    (message,) = sent(server, _messages.GaussianSplatsMessage)
    buffer = message.props.buffer  # [n, 8] uint32 per splat
    assert buffer.shape == (500, 8)
    rgba = np.ascontiguousarray(buffer[:, 7]).view(np.uint8).reshape(-1, 4)
    assert (rgba[:, :3] == np.array([199, 128, 56])).all()
    opacities = loaded.prediction.gaussians.opacities[0].numpy()
    assert rgba[:, 3].min() >= int(np.sort(opacities)[-500] * 255) - 1  # the most opaque kept
    app.gaussians_panel.placement.value = "side by side"
    assert np.linalg.norm(app.gaussians_panel.handle.position) > 0
    assert len(sent(server, _messages.GaussianSplatsMessage)) == 1  # moved, not re-sent


def test_scene_switches_update_in_place_and_the_buffer_stays_flat(server, loaded):
    """Switching scenes back and forth adds no nodes, no GUI elements and no messages."""
    other = make_loaded(2, 16, 16, with_gt=False)
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    app.show(other)
    app.show(loaded)
    assert app.wait_idle(60)  # the jobs of the last scene have sent what they send
    names, size = node_names(server), len(buffered(server))
    for _ in range(4):
        app.show(other)
        app.show(loaded)
    assert app.wait_idle(60)
    assert node_names(server) == names
    assert len(buffered(server)) == size
    assert not sent(server, _messages.GuiRemoveMessage)  # GUI elements are reused, not replaced
    app.show(other)
    assert not cloud(server, "/runs/0/final/view_2").visible  # a view the scene does not have
    assert [t.visible for t in app.views_panel.toggles] == [True, True, False]
    assert app.layers_panel.toggles["gt"].disabled is True  # no GT in this scene


def test_worker_thread_keeps_gui_live_and_reports_errors(server, loaded):
    release = threading.Event()

    def slow_loader(spec, progress):
        progress("Running the model", 0.5)
        release.wait(10)
        if spec.startswith("bad"):
            raise ValueError(f"No scene with key {spec!r}.")
        return loaded

    app = ViewerApp(server, loader=slow_loader, scene_specs=["plane", "bad"])
    worker = app.load_async("plane")
    time.sleep(0.1)
    assert worker.is_alive() and "Running the model" in app.scene_panel.status.content
    assert app.scene_panel.load.disabled is True
    release.set()
    worker.join(10)
    assert app.loaded is loaded
    release.clear()
    worker = app.load_async("bad<b>x</b>")
    release.set()
    worker.join(10)
    status = app.scene_panel.status.content
    assert "Could not load" in status and "<b>" not in status  # the spec is escaped
    assert app.loaded is loaded  # the previous scene stays
    assert app.scene_panel.load.disabled is False


def test_showing_a_scene_never_waits_for_its_analysis(server, monkeypatch):
    """The analysis runs on the job thread; the GUI thread draws the scene meanwhile with the
    colours it can give without it (it used to wait on the scene's lock for the whole analysis)."""
    import dsviewer.viewer.analysis

    computing, release = threading.Event(), threading.Event()
    analyze = dsviewer.viewer.analysis.analyze

    def slow_analyze(*args, **kwargs):
        computing.set()
        release.wait(30)
        return analyze(*args, **kwargs)

    monkeypatch.setattr(dsviewer.viewer.analysis, "analyze", slow_analyze)
    loaded = make_loaded(V, H, W)
    app = ViewerApp(server, scene_specs=["plane"])
    start = time.perf_counter()
    app.show(loaded)
    assert computing.wait(10)  # the job thread is inside the analysis ...
    app.show(loaded)  # ... and the GUI thread shows the scene again without waiting for it
    assert time.perf_counter() - start < 5
    assert cloud(server, "/runs/0/final/view_0").points.shape == (H * W, 3)
    release.set()
    assert app.wait_idle(60)
    assert loaded.cached_analysis(app.state.analysis) is not None
    app.close()


def test_shared_viewer_opens_only_allowed_specs(server, loaded):
    calls = []
    app = ViewerApp(server, loader=lambda spec, progress: calls.append(spec) or loaded,
                    scene_specs=["plane"],
                    spec_check=lambda spec: None if spec == "plane" else "not allowed")  # fmt: skip
    assert app.load_async("/etc") is None and "not allowed" in app.scene_panel.status.content
    app.load_async("plane").join(10)
    assert calls == ["plane"]


class _FakeCamera:
    position = look_at = up_direction = fov = None


class _FakeClient:
    """Stands in for a browser client: records where the app puts its camera."""

    def __init__(self) -> None:
        self.camera = _FakeCamera()

    def atomic(self):
        import contextlib

        return contextlib.nullcontext()


def test_frustum_click_selects_and_view_through_moves_the_camera(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    client = _FakeClient()
    app.cameras_panel.reset_client(client)
    start = app.loaded.view.start
    np.testing.assert_allclose(client.camera.position, start.position)
    app.cameras_panel._select("context", 1)  # what a click on frustum 1 does: select, no move
    assert app.cameras_panel.choice.value == "context 1: frame 10"
    np.testing.assert_allclose(client.camera.position, start.position)
    app.cameras_panel.look_through(client, *app.cameras_panel.chosen())
    T = loaded.layers.context.T_world_cam[1].numpy()
    np.testing.assert_allclose(client.camera.position, T[:3, 3])
    forward = client.camera.look_at - client.camera.position
    np.testing.assert_allclose(forward / np.linalg.norm(forward), T[:3, 2], atol=1e-9)
    K = loaded.layers.context.intrinsics[1]
    assert client.camera.fov == pytest.approx(2 * np.arctan(0.5 / float(K[1, 1])))
    # Seen from inside, the frustums' images and wires would fill the view: hidden until reset.
    frustums = app.cameras_panel.frustums["context"]
    assert not any(f.visible for f in frustums[:V])
    app.cameras_panel.reset_client(client)
    assert all(f.visible for f in frustums[:V])
    app.close()


def test_every_colour_mode_is_offered_and_drawn(server, loaded):
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    assert app.wait_idle(60)
    assert list(app.colours_panel.mode_dropdown.options) == [m.label for m in COLOR_MODES.values()]
    for key in COLOR_MODES:
        app.colours_panel.set_mode(key)
        colors = cloud(server, "/runs/0/final/view_0").colors
        assert colors.shape == (H * W, 3) and colors.dtype == np.uint8
        assert app.colours_panel.legend.image.shape[1] == 320


def test_two_runs_are_drawn_and_inspected_together(server, loaded):
    """Two runs of one scene at different resolutions: clouds per run, placement side by side,
    and the inspector reports the same ray's pixel in both."""
    from dsviewer.viewer.session.runs import Run
    from dsviewer.viewer.session.specs import RunSpec

    half = make_loaded(V, H // 2, W // 2)
    runs = [
        Run("full", RunSpec(Path("full.pth")), loaded),
        Run("half", RunSpec(Path("half.pth")), half),
    ]
    app = ViewerApp(server, scene_specs=["plane"])
    app.show_runs(runs)
    assert app.runs_panel.a.value == "full" and app.runs_panel.b.value == "half"
    assert cloud(server, "/runs/1/final/view_0").points.shape == ((H // 2) * (W // 2), 3)
    app.runs_panel.placement.value = "side by side"
    offset = np.asarray(app.clouds.slots[1].root.position)
    assert np.linalg.norm(offset) > 0 and np.allclose(app.clouds.slots[0].root.position, 0)
    report = app.inspector_panel.inspect_pixel(1, 9, 5)
    (_, a), (name, b) = app.inspector_panel.reports
    assert a is report and name == "half"
    assert (b.view, b.u, b.v) == (1, 9 // 2, 5 // 2)  # the same ray at half the resolution
    assert b.final_depth == pytest.approx(a.final_depth, rel=0.02)
    assert "| | full | half |" in app.inspector_panel.text.content
    assert len(app.inspector_panel.plot.data) == 3  # depth + one curve per run
    app.runs_panel.toggles[1].value = False  # hide run B
    assert app.clouds.slots[1].root.visible is False
    app.runs_panel.a.value = "half"  # the folders now describe run B
    assert app.loaded is half
    app.close()


def test_replaced_runs_are_told_apart_by_identity(server, loaded):
    """A job of a run that a scene switch replaced asks ``run in app.runs``: that compares by
    identity (value equality would compare the runs' tensors and raise), and no job fails."""
    from dsviewer.viewer.session.runs import Run
    from dsviewer.viewer.session.specs import RunSpec

    old = Run("a", RunSpec(Path("a.pth")), loaded)
    current = [Run("a", RunSpec(Path("a.pth")), loaded), Run("b", RunSpec(Path("b.pth")), loaded)]
    assert old not in current and current[1] in current
    app = ViewerApp(server, scene_specs=["plane"])
    for _ in range(3):  # analysis jobs of the first pair still queued when the second is shown
        app.show_runs([Run("a", RunSpec(Path("a.pth")), loaded),
                       Run("b", RunSpec(Path("b.pth")), make_loaded(V, H // 2, W // 2))])
    assert app.wait_idle(60)
    assert "failed" not in app.analysis_panel.table.content
    app.close()


def test_b_minus_a_colours_each_run_by_the_other_runs_depth(server, loaded):
    """Run B's final depth is run A's times 1.1 (same cameras): on A's pixels B - A = 0.1 d_A,
    on B's pixels d_B - d_B / 1.1; one colour range (from A's pixels) for both."""
    from viewer_scenes import make_prediction, make_scene

    from dsviewer.viewer.session.loaded import run_prediction
    from dsviewer.viewer.session.runs import Run
    from dsviewer.viewer.session.specs import RunSpec

    scene = make_scene(V, H, W)
    farther = make_prediction(scene)
    farther.final_depth *= 1.1
    b = run_prediction(scene, lambda _scene: farther)
    app = ViewerApp(server, scene_specs=["plane"], point_budget=10**6)
    app.show_runs([Run("a", RunSpec(Path("a.pth")), loaded), Run("b", RunSpec(Path("b.pth")), b)])
    assert app.wait_idle(60)
    app.colours_panel.set_mode("difference")
    app.colours_panel.residual_unit.value = "metric (final - coarse)"
    d_a = loaded.layers.final_depth.numpy().reshape(V, -1)
    expected_a = 0.1 * d_a
    limit = colormaps.robust_limit(expected_a, 98.0)
    for slot, expected in ((0, expected_a), (1, 1.1 * d_a - d_a)):
        pixels = app.clouds.slots[slot].shown[("final", 0)]
        colors = cloud(server, f"/runs/{slot}/final/view_0").colors
        seen = colors.astype(int).sum(-1) != 3 * 128  # the outer half-pixel ring is unseen
        assert seen.mean() > 0.8
        np.testing.assert_array_equal(
            colors[seen], colormaps.apply_diverging(expected[0][pixels][seen], limit)
        )
    assert app.runs_panel.b.options[-1] == "gt"  # GT compares like a run
    app.runs_panel.b.value = "gt"
    assert app.wait_idle(60)
    gt = loaded.layers.gt_depth.numpy().reshape(V, -1)
    colors = cloud(server, "/runs/0/final/view_1").colors
    np.testing.assert_array_equal(
        colors,
        colormaps.apply_diverging(
            (gt - d_a)[1][app.clouds.slots[0].shown[("final", 1)]],
            colormaps.robust_limit(gt - d_a, 98.0),
        ),
    )  # exact final depth: all white
    app.close()


def test_dropping_runs_for_memory_keeps_the_chosen_a_and_b(server, loaded, monkeypatch):
    """Runs r0..r2 with A = r1; New run r3 becomes B and the budget drops r0, which sits before
    A in the list: A must still be r1 (not the run that took its index), and nothing fails."""
    from dsviewer.viewer.gui import runs_panel
    from dsviewer.viewer.session.runs import Run, estimated_bytes
    from dsviewer.viewer.session.specs import RunSpec

    app = ViewerApp(server, scene_specs=["plane"])
    app.show_runs([Run(f"r{i}", RunSpec(Path(f"r{i}.pth")), loaded) for i in range(3)])
    app.runs_panel.a.value = "r1"
    app.runs_panel.b.value = "r0"  # B is dropped only when not compared: B moves to r3 below
    assert app.wait_idle(60)  # the analysis is cached now: the size of a run stays
    monkeypatch.setattr(runs_panel, "RUN_MEMORY_BUDGET", int(3.5 * estimated_bytes(loaded)))
    app.add_run(Run("r3", RunSpec(Path("r3.pth")), loaded))
    assert app.wait_idle(60)
    assert [run.name for run in app.runs] == ["r1", "r2", "r3"]
    assert app.state.run_a.name == "r1" == app.runs_panel.a.value
    assert app.state.partner == Partner("r3") and app.runs_panel.b.value == "r3"
    assert "r0" in app.runs_panel.note.content
    assert "failed" not in app.runs_panel.status.content + app.analysis_panel.table.content
    app.close()


def test_the_inspector_stays_on_the_clicked_run(server, loaded):
    """A click on run B's pixel, then an analysis refresh: the report stays on B's pixel (B is
    larger than A here, so reading B's pixel in A would fail)."""
    from dsviewer.viewer.session.runs import Run
    from dsviewer.viewer.session.specs import RunSpec

    half = make_loaded(V, H // 2, W // 2)
    runs = [Run("half", RunSpec(Path("half.pth")), half), Run("full", RunSpec(Path("full.pth")),
                                                               loaded)]  # fmt: skip
    app = ViewerApp(server, scene_specs=["plane"])
    app.show_runs(runs)
    with app.lock:
        app.inspector_panel._show(1, W - 2, H - 3, runs[1])  # what a click on B's point does
    app.inspector_panel.refresh()
    assert app.inspector_panel.run is runs[1]
    assert app.inspector_panel.reports[0][0] == "full"
    assert (app.inspector_panel.report.u, app.inspector_panel.report.v) == (W - 2, H - 3)
    report = app.inspector_panel.inspect_pixel(1, W - 2, H - 3)  # the fields' pixel is B's too
    assert app.inspector_panel.reports[0] == ("full", report)
    app.close()


def test_scene_switch_keeps_the_chosen_a_and_b(server, loaded):
    from dsviewer.viewer.session.runs import Run
    from dsviewer.viewer.session.specs import RunSpec

    def runs():
        return [Run(n, RunSpec(Path(f"{n}.pth")), loaded) for n in ("x", "y", "z")]

    app = ViewerApp(server, scene_specs=["plane"])
    app.show_runs(runs())
    assert (app.runs_panel.a.value, app.runs_panel.b.value) == ("x", "y")
    app.runs_panel.a.value = "z"
    app.runs_panel.b.value = "gt"
    app.show_runs(runs())  # the same definitions on the next scene
    assert (app.runs_panel.a.value, app.runs_panel.b.value) == ("z", "gt")
    assert app.wait_idle(60)
    app.close()

"""The GUI's ViewState: the drawing code follows it alone, the folders write it, B is a value.

The point clouds and the legend are built here from a ``ViewState`` with no folder at all (no
widget exists to read), and compared with the points and colours computed in the test from the
layers. The folders are checked to write their settings as values (registry keys, numbers,
``Partner``), and ``dsviewer.viewer.gui``'s imports are walked for circles.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from viewer_scenes import make_loaded

from dsviewer.viewer import colormaps
from dsviewer.viewer.color_modes import ColorContext, legend_image
from dsviewer.viewer.gui.colors import RunColors, legend, modes_in_use
from dsviewer.viewer.gui.context import GuiContext
from dsviewer.viewer.gui.points import RunClouds
from dsviewer.viewer.gui.state import GROUND_TRUTH, Partner, PointSettings, ViewState
from dsviewer.viewer.jobs import JobQueue
from dsviewer.viewer.point_layers import POINT_LAYERS
from dsviewer.viewer.session.runs import Run
from dsviewer.viewer.session.specs import RunSpec

V, H, W = 3, 12, 16
GUI = "dsviewer.viewer.gui"
FOLDER_MODULES = {"scene_panel", "runs_panel", "display_panels", "cameras_panel", "analysis_panel",
                  "inspector_panel", "splats", "targets_panel", "export_panel",
                  "maps_panel"}  # fmt: skip


@pytest.fixture(scope="module")
def loaded():
    return make_loaded(V, H, W)


def _run(name: str, loaded) -> Run:
    return Run(name, RunSpec(Path(f"{name}.pth")), loaded)


@pytest.fixture
def drawing(server, loaded):
    """A state with one run, and the clouds drawn from it; no GUI folder is built."""
    errors = []
    state = ViewState(runs=[_run("a", loaded)])
    jobs = JobQueue(lambda name, error: errors.append((name, error)))
    context = GuiContext(server, state, threading.RLock(), jobs)
    colors = RunColors(state)
    yield state, colors, RunClouds(context, colors)
    jobs.close()
    assert not errors


def _expected_pixels(loaded, layer: str, view: int, min_confidence_pct: float) -> np.ndarray:
    """The pixels a confidence percentile keeps, from the layers (no budget, no depth range)."""
    confidence = loaded.layers.confidence.numpy().reshape(V, -1)
    threshold = np.percentile(confidence, min_confidence_pct)
    flat = loaded.flat(layer)
    return np.flatnonzero(flat.valid[view] & (confidence[view] >= threshold))


def test_clouds_draw_what_the_state_selects(server, loaded, drawing):
    state, _, clouds = drawing
    state.layers_shown = {key: key in ("final", "coarse") for key in POINT_LAYERS}
    state.views_hidden = {2}
    state.color_mode = "confidence"
    state.points = PointSettings(min_confidence_pct=40.0, budget=10**6)
    clouds.show(state.runs)
    slot = clouds.slots[0]
    confidence = loaded.layers.confidence.numpy().reshape(V, -1)
    # The percentile is of every view's confidence: view 0 keeps none, view 1 some, view 2 all.
    assert _expected_pixels(loaded, "final", 0, 40.0).size == 0
    assert 0 < _expected_pixels(loaded, "final", 1, 40.0).size < H * W
    for layer in ("final", "coarse"):
        assert slot.frames[layer].visible
        for v in range(V):
            pixels = _expected_pixels(loaded, layer, v, 40.0)
            handle = server.scene._handle_from_node_name[f"/runs/0/{layer}/view_{v}"]
            assert handle.visible == (pixels.size > 0 and v != 2)
            if pixels.size == 0:  # nothing kept: hidden
                continue
            np.testing.assert_array_equal(handle.points, loaded.flat(layer).points[v, pixels])
            np.testing.assert_array_equal(
                handle.colors, colormaps.apply_sequential(confidence[v, pixels], 0.0, 1.0)
            )
    assert not any(slot.frames[key].visible for key in ("residual", "gt", "centers"))
    assert "residual" in slot.stale  # hidden layers are not sent until shown

    # Colour by depth: one range (of the final depth) for every layer, colours only re-sent.
    state.color_mode = "depth"
    clouds.refresh_colors()
    final = loaded.flat("final")
    low, high = colormaps.robust_range(final.depth[final.valid])
    for layer in ("final", "coarse"):
        depth = loaded.flat(layer).depth
        for v in (1, 2):
            pixels = _expected_pixels(loaded, layer, v, 40.0)
            handle = server.scene._handle_from_node_name[f"/runs/0/{layer}/view_{v}"]
            np.testing.assert_array_equal(
                handle.colors, colormaps.apply_sequential(depth[v, pixels], low, high)
            )

    state.views_hidden.clear()
    clouds.refresh_view_visibility()
    assert server.scene._handle_from_node_name["/runs/0/final/view_2"].visible
    state.layers_shown["final"] = False
    clouds.set_layer_visible("final")
    assert not slot.frames["final"].visible


def test_the_budget_and_point_size_come_from_the_state(server, loaded, drawing):
    state, _, clouds = drawing
    state.points = PointSettings(budget=V * 20, subsample="stride", pixels=3.0)
    clouds.show(state.runs)
    final = loaded.flat("final")
    for v in range(V):
        valid = np.flatnonzero(final.valid[v])
        stride = int(np.ceil(valid.size / 20))
        handle = server.scene._handle_from_node_name[f"/runs/0/final/view_{v}"]
        np.testing.assert_array_equal(handle.points, final.points[v, valid[::stride]])
        # 3 context pixels at the median depth: 3 * median depth / focal length in pixels.
        depth = final.depth[final.valid]
        focal = float(np.median(loaded.layers.context.intrinsics[:, 0, 0].numpy())) * W
        assert handle.point_size == pytest.approx(3.0 * np.median(depth) / focal, rel=1e-5)


def test_legend_follows_the_state(loaded, drawing):
    state, colors, _ = drawing
    state.color_mode = "depth"
    state.layers_shown = {key: key in ("final", "coarse") for key in POINT_LAYERS}
    assert modes_in_use(state) == ["depth"]
    state.layers_shown["residual"] = True  # its colour mode is fixed: a second legend
    assert modes_in_use(state) == ["residual", "depth"]  # in registry order
    state.layers_shown = dict.fromkeys(POINT_LAYERS, False)
    assert modes_in_use(state) == ["depth"]  # nothing shown: the chosen mode's legend
    state.layers_shown["residual"] = True
    assert modes_in_use(state) == ["residual"]

    state.layers_shown["final"] = True
    image = legend(state, colors)
    # The depth legend, made from a fresh context of the same layers and settings, is the
    # bottom block; the residual's (with its title) is above it.
    depth = legend_image(ColorContext(loaded.layers, None, state.color), "depth")
    residual = legend_image(ColorContext(loaded.layers, None, state.color), "residual")
    title = colormaps.text_image("Depth", height=20)
    assert image.shape[0] == 2 * title.shape[0] + depth.shape[0] + residual.shape[0]
    np.testing.assert_array_equal(image[-depth.shape[0] :], depth)
    np.testing.assert_array_equal(image[title.shape[0] : title.shape[0] + residual.shape[0]],
                                  residual)  # fmt: skip


def test_folders_write_values_into_the_state(server, loaded):
    from dsviewer.viewer.gui.app import ViewerApp

    app = ViewerApp(server, scene_specs=["plane"])
    app.show_runs([_run("r0", loaded), _run("r1", loaded)])
    state = app.state
    assert state.partner == Partner("r1") and state.run_b() is app.runs[1]
    app.runs_panel.b.value = "(none)"  # the label of "no B" is never stored
    assert state.partner is None and state.run_b() is None
    app.runs_panel.b.value = "gt"
    assert state.partner == GROUND_TRUTH and state.partner.is_gt and state.run_b() is None
    app.runs_panel.a.value = "r1"
    assert state.run_a is app.runs[1] and state.primary == 1
    app.colours_panel.set_mode("gt_error")
    app.colours_panel.residual_unit.value = "metric (final - coarse)"
    app.colours_panel.percentile.value = 90.0
    assert state.color_mode == "gt_error"
    assert (state.color.residual_unit, state.color.percentile) == ("metric", 90.0)
    app.points_panel.depth_range.value = (10.0, 80.0)
    app.points_panel.hide_flying.value = True
    assert state.points.depth_range_pct == (10.0, 80.0) and state.points.uses_analysis
    app.analysis_panel.occlusions.value = "skip"
    assert state.analysis.consistency_occlusions == "skip"
    app.layers_panel.toggles["gt"].value = True
    app.views_panel.toggles[2].value = False
    assert state.layers_shown["gt"] and state.views_hidden == {2}
    app.runs_panel.placement.value = "side by side"
    assert state.placement == "side by side"
    assert app.wait_idle(60)
    app.close()


# --- the import graph --------------------------------------------------------------------------


def test_gui_imports_flow_one_way_and_folders_never_import_each_other():
    """The product-wide walk (tests/test_import_graph.py: lazy and TYPE_CHECKING imports
    count) restricted to viewer/gui: no circle, and a folder imports neither the app nor
    another folder (it gets a GuiContext and callbacks instead)."""
    from test_import_graph import cycles, import_graph

    inside = GUI + "."
    graph = {
        module: {t for t in targets if t.startswith(inside)}
        for module, targets in import_graph().items()
        if module.startswith(inside)
    }
    assert not cycles(graph)
    # The walk sees imports of every kind (not an empty graph that passes by itself).
    assert f"{GUI}.display_panels" in graph[f"{GUI}.app"]
    assert f"{GUI}.state" in graph[f"{GUI}.colors"]  # under TYPE_CHECKING
    folders = {f"{GUI}.{name}" for name in FOLDER_MODULES}
    assert folders <= set(graph)
    for folder in folders:
        assert not graph[folder] & (folders | {f"{GUI}.app"}), folder

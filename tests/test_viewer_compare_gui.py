"""The comparison GUI against a real ``viser.ViserServer``, no browser (issue 19, item 3).

Two runs of the hand-built plane: A exact, B with every final depth 1.1 times A's and other
cost-volume candidates, so B - A along each ray is 0.1 x A's depth, known at every pixel.
What needs a page (the plot drawn, the typed scene spec, the console) is in
``test_browser_compare.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from viewer_scenes import FAR, NEAR, make_prediction, make_scene

from dsviewer.viewer.gui.app import ViewerApp
from dsviewer.viewer.gui.state import Partner
from dsviewer.viewer.inspector import inspect_pixel, probability_series

V, H, W = 2, 24, 32
SCALE_B = 1.1
D_B = 6  # B's depth candidates (A's: 4, between the same planes)


def _prediction_b(scene):
    """A's prediction with every final depth times SCALE_B and D_B other candidates."""
    pred = make_prediction(scene)
    h, w = pred.confidence.shape[-2:]
    candidates = torch.linspace(1 / 50.0, 1 / 1.0, D_B)[None, :, None, None].expand(V, D_B, h, w)
    probs = torch.softmax(torch.randn(V, D_B, h, w, dtype=torch.float64), dim=1)
    return dataclasses.replace(pred, final_depth=pred.final_depth * SCALE_B,
                               inv_depth_candidates=candidates.clone(),
                               match_probs=probs)  # fmt: skip


@pytest.fixture(scope="module")
def runs_ab():
    from dsviewer.viewer.session.loaded import run_prediction
    from dsviewer.viewer.session.runs import Run
    from dsviewer.viewer.session.specs import RunSpec

    scene = make_scene(V, H, W)
    a = run_prediction(scene, make_prediction)
    b = run_prediction(scene, _prediction_b)
    return lambda: [Run("a", RunSpec(Path("a.pth")), a), Run("b", RunSpec(Path("b.pth")), b)]


def test_probability_curves_of_other_candidates_share_one_depth_axis(runs_ab):
    from dsviewer.viewer.gui.inspector_panel import probability_plot

    a, b = (run.loaded for run in runs_ab())
    reports = [("a", inspect_pixel(a.layers, 0, 5, 7)), ("b", inspect_pixel(b.layers, 0, 5, 7))]
    (x, *curves), series, x_range = probability_plot(reports)
    assert [s["label"] for s in series] == ["depth", "a", "b"]
    assert all(np.isfinite(y).all() for y in curves)  # uPlot draws no path through NaN
    assert x_range == [NEAR, FAR]
    for (_, report), y in zip(reports, curves, strict=True):
        # At the run's own candidates (depth = 1 / inverse depth): its probabilities exactly.
        depth = 1.0 / report.candidate_inv_depth
        at = np.searchsorted(x, depth)
        np.testing.assert_allclose(x[at], depth, rtol=1e-12)
        np.testing.assert_allclose(y[at], report.probability, rtol=1e-12)
        assert (y[(x < depth.min()) | (x > depth.max())] == 0).all()  # no candidate there
        # Between two candidates: the straight line on the plot's log-depth axis.
        d0, d1 = np.sort(depth)[:2]
        p0, p1 = report.probability[np.argsort(depth)[:2]]
        inside = (x > d0) & (x < d1)
        t = (np.log(x[inside]) - np.log(d0)) / (np.log(d1) - np.log(d0))
        np.testing.assert_allclose(y[inside], p0 + t * (p1 - p0), rtol=1e-9)
    assert len(probability_series(reports[1][1]).depth) == D_B


def test_inspector_fills_b_minus_a_and_splits_wide_tables(server, runs_ab):
    from dsviewer.viewer.session.runs import Run

    app = ViewerApp(server, scene_specs=["plane"])
    runs = runs_ab()
    app.show_runs(runs)
    app.colours_panel.residual_unit.value = "metric (final - coarse)"
    app.colours_panel.set_mode("difference")
    assert app.wait_idle(60)
    view, u, v = 1, 9, 5
    report = app.inspector_panel.inspect_pixel(view, u, v)
    depth_a = float(runs[0].loaded.layers.final_depth[view, v, u])
    # Same cameras: B's depth along A's ray is 1.1 d_A (read bilinearly on a plane: exact).
    assert report.mode_values["difference"] == pytest.approx((SCALE_B - 1) * depth_a, rel=1e-4)
    text = app.inspector_panel.text.content
    row = next(line for line in text.splitlines() if line.startswith("| b - a (final)"))
    assert f"{(SCALE_B - 1) * depth_a:.4g}" in row
    # A third run: the report is split into tables of at most RUNS_PER_TABLE runs each.
    from dsviewer.viewer.gui.inspector_panel import RUNS_PER_TABLE

    app.add_run(Run("c", runs[0].spec, runs[0].loaded))
    assert app.wait_idle(60)
    app.inspector_panel.inspect_pixel(view, u, v)
    headers = [line for line in app.inspector_panel.text.content.splitlines()
               if line.startswith("| |")]  # fmt: skip
    assert len(headers) == 2
    assert all(header.count("|") - 2 <= RUNS_PER_TABLE for header in headers)
    app.close()


def test_the_analysis_table_names_run_a(server, runs_ab):
    app = ViewerApp(server, scene_specs=["plane"])
    app.show_runs(runs_ab())
    assert app.wait_idle(60)
    assert "A: a" in app.analysis_panel.described.content
    app.runs_panel.a.value = "b"
    assert app.wait_idle(60)
    assert "A: b" in app.analysis_panel.described.content
    app.close()


def test_labels_say_which_cluster_is_which(server, runs_ab):
    app = ViewerApp(server, scene_specs=["plane"])
    runs = runs_ab()
    app.show_runs(runs)
    labels = [app.server.scene._handle_from_node_name[f"/runs/{i}/label"] for i in range(2)]
    assert [label.text for label in labels] == ["A: a", "B: b"]
    app.runs_panel.a.value = "b"
    app.runs_panel.b.value = "a"
    assert [label.text for label in labels] == ["B: a", "A: b"]
    # Side by side: each label stands over its own cluster, where that cluster is drawn.
    app.runs_panel.placement.value = "side by side"
    right = runs[0].loaded.layers.context.T_world_cam[:, :3, 0].double().mean(0).numpy()
    for slot, (run, label) in enumerate(zip(runs, labels, strict=True)):
        final = run.loaded.flat("final")
        shift = np.asarray(app.clouds.slots[slot].root.position)
        along = (final.points[final.valid] + shift) @ right
        where = (np.asarray(label.position) + shift) @ right
        assert along.min() <= where <= along.max()
    app.close()


def _inside_view(camera, points: np.ndarray) -> bool:
    """Whether every point lies within a camera's vertical field of view cone (a square view
    would crop at this angle; the browser's is wider than tall)."""
    forward = np.asarray(camera.look_at, float) - np.asarray(camera.position, float)
    forward /= np.linalg.norm(forward)
    rays = points - np.asarray(camera.position, float)
    cos = rays @ forward / np.linalg.norm(rays, axis=1)
    return bool((np.arccos(np.clip(cos, -1, 1)) < 0.5 * camera.fov).all())


def test_side_by_side_and_reset_view_frame_every_shown_run(server, runs_ab):
    app = ViewerApp(server, scene_specs=["plane"])
    runs = runs_ab()
    app.show_runs(runs)
    app.runs_panel.placement.value = "side by side"
    assert app.wait_idle(60)
    camera = app.server.initial_camera  # what a page opening now, and Reset view, get
    for slot, run in enumerate(runs):
        final = run.loaded.flat("final")
        points = final.points[final.valid] + np.asarray(app.clouds.slots[slot].root.position)
        low, high = np.percentile(points, [5, 95], axis=0)
        assert _inside_view(camera, np.stack([low, high, 0.5 * (low + high)]))
    app.close()


def test_remove_b(server, runs_ab):
    from dsviewer.viewer.session.runs import Run

    app = ViewerApp(server, scene_specs=["plane"])
    runs = runs_ab()
    app.show_runs([*runs, Run("c", runs[0].spec, runs[0].loaded)])
    app.runs_panel.b.value = "b"
    assert not app.runs_panel.remove.disabled
    app.remove_b()  # what the Remove B button calls
    assert [run.name for run in app.runs] == ["a", "c"]
    assert app.state.partner == Partner("c") and app.runs_panel.b.value == "c"
    assert "Removed b" in app.runs_panel.status.content
    app.close()


def test_points_sent_counts_shown_layers_only(server, runs_ab):
    app = ViewerApp(server, scene_specs=["plane"], point_budget=10**6)
    app.show_runs(runs_ab())
    final = 2 * V * H * W  # every pixel of two runs (the plane is valid everywhere)
    coarse = sum(int(app.runs[r].loaded.flat("coarse").valid.sum()) for r in range(2))
    toggle = app.layers_panel.toggles["coarse"]
    for shown, count in ((True, final + coarse), (False, final)):
        toggle.value = shown
        assert f"{count:,} points sent" in app.points_panel.readout.content
    app.points_panel.min_confidence.value = 1.0  # re-selects: the hidden layer is not counted
    kept = sum(len(slot.shown[("final", v)]) for slot in app.clouds.slots[:2] for v in range(V))
    assert 0 < kept < final
    assert f"{kept:,} points sent" in app.points_panel.readout.content
    app.close()


def test_overlays_hide_the_points_they_lie_in(server, runs_ab):
    app = ViewerApp(server, scene_specs=["plane"])
    runs = runs_ab()
    app.show_runs(runs)
    roots = [slot.root for slot in app.clouds.slots]
    assert all(root.visible for root in roots)
    app.vectors_panel.toggle.value = True  # stride 8: segments per view, none hidden by points
    assert not any(root.visible for root in roots)
    assert all(len(handle.points) > 1 and handle.visible for handle in app.vectors_panel.handles)
    assert "residual vectors" in app.layers_panel.covered.content
    app.vectors_panel.toggle.value = False
    app.gaussians_panel.toggle.value = True  # overlaid
    assert not any(root.visible for root in roots) and app.gaussians_panel.handle.visible
    app.gaussians_panel.placement.value = "side by side"
    assert all(root.visible for root in roots)
    assert app.layers_panel.covered.content == ""
    app.close()


def test_target_column_is_one_panel_wide(runs_ab):
    from dsviewer.viewer.gui.targets_panel import CAPTION_HEIGHT, COLUMN_WIDTH, target_column

    renders = runs_ab()[0].loaded.targets
    column = target_column(renders)
    T, _, h, w = renders.color.shape
    k = int(np.ceil(COLUMN_WIDTH / w))  # 32 px wide renders: each pixel 10 x 10
    assert column.shape == (T * 3 * (CAPTION_HEIGHT + k * h), k * w, 3)
    for index, images in ((0, renders.color), (1, renders.gt)):  # rendered, then GT
        top = (index + 1) * CAPTION_HEIGHT + index * k * h
        expected = (images[0].clamp(0, 1).permute(1, 2, 0).numpy() * 255).round()
        np.testing.assert_array_equal(column[top : top + k * h : k, ::k], expected.astype(np.uint8))
        np.testing.assert_array_equal(column[top + k - 1 : top + k * h : k, k - 1 :: k],
                                      expected.astype(np.uint8))  # fmt: skip


def test_scene_field_takes_typed_specs_and_promises_only_what_it_opens(server):
    app = ViewerApp(server, scene_specs=["k1", "k2"], loader=lambda spec, progress: None,
                    spec_check=lambda spec: None)  # fmt: skip
    panel = app.scene_panel
    assert panel.given.options == ("k1", "k2") and panel.spec.value == "k1"
    panel.given.value = "k2"
    assert panel.spec.value == "k2"  # picking a given scene fills the text field
    panel.spec.value = "typed_key"  # a text field keeps what is typed
    assert panel.spec.value == "typed_key"
    assert "folder" not in panel.spec.hint and "no typed paths" in panel.spec.hint
    app.close()

"""SfM metrics wherever GT metrics appear: metrics.json, sfm.ply, scene.html, the Analysis
table, scenes.csv's columns, compare.json (SfM as a run like GT)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_sfm_metrics import loaded, plane_prediction
from test_sfm_reference import two_camera_capture

from dsviewer.io.ply import read_point_cloud_ply
from dsviewer.viewer.analysis import analyze
from dsviewer.viewer.evaluation.columns import METRIC_BY_NAME, METRIC_NAMES
from dsviewer.viewer.evaluation.scene_metrics import evaluate_scene
from dsviewer.viewer.export import ExportSettings, export_scene
from dsviewer.viewer.export.compare_files import compare_json
from dsviewer.viewer.gui.analysis_panel import statistics_markdown, summary_markdown


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    folder = tmp_path_factory.mktemp("capture")
    two_camera_capture(folder, binary=True)
    return folder


def test_export_holds_the_sfm_metrics_layer_and_html(capture, tmp_path):
    scene = loaded(capture)
    export_scene(tmp_path / "out", scene, ExportSettings())
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    sfm = metrics["sfm"]
    assert sfm["final"]["per_view"][0]["abs_rel"] == pytest.approx(0.1, rel=1e-4)
    assert sfm["final"]["per_view"][1]["median_ratio"] == pytest.approx(0.8, rel=1e-4)
    assert sfm["per_view_points"] == [v.count for v in scene.scene.context.sfm.views]
    cloud = read_point_cloud_ply(tmp_path / "out" / "sfm.ply")
    assert len(cloud.points) == int((scene.layers.sfm.index_map >= 0).sum())
    error = cloud.properties["scalar_sfm_error"]
    expected = np.where(cloud.properties["scalar_view"] == 0, 0.1, -0.2)
    np.testing.assert_allclose(error, expected, atol=1e-4)
    html = (tmp_path / "out" / "scene.html").read_text()
    assert "SfM points: Error vs SfM" in html and "SfM points" in html


def test_analysis_table_shows_sfm_rows_and_too_few(capture):
    scene = loaded(capture)
    analysis = analyze(scene.layers)
    summary = analysis.summary()
    table = summary_markdown(summary)
    points = summary["sfm"]["final"]["overall"]["points"]
    row = next(line for line in table.splitlines() if line.startswith("| AbsRel to SfM"))
    assert f"({points} points)" in row
    cells = [c.strip() for c in row.split("|")[2:4]]
    assert float(cells[0]) == pytest.approx(0.3, rel=1e-3)
    assert float(cells[1]) == pytest.approx(summary["sfm"]["final"]["overall"]["abs_rel"],
                                            rel=1e-3)
    summary["sfm"]["final"]["overall"].update(abs_rel=None, reason="too few SfM points (3 < 20)")
    assert "too few SfM points (3 < 20)" in summary_markdown(summary)
    stats = statistics_markdown(analysis, np.zeros((2, 1)), np.ones((2, 1), bool), "1/m")
    assert "Against SfM points" in stats


def test_eval_columns_carry_the_sfm_numbers(capture):
    from test_sfm_reference import SETTINGS

    from dsviewer.dataset.capture import load_capture

    class Session:  # evaluate_scene only calls predict
        predict = staticmethod(plane_prediction([1.1, 0.8], 1.3, 4.0))

    scene = load_capture(capture, SETTINGS, context=[0, 1], target=[])
    result = evaluate_scene(Session(), scene)
    summary = analyze(loaded(capture).layers).summary()["sfm"]
    for name in ("sfm_abs_rel_coarse", "sfm_abs_rel_final", "sfm_scale_final", "sfm_points"):
        assert name in METRIC_NAMES
    assert result.metrics["sfm_abs_rel_coarse"] == pytest.approx(0.3, rel=1e-4)
    assert result.metrics["sfm_abs_rel_final"] == pytest.approx(
        summary["final"]["overall"]["abs_rel"], rel=1e-9)
    assert result.metrics["sfm_scale_final"] == pytest.approx(
        summary["final"]["overall"]["median_ratio"], rel=1e-9)
    assert result.metrics["sfm_points"] == summary["final"]["overall"]["points"]
    scale = METRIC_BY_NAME["sfm_scale_final"]
    assert sorted([0.5, 1.05, 1.6], key=scale.worst_first_key) == [0.5, 1.6, 1.05]


def test_compare_json_uses_sfm_like_gt(capture):
    one = loaded(capture, factors=(1.1, 1.1))
    two = loaded(capture, factors=(0.9, 0.9))
    one.run_name, two.run_name = "one", "two"
    compare = compare_json([one, two])
    assert compare["sfm_from_run"] == "one"
    pairs = {(p["a"], p["b"]): p for p in compare["pairs"]}
    # along the SfM pixels' centre rays, within half a pixel of the observed point: ~ exact
    assert pairs[("sfm", "one")]["depth_abs_rel_b_vs_a"] == pytest.approx(0.1, abs=2e-3)
    assert pairs[("sfm", "two")]["depth_abs_rel_b_vs_a"] == pytest.approx(0.1, abs=2e-3)
    assert pairs[("sfm", "one")]["pixels"] == int((one.layers.sfm.index_map >= 0).sum())


def test_the_viewer_draws_the_sfm_layer_in_its_error_colours(server, capture):
    from dsviewer.viewer import colormaps
    from dsviewer.viewer.gui.app import ViewerApp

    scene = loaded(capture)
    app = ViewerApp(server, scene_specs=["capture"])
    app.show(scene)
    assert app.wait_idle(60)
    app.layers_panel.toggles["sfm"].value = True
    app.colours_panel.set_mode("sfm_error")
    handle = server.scene._handle_from_node_name["/runs/0/sfm/view_0"]
    shown = (scene.layers.sfm.index_map[0] >= 0).sum()
    assert len(handle.points) == int(shown)
    # view 0's final depth is 1.1 x the truth (+0.1), view 1's 0.8 x (-0.2); the range is the
    # 98th percentile of |error| over the shown points of both views
    counts = [int((scene.layers.sfm.index_map[v] >= 0).sum()) for v in range(2)]
    limit = np.percentile(np.r_[np.full(counts[0], 0.1), np.full(counts[1], 0.2)], 98)
    expected = colormaps.apply_diverging(np.full(len(handle.points), 0.1), limit)
    assert np.abs(handle.colors.astype(int) - expected.astype(int)).max() <= 2
    app.close()

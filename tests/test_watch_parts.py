"""The pieces of ``dsviewer watch`` that need no model: the slider over step numbers, the runs
cache's memory bound, the curves' data, and bad command lines (one paragraph, exit 2)."""

from __future__ import annotations

import math

import numpy as np
import pytest


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        ([5000, 10000, 15000], (5000, 15000, 5000)),  # DepthSplat's every 5,000 steps
        ([1000, 2000, 3500, 4000], (1000, 4000, 500)),  # an irregular save: the common stride
        ([7], (7, 8, 1)),  # one step: a slider that cannot move (it is disabled)
        ([0, 3, 5], (0, 5, 1)),
    ],
)
def test_the_slider_runs_over_step_numbers_with_the_save_interval_as_stride(steps, expected):
    from dsviewer.viewer.gui.timeline_panel import nearest_step, slider_range

    assert slider_range(steps) == expected
    low, high, stride = expected
    # Every step is a slider position; a position between steps snaps to the nearest (the
    # lower one on a tie).
    assert all((step - low) % stride == 0 and low <= step <= high for step in steps)
    for value in range(low, high + 1):
        distances = [abs(step - value) for step in steps]
        assert nearest_step(steps, value) == steps[distances.index(min(distances))]


def test_the_runs_cache_drops_the_least_recently_shown_run_that_is_not_on_screen():
    from viewer_scenes import make_loaded

    from dsviewer.viewer.session.runs import estimated_bytes
    from dsviewer.viewer.watch.engine import RunCache

    runs = {step: make_loaded(2, 12, 16) for step in (1, 2, 3, 4)}
    size = estimated_bytes(runs[1])
    assert all(estimated_bytes(run) == size for run in runs.values())
    cache = RunCache(int(2.5 * size))  # room for two runs
    cache.pinned = {(1, "s")}  # step 1 is on screen (run A)
    for step in (1, 2, 3):
        cache.put((step, "s"), runs[step])
    assert [(k in cache) for k in ((1, "s"), (2, "s"), (3, "s"))] == [True, False, True]
    assert cache.get((3, "s")) is runs[3] and cache.get((2, "s")) is None
    cache.put((4, "s"), runs[4])  # 3 was used last but is not pinned: it goes, 1 stays
    assert (1, "s") in cache and (3, "s") not in cache and (4, "s") in cache
    assert cache.dropped == 2 and cache.bytes() == 2 * size <= cache.budget


def test_curves_hold_each_scenes_values_per_step_and_mark_the_shown_step():
    from dsviewer.viewer.gui.curves_panel import (
        CURVE_BY_LABEL,
        available_curves,
        curve_data,
        plot_scales,
    )

    table = {  # scene b misses step 20 (skipped in the background): a gap, not a shift
        "a": ([10, 20, 30], {"gt_abs_rel_coarse": [0.5, 0.3, 0.2],
                             "gt_abs_rel_final": [0.4, 0.25, 0.1],
                             "sfm_abs_rel_final": [None] * 3}),
        "b": ([10, 30], {"gt_abs_rel_coarse": [0.6, 0.35], "gt_abs_rel_final": [0.55, 0.3],
                         "sfm_abs_rel_final": [None, None]}),
    }  # fmt: skip
    labels = available_curves(table)
    assert "AbsRel vs GT" in labels and "AbsRel vs SfM" not in labels  # no SfM values at all
    data, series = curve_data(CURVE_BY_LABEL["AbsRel vs GT"], table, "b", 30)
    assert [s["label"] for s in series] == ["step", "a coarse", "a final", "b coarse", "b final",
                                            "shown step"]  # fmt: skip
    np.testing.assert_array_equal(data[0], [10, 20, 30])
    np.testing.assert_array_equal(data[2], [0.4, 0.25, 0.1])
    np.testing.assert_array_equal(data[4], [0.55, np.nan, 0.3])
    np.testing.assert_array_equal(data[5], [np.nan, np.nan, 0.3])  # b's final at step 30
    scales = plot_scales(data)
    assert scales["x"]["range"] == (10.0, 30.0) and scales["x"]["time"] is False
    low, high = scales["y"]["range"]
    assert low < 0.1 and high > 0.6 and math.isfinite(low) and math.isfinite(high)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["{missing}/deeper", "--scene", "k"], "does not exist or is not a folder"),
        (["{folder}"], "--scene is required"),
        (["{folder}", "--scene", "k", "--memory-gb", "0"], "--memory-gb 0"),
        ([], "Give the folder your training writes checkpoints into"),
    ],
)
def test_bad_watch_command_lines_are_one_paragraph_and_exit_2(tmp_path, capsys, args, says):
    from dsviewer.viewer.watch_cli import main

    argv = [a.format(missing=tmp_path / "missing", folder=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in " ".join(err.split()) and "Traceback" not in err

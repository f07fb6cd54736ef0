"""``dsviewer watch`` end to end: the demo trains, its checkpoints appear while the watch runs.

One watch for the module, started through the command's own code path
(``dsviewer.viewer.watch_cli``) on two demo scenes while ``scripts/train_demo.py --ckpt-every 1``
trains the demo model a few steps in its own process (then a truncated file and one of another
architecture appear beside its checkpoints). Every expected number comes
from ``dsviewer export`` of the same checkpoint files (one in-process export of all steps):
the metrics of each step, and the comparison of two steps (compare.json, compare.ply). The
browser test drives the page in headless Chromium: the slider moves, the points change, the
camera stays, Play plays, the curves hold one point per step (README's shot is
``scripts/screenshot_watch.py``'s).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pytest
from conftest import REPO_ROOT, free_port, micro_config

if TYPE_CHECKING:
    from dsviewer.viewer.watch.live import WatchViewer

STEPS = (1, 2)  # the demo training's global steps, a checkpoint after each
TARGET = 3  # one target view per scene (the export renders it)


def start_training(folder: Path) -> subprocess.Popen:
    """``scripts/train_demo.py`` in its own process: a few steps of the demo's training on the
    demo scenes from the demo weights, one Lightning checkpoint after each."""
    from dsviewer.viewer.assets import demo_checkpoint, demo_data_root

    command = [sys.executable, str(REPO_ROOT / "scripts" / "train_demo.py"), "train",
               "--data", str(demo_data_root()), "--out", str(folder), "--val-data", "None",
               "--init", str(demo_checkpoint()), "--steps", "0",
               "--finetune-steps", str(len(STEPS)), "--finetune-batch-size", "1",
               "--warmup-steps", "0", "--lr", "1e-4", "--ckpt-every", "1", "--threads", "1"]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def write_bad_files(checkpoints: Path) -> None:
    """Beside the training's files: a truncated one and one of another architecture."""
    from dsviewer.dataset.settings import settings_to_dict
    from dsviewer.model import DepthSplat
    from dsviewer.model.checkpoint import save_checkpoint
    from dsviewer.viewer.assets import demo_preprocess_settings

    data = (checkpoints / f"epoch=0-step={STEPS[0]}.ckpt").read_bytes()
    (checkpoints / "epoch=0-step=35.ckpt").write_bytes(data[: len(data) // 2])
    save_checkpoint(DepthSplat(micro_config()), checkpoints / "epoch=0-step=40.ckpt",
                    preprocess=settings_to_dict(demo_preprocess_settings()))  # fmt: skip


class Watched(NamedTuple):
    live: WatchViewer
    url: str
    folder: Path  # the training's run folder
    keys: list[str]  # the scenes; the first is shown
    console: io.StringIO  # what the command printed (the notes too)


@pytest.fixture(scope="module")
def watch(tmp_path_factory):
    from rich.console import Console

    from dsviewer.viewer import watch_cli
    from dsviewer.viewer.assets import demo_data_root, demo_scene_keys

    folder = tmp_path_factory.mktemp("training")
    training = start_training(folder)  # the watch starts once its first checkpoint is there
    first = folder / "checkpoints" / f"epoch=0-step={STEPS[0]}.ckpt"
    deadline = time.monotonic() + 120
    while not first.is_file() and time.monotonic() < deadline and training.poll() is None:
        time.sleep(0.1)
    keys = demo_scene_keys()[:2]
    port = free_port()
    options = watch_cli.parse([str(folder), "--scene", keys[0], "--scene", keys[1],
                               "--data-root", str(demo_data_root()), "--target", str(TARGET),
                               "--max-target-views", "0", "--port", str(port), "--device", "cpu",
                               "--poll-seconds", "0.2"])  # fmt: skip
    log = io.StringIO()
    server, app, live = watch_cli.start(options, console=Console(file=log, width=200),
                                        wait_seconds=120)  # fmt: skip
    output = training.communicate(timeout=240)[0].decode()
    assert training.returncode == 0, output
    write_bad_files(folder / "checkpoints")
    assert live.engine.wait_for_steps(len(STEPS), timeout=240), live.engine.notes
    assert live.wait_idle(120)
    yield Watched(live, f"http://127.0.0.1:{port}", folder, keys, log)
    live.close()
    app.close()
    server.stop()


@pytest.fixture(scope="module")
def exported(watch, tmp_path_factory):
    """``dsviewer export --ckpt`` of every step's file on the shown scene (one call)."""
    from dsviewer.viewer import export_cli
    from dsviewer.viewer.assets import demo_data_root

    folder, keys = watch.folder, watch.keys
    out = tmp_path_factory.mktemp("export") / "steps"
    args = ["--scene", keys[0], "--data-root", str(demo_data_root()), "--target", str(TARGET),
            "--device", "cpu", "--out", str(out)]  # fmt: skip
    for step in STEPS:
        args += ["--ckpt", str(folder / "checkpoints" / f"epoch=0-step={step}.ckpt")]
    assert export_cli.main(args) == 0
    return out


def run_folder(out: Path, step: int) -> Path:
    compare = json.loads((out / "compare.json").read_text())
    return out / compare["folders"][f"epoch=0-step={step}"]


def test_every_step_is_in_the_timeline_with_the_metrics_of_dsviewer_export(watch, exported):
    live, keys = watch.live, watch.keys
    engine = live.engine
    assert [s.step for s in engine.steps()] == list(STEPS)
    assert all(s.step_source == "global_step" for s in engine.steps())
    assert live.timeline.steps == list(STEPS)
    slider = live.timeline.slider  # over the step numbers, one save interval per arrow key
    assert (slider.min, slider.max, slider.step) == (STEPS[0], STEPS[-1], STEPS[1] - STEPS[0])
    for step in STEPS:
        metrics = json.loads((run_folder(exported, step) / "metrics.json").read_text())
        row = engine.rows[(step, keys[0])]
        consistency = metrics["consistency"]
        expected = {
            "gt_abs_rel_coarse": metrics["gt"]["coarse"]["overall"]["abs_rel"],
            "gt_abs_rel_final": metrics["gt"]["final"]["overall"]["abs_rel"],
            "gt_delta_final": metrics["gt"]["final"]["overall"]["delta"],
            "inconsistent_coarse": consistency["coarse"]["overall"]["inconsistent_share"],
            "inconsistent_final": consistency["final"]["overall"]["inconsistent_share"],
            "clamp_final": metrics["clamp"]["final_at_near_share"]
            + metrics["clamp"]["final_at_far_share"],
            "confidence_mean": metrics["confidence"]["mean"],
            "residual_abs_mean": metrics["residual"]["abs_metric_mean"],
        }  # fmt: skip
        for name, value in expected.items():
            assert row[name] == pytest.approx(value, rel=1e-9, abs=1e-12), (step, name)
        assert (step, keys[1]) in engine.rows  # the other scene ran in the background
    finals = [engine.rows[(step, keys[0])]["gt_abs_rel_final"] for step in STEPS]
    assert len(set(finals)) == len(STEPS)  # the weights changed from step to step
    # The curves plot those numbers: x = steps, the shown scene's final AbsRel, the marker.
    live.curves.metric.value = "AbsRel vs GT"
    data, series = live.curves.plot.data, live.curves.plot.series
    assert list(data[0]) == list(STEPS)
    labels = [s["label"] for s in series]
    final = np.asarray(data[labels.index(f"{keys[0]} final")])
    np.testing.assert_allclose(final, finals, rtol=1e-12)
    marker = np.asarray(data[-1])
    shown = live.timeline.shown_step()
    assert np.isfinite(marker).sum() == 1 and marker[list(STEPS).index(shown)] == pytest.approx(
        engine.rows[(shown, keys[0])]["gt_abs_rel_final"])
    # The truncated file and the other architecture are notes in the GUI; the watch went on.
    notes = live.timeline.notes.content
    assert "step&#61;35" in notes and "step&#61;40" in notes, notes
    assert "architecture" in notes
    printed = " ".join(watch.console.getvalue().split())
    assert "epoch=0-step=35.ckpt" in printed and "epoch=0-step=40.ckpt" in printed


def test_two_steps_as_a_and_b_compare_as_dsviewer_export_compares_two_checkpoints(watch,
                                                                                   exported):
    from dsviewer.viewer.compare import compare_pair, run_source

    live = watch.live
    app = live.app
    live.timeline.follow.value = False
    with app.lock:
        app.inspector_panel.inspect_pixel(1, 40, 70)  # a pixel inspected at the newest step
    live.timeline.slider.value = STEPS[0]  # A: the first step
    live.timeline.compare.value = str(STEPS[1])  # B: the second
    assert live.wait_idle(120)
    a, b = app.state.run_a, app.state.run_b()
    assert (a.name, b.name) == (f"step-{STEPS[0]}", f"step-{STEPS[1]}")
    # The inspector followed the step: the same pixel, read from step A's depth.
    report = app.inspector_panel.report
    assert (report.view, report.u, report.v) == (1, 40, 70)
    depth_a, depth_b = (float(run.loaded.layers.final_depth[1, 70, 40]) for run in (a, b))
    assert report.final_depth == depth_a != depth_b  # the same float32 element, not step 2's
    compare = json.loads((exported / "compare.json").read_text())
    names = [f"epoch=0-step={step}" for step in STEPS[:2]]
    pair = next(p for p in compare["pairs"] if [p["a"], p["b"]] == names)
    ours = compare_pair(run_source(a.loaded), run_source(b.loaded))
    assert ours["pixels"] == pair["pixels"] > 0
    assert ours["depth_abs_rel_b_vs_a"] == pytest.approx(pair["depth_abs_rel_b_vs_a"], rel=1e-9)
    assert ours["chamfer"]["chamfer"] == pytest.approx(pair["chamfer"]["chamfer"], rel=1e-9)
    # The B - A colours of the GUI are compare.ply's differences (A = the first --ckpt).
    from plyfile import PlyData

    ply = PlyData.read(str(exported / "compare.ply"))["vertex"]
    difference = app.colors.context(a).difference.maps["metric"]
    valid = a.loaded.flat("final").valid.reshape(-1)
    np.testing.assert_allclose(np.asarray(difference).reshape(-1)[valid],
                               ply["scalar_depth_b_minus_a"], rtol=1e-6, equal_nan=True)


def test_switching_scenes_shows_the_same_steps_on_the_other_scene(watch):
    """The Scene folder's switch goes through the watch's run loader: A and B stay the same
    steps (kept runs, no model run), the curves mark the new scene's point."""
    live, keys = watch.live, watch.keys
    app = live.app
    pair = (app.state.run_a.name, app.state.run_b().name)
    app.load_async(keys[1]).join(120)
    assert live.wait_idle(120)
    assert app.state.scene_spec == keys[1] == app.state.loaded.scene.key
    assert (app.state.run_a.name, app.state.run_b().name) == pair
    assert app.state.run_a.loaded is live.engine.cache.get((STEPS[0], keys[1]))
    data, series = live.curves.plot.data, live.curves.plot.series
    final = [s["label"] for s in series].index(f"{keys[1]} final")
    marker = np.asarray(data[-1])
    assert marker[0] == data[final][0] and np.isnan(marker[1:]).all()  # step 1 of scene 2


def test_a_run_dropped_for_memory_is_run_again_from_its_checkpoint(watch):
    """Past the memory budget the runs not on screen go; asked for again, the step's
    checkpoint runs again and gives the same depth."""
    import torch

    engine, keys = watch.live.engine, watch.keys
    key = (STEPS[0], keys[0])  # not on screen: the previous test shows the other scene
    kept = engine.cache.get(key)
    depth, row = kept.layers.final_depth.clone(), dict(engine.rows[key])
    budget, engine.cache.budget = engine.cache.budget, 0
    engine.cache.enforce()
    engine.cache.budget = budget
    assert key not in engine.cache
    assert (STEPS[0], keys[1]) in engine.cache  # run A on screen is kept whatever the budget
    again = engine.loaded(keys[0], STEPS[0])
    assert again is not kept and torch.equal(again.layers.final_depth, depth)
    assert engine.rows[key]["gt_abs_rel_final"] == row["gt_abs_rel_final"]


def test_scenes_past_a_steps_time_budget_are_left_for_later_with_a_note(watch, tmp_path):
    """A step may spend --step-seconds on the scenes not shown: at 0 s only the shown scene
    runs (one checkpoint copied into a folder of its own, one model run)."""
    import shutil

    from dsviewer.viewer.watch.checkpoints import CheckpointFolder
    from dsviewer.viewer.watch.engine import WatchBudget, WatchEngine

    live, keys = watch.live, watch.keys
    name = f"epoch=0-step={STEPS[0]}.ckpt"
    shutil.copy2(watch.folder / "checkpoints" / name, tmp_path / name)
    engine = WatchEngine(CheckpointFolder(tmp_path, settle_s=0.0), keys, live.engine.template,
                         live.engine.settings, WatchBudget(step_seconds=0.0, poll_seconds=0.1,
                                                           max_target_views=0))  # fmt: skip
    engine.start()
    try:
        deadline = time.monotonic() + 120
        while not (engine.steps() and engine.idle()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(engine.rows) == [(STEPS[0], keys[0])]
        assert any(keys[1] in note and "not run" in note for note in engine.notes), engine.notes
        assert engine.rows[(STEPS[0], keys[0])]["gt_abs_rel_final"] == \
            live.engine.rows[(STEPS[0], keys[0])]["gt_abs_rel_final"]
    finally:
        engine.close()


@pytest.mark.browser
def test_moving_the_slider_in_the_page_changes_the_points(watch):
    from test_browser import CHROMIUM, CHROMIUM_FLAGS, open_page, wait_until

    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    live, url = watch.live, watch.url
    app = live.app
    live.timeline.compare.value = "(none)"
    live.timeline.slider.value = STEPS[-1]
    assert live.wait_idle(120) and app.state.run_a.name == f"step-{STEPS[-1]}"
    node = "/runs/0/final/view_0"
    before = np.array(app.server.scene._handle_from_node_name[node].points)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = open_page(browser, url)
        thumb = page.get_by_role("slider").first
        thumb.wait_for(timeout=30_000)
        client = list(app.server.get_clients().values())[-1]
        moved = np.array(client.camera.position) + 0.5  # the user looks from elsewhere
        client.camera.position = tuple(moved)
        assert wait_until(lambda: np.allclose(client.camera.position, moved, atol=1e-3))
        thumb.focus()
        page.keyboard.press("ArrowLeft")  # one step back, as a user would
        assert wait_until(lambda: app.state.run_a.name == f"step-{STEPS[-2]}", timeout=60)
        assert live.wait_idle(120)
        after = np.array(app.server.scene._handle_from_node_name[node].points)
        assert before.shape == after.shape and np.abs(after - before).max() > 1e-3
        assert np.allclose(client.camera.position, moved, atol=1e-3)  # the camera stayed
        # Play steps through to the newest step, then the button says Play again.
        page.get_by_role("button", name="Play", exact=True).click()
        assert wait_until(lambda: app.state.run_a.name == f"step-{STEPS[-1]}", timeout=60)
        assert wait_until(lambda: live.timeline.play.label == "Play", timeout=30)
        # The curves element in the page holds one x per step.
        chart = page.evaluate(  # the curves: the chart whose last series marks the shown step
            "Object.values(window.__viserTestpoints?.uplots ?? {})"
            ".filter(t => t.chart.series.some(s => s.label === 'shown step'))"
            ".map(t => Array.from(t.chart.data[0]))")  # fmt: skip
        assert [list(map(int, xs)) for xs in chart] == [list(STEPS)]
        browser.close()

"""The session layer and the run flags every command shares: --views, --near, --far.

Near/far are given in the scene's own units and converted like the capture: a capture and the
same capture scaled by 10 (with planes scaled by 10) must reach the model identically, and the
user-unit planes must come back as given. --views chooses views by the loader's own rule,
checked against the dataset loader called with that count directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from dataset_builders import noise_image, png_bytes, pose, write_transforms

from dsviewer.viewer.assets import demo_checkpoint, demo_data_root, demo_scene_keys
from dsviewer.viewer.options import RunOptions, RunOptionsError
from dsviewer.viewer.session.model import ModelSession, ViewCountError, finish
from dsviewer.viewer.session.specs import RunSpec, SessionSettings

FRAMES, SIZE = 6, 64


def write_capture(folder: Path, scale: float) -> Path:
    """A transforms.json capture: noise images, cameras 0.3 apart along +X (times ``scale``),
    turning slightly, all looking along +Z."""
    (folder / "images").mkdir(parents=True)
    frames = []
    for i in range(FRAMES):
        name = f"images/frame_{i:02d}.png"
        (folder / name).write_bytes(png_bytes(noise_image(i, SIZE, SIZE)))
        T = pose(x=0.3 * i * scale, yaw_degrees=2.0 * i)
        frames.append((name, T))
    write_transforms(folder, frames, fl_x=50.0, fl_y=50.0, cx=SIZE / 2, cy=SIZE / 2, w=SIZE,
                     h=SIZE)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def demo_session() -> ModelSession:
    return ModelSession(demo_checkpoint(), SessionSettings(device="cpu"))


def test_user_planes_are_converted_like_the_capture(demo_session, tmp_path):
    """Scaling a capture and its planes by 10 changes nothing the model sees; the planes in the
    user's units are the ones asked for, and the final depth is clamped to them."""
    loaded = {}
    for scale in (1.0, 10.0):
        folder = write_capture(tmp_path / f"x{scale:g}", scale)
        spec = RunSpec(demo_checkpoint(), near=0.4 * scale, far=6.0 * scale, units="user")
        loaded[scale] = demo_session.load(str(folder), spec)
    one, ten = loaded[1.0], loaded[10.0]
    assert one.scene.context.index.tolist() == ten.scene.context.index.tolist()
    torch.testing.assert_close(one.scene.context.near, ten.scene.context.near)
    torch.testing.assert_close(one.scene.context.far, ten.scene.context.far)
    for run, scale in ((one, 1.0), (ten, 10.0)):
        # in the model's units: what was asked, divided by the capture's own scale
        expected = 0.4 * scale / run.scene.world_from_model.scale
        assert float(run.scene.context.near[0]) == pytest.approx(expected, rel=1e-6)
        assert float(run.layers.context.near[0]) == pytest.approx(0.4 * scale, rel=1e-5)
        assert float(run.layers.context.far[0]) == pytest.approx(6.0 * scale, rel=1e-5)
        final = run.layers.final_depth[torch.isfinite(run.layers.final_depth)]
        assert float(final.min()) >= 0.4 * scale * (1 - 1e-5)
        assert float(final.max()) <= 6.0 * scale * (1 + 1e-5)
    torch.testing.assert_close(ten.layers.final_depth, 10 * one.layers.final_depth, rtol=1e-4,
                               atol=1e-5)  # fmt: skip
    assert one.asked == {"context": None, "views": None, "near": 0.4, "far": 6.0,
                         "units": "user"}  # fmt: skip


def test_views_chooses_by_the_loaders_own_rule(demo_session, tmp_path):
    """--views 3 on a capture picks the frames the dataset loader picks when its preset says 3
    context views (covisibility, else distance and angle)."""
    from dataclasses import replace

    from dsviewer.dataset import load_scene

    folder = write_capture(tmp_path / "capture", 1.0)
    scene = demo_session.views(str(folder), RunSpec(demo_checkpoint(), views=3))
    settings = replace(demo_session.backend.preprocess, num_context_views=3)
    direct = load_scene(str(folder), settings=settings)
    assert scene.context.num_views == 3
    assert scene.context.index.tolist() == direct.context.index.tolist()


def test_views_that_the_index_contradicts_are_refused(demo_session):
    scene = demo_session.views("synthetic:1", RunSpec(demo_checkpoint(), context=(0, 5)))
    with pytest.raises(ViewCountError, match="--views 3 asks for 3 context views, but scene"):
        finish(scene, RunSpec(demo_checkpoint(), views=3))
    assert finish(scene, RunSpec(demo_checkpoint(), context=(0, 5), views=3)) is scene


def test_model_unit_planes_are_the_guis(demo_session):
    """The GUI's New run gives planes in the model's units: they reach the model unchanged."""
    scene = demo_session.views("synthetic:1", RunSpec(demo_checkpoint(), near=2.0, far=9.0))
    assert scene.context.near.tolist() == [2.0] * scene.context.num_views
    assert scene.context.far.tolist() == [9.0] * scene.context.num_views


@pytest.mark.parametrize("flags, phrase", [
    ({"views": 1}, "at least 2 context views"),
    ({"views": 3, "context": [0, 4]}, "disagree"),
    ({"near": 5.0, "far": 2.0}, "must be below --far"),
    ({"near": -1.0}, "positive finite distance"),
    ({"far": float("inf")}, "positive finite distance"),
    ({"config": Path("missing.yaml")}, "--config missing.yaml does not exist"),
])  # fmt: skip
def test_run_flags_are_judged_once(flags, phrase):
    options = RunOptions(ckpt=[demo_checkpoint()], scene=["synthetic:1"], **flags)
    with pytest.raises(ValueError, match=phrase):
        options.check()


def test_run_options_become_specs_and_settings():
    options = RunOptions(ckpt=[Path("a.pth"), Path("b.pth")], scene=["k"],
                         data_root=[Path("r")], context=[0, 4], target=[2], views=2, near=1.5,
                         far=30.0, device="cpu")  # fmt: skip
    specs = options.run_specs()
    assert [s.checkpoint for s in specs] == [Path("a.pth").absolute(), Path("b.pth").absolute()]
    assert {(s.context, s.views, s.near, s.far, s.units) for s in specs} == {
        (None, 2, 1.5, 30.0, "user")}  # the frames are the session's, for every run
    settings = options.session_settings()
    assert settings == SessionSettings(data_root=(Path("r"),), context=(0, 4), target=(2,),
                                       device="cpu")  # fmt: skip
    with pytest.raises(RunOptionsError):
        RunOptions(ckpt=[demo_checkpoint()], near=3.0, far=3.0).check(need_scene=False)


def test_every_command_takes_the_run_flags():
    """dsviewer, export and eval parse the same flags into the same fields."""
    from dsviewer.viewer.cli import parse
    from dsviewer.viewer.eval_cli import parse_args as parse_eval
    from dsviewer.viewer.export_cli import parse_args as parse_export

    flags = ["--ckpt", "m.pth", "--scene", "k", "--views", "3", "--near", "0.5", "--far", "40",
             "--context", "0", "4", "9", "--data-root", "r"]  # fmt: skip
    for options in (parse(flags), parse_export([*flags, "--out", "o"]),
                    parse_eval([*flags, "--out", "o"])):  # fmt: skip
        assert isinstance(options, RunOptions)
        assert (options.views, options.near, options.far) == (3, 0.5, 40.0)
        assert options.context == [0, 4, 9] and options.scene == ["k"]


def test_eval_takes_one_checkpoint(tmp_path):
    from dsviewer.viewer.eval_cli import parse_args

    options = parse_args(["--ckpt", str(demo_checkpoint()), "--ckpt", str(demo_checkpoint()),
                          "--out", str(tmp_path / "o")])  # fmt: skip
    with pytest.raises(ValueError, match="evaluates one checkpoint; 2 --ckpt"):
        options.check_flags()


def test_eval_run_identity_records_views_and_planes(tmp_path):
    """Given flags change the identity (a changed --near re-runs scenes); absent flags leave
    it as it was before the flags existed, so older results still resume."""
    from dsviewer.viewer.evaluation.records import run_hash, run_identity

    ckpt = demo_checkpoint()
    before = run_identity(ckpt, None, None, None)
    plain = run_identity(ckpt, None, None, None, run=RunSpec(ckpt, units="user"))
    assert plain == before and run_hash(plain) == run_hash(before)
    near = run_identity(ckpt, None, None, None, run=RunSpec(ckpt, near=0.5, views=3))
    assert near == {**before, "near": 0.5, "views": 3} and run_hash(near) != run_hash(before)
    farther = run_identity(ckpt, None, None, None, run=RunSpec(ckpt, near=0.7, views=3))
    assert run_hash(farther) != run_hash(near)
    strict = run_identity(ckpt, None, None, None, sfm_max_error=1.0)
    assert strict == {**before, "sfm_max_error": 1.0} and run_hash(strict) != run_hash(before)


def test_eval_records_a_non_default_sfm_threshold_in_run_json(tmp_path):
    """--sfm-max-error changes the SfM metrics, so a run with another threshold does not resume
    on records made with the default one."""
    import json

    from dsviewer.viewer.assets import demo_data_root
    from dsviewer.viewer.eval_cli import parse_args
    from dsviewer.viewer.evaluation.runner import prepare

    identities = {}
    for name, extra in (("default", []), ("strict", ["--sfm-max-error", "1.5"])):
        out = tmp_path / name
        prepare(parse_args(["--ckpt", str(demo_checkpoint()), "--data-root",
                            str(demo_data_root()), "--out", str(out), *extra]).job())
        identities[name] = json.loads((out / "run.json").read_text())
    assert "sfm_max_error" not in identities["default"]
    assert identities["strict"] == {**identities["default"], "sfm_max_error": 1.5}


def test_eval_open_command_carries_the_run_flags():
    from dsviewer.viewer.cli import parse
    from dsviewer.viewer.evaluation.scene_metrics import viewer_command

    spec = RunSpec(Path("m.pth"), views=2, near=0.25, far=1e3, units="user")
    options = parse(viewer_command(Path("m.pth"), "key", dataset_key=True, run=spec,
                                   context=(1, 6))[1:])  # fmt: skip
    assert options.run_specs()[0] == RunSpec(Path("m.pth").absolute(), None, 0.25, 1e3, 2,
                                             "user")  # fmt: skip
    assert options.session_settings().context == (1, 6)


def test_export_records_views_and_planes(tmp_path):
    """``dsviewer export --views 3 --near 2 --far 20``: metrics.json records the run as made,
    and the final depth in final.ply lies inside the planes."""
    from dsviewer.io.ply import read_ply_vertices
    from dsviewer.viewer.export_cli import main

    key = demo_scene_keys()[0]
    out = tmp_path / "out"
    code = main(["--ckpt", str(demo_checkpoint()), "--data-root", str(demo_data_root()),
                 "--scene", key, "--views", "3", "--near", "2", "--far", "20", "--device",
                 "cpu", "--target", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    scene = json.loads((out / "metrics.json").read_text())["scene"]
    definition = scene["run_definition"]
    assert definition["views"] == 3 == len(scene["context_frames"])
    assert definition["context_frames"] == scene["context_frames"]
    assert (definition["near_user"], definition["far_user"]) == (2.0, 20.0)
    assert definition["asked"] == {"context": None, "views": 3, "near": 2.0, "far": 20.0,
                                   "units": "user"}  # fmt: skip
    assert scene["near"] == [2.0] * 3 and scene["far"] == [20.0] * 3
    depth = np.asarray(read_ply_vertices(out / "final.ply")["scalar_depth"], dtype=np.float64)
    depth = depth[np.isfinite(depth)]
    assert depth.size and depth.min() >= 2.0 * (1 - 1e-6) and depth.max() <= 20.0 * (1 + 1e-6)


def test_eval_runs_with_views_and_planes(tmp_path):
    """``dsviewer eval --views 3 --near 2 --far 20``: run.json names them, the scene ran with
    three context views, and a changed --near is another run (refused without --force)."""
    from dsviewer.viewer.eval_cli import main

    out = tmp_path / "eval"
    args = ["--ckpt", str(demo_checkpoint()), "--scene", "synthetic:1", "--device", "cpu",
            "--max-target-views", "0", "--thumbnails", "0", "--out", str(out), "--views", "3",
            "--far", "20"]  # fmt: skip
    assert main([*args, "--near", "2"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert (run["views"], run["near"], run["far"]) == (3, 2.0, 20.0)
    (record,) = [json.loads(p.read_text()) for p in (out / "scenes").glob("*.json")]
    assert record["status"] == "ok" and record["views"] == 3
    assert main([*args, "--near", "3"]) == 2  # another run's results are in the folder

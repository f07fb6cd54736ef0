"""``dsviewer check``: captures broken on purpose name the cause and the flag, and the flag clears
the finding. Expected numbers are computed here from the capture's own geometry (image sizes,
focal lengths, poses), not by the check's code."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from dsviewer.viewer.assets import demo_checkpoint
from dsviewer.viewer.capture_check import CHECKS, MAX_FOV_DEGREES
from dsviewer.viewer.check_cli import CheckOptions, main, run_check
from tests.dataset_builders import noise_image, png_bytes, pose, write_transforms

DEMO_SHAPE = (128, 128)  # the demo model's image_shape (configs/demo)
WIDE_CHECKPOINT = "depthsplat-gs-base-re10kdl3dv-448x768-randview2-6-f8ddd845.pth"  # 512 x 960


def transforms_capture(folder: Path, width: int, height: int, focal: float,
                       poses: list[np.ndarray]) -> Path:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(poses)):
        (folder / f"{i}.png").write_bytes(png_bytes(noise_image(i, height, width)))
    write_transforms(folder, [(f"{i}.png", T) for i, T in enumerate(poses)], fl_x=focal,
                     fl_y=focal, cx=width / 2, cy=height / 2, w=width, h=height)
    return folder


def check(scene: Path, **options) -> dict:
    options.setdefault("ckpt", demo_checkpoint())
    _, findings = run_check(CheckOptions(scene=str(scene), **options))
    return {f.key: f for f in findings}


def looking_at(x: float, depth: float) -> np.ndarray:
    """A camera at (x, 0, 0) whose optical axis passes through (0, 0, depth)."""
    return pose(x=x, yaw_degrees=math.degrees(math.atan2(-x, depth)))


def test_every_finding_is_reported_once_in_registry_order(tmp_path):
    capture = transforms_capture(tmp_path / "c", 128, 128, 110.0,
                                 [looking_at(x, 4.0) for x in (-0.2, 0.0, 0.2)])
    findings = check(capture)
    assert list(findings) == [c.key for c in CHECKS]
    assert all(f.status in ("ok", "warn", "unknown") for f in findings.values())


def test_a_crop_that_loses_half_the_image_names_the_cause_and_the_flag(tmp_path):
    # 2:1 images into the demo's square input: scaled to 256 x 128, cropped to 128 x 128.
    capture = transforms_capture(tmp_path / "wide", 256, 128, 200.0,
                                 [looking_at(x, 4.0) for x in (-0.2, 0.0, 0.2)])
    crop = check(capture)["crop"]
    expected_lost = 1 - (128 * 128) / (256 * 128)
    assert crop.status == "warn"
    assert crop.numbers["lost"] == pytest.approx([expected_lost] * 2)
    assert crop.value == "50% lost" and "discards 50%" in crop.detail
    # 960:512 is the nearest released aspect; its preset's 6 views would need 6 frames.
    assert crop.flag == f"--ckpt {WIDE_CHECKPOINT} --views 2"
    # The flag, as given (a released file name: its settings are known without the file).
    flag = crop.flag.split()
    again = check(capture, ckpt=Path(flag[1]), views=int(flag[3]))["crop"]
    assert again.status == "ok"
    # 512 x 960 from 128 x 256: scaled 4x to 512 x 1024, cropped to 960 wide.
    assert again.numbers["lost"] == pytest.approx([1 - 960 / 1024] * 2)


def test_the_downscale_factor_is_the_official_rescale(tmp_path):
    capture = transforms_capture(tmp_path / "big", 640, 360, 500.0,
                                 [looking_at(x, 4.0) for x in (-0.2, 0.0, 0.2)])
    downscale = check(capture)["downscale"]
    assert downscale.status == "ok"
    assert downscale.numbers["scale"] == pytest.approx([128 / 360] * 2)
    small = transforms_capture(tmp_path / "small", 96, 64, 80.0,
                               [looking_at(x, 4.0) for x in (-0.2, 0.0, 0.2)])
    enlarged = check(small)["downscale"]
    assert enlarged.status == "warn" and "enlarged" in enlarged.detail
    assert enlarged.numbers["scale"] == pytest.approx([128 / 64] * 2)


def test_a_field_of_view_wider_than_the_training_limit_is_flagged(tmp_path):
    width = 128
    focal = width / 2 / math.tan(math.radians(120 / 2))  # 120 degrees across
    capture = transforms_capture(tmp_path / "fisheye", width, width, focal,
                                 [looking_at(x, 4.0) for x in (-0.2, 0.0, 0.2)])
    fov = check(capture)["field_of_view"]
    assert fov.status == "warn" and f"{MAX_FOV_DEGREES:.0f} degrees" in fov.detail
    assert fov.numbers["source_degrees"][0] == pytest.approx([120.0, 120.0])
    normal = transforms_capture(tmp_path / "normal", width, width, width / 2,  # 90 degrees
                                [looking_at(x, 4.0) for x in (-0.2, 0.0, 0.2)])
    assert check(normal)["field_of_view"].status == "ok"


def test_without_sfm_points_the_check_says_what_it_cannot_measure(tmp_path):
    capture = transforms_capture(tmp_path / "c", 128, 128, 110.0,
                                 [looking_at(x, 4.0) for x in (-0.2, 0.0, 0.2)])
    findings = check(capture)
    for key in ("depth_range", "overlap"):
        assert findings[key].status == "unknown"
        assert "no SfM points" in findings[key].detail and findings[key].flag is None
        assert findings[key].note().code == f"check_{key}"


def test_without_points_the_baseline_uses_where_the_camera_axes_cross(tmp_path):
    depth, half = 5.0, 0.25  # two cameras 0.5 apart, aimed at a point 5 in front of them
    capture = transforms_capture(tmp_path / "c", 128, 128, 110.0,
                                 [looking_at(-half, depth), looking_at(half, depth)])
    baseline = check(capture, context=[0, 1])["baseline"]
    along_axis = math.hypot(half, depth)  # the crossing point's z in either camera
    expected = 2 * half / along_axis
    assert baseline.numbers["ratio"] == pytest.approx(expected, rel=1e-5)  # float32 poses
    assert "viewing axes cross" in baseline.detail


@pytest.mark.parametrize("args, phrase", [
    (["--near", "-1"], "--near -1.0: give a positive finite distance"),
    (["--near", "5", "--far", "2"], "must be below --far"),
    (["--views", "1"], "at least 2"),
    (["--ckpt", "nothing.pth"], "not the name of a released checkpoint"),
])  # fmt: skip
def test_bad_options_are_one_paragraph_and_exit_2(tmp_path, capsys, args, phrase):
    capture = transforms_capture(tmp_path / "c", 64, 64, 60.0,
                                 [looking_at(x, 4.0) for x in (-0.2, 0.0, 0.2)])
    argv = ["--ckpt", str(demo_checkpoint()), "--scene", str(capture), *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and phrase in " ".join(err.split())


def test_a_dataset_scene_is_refused_with_what_check_reads(capsys):
    assert main(["--ckpt", str(demo_checkpoint()), "--scene", "synthetic:0"]) == 2
    assert "is not a capture folder" in capsys.readouterr().err


# ---------------------------------------------------------------- captures with SfM points

PINHOLE = 110.0  # focal length (px) of the 128 x 128 COLMAP cameras below


def sfm_capture(folder: Path, centres: list[float], points: np.ndarray, scale: float = 1.0):
    """A COLMAP model of cameras at (x, 0, 0) looking down +Z, and ``points`` (world), all
    multiplied by ``scale`` (the same capture in other units)."""
    from sfm_builders import SfmCamera, SfmImage, write_images, write_sfm_model

    cameras = {1: SfmCamera("PINHOLE", 128, 128, [PINHOLE, PINHOLE, 64.0, 64.0])}
    images = [SfmImage(f"{i}.png", 1, pose(x=x * scale)) for i, x in enumerate(centres)]
    xyz = points * scale
    write_sfm_model(folder, cameras, images, xyz, np.full(len(xyz), 0.3), binary=False)
    write_images(folder, cameras, images, xyz)
    return cameras, images, xyz


def wall(x0: float, z: float = 4.0, extent: float = 2.0, step: float = 0.25) -> np.ndarray:
    """A grid of points on the plane z = ``z`` around x = ``x0``, slightly tilted in depth."""
    xs, ys = np.meshgrid(np.arange(-extent, extent + 1e-9, step),
                         np.arange(-extent, extent + 1e-9, step))
    xs, ys = xs.ravel() + x0, ys.ravel()
    return np.stack([xs, ys, z + 0.2 * (xs - x0)], axis=-1)


def seen_depths(cameras, images, xyz, frame: int) -> np.ndarray:
    """z of the points ``frame`` observes (in front, inside its image), computed here."""
    from sfm_builders import observations

    _, points = observations(cameras, images, xyz)[frame]
    T_cam_world = np.linalg.inv(images[frame].T_world_cam)
    return (xyz[points] @ T_cam_world[:3, :3].T + T_cam_world[:3, 3])[:, 2]


def test_a_near_plane_far_too_small_names_the_cause_and_the_planes_that_clear_it(tmp_path):
    cameras, images, xyz = sfm_capture(tmp_path / "c", [-0.5, 0.5], wall(0.0))
    near_default = check(tmp_path / "c")["depth_range"]
    assert near_default.status == "ok"  # the demo's planes 1..25 around a wall 4 baselines away
    depth = check(tmp_path / "c", near=0.01)["depth_range"]
    assert depth.status == "warn"
    assert "depth candidates" in depth.detail and "nearer than the scene" in depth.detail
    # Independent: the points each camera sees, z in model units (widest baseline 1 here).
    p5 = min(np.percentile(seen_depths(cameras, images, xyz, f), 5) for f in (0, 1))
    p95 = max(np.percentile(seen_depths(cameras, images, xyz, f), 95) for f in (0, 1))
    assert depth.numbers["depth_p5"] == pytest.approx(p5, rel=1e-5)
    assert depth.numbers["depth_p95"] == pytest.approx(p95, rel=1e-5)
    in_front = (1 / 0.01 - 1 / p5) / (1 / 0.01 - 1 / 25.0)
    assert depth.numbers["candidates_in_front"] == pytest.approx(in_front, rel=1e-5)
    flag = depth.flag.split()
    assert flag[0] == "--near" and flag[2] == "--far"
    assert float(flag[1]) == pytest.approx(p5 / 1.5, rel=2e-3)
    assert float(flag[3]) == 25.0  # the far plane was right: kept (the demo's, scale 1 here)
    cleared = check(tmp_path / "c", near=float(flag[1]), far=float(flag[3]))["depth_range"]
    assert cleared.status == "ok"


def test_a_capture_rescaled_by_10_gives_the_same_findings_and_planes_in_its_units(tmp_path):
    sfm_capture(tmp_path / "one", [-0.5, 0.5], wall(0.0))
    sfm_capture(tmp_path / "ten", [-0.5, 0.5], wall(0.0), scale=10.0)
    a = check(tmp_path / "one", near=0.01)
    b = check(tmp_path / "ten", near=0.1)  # the same plane in the capture's new units
    assert [(f.key, f.status, f.value) for f in a.values()] == [
        (f.key, f.status, f.value) for f in b.values()]
    for key in a:
        for name, value in a[key].numbers.items():
            if name in ("suggested_near", "suggested_far"):
                assert b[key].numbers[name] == pytest.approx(10 * value, rel=2e-3)
            elif value is not None:
                np.testing.assert_allclose(b[key].numbers[name], value, rtol=1e-5,
                                           err_msg=f"{key} {name}")
    assert a["depth_range"].status == "warn"
    planes_a = [float(v) for v in a["depth_range"].flag.split()[1::2]]
    planes_b = [float(v) for v in b["depth_range"].flag.split()[1::2]]
    np.testing.assert_allclose(planes_b, np.multiply(planes_a, 10), rtol=2e-3)


def test_the_baseline_against_the_median_sfm_depth(tmp_path):
    cameras, images, xyz = sfm_capture(tmp_path / "c", [-0.5, 0.5], wall(0.0))
    baseline = check(tmp_path / "c")["baseline"]
    depths = np.concatenate([seen_depths(cameras, images, xyz, f) for f in (0, 1)])
    assert baseline.numbers["ratio"] == pytest.approx(1.0 / np.median(depths), rel=1e-5)
    assert baseline.status == "ok" and "SfM points" in baseline.detail
    # Two cameras 0.02 apart: the median point moves about one pixel, too little to match.
    sfm_capture(tmp_path / "narrow", [-0.01, 0.01, 0.5, 1.5], wall(0.0))
    narrow = check(tmp_path / "narrow", context=[0, 1])["baseline"]
    assert narrow.status == "warn" and "monocular" in narrow.detail
    assert narrow.flag.startswith("--context 0 ")
    partner = int(narrow.flag.split()[2])
    assert check(tmp_path / "narrow", context=[0, partner])["baseline"].status == "ok"


def test_a_pair_with_no_overlap_names_the_cause_and_a_covisible_pair(tmp_path):
    # Frames 0, 1 see a wall at x = -10; frames 2, 3 another at x = +10: no shared points.
    sfm_capture(tmp_path / "c", [-10.0, -9.5, 10.0, 10.5], np.concatenate([wall(-10), wall(10)]))
    findings = check(tmp_path / "c", context=[0, 2])
    overlap = findings["overlap"]
    assert overlap.status == "warn" and overlap.numbers["shared"] == [0, 0]
    # 20 apart at 4 deep: far beyond half an image of shift (ratio 5 here).
    assert findings["baseline"].status == "warn" and "too wide" in findings["baseline"].detail
    assert findings["baseline"].numbers["ratio"] == pytest.approx(20 / 4.0, rel=0.05)
    assert "no matches" in overlap.detail and overlap.flag == "--context 0 1"
    again = check(tmp_path / "c", context=[0, 1])["overlap"]
    assert again.status == "ok" and min(again.numbers["shared"]) >= 20


def test_the_console_the_scene_folder_and_metrics_json_carry_the_findings(tmp_path, capsys,
                                                                          server):
    from dsviewer.viewer.export import export_scene
    from dsviewer.viewer.gui.app import ViewerApp
    from dsviewer.viewer.session.model import ModelSession
    from dsviewer.viewer.session.specs import SessionSettings

    capture = tmp_path / "c"
    sfm_capture(capture, [-10.0, -9.5, 10.0, 10.5], np.concatenate([wall(-10), wall(10)]))
    assert main(["--ckpt", str(demo_checkpoint()), "--scene", str(capture),
                 "--context", "0", "2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "overlap of the context views" in out and "--context 0 1" in out
    # The model's run on the capture (the viewer's and the exporter's path) carries them too.
    settings = SessionSettings(context=(0, 2), target=(1,), device="cpu")
    loaded = ModelSession(demo_checkpoint(), settings).load(str(capture))
    assert [f.key for f in loaded.findings] == [c.key for c in CHECKS]
    app = ViewerApp(server, scene_specs=[str(capture)])
    app.show(loaded)
    panel = app.scene_panel.notes.content
    assert "Capture check, overlap of the context views" in panel and "context 0 1" in panel
    app.close()
    metrics = export_scene(tmp_path / "out", loaded).metrics
    findings = {f["key"]: f for f in metrics["capture_check"]}
    assert list(findings) == [c.key for c in CHECKS]
    assert findings["overlap"]["status"] == "warn"
    assert findings["overlap"]["flag"] == "--context 0 1"
    codes = {note["code"] for note in metrics["notes"]}
    assert "check_overlap" in codes and "check_crop" not in codes  # notes only for what is not ok


def test_views_sets_the_number_of_context_views(tmp_path):
    capture = transforms_capture(tmp_path / "c", 128, 96, 110.0,
                                 [looking_at(x, 4.0) for x in (-0.4, -0.2, 0.0, 0.2, 0.4)])
    scene, findings = run_check(CheckOptions(ckpt=demo_checkpoint(), scene=str(capture), views=3))
    assert scene.context.num_views == 3
    crop = {f.key: f for f in findings}["crop"]
    # 128 x 96 enlarged to cover 128 x 128: 171 x 128 (rounded), then 128 columns kept.
    assert crop.numbers["lost"] == pytest.approx([1 - 128 / round(128 * 128 / 96)] * 3)


def test_check_help_lists_its_options_without_heavy_imports():
    import subprocess
    import sys

    from tests.test_viewer_cli import HEAVY_MODULES, run_cli

    result = run_cli("check", "--help")
    assert result.returncode == 0
    for option in ("--ckpt", "--scene", "--config", "--context", "--near", "--far", "--views"):
        assert option in result.stdout, option
    probe = ("import sys; from dsviewer.viewer.check_cli import parse_args; "
             "parse_args(['--ckpt', 'x', '--scene', 'y', '--near', '1', '--views', '3']); "
             f"print(sorted(m for m in {HEAVY_MODULES} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stderr


# ---------------------------------------------------------------- real captures (not shipped)

REAL = [Path(p) for p in os.environ.get("DSVIEWER_REAL_COLMAP", "").split(os.pathsep) if p]


def read_pinhole_model(folder: Path) -> tuple[dict, dict, dict]:
    """The binary model of PINHOLE cameras (image_undistorter's output) as the independent
    reader gives it, each image's features limited to those with a point: cameras {id: (w, h,
    fx, fy, cx, cy)}, images {name: (T_cam_world, camera id, xy [F, 2], point ids [F])}, points
    {id: (xyz, error)}."""
    from tests.colmap_reference import read_binary_model

    cameras, images, points = read_binary_model(folder)
    assert all(model == 1 for _, _, model, _ in cameras.values()), "PINHOLE cameras only"
    pinholes = {cid: (w, h, *params) for cid, (w, h, _, params) in cameras.items()}
    observed = {name: (T, cid, xy[ids >= 0], ids[ids >= 0])
                for name, (T, cid, xy, ids) in images.items()}  # fmt: skip
    return pinholes, observed, points


@pytest.mark.skipif(not REAL, reason="DSVIEWER_REAL_COLMAP names no undistorted capture")
@pytest.mark.parametrize("folder", REAL)
def test_real_capture_depth_range_and_overlap_against_the_colmap_files(folder):
    """On an undistorted COLMAP model (``dense/0`` as image_undistorter writes it; point
    ``DSVIEWER_REAL_COLMAP`` at such folders, separated by ``os.pathsep``): the depth
    percentiles and shared points of the chosen context views, recomputed here from the files
    (an observation counts when its point's error is at most 2 px, it is in front, and the
    official rescale and centre crop keep its pixel)."""
    checkpoint = Path("depthsplat-gs-base-re10k-256x448-view2-fea94f65.pth")  # 256 x 448
    scene, findings = run_check(CheckOptions(ckpt=checkpoint, scene=str(folder)))
    findings = {f.key: f for f in findings}
    cameras, images, points = read_pinhole_model(folder / "sparse")
    names = sorted(images)  # natural order is sorted order for these names
    frames = [int(i) for i in scene.context.index]
    centres = [-images[names[i]][0][:3, :3].T @ images[names[i]][0][:3, 3] for i in frames]
    scale = max(np.linalg.norm(a - b) for a in centres for b in centres)  # baseline 1
    out_h, out_w = 256, 448  # the patch crop (16) is a no-op here
    depths, kept = [], []
    for i in frames:
        T, cid, xy, ids = images[names[i]]
        width, height = cameras[cid][:2]
        s = max(out_h / height, out_w / width)
        rows, cols = round(height * s), round(width * s)
        u = xy[:, 0] * cols / width - (cols - out_w) // 2
        v = xy[:, 1] * rows / height - (rows - out_h) // 2
        xyz = np.stack([points[p][0] for p in ids])
        z = (xyz @ T[:3, :3].T + T[:3, 3])[:, 2]
        error = np.array([points[p][1] for p in ids])
        keep = (error <= 2) & (z > 0) & (u >= 0) & (u < out_w) & (v >= 0) & (v < out_h)
        depths.append(z[keep] / scale)
        kept.append(set(ids[keep].tolist()))
    depth = findings["depth_range"].numbers
    assert depth["depth_p5"] == pytest.approx(min(np.percentile(d, 5) for d in depths), rel=1e-6)
    assert depth["depth_p95"] == pytest.approx(max(np.percentile(d, 95) for d in depths),
                                               rel=1e-6)  # fmt: skip
    assert findings["overlap"].numbers["shared"][0] == len(kept[0] & kept[1])


def test_without_sfm_points_the_depth_range_comes_from_llff_bounds(tmp_path):
    """An LLFF capture has no SfM points but states depth bounds per frame: the finding uses
    them (converted to model units) and names where they come from; the suggested planes clear
    it."""
    from tests.test_dataset_layouts import write_llff

    write_llff(tmp_path)
    stated = np.load(tmp_path / "poses_bounds.npy")[:, 15:]  # [N, 2] near, far (user units)
    scene, _ = run_check(CheckOptions(scene=str(tmp_path), ckpt=demo_checkpoint(),
                                      context=[1, 3]))  # fmt: skip
    scale = float(scene.world_from_model.scale)
    low, high = stated[[1, 3], 0].min() / scale, stated[[1, 3], 1].max() / scale
    finding = check(tmp_path, context=[1, 3])["depth_range"]
    assert finding.numbers["depth_p5"] == pytest.approx(low, rel=1e-6)
    assert finding.numbers["depth_p95"] == pytest.approx(high, rel=1e-6)
    assert "poses_bounds.npy" in finding.detail
    near, far = finding.numbers["near"], finding.numbers["far"]
    in_front = min(max((1 / near - 1 / low) / (1 / near - 1 / far), 0.0), 1.0)
    expect_warn = low < near or high > far or in_front > 0.9
    assert finding.status == ("warn" if expect_warn else "ok")
    if expect_warn:
        flag = finding.flag.split()
        cleared = check(tmp_path, context=[1, 3], near=float(flag[1]), far=float(flag[3]))
        assert cleared["depth_range"].status == "ok"

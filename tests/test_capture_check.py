"""``dsviewer check``: captures broken on purpose name the cause and the flag, and the flag clears
the finding. Expected numbers are computed here from the capture's own geometry (image sizes,
focal lengths, poses), not by the check's code."""

from __future__ import annotations

import math
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
    assert baseline.numbers["ratio"] == pytest.approx(2 * half / along_axis, rel=1e-5)  # float32 poses
    assert "viewing axes cross" in baseline.detail


@pytest.mark.parametrize("args, phrase", [
    (["--near", "-1"], "--near -1.0 must be a positive number"),
    (["--near", "5", "--far", "2"], "must be less than --far"),
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

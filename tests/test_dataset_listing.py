"""How a capture's frames are listed: names written on Windows, photos repeated across NeRF
split files, nerfstudio's images_2/4/8, implausible cameras, and a cost linear in the frames."""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
import torch

from dsviewer.dataset import CaptureOptions, load_scene
from dsviewer.dataset.capture import read_capture
from dsviewer.dataset.capture_frame import Capture, CaptureFrame
from dsviewer.dataset.errors import CaptureFormatError, ImplausibleCameraError
from dsviewer.dataset.view_choice import camera_spacing, choose_context, choose_targets
from dsviewer.viewer.export.metrics import _cameras
from dsviewer.viewer.layers import cameras_in_user_frame
from tests.dataset_builders import (
    OPENGL_FROM_OPENCV,
    SETTINGS,
    H,
    W,
    noise_image,
    png_bytes,
    pose,
    write_colmap_text,
    write_transforms,
)

UNITS = CaptureOptions(target_baseline=None)
INTRINSICS = {"fl_x": 40.0, "fl_y": 40.0, "cx": 24.0, "cy": 16.0, "w": W, "h": H}


def image_tensor(seed, height=H, width=W):
    return torch.from_numpy(noise_image(seed, height, width)).permute(2, 0, 1).float() / 255


def test_windows_separators_in_file_paths(tmp_path):
    (tmp_path / "uploads" / "images").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "uploads" / "images" / f"frame{i:04d}.png").write_bytes(
            png_bytes(noise_image(i)))
    listed = ["./uploads\\images/frame0000.png", "uploads\\images\\frame0001.png",
              ".\\uploads\\images\\frame0002"]  # the last without its suffix, as Blender
    write_transforms(tmp_path, [(name, pose(x=float(i))) for i, name in enumerate(listed)],
                     **INTRINSICS)
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 2], target=[1],
                       capture=UNITS)
    torch.testing.assert_close(scene.context.image[1], image_tensor(2), atol=1 / 255, rtol=0)
    torch.testing.assert_close(scene.target.image[0], image_tensor(1), atol=1 / 255, rtol=0)
    assert scene.context.image_names == (listed[0], listed[2])  # as the file lists them
    # cameras.json names each view's image as listed (through the scene types).
    rows = _cameras(cameras_in_user_frame(scene.context, scene.world_from_model))
    assert [row["image_file"] for row in rows] == [listed[0], listed[2]]
    assert [row["frame"] for row in rows] == [0, 2]
    write_transforms(tmp_path, [("..\\outside.png", pose()), (listed[1], pose(x=1.0))],
                     **INTRINSICS)
    with pytest.raises(ValueError, match=r"'..\\\\outside.png', which lies outside"):
        read_capture(tmp_path)


def write_split(folder, split, stems, xs, spelling="./{split}/{stem}"):
    write_transforms(folder, [(spelling.format(split="train", stem=stem), pose(x=x))
                              for stem, x in zip(stems, xs, strict=True)],
                     name=f"transforms_{split}.json", camera_angle_x=0.9)


def test_a_photo_in_several_split_files_is_one_frame(tmp_path):
    """Four photos in train/; test and val list three of them again, spelt otherwise (with the
    suffix, without './'). The nearest camera of each photo used to be its own copy (zero
    baseline); now each photo is one frame and the default context is two photos."""
    (tmp_path / "train").mkdir()
    stems = ["r_0", "r_1", "r_2", "r_3"]
    xs = [0.0, 0.3, 0.6, 0.9]
    for i, stem in enumerate(stems):
        (tmp_path / "train" / f"{stem}.png").write_bytes(png_bytes(noise_image(i)))
    write_split(tmp_path, "train", stems, xs)
    write_split(tmp_path, "test", stems[1:], xs[1:], spelling="{split}/{stem}.png")
    write_split(tmp_path, "val", stems[2:], xs[2:])
    capture = read_capture(tmp_path)
    assert [f.name for f in capture.frames] == [f"./train/{s}" for s in stems]
    notes = [n.message for n in capture.notes if n.code == "split_duplicates"]
    assert len(notes) == 2
    assert any("transforms_test.json lists 3 photo(s) that transforms_train.json lists too, "
               "with the same camera and pose: frame(s) 1, 2, 3 (./train/r_1, ./train/r_2, "
               "./train/r_3)" in note for note in notes)
    scene = load_scene(str(tmp_path), settings=SETTINGS, capture=UNITS)
    context = scene.context.index.tolist()
    assert len(set(scene.context.image_names)) == 2 and context == [1, 2]  # the middle and
    # its nearest other photo; both in frame numbers after deduplication
    assert f"Context frames {context} were chosen" in next(
        n.message for n in scene.notes if n.code == "default_views")
    assert "small_baseline" not in {n.code for n in scene.notes}
    # The same photo with another pose is a contradiction; twice in one file, a mistake.
    write_split(tmp_path, "val", stems[2:], [0.6, 5.0])
    with pytest.raises(CaptureFormatError, match=r"transforms_train.json and "
                       r"transforms_val.json both list the photo './train/r_3'"):
        read_capture(tmp_path)
    write_split(tmp_path, "val", ["r_2", "r_2"], [0.6, 0.6])
    with pytest.raises(CaptureFormatError, match=r"transforms_val.json lists file_path\(s\) "
                       r"./train/r_2 more than once"):
        read_capture(tmp_path)


def test_copies_of_one_view_are_never_two_context_views(tmp_path):
    """train/ and test/ hold copies of the same photos at the same poses (other files, so
    both are frames): the anchor's nearest camera is its copy at zero baseline, which the
    default choice skips, and copies of the context come last as targets."""
    xs = [0.0, 0.3, 0.6]
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        for i in range(3):
            (tmp_path / split / f"r_{i}.png").write_bytes(png_bytes(noise_image(i)))
        write_split(tmp_path, split, [f"r_{i}" for i in range(3)], xs,
                    spelling="./" + split + "/{stem}")
    settings = SETTINGS.__class__(**{**SETTINGS.__dict__, "num_context_views": 3})
    scene = load_scene(str(tmp_path), settings=settings, capture=CaptureOptions(
        target_baseline=None, max_targets=3))
    # Frames: test/r_0..r_2 (0..2), train/r_0..r_2 (3..5); the anchor is frame 3 (x = 0).
    back = scene.context.extrinsics[:, 0, 3].tolist()
    assert sorted(back) == pytest.approx([0.0, 0.3, 0.6])  # three distinct poses
    assert scene.target.index.tolist() == sorted(set(range(6)) - set(scene.context.index
                                                                     .tolist()))
    assert "small_baseline" not in {n.code for n in scene.notes}


@pytest.mark.parametrize("present", [(2, 4, 8), (4, 8), (8,)])
def test_nerfstudio_downscaled_folders(tmp_path, present):
    """Full-size images missing: nerfstudio reads images_<k>/<file name> and divides the
    intrinsics by k (the smallest k on disk). A 98x66 capture: images_2 is 49x33."""
    fx, fy, cx, cy, width, height = 60.0, 61.0, 50.0, 30.0, 98, 66
    for factor in present:
        (tmp_path / f"images_{factor}").mkdir()
        for i in range(2):
            (tmp_path / f"images_{factor}" / f"frame_{i:05d}.png").write_bytes(png_bytes(
                noise_image(10 * factor + i, height // factor, width // factor)))
    write_transforms(tmp_path, [(f"images/frame_{i:05d}.png", pose(x=float(i)))
                                for i in range(2)],
                     fl_x=fx, fl_y=fy, cx=cx, cy=cy, w=width, h=height)
    capture = read_capture(tmp_path)
    k = present[0]
    camera = capture.frames[1].camera
    assert (camera.width, camera.height) == (width // k, height // k)
    np.testing.assert_allclose(camera.params, [fx / k, fy / k, cx / k, cy / k])
    assert capture.frames[1].image_path == tmp_path / f"images_{k}" / "frame_00001.png"
    note = next(n.message for n in capture.notes if n.code == "downscaled_images")
    assert f"copy in images_{k}/ was used" in note and f"divided by {k}" in note
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "frame_00001.png").write_bytes(png_bytes(
        noise_image(0, height, width)))
    full = read_capture(tmp_path)  # the full-size image wins where it exists
    assert full.frames[1].camera.params == (fx, fy, cx, cy)
    assert full.frames[0].camera.width == width // k


@pytest.mark.parametrize("focal", [1e30, 0.8, 1e-3])
def test_implausible_field_of_view_is_refused_with_the_values(tmp_path, focal):
    """A focal length of 1e30, or normalized (0.8) where pixels belong: one paragraph naming
    the field of view, the focal lengths and the image size."""
    (tmp_path / "images").mkdir()
    for i in range(2):
        (tmp_path / "images" / f"{i}.png").write_bytes(png_bytes(noise_image(i)))
    write_colmap_text(tmp_path, {1: ("PINHOLE", W, H, [focal, focal, 24.0, 16.0])},
                      [(f"{i}.png", 1, pose(x=float(i)), []) for i in range(2)])
    fov = " x ".join(f"{math.degrees(2 * math.atan(side / (2 * focal))):.3g}" for side in (W, H))
    with pytest.raises(ImplausibleCameraError) as caught:
        load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[])
    message = str(caught.value)
    assert f"field of view of {fov} degrees" in message
    assert f"fx={focal:g}" in message and "48x32 (WxH)" in message and "\n" not in message
    write_transforms(tmp_path, [(f"images/{i}.png", pose(x=float(i))) for i in range(2)],
                     **{**INTRINSICS, "fl_x": focal, "fl_y": focal})
    with pytest.raises(ImplausibleCameraError, match=f"field of view of {fov} degrees"):
        read_capture(tmp_path)


def test_plausible_extremes_load(tmp_path):
    """1.5 and 165 degrees are real lenses (a long telephoto, a wide fisheye's pinhole)."""
    (tmp_path / "images").mkdir()
    for i in range(2):
        (tmp_path / "images" / f"{i}.png").write_bytes(png_bytes(noise_image(i)))
    for degrees in (1.5, 165.0):
        focal = W / (2 * math.tan(math.radians(degrees) / 2))
        write_colmap_text(tmp_path, {1: ("PINHOLE", W, W, [focal, focal, 24.0, 24.0])},
                          [(f"{i}.png", 1, pose(x=float(i)), []) for i in range(2)])
        assert read_capture(tmp_path).frames[0].camera.fov_degrees[0] == pytest.approx(degrees)


def write_long_capture(folder, frames):
    """A video-like transforms.json: ``frames`` poses along a line, three images on disk."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i in range(3):
        (folder / "images" / f"f{i}.png").write_bytes(png_bytes(noise_image(i)))
    matrix = np.eye(4) @ OPENGL_FROM_OPENCV
    rows = [{"file_path": f"images/f{i}.png", "transform_matrix":
             [[*matrix[0, :3], 0.01 * i], *matrix[1:].tolist()]} for i in range(frames)]
    (folder / "transforms.json").write_text(json.dumps({**INTRINSICS, "frames": rows}))


def timed(function, *args):
    """The result and the CPU seconds this process spent (steadier than wall time on a
    machine shared with other jobs)."""
    start = time.process_time()
    result = function(*args)
    return result, time.process_time() - start


def test_listing_is_linear_in_the_frames(tmp_path):
    """100,000 frames list in a few seconds, and 8 times the frames take about 8 times as long
    (quadratic parts took 1.9 / 2.6 / 10.5 s for 2,000 / 8,000 / 32,000 frames, and 200,000 did
    not finish in 4 minutes)."""
    write_long_capture(tmp_path / "small", 12_500)
    write_long_capture(tmp_path / "large", 100_000)
    small, small_seconds = timed(read_capture, tmp_path / "small")
    assert len(small.frames) == 12_500
    large, large_seconds = timed(read_capture, tmp_path / "large")
    assert len(large.frames) == 100_000 and large.available == [0, 1, 2]
    assert large.frames[99_999].T_world_cam[0, 3] == pytest.approx(999.99)
    assert large_seconds < 20.0, large_seconds  # about 3 s on an idle core
    assert large_seconds < 24 * small_seconds, (small_seconds, large_seconds)  # linear: ~8


def test_view_choice_is_linear_in_the_frames():
    """Default views of 100,000 usable frames on a line 0.01 apart: the spacing is the median
    nearest-neighbour distance, the anchor is the middle frame, the targets its neighbours."""
    frames = [CaptureFrame(f"{i}.png", None, None, pose(x=0.01 * i)) for i in range(100_000)]
    capture = Capture(folder=None, camera_file="memory", frames=frames)
    every = list(range(len(frames)))
    spacing, seconds = timed(camera_spacing, capture, every)
    assert spacing == pytest.approx(0.01) and seconds < 20.0
    (context, _), seconds = timed(choose_context, capture, every, 2, None)
    assert context == [49_999, 50_000] and seconds < 20.0
    targets, seconds = timed(choose_targets, capture, every, context, 4)
    assert targets == [49_997, 49_998, 50_001, 50_002] and seconds < 20.0

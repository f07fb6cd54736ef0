"""Capture layouts as the tools write them, built in code from the real layouts' structure:
COLMAP's workspace (``sparse/0`` + ``dense/0/{images,sparse}``), gaussian-splatting's
``convert.py`` (``input/`` + ``distorted/sparse/0``, then ``images/`` + ``sparse/0``) and LLFF
(``poses_bounds.npy`` [N, 17] + ``images/``, ``images_<k>``; rows in sorted-name order)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsviewer.dataset import CaptureOptions, load_scene
from dsviewer.dataset.capture import read_capture
from dsviewer.dataset.errors import CaptureFormatError
from tests.dataset_builders import (
    SETTINGS,
    H,
    W,
    noise_image,
    png_bytes,
    pose,
    write_colmap_text,
)

UNITS = CaptureOptions(target_baseline=None)
PINHOLE = ("PINHOLE", W, H, [40.0, 40.0, 24.0, 16.0])


def write_images(folder, names, seed=0, height=H, width=W):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(png_bytes(noise_image(seed + i, height, width)))


def centres(scene, views="context"):
    """Camera centres of the loaded views in the capture's units ``[V, 3]``."""
    ext = getattr(scene, views).extrinsics.double()
    return scene.world_from_model.poses(ext)[:, :3, 3].numpy()


# ------------------------------------------------------------------ COLMAP workspaces


def write_workspace(capture, dense="dense/0", with_photos=False):
    """A project as ``colmap automatic_reconstructor`` leaves it: the photos' model in
    sparse/0 (an OPENCV camera, cameras at x = 0, 1, 2) and the undistorted copies with their
    own PINHOLE model (and stereo/) in ``dense``: shifted by 100 in x so the test sees which
    was read."""
    names = [f"IMG_{i:04d}.JPG.png" for i in range(3)]
    opencv = {1: ("OPENCV", W, H, [40.0, 40.0, 24.0, 16.0, 0.01, 0.0, 0.0, 0.0])}
    write_colmap_text(capture, opencv, [(n, 1, pose(x=float(i)), []) for i, n in
                                        enumerate(names)])  # fmt: skip
    if with_photos:
        write_images(capture / "images", names, seed=10)
    write_images(capture / dense / "images", names, seed=20)
    (capture / dense / "stereo").mkdir()  # image_undistorter's stereo/ workspace
    write_colmap_text(capture / dense, {1: ("PINHOLE", W, H, [41.0, 41.0, 24.0, 16.0])},
                      [(n, 1, pose(x=100.0 + i), []) for i, n in enumerate(names)],
                      model="sparse")
    return names


@pytest.mark.parametrize("dense", ["dense/0", "dense", "dense/workspace"])
def test_workspace_dense_model_is_used_when_the_photos_are_not_there(tmp_path, dense):
    capture = tmp_path / "project"
    names = write_workspace(capture, dense)
    scene = load_scene(str(capture), settings=SETTINGS, context=[0, 2], target=[1],
                       capture=UNITS)
    np.testing.assert_allclose(centres(scene)[:, 0], [100.0, 102.0], atol=1e-5)
    assert scene.context.camera_models == ("PINHOLE", "PINHOLE")  # nothing undistorted twice
    expected = torch.from_numpy(noise_image(20)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(scene.context.image[0], expected, atol=1 / 255, rtol=0)
    note = next(n.message for n in scene.notes if n.code == "colmap_workspace")
    assert f"{dense} was used" in note
    assert "none of the 3 images that" in note and "sparse/0/images.txt" in note
    assert scene.key == "project"
    assert scene.context.image_names == (names[0], names[2])
    # Passing the workspace folder itself reads the same model.
    direct = load_scene(str(capture / dense), settings=SETTINGS, context=[0, 2], target=[],
                        capture=UNITS)
    np.testing.assert_allclose(centres(direct), centres(scene), atol=1e-6)
    assert direct.key == "project"


def test_workspace_photos_on_disk_keep_the_top_level_model(tmp_path):
    write_workspace(tmp_path, with_photos=True)
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 2], target=[],
                       capture=UNITS)
    np.testing.assert_allclose(centres(scene)[:, 0], [0.0, 2.0], atol=1e-5)
    assert scene.context.camera_models == ("OPENCV", "OPENCV")
    assert "colmap_workspace" not in {n.code for n in scene.notes}


def test_workspace_alone_and_none_at_all(tmp_path):
    """dense/0 without any top-level model still loads; a dense/0 with no images says where
    the images were looked for."""
    alone = tmp_path / "alone"
    names = ["a.png", "b.png"]
    write_images(alone / "dense" / "0" / "images", names)
    write_colmap_text(alone / "dense" / "0", {1: PINHOLE},
                      [(n, 1, pose(x=float(i)), []) for i, n in enumerate(names)],
                      model="sparse")
    scene = load_scene(str(alone), settings=SETTINGS, context=[0, 1], target=[])
    note = next(n.message for n in scene.notes if n.code == "colmap_workspace")
    assert "dense/0 was used" in note and "there is no other model" in note
    empty = tmp_path / "empty"
    write_colmap_text(empty, {1: PINHOLE}, [(n, 1, pose(x=float(i)), []) for i, n in
                                            enumerate(names)])  # fmt: skip
    with pytest.raises(CaptureFormatError, match=r"none of the 2 images .* dense/<n>"):
        load_scene(str(empty), settings=SETTINGS, context=[0, 1], target=[])


def write_convert_input(capture):
    """convert.py's input: photos in input/, the mapper's model in distorted/sparse/0."""
    names = ["0001.png", "0002.png", "0003.png"]
    write_images(capture / "input", names, seed=30)
    write_colmap_text(capture, {1: ("OPENCV", W, H, [40.0, 40.0, 24.0, 16.0, 0.02, 0.0, 0.0,
                                                     0.0])},
                      [(n, 1, pose(x=float(i)), []) for i, n in enumerate(names)],
                      model="distorted/sparse/0")
    return names


def test_convert_py_input_layout_reads_the_photos_in_input(tmp_path):
    write_convert_input(tmp_path)
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 2], target=[],
                       capture=UNITS)
    np.testing.assert_allclose(centres(scene)[:, 0], [0.0, 2.0], atol=1e-5)
    assert scene.context.camera_models == ("OPENCV", "OPENCV")
    assert "undistorted" in {n.code for n in scene.notes}
    # The capture's name is the folder's, also when the model folder is passed.
    by_model = load_scene(str(tmp_path / "distorted" / "sparse" / "0"), settings=SETTINGS,
                          context=[0, 2], target=[], capture=UNITS)
    torch.testing.assert_close(by_model.context.image, scene.context.image)


def test_convert_py_output_uses_the_undistorted_model_and_its_model_its_photos(tmp_path):
    """After convert.py: images/ + sparse/0 (undistorted, PINHOLE) beside input/ +
    distorted/sparse/0. The capture uses sparse/0 with images/; naming distorted/sparse/0
    uses input/ (images/ holds copies that model does not describe)."""
    names = write_convert_input(tmp_path)
    write_images(tmp_path / "images", names, seed=40)
    write_colmap_text(tmp_path, {1: ("PINHOLE", W, H, [39.0, 39.0, 24.0, 16.0])},
                      [(n, 1, pose(x=10.0 + i), []) for i, n in enumerate(names)])
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[],
                       capture=UNITS)
    np.testing.assert_allclose(centres(scene)[:, 0], [10.0, 11.0], atol=1e-5)
    expected = torch.from_numpy(noise_image(40)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(scene.context.image[0], expected, atol=1 / 255, rtol=0)
    distorted = read_capture(tmp_path / "distorted" / "sparse" / "0")
    assert [f.image_path for f in distorted.frames] == [tmp_path / "input" / n for n in names]


# ------------------------------------------------------------------ LLFF


def look_at(centre, target):
    """OpenCV camera-to-world looking from ``centre`` at ``target`` with image-down near
    world -Y (so world +Y is up), built from the axes' meaning, not from any converter."""
    forward = (target - centre) / np.linalg.norm(target - centre)
    right = np.cross(forward, [0.0, -1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = right, down, forward, centre
    return T


def llff_row(T_world_cam, height, width, focal, near, far):
    """One row as LLFF documents it: the rotation's columns are the camera's down, right and
    backward axes; then the centre, then (H, W, f); then the bounds."""
    right, down, forward, centre = (T_world_cam[:3, k] for k in range(4))
    matrix = np.stack([down, right, -forward, centre, [height, width, focal]], axis=1)
    return np.concatenate([matrix.ravel(), [near, far]])


LLFF_NAMES = ["1.png", "2.png", "10.png", "11.png", "3.png"]  # sorted: 1, 10, 11, 2, 3
LLFF_ORDER = sorted(LLFF_NAMES)
TARGET = np.array([0.0, 0.0, 6.0])


def write_llff(folder, height=H, width=W, focal=40.0, images="images", factor=1):
    """Row i is the i-th file in sorted order; file i (in LLFF's order) gets camera i."""
    poses = [look_at(np.array([0.4 * i - 1.0, 0.1 * i, 0.0]), TARGET) for i in range(5)]
    rows = [llff_row(T, height, width, focal, 2.0 + 0.5 * i, 20.0 + i) for i, T in
            enumerate(poses)]
    np.save(folder / "poses_bounds.npy", np.stack(rows))
    listing = LLFF_ORDER if factor == 1 else [f"image{i:03d}.png" for i in range(5)]
    write_images(folder / images, listing, seed=50, height=height // factor,
                 width=width // factor)
    return poses


def test_llff_axes_order_and_bounds(tmp_path):
    poses = write_llff(tmp_path)
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[1, 3], target=[0])
    back = scene.world_from_model.poses(scene.context.extrinsics.double()).numpy()
    np.testing.assert_allclose(back, np.stack([poses[1], poses[3]]), atol=1e-5)
    # NeRF's route: LLFF -> OpenGL [c1, -c0, c2], then OpenGL -> OpenCV flips Y and Z.
    row = np.load(tmp_path / "poses_bounds.npy")[3, :15].reshape(3, 5)
    opengl = np.eye(4)
    opengl[:3, :3] = np.stack([row[:, 1], -row[:, 0], row[:, 2]], axis=1)
    opengl[:3, 3] = row[:, 3]
    np.testing.assert_allclose(back[1], opengl @ np.diag([1.0, -1.0, -1.0, 1.0]), atol=1e-5)
    # The target point lies ahead of each camera, on its optical axis.
    w2c = np.linalg.inv(back[0])
    assert np.allclose((w2c[:3, :3] @ TARGET + w2c[:3, 3])[:2], 0.0, atol=1e-5)
    assert (w2c[:3, :3] @ TARGET + w2c[:3, 3])[2] > 0
    # Frame k is the k-th name in sorted order, with its own pixels.
    assert scene.context.image_names == ("images/10.png", "images/2.png")
    expected = torch.from_numpy(noise_image(50 + 1)).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(scene.context.image[0], expected, atol=1 / 255, rtol=0)
    K = scene.context.intrinsics[0]
    assert K[0, 0].item() == pytest.approx(40.0 / W) and K[0, 2].item() == pytest.approx(0.5)
    # Bounds: the hint in the capture's units, the note in both units.
    hint = scene.depth_bounds_hint
    assert hint.near == (2.5, 3.5) and hint.far == (21.0, 23.0)
    assert hint.source == "poses_bounds.npy"
    baseline = np.linalg.norm(poses[1][:3, 3] - poses[3][:3, 3])
    note = next(n.message for n in scene.notes if n.code == "depth_bounds")
    assert f"2.5..23 (the capture's units), {2.5 / baseline:.4g}..{23 / baseline:.4g}" in note


def test_llff_downscaled_folder_and_count_mismatch(tmp_path):
    """images_4 of a 190x130 capture holds 47x32 images (LLFF's minify floors): the camera is
    f / 4 with the centre at 95 / 4, 65 / 4."""
    write_llff(tmp_path, height=130, width=190, focal=150.0, images="images_4", factor=4)
    capture = read_capture(tmp_path)
    camera = capture.frames[2].camera
    assert (camera.width, camera.height) == (47, 32)
    np.testing.assert_allclose(camera.params, [150 / 4, 150 / 4, 190 / 2 / 4, 130 / 2 / 4])
    assert capture.frames[2].name == "images_4/image002.png"
    assert "downscaled_images" in {n.code for n in capture.notes}
    write_images(tmp_path / "images", LLFF_ORDER[:3])
    with pytest.raises(CaptureFormatError, match=r"has 5 rows, .* images/ holds 3") as caught:
        write_images(tmp_path / "images_4", ["extra.png"], seed=9, height=32, width=47)
        read_capture(tmp_path)
    assert "images_4/ holds 6" in str(caught.value)


def test_llff_file_checked_before_allocating(tmp_path):
    write_llff(tmp_path)
    with open(tmp_path / "poses_bounds.npy", "wb") as file:  # a header promising far more rows
        np.lib.format.write_array_header_1_0(file, {"descr": "<f8", "fortran_order": False,
                                                    "shape": (9999999, 17)})
        file.write(np.ones((5, 17)).tobytes())
    with pytest.raises(CaptureFormatError, match="declares 9999999 rows"):
        read_capture(tmp_path)
    np.save(tmp_path / "poses_bounds.npy", np.zeros((5, 15)))
    with pytest.raises(CaptureFormatError, match=r"shape \(5, 15\)"):
        read_capture(tmp_path)


def test_llff_bounds_beside_a_colmap_model(tmp_path):
    """imgs2poses leaves poses_bounds.npy beside sparse/0: the COLMAP model is read, and the
    bounds are matched to its images by name."""
    poses = write_llff(tmp_path)
    write_colmap_text(tmp_path, {1: PINHOLE}, [(name, 1, T, []) for name, T in
                                               zip(LLFF_ORDER, poses, strict=True)])
    capture = read_capture(tmp_path)
    by_name = {f.name: f.depth_bounds for f in capture.frames}
    assert by_name["10.png"] == (2.5, 21.0) and by_name["3.png"] == (4.0, 24.0)
    assert [f.name for f in capture.frames] == ["1.png", "2.png", "3.png", "10.png", "11.png"]


def test_an_implausible_llff_camera_is_one_paragraph_and_exit_2(tmp_path, capsys):
    """``dsviewer export`` on an LLFF capture whose f is 1e30: the values, no traceback."""
    from dsviewer.viewer.assets import demo_checkpoint
    from dsviewer.viewer.export_cli import main

    write_llff(tmp_path, height=64, width=64, focal=1e30)
    args = ["--ckpt", str(demo_checkpoint()), "--scene", str(tmp_path), "--out",
            str(tmp_path / "out"), "--device", "cpu"]
    assert main(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "field of view of 3.67e-27 x 3.67e-27 degrees" in err and "fx=1e+30" in err
    assert "row 0 in" in err and "poses_bounds.npy" in err and "Traceback" not in err

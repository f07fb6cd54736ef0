"""The SfM reference depth of captures (src/dataset/sfm.py), against the geometry the test
wrote: observed pixels follow the image through undistortion and crops, depths are the points'
z in each camera in the model's units, and what is left out is counted."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from dataset_builders import png_bytes, pose
from sfm_builders import SfmCamera, SfmImage, dot_image, observations, write_images, write_sfm_model

from dsviewer.dataset import PreprocessSettings
from dsviewer.dataset.capture import load_capture
from dsviewer.dataset.sfm import DEFAULT_MAX_ERROR
from dsviewer.io.ply import write_point_cloud_ply

SETTINGS = PreprocessSettings(image_shape=(96, 128), near=0.5, far=100.0, patch_multiple=16)
LENS = SfmCamera("OPENCV", 400, 240, [260.0, 255.0, 203.0, 118.0, -0.09, 0.012, 0.001, -0.0008])
WIDE = SfmCamera("PINHOLE", 300, 240, [250.0, 250.0, 150.0, 120.0])


def plane_points(z: float = 4.0, step: float = 0.5, extent: float = 3.0) -> np.ndarray:
    """A grid of points on the plane z = ``z`` (world), far apart in the images."""
    ticks = np.arange(-extent, extent + 1e-9, step)
    xs, ys = np.meshgrid(ticks, ticks * 0.7)
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], axis=-1)


def two_camera_capture(folder, binary: bool, error: np.ndarray | None = None,
                       stored_xyz: np.ndarray | None = None):
    cameras = {1: LENS, 2: WIDE}
    images = [SfmImage("a.png", 1, pose(x=-0.3, yaw_degrees=4.0)),
              SfmImage("b.png", 2, pose(x=0.35, y=0.05, yaw_degrees=-3.0))]
    xyz = plane_points()
    error = np.full(len(xyz), 0.4) if error is None else error
    write_sfm_model(folder, cameras, images, xyz, error, binary, stored_xyz=stored_xyz)
    write_images(folder, cameras, images, xyz)
    return cameras, images, xyz


def dot_centroid(image: torch.Tensor, uv: np.ndarray, radius: int = 3) -> np.ndarray:
    """Intensity-weighted centre (pixel centres at c + 0.5) of the dot nearest ``uv``."""
    gray = image[0].double().numpy()
    col, row = int(uv[0]), int(uv[1])
    rows = slice(max(row - radius, 0), min(row + radius + 1, gray.shape[0]))
    cols = slice(max(col - radius, 0), min(col + radius + 1, gray.shape[1]))
    patch = gray[rows, cols]
    ys, xs = np.mgrid[rows, cols] + 0.5
    weight = np.clip(patch - 0.1, 0, None)
    return np.array([(xs * weight).sum(), (ys * weight).sum()]) / weight.sum()


@pytest.mark.parametrize("binary", [False, True])
def test_observed_pixels_follow_the_image_through_undistortion_and_crop(tmp_path, binary):
    cameras, images, xyz = two_camera_capture(tmp_path, binary)
    scene = load_capture(tmp_path, SETTINGS, context=[0, 1], target=[])
    sfm = scene.context.sfm
    assert sfm is not None and sfm.source == "tracks" and len(sfm.views) == 2
    seen = observations(cameras, images, xyz)
    height, width = SETTINGS.image_shape
    for v, view in enumerate(sfm.views):
        # every observation of the image is either kept or counted once as left out
        assert view.count + sum(view.dropped.values()) == len(seen[v][1])
        assert view.count >= 12
        centres = [dot_centroid(scene.context.image[v], uv) for uv in view.uv]
        interior = ((view.uv > 3) & (view.uv < [width - 3, height - 3])).all(axis=1)
        np.testing.assert_allclose(np.array(centres)[interior], view.uv[interior], atol=0.2)
    # the 400x240 view loses its sides to the centre crop (160 -> 128 model columns)
    assert sfm.views[0].dropped["outside"] > 0


@pytest.mark.parametrize("binary", [False, True])
def test_depths_are_z_in_each_camera_in_model_units(tmp_path, binary):
    _, images, xyz = two_camera_capture(tmp_path, binary)
    scene = load_capture(tmp_path, SETTINGS, context=[0, 1], target=[])
    centres = np.stack([image.T_world_cam[:3, 3] for image in images])
    scale = np.linalg.norm(centres[0] - centres[1])  # target baseline 1
    for v, view in enumerate(scene.context.sfm.views):
        camera_xyz = (np.linalg.inv(images[v].T_world_cam) @ np.c_[xyz, np.ones(len(xyz))].T).T
        np.testing.assert_allclose(view.depth, camera_xyz[view.point, 2] / scale, rtol=1e-9)
        np.testing.assert_allclose(view.error, 0.4)
    # the points in the model frame are the user's points through world_from_model's inverse
    model = scene.world_from_model.points(torch.from_numpy(scene.context.sfm.xyz)).numpy()
    np.testing.assert_allclose(model, xyz, atol=1e-9)


def test_text_and_binary_models_give_the_same_reference(tmp_path):
    refs = []
    for binary in (False, True):
        folder = tmp_path / str(binary)
        two_camera_capture(folder, binary)
        refs.append(load_capture(folder, SETTINGS, context=[0, 1], target=[]).context.sfm)
    for a, b in zip(refs[0].views, refs[1].views):
        np.testing.assert_allclose(a.uv, b.uv, atol=1e-9)
        np.testing.assert_array_equal(a.point, b.point)
        assert a.dropped == b.dropped


def test_large_errors_and_points_behind_the_camera_are_left_out_and_counted(tmp_path):
    xyz = plane_points()
    error = np.full(len(xyz), 0.5)
    error[::5] = DEFAULT_MAX_ERROR + 1.0
    stored = xyz.copy()
    stored[1::7, 2] = -6.0  # points3D puts these behind both cameras; their features stay
    two_camera_capture(tmp_path, True, error=error, stored_xyz=stored)
    scene = load_capture(tmp_path, SETTINGS, context=[0, 1], target=[])
    full = load_capture(tmp_path, SETTINGS, context=[0, 1], target=[], options=_options(1e9))
    cameras, images = {1: LENS, 2: WIDE}, [SfmImage("a.png", 1, pose(x=-0.3, yaw_degrees=4.0)),
                                           SfmImage("b.png", 2, pose(x=0.35, y=0.05,
                                                                     yaw_degrees=-3.0))]
    seen = observations(cameras, images, xyz)
    for v, (view, everything) in enumerate(zip(scene.context.sfm.views, full.context.sfm.views)):
        assert (view.error <= DEFAULT_MAX_ERROR).all() and (view.depth > 0).all()
        kept = set(everything.point.tolist())
        high = {p for p in kept if error[p] > DEFAULT_MAX_ERROR}
        # counted under the first reason: behind, then error, then outside the crop
        assert view.dropped["error"] == sum(
            1 for p in seen[v][1] if error[p] > DEFAULT_MAX_ERROR and stored[p, 2] > 0)
        assert view.dropped["behind"] == everything.dropped["behind"] > 0
        assert set(view.point.tolist()) == kept - high
    note = next(n for n in scene.notes if n.code == "sfm_reference")
    assert "behind the camera" in note.message and "reprojection error" in note.message


def _options(max_error: float):
    from dsviewer.dataset.capture import CaptureOptions

    return CaptureOptions(sfm_max_error=max_error)


def test_a_point_cloud_without_tracks_is_projected_and_occluded_points_dropped(tmp_path):
    camera = WIDE
    T = [pose(x=-0.3), pose(x=0.3)]
    near = plane_points(z=4.0, step=0.5, extent=1.0)
    hidden = T[0][:3, 3] + 2.0 * (near - T[0][:3, 3])  # behind them as the first camera sees
    hidden[:, 0] += 0.002
    far = plane_points(z=9.0, step=1.5, extent=6.0)  # partly beside the near patch
    xyz = np.concatenate([near, hidden, far])
    rgb = np.tile(np.array([[10, 200, 30]], dtype=np.uint8), (len(xyz), 1))
    write_point_cloud_ply(tmp_path / "sparse_pc.ply", xyz.astype(np.float32), rgb)
    (tmp_path / "images").mkdir()
    fx, fy, cx, cy = camera.params
    frames = []
    for i, T_world_cam in enumerate(T):
        (tmp_path / "images" / f"{i}.png").write_bytes(png_bytes(dot_image(camera, [], 1.0)))
        frames.append({"file_path": f"images/{i}.png",
                       "transform_matrix": (T_world_cam @ np.diag([1, -1, -1, 1.0])).tolist()})
    (tmp_path / "transforms.json").write_text(json.dumps({
        "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": camera.width, "h": camera.height,
        "ply_file_path": "sparse_pc.ply", "frames": frames}))
    scene = load_capture(tmp_path, SETTINGS, context=[0, 1], target=[])
    sfm = scene.context.sfm
    assert sfm.source == "point_cloud" and np.isnan(sfm.error).all()
    scale = 0.6
    for v, view in enumerate(sfm.views):
        pixels, z = camera.project(T[v], xyz)
        # 300x240 is resized to 128x102 (scale max(96/240, 128/300)), then rows 3..98 kept
        expected_uv = pixels * [128 / 300, 102 / 240] - [0, 3]
        np.testing.assert_allclose(view.uv, expected_uv[view.point], atol=0.02)
        np.testing.assert_allclose(view.depth, z[view.point] / scale, rtol=1e-6)
        kept = set(view.point.tolist())
        assert set(range(len(near))) <= kept and view.dropped["behind"] == 0
    first = sfm.views[0]  # the hidden points sit behind the near ones on this camera's rays
    assert not set(first.point.tolist()) & set(range(len(near), 2 * len(near)))
    assert first.dropped["occluded"] >= len(near)
    note = next(n for n in scene.notes if n.code == "sfm_reference")
    assert "no tracks" in note.message


def test_no_points_no_reference(tmp_path):
    cameras = {1: WIDE}
    images = [SfmImage("a.png", 1, pose(x=-0.3)), SfmImage("b.png", 1, pose(x=0.3))]
    xyz = plane_points()
    sparse = write_sfm_model(tmp_path, cameras, images, xyz, np.zeros(len(xyz)), False)
    (sparse / "points3D.txt").unlink()
    write_images(tmp_path, cameras, images, plane_points())
    scene = load_capture(tmp_path, SETTINGS, context=[0, 1], target=[])
    assert scene.context.sfm is None
    assert not [n for n in scene.notes if n.code == "sfm_reference"]


def test_the_command_line_default_threshold_is_the_library_default():
    from dsviewer.viewer.options import RunOptions
    from dsviewer.viewer.session.specs import SessionSettings

    assert RunOptions().sfm_max_error == DEFAULT_MAX_ERROR
    assert SessionSettings().sfm_max_error == DEFAULT_MAX_ERROR
    assert RunOptions(sfm_max_error=3.5).session_settings().sfm_max_error == 3.5


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan")])
def test_a_bad_threshold_is_a_user_error(tmp_path, bad):
    from dsviewer.dataset.errors import SceneError

    two_camera_capture(tmp_path, True)
    with pytest.raises(SceneError, match="--sfm-max-error"):
        load_capture(tmp_path, SETTINGS, context=[0, 1], target=[], options=_options(bad))


@pytest.mark.parametrize("cut", ["count", "track", "end"])
def test_a_corrupt_points_file_is_refused_before_allocating(tmp_path, cut):
    from dsviewer.dataset.errors import CaptureFormatError

    two_camera_capture(tmp_path, True)
    path = tmp_path / "sparse" / "0" / "points3D.bin"
    data = bytearray(path.read_bytes())
    if cut == "count":
        data[:8] = (10**15).to_bytes(8, "little")  # more points than bytes
    elif cut == "track":
        data[8 + 43 : 8 + 51] = (10**12).to_bytes(8, "little")  # the first track's length
    else:
        data = data[:-5]
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureFormatError, match="points3D.bin"):
        load_capture(tmp_path, SETTINGS, context=[0, 1], target=[])


def test_binary_tracks_agree_with_the_text_reader_on_a_larger_model(tmp_path):
    from dsviewer.dataset.colmap_files import read_point_tracks_binary, read_point_tracks_text

    xyz = plane_points(step=0.1)  # ~3,700 points, tracks of one or two images
    cameras = {1: LENS, 2: WIDE}
    images = [SfmImage("a.png", 1, pose(x=-0.3)), SfmImage("b.png", 2, pose(x=0.3))]
    error = np.linspace(0, 3, len(xyz))
    rgb = (np.arange(len(xyz) * 3) % 251).astype(np.uint8).reshape(-1, 3)
    text = write_sfm_model(tmp_path / "t", cameras, images, xyz, error, False, rgb=rgb)
    binary = write_sfm_model(tmp_path / "b", cameras, images, xyz, error, True, rgb=rgb)
    a, b = read_point_tracks_text(text / "points3D.txt"), read_point_tracks_binary(
        binary / "points3D.bin")
    for name in ("ids", "xyz", "rgb", "error", "track_point", "track_image", "track_feature"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert len(a.track_point) > len(xyz)
    np.testing.assert_array_equal(b.xyz, xyz)
    np.testing.assert_array_equal(b.rgb, rgb)


def test_a_broken_or_missing_point_cloud(tmp_path):
    from dsviewer.dataset.errors import CaptureFormatError

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "0.png").write_bytes(png_bytes(dot_image(WIDE, [], 1.0)))
    (tmp_path / "images" / "1.png").write_bytes(png_bytes(dot_image(WIDE, [], 1.0)))
    fx, fy, cx, cy = WIDE.params
    frames = [{"file_path": f"images/{i}.png",
               "transform_matrix": (pose(x=0.6 * i) @ np.diag([1, -1, -1, 1.0])).tolist()}
              for i in range(2)]
    (tmp_path / "transforms.json").write_text(json.dumps({
        "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": WIDE.width, "h": WIDE.height,
        "ply_file_path": "points.ply", "frames": frames}))
    scene = load_capture(tmp_path, SETTINGS, context=[0, 1], target=[])
    assert scene.context.sfm is None  # named but absent: a note says so
    assert any(n.code == "sfm_points_missing" for n in scene.notes)
    (tmp_path / "points.ply").write_bytes(b"not a ply file\n")
    with pytest.raises(CaptureFormatError, match="points.ply"):
        load_capture(tmp_path, SETTINGS, context=[0, 1], target=[])

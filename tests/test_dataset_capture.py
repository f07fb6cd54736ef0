"""Own captures: COLMAP (text, binary) and nerfstudio folders load with the right poses."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from dsviewer.dataset import CaptureOptions, PreprocessSettings, load_scene
from dsviewer.dataset.capture import load_capture
from dsviewer.dataset.synthetic import render_example

pytest.importorskip("open3d")  # synthetic scenes are ray-cast with open3d

Rotation = pytest.importorskip("scipy.spatial.transform").Rotation

H, W, FRAMES = 32, 48, 4
SETTINGS = PreprocessSettings(image_shape=(H, W), near=0.5, far=100.0, patch_multiple=16)


@pytest.fixture(scope="module")
def scene():
    """Images (JPEG bytes), camera-to-world poses [F, 4, 4] and pixel intrinsics."""
    example = render_example(21, 0, FRAMES, H, W)
    poses = []
    for row in example.cameras.double():
        w2c = np.eye(4)
        w2c[:3] = row[6:].reshape(3, 4).numpy()
        poses.append(np.linalg.inv(w2c))
    fx, fy, cx, cy = (example.cameras[0, :4].double() * torch.tensor([W, H, W, H])).tolist()
    return [bytes(image.numpy()) for image in example.images], np.stack(poses), (fx, fy, cx, cy)


def write_images(folder, images, subfolder="images"):
    (folder / subfolder).mkdir(parents=True, exist_ok=True)
    names = [f"frame_{i:03d}.jpg" for i in range(len(images))]
    for name, data in zip(names, images, strict=True):
        (folder / subfolder / name).write_bytes(data)
    return names


def colmap_images(poses):
    """(qw qx qy qz, t) world-to-camera per frame, from scipy (independent of our reader)."""
    out = []
    for pose in poses:
        w2c = np.linalg.inv(pose)
        x, y, z, w = Rotation.from_matrix(w2c[:3, :3]).as_quat()
        out.append((np.array([w, x, y, z]), w2c[:3, 3]))
    return out


def write_colmap_text(folder, scene, model="PINHOLE", extra=()):
    images, poses, (fx, fy, cx, cy) = scene
    names = write_images(folder, images)
    sparse = folder / "sparse" / "0"
    sparse.mkdir(parents=True)
    params = [fx, fy, cx, cy, *extra] if model != "SIMPLE_PINHOLE" else [fx, cx, cy]
    values = " ".join(repr(float(p)) for p in params)
    (sparse / "cameras.txt").write_text(f"# Camera list\n1 {model} {W} {H} {values}\n")
    lines = ["# Image list", "# two lines per image"]
    for i, (name, (q, t)) in enumerate(zip(names, colmap_images(poses), strict=True), 1):
        lines.append(f"{i} {' '.join(repr(float(v)) for v in [*q, *t])} 1 {name}")
        lines.append("10.5 11.5 -1 12.0 3.0 7" if i == 1 else "")
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")


def write_colmap_binary(folder, scene):
    images, poses, (fx, fy, cx, cy) = scene
    names = write_images(folder, images)
    sparse = folder / "sparse" / "0"
    sparse.mkdir(parents=True)
    cameras = struct.pack("<Q", 1) + struct.pack("<iiQQ", 7, 1, W, H)  # model id 1: PINHOLE
    (sparse / "cameras.bin").write_bytes(cameras + struct.pack("<4d", fx, fy, cx, cy))
    data = struct.pack("<Q", len(names))
    for i, (name, (q, t)) in enumerate(zip(names, colmap_images(poses), strict=True), 1):
        data += struct.pack("<i", i) + struct.pack("<4d", *q) + struct.pack("<3d", *t)
        data += struct.pack("<i", 7) + name.encode() + b"\0"
        data += struct.pack("<Q", 2) + struct.pack("<ddqddq", 1.0, 2.0, 5, 3.0, 4.0, -1)
    (sparse / "images.bin").write_bytes(data)


def assert_poses(views, poses, frames, scene_intrinsics):
    fx, fy, cx, cy = scene_intrinsics
    torch.testing.assert_close(views.extrinsics.double(), torch.from_numpy(poses[frames]),
                               atol=1e-5, rtol=0)
    expected_K = torch.tensor([[fx / W, 0, cx / W], [0, fy / H, cy / H], [0, 0, 1]])
    torch.testing.assert_close(views.intrinsics, expected_K.expand(len(frames), 3, 3).float())


@pytest.mark.parametrize("writer", [write_colmap_text, write_colmap_binary])
def test_colmap_poses_in_capture_units(tmp_path, scene, writer):
    writer(tmp_path, scene)
    loaded = load_capture(tmp_path, SETTINGS, context=[0, 3], target=[1],
                          options=CaptureOptions(target_baseline=None))
    assert_poses(loaded.context, scene[1], [0, 3], scene[2])
    assert_poses(loaded.target, scene[1], [1], scene[2])
    assert loaded.world_from_model.is_identity
    assert loaded.context.depth is None and loaded.context.image.shape == (2, 3, H, W)


def test_colmap_rescaled_to_unit_baseline_maps_back(tmp_path, scene):
    write_colmap_text(tmp_path, scene, model="SIMPLE_PINHOLE")
    loaded = load_capture(tmp_path, SETTINGS.__class__(**{**SETTINGS.__dict__,
                                                          "num_context_views": 3}),
                          options=CaptureOptions(context_mode="evenly", target_baseline=2.0))
    assert loaded.context.index.tolist() == [0, 2, 3]  # round(linspace(0, 3, 3)) = 0, 2, 3
    centers = loaded.context.extrinsics[:, :3, 3].double()
    assert torch.cdist(centers, centers).max().item() == pytest.approx(2.0, rel=1e-5)
    back = loaded.world_from_model.poses(loaded.context.extrinsics.double())
    torch.testing.assert_close(back[:, :3, 3], torch.from_numpy(scene[1][[0, 2, 3], :3, 3]),
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(loaded.context.extrinsics[:, :3, :3].double(),
                               torch.from_numpy(scene[1][[0, 2, 3], :3, :3]), atol=1e-5, rtol=0)


def test_nerfstudio_transforms_opengl_to_opencv(tmp_path, scene):
    images, poses, (fx, fy, cx, cy) = scene
    names = write_images(tmp_path, images)
    opengl_from_opencv = np.diag([1.0, -1.0, -1.0, 1.0])
    frames = [{"file_path": f"images/{name}", "transform_matrix": (pose @ opengl_from_opencv)
               .tolist()} for name, pose in zip(names, poses, strict=True)]
    (tmp_path / "transforms.json").write_text(json.dumps(
        {"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": W, "h": H, "frames": frames[::-1]}))
    loaded = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 2], target=[3],
                        capture=CaptureOptions(target_baseline=None))
    assert_poses(loaded.context, poses, [0, 2], scene[2])
    assert_poses(loaded.target, poses, [3], scene[2])
    # OpenCV: the camera looks along +Z of its pose, i.e. into the scene (positive depth).
    assert loaded.context.extrinsics[0, 2, 2] > 0.9


def test_nearest_context_views_around_the_anchor(tmp_path, scene):
    write_colmap_text(tmp_path, scene)
    loaded = load_capture(tmp_path, SETTINGS, options=CaptureOptions(anchor=3))
    assert loaded.context.index.tolist() == [2, 3]  # frame 2 is the camera nearest to frame 3


def test_off_centre_principal_point_follows_the_crop(tmp_path):
    """A 96x48 capture with its principal point far from the centre (cx = 0.2 W, cy = 0.7 H),
    cropped to 48x32: a bright blob drawn where a ray meets the photo must appear where the
    loaded intrinsics project that ray (the official keep-normalized-cx rule misses by ~5 px)."""
    from tests.dataset_builders import png_bytes, pose, write_transforms

    width, height, fx, cx, cy = 96, 48, 50.0, 0.2 * 96, 0.7 * 48
    ray = np.array([(60.0 - cx) / fx, (18.0 - cy) / fx])  # hits pixel (60, 18) of the photo
    ys, xs = np.mgrid[:height, :width] + 0.5
    blob = np.exp(-((xs - 60.0) ** 2 + (ys - 18.0) ** 2) / (2 * 2.0 ** 2))
    photo = np.repeat((255 * blob).round().astype(np.uint8)[..., None], 3, axis=-1)
    for i in range(2):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(photo))
    write_transforms(tmp_path, [("0.png", pose()), ("1.png", pose(x=1.0))],
                     fl_x=fx, fl_y=fx, cx=cx, cy=cy, w=width, h=height)
    view = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[]).context
    K = view.intrinsics[0].double()
    expected = np.array([(K[0, 0] * ray[0] + K[0, 2]) * W, (K[1, 1] * ray[1] + K[1, 2]) * H])
    weight = view.image[0, 0].double().numpy() ** 4  # [H, W]; the power sharpens the peak
    yy, xx = np.mgrid[:H, :W] + 0.5
    found = np.array([(weight * xx).sum(), (weight * yy).sum()]) / weight.sum()
    np.testing.assert_allclose(found, expected, atol=0.3)

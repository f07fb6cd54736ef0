"""Real captures as people bring them: unordered photos, partial frame lists, Blender splits,
several cameras and sizes, EXIF-turned photos."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from dsviewer.dataset import CaptureOptions, load_scene
from dsviewer.dataset.errors import CaptureFormatError, ImageCameraMismatchError, MissingFramesError
from dsviewer.geometry.view_geometry import pairwise_view_geometry, ray_angles
from tests.dataset_builders import (
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


def test_pairwise_view_geometry():
    a = torch.from_numpy(np.stack([pose(), pose(x=3.0, z=4.0, yaw_degrees=90.0)]))
    distance, angle = pairwise_view_geometry(a, a[:1])
    torch.testing.assert_close(distance[:, 0], torch.tensor([0.0, 5.0], dtype=torch.float64))
    torch.testing.assert_close(angle[:, 0], torch.tensor([0.0, 90.0], dtype=torch.float64))
    point = torch.tensor([[0.0, 0.0, 1.0]])
    angle = ray_angles(point, torch.zeros(1, 3), torch.tensor([[1.0, 0.0, 1.0]]))
    assert angle.item() == pytest.approx(90.0)


def write_photo_collection(folder, with_points=True):
    """Six photos whose name neighbours are far apart: frames 1 and 4 see 30 shared points at
    about 5 degrees of triangulation, frames 0 and 3 (near duplicates) 50 points at 0.5."""
    xs = [0.0, 5.0, 20.0, 0.0873, 5.873, 40.0]
    (folder / "images").mkdir(parents=True)
    names = [f"photo_{i}.png" for i in range(6)]
    for i, name in enumerate(names):
        (folder / "images" / name).write_bytes(png_bytes(noise_image(i)))
    points, seen = {}, {i: [] for i in range(6)}
    for k in range(50):
        points[k] = np.array([0.04 + 0.001 * k, 0.0, 10.0])
        seen[0].append(k)
        seen[3].append(k)
    for k in range(100, 130):
        points[k] = np.array([5.44 + 0.001 * k, 0.0, 10.0])
        seen[1].append(k)
        seen[4].append(k)
    write_colmap_text(folder, {1: ("PINHOLE", W, H, [40.0, 40.0, 24.0, 16.0])},
                      [(name, 1, pose(x=x), seen[i]) for i, (name, x) in
                       enumerate(zip(names, xs, strict=True))],
                      points if with_points else None)


def test_covisibility_chooses_context_and_nearby_targets(tmp_path):
    write_photo_collection(tmp_path)
    scene = load_scene(str(tmp_path), settings=SETTINGS,
                       capture=CaptureOptions(target_baseline=None, max_targets=2))
    assert scene.context.index.tolist() == [1, 4]  # the 5-degree pair, not the 50 near-copies
    assert scene.target.index.tolist() == [0, 3]  # the cameras nearest to the context
    note = next(n.message for n in scene.notes if n.code == "default_views")
    assert "COLMAP covisibility" in note and "[1, 4]" in note


def test_covisibility_without_point_positions_counts_shared_points(tmp_path):
    write_photo_collection(tmp_path, with_points=False)
    scene = load_scene(str(tmp_path), settings=SETTINGS, capture=UNITS)
    assert scene.context.index.tolist() == [0, 3]  # most shared points


def test_without_points_the_anchor_and_its_nearest_camera(tmp_path):
    for i in range(5):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(noise_image(i)))
    # Frame 1 is nearest to anchor 2 by distance but looks 80 degrees away; frame 4 is a bit
    # farther and looks the same way.
    poses = [pose(x=-6.0), pose(x=0.9, yaw_degrees=80.0), pose(), pose(x=9.0), pose(x=-1.1)]
    write_transforms(tmp_path, [(f"{i}.png", T) for i, T in enumerate(poses)], fl_x=40.0, w=W,
                     h=H)
    scene = load_scene(str(tmp_path), settings=SETTINGS, capture=UNITS)
    assert scene.context.index.tolist() == [2, 4]


def test_missing_frames_are_skipped_and_numbering_is_stable(tmp_path):
    names = [f"images/{i:04d}.png" for i in range(1, 7)]
    (tmp_path / "images").mkdir()
    for i, name in enumerate(names):
        if i not in (1, 4):  # 0002 and 0005 are not shipped
            (tmp_path / name).write_bytes(png_bytes(noise_image(i)))
    write_transforms(tmp_path, [(name, pose(x=0.3 * i)) for i, name in enumerate(names)],
                     fl_x=40.0, w=W, h=H)
    scene = load_scene(str(tmp_path), settings=SETTINGS, capture=UNITS)
    used = scene.context.index.tolist() + scene.target.index.tolist()
    assert 1 not in used and 4 not in used and len(used) == 4
    note = next(n.message for n in scene.notes if n.code == "frames_missing")
    assert "lists 6 frames, 2 of which have no image on disk (images/0002.png, " \
           "images/0005.png)" in note
    explicit = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 5], target=[2],
                          capture=UNITS)
    assert explicit.context.index.tolist() == [0, 5] and explicit.target.index.tolist() == [2]
    torch.testing.assert_close(explicit.context.extrinsics[1, 0, 3], torch.tensor(1.5))
    with pytest.raises(MissingFramesError, match=r"missing on disk .*: images/0005.png"):
        load_scene(str(tmp_path), settings=SETTINGS, context=[0, 4])
    for name in names:
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(CaptureFormatError, match=(
            rf"none of the 6 images .* is on disk; file_path names are looked for relative to "
            rf"{tmp_path} \(e.g. {tmp_path / names[0]},")):
        load_scene(str(tmp_path), settings=SETTINGS, capture=UNITS)


def blender_png() -> bytes:
    rgba = np.zeros((H, W, 4), dtype=np.uint8)
    rgba[..., 1] = 200
    rgba[:, : W // 2, 3] = 255  # left half opaque green, right half transparent (black RGB)
    return png_bytes(rgba)


def test_blender_splits(tmp_path):
    angle = 0.6911112070083618
    splits = {"train": ["r_0", "r_1"], "test": ["r_0", "r_10", "r_2"]}
    for split, stems in splits.items():
        (tmp_path / split).mkdir()
        for stem in stems:
            (tmp_path / split / f"{stem}.png").write_bytes(blender_png())
        write_transforms(tmp_path, [(f"./{split}/{stem}", pose(x=0.5 * k, z=0.3 * len(split)))
                                    for k, stem in enumerate(stems)],
                         name=f"transforms_{split}.json", camera_angle_x=angle)
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 2], target=[4],
                       capture=UNITS)
    # Natural order over all splits: test/r_0, test/r_2, test/r_10, train/r_0, train/r_1.
    torch.testing.assert_close(scene.context.extrinsics[:, 0, 3], torch.tensor([0.0, 0.5]))
    torch.testing.assert_close(scene.target.extrinsics[0, 0, 3], torch.tensor(0.5))
    fx = 0.5 * W / math.tan(angle / 2)
    assert scene.context.intrinsics[0, 0, 0].item() == pytest.approx(fx / W)
    assert scene.context.intrinsics[0, 1, 1].item() == pytest.approx(fx / H)
    image = scene.context.image[0]
    torch.testing.assert_close(image[:, 4:-4, W // 2 + 4 : -4].min(), torch.tensor(1.0))
    assert image[1, 4:-4, 4 : W // 2 - 4].mean().item() == pytest.approx(200 / 255, abs=1e-3)
    assert any(n.code == "alpha_composited" for n in scene.notes)
    test_only = load_scene(str(tmp_path / "transforms_test.json"), settings=SETTINGS,
                           context=[0, 1], target=[2], capture=UNITS)
    assert test_only.target.index.tolist() == [2]
    torch.testing.assert_close(test_only.target.extrinsics[0, 0, 3], torch.tensor(0.5))


def test_cameras_of_different_sizes(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "land.png").write_bytes(png_bytes(noise_image(0, 40, 60)))
    (tmp_path / "images" / "port.png").write_bytes(png_bytes(noise_image(1, 60, 40)))
    write_colmap_text(tmp_path, {1: ("PINHOLE", 60, 40, [50.0, 50.0, 30.0, 20.0]),
                                 2: ("SIMPLE_PINHOLE", 40, 60, [45.0, 20.0, 30.0])},
                      [("land.png", 1, pose(), []), ("port.png", 2, pose(x=1.0), [])])
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[],
                       capture=UNITS)
    assert scene.context.image.shape == (2, 3, H, W)
    # land 60x40 -> scale 0.8 -> 48x32, no crop: K kept. port 40x60 -> scale 1.2 -> 48x72,
    # rows cropped to 32: fy grows by 72/32.
    K = scene.context.intrinsics
    assert K[0, 0, 0].item() == pytest.approx(50 / 60) and K[0, 1, 1].item() == pytest.approx(
        50 / 40)
    assert K[1, 0, 0].item() == pytest.approx(45 / 40)
    assert K[1, 1, 1].item() == pytest.approx(45 / 60 * 72 / 32)
    note = next(n.message for n in scene.notes if n.code == "mixed_image_sizes")
    assert "60x40 (WxH): 1 (e.g. land.png)" in note and "40x60 (WxH): 1" in note
    assert scene.context.camera_models == ("PINHOLE", "SIMPLE_PINHOLE")


def exif_png(height: int, width: int, orientation: int) -> bytes:
    image = Image.fromarray(noise_image(3, height, width))
    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif.tobytes())
    return buffer.getvalue()


def test_exif_orientation(tmp_path):
    (tmp_path / "a.jpg").write_bytes(exif_png(H, W, 6))
    (tmp_path / "b.jpg").write_bytes(exif_png(H, W, 1))
    write_transforms(tmp_path, [("a.jpg", pose()), ("b.jpg", pose(x=1.0))], fl_x=40.0, w=W, h=H)
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[],
                       capture=UNITS)
    note = next(n.message for n in scene.notes if n.code == "exif_orientation")
    assert note.startswith("1 image(s) carry an EXIF orientation tag (e.g. a.jpg: 6)")
    (tmp_path / "a.jpg").write_bytes(exif_png(W, H, 6))  # pixels turned after the cameras
    with pytest.raises(ImageCameraMismatchError, match=r"a.jpg in .* is 32x48 \(WxH\) but its "
                       r"camera is 48x32 .*turned by 90 degrees and carries EXIF orientation 6"
                       ) as caught:
        load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[])
    assert ".." not in str(caught.value)  # one sentence ending, then advice that fits
    assert str(caught.value).endswith("compute the cameras again from these images.")


def test_context_without_baseline_is_scaled_by_the_camera_spacing(tmp_path):
    for i in range(4):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(noise_image(i)))
    poses = [pose(), pose(yaw_degrees=10.0), pose(x=2.0), pose(x=4.0)]  # 0 and 1: same centre
    write_transforms(tmp_path, [(f"{i}.png", T) for i, T in enumerate(poses)], fl_x=40.0, w=W,
                     h=H)
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[2])
    notes = {n.code: n.message for n in scene.notes}
    # Nearest camera at another position: 2 for every camera, so the spacing is 2.
    assert "scaled by its median camera spacing (2) instead" in notes["baseline_fallback"]
    assert scene.world_from_model.scale == pytest.approx(2.0)
    assert "at most 0 model units apart" in notes["small_baseline"]


@pytest.mark.parametrize("unit", [1e-3, 1.0, 1e3])  # kilometres, metres, millimetres
def test_small_units_are_not_mistaken_for_no_baseline(tmp_path, unit):
    """baseline_epsilon is relative to the capture's camera spacing: the same capture in any
    unit scales by its context baseline (0.2 m), with no fallback note."""
    for i in range(4):
        (tmp_path / f"{i}.png").write_bytes(png_bytes(noise_image(i)))
    poses = [pose(x=unit * x) for x in (0.0, 0.2, 1.0, 2.0)]
    write_transforms(tmp_path, [(f"{i}.png", T) for i, T in enumerate(poses)], fl_x=40.0, w=W,
                     h=H)
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[2])
    assert scene.world_from_model.scale == pytest.approx(0.2 * unit)
    assert "baseline_fallback" not in {n.code for n in scene.notes}

"""Every bad input gets one clear exception naming the file and what to do."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dsviewer.dataset import PreprocessSettings, SceneError, load_scene
from dsviewer.dataset.chunks import write_chunk, write_index
from dsviewer.dataset.errors import (
    CameraFormatError,
    CaptureFormatError,
    ChunkFormatError,
    CorruptImageError,
    FrameIndexError,
    ImageCameraMismatchError,
    MissingRootError,
    NonFinitePoseError,
    SettingsError,
    SkippedSceneError,
    UnknownSceneKeyError,
    UnsupportedCameraError,
)
from dsviewer.dataset.settings import load_preprocess_settings
from dsviewer.dataset.synthetic import encode_jpeg, render_example
from tests.dataset_builders import pose, write_colmap_text

H, W = 32, 48
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "datasets"
SETTINGS = PreprocessSettings(image_shape=(H, W), near=0.5, far=100.0, patch_multiple=16)


@pytest.fixture(scope="module")
def example():
    pytest.importorskip("open3d")  # synthetic scenes are ray-cast with open3d
    return render_example(5, 0, 4, H, W, key="good_scene")


def write_scene(root, example, **changes):
    """Write ``example`` (with fields replaced) as the only scene of ``root``."""
    bad = dataclasses.replace(example, **changes)
    write_chunk(root / "000000.torch", [bad])
    write_index(root, {bad.key: "000000.torch"})
    return root


def load(root, key="good_scene", **kwargs):
    return load_scene(key, settings=SETTINGS, data_roots=[root], **kwargs)


def test_missing_root(tmp_path):
    with pytest.raises(MissingRootError, match="does not exist or is not a folder") as info:
        load(tmp_path / "nowhere")
    assert isinstance(info.value, FileNotFoundError) and str(tmp_path / "nowhere") in str(
        info.value)


def test_unknown_key_lists_closest_keys(tmp_path, example):
    write_scene(tmp_path, example)
    with pytest.raises(UnknownSceneKeyError, match="The closest keys are: good_scene") as info:
        load(tmp_path, "good_scen")
    assert info.value.close_matches == ["good_scene"] and str(tmp_path) in str(info.value)


def test_corrupt_jpeg_names_the_frame(tmp_path, example):
    images = list(example.images)
    images[1] = images[1][: len(images[1]) // 2]  # truncated
    write_scene(tmp_path, example, images=images)
    with pytest.raises(CorruptImageError, match="Frame 1 of scene 'good_scene'"):
        load(tmp_path, context=[0, 1])
    assert load(tmp_path, context=[0, 2], target=[3]).context.num_views == 2  # frame 1 unused


def test_camera_rows_of_the_wrong_size(tmp_path, example):
    write_scene(tmp_path, example, cameras=example.cameras[:, :17])
    with pytest.raises(CameraFormatError, match=r"shape \(4, 17\), expected \[N, 18\]"):
        load(tmp_path)


def test_non_finite_pose(tmp_path, example):
    cameras = example.cameras.clone()
    cameras[2, 9] = float("nan")
    write_scene(tmp_path, example, cameras=cameras)
    with pytest.raises(NonFinitePoseError, match=r"frame\(s\) 2 .*non-finite values"):
        load(tmp_path, context=[0, 2])
    assert load(tmp_path, context=[0, 3], target=[1]).target.index.tolist() == [1]


def test_non_rotation_pose(tmp_path, example):
    cameras = example.cameras.clone()
    cameras[1, 6:9] *= 2.0  # first rotation row scaled: det 2, so the pose has det 0.5
    write_scene(tmp_path, example, cameras=cameras)
    with pytest.raises(NonFinitePoseError, match="rotation determinant 0.5000"):
        load(tmp_path, context=[0, 1])


def test_mixed_image_sizes_are_preprocessed_per_view(tmp_path, example):
    images = list(example.images)
    images[3] = encode_jpeg(np.zeros((40, 48, 3), dtype=np.uint8))
    write_scene(tmp_path, example, images=images, depths=None)
    scene = load(tmp_path, context=[0, 3], target=[])
    alone = load(tmp_path, context=[3, 0], target=[])  # frame 3 first: its own shim either way
    assert scene.context.image.shape == (2, 3, *SETTINGS.model_shape)
    torch.testing.assert_close(scene.context.intrinsics[1], alone.context.intrinsics[0])
    # 48x40 -> scale max(32/40, 48/48) = 1 -> crop rows 4..36: fy grows by 40/32, fx kept.
    K = example.cameras[3, :4]
    assert scene.context.intrinsics[1, 1, 1].item() == pytest.approx(K[1].item() * 40 / 32)
    assert scene.context.intrinsics[1, 0, 0].item() == pytest.approx(K[0].item())
    note = next(n for n in scene.notes if n.code == "mixed_image_sizes")
    assert "48x32 (WxH): 1" in note.message and "48x40 (WxH): 1" in note.message


def test_evaluation_index_naming_a_missing_frame(tmp_path, example):
    write_scene(tmp_path, example)
    index = tmp_path / "evaluation_index.json"
    index.write_text(json.dumps({"good_scene": {"context": [0, 9], "target": [1]}}))
    with pytest.raises(FrameIndexError, match=r"frame\(s\) \[9\] .* has only 4 frames"):
        load(tmp_path, index_path=index)
    index.write_text(json.dumps({"good_scene": None}))
    with pytest.raises(SkippedSceneError, match="marks scene 'good_scene' as skipped"):
        load(tmp_path, index_path=index)
    with pytest.raises(FrameIndexError, match=r"--context/--target \(target\)"):
        load(tmp_path, context=[0, 1], target=[4])


def test_index_json_naming_a_missing_chunk(tmp_path, example):
    write_scene(tmp_path, example)
    write_index(tmp_path, {"good_scene": "000000.torch", "lost_scene": "000007.torch"})
    with pytest.raises(FileNotFoundError, match="000007.torch does not exist"):
        load(tmp_path, "lost_scene")


def test_not_a_chunk_and_depth_of_wrong_size(tmp_path, example):
    (tmp_path / "000000.torch").write_bytes(b"garbage")
    write_index(tmp_path, {"good_scene": "000000.torch"})
    with pytest.raises(ChunkFormatError, match="torch.load failed"):
        load(tmp_path)
    write_scene(tmp_path, example, depths=[d[:-2] for d in example.depths])
    with pytest.raises(ChunkFormatError, match=r"frame 0 has a depth map of size 48x30 \(WxH\)"):
        load(tmp_path)


def test_capture_errors(tmp_path):
    with pytest.raises(CaptureFormatError,
                       match=r"neither transforms.json \(or transforms_train/val/test.json\)"):
        load_scene(str(tmp_path), settings=SETTINGS)
    sparse = tmp_path / "sparse" / "0"
    sparse.mkdir(parents=True)
    (sparse / "cameras.bin").write_bytes(b"\x01\x00\x00\x00\x00\x00\x00\x00\x01")
    (sparse / "images.bin").write_bytes(b"")
    with pytest.raises(CaptureFormatError, match="cameras.bin declares 1 cameras, which would "
                       "need at least 24 bytes, but only 1 remain"):
        load_scene(str(tmp_path), settings=SETTINGS)


def test_capture_image_of_another_aspect_ratio(tmp_path):
    (tmp_path / "a.png").write_bytes(_png(32, 48))
    (tmp_path / "b.png").write_bytes(_png(30, 48))
    moved = np.eye(4)
    moved[0, 3] = 1.0
    frames = [{"file_path": "a.png", "transform_matrix": np.eye(4).tolist()},
              {"file_path": "b.png", "transform_matrix": moved.tolist()}]
    (tmp_path / "transforms.json").write_text(json.dumps(
        {"fl_x": 40, "fl_y": 40, "w": 48, "h": 32, "frames": frames}))
    with pytest.raises(ImageCameraMismatchError, match=r"b.png in .* is 48x30 \(WxH\) but its "
                       r"camera is 48x32 \(WxH\) \(another aspect ratio\)"):
        load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1])


@pytest.mark.parametrize("model, params", [("EQUIRECTANGULAR", [48.0, 32.0]),
                                           ("FOO", [40.0, 24.0, 16.0])])
def test_camera_models_without_a_pinhole_image(tmp_path, model, params):
    """A spherical or unknown model is refused in one paragraph naming the model, where it is
    used and what to do, before any focal length is read."""
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(_png(32, 48))
    write_colmap_text(tmp_path, {1: (model, 48, 32, params)},
                      [("a.png", 1, pose(), []), ("b.png", 1, pose(x=1.0), [])])
    with pytest.raises(UnsupportedCameraError) as caught:
        load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[])
    message = str(caught.value)
    assert model in message and "--context" not in message and ".." not in message
    if model == "FOO":
        assert "camera 1 in" in message and "none of COLMAP's camera models" in message
    else:
        assert "frame a.png of" in message and "perspective (pinhole) views" in message


def test_bad_settings_and_specs(tmp_path):
    preset = tmp_path / "preset.yaml"
    preset.write_text("image_shape: [64, 64]\nnear: 0.5\nfar: 100\nnera: 3\n")
    with pytest.raises(SettingsError, match=r"unknown key\(s\) \['nera'\]"):
        load_preprocess_settings(preset)
    with pytest.raises(SettingsError, match="need 0 < near < far"):
        PreprocessSettings(image_shape=(64, 64), near=5.0, far=1.0)
    with pytest.raises(SceneError, match="not 'synthetic:<integer seed>'"):
        load_scene("synthetic:abc", settings=SETTINGS)
    with pytest.raises(SceneError, match="no data root was given"):
        load_scene("some_key", settings=SETTINGS)


def test_presets_load(reference):
    re10k = load_preprocess_settings(CONFIGS / "re10k.yaml")
    dl3dv = load_preprocess_settings(CONFIGS / "dl3dv.yaml")
    assert (re10k.image_shape, re10k.near, re10k.far, re10k.patch_multiple) == (
        (256, 256), 0.5, 100.0, 16)
    assert (dl3dv.image_shape, dl3dv.far, dl3dv.patch_multiple, dl3dv.model_shape) == (
        (270, 480), 200.0, 64, (256, 448))
    checkpoints = json.loads((reference / "checkpoints.json").read_text())["checkpoints"]
    by_file = {c["file"]: c["settings"] for c in checkpoints}
    ref = by_file["depthsplat-gs-base-dl3dv-256x448-randview2-6-02c7b19d.pth"]
    assert list(dl3dv.image_shape) == ref["image_shape"]["value"]
    assert (dl3dv.near, dl3dv.far, dl3dv.patch_multiple) == (
        ref["near"]["value"], ref["far"]["value"], ref["shim_patch"]["value"])
    ref = by_file["depthsplat-gs-base-re10k-256x256-view2-ca7b6795.pth"]
    assert (re10k.near, re10k.far, re10k.patch_multiple) == (
        ref["near"]["value"], ref["far"]["value"], ref["shim_patch"]["value"])


def _png(height: int, width: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_loaded_tensors_are_plain(tmp_path, example):
    write_scene(tmp_path, example)
    scene = load(tmp_path, context=[0, 3])
    assert scene.context.image.dtype == torch.float32 and scene.context.index.dtype == torch.int64

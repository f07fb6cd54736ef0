"""Inputs are checked where they enter: each bad input is one clear error naming file and fix,
and the allowed-but-doubtful ones (context = target, no baseline) become SceneNotes."""

from __future__ import annotations

import dataclasses
import json
import os
import struct

import numpy as np
import pytest
import torch

from dsviewer.dataset import load_scene
from dsviewer.dataset.errors import (
    CaptureFormatError,
    DuplicateContextError,
    EvaluationIndexError,
    IntrinsicsError,
    NonFinitePoseError,
    PathOutsideRootError,
)
from tests.dataset_builders import (
    SETTINGS,
    W,
    noise_image,
    png_bytes,
    pose,
    tiny_example,
    write_colmap_binary,
    write_colmap_text,
    write_root,
    write_transforms,
)


def load(root, key="tiny", **kwargs):
    return load_scene(key, settings=SETTINGS, data_roots=[root], **kwargs)


def test_index_json_cannot_leave_the_root(tmp_path):
    root = write_root(tmp_path / "root", tiny_example())
    (root / "index.json").write_text(json.dumps({"tiny": "../../../../etc/passwd"}))
    with pytest.raises(PathOutsideRootError, match=r"names the file '../../../../etc/passwd', "
                       r"which lies outside .*root"):
        load(root)
    outside = tmp_path / "elsewhere.torch"
    outside.write_bytes((root / "000000.torch").read_bytes())
    os.symlink(outside, root / "link.torch")
    (root / "index.json").write_text(json.dumps({"tiny": "link.torch"}))
    with pytest.raises(PathOutsideRootError, match="symbolic links"):
        load(root)
    (root / "index.json").write_text(json.dumps({"tiny": "000000.torch"}))
    assert load(root, context=[0, 2]).context.num_views == 2


def test_colmap_counts_are_checked_before_allocating(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_bytes(noise_image(0)))
    write_colmap_binary(tmp_path, (1, W, 32, [40.0, 40.0, 24.0, 16.0]),
                        [("a.png", pose(), 2**61)])
    with pytest.raises(CaptureFormatError, match=r"images.bin declares 2305843009213693952 2D "
                       r"points in image 'a.png', which would need at least "):
        load_scene(str(tmp_path), settings=SETTINGS)


@pytest.mark.parametrize(("value", "detail"), [
    ("a", "must be an integer, not a str"),
    (0.7, "must be an integer, not a float"),
    (True, "must be an integer, not a bool"),
    (-1, "count from 0"),
])
def test_evaluation_index_entries_are_integers(tmp_path, value, detail):
    root = write_root(tmp_path, tiny_example())
    index = tmp_path / "evaluation_index.json"
    index.write_text(json.dumps({"tiny": {"context": [0, value], "target": [1]}}))
    with pytest.raises(EvaluationIndexError, match=rf"Entry 'tiny' of the evaluation index "
                       rf".*evaluation_index.json has context entry {value!r}: .*{detail}"):
        load(root, index_path=index)


@pytest.mark.parametrize("fx", [float("nan"), float("inf"), 0.0, -0.5])
def test_chunk_intrinsics_must_be_finite_and_positive(tmp_path, fx):
    example = tiny_example()
    cameras = example.cameras.clone()
    cameras[1, 0] = fx
    root = write_root(tmp_path, dataclasses.replace(example, cameras=cameras))
    with pytest.raises(IntrinsicsError, match=r"frame\(s\) 1 in scene 'tiny'.*fx="):
        load(root, context=[0, 1])
    assert load(root, context=[0, 2], target=[3]).context.num_views == 2  # frame 1 unused


@pytest.mark.parametrize("fx", [float("nan"), 0.0])
def test_capture_intrinsics_must_be_finite_and_positive(tmp_path, fx):
    (tmp_path / "a.png").write_bytes(png_bytes(noise_image(0)))
    write_colmap_text(tmp_path, {1: ("PINHOLE", W, 32, [fx, 40.0, 24.0, 16.0])},
                      [("a.png", 1, pose(), [])])
    with pytest.raises(IntrinsicsError, match=r"camera 1 in .*cameras.txt"):
        load_scene(str(tmp_path), settings=SETTINGS)
    (tmp_path / "sparse" / "0" / "cameras.txt").unlink()
    write_transforms(tmp_path, [("a.png", pose())], fl_x=fx, w=W, h=32)
    with pytest.raises(IntrinsicsError, match=r"frame 0 \(a.png\) in .*transforms.json"):
        load_scene(str(tmp_path), settings=SETTINGS)


def test_shear_with_determinant_one_is_not_a_rotation(tmp_path):
    example = tiny_example()
    cameras = example.cameras.clone()
    cameras[2, 6:18] = torch.tensor([1.0, 0.5, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0])  # det 1, sheared
    root = write_root(tmp_path, dataclasses.replace(example, cameras=cameras))
    with pytest.raises(NonFinitePoseError, match=r"frame\(s\) 2 .*rotation determinant 1.0000 "
                       r"\(expected 1\), max \|R R\^T - I\| = 5.\d+e-01"):
        load(root, context=[0, 2])


def test_context_views_must_be_distinct(tmp_path):
    root = write_root(tmp_path, tiny_example())
    with pytest.raises(DuplicateContextError, match=r"context frames \[2, 2\] .* repeat"):
        load(root, context=[2, 2])
    index = tmp_path / "evaluation_index.json"
    index.write_text(json.dumps({"tiny": {"context": [1, 1], "target": [2]}}))
    with pytest.raises(DuplicateContextError, match="evaluation index"):
        load(root, index_path=index)


def test_context_equal_to_target_and_tiny_baseline_are_noted(tmp_path):
    root = write_root(tmp_path, tiny_example(spacing=1e-5))
    scene = load(root, context=[0, 1], target=[1, 2])
    codes = {note.code: note.message for note in scene.notes}
    assert "Target frame(s) 1 are also context views" in codes["context_equals_target"]
    # baseline 1e-5, fx = 0.8 * 48 px, near 0.5: 38.4 * 1e-5 / 0.5 = 0.00077 px of parallax.
    assert "at most 1e-05 model units apart (frames 0 and 1)" in codes["small_baseline"]
    assert "only 0.00 px" in codes["small_baseline"]
    wide = load(write_root(tmp_path / "wide", tiny_example()), context=[0, 1], target=[2])
    assert not wide.notes
    assert scene.context.camera_models == ("PINHOLE", "PINHOLE")


def test_transforms_image_paths_stay_inside(tmp_path):
    (tmp_path / "secret.png").write_bytes(png_bytes(noise_image(0)))
    capture = tmp_path / "capture"
    capture.mkdir()
    write_transforms(capture, [("../secret.png", pose())], fl_x=40.0, w=W, h=32)
    with pytest.raises(PathOutsideRootError, match="transforms.json names the file "
                       "'../secret.png'"):
        load_scene(str(capture), settings=SETTINGS)


def test_colmap_quaternion_of_zero_length_is_refused(tmp_path):
    (tmp_path / "a.png").write_bytes(png_bytes(noise_image(0)))
    (tmp_path / "b.png").write_bytes(png_bytes(noise_image(1)))
    sparse = write_colmap_text(tmp_path, {1: ("PINHOLE", W, 32, [40.0, 40.0, 24.0, 16.0])},
                               [("a.png", 1, pose(), []), ("b.png", 1, pose(x=1.0), [])])
    lines = (sparse / "images.txt").read_text().splitlines()
    parts = lines[1].split()
    parts[1:5] = ["0", "0", "0", "0"]
    lines[1] = " ".join(parts)
    (sparse / "images.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(NonFinitePoseError, match=r"frame\(s\) a.png .*non-finite"):
        load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1])
    assert np.isfinite(load_scene(str(tmp_path), settings=SETTINGS, context=[1], target=[])
                       .context.extrinsics.numpy()).all()


def test_points3d_track_length_is_checked(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(png_bytes(noise_image(0)))
    sparse = write_colmap_binary(tmp_path, (1, W, 32, [40.0, 40.0, 24.0, 16.0]),
                                 [("a.png", pose(), 0)])
    point = struct.pack("<QQ3d3Bd", 1, 7, 0.0, 0.0, 1.0, 1, 2, 3, 0.5)
    (sparse / "points3D.bin").write_bytes(point + struct.pack("<Q", 2**60))
    with pytest.raises(CaptureFormatError, match="points3D.bin declares 1152921504606846976 "
                       "track elements of point 7"):
        load_scene(str(tmp_path), settings=SETTINGS)


def write_two_frames(capture, kind: str, names: list[str]) -> None:
    """A PINHOLE COLMAP model ('colmap') or transforms.json of two frames named ``names``."""
    poses = [pose(), pose(x=1.0)]
    if kind == "colmap":
        write_colmap_text(capture, {1: ("PINHOLE", W, 32, [40.0, 40.0, 24.0, 16.0])},
                          [(n, 1, T, []) for n, T in zip(names, poses)])
    else:
        write_transforms(capture, list(zip(names, poses)), fl_x=40.0, w=W, h=32)


@pytest.mark.parametrize("kind", ["colmap", "transforms"])
def test_capture_images_behind_a_symbolic_link_load_but_dotdot_is_refused(tmp_path, kind):
    """A linked images/ folder (common for captures) loads; '..' out of the capture does not."""
    storage = tmp_path / "storage"
    storage.mkdir()
    for i in range(2):
        (storage / f"{i}.png").write_bytes(png_bytes(noise_image(i)))
    capture = tmp_path / "capture"
    capture.mkdir()
    os.symlink(storage, capture / "images")
    names = ["0.png", "1.png"] if kind == "colmap" else ["images/0.png", "images/1.png"]
    write_two_frames(capture, kind, names)
    scene = load_scene(str(capture), settings=SETTINGS, context=[0, 1], target=[])
    assert scene.context.num_views == 2
    escaping = "../storage/0.png" if kind == "transforms" else "../../storage/0.png"
    write_two_frames(capture, kind, [escaping, names[1]])
    with pytest.raises(PathOutsideRootError, match=r"lies outside .*capture \(after resolving "
                       r"'\.\.'\)"):
        load_scene(str(capture), settings=SETTINGS, context=[0, 1], target=[])


def test_several_colmap_models_the_largest_is_used_and_others_can_be_named(tmp_path):
    """COLMAP's mapper writes sparse/0, sparse/1... when images do not register together, and
    sparse/0 need not be the largest. Any model folder can be passed as the scene; its images
    are still looked up in <capture>/images and must stay inside <capture>."""
    (tmp_path / "images").mkdir()
    for i in range(5):
        (tmp_path / "images" / f"{i}.png").write_bytes(png_bytes(noise_image(i)))
    camera = {1: ("PINHOLE", W, 32, [40.0, 40.0, 24.0, 16.0])}
    write_colmap_text(tmp_path, camera, [(f"{i}.png", 1, pose(x=i), []) for i in (0, 1)])
    write_colmap_text(tmp_path, camera, [(f"{i}.png", 1, pose(x=i), []) for i in (2, 3, 4)],
                      model="sparse/1")
    scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[2])
    note = next(n.message for n in scene.notes if n.code == "colmap_models")
    assert "2 separate models: sparse/0 (2 images), sparse/1 (3 images)" in note
    assert "sparse/1, which registers the most images, was used" in note
    assert str(tmp_path / "sparse" / "0") in note  # how to choose the other
    np.testing.assert_allclose(scene.world_from_model.poses(scene.context.extrinsics.double())
                               [:, 0, 3].numpy(), [2.0, 3.0], atol=1e-5)
    chosen = load_scene(str(tmp_path / "sparse" / "0"), settings=SETTINGS, context=[0, 1],
                        target=[])
    assert "colmap_models" not in {n.code for n in chosen.notes}
    np.testing.assert_allclose(chosen.world_from_model.poses(chosen.context.extrinsics.double())
                               [:, 0, 3].numpy(), [0.0, 1.0], atol=1e-5)
    write_colmap_text(tmp_path, camera, [("../../x.png", 1, pose(), []), ("1.png", 1,
                                         pose(x=1.0), [])])  # fmt: skip
    with pytest.raises(PathOutsideRootError, match="'images/../../x.png'"):
        load_scene(str(tmp_path / "sparse" / "0"), settings=SETTINGS, context=[0, 1])


@pytest.mark.parametrize("kind", ["colmap", "transforms"])
def test_a_capture_named_dot_keeps_its_images_inside(tmp_path, monkeypatch, kind):
    """Run from inside the capture with the root '.': Path('../x') lies inside Path('.')
    lexically, so the check compares absolute paths; images inside still load, and the scene
    is named after the folder."""
    outside = tmp_path / "outside"
    outside.mkdir()
    capture = tmp_path / "capture"
    (capture / "images").mkdir(parents=True)
    for i in range(2):
        (outside / f"{i}.png").write_bytes(png_bytes(noise_image(10 + i)))
        (capture / "images" / f"{i}.png").write_bytes(png_bytes(noise_image(i)))
    monkeypatch.chdir(capture)

    def load_dot(names):
        write_two_frames(capture, kind, names)
        return load_scene(".", settings=SETTINGS, context=[0, 1], target=[])

    inside = ["0.png", "1.png"] if kind == "colmap" else ["images/0.png", "images/1.png"]
    scene = load_dot(inside)
    assert scene.key == "capture"
    torch.testing.assert_close(scene.context.image, load_scene(
        str(capture), settings=SETTINGS, context=[0, 1], target=[]).context.image)
    with pytest.raises(PathOutsideRootError, match=f"'../outside/0.png', which lies outside "
                       f"{capture} "):
        load_dot(["../outside/0.png", "../outside/1.png"])


def test_colmap_model_places_are_searched_in_order(tmp_path):
    """sparse/<n> first, then a flat sparse/ (in image_undistorter's layout the model of the
    undistorted images/), and only then colmap/sparse/<n> and distorted/sparse/<n> (the model
    of the original photos, whose use would undistort twice), then <n> and the folder itself.
    Each place holds a model whose cameras sit at x = 10 * its rank; the first left is used."""
    (tmp_path / "images").mkdir()
    for i in range(2):
        (tmp_path / "images" / f"{i}.png").write_bytes(png_bytes(noise_image(i)))
    camera = {1: ("PINHOLE", W, 32, [40.0, 40.0, 24.0, 16.0])}
    places = ["sparse/0", "sparse", "colmap/sparse/0", "distorted/sparse/0", "0", "."]
    for rank, place in enumerate(places):
        write_colmap_text(tmp_path, camera, [(f"{i}.png", 1, pose(x=10.0 * rank + i), [])
                                             for i in range(2)], model=place)
    for rank, place in enumerate(places):
        scene = load_scene(str(tmp_path), settings=SETTINGS, context=[0, 1], target=[])
        centres = scene.world_from_model.poses(scene.context.extrinsics.double())[:, 0, 3]
        np.testing.assert_allclose(centres.numpy(), [10.0 * rank, 10.0 * rank + 1], atol=1e-5,
                                   err_msg=f"expected the model in {place}")
        for name in ("cameras.txt", "images.txt"):
            (tmp_path / place / name).unlink()


@pytest.mark.parametrize("layout", ["sparse/0", "colmap/sparse/0", "distorted/sparse/0"])
def test_a_model_folder_passed_as_the_scene_finds_the_captures_images(tmp_path, monkeypatch,
                                                                      layout):
    """However the model folder is spelled (absolute, '.', '<model>/..', the folder above
    colmap/sparse, a link), its images are the capture's images/ and the scene is named after
    the capture; a model copied away from its images says where they were looked for."""
    capture = tmp_path / "capture"
    (capture / "images").mkdir(parents=True)
    for i in range(2):
        (capture / "images" / f"{i}.png").write_bytes(png_bytes(noise_image(i)))
    camera = {1: ("PINHOLE", W, 32, [40.0, 40.0, 24.0, 16.0])}
    images = [(f"{i}.png", 1, pose(x=float(i)), []) for i in range(2)]
    model = write_colmap_text(capture, camera, images, model=layout)
    os.symlink(model, tmp_path / "link")
    reference = load_scene(str(capture), settings=SETTINGS, context=[0, 1], target=[])
    specs = [str(model), str(model / ".."), str(tmp_path / "link"), "."]
    if layout != "sparse/0":
        specs.append(str(model.parent.parent))  # capture/colmap
    monkeypatch.chdir(model)
    for spec in specs:
        scene = load_scene(spec, settings=SETTINGS, context=[0, 1], target=[])
        assert scene.key == "capture", spec
        torch.testing.assert_close(scene.context.image, reference.context.image)

    alone = tmp_path / "alone" / "sparse" / "0"
    write_colmap_text(tmp_path / "alone", camera, images)
    with pytest.raises(CaptureFormatError, match=(
            rf"none of the 2 images that .* lists is on disk; they were looked for in "
            rf"{tmp_path / 'alone' / 'images'} and {tmp_path / 'alone'} ")):
        load_scene(str(alone), settings=SETTINGS, context=[0, 1], target=[])

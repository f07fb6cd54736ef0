"""The official crop/rescale/patch arithmetic, checked on worked examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dsviewer.dataset.preprocess import (
    PreprocessSettings,
    cameras_to_matrices,
    preprocess_views,
    rescaled_shape,
    resize_depth_nearest,
)


def random_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8))


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    return torch.tensor([[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]], dtype=torch.float32)


def run(image, K, settings, depth=None):
    return preprocess_views(image[None], K, torch.eye(4)[None], torch.tensor([0]), settings,
                            depth)


def test_worked_example_re10k_360x640_to_256x256():
    """RE10K frame 360x640 -> 256x256 (re10k 256x256 checkpoints, patch 16).

    s = max(256/360, 256/640) = 0.71111; scaled 256 x round(455.11) = 256 x 455;
    crop columns 99..354 ((455 - 256) // 2 = 99); fx' = 0.8 * 455/256 = 1.421875,
    fy' = 1.4222 * 256/256, cx, cy unchanged; the patch shim (16) changes nothing.
    """
    image = random_image(360, 640)
    fy = 0.8 * 640 / 360  # square pixels
    settings = PreprocessSettings(image_shape=(256, 256), near=0.5, far=100.0, patch_multiple=16)
    assert rescaled_shape((360, 640), (256, 256)) == (256, 455)
    views = run(image, intrinsics(0.8, fy, 0.5, 0.5), settings)
    assert views.image.shape == (1, 3, 256, 256)
    K = views.intrinsics[0]
    assert K[0, 0].item() == pytest.approx(1.421875, abs=1e-6)
    assert K[1, 1].item() == pytest.approx(fy, abs=1e-6)
    assert (K[0, 2].item(), K[1, 2].item()) == (0.5, 0.5)
    # Pixels: PIL Lanczos on the uint8 image to 455x256, then columns 99..354, /255.
    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((455, 256), Image.LANCZOS)
    expected = torch.from_numpy(np.asarray(pil)[:, 99:355] / 255).float().permute(2, 0, 1)
    torch.testing.assert_close(views.image[0], expected, rtol=0, atol=0)


def test_worked_example_re10k_360x640_to_256x448():
    """256x448 checkpoint: scaled 256x455, crop columns 3..450, fx' = fx * 455/448."""
    image = random_image(360, 640, seed=1)
    settings = PreprocessSettings(image_shape=(256, 448), near=0.5, far=100.0, patch_multiple=16)
    views = run(image, intrinsics(0.8, 1.4222, 0.48, 0.51), settings)
    assert views.image.shape == (1, 3, 256, 448)
    assert views.intrinsics[0, 0, 0].item() == pytest.approx(0.8 * 455 / 448, abs=1e-6)
    assert views.intrinsics[0, 1, 1].item() == pytest.approx(1.4222, abs=1e-6)
    pil = Image.fromarray(image.permute(1, 2, 0).numpy()).resize((455, 256), Image.LANCZOS)
    expected = torch.from_numpy(np.asarray(pil)[:, 3:451] / 255).float().permute(2, 0, 1)
    torch.testing.assert_close(views.image[0], expected, rtol=0, atol=0)


def test_worked_example_dl3dv_270x480_patch_64():
    """DL3DV 270x480 with image_shape 270x480: the crop shim is skipped; the model shim (64)
    crops rows 7..262 and columns 16..463: 256x448, fx *= 480/448, fy *= 270/256."""
    image = random_image(270, 480, seed=2)
    settings = PreprocessSettings(image_shape=(270, 480), near=0.5, far=200.0, patch_multiple=64,
                                  dataset="dl3dv")
    assert settings.model_shape == (256, 448)
    views = run(image, intrinsics(0.6, 1.0667, 0.5, 0.5), settings)
    assert views.image.shape == (1, 3, 256, 448)
    assert views.intrinsics[0, 0, 0].item() == pytest.approx(0.6 * 480 / 448, abs=1e-6)
    assert views.intrinsics[0, 1, 1].item() == pytest.approx(1.0667 * 270 / 256, abs=1e-6)
    # ToTensor-style float32 division, untouched pixels.
    torch.testing.assert_close(views.image[0], image[:, 7:263, 16:464].float() / 255,
                               rtol=0, atol=0)
    assert torch.all(views.far == 200.0)


def test_dl3dv_960p_to_512x960():
    """540x960 -> 512x960 (re10kdl3dv 512x960 checkpoints): scale 1, crop rows 14..525,
    fy *= 540/512; the 64 patch shim then keeps 512x960."""
    image = random_image(540, 960, seed=3)
    settings = PreprocessSettings(image_shape=(512, 960), near=0.5, far=200.0, patch_multiple=64,
                                  dataset="dl3dv")
    views = run(image, intrinsics(0.6, 1.0667, 0.5, 0.5), settings)
    assert views.image.shape == (1, 3, 512, 960)
    assert views.intrinsics[0, 1, 1].item() == pytest.approx(1.0667 * 540 / 512, abs=1e-6)
    assert views.intrinsics[0, 0, 0].item() == pytest.approx(0.6, abs=1e-7)
    torch.testing.assert_close(views.image[0], image[:, 14:526].float() / 255, rtol=0, atol=0)


def test_depth_follows_the_crop_with_nearest_sampling():
    # A depth map made of two constants with a vertical edge: no intermediate values may appear.
    depth = torch.full((1, 360, 640), 2.0)
    depth[..., 320:] = 9.0
    settings = PreprocessSettings(image_shape=(256, 256), near=0.5, far=100.0)
    views = run(random_image(360, 640), intrinsics(0.8, 1.42, 0.5, 0.5), settings, depth)
    assert views.depth.shape == (1, 256, 256)
    assert set(torch.unique(views.depth).tolist()) == {2.0, 9.0}
    # The edge sits at scaled column 227.5 (640 -> 455), i.e. cropped column 128.5 - 0.5.
    edge = int((views.depth[0, 0] == 9.0).nonzero()[0])
    assert edge == 128
    # nearest-exact: output pixel j samples input floor((j + 0.5) * in / out).
    small = resize_depth_nearest(torch.arange(10.0)[None, None].expand(1, 4, 10), (2, 4))
    assert small[0, 0].tolist() == [1.0, 3.0, 6.0, 8.0]


def test_cameras_rows_to_matrices_invert_world_to_camera():
    R = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    t = torch.tensor([1.0, 2.0, 3.0])
    row = torch.cat([torch.tensor([0.9, 1.6, 0.5, 0.45, 0.0, 0.0]),
                     torch.cat([R, t[:, None]], 1).reshape(-1)])
    K, T_world_cam = cameras_to_matrices(row[None], "test")
    torch.testing.assert_close(K[0], torch.tensor([[0.9, 0, 0.5], [0, 1.6, 0.45], [0, 0, 1]]))
    torch.testing.assert_close(T_world_cam[0, :3, :3], R.T)
    torch.testing.assert_close(T_world_cam[0, :3, 3], -R.T @ t)

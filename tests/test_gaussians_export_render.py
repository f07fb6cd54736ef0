"""The exported ``gaussians.ply`` renders like the model's in-memory Gaussians.

Real parts end to end: the bundled demo model predicts Gaussians for a bundled scene, the
exporter writes them in the user's frame (here a non-trivial similarity, so the SH rotation,
covariance scaling and quaternion factorization are all exercised), the 3DGS PLY reader reads
them back, and the project's rasterizer renders both at the same camera. About 10 s on 2 cores.
"""

from __future__ import annotations

import math

import pytest
import torch

from dsviewer.dataset import load_scene
from dsviewer.geometry.similarity import Similarity
from dsviewer.io.ply import read_gaussians_ply
from dsviewer.model import load_model
from dsviewer.model.decoder.render import render_gaussians
from dsviewer.model.predict import predict
from dsviewer.viewer.assets import (
    demo_checkpoint,
    demo_data_root,
    demo_preprocess_settings,
    demo_scene_keys,
)
from dsviewer.viewer.export import export_scene
from dsviewer.viewer.session.loaded import run_prediction


def user_from_model(scale: float) -> torch.Tensor:
    """A similarity ``[4, 4]`` float64: rotation about a tilted axis, ``scale``, a shift."""
    axis = torch.tensor([0.3, -0.8, 0.52], dtype=torch.float64)
    axis = axis / axis.norm()
    angle = 0.7
    cross = torch.tensor(
        [[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]],
        dtype=torch.float64,
    )
    rotation = torch.eye(3, dtype=torch.float64) + math.sin(angle) * cross
    rotation = rotation + (1.0 - math.cos(angle)) * cross @ cross
    transform = torch.eye(4, dtype=torch.float64)
    transform[:3, :3] = scale * rotation
    transform[:3, 3] = torch.tensor([1.5, -0.25, 4.0], dtype=torch.float64)
    return transform


def camera_in_user_frame(T_world_cam: torch.Tensor, similarity: torch.Tensor) -> torch.Tensor:
    """The same camera after the similarity: rotation composed, centre mapped (no scale on axes)."""
    scale = similarity[:3, :3].det().abs() ** (1.0 / 3.0)
    T = torch.eye(4, dtype=torch.float64)
    T[:3, :3] = (similarity[:3, :3] / scale) @ T_world_cam[:3, :3].double()
    T[:3, 3] = similarity[:3, :3] @ T_world_cam[:3, 3].double() + similarity[:3, 3]
    return T.float()


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_exported_gaussians_render_like_the_in_memory_ones(tmp_path, scale):
    model = load_model(demo_checkpoint())
    scene = load_scene(
        demo_scene_keys()[0], settings=demo_preprocess_settings(), data_roots=[demo_data_root()]
    )
    prediction = predict(model, scene.context)
    assert prediction.gaussians is not None and scene.target is not None
    scene.world_from_model = Similarity.from_matrix(user_from_model(scale))
    export_scene(tmp_path / "out", run_prediction(scene, lambda _scene: prediction))
    exported = read_gaussians_ply(tmp_path / "out" / "gaussians.ply")
    assert exported.means.shape == prediction.gaussians.means.shape

    K = scene.target.intrinsics[:1]  # [1, 3, 3]
    T_model = scene.target.extrinsics[:1]  # [1, 4, 4]
    T_user = camera_in_user_frame(T_model[0], user_from_model(scale))[None]
    near, far = 0.2 * float(scene.context.near[0]), 1e4
    shape = scene.target.image_shape
    ours = render_gaussians(prediction.gaussians, K[None], T_model[None], shape, near, far)
    theirs = render_gaussians(
        exported, K[None], T_user[None], shape, scale * near, scale * far
    )

    assert float(ours.alpha.mean()) > 0.5  # the target view sees the predicted surface
    torch.testing.assert_close(theirs.alpha, ours.alpha, atol=2e-3, rtol=0)
    # Alpha does not depend on the blending order, colour does: Gaussians whose camera depths
    # tie to float32 precision (about 4e-6 apart after the round trip through the user frame)
    # can swap places, which changes the few pixels they share by up to their colour difference
    # times their opacities. A wrong transform would move most pixels, not a handful.
    color_error = (theirs.color - ours.color).abs()
    assert float((color_error > 2e-3).float().mean()) < 1e-3, float(color_error.max())
    assert float(color_error.max()) < 1e-2
    drawn = ours.alpha > 0.5
    torch.testing.assert_close(theirs.depth[drawn], scale * ours.depth[drawn], rtol=1e-3, atol=0)

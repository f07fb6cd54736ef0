"""SfM metrics, the "SfM points" layer and the "error vs SfM" colour mode on captures of a
plane: the predicted depth is the true plane depth times known factors, so AbsRel, delta and
the median ratio are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import sfm_builders as build
import torch
from test_sfm_reference import SETTINGS, two_camera_capture

from dsviewer.dataset.capture import CaptureOptions, load_capture
from dsviewer.model.types import Prediction
from dsviewer.viewer.analysis import AnalysisSettings, analyze
from dsviewer.viewer.color_modes import ColorContext, layer_values
from dsviewer.viewer.point_layers import flat_layer
from dsviewer.viewer.session.loaded import run_prediction

PLANE_Z = 4.0  # test_sfm_reference.plane_points


def plane_depth_model(scene, v: int, plane_z: float) -> torch.Tensor:
    """True z-depth ``[H, W]`` of the world plane z = ``plane_z`` in context view ``v``, from
    the model-frame camera (ray-plane intersection written out here)."""
    to_user = scene.world_from_model
    plane = (plane_z - float(to_user.translation[2])) / to_user.scale  # no rotation in captures
    K = scene.context.intrinsics[v].double()
    T = scene.context.extrinsics[v].double()
    H, W = scene.context.image_shape
    u = (torch.arange(W, dtype=torch.float64) + 0.5) / W
    y = (torch.arange(H, dtype=torch.float64) + 0.5) / H
    x_cam, y_cam = (u[None] - K[0, 2]) / K[0, 0], (y[:, None] - K[1, 2]) / K[1, 1]
    dz = T[2, 0] * x_cam + T[2, 1] * y_cam + T[2, 2]
    return (plane - T[2, 3]) / dz


def plane_prediction(final_factors: list[float], coarse_factor: float, plane_z: float):
    """A predict function: final = factor_v x truth, coarse = coarse_factor x truth."""

    def predict(scene) -> Prediction:
        truth = torch.stack([plane_depth_model(scene, v, plane_z)
                             for v in range(scene.context.num_views)]).float()
        V, H, W = truth.shape
        final = truth * torch.tensor(final_factors)[:, None, None]
        coarse_inv = 1.0 / (coarse_factor * truth)
        D, h, w = 4, H // 4, W // 4
        return Prediction(
            coarse_inv_depth=coarse_inv, mono_inv_residual=1.0 / final - coarse_inv,
            final_depth=final, confidence=torch.full((V, h, w), 0.5),
            match_probs=torch.full((V, D, h, w), 1.0 / D),
            inv_depth_candidates=torch.linspace(0.01, 2.0, D)[None, :, None, None].expand(
                V, D, h, w),
            near=torch.full((V,), 0.5), far=torch.full((V,), 100.0))

    return predict


def loaded(folder, factors=(1.1, 0.8), coarse=1.3, options=None, plane_z=PLANE_Z):
    scene = load_capture(folder, SETTINGS, context=[0, 1], target=[], options=options)
    return run_prediction(scene, plane_prediction(list(factors), coarse, plane_z))


def test_metrics_against_sfm_have_their_closed_form_values(tmp_path):
    two_camera_capture(tmp_path, binary=True)
    scene = loaded(tmp_path)
    summary = analyze(scene.layers).summary()["sfm"]
    counts = [view.count for view in scene.scene.context.sfm.views]
    assert summary["per_view_points"] == counts and summary["points"] == sum(counts)
    assert summary["sampling"] == "bilinear at the observed pixel"
    final, coarse = summary["final"], summary["coarse"]
    for v, factor in enumerate((1.1, 0.8)):
        view = final["per_view"][v]
        assert view["points"] == counts[v] and view["reason"] is None
        assert view["abs_rel"] == pytest.approx(abs(factor - 1), rel=1e-4)
        assert view["median_ratio"] == pytest.approx(factor, rel=1e-4)
        assert view["delta"] == 1.0
    ratios = np.sort(np.repeat([1.1, 0.8], counts))
    assert final["overall"]["abs_rel"] == pytest.approx(
        (0.1 * counts[0] + 0.2 * counts[1]) / sum(counts), rel=1e-4)
    assert final["overall"]["median_ratio"] == pytest.approx(ratios[(len(ratios) - 1) // 2],
                                                             rel=1e-4)
    assert coarse["overall"]["abs_rel"] == pytest.approx(0.3, rel=1e-4)
    assert coarse["overall"]["delta"] == 0.0  # 1.3 > 1.25 everywhere
    assert coarse["overall"]["median_ratio"] == pytest.approx(1.3, rel=1e-4)


def one_and_ten_times(folder, binary: bool) -> None:
    """The two-camera capture in ``folder/one``, and the same scene ten times larger (camera
    centres and points) in ``folder/ten``."""
    cameras, images, xyz = two_camera_capture(folder / "one", binary=binary)
    for image in images:
        image.T_world_cam = image.T_world_cam.copy()
        image.T_world_cam[:3, 3] *= 10
    build.write_sfm_model(folder / "ten", cameras, images, xyz * 10, np.full(len(xyz), 0.4),
                          binary=binary)
    build.write_images(folder / "ten", cameras, images, xyz * 10)


def test_a_capture_rescaled_by_10_gives_the_same_sfm_metrics(tmp_path):
    one_and_ten_times(tmp_path, binary=False)
    one_scene = loaded(tmp_path / "one")
    one = analyze(one_scene.layers).summary()["sfm"]
    ten_scene = loaded(tmp_path / "ten", plane_z=10 * PLANE_Z)
    ten = analyze(ten_scene.layers).summary()["sfm"]
    assert ten["points"] == one["points"] > 40
    for layer in ("coarse", "final"):
        for a, b in zip([one[layer]["overall"], *one[layer]["per_view"]],
                        [ten[layer]["overall"], *ten[layer]["per_view"]]):
            assert b["abs_rel"] == pytest.approx(a["abs_rel"], rel=1e-6, abs=1e-9)
            assert b["median_ratio"] == pytest.approx(a["median_ratio"], rel=1e-6)
    # and the layer is in the user's units: ten times the first capture's SfM depths
    np.testing.assert_allclose(ten_scene.layers.sfm.depth.numpy(),
                               10 * one_scene.layers.sfm.depth.numpy(),
                               rtol=1e-9)


def test_a_model_of_the_wrong_scale_shows_as_the_median_ratio(tmp_path):
    two_camera_capture(tmp_path, binary=True)
    # the capture kept in its own units; the "model" predicts depths 3 times too large
    scene = loaded(tmp_path, factors=(3.0, 3.0), coarse=3.0,
                   options=CaptureOptions(target_baseline=None))
    final = analyze(scene.layers).summary()["sfm"]["final"]["overall"]
    assert final["median_ratio"] == pytest.approx(3.0, rel=1e-4)
    assert final["abs_rel"] == pytest.approx(2.0, rel=1e-4) and final["delta"] == 0.0


def test_too_few_points_give_no_number_but_the_reason(tmp_path):
    two_camera_capture(tmp_path, binary=True)
    scene = loaded(tmp_path)
    counts = [view.count for view in scene.scene.context.sfm.views]
    minimum = min(counts) + 1  # one view falls short, the pooled set does not
    summary = analyze(scene.layers, AnalysisSettings(sfm_min_points=minimum)).summary()["sfm"]
    short = counts.index(min(counts))
    view = summary["final"]["per_view"][short]
    assert view["abs_rel"] is None and view["median_ratio"] is None and view["delta"] is None
    assert view["points"] == min(counts)
    assert view["reason"] == f"too few SfM points ({min(counts)} < {minimum})"
    assert summary["final"]["overall"]["abs_rel"] is not None


def test_default_minimum_is_20_points(tmp_path):
    from test_sfm_reference import plane_points

    cameras, images, _ = two_camera_capture(tmp_path / "dense", binary=True)


    sparse_xyz = plane_points(step=1.0, extent=1.0)  # 3 x 3 points
    build.write_sfm_model(tmp_path / "sparse", cameras, images, sparse_xyz,
                          np.full(len(sparse_xyz), 0.4), binary=True)
    build.write_images(tmp_path / "sparse", cameras, images, sparse_xyz)
    summary = analyze(loaded(tmp_path / "sparse").layers).summary()["sfm"]
    assert summary["points"] < 20
    assert summary["final"]["overall"]["reason"].startswith("too few SfM points")


def test_the_sfm_layer_and_error_colour_mode(tmp_path):
    _, images, xyz = two_camera_capture(tmp_path, binary=False)
    scene = loaded(tmp_path)
    layers = scene.layers
    flat = flat_layer(layers, "sfm")
    sfm = layers.sfm
    assert flat is not None and int(flat.valid.sum()) == int((sfm.index_map >= 0).sum())
    values = layer_values(ColorContext(layers, None), "sfm_error", "sfm")
    assert layer_values(ColorContext(layers, None), "sfm_error", "final") is None
    for v in range(2):
        shown = sfm.index_map[v].reshape(-1).numpy()
        pixels = np.flatnonzero(shown >= 0)
        observed = shown[pixels]
        # each shown point sits at its SfM point, in the user's frame
        point_of = scene.scene.context.sfm.views[v].point
        first = sum(view.count for view in scene.scene.context.sfm.views[:v])
        np.testing.assert_allclose(flat.points[v, pixels], xyz[point_of[observed - first]],
                                   atol=1e-5)
        # its depth is the point's z in the user's camera (user units)
        cam = (np.linalg.inv(images[v].T_world_cam)
               @ np.c_[xyz, np.ones(len(xyz))].T).T[:, 2]
        np.testing.assert_allclose(flat.depth[v, pixels], cam[point_of[observed - first]],
                                   rtol=1e-5)
        # the colour mode: the final depth's relative error, factor - 1 on this plane
        np.testing.assert_allclose(values[v].reshape(-1)[pixels], (1.1, 0.8)[v] - 1, atol=1e-4)
        assert np.isnan(np.delete(values[v].reshape(-1), pixels)).all()


def test_the_demo_model_on_a_capture_rescaled_by_10_gives_the_same_sfm_abs_rel(tmp_path):
    """A real model run: the capture normalisation makes both captures the same input, so the
    SfM metrics agree although the SfM depths differ tenfold."""
    from dsviewer.backends import open_backend
    from dsviewer.viewer.assets import demo_checkpoint

    one_and_ten_times(tmp_path, binary=True)
    backend = open_backend(demo_checkpoint(), device="cpu")
    results = []
    for name in ("one", "ten"):
        scene = load_capture(tmp_path / name, backend.preprocess, context=[0, 1], target=[])
        results.append(analyze(run_prediction(scene, lambda s: backend.predict(s.context)).layers
                               ).summary()["sfm"])
    one, ten = results
    assert one["points"] == ten["points"] >= 40
    for layer in ("coarse", "final"):
        a, b = one[layer]["overall"], ten[layer]["overall"]
        assert b["abs_rel"] == pytest.approx(a["abs_rel"], rel=1e-4)
        assert b["median_ratio"] == pytest.approx(a["median_ratio"], rel=1e-4)
        assert b["delta"] == pytest.approx(a["delta"], abs=1.5 / one["points"])

"""The bundled demo model and scenes (viewer/assets/demo): they load and the model has learned.

Budget: about 5-10 s on 2 cores (one load, 3 scenes x 2 forward passes at 128x128).
"""

from __future__ import annotations

import pytest
import torch
from conftest import REPO_ROOT

from src.backends.presets import checkpoint_settings, load_preset
from src.dataset import load_scene
from src.dataset.settings import settings_to_dict
from src.model import DepthSplat, load_model, predict
from src.model.losses import abs_rel, valid_depth_mask
from viewer.assets import (
    demo_checkpoint,
    demo_data_root,
    demo_info,
    demo_preprocess_settings,
    demo_scene_keys,
)

DEMO_CONFIG = REPO_ROOT / "configs" / "demo" / "depthsplat-demo-tiny.yaml"
# Measured on the shipped checkpoint, per demo scene (synthetic_7_0000 / _0001 / _0003):
# final AbsRel 0.186 / 0.082 / 0.154, coarse 0.180 / 0.164 / 0.162 (means 0.141 vs 0.169),
# the same config untrained (seed 0) 0.552 / 0.698 / 0.601.
FINAL_ABS_REL_BOUND = 0.3
UNTRAINED_ABS_REL_FLOOR = 0.45


@pytest.fixture(scope="session")
def demo_model() -> DepthSplat:
    return load_model(demo_checkpoint())


@pytest.fixture(scope="session")
def demo_results(demo_model: DepthSplat) -> list[dict[str, float]]:
    """Per demo scene: AbsRel of the final and coarse depth, and of an untrained twin."""
    torch.manual_seed(0)
    untrained = DepthSplat(demo_model.config).eval()
    settings = demo_preprocess_settings()
    results = []
    for key in demo_scene_keys():
        views = load_scene(key, settings=settings, data_roots=[demo_data_root()]).context
        assert views.depth is not None
        mask = valid_depth_mask(views.depth, views.near, views.far)
        trained = predict(demo_model, views)
        baseline = predict(untrained, views)
        results.append({
            "final": float(abs_rel(trained.final_depth, views.depth, mask)),
            "coarse": float(abs_rel(1.0 / trained.coarse_inv_depth, views.depth, mask)),
            "untrained": float(abs_rel(baseline.final_depth, views.depth, mask)),
            "valid_share": float(mask.float().mean()),
        })
    return results


def test_checkpoint_loads_through_load_model_with_the_demo_config(demo_model: DepthSplat):
    assert demo_model.config == load_preset(DEMO_CONFIG).architecture
    assert demo_model.config.architecture == "gs_custom_u4l4"
    assert not demo_model.training
    # Shipped in fp16, run in fp32.
    assert {p.dtype for p in demo_model.parameters()} == {torch.float32}
    assert demo_checkpoint().stat().st_size < 8e6


def test_demo_settings_are_the_ones_the_checkpoint_embeds():
    """One source: the checkpoint. The preset and demo.json's description must agree with it."""
    embedded = checkpoint_settings(demo_checkpoint())
    assert embedded.source == "settings embedded in the file"
    assert demo_preprocess_settings() == embedded.preprocess
    preset = load_preset(DEMO_CONFIG)
    assert (embedded.architecture, embedded.preprocess) == (preset.architecture, preset.preprocess)
    assert embedded.preprocess.image_shape == (128, 128)
    assert (embedded.preprocess.near, embedded.preprocess.far) == (1.0, 25.0)
    info = demo_info()
    assert info["config"] == {"architecture": embedded.architecture.to_dict(),
                              "preprocess": settings_to_dict(embedded.preprocess)}
    assert "preprocess" not in info  # a second copy would be a second source


def test_demo_scenes_have_gt_depth_inside_the_model_range(demo_results):
    assert len(demo_results) == 3
    assert all(r["valid_share"] > 0.999 for r in demo_results)


def test_trained_depth_beats_the_untrained_model_on_every_demo_scene(demo_results):
    for r in demo_results:
        assert r["final"] < FINAL_ABS_REL_BOUND, r
        assert r["untrained"] > UNTRAINED_ABS_REL_FLOOR, r
        assert r["final"] < 0.5 * r["untrained"], r  # measured: at most 0.34 of it


def test_residual_improves_on_the_coarse_depth_on_average(demo_results):
    mean_final = sum(r["final"] for r in demo_results) / len(demo_results)
    mean_coarse = sum(r["coarse"] for r in demo_results) / len(demo_results)
    assert mean_final < mean_coarse, (mean_final, mean_coarse)

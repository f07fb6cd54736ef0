"""Checkpoint reading, architecture recognition and the errors users see.

About 40 s on 2 cores (most of it the recipe weights of six manifests and the ViT-L build).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from dsviewer.backends.presets import load_checkpoint, load_preset
from dsviewer.dataset import PreprocessSettings
from dsviewer.dataset.settings import settings_to_dict
from dsviewer.model import (
    CheckpointError,
    CheckpointNotFoundError,
    DepthSplatConfig,
    load_model,
    save_checkpoint,
)
from dsviewer.model.checkpoint import DepthSplat
from dsviewer.model.weight_recipe import load_manifest, recipe_state_dict

SMALLER_ARCHITECTURES = [
    "gs_small_u4l4",
    "gs_small_u8l8",
    "gs_base_u2l4",
    "gs_base_u4l8",
    "depth_small_u8l8",
    "depth_base_u4l8",
]

# A reduced model like the ones we train ourselves (3.1M parameters).
TINY = DepthSplatConfig(
    vit_embed_dim=64,
    vit_depth=4,
    vit_num_heads=2,
    vit_tapped_layers=(0, 1, 2, 3),
    feature_channels=64,
    num_transformer_layers=2,
    cnn_stage_channels=(32, 48, 64),
    unet_channels=64,
    dpt_features=16,
    dpt_out_channels=(16, 32, 48, 64),
    feature_upsampler_channels=32,
    gaussian_scale_max=0.5,
)
TINY_PREPROCESS = PreprocessSettings(image_shape=(64, 96), near=1.0, far=50.0)


def write_official_layout(state: dict[str, torch.Tensor], manifest: dict, path: Path) -> Path:
    if manifest["key_prefix"] == "encoder.":
        torch.save(state, path)
    else:
        torch.save({"model": state}, path)
    return path


def one_paragraph(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and len(message) > 40, message
    return message


@pytest.fixture(scope="module")
def small_recipe(reference) -> tuple[dict, dict[str, torch.Tensor]]:
    manifest = load_manifest(reference / "manifest_gs_small_u4l4.json")
    return manifest, recipe_state_dict(manifest, seed=0)


@pytest.fixture(scope="module")
def tiny_model() -> DepthSplat:
    torch.manual_seed(0)
    return DepthSplat(TINY).eval()


@pytest.mark.parametrize("architecture", SMALLER_ARCHITECTURES)
def test_manifest_loads_strictly_into_inferred_architecture(reference, tmp_path, architecture):
    manifest = load_manifest(reference / f"manifest_{architecture}.json")
    state = recipe_state_dict(manifest, seed=0)
    # A neutral file name: no preset applies, the architecture comes from the shapes alone.
    model = load_model(write_official_layout(state, manifest, tmp_path / "weights.pth"))
    assert model.config.architecture == architecture
    assert not model.training
    loaded = model.state_dict()
    prefix = "" if manifest["key_prefix"] == "encoder." else "encoder.depth_predictor."
    assert set(loaded) == {prefix + k for k in state}
    assert sum(v.numel() for v in loaded.values()) == manifest["total_numel"]
    for key in (manifest["keys"][0]["key"], manifest["keys"][-1]["key"]):
        torch.testing.assert_close(loaded[prefix + key], state[key], rtol=0, atol=0)


def test_vitl_manifest_loads_from_lightning_wrapper(reference, tmp_path):
    """ViT-L (354M parameters): shapes from the manifest, a Lightning ``state_dict`` wrapper.

    The values are not the recipe's (25 s to draw on 2 cores); strict loading only needs the
    keys and shapes, and two tensors are checked to arrive unchanged.
    """
    manifest = load_manifest(reference / "manifest_gs_large_u2l4.json")
    state = {e["key"]: torch.empty(e["shape"]) for e in manifest["keys"]}
    first, last = manifest["keys"][0]["key"], manifest["keys"][-1]["key"]
    state[first].normal_()
    state[last].normal_()
    path = tmp_path / "large.ckpt"
    torch.save({"state_dict": state, "epoch": 3, "global_step": 10}, path)
    model = load_model(path)
    path.unlink()
    assert model.config.architecture == "gs_large_u2l4"
    assert sum(p.numel() for p in model.parameters()) == 354_337_760
    loaded = model.state_dict()
    torch.testing.assert_close(loaded[first], state[first], rtol=0, atol=0)
    torch.testing.assert_close(loaded[last], state[last], rtol=0, atol=0)


def test_preset_named_after_file_is_used(reference, tmp_path):
    """The preset named after a released file gives what its shapes cannot: the scale max."""
    manifest = load_manifest(reference / "manifest_gs_small_u8l8.json")
    state = {e["key"]: torch.zeros(e["shape"]) for e in manifest["keys"]}
    name = "depthsplat-gs-small-re10kdl3dv-448x768-randview4-10-c08188db.pth"
    path = write_official_layout(state, manifest, tmp_path / name)
    loaded = load_checkpoint(path)
    assert loaded.settings == load_preset(name) and loaded.warnings == []
    assert loaded.settings.checkpoint == name
    assert loaded.model.config.gaussian_scale_max == 0.1
    assert loaded.settings.preprocess.image_shape == (512, 960)
    # The model loader alone reads the released architecture off the shapes: scale max 3.
    assert load_model(path).config == loaded.model.config.replace(gaussian_scale_max=3.0)


def test_explicit_config_wins_and_mismatch_is_explained(small_recipe, tmp_path):
    manifest, state = small_recipe
    path = write_official_layout(state, manifest, tmp_path / "weights.pth")
    given = load_preset("depthsplat-gs-small-re10kdl3dv-448x768-randview4-10-c08188db").architecture
    with pytest.raises(CheckpointError) as info:
        load_model(path, config=given)  # u8l8 config, u4l4 file
    message = one_paragraph(info.value)
    assert "gs_small_u8l8" in message and "concat_projects.0.weight" in message
    assert "shape mismatch" in message
    same_arch = given.replace(upsample_factor=4, lowest_feature_resolution=4)
    assert load_model(path, config=same_arch).config.gaussian_scale_max == 0.1


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_save_and_load_round_trip_with_embedded_config(tiny_model, tmp_path, suffix):
    path = save_checkpoint(tiny_model, tmp_path / f"tiny{suffix}",
                           preprocess=settings_to_dict(TINY_PREPROCESS))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    loaded = load_model(path)
    assert loaded.config == TINY
    assert loaded.config.architecture == "gs_custom_u4l4"
    for key, value in tiny_model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0)
    through_bridge = load_checkpoint(path)
    assert through_bridge.settings.architecture == TINY
    assert through_bridge.settings.preprocess == TINY_PREPROCESS
    assert through_bridge.warnings == []


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CheckpointNotFoundError) as info:
        load_model(tmp_path / "nope.pth")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)
    assert "not there" in one_paragraph(info.value)
    with pytest.raises(CheckpointError, match="is a directory"):
        load_model(tmp_path)


def test_not_a_torch_file(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights\n" * 10)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert "not a PyTorch checkpoint" in one_paragraph(info.value)


def test_truncated_file(small_recipe, tmp_path):
    state = small_recipe[1]
    path = tmp_path / "weights.pth"
    torch.save({k: state[k] for k in list(state)[:20]}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert "truncated or corrupt" in one_paragraph(info.value)


def test_corrupt_safetensors(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + bytes(50))
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"args": argparse.Namespace(lr=1.0), "w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    assert "weights_only" in one_paragraph(info.value)


def test_random_dict_is_not_depthsplat(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"conv.weight": torch.zeros(3, 3), "fc.bias": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = one_paragraph(info.value)
    assert "not a DepthSplat checkpoint" in message and "closest architecture" in message


def test_missing_and_unexpected_keys_are_listed(small_recipe, tmp_path):
    manifest, state = small_recipe
    broken = dict(state)
    del broken["encoder.gaussian_head.0.bias"]
    broken["encoder.extra.weight"] = torch.zeros(1)
    path = write_official_layout(broken, manifest, tmp_path / "weights.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = one_paragraph(info.value)
    assert "encoder.gaussian_head.0.bias" in message and "encoder.extra.weight" in message
    assert "gs_small_u4l4" in message  # closest architecture by key names


def test_shape_mismatch_is_listed(small_recipe, tmp_path):
    manifest, state = small_recipe
    broken = dict(state)
    broken["encoder.depth_predictor.backbone.conv1.weight"] = torch.zeros(64, 3, 5, 5)
    path = write_official_layout(broken, manifest, tmp_path / "weights.pth")
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = one_paragraph(info.value)
    assert "backbone.conv1.weight: file (64, 3, 5, 5) vs model (64, 3, 7, 7)" in message


def test_tiny_model_forward_shapes(tiny_model):
    """The reduced model runs end to end; final depth obeys the inverse-depth identity."""
    g = torch.Generator().manual_seed(0)
    K = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9, 0.5], [0.0, 0.0, 1.0]])
    extrinsics = torch.eye(4).repeat(1, 2, 1, 1)
    extrinsics[0, 1, 0, 3] = 0.2
    context = {
        "image": torch.rand(1, 2, 3, 32, 64, generator=g),
        "intrinsics": K.expand(1, 2, 3, 3),
        "extrinsics": extrinsics,
        "near": torch.full((1, 2), 1.0),
        "far": torch.full((1, 2), 50.0),
    }
    dump: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        output = tiny_model.encoder(context, global_step=0, visualization_dump=dump)
    assert tuple(output.depth.shape) == (1, 2, 32, 64)
    assert tuple(output.gaussians.means.shape) == (1, 2 * 32 * 64, 3)
    inv = (dump["coarse_mv_depth"] + dump["mono_depth"]).clamp(1 / 50.0, 1.0)
    torch.testing.assert_close(output.depth, 1.0 / inv)
    assert np.isfinite(output.gaussians.harmonics.numpy()).all()
    assert float(output.gaussians.scales.max()) <= TINY.gaussian_scale_max


def test_predict_removes_batch_dim_and_names_inverse_depth(tiny_model):
    from dsviewer.dataset.types import ViewSet
    from dsviewer.model import predict

    g = torch.Generator().manual_seed(1)
    extrinsics = torch.eye(4).repeat(3, 1, 1)
    extrinsics[1, 0, 3], extrinsics[2, 0, 3] = 0.15, 0.35
    views = ViewSet(
        image=torch.rand(3, 3, 32, 32, generator=g),
        intrinsics=torch.tensor([[0.9, 0, 0.5], [0, 0.9, 0.5], [0, 0, 1.0]]).repeat(3, 1, 1),
        extrinsics=extrinsics,
        near=torch.full((3,), 1.0),
        far=torch.full((3,), 50.0),
        index=torch.arange(3),
    )
    prediction = predict(tiny_model, views)
    assert tuple(prediction.final_depth.shape) == (3, 32, 32)
    assert tuple(prediction.coarse_inv_depth.shape) == (3, 32, 32)
    assert tuple(prediction.confidence.shape) == (3, 8, 8)
    assert tuple(prediction.match_probs.shape) == (3, 128, 8, 8)
    assert prediction.inv_depth_candidates.shape == prediction.match_probs.shape
    assert tuple(prediction.gaussians.means.shape) == (1, 3 * 32 * 32, 3)
    inv = (prediction.coarse_inv_depth + prediction.mono_inv_residual).clamp(1 / 50.0, 1.0)
    torch.testing.assert_close(prediction.final_depth, 1.0 / inv)
    with pytest.raises(ValueError, match="CUDA"):
        predict(tiny_model, views, autocast_dtype="bf16")
    with pytest.raises(ValueError, match="autocast_dtype"):
        predict(tiny_model, views, autocast_dtype="fp8")


def test_bare_depth_predictor_dict_needs_config_for_custom_widths(tiny_model, tmp_path):
    """A plain dict of unprefixed depth-predictor keys loads into encoder.depth_predictor."""
    path = tmp_path / "depth.pth"
    torch.save(tiny_model.encoder.depth_predictor.state_dict(), path)
    with pytest.raises(CheckpointError) as info:
        load_model(path)  # ViT width 64: not a released size, nothing embedded
    assert "pass config=" in one_paragraph(info.value)
    model = load_model(path, config=TINY.replace(depth_only=True))
    assert model.config.architecture == "depth_custom_u4l4"
    assert not hasattr(model.encoder, "gaussian_head")
    key = "pretrained.blocks.0.attn.qkv.weight"
    torch.testing.assert_close(
        model.encoder.depth_predictor.state_dict()[key],
        tiny_model.encoder.depth_predictor.state_dict()[key],
    )

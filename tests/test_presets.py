"""The bridge (src/backends/presets.py): presets read strictly, settings found for every file.

About 5 s on 2 cores (tiny models only).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from conftest import micro_config

from dsviewer.backends.presets import (
    CheckpointSettings,
    PresetError,
    available_presets,
    checkpoint_settings,
    load_checkpoint,
    load_preset,
)
from dsviewer.dataset import PreprocessSettings
from dsviewer.dataset.settings import load_preprocess_settings, settings_from_dict, settings_to_dict
from dsviewer.model import CheckpointError, DepthSplat, DepthSplatConfig, save_checkpoint
from dsviewer.model.checkpoint_file import CONFIG_ENTRY

DATASETS = Path(__file__).resolve().parents[1] / "configs" / "datasets"
TINY = micro_config()
PREPROCESS = PreprocessSettings(image_shape=(96, 128), near=0.8, far=40.0, patch_multiple=32,
                                num_context_views=3, dataset="dl3dv", source_shape=(192, 256))
HUGE_VIT = ("upsample_factor: 2\n  vit_embed_dim: 2000000\n  vit_depth: 4\n  vit_num_heads: 2\n"
            "  vit_tapped_layers: [0, 1, 2, 3]")
VALID_PRESET = """
checkpoint: tiny.pth
architecture:
  vit_type: vitb
  num_scales: 2
  upsample_factor: 2
  gaussian_scale_max: 0.5
preprocess:
  dataset_preset: dl3dv
  image_shape: [128, 224]
  near: 1.0
"""


def one_paragraph(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and len(message) > 40, message
    return message


def first_number(value: object) -> int:
    """``6`` from ``'6 / 4 / 2'`` or ``'2-8'`` (the reference's view counts as prose)."""
    return value if isinstance(value, int) else int(re.match(r"\d+", str(value)).group())


def test_presets_match_the_released_checkpoints(reference):
    """Every setting the reference lists, with its source, is the preset's value."""
    released = json.loads((reference / "checkpoints.json").read_text())["checkpoints"]
    assert len(available_presets()) == len(released) == 9
    for entry in released:
        preset = load_preset(entry["file"])
        arch, pre = preset.architecture, preset.preprocess
        want = {k: v["value"] for k, v in entry["settings"].items()}
        assert preset.checkpoint == entry["file"]
        assert preset.source.endswith(f"/{entry['file'].removesuffix('.pth')}.yaml")
        assert arch.architecture == entry["architecture"]
        assert (arch.vit_type, arch.num_scales, arch.upsample_factor,
                arch.lowest_feature_resolution) == (
            want["monodepth_vit_type"], want["num_scales"], want["upsample_factor"],
            want["lowest_feature_resolution"])  # fmt: skip
        assert (arch.gaussian_scale_max, arch.sh_degree, arch.local_mv_match) == (
            want["gaussian_scale_max"], want["sh_degree"], want["local_mv_match"])
        assert arch.depth_only == want.get("forward_depth_only", False)
        assert arch.is_released_width and arch.gaussian_scale_min == 1e-10
        assert (pre.near, pre.far, list(pre.image_shape)) == (
            want["near"], want["far"], want["image_shape"])
        assert pre.patch_multiple == want["shim_patch"]
        assert pre.source_shape == (None if want["ori_image_shape"] is None
                                    else tuple(want["ori_image_shape"]))  # fmt: skip
        assert pre.num_context_views == first_number(want["num_context_views"])
        assert want["experiment"] == f"+experiment={pre.dataset}"


def test_preset_sections_over_a_dataset_preset(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(VALID_PRESET)
    preset = load_preset(path)
    dl3dv = load_preprocess_settings(DATASETS / "dl3dv.yaml")
    assert preset.checkpoint == "tiny.pth" and preset.source == f"preset {path}"
    assert preset.architecture == DepthSplatConfig(
        vit_type="vitb", num_scales=2, upsample_factor=2, gaussian_scale_max=0.5)
    assert preset.preprocess == PreprocessSettings(
        image_shape=(128, 224), near=1.0, far=dl3dv.far, patch_multiple=dl3dv.patch_multiple,
        num_context_views=dl3dv.num_context_views, dataset="dl3dv",
        source_shape=dl3dv.source_shape)  # fmt: skip


@pytest.mark.parametrize(
    ("change", "names"),
    [
        (("architecture:", "architecture:\n  num_scale: 2"), ["[architecture]", "num_scale"]),
        (("vit_type: vitb", "vit_type: vitx"), ["[architecture]", "vit_type"]),
        (("num_scales: 2", "num_scales: two"), ["[architecture]", "num_scales"]),
        (("gaussian_scale_max: 0.5", "gaussian_scale_max: 5e-1"), ["write 1.0e-10"]),
        (("gaussian_scale_max: 0.5", "gaussian_scale_max: [0.5]"),
         ["[architecture]", "gaussian_scale_max"]),
        (("upsample_factor: 2", HUGE_VIT), ["vit_embed_dim=2000000", "[1, 2048]"]),
        (("near: 1.0", "near: fast"), ["[preprocess]", "'near'", "a number"]),
        (("near: 1.0", "nera: 1.0"), ["[preprocess]", "nera"]),
        (("image_shape: [128, 224]", "image_shape: [128]"), ["[preprocess]", "image_shape"]),
        (("image_shape: [128, 224]", "image_shape: [128, true]"), ["image_shape"]),
        (("dataset_preset: dl3dv", "dataset_preset: scannet"), ["dataset_preset", "scannet"]),
        (("dataset_preset: dl3dv", "dataset_preset: ../checkpoints/x"), ["dataset_preset"]),
        (("checkpoint: tiny.pth", "checkpoint: 3"), ["'checkpoint'"]),
        (("checkpoint: tiny.pth", "checkpont: tiny.pth"), ["unknown key", "checkpont"]),
        (("preprocess:", "preprocesing:"), ["unknown key", "preprocesing"]),
        (("near: 1.0", "near: 300.0"), ["[preprocess]", "near < far"]),
    ],
)
def test_preset_errors_name_the_file_section_and_key(tmp_path, change, names):
    path = tmp_path / "bad.yaml"
    old, new = change
    assert old in VALID_PRESET
    path.write_text(VALID_PRESET.replace(old, new, 1))
    with pytest.raises(PresetError) as info:
        load_preset(path)
    message = one_paragraph(info.value)
    assert str(path) in message
    for name in names:
        assert name in message, (name, message)


def test_preset_structure_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    for text, expected in [
        ("- a\n- b\n", "expected a mapping"),
        ("architecture: {}\n", "missing section(s) ['preprocess']"),
        ("architecture: []\npreprocess: {}\n", "expected a mapping of architecture"),
        ("architecture: {}\npreprocess: [1]\n", "expected a mapping of preprocessing"),
        ("architecture: {}\npreprocess: {near: 1.0}\n", "missing key(s) ['image_shape', 'far']"),
        ("architecture: {\n", "not valid YAML"),
    ]:
        path.write_text(text)
        with pytest.raises(PresetError) as info:
            load_preset(path)
        assert expected in one_paragraph(info.value) and str(path) in str(info.value)
    with pytest.raises(PresetError, match="Available presets: depthsplat-depth-base"):
        load_preset("depthsplat-gs-huge")


def test_settings_dict_round_trip_and_types():
    assert settings_from_dict(settings_to_dict(PREPROCESS)) == PREPROCESS
    assert json.loads(json.dumps(settings_to_dict(PREPROCESS))) == settings_to_dict(PREPROCESS)
    with pytest.raises(ValueError, match="'num_context_views' must be a positive integer"):
        settings_from_dict({**settings_to_dict(PREPROCESS), "num_context_views": 2.5})


def save_flat(model: DepthSplat, path: Path, run: dict) -> Path:
    """A checkpoint as save_checkpoint wrote it before the split: one flat config dict."""
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, CONFIG_ENTRY: {**model.config.to_dict(), **run}}, path)
    return path


def test_old_flat_embedded_config_still_loads(micro_model, tmp_path):
    run = {"checkpoint": "mine.pth", "dataset": "dl3dv_960p", "image_shape": [96, 128],
           "original_image_shape": [192, 256], "near": 0.8, "far": 40.0,
           "num_context_views": 3, "shim_patch": 32}
    loaded = load_checkpoint(save_flat(micro_model, tmp_path / "old.pth", run))
    assert loaded.settings == CheckpointSettings(TINY, PREPROCESS, "settings embedded in the file",
                                                 "mine.pth")
    assert loaded.warnings == []
    torch.testing.assert_close(loaded.model.state_dict(), micro_model.state_dict(), rtol=0, atol=0)
    # Keys the old config left out take its defaults (RE10K, 256x256, near 0.5, far 100).
    sparse = checkpoint_settings(save_flat(micro_model, tmp_path / "sparse.pth", {"far": 60.0}))
    assert sparse.preprocess == PreprocessSettings(image_shape=(256, 256), near=0.5, far=60.0)


@pytest.mark.parametrize(
    ("run", "names"),
    [
        ({"near": "close"}, ["'near'", "a number"]),
        ({"shim_patch": 0}, ["'patch_multiple'"]),
        ({"dataset": 3}, ["'dataset'"]),
        ({"image_shape": [1, 2, 3]}, ["image_shape"]),
        ({"nearr": 1.0}, ["unknown setting", "nearr"]),
    ],
)
def test_old_flat_config_errors_are_checkpoint_errors(micro_model, tmp_path, run, names):
    path = save_flat(micro_model, tmp_path / "old.pth", run)
    with pytest.raises(CheckpointError) as info:
        checkpoint_settings(path)
    message = one_paragraph(info.value)
    for name in [str(path), *names]:
        assert name in message, (name, message)


def test_where_settings_come_from(micro_model, tmp_path):
    """Explicit preset > embedded > preset named after the file > shapes + default, warned."""
    bare = save_checkpoint(micro_model, tmp_path / "bare.pth")  # no preprocess section
    loaded = load_checkpoint(bare)
    assert loaded.settings.architecture == TINY
    assert loaded.settings.preprocess == load_preprocess_settings(DATASETS / "re10k.yaml")
    assert len(loaded.warnings) == 1 and "carries no preprocessing" in loaded.warnings[0]

    named = tmp_path / "depthsplat-gs-small-re10kdl3dv-448x768-randview4-10-c08188db.pth"
    save_checkpoint(micro_model, named)
    settings = checkpoint_settings(named)
    assert settings.architecture == TINY  # embedded architecture wins over the preset's
    assert settings.preprocess == load_preset(named.name).preprocess

    full = save_checkpoint(micro_model, named, preprocess=settings_to_dict(PREPROCESS))
    assert checkpoint_settings(full).preprocess == PREPROCESS

    preset = tmp_path / "given.yaml"
    preset.write_text(yaml.safe_dump({"architecture": TINY.to_dict()})
                      + "preprocess: {image_shape: [64, 64], near: 2.0, far: 9.0}\n")
    given = load_checkpoint(full, preset=preset)
    assert given.settings.preprocess == PreprocessSettings(image_shape=(64, 64), near=2.0, far=9.0)
    assert given.settings.source == f"preset {preset}"


def test_builtin_backend_exposes_settings_and_warnings(micro_model, tmp_path):
    from dsviewer.backends import open_backend

    path = save_checkpoint(micro_model, tmp_path / "tiny.safetensors",
                           preprocess=settings_to_dict(PREPROCESS))
    backend = open_backend(path, device="cpu")
    assert backend.preprocess == PREPROCESS and backend.warnings == []
    assert backend.settings.architecture == TINY
    assert backend.name == "tiny" and backend.load_seconds > 0

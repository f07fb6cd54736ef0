"""Checkpoints that cannot hurt: absurd configs, damaged or foreign files, non-finite weights.

Whatever a file holds, loading either succeeds or raises CheckpointError (a ValueError) with
one paragraph; nothing is allocated for a config the file's shapes contradict. About 15 s on
2 cores (one subprocess for the memory measurement, a few hundred tiny failing loads).
"""

from __future__ import annotations

import io
import json
import logging
import random
import subprocess
import sys
import textwrap
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT, micro_config
from safetensors.torch import save as safetensors_bytes

from dsviewer.backends.presets import checkpoint_settings, load_checkpoint
from dsviewer.dataset import PreprocessSettings
from dsviewer.dataset.settings import settings_to_dict
from dsviewer.model import CheckpointError, DepthSplat, load_model, save_checkpoint
from dsviewer.model.checkpoint_file import CONFIG_ENTRY

TINY = micro_config()
PREPROCESS = settings_to_dict(PreprocessSettings(image_shape=(64, 64), near=1.0, far=10.0))
BUILDERS = (load_model, load_checkpoint)
LOADERS = (*BUILDERS, checkpoint_settings)  # the last reads the settings, builds nothing
MAX_RSS_GROWTH_MB = 150


@pytest.fixture(scope="module")
def tiny_file(micro_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    return save_checkpoint(micro_model, path, preprocess=PREPROCESS)


def refused(path: Path) -> list[str]:
    """Each builder's CheckpointError message for ``path`` (each must refuse it); reading only
    the settings may succeed or refuse, nothing else."""
    loads_or_refuses(path, (checkpoint_settings,))
    messages = []
    for loader in BUILDERS:
        with pytest.raises(CheckpointError) as info:
            loader(path)
        message = str(info.value)
        assert "\n" not in message and len(message) > 40, message
        messages.append(message)
    return messages


def loads_or_refuses(path: Path, loaders=LOADERS) -> None:
    """Either outcome is fine for a damaged file; any other exception is a bug."""
    for loader in loaders:
        try:
            loader(path)
        except CheckpointError as error:
            assert "\n" not in str(error), str(error)


# --- configs that ask for too much --------------------------------------------------------------

MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys, torch
    from dsviewer.backends.presets import load_checkpoint
    from dsviewer.model import CheckpointError, DepthSplat, load_model
    from dsviewer.model.config import DepthSplatConfig
    tiny = DepthSplatConfig.from_dict(json.loads(sys.argv[1]))
    state = DepthSplat(tiny).state_dict()
    results = []
    for i, change in enumerate(json.loads(sys.argv[2])):
        path = f"{sys.argv[3]}/bomb{i}.pth"
        flat = {**tiny.to_dict(), **change}
        torch.save({"state_dict": state, "dsviewer_config": flat}, path)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        messages = []
        for loader in (load_model, load_checkpoint):
            try:
                loader(path)
                messages.append("loaded")
            except CheckpointError as error:
                messages.append(str(error))
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        results.append({"growth_mb": (after - before) / 1024, "messages": messages})
    print(json.dumps(results))
""")


def test_absurd_sizes_are_refused_without_allocating(tmp_path):
    """The reported bombs: a 3 MB file whose embedded config asks for a 2e6-wide ViT (the
    position embedding alone would be 11 GB) or 3e5 feature channels. Measured in a fresh
    process, so the peak RSS is this load's own."""
    changes = [{"vit_embed_dim": 2_000_000}, {"feature_channels": 300_000},
               {"vit_depth": 10**7}, {"num_transformer_layers": 10**6}]  # fmt: skip
    probe = subprocess.run(  # noqa: PLW1510 - the return code is asserted below
        [sys.executable, "-c", MEMORY_PROBE, json.dumps(TINY.to_dict()), json.dumps(changes),
         str(tmp_path)],
        cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    results = json.loads(probe.stdout.strip().splitlines()[-1])
    for change, result in zip(changes, results, strict=True):
        (key, value), = change.items()
        assert result["growth_mb"] < MAX_RSS_GROWTH_MB, (change, result)
        for message in result["messages"]:
            assert f"{key}={value} is outside [1, " in message, message
            assert "largest released DepthSplat uses" in message and "--config" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"feature_channels": 256},
         "feature_channels=256 but encoder.depth_predictor.backbone.conv2.weight has shape (32,"),
        ({"vit_embed_dim": 2048, "vit_num_heads": 16}, "vit_embed_dim=2048 but"),
        ({"vit_depth": 48, "vit_tapped_layers": [0, 1, 2, 47]}, "vit_depth=48 but the file has 2"),
        ({"num_transformer_layers": 12}, "num_transformer_layers=12 but the file has 1"),
        ({"sh_degree": 2}, "sh_degree=37 but encoder.gaussian_head.2.weight"),
        ({"depth_only": True}, "depth_only=true but the file has a Gaussian head"),
    ],
)
def test_config_within_bounds_but_contradicted_by_shapes(micro_model, tmp_path, monkeypatch,
                                                          change, expected):
    """Checked from the shapes alone: neither a meta-device nor a real model is built."""
    from dsviewer.model import checkpoint

    def must_not_build(*_args, **_kwargs):
        raise AssertionError("a model was built for a config the shapes contradict")

    monkeypatch.setattr(checkpoint, "expected_shapes", must_not_build)
    monkeypatch.setattr(checkpoint, "DepthSplat", must_not_build)
    path = tmp_path / "lying.pth"
    sections = {"architecture": {**TINY.to_dict(), **change}, "preprocess": PREPROCESS}
    torch.save({"state_dict": micro_model.state_dict(), CONFIG_ENTRY: sections}, path)
    for loader in (load_model, load_checkpoint):
        with pytest.raises(CheckpointError) as info:
            loader(path)
        assert expected in str(info.value) and "Nothing was built" in str(info.value)


def test_widths_the_layers_cannot_take(micro_model, tmp_path):
    path = tmp_path / "odd.pth"
    odd = TINY.replace(unet_channels=30)  # GroupNorm needs a multiple of 4
    state = {k: v for k, v in micro_model.state_dict().items() if "regressor" not in k}
    torch.save({"state_dict": state, CONFIG_ENTRY: {"architecture": odd.to_dict()}}, path)
    for message in refused(path):
        assert "cannot be built with these widths" in message and "divisible" in message


# --- damaged and foreign files ------------------------------------------------------------------


def test_truncated_copies_of_a_real_checkpoint(micro_model, tiny_file, tmp_path):
    rng = random.Random(0)
    torch_bytes = tiny_file.read_bytes()
    st_bytes = safetensors_bytes({k: v.contiguous() for k, v in micro_model.state_dict().items()},
                                 metadata={CONFIG_ENTRY: json.dumps({"architecture": {}})})
    for data, name in ((torch_bytes, "cut.pth"), (st_bytes, "cut.safetensors")):
        cuts = {0, 1, 2, 4, 8, 9, 64, len(data) // 2, len(data) - 1}
        cuts |= {rng.randrange(len(data)) for _ in range(8)}
        for cut in sorted(cuts):
            (tmp_path / name).write_bytes(data[:cut])
            refused(tmp_path / name)


def test_short_and_random_pickles(tmp_path):
    """8- and 16-byte pickles made the weights-only unpickler raise IndexError / KeyError."""
    rng = random.Random(1)
    path = tmp_path / "short.pth"
    prefixes = (b"\x80\x02", b"\x80\x04", b"\x80\x05", b"\x80", b"PK\x03\x04")
    for _ in range(150):
        prefix = rng.choice(prefixes)
        size = rng.choice((8, 8, 16, 64))
        path.write_bytes(prefix + bytes(rng.randrange(256) for _ in range(size - len(prefix))))
        loads_or_refuses(path)
    path.write_bytes(b"\x80\x02}q\x00(X\x01")  # an unfinished dict
    assert "truncated or corrupt" in refused(path)[0]


def test_a_long_reader_message_is_cut_at_a_sentence(tmp_path):
    """An 8-byte zip header: torch's reader explains over ~330 characters; the paragraph keeps
    its first whole sentences and an ellipsis, never half a word before the closing bracket."""
    import re

    path = tmp_path / "bad8.pth"
    path.write_bytes(b"PK\x03\x04\x00\x00\x08\x08")
    with pytest.raises(RuntimeError) as raw:
        torch.load(path, weights_only=True)
    original = str(raw.value).splitlines()[0]
    assert len(original) > 300  # else nothing is cut and the test checks nothing
    for message in refused(path):
        quoted = re.search(r"\(RuntimeError: (.*)\)\. Download", message)
        assert quoted is not None, message
        kept = quoted.group(1)
        assert kept.endswith(". ...") and original.startswith(kept[: -len(" ...")]), kept


def rewritten_zip(data: bytes, victim: str, mode: str) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            if name != victim:
                target.writestr(name, source.read(name))
            elif mode != "drop":
                target.writestr(name, b"" if mode == "empty" else b"\x80\x02garbage" * 5)
    return out.getvalue()


def test_zip_with_bad_entries(tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    pickle_entry = next(n for n in names if n.endswith("data.pkl"))
    tensor_entry = next(n for n in names if "/data/" in n)
    path = tmp_path / "bad_entry.pth"
    for victim, mode in [(pickle_entry, "drop"), (pickle_entry, "empty"),
                         (pickle_entry, "garbage"), (tensor_entry, "drop"),
                         (tensor_entry, "empty")]:  # fmt: skip
        path.write_bytes(rewritten_zip(data, victim, mode))
        refused(path)
    rng = random.Random(2)
    for _ in range(4):  # a few flipped bytes anywhere
        damaged = bytearray(data)
        for _ in range(rng.choice((1, 10))):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        path.write_bytes(bytes(damaged))
        loads_or_refuses(path)


STRANGE = [
    {}, [torch.zeros(1)], (1, 2), torch.zeros(3), None, "text", 3.5,
    {1: torch.zeros(1)}, {"a": {"b": torch.zeros(1)}}, {"state_dict": 3},
    {"state_dict": [torch.zeros(2)]}, {"state_dict": {"encoder.x": "y"}}, {"model": {1: 2}},
    {"x" * 10_000: torch.zeros(1)}, OrderedDict(a=torch.zeros(1)),
    {"state_dict": {"encoder.x": torch.zeros(3, dtype=torch.complex64)}},
    {CONFIG_ENTRY: [1, 2]}, {CONFIG_ENTRY: {1: 2}}, {CONFIG_ENTRY: {"architecture": "x"}},
    {CONFIG_ENTRY: {"architecture": {}, "preprocess": 5}, "state_dict": {}},
    {CONFIG_ENTRY: {"architecture": {"vit_embed_dim": 10**12}}},
    {CONFIG_ENTRY: {"vit_type": "vits", "near": float("nan")}, "state_dict": {}},
    {CONFIG_ENTRY: {"architecture": {"gaussian_scale_max": float("inf")}}, "state_dict": {}},
    {"model": {"pretrained.patch_embed.proj.weight": torch.zeros(384, 3, 14, 14),
               "upsampler.concat_projects.0.weight": torch.zeros(1, 1, 1, 1)}},
    {"state_dict": {"encoder.depth_predictor.pretrained.patch_embed.proj.weight": torch.zeros(()),
                    "encoder.depth_predictor.upsampler.concat_projects.0.weight": torch.zeros(2)}},
    {"state_dict": {"encoder.gaussian_head.2.weight": torch.zeros(5, 1, 1, 1),
                    "encoder.depth_predictor.pretrained.patch_embed.proj.weight":
                        torch.zeros(384, 3, 14, 14),
                    "encoder.depth_predictor.upsampler.concat_projects.0.weight":
                        torch.zeros(32, 448, 1, 1)}},
]  # fmt: skip


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pickles_of_strange_objects(tmp_path, zip_format):
    path = tmp_path / "strange.pth"
    for obj in STRANGE:
        torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
        refused(path)


@pytest.mark.parametrize(
    ("preprocess", "expected"),
    [
        ({"image_shape": [64, 64], "near": 1, "far": 10, "dataset": "x"}, "dataset must be"),
        ({"dataset_preset": "../../etc/passwd", "image_shape": [64, 64]}, "dataset_preset"),
        ({"dataset_preset": 5}, "dataset_preset 5"),
        ({"image_shape": [64, 64], "near": "x", "far": 10.0}, "'near' must be a number"),
    ],
)
def test_bad_embedded_preprocess_is_a_checkpoint_error(micro_model, tmp_path, preprocess,
                                                       expected):
    path = save_checkpoint(micro_model, tmp_path / "bad.pth", preprocess=preprocess)
    assert load_model(path).config == TINY  # the architecture alone is fine
    for loader in (load_checkpoint, checkpoint_settings):
        with pytest.raises(CheckpointError) as info:
            loader(path)
        assert expected in str(info.value) and "--config" in str(info.value)


def test_bad_safetensors_metadata(micro_model, tmp_path):
    tensors = {k: v.contiguous() for k, v in micro_model.state_dict().items()}
    path = tmp_path / "meta.safetensors"
    for metadata, expected in [
        ("not json", "is not JSON"),
        ("[1, 2]", "not a mapping of settings"),
        ('{"architecture": 3}', "expected a mapping of architecture settings"),
        ('{"vit_embed_dim": 2000000}', "vit_embed_dim=2000000 is outside"),
    ]:
        path.write_bytes(safetensors_bytes(tensors, metadata={CONFIG_ENTRY: metadata}))
        assert all(expected in m for m in refused(path))
    path.write_bytes((10**15).to_bytes(8, "little") + b"{}")  # header size beyond the file
    assert "truncated or corrupt" in refused(path)[0]


# --- non-finite weights -------------------------------------------------------------------------


def test_nonfinite_weights_load_with_a_warning(micro_model, tmp_path, caplog):
    from dsviewer.backends import open_backend

    state = {k: v.clone() for k, v in micro_model.state_dict().items()}
    nan_key = "encoder.depth_predictor.backbone.conv1.weight"
    inf_key = "encoder.gaussian_head.2.bias"
    state[nan_key][0, 0, :2, :3] = float("nan")  # 6 values
    state[inf_key][:2] = float("-inf")
    model = DepthSplat(TINY)
    model.load_state_dict(state)
    path = save_checkpoint(model, tmp_path / "nan.pth", preprocess=PREPROCESS)

    loaded = load_checkpoint(path)
    assert len(loaded.warnings) == 1
    warning = loaded.warnings[0]
    total = len(state)
    assert f"2 of {total} weight tensors hold NaN or inf" in warning
    assert f"{nan_key} (6 values)" in warning and f"{inf_key} (2 values)" in warning
    assert torch.isnan(loaded.model.state_dict()[nan_key]).sum() == 6  # loaded as they are

    backend = open_backend(path, device="cpu")
    assert backend.warnings == [warning]
    with caplog.at_level(logging.WARNING, logger="dsviewer.model.checkpoint"):
        load_model(path)
    assert warning in caplog.text
    clean = save_checkpoint(micro_model, tmp_path / "clean.pth", preprocess=PREPROCESS)
    assert load_checkpoint(clean).warnings == []
    # Finite values whose sum overflows are not reported.
    state = {k: v.clone() for k, v in micro_model.state_dict().items()}
    state[nan_key].fill_(3e38)
    model.load_state_dict(state)
    huge = save_checkpoint(model, tmp_path / "huge.pth", preprocess=PREPROCESS)
    assert load_checkpoint(huge).warnings == []

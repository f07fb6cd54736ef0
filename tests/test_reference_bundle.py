"""tests/reference: the bundled part of the official reference, and the manifest loader.

The bundle must be what ``scripts/bundle_reference.py`` makes of the full reference (checked
where the full reference is present). About 2 s.
"""

from __future__ import annotations

import gzip
import json
import shutil

import numpy as np
import pytest
from conftest import BUNDLED_REFERENCE, full_reference_dir

from dsviewer.model.weight_recipe import load_manifest

ARCHITECTURES = ("gs_small_u4l4", "gs_small_u8l8", "gs_base_u2l4", "gs_base_u4l8",
                 "gs_large_u2l4", "depth_small_u8l8", "depth_base_u4l8")  # fmt: skip


def test_load_manifest_reads_either_form(tmp_path):
    bundled = BUNDLED_REFERENCE / "manifest_depth_small_u8l8.json.gz"
    with gzip.open(bundled, "rt", encoding="utf-8") as f:
        expected = json.load(f)
    assert expected["architecture"] == "depth_small_u8l8" and len(expected["keys"]) > 100
    plain = tmp_path / "manifest_depth_small_u8l8.json"
    plain.write_text(json.dumps(expected))
    assert load_manifest(plain) == expected  # plain file
    assert load_manifest(bundled) == expected  # the .gz by its own name
    assert load_manifest(BUNDLED_REFERENCE / "manifest_depth_small_u8l8.json") == expected
    plain.unlink()
    shutil.copyfile(bundled, tmp_path / bundled.name)
    assert load_manifest(plain) == expected  # plain name, only the .gz there
    with pytest.raises(FileNotFoundError, match="manifest_none.json"):
        load_manifest(tmp_path / "manifest_none.json")


def test_bundle_is_complete_and_small():
    names = {p.name for p in BUNDLED_REFERENCE.iterdir()}
    assert {f"manifest_{a}.json.gz" for a in ARCHITECTURES} <= names
    assert {"README.md", "checkpoints.json", "case_a_small_2v_64x64.json",
            "case_d_depthbase_4v_64x96_expected.npz"} <= names  # fmt: skip
    total = sum(p.stat().st_size for p in BUNDLED_REFERENCE.iterdir())
    assert total < 5e6, f"tests/reference grew to {total / 1e6:.1f} MB"


def test_bundle_matches_the_full_reference():
    full = full_reference_dir()
    if full is None:
        pytest.skip("the full reference (../shared/reference or DSVIEWER_REFERENCE) is absent")
    for architecture in ARCHITECTURES:
        name = f"manifest_{architecture}.json"
        assert load_manifest(BUNDLED_REFERENCE / name) == load_manifest(full / name)
    for path in BUNDLED_REFERENCE.iterdir():
        if path.suffix == ".json" or path.name.endswith(("_inputs.npz", "_expected.npz")):
            assert path.read_bytes() == (full / path.name).read_bytes(), path.name
    bundled = np.load(BUNDLED_REFERENCE / "case_a_small_2v_64x64_intermediates.npz")
    original = np.load(full / "case_a_small_2v_64x64_intermediates.npz")
    assert len(bundled.files) > 30
    for key in bundled.files:
        np.testing.assert_array_equal(bundled[key], original[key])

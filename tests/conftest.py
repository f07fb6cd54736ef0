"""Shared test fixtures: where the reference data lives, and a few tiny builders."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
BUNDLED_REFERENCE = REPO_ROOT / "tests" / "reference"

# The reference's golden cases (shared/reference/case_<name>.json), in the README's order.
ALL_GOLDEN_CASES = (
    "a_small_2v_64x64",
    "b_base_3v_64x112",
    "c_small_5v_64x128",
    "d_depthbase_4v_64x96",
    "e_base_u4l8_3v_64x128",
)


def full_reference_dir() -> Path | None:
    """The full reference: $DSVIEWER_REFERENCE, else ``shared/reference`` beside the checkout
    (developer layout) or inside it; None when absent (a plain clone)."""
    env = os.environ.get("DSVIEWER_REFERENCE")
    candidates = [Path(env)] if env else [REPO_ROOT.parent / "shared" / "reference",
                                          REPO_ROOT / "shared" / "reference"]  # fmt: skip
    return next((c for c in candidates if (c / "README.md").is_file()), None)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _available_cases() -> tuple[str, ...]:
    roots = [r for r in (full_reference_dir(), BUNDLED_REFERENCE) if r is not None]
    found = tuple(c for c in ALL_GOLDEN_CASES
                  if any((r / f"case_{c}.json").is_file() for r in roots))  # fmt: skip
    # With no files at all, CI still collects every case, so that each one fails loudly.
    return found or (ALL_GOLDEN_CASES if in_ci() else ())


# Every case there are files for: the bundled ones always, all five with the full reference.
GOLDEN_CASES = _available_cases()


def available(*cases: str) -> list[str]:
    """Those of ``cases`` (names with or without the ``case_`` prefix) that can run here."""
    return [c for c in cases if c.removeprefix("case_") in GOLDEN_CASES]


def _missing(message: str) -> None:
    """Skip, except in CI (``CI=true``), where a missing reference must fail the run."""
    if in_ci():
        pytest.fail(message + " (CI=true: the bundled reference must be there)")
    pytest.skip(message)


class ReferenceFiles:
    """``reference / name``: the full reference's file when present, else the bundled copy
    (manifests are bundled as ``.json.gz``; ``load_manifest`` reads either)."""

    def __init__(self, full: Path | None, bundled: Path) -> None:
        self.roots = [r for r in (full, bundled) if r is not None]

    def __truediv__(self, name: str) -> Path:
        for root in self.roots:
            for candidate in (root / name, root / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
        _missing(f"reference file {name} not found in {[str(r) for r in self.roots]}")
        raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def reference() -> ReferenceFiles:
    if not (BUNDLED_REFERENCE / "README.md").is_file() and full_reference_dir() is None:
        _missing(f"reference data not found at {BUNDLED_REFERENCE} (nor DSVIEWER_REFERENCE, "
                 "nor ../shared/reference)")
    return ReferenceFiles(full_reference_dir(), BUNDLED_REFERENCE)


def pytest_collection_modifyitems(config, items):
    """Every test that reads the reference (directly or through a fixture) is ``golden``."""
    for item in items:
        if "reference" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.golden)


def micro_config():
    """A DepthSplat config at about the smallest widths its layers take (0.2 M parameters):
    quick to build, save and load in tests about files and settings."""
    from dsviewer.model import DepthSplatConfig

    return DepthSplatConfig(
        vit_embed_dim=32, vit_depth=2, vit_num_heads=2, vit_tapped_layers=(0, 0, 1, 1),
        feature_channels=32, num_transformer_layers=1, cnn_stage_channels=(16, 24, 32),
        unet_channels=32, dpt_features=16, dpt_out_channels=(16, 16, 16, 16),
        feature_upsampler_channels=16, gaussian_regressor_channels=16, sh_degree=1,
    )  # fmt: skip


@pytest.fixture(scope="session")
def micro_model():
    """The :func:`micro_config` model, seeded, in eval mode (shared: do not modify it)."""
    from dsviewer.model import DepthSplat

    torch.manual_seed(0)
    return DepthSplat(micro_config()).eval()


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def server():
    """A real viser server on 127.0.0.1 and a free port, stopped after the test."""
    import viser

    srv = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
    yield srv
    srv.stop()

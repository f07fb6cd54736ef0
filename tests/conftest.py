"""Shared test fixtures: where the reference data lives, and a few tiny builders."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]

# The reference's golden cases (shared/reference/case_<name>.json), in the README's order.
GOLDEN_CASES = (
    "a_small_2v_64x64",
    "b_base_3v_64x112",
    "c_small_5v_64x128",
    "d_depthbase_4v_64x96",
    "e_base_u4l8_3v_64x128",
)


def reference_dir() -> Path:
    """``shared/reference`` beside the checkout (CI and developer layout), or $DSVIEWER_REFERENCE."""
    env = os.environ.get("DSVIEWER_REFERENCE")
    if env:
        return Path(env)
    for candidate in (REPO_ROOT.parent / "shared" / "reference", REPO_ROOT / "shared" / "reference"):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "reference"


@pytest.fixture(scope="session")
def reference() -> Path:
    path = reference_dir()
    if not (path / "README.md").is_file():
        pytest.skip(f"reference data not found at {path} (set DSVIEWER_REFERENCE)")
    return path


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

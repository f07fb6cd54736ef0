"""The reference's deterministic weight recipe: a full state dict from a manifest and a seed.

With no released checkpoint downloadable here, this is how the golden cases (and benchmarks)
get weights that exercise every tensor of an architecture. See ``shared/reference/README.md``.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch


def load_manifest(path: str | Path) -> dict:
    with open(path) as f:
        return json.load(f)


def recipe_state_dict(manifest: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Ordered state dict with the keys (checkpoint prefix included) and shapes of ``manifest``.

    Each tensor is ``mean + std * N(0, 1)`` drawn in float64 from a generator seeded by
    ``(seed, crc32(key))`` and cast to float32, so every key is independent of the others.
    """
    state = {}
    for entry in manifest["keys"]:
        key, shape = entry["key"], tuple(entry["shape"])
        rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
        values = np.float64(entry["mean"]) + np.float64(entry["std"]) * rng.standard_normal(shape)
        state[key] = torch.from_numpy(values.astype(np.float32))
    return state

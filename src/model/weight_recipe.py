"""The reference's deterministic weight recipe: a full state dict from a manifest and a seed.

With no released checkpoint downloadable here, this is how the golden cases (and benchmarks)
get weights that exercise every tensor of an architecture. See ``shared/reference/README.md``
(and ``tests/reference/README.md`` for the copy in the repository).
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

import numpy as np
import torch


def load_manifest(path: str | Path) -> dict:
    """A manifest from ``manifest_<arch>.json`` or its gzip-compressed ``.json.gz`` copy.

    Either name finds either form: ``shared/reference`` holds the plain files, the repository's
    ``tests/reference`` the compressed ones.
    """
    path = Path(path)
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    for candidate in (path, plain, plain.with_name(plain.name + ".gz")):
        if candidate.is_file():
            opener = gzip.open if candidate.suffix == ".gz" else open
            with opener(candidate, "rt", encoding="utf-8") as f:
                return json.load(f)
    raise FileNotFoundError(f"No manifest {plain} (nor {plain.name}.gz beside it).")


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

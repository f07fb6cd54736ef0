"""Write ``tests/reference/``: the compact part of the official reference that ships in the repo.

The full reference (``shared/reference``, about 27 MB, beside the checkout) holds the
architecture manifests, the released checkpoints' settings and five golden cases. A clone
without it still checks fidelity with this bundle (about 4 MB):

* ``manifest_<architecture>.json.gz``: all seven manifests, unchanged, gzip-compressed
  (``dsviewer.model.weight_recipe.load_manifest`` reads either form);
* ``checkpoints.json``: unchanged;
* two golden cases, one Gaussian (``a_small_2v_64x64``) and one depth-only
  (``d_depthbase_4v_64x96``): the case description, the inputs, the expected outputs (float32,
  as in the reference) and, for case a, the intermediates the tests compare.

    python scripts/bundle_reference.py --reference ../shared/reference
"""

from __future__ import annotations

import argparse
import gzip
import shutil
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "tests" / "reference"
CASES = ("a_small_2v_64x64", "d_depthbase_4v_64x96")
# What tests/test_depth_predictor.py, test_encoder_golden.py and test_transforms.py read of
# the intermediates (with each array's #rows/#cols/#n pixel-grid indices).
INTERMEDIATE_KEYS = (
    "depth_predictor.backbone@out.0",
    "depth_predictor.backbone@out.2",
    "depth_predictor.transformer@in.v0",
    "depth_predictor.transformer@out.v0",
    "depth_predictor.transformer@out.v1",
    "depth_predictor.pretrained.patch_embed@in",
    "depth_predictor.pretrained.norm@call0.map",
    "depth_predictor.pretrained.norm@call3.map",
    "depth_predictor.upsampler@in.mono.3",
    "depth_predictor.regressor.0@in.costvolume",
    "depth_predictor.regressor.0@in.mono",
    "depth_predictor.regressor.0",
    "depth_predictor.regressor_residual.0",
    "depth_predictor@match_probs.0",
    "depth_predictor@depth_candidates.0",
    "depth_predictor.upsampler",
    "gaussian_head",
    "gaussian_adapter@sh_camera",
    "gaussian_adapter@cov_camera",
)


def bundle(reference: Path, out: Path) -> dict[str, int]:
    """Write the bundle into ``out``; returns the file sizes in bytes."""
    out.mkdir(parents=True, exist_ok=True)
    for manifest in sorted(reference.glob("manifest_*.json")):
        target = out / f"{manifest.name}.gz"
        # mtime=0: the same reference always gives the same bytes (no spurious git diffs).
        with gzip.GzipFile(target, "wb", compresslevel=9, mtime=0) as f:
            f.write(manifest.read_bytes())
    shutil.copyfile(reference / "checkpoints.json", out / "checkpoints.json")
    for case in CASES:
        stem = f"case_{case}"
        shutil.copyfile(reference / f"{stem}.json", out / f"{stem}.json")
        for part in ("inputs", "expected"):
            shutil.copyfile(reference / f"{stem}_{part}.npz", out / f"{stem}_{part}.npz")
        intermediates = reference / f"{stem}_intermediates.npz"
        if intermediates.is_file():
            with np.load(intermediates) as full:
                kept = {k: full[k] for k in full.files if k.split("#")[0] in INTERMEDIATE_KEYS}
            np.savez_compressed(out / f"{stem}_intermediates.npz", **kept)
    return {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.name != "README.md"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, default=REPO.parent / "shared" / "reference")
    parser.add_argument("--out", type=Path, default=BUNDLE)
    args = parser.parse_args()
    sizes = bundle(args.reference, args.out)
    for name, size in sizes.items():
        print(f"{name:48s} {size / 1e6:6.3f} MB")
    print(f"{'total':48s} {sum(sizes.values()) / 1e6:6.3f} MB")


if __name__ == "__main__":
    main()

"""The built-in backend against the official DepthSplat code on every golden case: one command
that rebuilds the parity table of docs/backends.md.

    python bench/backend_parity.py --official ~/depthsplat                  # print the table
    python bench/backend_parity.py --official ~/depthsplat --docs docs/backends.md   # and write it

For each golden case (``case_*.json`` in ``--reference``, by default the full reference beside
the checkout, else the cases shipped in ``tests/reference``) the recipe weights (seed 0) are
saved under the name of a released checkpoint of the case's architecture and Gaussian scale, and
the same file runs through the built-in backend and the extension backend (the official checkout,
patched with ``dsviewer patch-depthsplat``) on the case's inputs. Every output of the Prediction
is compared: largest absolute difference, and how many entries lie outside the case's golden
tolerance (``|a - b| > atol + rtol * |official|``; for covariances also per matrix, with the
matrix's Frobenius norm as the scale, as tests/test_encoder_golden.py judges them). To tell a
real difference from float32 noise, the official code is also run against itself with one
torch thread instead of this process's thread count.

Where a package the official code imports cannot be installed (torchvision has no CPU build
for this torch on the project's machines), ``--placeholder-packages torchvision`` puts a package
of that name on the worker's path whose every module and attribute is a placeholder that raises
when called: the official code and its dependencies (torchmetrics, through pytorch_lightning)
import torchvision but call nothing of it during inference, and a call would fail loudly.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TABLE_BEGIN = "<!-- parity table: written by bench/backend_parity.py -->"
TABLE_END = "<!-- parity table: end -->"


@dataclass(frozen=True)
class Quantity:
    label: str
    tolerance: str | None  # the key of the case's "tolerances" (None: the cases give none)
    values: Callable  # Prediction -> tensor or None
    per_matrix: bool = False  # scale = the Frobenius norm of each 3x3 matrix


def _gaussian(name: str) -> Callable:
    return lambda p: None if p.gaussians is None else getattr(p.gaussians, name)


QUANTITIES = (
    Quantity("final depth", "final_depth", lambda p: p.final_depth),
    Quantity("coarse (inverse)", "coarse_mv_depth", lambda p: p.coarse_inv_depth),
    Quantity("mono residual", "mono_depth", lambda p: p.mono_inv_residual),
    Quantity("confidence", "match_prob_max", lambda p: p.confidence),
    Quantity("match probs", None, lambda p: p.match_probs),
    Quantity("inverse candidates", None, lambda p: p.inv_depth_candidates),
    Quantity("means", "means", _gaussian("means")),
    Quantity("covariances", "covariances", _gaussian("covariances")),
    Quantity("covariances per matrix", "covariances", _gaussian("covariances"), per_matrix=True),
    Quantity("harmonics", "harmonics", _gaussian("harmonics")),
    Quantity("opacities", "opacities", _gaussian("opacities")),
    Quantity("scales", "scales", _gaussian("scales")),
    Quantity("rotations", "rotations", _gaussian("rotations_xyzw")),
)


@dataclass(frozen=True)
class Difference:
    max_abs: float
    outside: int | None  # entries outside the tolerance (None: no tolerance given)
    size: int


def compare(ours: np.ndarray, official: np.ndarray, tolerance: dict | None,
            per_matrix: bool = False) -> Difference:  # fmt: skip
    """How far ``ours`` is from ``official`` (same shape), judged at ``tolerance``."""
    if ours.shape != official.shape:
        raise ValueError(f"shapes differ: {ours.shape} vs {official.shape}")
    ours, official = ours.astype(np.float64), official.astype(np.float64)
    error = np.abs(ours - official)
    outside = None
    if tolerance is not None:
        scale = np.abs(official)
        if per_matrix:
            scale = np.linalg.norm(official, axis=(-2, -1), keepdims=True)
        outside = int((error > tolerance["atol"] + tolerance["rtol"] * scale).sum())
    return Difference(float(error.max()) if error.size else 0.0, outside, int(error.size))


def compare_predictions(ours, official, tolerances: dict) -> dict[str, Difference]:
    """Each quantity both predictions have, by label."""
    result = {}
    for quantity in QUANTITIES:
        a, b = quantity.values(ours), quantity.values(official)
        if a is None or b is None:
            continue
        tolerance = tolerances.get(quantity.tolerance) if quantity.tolerance else None
        result[quantity.label] = compare(a.detach().cpu().numpy(), b.detach().cpu().numpy(),
                                         tolerance, quantity.per_matrix)  # fmt: skip
    return result


def cell(difference: Difference | None) -> str:
    if difference is None:
        return "-"
    text = f"{difference.max_abs:.1e}"
    if difference.outside:
        text += f" ({difference.outside} of {difference.size} outside)"
    return text


def markdown(rows: Sequence[tuple[str, str, dict[str, Difference]]]) -> str:
    """One row per (case, comparison); a column per quantity any row has."""
    labels = [q.label for q in QUANTITIES if any(q.label in r[2] for r in rows)]
    lines = ["| case | compared | " + " | ".join(labels) + " |",
             "|---|---|" + "---|" * len(labels)]  # fmt: skip
    for case, what, differences in rows:
        cells = [cell(differences.get(label)) for label in labels]
        lines.append(f"| {case} | {what} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_table(document: str, table: str) -> str:
    """``document`` with the text between the table markers replaced by ``table``."""
    begin, end = document.find(TABLE_BEGIN), document.find(TABLE_END)
    if begin < 0 or end < begin:
        raise ValueError(f"the document has no '{TABLE_BEGIN}' ... '{TABLE_END}' markers")
    return document[: begin + len(TABLE_BEGIN)] + "\n" + table + "\n" + document[end:]


# --- running the two backends ---------------------------------------------------------------------


def reference_folder(given: Path | None) -> Path:
    if given is not None:
        return given
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import BUNDLED_REFERENCE, full_reference_dir

    return full_reference_dir() or BUNDLED_REFERENCE


def write_checkpoint(reference: Path, meta: dict, folder: Path) -> Path:
    """The case's recipe weights saved as a released file of its architecture and scale max."""
    import torch

    from dsviewer.backends.presets import load_preset
    from dsviewer.model.weight_recipe import load_manifest, recipe_state_dict

    manifest = load_manifest(reference / meta["manifest"])
    scale_max = meta["encoder_config"]["gaussian_adapter"]["gaussian_scale_max"]
    name = next(n for n in manifest["checkpoints"]
                if load_preset(n).architecture.gaussian_scale_max == scale_max)  # fmt: skip
    state = recipe_state_dict(manifest, seed=meta["weight_seed"])
    path = folder / name
    torch.save(state if manifest["key_prefix"] == "encoder." else {"model": state}, path)
    return path


def case_views(reference: Path, case: str):
    """The case's inputs (batch element 0) as a ViewSet."""
    import torch

    from dsviewer.dataset.types import ViewSet

    inputs = np.load(reference / f"case_{case}_inputs.npz")
    first = {key: torch.from_numpy(inputs[key][0]) for key in inputs.files}
    views = first["image"].shape[0]
    return ViewSet(image=first["image"], intrinsics=first["intrinsics"],
                   extrinsics=first["extrinsics"], near=first["near"], far=first["far"],
                   index=torch.arange(views))  # fmt: skip


def run_case(reference: Path, case: str, official: Path, folder: Path) -> list[tuple]:
    import torch

    from dsviewer.backends.builtin import BuiltinBackend
    from dsviewer.backends.extension import ExtensionBackend

    meta = json.loads((reference / f"case_{case}.json").read_text())
    checkpoint = write_checkpoint(reference, meta, folder)
    views = case_views(reference, case)
    threads = torch.get_num_threads()
    ours = BuiltinBackend(checkpoint, device="cpu").predict(views)
    extension = ExtensionBackend(checkpoint, repo=official, device="cpu")  # at `threads`
    try:
        theirs = extension.predict(views)
    finally:
        extension.close()
    rows = [(case, f"built-in vs official, {threads} threads",
             compare_predictions(ours, theirs, meta["tolerances"]))]  # fmt: skip
    if threads > 1:
        torch.set_num_threads(1)
        try:
            extension = ExtensionBackend(checkpoint, repo=official, device="cpu")
            try:
                alone = extension.predict(views)
            finally:
                extension.close()
        finally:
            torch.set_num_threads(threads)
        rows.append((case, f"official, 1 vs {threads} threads",
                     compare_predictions(alone, theirs, meta["tolerances"])))  # fmt: skip
    checkpoint.unlink()
    return rows


PLACEHOLDER_PACKAGE = '''"""Placeholder written by bench/backend_parity.py: importable, unusable."""
import importlib.abc
import importlib.machinery
import sys
import types


class _Placeholder:
    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        return _Placeholder(f"{self._name}.{attribute}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._name} is a placeholder (bench/backend_parity.py): the "
                           "official code called it, so the comparison cannot run here")


class _Module(types.ModuleType):
    def __getattr__(self, attribute):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return _Placeholder(f"{self.__name__}.{attribute}")


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(__name__ + "."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _Module(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _Finder())
sys.modules[__name__].__class__ = _Module
'''


def write_placeholder_packages(names: Sequence[str], folder: Path) -> None:
    """A placeholder package per name under ``folder``, put on PYTHONPATH for the worker."""
    for name in names:
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(PLACEHOLDER_PACKAGE)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(folder), *filter(None, [os.environ.get("PYTHONPATH")])]
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, required=True,
                        help="the official DepthSplat checkout, patched (patch-depthsplat)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="folder with case_*.json, *_inputs.npz and the manifests")
    parser.add_argument("--cases", nargs="*", default=None, help="case names (default: all)")
    parser.add_argument("--placeholder-packages", nargs="*", default=(),
                        help="packages the official code imports but that cannot be installed")
    parser.add_argument("--docs", type=Path, default=None,
                        help="also write the table into this file, between its markers")
    return parser.parse_args(argv)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    reference = reference_folder(args.reference)
    cases = args.cases or sorted(p.name[len("case_"):-len(".json")]
                                 for p in reference.glob("case_*.json"))  # fmt: skip
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        if args.placeholder_packages:
            write_placeholder_packages(args.placeholder_packages, Path(folder) / "placeholders")
        for case in cases:
            print(f"case {case} ...", file=sys.stderr, flush=True)
            rows += run_case(reference, case, args.official, Path(folder))
    table = markdown(rows)
    print(table)
    if args.docs is not None:
        args.docs.write_text(replace_table(args.docs.read_text(), table))
        print(f"wrote the table into {args.docs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from dsviewer.viewer.errors import exit_process, run_entry_point

    exit_process(run_entry_point("backend_parity", main))

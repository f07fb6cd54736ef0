"""dsviewer as a user installs it: one import name, a built wheel in a fresh environment, and a
working folder that has its own ``src/`` and ``viewer/`` packages (as a DepthSplat checkout does).

Nothing here uses the editable install's paths: the wheel is built from the checkout,
installed without ``-e`` into a new virtual environment, and every command runs with its
working directory elsewhere. The environment sees the machine's packages (torch, viser, ...)
through ``--system-site-packages``; the tests assert that ``dsviewer`` itself is the wheel's.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import REPO_ROOT

from dsviewer.model.weight_recipe import load_manifest, recipe_state_dict

pytestmark = pytest.mark.slow

OFFICIAL_SMALL = "depthsplat-gs-small-re10k-256x256-view2-cfeab6b1.pth"
PRODUCT_FOLDERS = ("src", "viewer", "configs", "tests", "bench", "scripts")


def run(command: list[str], cwd: Path, env: dict | None = None, timeout: int = 600):
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout, check=False)  # fmt: skip
    assert result.returncode == 0, (f"{command} failed:\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}")
    return result


def clean_env(**extra: str) -> dict:
    """The environment without PYTHONPATH (which could point at the checkout)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO_ROOT)], cwd=out)  # fmt: skip
    (found,) = out.glob("dsviewer-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh virtual environment with the wheel installed (not editable); its python."""
    root = tmp_path_factory.mktemp("venv")
    run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root)],
        cwd=root)  # fmt: skip
    python = root / "bin" / "python"
    run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        cwd=root)  # fmt: skip
    return python


def test_the_wheel_installs_one_import_name_with_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"dsviewer", wheel.name.split("-")[0] + "-" +
                         wheel.name.split("-")[1] + ".dist-info"}  # fmt: skip
    released = sorted(p.name for p in (REPO_ROOT / "configs" / "checkpoints").glob("*.yaml"))
    assert len(released) == 9
    for name in released:
        assert f"dsviewer/configs/checkpoints/{name}" in names
    assert "dsviewer/configs/datasets/re10k.yaml" in names
    assert "dsviewer/viewer/assets/demo/depthsplat-demo-tiny.pth" in names
    assert "dsviewer/model/encoder/encoder_depthsplat.py" in names  # the reference's layout


def test_the_installed_wheel_is_what_imports(venv, tmp_path):
    probe = ("import dsviewer, dsviewer.viewer.cli, dsviewer.configs as c; "
             "print(dsviewer.__file__); print(c.CONFIG_ROOT)")
    result = run([str(venv), "-c", probe], cwd=tmp_path)
    module, configs = result.stdout.split()
    venv_root = venv.parent.parent
    assert Path(module).is_relative_to(venv_root) and Path(configs).is_relative_to(venv_root)


def test_the_installed_wheel_exports_the_demo(venv, tmp_path):
    out = tmp_path / "demo"
    run([str(venv.parent / "dsviewer"), "export", "--demo", "--out", str(out)], cwd=tmp_path,
        env=clean_env())  # fmt: skip
    recorded = json.loads((REPO_ROOT / "viewer/assets/demo/demo.json").read_text())
    expected = recorded["demo_scene_metrics"]
    exported = sorted(out.glob("*/metrics.json"))
    assert sorted(path.parent.name for path in exported) == sorted(expected)
    for path in exported:
        gt = json.loads(path.read_text())["gt"]
        for part in ("coarse", "final"):
            assert gt[part]["overall"]["abs_rel"] == pytest.approx(
                expected[path.parent.name][part]["abs_rel"], abs=1e-4)


def test_the_installed_wheel_exports_with_an_official_checkpoint_name(venv, tmp_path, reference):
    """The settings of an official file come from the installed presets (package data)."""
    weights = tmp_path / OFFICIAL_SMALL
    torch.save(recipe_state_dict(load_manifest(reference / "manifest_gs_small_u4l4.json")),
               weights)  # fmt: skip
    out = tmp_path / "export"
    run([str(venv.parent / "dsviewer"), "export", "--ckpt", str(weights), "--scene",
         "synthetic:3", "--out", str(out)], cwd=tmp_path, env=clean_env())  # fmt: skip
    cameras = json.loads((out / "cameras.json").read_text())
    assert cameras["context"][0]["image_size"] == [256, 256]  # the re10k preset's shape


def test_the_golden_tests_pass_against_the_installed_wheel(venv, tmp_path):
    test_file = REPO_ROOT / "tests" / "test_encoder_golden.py"
    result = run([str(venv), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "golden",
                  str(test_file)], cwd=tmp_path, env=clean_env())  # fmt: skip
    assert " passed" in result.stdout and " failed" not in result.stdout


def foreign_checkout(root: Path) -> Path:
    """A folder like a DepthSplat checkout: its own ``src`` and ``viewer`` packages, which break
    any import that reaches them."""
    for name in ("src", "viewer"):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(
            f"raise ImportError('the checkout\\'s own {name} package was imported')\n")
    return root


@pytest.mark.parametrize("launcher", ["module", "script"])
def test_the_cli_runs_inside_a_folder_with_its_own_src(tmp_path, launcher):
    """``python -m`` puts the working folder first on sys.path: a checkout's ``src`` is then
    importable as ``src``, and dsviewer must never ask for that name."""
    checkout = foreign_checkout(tmp_path / "depthsplat")
    command = ([sys.executable, "-m", "dsviewer.viewer.cli"] if launcher == "module"
               else [str(Path(sys.executable).parent / "dsviewer")])  # fmt: skip
    run([*command, "export", "--demo", "--scene", "synthetic_7_0000", "--out",
         str(tmp_path / "out")], cwd=checkout,
        env=clean_env())  # fmt: skip
    expected = json.loads((REPO_ROOT / "viewer/assets/demo/demo.json").read_text())
    gt = json.loads((tmp_path / "out" / "metrics.json").read_text())["gt"]
    assert gt["final"]["overall"]["abs_rel"] == pytest.approx(
        expected["demo_scene_metrics"]["synthetic_7_0000"]["final"]["abs_rel"], abs=1e-4)


def test_no_code_of_the_project_imports_the_folder_names():
    """Only ``dsviewer.*`` names; ``src`` is the user's DepthSplat checkout's, imported in the
    extension worker alone (where it means the checkout)."""
    worker = REPO_ROOT / "src" / "backends" / "extension_worker.py"
    offenders = []
    for folder in PRODUCT_FOLDERS:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if path == worker or "standin_depthsplat" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and
                         node.level == 0 else [])  # fmt: skip
                offenders += [f"{path.relative_to(REPO_ROOT)}: {n}" for n in names
                              if n.split(".")[0] in ("src", "viewer")]  # fmt: skip
    assert offenders == []

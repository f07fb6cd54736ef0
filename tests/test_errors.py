"""Errors by type, not by origin: what the user can fix is one paragraph, exit status 2 and no
log, in every command (patch-depthsplat included); anything else is a bug with a log (exit 1).
A misspelled scene key names the closest keys in the viewer, ``export`` and ``eval`` alike."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch  # noqa: F401 -- read by a skipif condition
from conftest import REPO_ROOT

from dsviewer.errors import InputError, SetupError, UserError, is_user_error
from dsviewer.io.text_formats import MalformedTextError, parse_json
from dsviewer.viewer import cli
from dsviewer.viewer.errors import EXIT_BUG, EXIT_USER_ERROR, run_entry_point

DEMO_CHECKPOINT = REPO_ROOT / "viewer" / "assets" / "demo" / "depthsplat-demo-tiny.pth"
DEMO_ROOT = REPO_ROOT / "viewer" / "assets" / "demo" / "scenes"  # keys synthetic_7_000{0,1,3}
STANDIN = REPO_ROOT / "tests" / "data" / "standin_depthsplat"
DEEP = 200_000  # far past Python's recursion limit (1,000 by default)


@pytest.fixture
def logs(tmp_path, monkeypatch) -> Path:
    """The folder a bug's log would go to (empty unless a bug happened)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "dsviewer" / "logs"


def logged(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.log")) if folder.is_dir() else []


def paragraph(err: str, program: str) -> str:
    """The one paragraph a user error prints, whitespace joined (rich wraps long lines)."""
    assert "Traceback" not in err
    text = err.strip()
    assert text.startswith(f"{program}: error: ") and "\n\n" not in text
    return " ".join(text.split())


def deep_json(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


# --- the classification -----------------------------------------------------------------------


def _contract_error():
    from dsviewer.model.decoder.render import RenderInputError

    return RenderInputError("a broken promise between our own functions")


@pytest.mark.parametrize("make, user", [
    (lambda: InputError("bad option"), True),
    (lambda: SetupError("no CUDA device"), True),
    (lambda: FileNotFoundError(2, "No such file or directory", "x"), True),  # the OS's answer
    (lambda: PermissionError(13, "Permission denied", "x"), True),
    (_contract_error, False),  # a ValueError subclass of ours: still a bug, by its type
    (lambda: MalformedTextError("unwrapped parse error"), False),
    (lambda: ValueError("numpy says no"), False),
    (lambda: RecursionError("maximum recursion depth exceeded"), False),
    (lambda: KeyError("k"), False),
])  # fmt: skip
def test_user_errors_are_told_apart_by_type(make, user):
    assert is_user_error(make()) is user


def _exception_classes(path: Path) -> dict[str, list[str]]:
    """``class XError(bases)`` of one source file: name -> base names (as written)."""
    tree = ast.parse(path.read_text())
    return {node.name: [ast.unparse(b) for b in node.bases] for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error")}  # fmt: skip


# Error classes of the product that are deliberately not user errors: arguments our own code
# passes (shapes, a registry key), a parse reason the caller wraps, a worker's reply the parent
# process turns into DepthSplatRepoError.
INTERNAL_ERRORS = {
    "DepthPredictorInputError", "RenderInputError", "NotASimilarityError", "PlyInputError",
    "MalformedTextError", "WorkerError",
}  # fmt: skip


def test_every_error_class_is_a_user_error_or_declared_internal():
    """A new ``class FooError(ValueError)`` for user input would be shown as a bug: every error
    class of src/ and viewer/ derives (through the project's own classes) from UserError, or is
    one of the declared internal ones."""
    bases: dict[str, list[str]] = {}
    for folder in ("src", "viewer"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            bases.update(_exception_classes(path))
    assert len(bases) > 40  # the walk found the project's classes

    def derives_from_user_error(name: str, seen: frozenset = frozenset()) -> bool:
        if name in ("UserError", "InputError", "SetupError"):
            return True
        return name not in seen and any(
            derives_from_user_error(base, seen | {name}) for base in bases.get(name, ())
        )

    internal = {name for name in bases if not derives_from_user_error(name)}
    assert internal == INTERNAL_ERRORS
    for name in INTERNAL_ERRORS:  # and the internal ones really are not user errors
        assert not any(base in ("InputError", "SetupError") for base in bases[name])


# --- the boundary ---------------------------------------------------------------------------------


def test_an_input_error_is_one_paragraph_exit_2_and_no_log(logs, capsys):
    def main() -> int:
        raise InputError("--point-budget must be at least 1. Pass a positive number.")

    assert run_entry_point("dsviewer", main) == EXIT_USER_ERROR
    text = paragraph(capsys.readouterr().err, "dsviewer")
    assert text == "dsviewer: error: --point-budget must be at least 1. Pass a positive number."
    assert logged(logs) == []


def test_an_unwrapped_error_of_our_own_code_is_a_bug_with_a_log(logs, capsys):
    """A ValueError subclass from a dsviewer module was "your input" when errors were told apart
    by the package they came from; by type it is a bug."""

    def main() -> int:
        parse_json("[1, 2")  # the caller forgot to wrap the reason in a user error
        return 0

    assert run_entry_point("dsviewer export", main) == EXIT_BUG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (MalformedTextError" in err
    (log,) = logged(logs)
    assert str(log) in err and "Traceback" in log.read_text()


def test_a_bad_command_line_option_is_a_user_error(logs, capsys):
    assert cli.main(["--demo", "--point-budget", "0"]) == EXIT_USER_ERROR
    text = paragraph(capsys.readouterr().err, "dsviewer")
    assert "--point-budget and --gaussian-budget must be at least 1" in text
    assert logged(logs) == []


@pytest.mark.skipif("torch.cuda.is_available()", reason="needs a machine without CUDA")
def test_a_missing_device_is_a_setup_error(tmp_path, logs, capsys):
    from dsviewer.backends import DeviceUnavailableError

    assert issubclass(DeviceUnavailableError, SetupError)
    out = tmp_path / "out"
    assert cli.main(["export", "--demo", "--device", "cuda", "--out", str(out)]) == 2
    text = paragraph(capsys.readouterr().err, "dsviewer export")
    assert "--device cuda was asked for" in text and "Use --device cpu" in text
    assert logged(logs) == [] and not any(out.iterdir())  # checked writable, nothing written


# --- files nested too deeply, or not text -------------------------------------------------------


def _read_chunk_index(folder: Path):
    from dsviewer.dataset.chunks import load_index

    (folder / "index.json").write_bytes(folder.joinpath("payload").read_bytes())
    return load_index([folder])


def _read_evaluation_index(folder: Path):
    from dsviewer.dataset.views import read_evaluation_index

    return read_evaluation_index(folder / "payload")


def _read_transforms(folder: Path):
    from dsviewer.dataset.nerfstudio import read_transforms

    (folder / "transforms.json").write_bytes(folder.joinpath("payload").read_bytes())
    return read_transforms(folder)


def _read_dataset_preset(folder: Path):
    from dsviewer.dataset.settings import read_settings_file

    return read_settings_file(folder / "payload")


def _read_model_preset(folder: Path):
    from dsviewer.backends.presets import load_preset

    path = folder / "preset.yaml"
    path.write_bytes(folder.joinpath("payload").read_bytes())
    return load_preset(path)


READERS = {
    "chunk index.json": _read_chunk_index,
    "evaluation index": _read_evaluation_index,
    "transforms.json": _read_transforms,
    "dataset preset": _read_dataset_preset,
    "model preset": _read_model_preset,
}


NESTED = (deep_json(20_000).encode(), "nested deeper than")  # JSON is YAML too
BINARY = (b"\x80\x01 binary", "cannot be decoded as text")
# Every reader with a binary file; the nested file for each parser (YAML's is slow to fail:
# about two seconds, so one YAML reader stands for both).
CASES = [(reader, *BINARY) for reader in READERS] + [
    (reader, *NESTED) for reader in READERS if reader != "model preset"
]


@pytest.mark.parametrize("reader, payload, reason", CASES,
                         ids=[f"{c[0]}-{'nested' if c[1] is NESTED[0] else 'binary'}"
                              for c in CASES])  # fmt: skip
def test_files_that_cannot_be_parsed_are_input_errors(tmp_path, reader, payload, reason):
    folder = tmp_path / "scene"
    folder.mkdir()
    (folder / "payload").write_bytes(payload)
    with pytest.raises(InputError) as caught:
        READERS[reader](folder)
    message = str(caught.value)
    assert str(folder) in message and reason in message  # names the file and what is wrong
    assert len(message) < 800 and "\n" not in message  # one paragraph, not the file echoed


def test_a_deeply_nested_evaluation_index_is_exit_2_in_export_and_eval(tmp_path, logs, capsys):
    deep = tmp_path / "index.json"
    deep.write_text(deep_json())
    out = tmp_path / "out"
    status = cli.main(["export", "--demo", "--all-from-index", "--index", str(deep),
                       "--out", str(out)])  # fmt: skip
    assert status == EXIT_USER_ERROR
    text = paragraph(capsys.readouterr().err, "dsviewer export")
    assert f"The evaluation index {deep} is not valid JSON" in text and "nested deeper" in text
    status = cli.main(["eval", "--ckpt", str(DEMO_CHECKPOINT), "--data-root", str(DEMO_ROOT),
                       "--index", str(deep), "--out", str(tmp_path / "eval")])  # fmt: skip
    assert status == EXIT_USER_ERROR
    assert "nested deeper" in paragraph(capsys.readouterr().err, "dsviewer eval")
    assert logged(logs) == [] and not out.exists()


# --- patch-depthsplat behind the same boundary ----------------------------------------------------


def test_patch_depthsplat_on_a_missing_folder_is_exit_2(tmp_path, logs, capsys):
    missing = tmp_path / "no-checkout"
    assert cli.main(["patch-depthsplat", str(missing)]) == EXIT_USER_ERROR
    text = paragraph(capsys.readouterr().err, "dsviewer patch-depthsplat")
    assert f"{missing} is not a folder" in text
    assert logged(logs) == []


def test_patch_depthsplat_on_a_file_that_is_not_text_changes_nothing(tmp_path, logs, capsys):
    repo = tmp_path / "depthsplat"
    shutil.copytree(STANDIN, repo)
    matcher = repo / "src" / "model" / "encoder" / "unimatch" / "mv_unimatch.py"
    matcher.write_bytes(b"\xff\xfe" + matcher.read_bytes())
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    assert cli.main(["patch-depthsplat", str(repo)]) == EXIT_USER_ERROR
    text = paragraph(capsys.readouterr().err, "dsviewer patch-depthsplat")
    assert "is not UTF-8 text" in text and "changed nothing" in text
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
    assert logged(logs) == []


def test_a_bug_in_patch_depthsplat_is_logged(tmp_path, logs, capsys, monkeypatch):
    from dsviewer.backends import depthsplat_patch

    def broken(repo):
        return {}["a bug"]

    monkeypatch.setattr(depthsplat_patch, "plan_patch", broken)
    assert cli.main(["patch-depthsplat", str(tmp_path)]) == EXIT_BUG
    err = capsys.readouterr().err
    assert err.startswith("dsviewer patch-depthsplat: internal error (KeyError")
    (log,) = logged(logs)
    assert "a bug" in log.read_text()


# --- close keys in every command ------------------------------------------------------------------


def test_a_misspelled_key_names_the_closest_keys_in_export(tmp_path, logs, capsys):
    out = tmp_path / "out"
    status = cli.main(["export", "--ckpt", str(DEMO_CHECKPOINT), "--data-root", str(DEMO_ROOT),
                       "--scene", "synthetic_7_003", "--out", str(out)])  # fmt: skip
    assert status == EXIT_USER_ERROR
    err = " ".join(capsys.readouterr().err.split())
    assert "Traceback" not in err
    assert "synthetic_7_003: no data root lists this key" in err
    assert "The closest keys are: synthetic_7_0003," in err  # the likeliest first
    assert logged(logs) == [] and not out.exists()


def test_a_misspelled_key_names_the_closest_keys_in_eval(tmp_path, logs, capsys):
    status = cli.main(["eval", "--ckpt", str(DEMO_CHECKPOINT), "--data-root", str(DEMO_ROOT),
                       "--scene", "synthetic_7_0002x", "--out", str(tmp_path / "eval")])
    assert status == EXIT_USER_ERROR
    text = paragraph(capsys.readouterr().err, "dsviewer eval")
    assert "'synthetic_7_0002x': no data root lists this key in its index.json. The closest " \
           "keys are: synthetic_7_000" in text
    assert ".." not in text
    assert logged(logs) == []


def test_only_typed_keys_get_close_keys(tmp_path):
    """Keys from an evaluation index are not ranked (quadratic over a large test set); a key
    typed with --scene is."""
    from dsviewer.viewer.evaluation.plan import plan_scenes

    index = tmp_path / "index.json"
    index.write_text('{"synthetic_7_0000": null, "synthetic_7_0009": '
                     '{"context": [0, 1], "target": [2]}}')  # fmt: skip
    plan = plan_scenes([DEMO_ROOT], index)
    (absent,) = [s for s in plan.scenes if s.key == "synthetic_7_0009"]
    assert absent.missing == "no data root lists this key in its index.json"
    plan = plan_scenes([DEMO_ROOT], None, ["synthetic_7_0009"])
    assert plan.scenes[0].missing.startswith(
        "no data root lists this key in its index.json. The closest keys are: synthetic_7_000"
    )


def test_user_error_is_a_plain_exception_with_no_project_imports():
    """src/ and viewer/ both import dsviewer.errors: it must not import either."""
    tree = ast.parse((REPO_ROOT / "src" / "errors.py").read_text())
    imported = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert all(getattr(node, "module", None) == "__future__" for node in imported)
    assert issubclass(InputError, ValueError) and issubclass(SetupError, UserError)

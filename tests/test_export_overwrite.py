"""``--overwrite`` replaces only an earlier export: every layout the export command writes is
recognised, anything else in the folder is named and left alone, before any model work.

The layouts are written by the real writers (tiny plane scenes, about 10 s on 2 cores); the
command-line cases stop at the checks, so a call of the model loader fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from viewer_scenes import make_prediction, make_scene

from dsviewer.viewer.export import (
    EXPORT_FILE_NAMES,
    ExportExistsError,
    ForeignFilesError,
    export_scene,
)
from dsviewer.viewer.export.compare_files import export_comparison
from dsviewer.viewer.export.layout import foreign_entries
from dsviewer.viewer.export.transaction import MARKER
from dsviewer.viewer.export_cli import main, scene_folders
from dsviewer.viewer.session.loaded import run_prediction


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes, by relative path."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.fixture(scope="module")
def runs():
    small = run_prediction(make_scene(2, 12, 16), make_prediction, run_name="small")
    large = run_prediction(make_scene(2, 24, 32), make_prediction, run_name="large")
    return small, large


@pytest.fixture(scope="module")
def layouts(runs, tmp_path_factory) -> dict[str, Path]:
    """One folder per layout of ``dsviewer export``: one scene, one scene of several
    checkpoints, several scenes (one of each kind), as the command names their folders."""
    small, large = runs
    root = tmp_path_factory.mktemp("layouts")
    export_scene(root / "scene", small)
    export_comparison(root / "comparison", [small, large])
    folders = scene_folders(root / "scenes", ["re10k/one", "two"])
    export_scene(folders["re10k/one"], small)
    export_comparison(folders["two"], [small, large])
    return {"scene": root / "scene", "comparison": root / "comparison",
            "scenes": root / "scenes"}  # fmt: skip


def test_every_layout_the_command_writes_is_an_earlier_export(layouts):
    assert set(tree(layouts["scene"])) >= {"metrics.json", "final.ply", "scene.html"}
    assert {"compare.json", "compare.ply", "runs/small/metrics.json"} <= set(
        tree(layouts["comparison"])
    )
    assert sorted(p.name for p in layouts["scenes"].iterdir()) == ["re10k_one", "two"]
    for folder in layouts.values():
        assert foreign_entries(folder, EXPORT_FILE_NAMES) == [], folder
    assert foreign_entries(layouts["scene"].parent / "missing", EXPORT_FILE_NAMES) == []


@pytest.mark.parametrize("layout, added, named", [
    ("scene", ["thesis.tex"], ["thesis.tex"]),
    ("scene", ["sub/notes.txt", ".git/HEAD"], [".git/", "sub/"]),
    ("comparison", ["runs/small/extra.txt", "runs/readme.md"],
     ["runs/readme.md", "runs/small/extra.txt"]),
    ("comparison", ["runs/other/data.bin"], ["runs/other/"]),  # no marker: foreign as a whole
    ("scenes", ["notes.txt", "three/keep.txt", "two/runs/large/x.csv"],
     ["notes.txt", "three/", "two/runs/large/x.csv"]),
])  # fmt: skip
def test_other_files_are_named_and_never_replaced(layouts, tmp_path, layout, added, named, runs):
    import shutil

    folder = tmp_path / layout
    shutil.copytree(layouts[layout], folder)
    for name in added:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("precious")
    before = tree(folder)
    assert foreign_entries(folder, EXPORT_FILE_NAMES) == named
    for overwrite in (True, False):
        with pytest.raises(ForeignFilesError) as info:
            export_scene(folder, runs[0], overwrite=overwrite)
        message = str(info.value)
        assert all(name in message for name in named[:3]) and "empty or new folder" in message
    assert tree(folder) == before
    assert not [p for p in tmp_path.iterdir() if MARKER in p.name]


def test_evaluation_outputs_are_not_an_export(tmp_path):
    """``dsviewer eval``'s folder: tables, a report and one JSON per scene."""
    evaluation = tmp_path / "eval"
    (evaluation / "scenes").mkdir(parents=True)
    for name in ("scenes.csv", "summary.json", "report.html", "run.json", "scenes/k.json"):
        (evaluation / name).write_text("{}")
    assert foreign_entries(evaluation, EXPORT_FILE_NAMES) == [
        "report.html", "run.json", "scenes/", "scenes.csv", "summary.json"]  # fmt: skip


def test_overwrite_replaces_any_earlier_layout_as_a_whole(layouts, tmp_path, runs):
    import shutil

    large = runs[1]
    for layout in ("scenes", "comparison", "scene"):
        folder = tmp_path / layout
        shutil.copytree(layouts[layout], folder)
        with pytest.raises(ExportExistsError, match="--overwrite"):
            export_scene(folder, large)
        result = export_scene(folder, large, overwrite=True)
        assert sorted(p.name for p in folder.iterdir()) == sorted(result.files)
        assert set(result.files) <= set(EXPORT_FILE_NAMES)
        assert json.loads((folder / "metrics.json").read_text())["files"] == sorted(result.files)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparison", "scene", "scenes"]


def refused_before_model_work(args: list[str], monkeypatch, capsys) -> str:
    import dsviewer.backends

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the folder was checked")

    monkeypatch.setattr(dsviewer.backends, "open_backend", no_model)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return " ".join(err.split())


@pytest.mark.parametrize("scenes", [["synthetic_7_0001"], ["synthetic_7_0001", "synthetic_7_0003"]])
def test_command_refuses_a_folder_with_other_files(tmp_path, monkeypatch, capsys, scenes):
    """The reviewer's case: ``--overwrite`` over a folder with a thesis in it."""
    out = tmp_path / "victim"
    folder = out / scenes[0] if len(scenes) > 1 else out  # several scenes: one folder each
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.tex").write_text("precious")
    args = ["--demo", "--out", str(out), "--overwrite", "--device", "cpu"]
    for scene in scenes:
        args += ["--scene", scene]
    message = refused_before_model_work(args, monkeypatch, capsys)
    assert f"{folder} holds files that no dsviewer export wrote (sub/, thesis.tex)" in message
    assert "Choose an empty or new folder for --out" in message
    assert (folder / "thesis.tex").read_text() == "precious" and (folder / "sub").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["victim"]


@pytest.mark.parametrize("out, where", [(".", "is the current folder"),
                                        ("..", "holds the current folder")])  # fmt: skip
def test_the_current_folder_is_refused_as_out(tmp_path, monkeypatch, capsys, out, where):
    """A swap cannot replace ``.`` by that name, and replacing the folder a shell is in by its
    absolute path would leave the shell in the removed one: refused before any model work."""
    current = tmp_path / "work" / "here"
    current.mkdir(parents=True)
    monkeypatch.chdir(current)
    message = refused_before_model_work(
        ["--demo", "--scene", "synthetic_7_0001", "--out", out, "--overwrite", "--device", "cpu"],
        monkeypatch, capsys,
    )  # fmt: skip
    assert f"--out {out} ({Path(out).resolve()}) {where}" in message
    assert current.is_dir() and sorted(p.name for p in current.parent.iterdir()) == ["here"]


def test_a_linked_out_is_judged_by_the_folder_it_points_to(tmp_path, monkeypatch, capsys):
    """The swap replaces the folder a link points to, so that folder is the one checked."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("precious")
    (tmp_path / "linkout").symlink_to(victim)
    message = refused_before_model_work(
        ["--demo", "--scene", "synthetic_7_0001", "--out", str(tmp_path / "linkout"),
         "--overwrite", "--device", "cpu"], monkeypatch, capsys,
    )  # fmt: skip
    assert "holds files that no dsviewer export wrote (notes.txt)" in message
    assert (victim / "notes.txt").read_text() == "precious"


def test_a_file_named_like_a_marker_does_not_make_an_export(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "metrics.json").write_text('{"loss": 0.1}')  # a training log's
    (tmp_path / "sub" / "final.ply").write_text("ply")
    assert foreign_entries(tmp_path, EXPORT_FILE_NAMES) == ["sub/"]


def test_files_that_appear_during_the_work_are_kept(tmp_path):
    """Between the checks and the swap (the model's minutes of work) someone writes into
    --out: the swap is refused, their files stay and nothing of the export is left."""
    from dsviewer.viewer.export import refuse_existing
    from dsviewer.viewer.export.transaction import export_transaction

    out = tmp_path / "late"
    keep_theirs = lambda folder: refuse_existing(folder, True)
    with pytest.raises(ForeignFilesError, match="notes.txt"), \
            export_transaction(out, keep_theirs) as working:  # fmt: skip
        (working / "metrics.json").write_text('{"scene": {}, "units": {}}')
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    assert tree(out) == {"notes.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late"]


def test_several_scenes_are_not_written_into_a_one_scene_export(layouts, tmp_path, monkeypatch,
                                                                 capsys):  # fmt: skip
    import shutil

    shutil.copytree(layouts["scene"], tmp_path / "one")
    before = tree(tmp_path / "one")
    message = refused_before_model_work(
        ["--demo", "--scene", "synthetic_7_0001", "--scene", "synthetic_7_0003",
         "--out", str(tmp_path / "one"), "--device", "cpu"], monkeypatch, capsys,
    )  # fmt: skip
    assert "holds the export of one scene" in message
    assert tree(tmp_path / "one") == before

"""``dsviewer eval``'s output folder: ``--force`` moves or deletes only what an evaluation wrote,
and setting a run aside never leaves a folder that mixes two runs, wherever it is interrupted.
No model runs here: the folder is claimed with run identities and records made in code."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from test_eval import DEMO_CKPT

from dsviewer.viewer.evaluation import folder
from dsviewer.viewer.evaluation.records import (
    SceneRecord,
    read_run_records,
    run_hash,
    run_identity,
    write_json,
    write_record,
)

OLD = run_identity(DEMO_CKPT, None, None, 1)
NEW = run_identity(DEMO_CKPT, None, None, 2)


def old_run(out: Path, previous: bool = True) -> None:
    """A finished run of OLD in ``out`` (one record, scenes.csv) and, before it, another."""
    write_json(out / "run.json", OLD)
    write_record(out, SceneRecord("k", "ok", run=run_hash(OLD)))
    (out / "scenes.csv").write_text("old\n")
    if previous:
        write_json(out / "previous-run" / "run.json", OLD)
        (out / "previous-run" / "scenes.csv").write_text("older\n")


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("interrupted_at", [None, 1, 2, 3, 4, 5])
def test_set_aside_finishes_after_an_interruption(tmp_path, monkeypatch, interrupted_at):
    """The n-th rename of the set-aside is interrupted (Ctrl-C); the next start, even without
    --force, finishes it: the old run whole in previous-run/, the new run.json alone."""
    import os

    old_run(tmp_path)
    renames, real_replace = [], os.replace

    def replace(source, target):
        renames.append(target)
        if len(renames) == interrupted_at:
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(folder.os, "replace", replace)
    try:
        folder.claim_folder(tmp_path, NEW, force=True)
    except KeyboardInterrupt:
        monkeypatch.setattr(folder.os, "replace", real_replace)
        # the folder never holds a run.json beside another run's records or outputs: either
        # the old run.json is still in place, or the unfinished move holds it
        partial = tmp_path / folder.PARTIAL_DIR
        if (tmp_path / "run.json").is_file():
            assert json.loads((tmp_path / "run.json").read_text()) == OLD
            assert read_run_records(tmp_path, run_hash(OLD))
        else:
            assert json.loads((partial / "run.json").read_text()) == OLD
        moved = folder.claim_folder(tmp_path, NEW, force=interrupted_at == 1)
        assert not partial.exists()
    else:
        moved = tmp_path / "previous-run"
        assert renames[:5] == [tmp_path / folder.PARTIAL_DIR / "run.json",
                               tmp_path / folder.PARTIAL_DIR / "scenes",
                               tmp_path / folder.PARTIAL_DIR / "scenes.csv",
                               tmp_path / folder.PARTIAL_DIR / "superseded",
                               tmp_path / "previous-run"]  # fmt: skip
    assert moved == tmp_path / "previous-run"
    assert files(tmp_path) == {
        "run.json": json.dumps(NEW, indent=1).encode(),
        "previous-run/run.json": json.dumps(OLD, indent=1).encode(),
        "previous-run/scenes.csv": b"old\n",
        **{f"previous-run/scenes/{p.name}": p.read_bytes()
           for p in (tmp_path / "previous-run" / "scenes").glob("*.json")},
    }  # fmt: skip
    assert list(read_run_records(tmp_path / "previous-run", run_hash(OLD))) == ["k"]


@pytest.mark.parametrize("plant, entry", [
    (lambda out: (out / "previous-run" / "run.json").unlink(), "previous-run/"),
    (lambda out: (out / "scenes" / "notes.txt").write_text("mine"), "scenes/notes.txt"),
    (lambda out: (out / "summary.json").mkdir(), "summary.json"),
])  # fmt: skip
def test_force_refuses_to_move_or_delete_foreign_files(tmp_path, plant, entry):
    old_run(tmp_path)
    plant(tmp_path)
    before = files(tmp_path)
    with pytest.raises(folder.ForeignFilesError) as caught:
        folder.claim_folder(tmp_path, NEW, force=True)
    message = str(caught.value)
    assert entry in message and "Nothing was changed" in message and "another --out" in message
    assert files(tmp_path) == before


@pytest.mark.parametrize("run_json", [None, "{}", '{"name": "my notes"}', "not json"])
def test_records_without_our_run_json_are_not_a_run(tmp_path, run_json):
    write_record(tmp_path, SceneRecord("k", "ok", run=run_hash(OLD)))
    if run_json is not None:
        (tmp_path / "run.json").write_text(run_json)
    before = files(tmp_path)
    with pytest.raises(folder.ForeignFilesError, match="did not write"):
        folder.claim_folder(tmp_path, NEW, force=True)
    assert files(tmp_path) == before


def test_a_refusal_in_a_log_file_is_one_line(tmp_path):
    """A log (not a terminal) gets each message on one line, long paths unbroken."""
    from rich.console import Console

    from dsviewer.viewer.eval_cli import parse_args
    from dsviewer.viewer.evaluation.runner import run_evaluation

    out = tmp_path / ("a_rather_long_folder_name_for_results_" * 3) / "run1"
    out.mkdir(parents=True)
    (out / "run.json").write_text('{"mine": 1}')
    log = io.StringIO()
    options = parse_args(["--ckpt", str(DEMO_CKPT), "--scene", "synthetic:1", "--out", str(out)])
    code = run_evaluation(options.job(), console=Console(file=log), check=options.check_flags)
    lines = log.getvalue().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"dsviewer eval: error: --out {out} holds files that")
    assert "(run.json)" in lines[0]

"""``dsviewer eval`` across runs and failures: which records a rerun may trust (the run that made
them, their frames), ``--force`` with other inputs, a failed model load, a full output folder on
one process and on one of two torchrun ranks, Ctrl-C, warnings shown once, targets left
undecoded, the open command, and the checks before anything runs. Scenes are 64x64 synthetic
ones (the demo model upsamples them to 128x128) with ``--max-target-views 0``: fast."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_eval import DEMO_CKPT, REPO_ROOT, read_csv, run

FRAMES = 6
SIZE = 64
KEYS = ("s0", "s1", "s2")
CORRUPT_TARGET = ("s1", 3)  # a target frame that is not a JPEG: decoding it fails the scene
BAD_FRAME = 99  # s2's index entry names this context frame


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Three 64x64 scenes in one chunk and an index: s1 has a broken target frame, s2's entry
    names a frame the scene does not have."""
    from dsviewer.dataset.chunks import write_chunk, write_index
    from dsviewer.dataset.synthetic import render_example

    root = tmp_path_factory.mktemp("eval_small")
    examples = [render_example(9, i, FRAMES, SIZE, SIZE, key=key) for i, key in enumerate(KEYS)]
    examples[1].images[CORRUPT_TARGET[1]] = torch.frombuffer(bytearray(b"not a jpeg"),
                                                             dtype=torch.uint8)  # fmt: skip
    write_chunk(root / "000000.torch", examples)
    write_index(root, {key: "000000.torch" for key in KEYS})
    index = root / "evaluation_index.json"
    index.write_text(json.dumps({"s0": {"context": [0, 5], "target": [3]},
                                 "s1": {"context": [0, 5], "target": [3]},
                                 "s2": {"context": [0, BAD_FRAME], "target": [3]}}))  # fmt: skip
    return root, index


def args(root: Path, index: Path, out: Path, *more: str, ckpt: Path = DEMO_CKPT) -> list[str]:
    return ["--ckpt", str(ckpt), "--data-root", str(root), "--index", str(index), "--out",
            str(out), "--device", "cpu", "--threads", "1", "--max-target-views", "0",
            *more]  # fmt: skip


def scenes(*keys: str) -> list[str]:
    return [part for key in keys for part in ("--scene", key)]


def test_no_target_decoded_warnings_once_and_bad_index_frames(small, tmp_path, caplog):
    root, index = small
    code, text = run(*args(root, index, tmp_path / "out"))
    assert code == 0, text
    rows = {row["key"]: row for row in read_csv(tmp_path / "out" / "scenes.csv")}
    # --max-target-views 0: s1's broken target frame is never decoded, so s1 is fine
    assert rows["s0"]["status"] == rows["s1"]["status"] == "ok"
    assert rows["s0"]["targets"] == rows["s1"]["targets"] == "0"
    # the bad frame is the index's: its file and the key are named, no command-line flag
    reason = rows["s2"]["reason"]
    assert rows["s2"]["status"] == "failed" and f"[{BAD_FRAME}]" in reason
    assert str(index) in reason and "'s2'" in reason and "--context" not in reason
    # every view of both ok scenes is upsampled: the warning shows once, then a count
    logged = sum("are upsampled to" in record.getMessage() for record in caplog.records)
    assert logged >= 2 and text.count("are upsampled to") == 2, text
    assert f"{logged - 1} more warning(s) like: Images of 64x64" in " ".join(text.split())


def test_force_with_another_checkpoint_sets_the_old_run_aside(small, tmp_path):
    """The review's repro: a --force run with another checkpoint, stopped after one scene (here:
    asked for one scene), then resumed. The old checkpoint's record of s1 must not count."""
    from dsviewer.viewer.evaluation.records import read_run_records, run_hash

    root, _ = small
    index = tmp_path / "index.json"
    index.write_text(json.dumps({key: {"context": [0, 5], "target": [3]} for key in KEYS[:2]}))
    other = tmp_path / "other.pth"
    shutil.copyfile(DEMO_CKPT, other)
    out = tmp_path / "out"
    first = run(*args(root, index, out))
    forced = run(*args(root, index, out, "--force", *scenes("s0"), ckpt=other))
    aside = out / "previous-run"
    resumed = run(*args(root, index, out, ckpt=other))
    assert [first[0], forced[0], resumed[0]] == [0, 0, 0], (first, forced, resumed)
    assert str(aside) in " ".join(forced[1].split())
    assert "1 to run, 1 already done" in resumed[1]  # s1 again, with the new checkpoint
    old_run = json.loads((aside / "run.json").read_text())
    assert old_run["checkpoint"] == str(DEMO_CKPT.resolve())
    assert sorted(read_run_records(aside, run_hash(old_run))) == ["s0", "s1"]
    identity = json.loads((out / "run.json").read_text())
    assert identity["checkpoint"] == str(other.resolve())
    assert sorted(read_run_records(out, run_hash(identity))) == ["s0", "s1"]
    for path in (out / "scenes").glob("*.json"):
        assert json.loads(path.read_text())["run"] == run_hash(identity)

    # one entry of the index edited: the same run, and only that entry is redone
    index.write_text(json.dumps({"s0": {"context": [0, 4], "target": [3]},
                                 "s1": {"context": [0, 5], "target": [3]}}))  # fmt: skip
    code, text = run(*args(root, index, out, ckpt=other))
    assert code == 0 and "1 to run, 1 already done" in text, text
    identity = json.loads((out / "run.json").read_text())
    assert identity["index_sha256"] == hashlib.sha256(index.read_bytes()).hexdigest()
    assert run_hash(identity) == json.loads(next((out / "scenes").glob("*.json")).read_text())[
        "run"]


def test_records_are_trusted_only_for_their_run_and_frames(tmp_path):
    from dsviewer.viewer.evaluation.records import (
        SceneRecord,
        is_done,
        read_record,
        record_path,
        write_record,
    )

    write_record(tmp_path, SceneRecord("k", "ok", run="aaaa", context=[0, 5], target=[2]))
    assert read_record(tmp_path, "k", "aaaa") is not None
    assert read_record(tmp_path, "k", "bbbb") is None
    assert is_done(tmp_path, "k", "aaaa", (0, 5), (2,))
    assert not is_done(tmp_path, "k", "aaaa", (0, 4), (2,))  # other frames: redone
    assert not is_done(tmp_path, "k", "aaaa", None, None)
    assert not is_done(tmp_path, "k", "bbbb", (0, 5), (2,))
    path = record_path(tmp_path, "k")
    data = json.loads(path.read_text())
    for bad in ({"metrics": "x"}, {"metrics": [1]}, {"thumbnails": 3}, {"run": None}):
        path.write_text(json.dumps({**data, **bad}))
        assert read_record(tmp_path, "k", "aaaa") is None and not is_done(tmp_path, "k", "aaaa")


def test_run_identity_follows_file_contents_and_the_checkout(tmp_path, monkeypatch):
    from dsviewer.viewer.evaluation.records import run_hash, run_identity

    monkeypatch.chdir(tmp_path)
    config, index, repo = Path("model.yaml"), Path("index.json"), Path("depthsplat")
    config.write_text("a: 1\n")
    index.write_text("{}")
    repo.mkdir()
    before = run_identity(DEMO_CKPT, index, config, None, repo)
    assert before["depthsplat_repo"] == str(tmp_path / "depthsplat")
    config.write_text("a: 2\n")
    after = run_identity(DEMO_CKPT, index, config, None, repo)
    assert after["config_sha256"] != before["config_sha256"]
    assert run_hash(after) != run_hash(before)
    assert run_hash(run_identity(DEMO_CKPT, index, config, None, None)) != run_hash(after)
    # the index is recorded, not hashed: each record keeps the frames it used
    index.write_text('{"k": null}')
    assert run_hash(run_identity(DEMO_CKPT, index, config, None, repo)) == run_hash(after)


def test_run_identity_follows_edits_of_the_depthsplat_checkout(tmp_path):
    from dsviewer.viewer.evaluation.records import run_hash, run_identity

    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments],
                              cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()  # fmt: skip

    code = tmp_path / "model.py"
    code.write_text("x = 1\n")
    plain = run_identity(DEMO_CKPT, None, None, None, tmp_path)
    os.utime(code, ns=(0, code.stat().st_mtime_ns + 10**9))  # not a checkout: the files' times
    assert run_hash(run_identity(DEMO_CKPT, None, None, None, tmp_path)) != run_hash(plain)
    git("init", "-q")
    git("add", "model.py")
    git("commit", "-qm", "one")
    committed = run_identity(DEMO_CKPT, None, None, None, tmp_path)
    assert committed["depthsplat_repo_state"] == {
        "git_head": git("rev-parse", "HEAD"),
        "git_diff_sha256": hashlib.sha256(b"").hexdigest()}
    code.write_text("x = 2\n")  # an uncommitted edit
    edited = run_identity(DEMO_CKPT, None, None, None, tmp_path)
    diff = subprocess.run(["git", "diff", "HEAD"], cwd=tmp_path, capture_output=True,
                          check=True).stdout
    assert edited["depthsplat_repo_state"]["git_diff_sha256"] == hashlib.sha256(diff).hexdigest()
    git("commit", "-qam", "two")
    again = run_identity(DEMO_CKPT, None, None, None, tmp_path)
    assert len({run_hash(committed), run_hash(edited), run_hash(again)}) == 3


def test_a_failed_model_load_leaves_the_folder_usable(small, tmp_path):
    root, index = small
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [oops\n")
    out = tmp_path / "out"
    code, text = run(*args(root, index, out, "--config", str(bad), *scenes("s0")))
    assert code == 2 and "could not load the model" in text and "not valid YAML" in text
    code, text = run(*args(root, index, out, *scenes("s0")))  # the corrected command
    assert code == 0, text
    assert read_csv(out / "scenes.csv")[0]["status"] == "ok"


def block_record(out: Path, key: str) -> None:
    """A folder where the scene's record goes: writing it fails as a full disk does."""
    from dsviewer.viewer.evaluation.records import record_path

    record_path(out, key).mkdir(parents=True)


def test_a_record_that_cannot_be_written_names_out(small, tmp_path, capsys):
    from dsviewer.viewer.eval_cli import main

    root, index = small
    out = tmp_path / "out"
    block_record(out, "s0")
    code = main(args(root, index, out, *scenes("s0")))
    stderr = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "Traceback" not in stderr
    assert f"Could not write the result of scene 's0' into --out {out}" in stderr
    assert ".tmp" not in stderr  # the record's own path, not the temporary file's
    assert "rerun the same command to resume" in stderr


def test_one_rank_that_cannot_write_stops_both_without_a_hang(small, tmp_path):
    """Two gloo ranks, one scene each; rank 1's record cannot be written. Both ranks end, and
    rank 0 reports rank 1's error in one paragraph."""
    root, index = small
    out = tmp_path / "out"
    block_record(out, "s1")  # the shards are in plan order: s0 on rank 0, s1 on rank 1
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "dsviewer.viewer.eval_cli",
               *args(root, index, out, *scenes("s0", "s1"))]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=300, check=False)  # fmt: skip
    ours = [line for line in result.stderr.splitlines() if "dsviewer eval" in line]
    message = " ".join(result.stderr.split())
    assert result.returncode != 0
    assert ours == [line for line in ours if line.startswith("dsviewer eval: error: rank 1:")]
    assert len(ours) == 1 and "Could not write the result of scene 's1'" in message
    # both ranks loaded a 64x64 scene: rank 0 alone shows the warning, once, and the total
    assert result.stderr.count("are upsampled to") == 2, result.stderr
    assert re.search(r"\d+ more warning\(s\) like: Images of 64x64", message)
    # torchrun then reports the failed workers itself (its ChildFailedError); before that, none
    # of the ranks printed a traceback
    assert "Traceback" not in result.stderr.split("elastic/multiprocessing")[0]


def test_ctrl_c_is_one_line(small, tmp_path):
    root, index = small
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # see test_safety.py
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "dsviewer.viewer.eval_cli",
             *args(root, index, tmp_path / "out")],
            cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    lines = []
    for line in process.stderr:  # the plan line comes before the model loads
        lines.append(line)
        if "to run" in line:
            process.send_signal(signal.SIGINT)
            break
    _, rest = process.communicate(timeout=120)
    text = "".join(lines) + rest
    assert process.returncode == 130, text
    assert text.strip().splitlines()[-1].startswith("dsviewer eval: interrupted")
    assert "Traceback" not in text


def test_more_ranks_than_gpus_is_one_paragraph(monkeypatch):
    from dsviewer.viewer.evaluation import distributed

    for name, value in {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
                        "LOCAL_WORLD_SIZE": "2"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    gpus = torch.cuda.device_count()
    if gpus >= 2:
        pytest.skip("two ranks fit this node's GPUs")
    with pytest.raises(distributed.PlacementError) as caught:
        distributed.start("cuda", None)
    message = str(caught.value)
    assert f"started 2 processes on this node, but it has {gpus} GPU(s)" in message
    assert "--nproc_per_node" in message and "--device cpu" in message


@pytest.mark.parametrize("key", ["-rf", "<script>", "it's \"quoted\" $HOME;ls", "--help"])
def test_open_command_parses_back_to_the_same_scene(key, tmp_path, monkeypatch):
    from dsviewer.viewer.cli import parse
    from dsviewer.viewer.evaluation.scene_metrics import viewer_command

    monkeypatch.chdir(tmp_path)
    Path("repo").mkdir()
    command = shlex.join(viewer_command(Path("m.pth"), key, [Path("data")], Path("i.json"),
                                        Path("c.yaml"), Path("repo"), dataset_key=True))
    argv = shlex.split(command)
    options = parse(argv[1:])
    assert argv[0] == "dsviewer" and options.scene == [key]
    assert options.ckpt == [tmp_path / "m.pth"] and options.data_root == [tmp_path / "data"]
    assert options.index == tmp_path / "i.json" and options.config == tmp_path / "c.yaml"
    assert options.depthsplat_repo == tmp_path / "repo"


def test_open_command_makes_a_capture_folder_absolute(tmp_path, monkeypatch):
    from dsviewer.viewer.cli import parse
    from dsviewer.viewer.evaluation.scene_metrics import viewer_command

    monkeypatch.chdir(tmp_path)
    Path("captures/room").mkdir(parents=True)
    for spec, expected in (("captures/room", str(tmp_path / "captures" / "room")),
                           ("synthetic:3", "synthetic:3")):  # fmt: skip
        argv = viewer_command(Path("m.pth"), spec)
        assert parse(argv[1:]).scene == [expected]
    # a dataset key is never taken for the folder of the same name
    assert parse(viewer_command(Path("m.pth"), "captures", dataset_key=True)[1:]).scene == [
        "captures"]


@pytest.mark.parametrize("out, phrase", [
    ("/proc/evalout", "cannot be used as the output folder"),
    ("{tmp}/file/sub", "a part of that path is a file, not a folder"),
])  # fmt: skip
def test_an_unusable_out_is_one_paragraph(out, phrase, tmp_path):
    (tmp_path / "file").write_text("x")
    code, text = run("--ckpt", str(DEMO_CKPT), "--scene", "synthetic:1",
                     "--out", out.format(tmp=tmp_path))  # fmt: skip
    text = " ".join(text.split())
    assert code == 2 and phrase in text and "--out" in text and "Traceback" not in text


def test_an_index_of_absent_keys_names_the_data_roots(small, tmp_path):
    root, _ = small
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"elsewhere_1": {"context": [0, 1], "target": [2]}}))
    code, text = run(*args(root, index, tmp_path / "out"))
    text = " ".join(text.split())
    assert code == 2 and "None of the 1 scenes can be run" in text and "'elsewhere_1'" in text
    assert str(root) in text and "they list 3 keys, e.g. 's0'" in text
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_plain_progress_lines_in_a_log(monkeypatch):
    """A console that is not a terminal gets a plain line every interval and at the end."""
    import io

    from rich.console import Console

    from dsviewer.viewer.evaluation import progress as module

    log, now = io.StringIO(), [0.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: now[0])
    with module.SceneProgress(5, "Evaluating", Console(file=log, width=200),
                              plain_interval=25) as bar:  # fmt: skip
        for done in range(1, 6):
            now[0] = 10.0 * done  # one scene every 10 s
            bar.show(done, int(done >= 4))
    assert log.getvalue().splitlines() == [
        "Evaluating: 3/5 scenes, 0 failed, 0:00:30 elapsed, ETA 0:00:20",
        "Evaluating: 5/5 scenes, 1 failed, 0:00:50 elapsed, ETA 0:00:00",
    ]


def report_commands(out: Path) -> dict[str, list[str]]:
    """key -> the open command of its row in report.html, split as a shell would."""
    from test_eval import TableReader

    reader = TableReader()
    reader.feed((out / "report.html").read_text("utf-8"))
    return {cells[1]: shlex.split(cells[-1]) for cells in reader.rows}


def test_a_record_of_other_data_is_not_done(small, tmp_path):
    """The same key under another --data-root, or its chunk rewritten, is evaluated again; the
    record names the chunk it read and the row opens the scene from that root."""
    root, index = small
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    out = tmp_path / "out"
    texts = [run(*args(root, index, out, *scenes("s0")))[1]]
    texts.append(run(*args(copy, index, out, *scenes("s0")))[1])
    record = json.loads(next((out / "scenes").glob("*.json")).read_text())
    chunk = copy / "000000.torch"
    assert record["source"] == {"chunk": str(chunk.resolve()), "bytes": chunk.stat().st_size,
                                "mtime_ns": chunk.stat().st_mtime_ns,
                                "data_root": str(copy.resolve())}  # fmt: skip
    command = report_commands(out)["s0"]
    assert command[command.index("--data-root") + 1] == str(copy.resolve())
    os.utime(chunk, ns=(chunk.stat().st_atime_ns, chunk.stat().st_mtime_ns + 10**9))
    texts.append(run(*args(copy, index, out, *scenes("s0")))[1])
    texts.append(run(*args(copy, index, out, *scenes("s0")))[1])
    assert ["1 to run, 0 already done" in text for text in texts] == [True, True, True, False]
    assert "All 1 scenes already done" in texts[3] and "0/0" not in texts[3]


def test_outputs_that_cannot_be_written_say_how_to_resume(small, tmp_path, capsys):
    from dsviewer.viewer.eval_cli import main

    root, index = small
    out = tmp_path / "out"
    assert main(args(root, index, out, *scenes("s0"))) == 0
    (out / "report.html").unlink()
    (out / "report.html").mkdir()  # replacing it fails as on a full disk
    capsys.readouterr()
    code = main(args(root, index, out, *scenes("s0")))
    stderr = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "Traceback" not in stderr and "[Errno" not in stderr
    assert f"Could not write the outputs into --out {out}: Is a directory" in stderr
    assert "rerun the same command to write them" in stderr


def test_ctrl_c_is_reported_by_rank_0_only(monkeypatch, capsys):
    from dsviewer.viewer import eval_cli
    from dsviewer.viewer.evaluation import runner

    def interrupted(job, **_):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_evaluation", interrupted)
    said = {}
    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        code = eval_cli.main(["--ckpt", "m.pth", "--out", "x"])
        said[rank] = (code, capsys.readouterr().err)
    assert said["1"] == (130, "")
    assert said["0"][0] == 130 and said["0"][1].startswith("dsviewer eval: interrupted")


def test_warnings_of_other_ranks_are_counted_by_rank_0():
    import logging

    from dsviewer.viewer.evaluation.log_once import WarningsOnce

    lines = []
    logger = logging.getLogger("dsviewer.test")
    with WarningsOnce(None) as other_rank:  # rank 1 prints nothing
        for size in (64, 32, 64):
            logger.warning("images of %d are upsampled", size)
        logger.warning("only on rank 1")
    assert lines == []
    with WarningsOnce(lines.append) as main_rank:
        for _ in range(2):
            logger.warning("images of %d are upsampled", 128)
        main_rank.merge(other_rank.tally())  # the final exchange
    assert lines == ["images of 128 are upsampled",
                     "4 more warning(s) like: images of 128 are upsampled",
                     "only on rank 1"]  # fmt: skip

"""Safe to share and impossible to half-write (the viewer side of issue 10).

Escaping of untrusted text, the error boundary of every entry point, network options, checks of
the prediction, and exports as one transaction under Ctrl-C, SIGTERM, SIGKILL and a full disk
(a real kernel file-size limit, RLIMIT_FSIZE, stands in for the full disk).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from viewer_scenes import make_loaded, make_prediction, make_scene

from dsviewer.viewer.errors import Terminated, run_entry_point
from dsviewer.viewer.escape import escape_markdown, escape_rich
from dsviewer.viewer.export import EXPORT_FILE_NAMES, ExportSettings
from dsviewer.viewer.export.layout import RERUN_FILE
from dsviewer.viewer.export.transaction import MARKER, export_transaction, recover
from dsviewer.viewer.session.loaded import run_prediction

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 240, **popen) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "dsviewer.viewer.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **popen,
    )


# --- escaping -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        '<img src=x onerror="alert(1)">',
        "*bold* _it_ [l](http://x)",
        "`code` | table | # heading",
        "a\n# new block",
        "&lt;",
    ],
)
def test_markdown_escaping_leaves_no_markup(text):
    escaped = escape_markdown(text)
    for character in '<>*_[]()`|#&"\n':
        assert character not in escaped.replace("&#", "").replace(";", ""), (text, escaped)
    # Every character survives as a numeric reference that markdown turns back into text.
    import html

    assert html.unescape(escaped) == " ".join(text.splitlines())


def test_rich_markup_in_text_is_shown_not_applied():
    from rich.console import Console

    console = Console(record=True, width=200)
    console.print(f"[bold]spec:[/bold] {escape_rich('[/x] [red]not red[/red]')}")
    assert "[/x] [red]not red[/red]" in console.export_text()


# --- the error boundary ---------------------------------------------------------------------------


def test_bug_is_one_line_and_a_log_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))

    def broken() -> int:
        return {}["no such key"]  # a bug, not a user error

    assert run_entry_point("dsviewer", broken) == 1
    err = capsys.readouterr().err
    assert "internal error" in err and "Traceback" not in err and err.count("\n") == 1
    (log,) = (tmp_path / "dsviewer" / "logs").iterdir()
    assert "Traceback" in log.read_text() and "no such key" in log.read_text()
    assert str(log) in err


@pytest.mark.parametrize("status, handlers_run", [(130, False), (2, True)])
def test_after_an_interruption_the_process_ends_without_exit_handlers(status, handlers_run):
    """A signal inside a C extension's import can leave it half initialised; its exit handlers
    then print noise and change the status (open3d): an interrupted run skips them."""
    code = ("import atexit; from dsviewer.viewer.errors import exit_process; "
            f"atexit.register(lambda: print('handler ran')); exit_process({status})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=REPO_ROOT, timeout=60, check=False)  # fmt: skip
    assert result.returncode == status
    assert ("handler ran" in result.stdout) == handlers_run


def test_user_error_is_one_paragraph_exit_2(capsys):
    from dsviewer.dataset.errors import SceneError

    def bad_input() -> int:
        raise SceneError("No scene with key 'x'. Pass a key listed by index.json.")

    assert run_entry_point("dsviewer", bad_input) == 2
    err = capsys.readouterr().err
    assert err.startswith("dsviewer: error: No scene with key") and "Traceback" not in err


@pytest.mark.parametrize("signum, caught", [
    (signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated),
])  # fmt: skip
def test_any_error_after_a_signal_is_the_interruption(tmp_path, monkeypatch, capsys, signum,
                                                      caught):  # fmt: skip
    """A signal that lands inside a C extension's import comes out as that library's own error
    (open3d: ``ImportError: initialization failed``): after Ctrl-C or SIGTERM it is still the
    interruption (exit 130), not a bug with a log file."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))

    def import_hit_by_a_signal() -> int:
        try:
            os.kill(os.getpid(), signum)  # the boundary's handler runs before kill returns
            time.sleep(5)
        except caught:
            raise ImportError("initialization failed") from None
        raise AssertionError("the signal was not delivered")

    # Under ``pytest &`` SIGINT starts ignored, and the boundary then leaves it so (as Python
    # does): give it the terminal's default for this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        assert run_entry_point("dsviewer export", import_hit_by_a_signal) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert err == "dsviewer export: interrupted; nothing half-written was left behind.\n"
    assert not (tmp_path / "dsviewer").exists()  # no bug log was written
    # The boundary gave the signals back: a later bug is a bug again.
    assert run_entry_point("dsviewer", lambda: {}["k"]) == 1


@pytest.mark.parametrize("args, phrase", [
    (["--scene", "synthetic:0", "--port", "70000"], "--port 70000 is not a TCP port"),
    (["--scene", "synthetic:0", "--host", "no-such-host.invalid"], "cannot be resolved"),
    (["--scene", "[/x] <b>"], "[/x] <b>"),  # rich markup in a spec is printed as it is
])  # fmt: skip
def test_bad_network_options_and_markup_in_specs(args, phrase):
    from dsviewer.viewer.assets import demo_checkpoint

    result = run_cli("--ckpt", str(demo_checkpoint()), *args, "--device", "cpu",
                     timeout=120)  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and phrase in result.stderr


def test_port_zero_prints_the_bound_port_and_shared_hosts_are_warned():
    import re
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "dsviewer.viewer.cli", "--port", "0",
                                "--host", "0.0.0.0", "--device", "cpu"], cwd=REPO_ROOT, env=env,
                                text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    output = ""
    try:
        deadline = time.monotonic() + 150
        while "Scene ready" not in output and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            output += line
        url = re.search(r"Open http://127\.0\.0\.1:(\d+) in a browser", output)
        assert url is not None and url.group(1) != "0", output
        assert "anyone who can reach port" in output and "no authentication" in output
        with urllib.request.urlopen(f"http://127.0.0.1:{url.group(1)}", timeout=10) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)


# --- the prediction is checked --------------------------------------------------------------------


def test_non_finite_prediction_is_flagged_not_shown(server, tmp_path):
    from dsviewer.viewer.export import export_scene
    from dsviewer.viewer.gui.app import ViewerApp

    scene = make_scene(2, 16, 24)
    prediction = make_prediction(scene)
    prediction.final_depth[0, :4] = float("nan")
    prediction.gaussians.means[0, :10] = float("inf")
    prediction.gaussians.covariances[0, 10:15] = float("nan")  # eigh would fail on these
    loaded = run_prediction(scene, lambda _scene: prediction)
    assert loaded.checks["nonfinite_final_depth_pixels"] == 4 * 24
    assert loaded.checks["nonfinite_gaussians"] == 15
    assert [note.code for note in loaded.notes] == ["nonfinite_prediction"] * 2
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    assert "NaN or infinite" in app.scene_panel.notes.content
    assert (
        app.clouds.slots[0].shown[("final", 0)].size == 16 * 24 - 4 * 24
    )  # the NaN pixels are not drawn
    metrics = export_scene(tmp_path / "out", loaded).metrics
    assert metrics["checks"]["nonfinite_final_depth_pixels"] == 96
    assert metrics["point_counts"]["gaussians.ply"] == 2 * 16 * 24 - 15  # only finite ones
    assert [n["code"] for n in metrics["notes"]] == ["nonfinite_prediction"] * 2
    app.close()


def test_an_all_nan_prediction_is_shown_empty_and_exported_empty(server, tmp_path):
    # A NaN in the first convolution's weights spreads to every output (the demo model does so).
    from dsviewer.viewer.export import export_scene
    from dsviewer.viewer.gui.app import ViewerApp

    scene = make_scene(2, 16, 24)
    prediction = make_prediction(scene)
    gaussians = prediction.gaussians
    for tensor in (prediction.coarse_inv_depth, prediction.mono_inv_residual,
                   prediction.final_depth, gaussians.means, gaussians.covariances):  # fmt: skip
        tensor.fill_(float("nan"))
    loaded = run_prediction(scene, lambda _scene: prediction)
    assert loaded.checks["nonfinite_gaussians"] == 2 * 16 * 24
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    assert "NaN or infinite" in app.scene_panel.notes.content
    assert app.clouds.slots[0].shown[("final", 0)].size == 0
    app.close()
    with_rerun = importlib.util.find_spec("rerun") is not None  # the recording of nothing too
    metrics = export_scene(tmp_path / "out", loaded, ExportSettings(rerun=with_rerun)).metrics
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    # nothing to render, no SfM points
    assert written == sorted(set(EXPORT_FILE_NAMES) - {"targets.png", "sfm.ply"}
                             - (set() if with_rerun else {RERUN_FILE}))
    assert metrics["point_counts"]["gaussians.ply"] == 0
    assert metrics["point_counts"]["final.ply"] == 0
    assert metrics["chamfer"]["coarse_vs_final"]["chamfer"] is None
    assert "NaN or infinite" in metrics["targets"]["skipped"]  # no PSNR of an empty render


# --- exports as one transaction -------------------------------------------------------------------


def generation(folder: Path) -> float:
    """The consistency threshold an export was written with, after checking that its files form
    one whole set: final.ply's flags agree with metrics.json's share."""
    from plyfile import PlyData

    assert sorted(p.name for p in folder.iterdir()) == sorted(
        set(EXPORT_FILE_NAMES) - {"sfm.ply", RERUN_FILE})
    metrics = json.loads((folder / "metrics.json").read_text())
    flags = PlyData.read(str(folder / "final.ply"))["vertex"]["scalar_inconsistent"]
    checked = flags[np.isfinite(flags)]
    share = metrics["consistency"]["final"]["overall"]["inconsistent_share"]
    assert float(np.mean(checked)) == pytest.approx(share, abs=1e-6)
    return metrics["settings"]["consistency_threshold"]


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.parent.iterdir() if MARKER in p.name]


def export_args(out: Path, threshold: float) -> list[str]:
    # One target view keeps each export (a CPU Gaussian render per target) short.
    return ["export", "--demo", "--scene", "synthetic_7_0001", "--context", "0", "7", "--target",
            "3", "--device", "cpu", "--out", str(out), "--overwrite", "--consistency-threshold",
            str(threshold)]  # fmt: skip


@pytest.fixture(scope="module")
def first_generation(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("transaction") / "export"
    result = run_cli(*export_args(out, 0.05))
    assert result.returncode == 0, result.stderr
    assert generation(out) == 0.05
    return out


@pytest.mark.slow
@pytest.mark.parametrize("how, files_written", [
    (signal.SIGINT, 2), (signal.SIGTERM, 6), (signal.SIGKILL, 1), (signal.SIGKILL, 7),
])  # fmt: skip
def test_interrupted_overwrite_keeps_one_whole_generation(first_generation, how, files_written):
    """Stop ``dsviewer export --overwrite`` once its working folder holds ``files_written``
    files: the export folder is still the whole first generation; Ctrl-C and SIGTERM say so in
    one line (exit 130) and leave nothing behind; after SIGKILL the next run cleans up."""
    out = first_generation
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    # A shell's background job (``pytest &``) starts with SIGINT ignored, and an ignored signal
    # stays ignored across exec: catch it here for the moment of the fork, so that the export
    # starts with the default disposition, as a terminal's Ctrl-C finds it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen([sys.executable, "-m", "dsviewer.viewer.cli",
                                    *export_args(out, 0.2)],
                                   cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, previous)
    deadline = time.monotonic() + 200
    stopped = False
    while process.poll() is None and time.monotonic() < deadline:
        working = [p for p in out.parent.iterdir() if MARKER in p.name and p.is_dir()]
        if working and len(list(working[0].iterdir())) >= files_written:
            process.send_signal(how)
            stopped = True
            break
        time.sleep(0.01)
    _, stderr = process.communicate(timeout=60)
    assert stopped, f"the export ended before {files_written} files: {stderr}"
    assert generation(out) == 0.05  # never a mix: the old set, whole
    if how == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
        assert leftovers(out)  # a killed process cannot clean up ...
        recover(out)  # ... the next export beside it does
    else:
        assert process.returncode == 130
        assert stderr.strip().splitlines()[-1].startswith("dsviewer export: interrupted")
        assert "Traceback" not in stderr
    assert not leftovers(out)


def test_full_disk_keeps_the_old_export_and_names_the_file(first_generation, tmp_path):
    """A file-size limit (RLIMIT_FSIZE, enforced by the kernel: writes fail with EFBIG as they
    fail with ENOSPC on a full disk) stops the export at its first large file."""
    import shutil

    out = tmp_path / "export"
    shutil.copytree(first_generation, out)
    limit = 300_000  # bytes: the point clouds are larger, the first files written are not

    def limit_file_size() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = run_cli(*export_args(out, 0.2), preexec_fn=limit_file_size)
    assert result.returncode == 2, result.stderr  # every scene failed for a reason the user can fix
    message = " ".join(result.stderr.split())
    assert "while writing" in message and ".ply" in message and "previous export" in message
    assert "Traceback" not in result.stderr
    assert generation(out) == 0.05
    assert not leftovers(out)


def test_transaction_swaps_whole_folders(tmp_path):
    out = tmp_path / "out"
    with export_transaction(out) as working:
        (working / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), export_transaction(out) as working:
        (working / "a.txt").write_text("new")
        (working / "b.txt").write_text("new")
        raise RuntimeError("stop")
    assert (
        sorted(p.name for p in out.iterdir()) == ["a.txt"] and (out / "a.txt").read_text() == "old"
    )
    with export_transaction(out) as working:
        (working / "b.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # A two-rename swap cut between its renames (old set aside, new one not yet in) is undone.
    aside = tmp_path / f".out{MARKER}999999999-dead.old"
    out.rename(aside)
    recover(out)
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"] and not aside.exists()


def test_leftovers_with_our_own_pid_are_recovered(tmp_path):
    """In a container every run is PID 1: a killed run's leftovers carry the next run's PID.
    Their lock files are held by no one, so they are recovered; a set put aside comes back."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.txt").write_text("whole")
    working = tmp_path / f".out{MARKER}{os.getpid()}-dead"  # a half-written new set
    working.mkdir()
    (working / "a.txt").write_text("half")
    (tmp_path / f".out{MARKER}{os.getpid()}-dead.lock").touch()
    recover(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # Cut between the two renames of a swap without renameat2: the old set is aside.
    out.rename(tmp_path / f".out{MARKER}{os.getpid()}-cut.old")
    (tmp_path / f".out{MARKER}{os.getpid()}-cut.lock").touch()
    recover(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "a.txt").read_text() == "whole"


HOLD_LOCK = """import fcntl, os, sys, time
fcntl.flock(os.open(sys.argv[1], os.O_RDWR), fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def test_a_live_transaction_is_never_recovered(tmp_path):
    """Held locks are left alone: this process's own (another descriptor of it conflicts) and
    another process's; when that process is killed the kernel drops its lock."""
    out = tmp_path / "out"
    with export_transaction(out) as working:
        (working / "a.txt").write_text("new")
        recover(out)
        assert (working / "a.txt").read_text() == "new"
    assert (out / "a.txt").read_text() == "new"
    other = tmp_path / f".out{MARKER}1-live"
    other.mkdir()
    lock = tmp_path / f".out{MARKER}1-live.lock"
    lock.touch()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        recover(out)
        assert other.is_dir() and lock.exists()
    finally:
        holder.kill()
        holder.wait(timeout=20)
    recover(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_interrupted_two_rename_swap_puts_the_old_set_back(tmp_path, monkeypatch):
    """Without renameat2 the swap is two renames; Ctrl-C between them must not leave the
    destination missing (the old set is renamed back before the interruption goes on)."""
    from dsviewer.viewer.export import transaction

    out = tmp_path / "out"
    with export_transaction(out) as working:
        (working / "a.txt").write_text("old")
    monkeypatch.setattr(transaction, "_exchange", lambda a, b: False)
    rename = Path.rename

    def interrupted_rename(self, target):
        if Path(target) == out and not self.name.endswith(".old"):
            raise KeyboardInterrupt  # the new set was about to go in; the old one is aside
        return rename(self, target)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "rename", interrupted_rename)
        with pytest.raises(KeyboardInterrupt), export_transaction(out) as working:
            (working / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    with export_transaction(out) as working:  # and the two-rename swap itself works
        (working / "b.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unwritable_out_fails_before_model_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    started = time.monotonic()
    result = run_cli("export", "--demo", "--out", str(blocker / "sub"), "--device", "cpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "Cannot write an export" in result.stderr or "not a folder" in result.stderr
    assert time.monotonic() - started < 60  # no model was run


def test_scene_switch_notes_and_loaded_scene(server):
    """Notes of a scene (from the loader) show in the Scene folder, escaped."""
    from dsviewer.dataset.types import SceneNote
    from dsviewer.viewer.gui.app import ViewerApp

    loaded = make_loaded(2, 16, 16)
    loaded.notes = [SceneNote("context_equals_target", "frame <b>3</b> is context and target")]
    app = ViewerApp(server, scene_specs=["plane"])
    app.show(loaded)
    assert (
        "<b>" not in app.scene_panel.notes.content
        and "&#60;b&#62;3" in app.scene_panel.notes.content
    )
    app.close()


def test_an_export_whose_every_scene_is_bad_input_exits_2():
    result = run_cli("export", "--demo", "--scene", "synthetic_7_0000", "--context", "2", "2",
                     "--out", "/tmp/dsviewer-never-written", "--device", "cpu")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = " ".join(result.stderr.split())
    assert "repeat a frame" in message and "1 of 1 scenes failed" in message
    assert "--context/--target selects" in message and "evaluation index" not in message
    assert not Path("/tmp/dsviewer-never-written").exists()

"""The ``dsviewer`` command line: help, bad input (as a subprocess), port choice."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dsviewer.viewer import cli

REPO_ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "dsviewer.viewer.cli", *args], cwd=REPO_ROOT, env=env,
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def assert_clean_error(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr[result.stderr.index("dsviewer: error: ") :]  # after any progress
    assert message.count("\n") <= 1  # one paragraph, last in the output
    for phrase in phrases:
        assert phrase in message, result.stderr


HEAVY_MODULES = "('torch', 'viser', 'open3d', 'dsviewer.model')"


@pytest.mark.parametrize(
    "command, options, parse_call",
    [
        ([], ("--ckpt", "--scene", "--data-root", "--index", "--context", "--target", "--device",
              "--host", "--port", "--config", "--demo", "dsviewer export"),
         "from dsviewer.viewer.cli import parse; parse(['--ckpt', 'x', '--scene', 'y'])"),
        (["export"], ("--ckpt", "--scene", "--out", "--overwrite", "--all-from-index"),
         ("from dsviewer.viewer.export_cli import parse_args; "
          "parse_args(['--ckpt', 'x', '--scene', 'y', '--out', 'z'])")),
    ],
)  # fmt: skip
def test_help_lists_options_without_heavy_imports(command, options, parse_call):
    result = run_cli(*command, "--help")
    assert result.returncode == 0
    for option in options:
        assert option in result.stdout, option
    probe = (
        f"import sys; {parse_call}; print(sorted(m for m in {HEAVY_MODULES} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60, check=False)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stderr


def test_options_parse_repeatable_roots_and_views():
    options = cli.parse(["--ckpt", "m.pth", "--scene", "k", "--data-root", "a", "--data-root", "b",
                         "--context", "0", "5", "--target", "2", "3",
                         "--device", "cpu"])  # fmt: skip
    assert options.data_root == [Path("a"), Path("b")]
    assert options.context == [0, 5] and options.target == [2, 3]
    assert options.host == "127.0.0.1" and options.port is None


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    result = run_cli("--ckpt", str(tmp_path / "nope.pth"), "--scene", "synthetic:0")
    assert_clean_error(result, "nope.pth does not exist")


def test_missing_scene_option_is_a_clear_error(tmp_path):
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"")
    assert_clean_error(run_cli("--ckpt", str(ckpt)), "--scene is required")


def test_scene_without_checkpoint_is_not_taken_for_the_demo():
    with pytest.raises(ValueError, match="--ckpt is required"):
        cli.check_inputs(cli.parse(["--scene", "synthetic:0"]))


def test_demo_without_assets_is_a_clear_error(monkeypatch, tmp_path):
    from dsviewer.viewer import assets

    monkeypatch.setattr(assets, "DEMO_DIR", tmp_path / "demo")
    with pytest.raises(FileNotFoundError, match="demo file .* is missing"):
        cli.check_inputs(cli.parse(["--demo"]))


@pytest.mark.parametrize("argv", [[], ["--port", "9123"]])
def test_bare_dsviewer_resolves_to_the_demo(monkeypatch, argv):
    """No model and no scene asked for: the bundled model on the first demo scene, with the
    other demo scenes offered in the scene switcher."""
    from dsviewer.viewer.assets import demo_checkpoint, demo_data_root, demo_scene_keys

    served = []
    monkeypatch.setattr(cli, "serve", lambda options: served.append(options) or 0)
    assert cli.main(argv) == 0
    (options,) = served
    options = cli.check_inputs(options)
    assert options.demo is True
    keys = demo_scene_keys()
    assert len(keys) >= 2
    assert options.ckpt == [demo_checkpoint()] and options.ckpt[0].is_file()
    assert options.data_root == [demo_data_root()]
    assert options.scene == keys and cli.scene_specs(options) == keys  # the first is shown
    named = cli.check_inputs(cli.parse(["--demo", "--scene", keys[1]]))
    assert cli.scene_specs(named) == [keys[1], keys[0], *keys[2:]]  # the others offered


@pytest.mark.slow
def test_bare_dsviewer_serves_the_demo_scene():
    """``python -m dsviewer.viewer.cli`` with no arguments, as a user would start it: the demo
    model runs
    and the page is served at the printed URL (the process is stopped afterwards)."""
    import re
    import threading
    import time
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "dsviewer.viewer.cli"], cwd=REPO_ROOT, env=env, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    lines: list[str] = []  # stderr, read by a thread so that no line waits in a buffer

    def read_stderr() -> None:
        for line in process.stderr:
            lines.append(line)  # noqa: PERF402 -- each line must show up as soon as it is read

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and process.poll() is None:
            if any("Scene ready in" in line for line in list(lines)):
                break
            time.sleep(0.2)
        if process.poll() is not None:  # it stopped: read what it said last
            reader.join(timeout=5)
        output = "".join(list(lines))
        assert "Scene ready in" in output, output
        assert "dsviewer: error" not in output and "Traceback" not in output
        url = re.search(r"Open (http://127\.0\.0\.1:\d+) in a browser", output)
        assert url is not None, output
        with urllib.request.urlopen(url.group(1), timeout=10) as response:
            assert response.status == 200 and b"<html" in response.read().lower()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_explicit_port_in_use_is_a_clear_error(tmp_path):
    ckpt = tmp_path / "m.pth"
    ckpt.write_bytes(b"")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("--ckpt", str(ckpt), "--scene", "synthetic:0", "--port", str(port))
    assert_clean_error(result, f"port {port} is already in use")


def test_default_port_moves_to_the_next_free_one(monkeypatch):
    from dsviewer.viewer import network

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setattr(network, "DEFAULT_PORT", port)
        chosen = network.choose_port("127.0.0.1", None)
    assert chosen > port and chosen - port < network.PORT_SEARCH


def test_remote_hint_mentions_an_ssh_tunnel(monkeypatch):
    monkeypatch.setenv("SSH_CONNECTION", "10.0.0.2 5555 10.0.0.1 22")
    hint = cli.access_hint("127.0.0.1", 8081)
    assert "http://127.0.0.1:8081" in hint and "ssh -N -L 8081:127.0.0.1:8081" in hint


@pytest.mark.slow
def test_unknown_scene_and_bad_checkpoint_are_clear_errors(tmp_path, capsys):
    from viewer_scenes import tiny_checkpoint

    try:
        ckpt = tiny_checkpoint()
    except Exception as error:  # noqa: BLE001 -- the model code may still be in progress
        pytest.skip(f"cannot build a tiny checkpoint yet: {error}")
    result = run_cli("--ckpt", str(ckpt), "--scene", "no-such-scene-key")
    assert_clean_error(result, "no-such-scene-key")
    # In-process (torch is loaded already): a file that is not a checkpoint.
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    assert cli.main(["--ckpt", str(junk), "--scene", "synthetic:0"]) == 2
    err = capsys.readouterr().err
    assert "dsviewer: error: " in err and "junk.pth" in err and "Traceback" not in err
    import torch

    if not torch.cuda.is_available():  # asking for a GPU that is not there
        assert cli.main(["--ckpt", str(ckpt), "--scene", "synthetic:0", "--device", "cuda"]) == 2
        assert "sees no CUDA device" in capsys.readouterr().err


def test_export_subcommand_is_dispatched(monkeypatch):
    import types

    calls = []
    fake = types.ModuleType("dsviewer.viewer.export_cli")
    fake.main = lambda argv: calls.append(list(argv)) or 0
    monkeypatch.setitem(sys.modules, "dsviewer.viewer.export_cli", fake)
    assert cli.main(["export", "--ckpt", "m.pth", "--out", "d"]) == 0
    assert calls == [["--ckpt", "m.pth", "--out", "d"]]


def test_export_folders_of_specs_that_sanitize_alike_do_not_collide():
    from dsviewer.viewer.export_cli import scene_folders

    folders = scene_folders(Path("out"), ["a/b", "a_b", "c"])
    assert folders == {"a/b": Path("out/a_b"), "a_b": Path("out/a_b_2"), "c": Path("out/c")}
    assert scene_folders(Path("out"), ["one"]) == {"one": Path("out")}


def test_the_progress_clock_is_the_printed_total(monkeypatch):
    """Rich freezes a bar's clock when it first reaches 100 %: stages that report their own
    completion (the model loaded) must not stop it while the scene is still being shown."""
    import io
    import re
    import time

    from rich.console import Console

    from dsviewer.viewer import cli
    from dsviewer.viewer.gui.app import ViewerApp

    show_runs = ViewerApp.show_runs

    def slow_show_runs(self, *args, **kwargs):  # a slow browser upload, after every stage
        time.sleep(2.5)
        return show_runs(self, *args, **kwargs)

    monkeypatch.setattr(ViewerApp, "show_runs", slow_show_runs)
    log = io.StringIO()
    server, app = cli.start(cli.parse(["--demo", "--port", "0", "--device", "cpu"]),
                            console=Console(file=log, width=200))  # fmt: skip
    app.close()
    server.stop()
    output = log.getvalue()
    hours, minutes, seconds = re.findall(r"Scene ready\s.*?(\d+):(\d\d):(\d\d)", output)[-1]
    total = float(re.search(r"Scene ready in ([\d.]+) s", output).group(1))
    assert total > 2.5
    assert abs(3600 * int(hours) + 60 * int(minutes) + int(seconds) - total) <= 1.0, output

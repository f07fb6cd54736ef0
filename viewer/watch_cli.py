"""``dsviewer watch DIR --scene KEY [--scene KEY ...]``: a training's checkpoints, live.

Polls DIR in a background thread (:mod:`dsviewer.viewer.watch.engine`); each new complete
checkpoint becomes a training step, run on the scenes (the shown one first, the others within
the time budget); the viewer gets a Timeline (a slider over the steps, play/pause, compare with
a step) and Curves (every geometry metric over the steps) beside its usual folders. Only the
standard library, tyro and the options are imported at module level (``--help`` is instant).
"""

from __future__ import annotations

import sys
import time

from dsviewer.viewer.network import DEFAULT_PORT, access_hint, choose_port
from dsviewer.viewer.options import WatchOptions

DESCRIPTION = """\
Follow a training: every checkpoint written into DIR (Lightning's checkpoints/epoch=E-step=S.ckpt
or plain .pth files) becomes a step of the viewer's timeline, run on the given scenes, with
curves of the geometry metrics over the steps. A running training or a finished one.

  dsviewer watch runs/exp1 --scene synthetic_7_0000 --data-root data/synthetic
  dsviewer watch lightning_logs/version_3 --scene <key> --data-root datasets/re10k --scene <key2>
"""


def parse(argv: list[str]) -> WatchOptions:
    import tyro

    return tyro.cli(WatchOptions, args=argv, description=DESCRIPTION, prog="dsviewer watch")


def start(options: WatchOptions, console=None, wait_seconds: float | None = None):
    """Check the options, start the watch, wait for the first step, start the viewer.

    Returns ``(server, app, watch)`` (``watch``: the :class:`WatchViewer`; its ``engine`` runs
    on); ``wait_seconds``: give up waiting for the first checkpoint after this long (None:
    wait until Ctrl-C).
    """
    from rich.console import Console

    from dsviewer.viewer.escape import escape_markdown, escape_rich

    console = console or Console(stderr=True)
    options.check()
    port = choose_port(options.host, options.port)
    if options.port is None and port != DEFAULT_PORT:
        console.print(f"Port {DEFAULT_PORT} is taken; using port {port}.")

    from dsviewer.viewer.watch.checkpoints import CheckpointFolder
    from dsviewer.viewer.watch.engine import WatchBudget, WatchEngine

    budget = WatchBudget(memory_bytes=int(options.memory_gb * (1 << 30)),
                         step_seconds=options.step_seconds,
                         poll_seconds=options.poll_seconds,
                         max_target_views=options.max_target_views)  # fmt: skip
    engine = WatchEngine(CheckpointFolder(options.folder), options.scene,
                         options.run_spec(options.folder), options.session_settings(),
                         budget)  # fmt: skip
    engine.listeners.append(NotePrinter(engine, console))
    engine.start()
    console.print(escape_rich(f"Watching {options.folder} for checkpoints "
                              f"(every {options.poll_seconds:g} s). Ctrl-C quits."))  # fmt: skip
    first = _first_step(engine, console, wait_seconds)
    console.print(f"Step {first} is ready; starting the viewer.")

    import viser

    from dsviewer.viewer.gui.app import ViewerApp
    from dsviewer.viewer.network import is_loopback, shared_spec_check
    from dsviewer.viewer.watch.live import WatchViewer
    from dsviewer.viewer.watch.step_runs import StepRunLoader

    server = viser.ViserServer(host=options.host, port=port, verbose=False)
    port = server.get_port()
    loader = StepRunLoader(engine)
    app = ViewerApp(
        server, loader=loader, scene_specs=engine.scenes, point_budget=options.point_budget,
        gaussian_budget=options.gaussian_budget,
        model_info=f"**Watching** {escape_markdown(str(options.folder))}",
        spec_check=None if is_loopback(options.host)
        else shared_spec_check(engine.scenes, options.data_root),
    )  # fmt: skip
    watch = WatchViewer(app, engine, loader, str(options.folder))
    watch.refresh()  # shows the newest step
    console.print(escape_rich(access_hint(options.host, port)))
    return server, app, watch


class NotePrinter:
    """Prints the engine's notes on the console once each (a listener of the engine)."""

    def __init__(self, engine, console) -> None:
        self.engine, self.console, self.printed = engine, console, 0

    def __call__(self) -> None:
        from dsviewer.viewer.escape import escape_rich

        notes = list(self.engine.notes)
        for note in notes[self.printed:]:
            self.console.print(escape_rich(f"Note: {note}"))
        self.printed = len(notes)


def _first_step(engine, console, wait_seconds: float | None) -> int:
    """Wait until the shown scene has run at one step (notes are printed meanwhile)."""
    from dsviewer.errors import InputError

    deadline = None if wait_seconds is None else time.monotonic() + wait_seconds
    while True:
        steps = engine.steps(engine.shown_scene)
        if steps:
            return steps[0].step
        if deadline is not None and time.monotonic() > deadline:
            engine.close()
            raise InputError(f"No checkpoint could be run within {wait_seconds:g} s in "
                             f"{engine.folder.root}.")  # fmt: skip
        time.sleep(0.2)


def serve(options: WatchOptions) -> int:
    """:func:`start`, then serve until Ctrl-C (or SIGTERM)."""
    from dsviewer.viewer.errors import Terminated

    server, app, watch = start(options)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, Terminated):
        watch.close()
        app.close()
        server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    from dsviewer.viewer.errors import run_entry_point

    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse(argv)
    return run_entry_point("dsviewer watch", lambda: serve(options))

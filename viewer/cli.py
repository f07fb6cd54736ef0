"""``dsviewer``: open a DepthSplat prediction in a live Viser scene; ``dsviewer export ...``.

Only the standard library, tyro and the options dataclasses are imported at module level, so
``dsviewer --help`` answers at once; torch, viser and the model load after parsing. Every entry
point runs behind :func:`dsviewer.viewer.errors.run_entry_point` (one paragraph for bad input,
never a
traceback).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from dsviewer.viewer.network import DEFAULT_PORT, access_hint, choose_port
from dsviewer.viewer.options import ViewerOptions

DESCRIPTION = """\
Open DepthSplat's geometry in the browser: the coarse multi-view-stereo depth, the monocular
residual, the final depth and the predicted Gaussians, unprojected into the context cameras.

  dsviewer --ckpt depthsplat-gs-base-re10k-256x256-view2-ca7b6795.pth --scene <key> \\
           --data-root datasets/re10k --index assets/evaluation_index_re10k.json
  dsviewer --ckpt model.pth --scene synthetic:0
  dsviewer --demo
  dsviewer export --help      (PLY / 3DGS PLY / HTML / PNG / JSON exports of the same layers)
  dsviewer eval --help        (a whole test set: scenes.csv, summary.json, report.html)
  dsviewer check --help       (a capture against a checkpoint: what differs, what flag to try)
  dsviewer watch DIR --scene KEY   (a training's checkpoints as they appear: timeline, curves)
  dsviewer patch-depthsplat PATH   (let your DepthSplat checkout run here: --depthsplat-repo)
"""
SUBCOMMANDS = {
    "export": "dsviewer.viewer.export_cli",
    "eval": "dsviewer.viewer.eval_cli",
    "check": "dsviewer.viewer.check_cli",
    "patch-depthsplat": "dsviewer.viewer.patch_cli",
    "watch": "dsviewer.viewer.watch_cli",
}


def parse(argv: list[str]) -> ViewerOptions:
    import tyro

    return tyro.cli(ViewerOptions, args=argv, description=DESCRIPTION, prog="dsviewer")


def check_inputs(options: ViewerOptions) -> ViewerOptions:
    """Cheap checks before anything heavy is imported."""
    if not options.ckpt and not options.scene:  # nothing asked for: show the demo
        options.demo = True
    if options.demo:
        options.use_demo()
    options.check()
    options.check_serving()
    return options


def scene_specs(options: ViewerOptions) -> list[str]:
    """The scenes of the switcher: every --scene (the first is shown), then every --scenes."""
    return list(dict.fromkeys([*options.scene, *options.scenes]))


def model_info(options: ViewerOptions) -> str:
    """The Scene folder's first line: which model this is (the demo says it is a toy)."""
    from dsviewer.viewer.assets import demo_description, is_demo_checkpoint
    from dsviewer.viewer.escape import escape_markdown

    if len(options.ckpt) == 1 and is_demo_checkpoint(Path(options.ckpt[0])):
        return demo_description()
    names = ", ".join(escape_markdown(Path(c).name) for c in options.ckpt)
    return f"**Model{'s' if len(options.ckpt) > 1 else ''}:** {names}"


def start(options: ViewerOptions, console=None):
    """Check inputs, load the model and scene, start the server and show the scene.

    Returns ``(server, app)`` with the first scene shown; the caller decides how long to serve.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from dsviewer.viewer.escape import escape_rich

    console = console or Console(stderr=True)
    options = check_inputs(options)
    port = choose_port(options.host, options.port)
    if options.port is None and port != DEFAULT_PORT:
        console.print(f"Port {DEFAULT_PORT} is taken; using port {port}.")
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("Importing torch and the model", total=100)
        start_time = time.perf_counter()  # the clock the bar shows and the total printed below

        def progress(stage: str, fraction: float) -> None:
            # Rich stops the bar's clock when it first reaches 100 %; the stages' own "done" (the
            # model loaded, the scene computed) must not stop it before the scene is shown.
            bar.update(task, description=escape_rich(stage), completed=min(99.0, 100 * fraction))

        from dsviewer.viewer.session.loaded import print_notes
        from dsviewer.viewer.session.runs import RunLoader

        run_loader = RunLoader(options.run_specs(), options.session_settings(), progress)

        import viser

        from dsviewer.viewer.gui.app import ViewerApp
        from dsviewer.viewer.network import is_loopback, shared_spec_check

        server = viser.ViserServer(host=options.host, port=port, verbose=False)
        port = server.get_port()  # --port 0: the port the OS chose
        specs = scene_specs(options)
        app = ViewerApp(
            server, loader=run_loader, scene_specs=specs, point_budget=options.point_budget,
            gaussian_budget=options.gaussian_budget, model_info=model_info(options),
            spec_check=None
            if is_loopback(options.host)
            else shared_spec_check(specs, options.data_root),
        )  # fmt: skip
        console.print(escape_rich(access_hint(options.host, port)))

        def both(stage: str, fraction: float) -> None:
            progress(stage, fraction)
            app.scene_panel.report_progress(stage, fraction)

        runs = run_loader.load_all(specs[0], run_loader.default_specs(), both)
        progress("Sending the scene to the browser", 0.95)
        upload_start = time.perf_counter()
        app.show_runs(runs, scene_spec=specs[0])
        loaded = runs[0].loaded
        loaded.seconds["upload"] = time.perf_counter() - upload_start
        loaded.seconds = {"load_model": sum(s.load_seconds for s in run_loader.sessions.values()),
                          **loaded.seconds}  # fmt: skip
        bar.update(task, description="Scene ready", completed=100)
        total = time.perf_counter() - start_time
    print_notes(console, [note for run in runs for note in run.loaded.notes])
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in loaded.seconds.items())
    console.print(f"Scene ready in {total:.1f} s ({stages}). Ctrl-C quits.")
    return server, app


def serve(options: ViewerOptions) -> int:
    """:func:`start`, then serve until Ctrl-C (or SIGTERM)."""
    from dsviewer.viewer.errors import Terminated

    server, app = start(options)
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, Terminated):
        app.close()
        server.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    from dsviewer.viewer.errors import run_entry_point

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in SUBCOMMANDS:
        import importlib

        module = importlib.import_module(SUBCOMMANDS[argv[0]])
        return int(module.main(argv[1:]) or 0)
    options = parse(argv)
    return run_entry_point("dsviewer", lambda: serve(options))


def entrypoint() -> None:
    """Console-script entry point (``dsviewer``)."""
    from dsviewer.viewer.errors import exit_process

    exit_process(main())


if __name__ == "__main__":
    entrypoint()

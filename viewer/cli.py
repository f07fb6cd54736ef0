"""``dsviewer``: open a DepthSplat prediction in a live Viser scene; ``dsviewer export ...``.

Only the standard library, tyro and the options dataclasses are imported at module level, so
``dsviewer --help`` answers at once; torch, viser and the model load after parsing.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from viewer.options import ViewerOptions

DEFAULT_PORT = 8080
PORT_SEARCH = 50  # how many ports after the default are tried

DESCRIPTION = """\
Open DepthSplat's geometry in the browser: the coarse multi-view-stereo depth, the monocular
residual, the final depth and the predicted Gaussians, unprojected into the context cameras.

  dsviewer --ckpt depthsplat-gs-base-re10k-256x256-view2-ca7b6795.pth --scene <key> \\
           --data-root datasets/re10k --index assets/evaluation_index_re10k.json
  dsviewer --ckpt model.pth --scene synthetic:0
  dsviewer --demo
  dsviewer export --help      (PLY / 3DGS PLY / HTML / PNG / JSON exports of the same layers)
"""


class CheckpointMissingError(FileNotFoundError):
    def __init__(self, path: Path) -> None:
        super().__init__(
            f"The checkpoint {path} does not exist. Pass the path of a released DepthSplat "
            "checkpoint (e.g. --ckpt pretrained/depthsplat-gs-base-re10k-256x256-view2-"
            "ca7b6795.pth), or --demo for the bundled one."
        )


class PortInUseError(OSError):
    def __init__(self, host: str, port: int, searched: int) -> None:
        what = f"port {port} is" if searched <= 1 else f"ports {port}-{port + searched - 1} are"
        super().__init__(
            f"Cannot serve on {host}: {what} already in use. Stop the other program, or pass "
            "another --port (leave --port out to use the first free port from 8080)."
        )


def port_is_free(host: str, port: int) -> bool:
    """Whether a TCP server can bind ``host:port`` now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As viser's asyncio server does, so that a port in TIME_WAIT after quitting is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(host: str, requested: int | None) -> int:
    """``requested`` if free (else an error); with none, the first free port from 8080."""
    if requested is not None:
        if not port_is_free(host, requested):
            raise PortInUseError(host, requested, 1)
        return requested
    for port in range(DEFAULT_PORT, DEFAULT_PORT + PORT_SEARCH):
        if port_is_free(host, port):
            return port
    raise PortInUseError(host, DEFAULT_PORT, PORT_SEARCH)


def access_hint(host: str, port: int) -> str:
    """The URL to open, and an ``ssh -L`` line when this runs on a remote machine."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [f"Open http://{shown}:{port} in a browser."]
    if host in ("0.0.0.0", "::"):
        lines.append(f"Serving on all interfaces: others can reach http://{socket.gethostname()}:{port}.")
    elif os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_CLIENT"):
        user = os.environ.get("USER", "you")
        lines.append(
            "This is a remote machine: on your own computer run\n"
            f"  ssh -N -L {port}:127.0.0.1:{port} {user}@{socket.gethostname()}\n"
            f"and open http://127.0.0.1:{port} there."
        )
    return "\n".join(lines)


def parse(argv: list[str]) -> ViewerOptions:
    import tyro

    return tyro.cli(ViewerOptions, args=argv, description=DESCRIPTION, prog="dsviewer")


def check_inputs(options: ViewerOptions) -> ViewerOptions:
    """Cheap checks before anything heavy is imported."""
    from viewer.pipeline import MissingOptionError, resolve_demo

    if options.ckpt is None and not options.scene:  # nothing asked for: show the demo
        options.demo = True
    if options.demo:
        options = resolve_demo(options)
    if options.ckpt is None:
        raise MissingOptionError("ckpt")
    if not options.scene:
        raise MissingOptionError("scene")
    if options.point_budget < 1 or options.gaussian_budget < 1:
        raise ValueError("--point-budget and --gaussian-budget must be at least 1.")
    if not Path(options.ckpt).is_file():
        raise CheckpointMissingError(Path(options.ckpt))
    for root in options.data_root:
        if not Path(root).exists():
            raise FileNotFoundError(
                f"The data root {root} does not exist. Pass the folder holding the dataset's "
                "chunks and index.json with --data-root."
            )
    return options


def start(options: ViewerOptions, console=None):
    """Check inputs, load the model and scene, start the server and show the scene.

    Returns ``(server, app)`` with the first scene shown; the caller decides how long to serve.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console(stderr=True)
    options = check_inputs(options)
    port = choose_port(options.host, options.port)
    if options.port is None and port != DEFAULT_PORT:
        console.print(f"Port {DEFAULT_PORT} is taken; using port {port}.")

    start_time = time.perf_counter()
    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("Importing torch and the model", total=100)
        from viewer.pipeline import ModelSession

        def progress(stage: str, fraction: float) -> None:
            bar.update(task, description=stage, completed=100 * fraction)

        session = ModelSession(options, progress)
        bar.update(task, description=f"Reading scene {options.scene}", completed=0)
        scene_start = time.perf_counter()
        scene = session.views()
        seconds = {"load_model": session.load_seconds,
                   "load_scene": time.perf_counter() - scene_start}  # fmt: skip

        import viser

        from viewer.app import ViewerApp
        from viewer.pipeline import run_prediction

        server = viser.ViserServer(host=options.host, port=port, verbose=False)
        specs = [str(options.scene), *[s for s in options.scenes if s != options.scene]]
        app = ViewerApp(
            server,
            loader=session.load,
            scene_specs=specs,
            point_budget=options.point_budget,
            gaussian_budget=options.gaussian_budget,
        )
        console.print(access_hint(options.host, port))

        def both(stage: str, fraction: float) -> None:
            progress(stage, fraction)
            app.report_progress(stage, fraction)

        loaded = run_prediction(scene, session.predict, both, seconds)
        bar.update(task, description="Sending the scene to the browser", completed=95)
        upload_start = time.perf_counter()
        app.show(loaded)
        loaded.seconds["upload"] = time.perf_counter() - upload_start
        bar.update(task, description="Scene ready", completed=100)
    console.print(
        f"Scene ready in {time.perf_counter() - start_time:.1f} s "
        f"({', '.join(f'{k} {v:.2f} s' for k, v in loaded.seconds.items())}). Ctrl-C quits."
    )
    return server, app


def serve(options: ViewerOptions) -> int:
    """:func:`start`, then serve until Ctrl-C."""
    server, app = start(options)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        app.close()
        server.stop()
    return 0


USER_ERRORS = (ValueError, FileNotFoundError, PermissionError, OSError)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["export"]:
        from viewer.export_cli import main as export_main

        return int(export_main(argv[1:]) or 0)
    if argv[:1] == ["eval"]:
        from viewer.eval_cli import main as eval_main

        return eval_main(argv[1:])
    options = parse(argv)
    try:
        return serve(options)
    except USER_ERRORS as error:
        print(f"dsviewer: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def entrypoint() -> None:
    """Console-script entry point (``dsviewer``)."""
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()

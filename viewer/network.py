"""Where the viewer listens: host resolution, port choice, and what to tell the user.

The default host is 127.0.0.1: nothing is reachable from other machines unless asked for. A
host beyond loopback gets a warning that anyone who can reach the port can use the viewer (viser
has no authentication), and the GUI's scene field then opens only the scenes given on the command
line, the keys under the given data roots and generated ``synthetic:<seed>`` scenes (which read
no file) (:func:`shared_spec_check`).
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence
from pathlib import Path

from dsviewer.errors import InputError, SetupError

DEFAULT_PORT = 8080
PORT_SEARCH = 50  # how many ports after the default are tried


class NetworkOptionError(InputError):
    """A --host or --port that cannot be served on."""


class PortInUseError(SetupError, OSError):
    def __init__(self, host: str, port: int, searched: int) -> None:
        what = f"port {port} is" if searched <= 1 else f"ports {port}-{port + searched - 1} are"
        super().__init__(
            f"Cannot serve on {host}: {what} already in use. Stop the other program, or pass "
            "another --port (leave --port out to use the first free port from 8080)."
        )


def check_port(port: int | None) -> None:
    if port is not None and not 0 <= port <= 65535:
        raise NetworkOptionError(
            f"--port {port} is not a TCP port: use 1-65535, 0 for any free port, or leave it out "
            "(the first free port from 8080)."
        )


def resolve_host(host: str) -> str:
    """``host`` if this machine can bind it; a clear error when the name does not resolve."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise NetworkOptionError(
            f"--host {host} cannot be resolved ({error.strerror}). Use 127.0.0.1 (this machine "
            "only), 0.0.0.0 (every interface) or an address of this machine."
        ) from None
    return host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    """``requested`` if free (else an error; 0 = any free port); else the first free from 8080."""
    check_port(requested)
    if requested is not None:
        if requested and not port_is_free(host, requested):
            raise PortInUseError(host, requested, 1)
        return requested
    for port in range(DEFAULT_PORT, DEFAULT_PORT + PORT_SEARCH):
        if port_is_free(host, port):
            return port
    raise PortInUseError(host, DEFAULT_PORT, PORT_SEARCH)


def access_hint(host: str, port: int) -> str:
    """The URL to open; for shared hosts a warning; for remote shells an ``ssh -L`` line."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    lines = [f"Open http://{shown}:{port} in a browser."]
    if not is_loopback(host):
        lines.append(
            f"Serving on {host}: anyone who can reach port {port} can use this viewer (there is "
            "no authentication). The scene field opens only the scenes given on the command "
            "line, keys under --data-root and generated synthetic:<seed> scenes."
        )
    elif os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_CLIENT"):
        user = os.environ.get("USER", "you")
        lines.append(
            "This is a remote machine: on your own computer run\n"
            f"  ssh -N -L {port}:127.0.0.1:{port} {user}@{socket.gethostname()}\n"
            f"and open http://127.0.0.1:{port} there."
        )
    return "\n".join(lines)


def shared_spec_check(allowed_specs: Sequence[str], data_roots: Sequence[Path]):
    """For a viewer served beyond loopback: clients may open the listed specs, keys under the
    data roots and synthetic scenes, never a path they typed."""

    def check(spec: str) -> str | None:
        from dsviewer.dataset.chunks import load_index

        if spec in allowed_specs or spec.startswith("synthetic:"):
            return None
        if data_roots and spec in load_index([Path(r) for r in data_roots]):
            return None
        return ("this viewer is shared on the network, so its scene field opens only the scenes "
                "given on the command line, keys under its data roots and synthetic:<seed> "
                "scenes.")  # fmt: skip

    return check

"""What the screenshot scripts share: headless Chromium as this project runs it, and a free port.

The flags are the ones ENVIRONMENT.md found to render WebGL in software on a machine without a
GPU or network (SwiftShader, no background connections)."""

from __future__ import annotations

import socket

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader", "--no-first-run", "--disable-background-networking",
]  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

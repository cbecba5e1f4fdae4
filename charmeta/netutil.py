"""Loopback ports for the servers charmeta starts (Dagster UI, the Gradio app).

Why a check before starting: ``dagster-webserver`` and Gradio report a taken port deep in their
own logs (or, for the webserver, only as a process that exits a few seconds later), so the user
would see a time-out instead of the cause. Binding the port first answers in microseconds."""

from __future__ import annotations

import errno
import socket

from charmeta.errors import PortInUseError


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free on ``host`` now (for tests and ``--port 0``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def ensure_port_free(port: int, host: str = "127.0.0.1", flag: str = "--port") -> None:
    """Raise ``PortInUseError`` naming the port and the flag to change when ``host:port`` is taken."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise PortInUseError(
                    f"port {port} on {host} is already in use: stop the program using it or pass another {flag}"
                ) from exc
            raise

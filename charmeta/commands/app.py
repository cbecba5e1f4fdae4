"""``charmeta app``: the demo app (Gradio) on 127.0.0.1, over the same core as ``charmeta run``.

The port is checked before Gradio starts so a busy port is one line on stderr
(``charmeta: error: port 7860 on 127.0.0.1 is in use ...``), not Gradio's
traceback after a scan of other ports.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket

from charmeta.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="the demo app (Gradio): image, text, batch and dataset tabs on 127.0.0.1")
    p.add_argument("--port", type=int, default=int(os.environ.get("CHARMETA_APP_PORT", "7860")))
    p.add_argument(
        "--host",
        default=os.environ.get("CHARMETA_APP_HOST", "127.0.0.1"),
        help="bind address (default 127.0.0.1; a container sets 0.0.0.0 and publishes the port)",
    )
    p.add_argument("--dataset", default=os.environ.get("CHARMETA_OUTPUT", "out/demo"), help="Dataset tab's folder")
    p.set_defaults(func=run)


def check_port(host: str, port: int) -> None:
    """Raise ``ConfigError`` when ``host:port`` cannot be bound (in use, or not a valid port)."""
    if not 0 < port < 65536:
        raise ConfigError(f"--port must be 1-65535, got {port}")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # like the server (uvicorn): a just-closed port in TIME_WAIT is free, a listening one is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"port {port} on {host} is in use: pass --port N (or stop what holds it)") from exc
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc


def run(args: argparse.Namespace) -> int:
    check_port(args.host, args.port)
    try:
        from charmeta.app.ui import launch
    except ModuleNotFoundError as exc:
        raise ConfigError(f"the app needs the 'app' extra ({exc.name} missing): pip install -e '.[app]'") from exc
    from charmeta.app.analyze import AppCore

    core = AppCore()
    _ = core.engine  # load the ontology before the first request, not during it
    print(f"charmeta app: http://{args.host}:{args.port}  (Ctrl-C stops)", flush=True)
    launch(core, port=args.port, dataset_dir=args.dataset, host=args.host, block=True)
    return 0

"""``charmeta ui``: the Dagster webserver and daemon for the charmeta code location.

Why two processes instead of ``dagster dev``: ``dagster dev`` in the background
ignores SIGINT/SIGTERM, so nothing could stop it cleanly; the webserver and the
daemon (sensors, run queue, backfills) are started as separate processes in
their own process groups and stopped by PID. The webserver binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

LOCATION_MODULE = "charmeta_dagster.definitions"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ui", help="Dagster webserver + daemon on 127.0.0.1 (assets, checks, backfills)")
    p.add_argument(
        "--source", default=None, help="dataset for the shard sensor (default: $CHARMETA_SOURCE or samples/)"
    )
    p.add_argument("--output", default=None, help="output root (default: $CHARMETA_OUTPUT or out/demo)")
    p.add_argument("--port", type=int, default=None, help="webserver port (default: $CHARMETA_UI_PORT or 3000)")
    p.add_argument(
        "--dagster-home",
        default=None,
        help="Dagster instance folder (default: $DAGSTER_HOME, else <output>/.dagster_home)",
    )
    p.set_defaults(func=ui_command)


def free_port() -> int:
    from charmeta.netutil import free_port as _free

    return _free()


def _bin(name: str) -> str:
    cand = os.path.join(os.path.dirname(sys.executable), name)
    return cand if os.path.exists(cand) else name


@dataclass
class UiProcesses:
    webserver: subprocess.Popen
    daemon: subprocess.Popen
    url: str
    home: str

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM each process group we started, SIGKILL what is left after ``timeout``."""
        for proc in (self.webserver, self.daemon):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in (self.webserver, self.daemon):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


def start_ui(
    home: str,
    output: str,
    source: str | None = None,
    port: int | None = None,
    env: dict[str, str] | None = None,
    log_dir: str | None = None,
) -> UiProcesses:
    """Start webserver + daemon on 127.0.0.1 against the instance in ``home``.

    Both load the code location with this process's settings (environment, then ``output``,
    ``source`` and ``env``), handed over as ``CHARMETA_*`` variables (``Settings.to_env``)."""
    from charmeta.netutil import ensure_port_free
    from charmeta.settings import Settings

    if port:
        ensure_port_free(port)  # before anything else: a taken port is the user's first problem
    from charmeta_dagster.instance import ensure_home, initialize_storage

    home = ensure_home(home)
    initialize_storage(home)  # before two processes race to create the same schemas
    port = port or free_port()
    penv = dict(os.environ)
    penv.update(env or {})
    overrides: dict[str, object] = {"output": os.path.realpath(output)}
    if source:
        overrides["source"] = source if "://" in source else os.path.realpath(source)
    settings = Settings.load(overrides, env=penv)
    if settings.workers <= 0:  # 2 concurrent runs x workers = cores
        settings = settings.replace(workers=max(1, settings.resolved_workers() // 2))
    penv.update(settings.to_env())
    penv["DAGSTER_HOME"] = home
    log_dir = log_dir or os.path.join(home, "logs")
    os.makedirs(log_dir, exist_ok=True)

    def spawn(args: list[str], name: str) -> subprocess.Popen:
        out = open(os.path.join(log_dir, f"{name}.log"), "ab")
        return subprocess.Popen(args, env=penv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    web = spawn([_bin("dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-m", LOCATION_MODULE], "webserver")
    daemon = spawn([_bin("dagster-daemon"), "run", "-m", LOCATION_MODULE], "daemon")
    return UiProcesses(web, daemon, f"http://127.0.0.1:{port}", home)


def wait_ready(ui: UiProcesses, timeout: float = 120.0) -> None:
    """Block until the webserver answers ``/server_info`` (raises on timeout or exit)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ui.webserver.poll() is not None:
            raise RuntimeError(f"dagster-webserver exited with {ui.webserver.returncode}; see {ui.home}/logs")
        try:
            with urllib.request.urlopen(ui.url + "/server_info", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"webserver not ready at {ui.url} after {timeout}s")


def ui_command(args: argparse.Namespace) -> int:
    from charmeta.settings import Settings
    from charmeta_dagster.defs.resources import default_output, default_source
    from charmeta_dagster.instance import resolve_home

    settings = Settings.load({"output": args.output, "source": args.source, "ui_port": args.port})
    output = default_output(settings)
    home = resolve_home(args.dagster_home, output)

    def _term(_sig: int, _frame: object) -> None:  # stop children on SIGTERM too, not only Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    ui = start_ui(home, output, source=default_source(settings), port=settings.ui_port)
    try:
        wait_ready(ui)
        print(f"charmeta ui: {ui.url}  (DAGSTER_HOME={ui.home}, logs in {ui.home}/logs; Ctrl-C stops)", flush=True)
        while ui.webserver.poll() is None and ui.daemon.poll() is None:
            time.sleep(1)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        ui.stop()

"""Real servers for the deployment tests, each on a free 127.0.0.1 port, stopped by PID.

* ``postgres_server()`` - a throw-away PostgreSQL cluster (Debian's ``postgresql``
  package: ``initdb`` + ``pg_ctl``), run as the unprivileged ``nobody`` user when the
  tests run as root (``initdb`` refuses root), password auth over TCP only.
* ``ray_head()`` - ``ray start --head`` on loopback without the dashboard.
* ``moto_s3()`` - ``moto[server]``'s S3 on loopback.

A missing binary is a skip with the reason (``.ci/run`` installs them); a server
that fails to start is an error with its log.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None, log: str = "") -> None:
    """Block until something accepts on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}: {_tail(log)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s: {_tail(log)}")


def _tail(path: str, n: int = 3000) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-n:]
    except OSError:
        return ""


def pg_bin(name: str) -> str | None:
    """``initdb`` / ``pg_ctl`` / ``postgres``: on PATH, else Debian's versioned folder."""
    found = shutil.which(name)
    if found:
        return found
    cands = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return cands[-1] if cands else None


@dataclass
class Postgres:
    host: str
    port: int
    user: str
    password: str
    db: str
    data_dir: str
    log: str
    run_as: str | None

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.db}"

    def env(self) -> dict[str, str]:
        """The variables ``docker/dagster.yaml`` reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.db,
        }

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [pg_bin("pg_ctl") or "pg_ctl", "-D", self.data_dir, "-l", self.log, *args]
        return subprocess.run(cmd, user=self.run_as, capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' -c max_connections=200"
        self._ctl("-w", "-t", "60", "-o", opts, "start")
        wait_port(self.port, 30, log=self.log)

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-w", "-t", "60", "-m", mode, "stop", check=False)

    def restart(self) -> None:
        self.stop()
        self.start()


def _make_readable_tmp(prefix: str) -> str:
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)
    return d


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """A fresh cluster with one database, on a free loopback port; removed afterwards."""
    initdb = pg_bin("initdb")
    if not initdb or not pg_bin("pg_ctl"):
        pytest.skip("PostgreSQL server binaries not installed (apt-get install postgresql; .ci/run does it)")
    run_as = "nobody" if os.geteuid() == 0 else None
    base = _make_readable_tmp("charmeta-pg-")
    data = os.path.join(base, "data")
    log = os.path.join(base, "postgres.log")
    pwfile = os.path.join(base, "pw")
    password = "pw-" + os.urandom(6).hex()
    with open(pwfile, "w", encoding="utf-8") as fh:
        fh.write(password + "\n")
    if run_as:
        shutil.chown(base, user=run_as)
        shutil.chown(pwfile, user=run_as)
    server = Postgres("127.0.0.1", free_port(), "charmeta", password, "dagster", data, log, run_as)
    try:
        subprocess.run(
            [initdb, "-D", data, "-U", server.user, "--pwfile", pwfile, "-A", "scram-sha-256", "-E", "UTF8"],
            user=run_as,
            capture_output=True,
            text=True,
            check=True,
            timeout=180,
        )
        server.start()
        import psycopg2

        with contextlib.closing(
            psycopg2.connect(host=server.host, port=server.port, user=server.user, password=password, dbname="postgres")
        ) as conn:
            conn.autocommit = True
            conn.cursor().execute(f"CREATE DATABASE {server.db}")
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class RayHead:
    address: str
    port: int
    temp_dir: str


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, object_store_mb: int = 150) -> Iterator[RayHead]:
    """``ray start --head`` on 127.0.0.1 (no dashboard), stopped with ``ray stop`` for its temp dir."""
    pytest.importorskip("ray")
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cli = [sys.executable, "-m", "ray.scripts.scripts"]
    cmd = [
        *cli,
        "start",
        "--head",
        "--port",
        str(port),
        "--node-ip-address",
        "127.0.0.1",
        "--include-dashboard=false",
        "--num-cpus",
        str(num_cpus),
        "--num-gpus",
        "0",
        "--object-store-memory",
        str(object_store_mb * 1024 * 1024),
        "--temp-dir",
        temp_dir,
        "--disable-usage-stats",
    ]
    subprocess.run(cmd, env=env, check=True, capture_output=True, text=True, timeout=180)
    try:
        yield RayHead(f"127.0.0.1:{port}", port, temp_dir)
    finally:
        subprocess.run([*cli, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(temp_dir, ignore_errors=True)


@dataclass
class S3Server:
    endpoint: str
    proc: subprocess.Popen

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
        }


@contextlib.contextmanager
def moto_s3() -> Iterator[S3Server]:
    """``moto[server]`` on a free loopback port (S3 API; in memory)."""
    pytest.importorskip("moto.server")
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False).name
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_port(port, 60, proc, log)
        yield S3Server(f"http://127.0.0.1:{port}", proc)
    finally:
        stop_process(proc)
        with contextlib.suppress(OSError):
            os.remove(log)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
    """Signal the process group ``proc`` leads (started with ``start_new_session``), then kill it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
    return proc.returncode


class DaemonDeployment:
    """A deployment as compose runs it, on one host: ``docker/dagster.yaml`` (Postgres) in a fresh
    ``DAGSTER_HOME``, ``dagster-daemon run`` on the charmeta code location, partitions registered
    from a source, backfills submitted with ``dagster job backfill`` (the daemon launches the runs).

    ``overrides`` patch the instance YAML (e.g. 2 concurrent runs, fast run monitoring)."""

    def __init__(
        self, pg: Postgres, home: str, source: str, output: str, shard_rows: int, overrides: dict | None = None
    ) -> None:
        import yaml

        self.pg, self.home, self.source, self.output, self.shard_rows = pg, home, source, output, shard_rows
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(repo, "docker", "dagster.yaml"), encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh)
        _deep_update(cfg, overrides or {})
        os.makedirs(home, exist_ok=True)
        with open(os.path.join(home, "dagster.yaml"), "w", encoding="utf-8") as fh:
            yaml.safe_dump(cfg, fh)
        self.env = {
            **os.environ,
            **pg.env(),
            "DAGSTER_HOME": home,
            "CHARMETA_SOURCE": source,
            "CHARMETA_OUTPUT": output,
            "CHARMETA_SHARD_ROWS": str(shard_rows),
            "CHARMETA_SENSORS": "off",
            "CHARMETA_WORKERS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.daemon: subprocess.Popen | None = None
        self.daemon_log = os.path.join(home, "daemon.log")
        self.keys: list[str] = []

    def instance(self):  # noqa: ANN201 - dagster type, imported lazily
        from dagster import DagsterInstance

        old = os.environ.get("DAGSTER_HOME")
        saved = {k: os.environ.get(k) for k in self.pg.env()}
        os.environ.update(self.pg.env())
        try:
            return DagsterInstance.from_config(self.home)
        finally:
            if old is not None:
                os.environ["DAGSTER_HOME"] = old
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)

    def register(self) -> list[str]:
        """Discover the source's shards, write the registry, add the partitions (what the sensor does)."""
        from charmeta.sources import Source, write_registry

        specs = Source(self.source, shard_rows=self.shard_rows).discover()
        write_registry(self.output, specs)
        self.keys = [s.key for s in specs]
        with self.instance() as inst:
            inst.add_dynamic_partitions("shards", self.keys)
        return self.keys

    def start_daemon(self) -> subprocess.Popen:
        out = open(self.daemon_log, "ab")  # noqa: SIM115 - the daemon owns it until it exits
        self.daemon = subprocess.Popen(
            [_bin("dagster-daemon"), "run", "-m", "charmeta_dagster.definitions"],
            env=self.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self.daemon

    def backfill(self, keys: list[str]) -> str:
        r = subprocess.run(
            [_bin("dagster"), "job", "backfill", "-m", "charmeta_dagster.definitions", "-j", "shards_job"]
            + ["--partitions", ",".join(keys), "--noprompt"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        return r.stdout

    def wait_runs(self, n: int, timeout: float = 400, settle: bool = True) -> list:
        """Block until at least ``n`` runs exist and all are finished; the run records."""
        from dagster import DagsterRunStatus

        done = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        deadline = time.monotonic() + timeout
        with self.instance() as inst:
            while time.monotonic() < deadline:
                records = inst.get_run_records()
                if len(records) >= n and all(r.dagster_run.status in done for r in records):
                    return records
                if self.daemon is not None and self.daemon.poll() is not None and settle:
                    raise RuntimeError(f"daemon exited ({self.daemon.returncode}): {_tail(self.daemon_log)}")
                time.sleep(2)
            states = [(r.dagster_run.run_id[:8], r.dagster_run.status.value) for r in inst.get_run_records()]
        raise TimeoutError(f"runs not finished after {timeout}s: {states}; daemon: {_tail(self.daemon_log)}")

    def wait_status(self, status: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        with self.instance() as inst:
            while time.monotonic() < deadline:
                if any(r.status.value == status for r in inst.get_runs()):
                    return
                time.sleep(1)
        raise TimeoutError(f"no run reached {status} in {timeout}s: {_tail(self.daemon_log)}")

    def stop(self) -> None:
        if self.daemon is not None:
            stop_process(self.daemon)


def _deep_update(dst: dict, src: dict) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = v


def _bin(name: str) -> str:
    cand = os.path.join(os.path.dirname(sys.executable), name)
    return cand if os.path.exists(cand) else (shutil.which(name) or name)


def max_overlap(records: list) -> int:
    """Most runs in progress at one moment, from the run records' start/end timestamps."""
    edges = []
    for r in records:
        if r.start_time and r.end_time:
            edges += [(r.start_time, 1), (r.end_time, -1)]
    cur = best = 0
    for _, d in sorted(edges, key=lambda e: (e[0], e[1])):
        cur += d
        best = max(best, cur)
    return best


def dir_digest(root: str, sub: str, suffix: str = ".parquet") -> dict[str, str]:
    """``{file name: sha256}`` of the files in ``root/sub`` (byte-identity of outputs)."""
    import hashlib

    out = {}
    folder = os.path.join(root, sub)
    for name in sorted(os.listdir(folder)):
        if name.endswith(suffix):
            with open(os.path.join(folder, name), "rb") as fh:
                out[name] = hashlib.sha256(fh.read()).hexdigest()
    return out


def tool(name: str) -> str | None:
    """A console script of this environment (next to ``sys.executable``: ``make test`` does not put
    ``.venv/bin`` on PATH), else from PATH."""
    cand = os.path.join(os.path.dirname(sys.executable), name)
    return cand if os.path.exists(cand) else shutil.which(name)

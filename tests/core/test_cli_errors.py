"""Each failure a user meets ends in one line that says what to do (issue #19), not a traceback.

Every case runs the real ``charmeta`` command in a subprocess against a real cause: a closed
loopback port for an unreachable hub, a loopback server answering 404 for a missing dataset,
an object store URI without credentials, a path the kernel refuses, ``/dev/full`` for a full
disk, a bound socket for a port in use, and an import blocker for a missing package."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from charmeta.errors import DiskFullError, MissingDependencyError, explain, extra_for_module

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "charmeta.cli"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], env: dict[str, str] | None = None, timeout: int = 180) -> subprocess.CompletedProcess:
    e = {**os.environ, "CHARMETA_LOG_DIR": os.environ.get("PYTEST_TMP_LOGS", "/tmp/charmeta-test-logs")}
    e.update(env or {})
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=timeout, env=e, cwd=REPO)


def _one_line_error(res: subprocess.CompletedProcess) -> str:
    """The error line, after asserting there is exactly one and no traceback."""
    assert res.returncode != 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("charmeta: ")]
    assert len(lines) == 1, res.stderr[-3000:]
    return lines[0]


def test_unreachable_hub_is_one_line(tmp_path: Path) -> None:
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HUB_OFFLINE": "0"}
    res = _run(["run", "--source", "hf://datasets/cagliostrolab/860k-ordered-tags", "--output", str(tmp_path)], env)
    line = _one_line_error(res)
    assert "cannot reach" in line and "hf://datasets/cagliostrolab/860k-ordered-tags" in line, line
    assert res.returncode == 2


class _NotFound(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = json.dumps({"error": "Repository not found"}).encode()
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *_a: object) -> None:
        pass


def test_no_such_dataset_is_one_line(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_HUB_OFFLINE": "0"}
        res = _run(["run", "--source", "hf://datasets/nobody/no-such-dataset", "--output", str(tmp_path)], env)
    finally:
        server.shutdown()
    line = _one_line_error(res)
    assert ("no such dataset" in line or "does not exist" in line) and "nobody/no-such-dataset" in line, line


def test_no_such_local_path_is_one_line(tmp_path: Path) -> None:
    res = _run(["run", "--source", str(tmp_path / "missing"), "--output", str(tmp_path / "out")])
    assert "does not exist" in _one_line_error(res)


def test_missing_credentials_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("s3fs", reason="s3fs is part of the cluster extra")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        {
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}",
        }
    )
    res = subprocess.run(
        CLI + ["run", "--source", "s3://charmeta-test-bucket/shards/", "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=REPO,
    )
    line = _one_line_error(res)
    assert "no credentials" in line and "AWS_ACCESS_KEY_ID" in line, line


def test_permission_denied_is_one_line(tmp_path: Path) -> None:
    # /sys refuses new folders even to root (EPERM), so this is a real refusal by the kernel
    res = _run(["run", "--source", str(REPO / "samples"), "--output", "/sys/charmeta-test-output"])
    line = _one_line_error(res)
    assert "permission denied" in line and "/sys/charmeta-test-output" in line, line


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 600 KB file system (tmpfs), so writes fail with the kernel's own ENOSPC."""
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {res.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_names_path_and_free_space(small_disk: Path) -> None:
    res = _run(["run", "--source", str(REPO / "samples"), "--output", str(small_disk / "out")])
    line = _one_line_error(res)
    assert "disk full" in line and str(small_disk / "out") in line and "free" in line, line
    assert res.returncode == DiskFullError.exit_code
    # the instance elsewhere: the stage files and the run's log file hit the full disk (a log file
    # that cannot be written must not print logging's traceback per record)
    res = _run(
        ["run", "--source", str(REPO / "samples"), "--output", str(small_disk / "out2")],
        env={"DAGSTER_HOME": str(small_disk.parent / "home-elsewhere"), "CHARMETA_RETRY_MAX": "0"},
    )
    line = _one_line_error(res)
    assert "disk full" in line and "Logging error" not in res.stderr, res.stderr[-2000:]
    # a plain file write on the same disk: the message names the file being written
    big = small_disk.parent / "in.jsonl"
    big.write_text("\n".join(json.dumps({"id": i, "text": "1girl, solo, long hair, blue eyes"}) for i in range(20000)))
    res = _run(["extract", "--input", str(big), "--output", str(small_disk / "records.jsonl")])
    line = _one_line_error(res)
    assert f"disk full writing {small_disk}" in line and "free" in line, line


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = _run(["ui", "--port", str(port), "--output", str(tmp_path)])
    line = _one_line_error(res)
    assert f"port {port}" in line and "already in use" in line, line


def test_missing_optional_dependency_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'dagster' or name.startswith('dagster.'):\n"
        "            raise ModuleNotFoundError(f\"No module named '{name}'\", name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from charmeta.cli import main\n"
        f"sys.exit(main(['run', '--source', {str(REPO / 'samples')!r}, '--output', {str(tmp_path)!r}]))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    line = _one_line_error(res)
    assert "'dagster'" in line and "charmeta[platform]" in line, line


def test_explain_reads_wrapped_causes() -> None:
    """The real cause is found under the wrappers (SQLAlchemy around sqlite3, a step error around it)."""
    import sqlite3

    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("step failed") from inner
    except RuntimeError as outer:
        got = explain(outer, path="/tmp")
    assert isinstance(got, DiskFullError) and "/tmp" in str(got)
    assert isinstance(explain(ModuleNotFoundError("x", name="gradio")), MissingDependencyError)
    assert explain(ValueError("a plain bug")) is None


def test_extra_for_module_reads_package_metadata() -> None:
    assert extra_for_module("dagster") == "platform"
    assert extra_for_module("cv2") == "images"  # module name differs from the distribution name

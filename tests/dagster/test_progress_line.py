"""``charmeta run`` on a terminal shows one live progress line (issue #19): rows/s, partitions
done, ETA; in a pipe it keeps plain per-run lines and JSON progress events."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "charmeta.cli"]


@pytest.mark.slow
def test_terminal_gets_a_live_line(tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    subprocess.run(CLI + ["synth", "--rows", "60000", "--shards", "3", "--output", str(src)], check=True)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    proc = subprocess.Popen(
        CLI + ["run", "--source", str(src), "--output", str(out), "--shard-rows", "10000"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**os.environ, "COLUMNS": "120"},
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        elif proc.poll() is not None:
            break
    proc.wait(timeout=60)
    os.close(master)
    text = seen.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-3000:]
    assert '"event": "partition_done"' not in text  # the JSON events go to the log file on a terminal
    logs = list((out / "logs").glob("run-*.log"))
    assert logs and '"event": "partition_done"' in logs[0].read_text()
    assert "partitions 6/6" in text and "rows/s" in text and "60.0k/60.0k rows" in text, text[-3000:]
    assert "\r" in text  # redrawn in place

"""Peak resident memory of a process and all its children, sampled from /proc.

``ru_maxrss`` of children only tells the largest child ever waited for, so a
pipeline that forks workers is sampled instead: every ``interval`` seconds the
tree under the root pid is walked (psutil when installed, else /proc) and the
summed RSS of the tree and the largest single process are kept.
"""

from __future__ import annotations

import os
import resource
import threading
from dataclasses import dataclass, field

try:  # optional: faster and portable, but /proc is enough on Linux
    import psutil  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces/parens: ppid is the 2nd field after the last ')'
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def tree_rss(root: int) -> dict[int, int]:
    """RSS in bytes of ``root`` and every descendant alive now."""
    if psutil is not None:
        try:
            p = psutil.Process(root)
            procs = [p] + p.children(recursive=True)
            out = {}
            for q in procs:
                try:
                    out[q.pid] = q.memory_info().rss
                except psutil.Error:
                    pass
            return out
        except psutil.Error:
            return {}
    kids = _children_map()
    out, stack = {}, [root]
    while stack:
        pid = stack.pop()
        out[pid] = _rss_bytes(pid)
        stack.extend(kids.get(pid, []))
    return out


@dataclass
class RssPeak:
    """Peaks seen while sampling (bytes)."""

    tree_bytes: int = 0
    max_process_bytes: int = 0
    processes_seen: set[int] = field(default_factory=set)
    samples: int = 0
    method: str = "proc"


class TreeSampler:
    """Background thread sampling ``tree_rss(pid)``; use as a context manager."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = RssPeak(method="psutil" if psutil is not None else "/proc")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        rss = tree_rss(self.pid)
        if not rss:
            return
        self.peak.samples += 1
        self.peak.processes_seen.update(rss)
        self.peak.tree_bytes = max(self.peak.tree_bytes, sum(rss.values()))
        self.peak.max_process_bytes = max(self.peak.max_process_bytes, max(rss.values()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> TreeSampler:
        if os.path.isdir("/proc") or psutil is not None:
            self.sample()
            self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
            self._thread.start()
        else:
            self.peak.method = "ru_maxrss(children)"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.peak.samples == 0:  # no /proc: the largest child ever waited for
            self.peak.max_process_bytes = children_maxrss_bytes()
            self.peak.tree_bytes = self.peak.max_process_bytes


def children_maxrss_bytes() -> int:
    """Largest ``ru_maxrss`` among waited-for children (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def self_maxrss_bytes() -> int:
    """Peak RSS of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

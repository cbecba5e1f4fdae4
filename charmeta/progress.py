"""Progress of a long job: one live line on a terminal, structured JSON lines elsewhere.

Why two forms: a person at a terminal wants one line that updates in place (rows/s, partitions
done, ETA); a log file or CI capture wants one parseable line per event, not a stream of
carriage returns. ``tqdm`` draws the terminal line (it handles terminal width and redraw rate).

Progress is measured from the files, not from the Dagster events: ``watch`` polls the commit
markers of the partitions being built (a marker is written last, so a partition counts once it
is complete), about once a second, from a thread, while the caller blocks in a Dagster run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

log = logging.getLogger("charmeta.progress")


class Progress:
    """Partitions and rows done out of a known total; renders as a live line or as JSON logs."""

    def __init__(
        self,
        total_partitions: int,
        total_rows: int,
        *,
        stream: IO[str] | None = None,
        live: bool | None = None,
        log_every_s: float = 10.0,
        label: str = "charmeta run",
    ) -> None:
        self.total_partitions = total_partitions
        self.total_rows = total_rows
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self.log_every_s = log_every_s
        self.t0 = time.monotonic()
        self._last_log = 0.0
        self.partitions = 0
        self.rows = 0
        self._bar: Any = None
        if self.live and total_partitions:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_rows or None,
                unit=" rows",
                unit_scale=True,
                desc=label,
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} rows "
                "[{elapsed}<{remaining}, {rate_fmt}] {postfix}",
            )
            self._bar.set_postfix_str(f"partitions 0/{total_partitions}")

    def rate(self) -> float:
        return self.rows / max(time.monotonic() - self.t0, 1e-9)

    def eta_s(self) -> float | None:
        r = self.rate()
        return (self.total_rows - self.rows) / r if r > 0 and self.total_rows else None

    def set_total_rows(self, total: int) -> None:
        """A better estimate of the total (partitions whose size is only known once read)."""
        if total > 0 and total != self.total_rows:
            self.total_rows = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

    def update(self, partitions: int, rows: int, force_log: bool = False) -> None:
        """Set the absolute figures (never goes backwards)."""
        partitions, rows = max(partitions, self.partitions), max(rows, self.rows)
        changed = (partitions, rows) != (self.partitions, self.rows)
        if self._bar is not None and changed:
            self._bar.update(rows - self.rows)
            self._bar.set_postfix_str(f"partitions {partitions}/{self.total_partitions}")
        self.partitions, self.rows = partitions, rows
        now = time.monotonic()
        if self._bar is None and (force_log or (changed and now - self._last_log >= self.log_every_s)):
            self._last_log = now
            eta = self.eta_s()
            log.info(
                json.dumps(
                    {
                        "event": "progress",
                        "partitions_done": partitions,
                        "partitions_total": self.total_partitions,
                        "rows_done": rows,
                        "rows_total": self.total_rows,
                        "rows_per_s": round(self.rate()),
                        "eta_s": round(eta) if eta is not None else None,
                    }
                )
            )

    def write(self, message: str) -> None:
        """A line of its own (a failed run, a note) above the live line, or plainly."""
        if self._bar is not None:
            from tqdm import tqdm

            tqdm.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            self.update(self.partitions, self.rows, force_log=True)


class MarkerWatcher:
    """Polls commit markers from a thread and feeds ``Progress``.

    ``rows_of`` maps each partition key to its input rows (from the shard specs: known before
    the partition runs, or 0 for a whole file whose row count is read only with it);
    ``marker_of(key)`` is the path whose existence means "done"; ``rows_when_done(key)`` reads a
    finished partition's rows (its commit marker), used for the partitions of unknown size, whose
    share of the total is then estimated from the finished ones."""

    def __init__(
        self,
        progress: Progress,
        rows_of: Mapping[str, int],
        marker_of: Callable[[str], str],
        interval_s: float = 1.0,
        since: float | None = None,
        rows_when_done: Callable[[str], int] | None = None,
    ) -> None:
        self.progress = progress
        self.rows_when_done = rows_when_done
        self._measured: dict[str, int] = {}
        self.rows_of = dict(rows_of)
        self.marker_of = marker_of
        self.interval_s = interval_s
        self._done: set[str] = set()
        # a marker older than the job's start is a previous build's (work queued before the
        # watcher started, e.g. prefetched partitions, counts: pass the job's start as ``since``)
        self.since = (time.time() if since is None else since) - 1.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="charmeta-progress", daemon=True)

    def poll(self) -> None:
        for k in self.rows_of.keys() - self._done:
            try:
                if os.stat(self.marker_of(k)).st_mtime >= self.since:
                    self._done.add(k)
            except FileNotFoundError:
                pass
        unknown = [k for k in self.rows_of if not self.rows_of[k]]
        if unknown and self.rows_when_done is not None:
            for k in self._done.intersection(unknown) - self._measured.keys():
                self._measured[k] = int(self.rows_when_done(k) or 0)
            if self._measured:
                mean = sum(self._measured.values()) / len(self._measured)
                known = sum(self.rows_of.values()) + sum(self._measured.values())
                self.progress.set_total_rows(int(known + mean * (len(unknown) - len(self._measured))))
        rows = sum(self.rows_of[k] or self._measured.get(k, 0) for k in self._done)
        self.progress.update(len(self._done), rows)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - progress must never break the job
                log.debug("progress poll failed", exc_info=True)

    def __enter__(self) -> MarkerWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.poll()
        self.progress.close()

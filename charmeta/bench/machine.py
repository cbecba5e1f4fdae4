"""Describe the machine a bench ran on, so figures are never quoted without it."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

LIBS = ("pyarrow", "duckdb", "numpy", "pydantic", "psutil", "dagster")


def _first(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def describe() -> dict[str, str]:
    """CPU model, cores (visible and usable), RAM, OS, Python, library versions, git commit."""
    mem = _first("/proc/meminfo", "MemTotal")
    ram = f"{int(mem.split()[0]) / 1024**2:.1f} GiB" if mem != "unknown" else "unknown"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libs = []
    for name in LIBS:
        try:
            libs.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parents[2],
            ).stdout.strip()
            or "unknown"
        )
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": f"{os.cpu_count()} visible, {usable} usable",
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": ", ".join(libs),
        "commit": commit,
        "load_avg_1m": f"{load[0]:.2f}",
    }

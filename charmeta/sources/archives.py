"""Zip archives of image + caption pairs, read member by member through ``zipfile``.

Why ``zipfile`` over the fsspec file object (and not extraction): the central
directory sits at the end of the archive, so ``ZipFile`` seeks there once and
then reads each member's bytes by offset - over ``hf://`` / ``s3://`` / HTTP that
is one ranged read per member (fsspec's ``zip://`` filesystem is this same
``ZipFile`` over the same remote file). Nothing is written to disk.

Samples follow the WebDataset convention (key = member path up to the first dot
of its base name), in the order of the central directory, so discovery and the
readers agree on positions without reading any member. The same path rules as
tar members apply (no absolute paths, no ``..``, no symlinks), plus the zip-only
hazards: encrypted members and compression bombs.
"""

from __future__ import annotations

import posixpath
import stat
import zipfile
from dataclasses import dataclass, field

from charmeta.pathguard import unsafe_member_name

#: A member whose size is more than this many times its compressed size, and over
#: 1 MiB, is refused as a compression bomb (real images compress < 2x, captions < 10x).
MAX_COMPRESSION_RATIO = 200
_BOMB_FLOOR = 1 << 20


@dataclass
class ZipSample:
    """The members of one sample: extension -> ``ZipInfo``; ``refused`` says why a member was refused."""

    key: str
    members: dict[str, zipfile.ZipInfo] = field(default_factory=dict)
    refused: str | None = None


def split_key(name: str) -> tuple[str, str]:
    """WebDataset convention: key = path up to the first dot of the basename; ext lower-cased."""
    d, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return (posixpath.join(d, stem) if d else stem), ext.lower()


def unsafe_zip_member(info: zipfile.ZipInfo, limit: int | None = None) -> str | None:
    """Why a zip member must not be read, or None."""
    name = info.filename
    why = unsafe_member_name(name, "zip member")
    if why is not None:
        return why
    mode = info.external_attr >> 16
    if mode and stat.S_ISLNK(mode):
        return f"zip member {name!r} is a symlink: refused"
    if info.flag_bits & 0x1:
        return f"zip member {name!r} is encrypted: refused"
    if limit is not None and info.file_size > limit:
        return f"zip member {name!r} too large ({info.file_size} bytes > {limit})"
    if info.file_size > _BOMB_FLOOR and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        return (
            f"zip member {name!r} expands {info.file_size} bytes from {info.compress_size}"
            f" (> {MAX_COMPRESSION_RATIO}x): refused as a compression bomb"
        )
    return None


def zip_samples(zf: zipfile.ZipFile) -> list[ZipSample]:
    """The archive's samples in central-directory order (directories skipped).

    A sample with an unsafe member name is kept (one row, ``refused`` set) so it is
    quarantined rather than silently dropped."""
    samples: dict[str, ZipSample] = {}
    for info in zf.infolist():
        if info.is_dir():
            continue
        key, ext = split_key(info.filename)
        s = samples.get(key)
        if s is None:
            s = samples[key] = ZipSample(key)
        why = unsafe_zip_member(info)
        if why is not None:
            s.refused = s.refused or why
            continue
        s.members.setdefault(ext, info)
    return list(samples.values())


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> tuple[bytes | None, str | None]:
    """A member's bytes (at most ``limit``), or ``(None, reason)``; never raises on bad data."""
    why = unsafe_zip_member(info, limit)
    if why is not None:
        return None, why
    try:
        with zf.open(info) as fh:
            data = fh.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError, ValueError) as exc:
        return None, f"zip member {info.filename!r} is unreadable: {type(exc).__name__}: {exc}"
    if len(data) > limit:  # the header lied about the size
        return None, f"zip member {info.filename!r} too large (> {limit} bytes)"
    return data, None

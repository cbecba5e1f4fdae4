"""Which version of a Parquet file a derived result was computed from.

Results derived from one partition file (the checks' facts, the export's per-partition
lines and counts) are kept and reused while the file is the same, and recomputed as
soon as it is rewritten. Size, mtime, inode and a hash of the Parquet footer: any
rewrite changes at least one of them (the footer holds every column chunk's offsets and
statistics), at the cost of one ``stat`` and one small read.
"""

from __future__ import annotations

import hashlib
import os


def identity(path: str) -> tuple[int, int, int, str]:
    """``(size, mtime_ns, inode, sha1 of the Parquet footer)`` of ``path``."""
    st = os.stat(path)
    footer = b""
    with open(path, "rb") as fh:
        if st.st_size >= 12:
            fh.seek(-8, os.SEEK_END)
            n = int.from_bytes(fh.read(4), "little")
            if 0 < n <= st.st_size - 8:
                fh.seek(-(8 + n), os.SEEK_END)
                footer = fh.read(n)
    return st.st_size, st.st_mtime_ns, st.st_ino, hashlib.sha1(footer).hexdigest()

"""Guards for names that come from data: tar members, relative paths, partition keys.

Why one module: every reader that meets a path inside the data (WebDataset
members, Parquet path columns, sidecar folders) must refuse the same things -
links, absolute paths, ``..`` - with the same wording, so the quarantine table
reads the same whichever reader found the problem. Nothing here touches disk.
"""

from __future__ import annotations

import os
import tarfile


def unsafe_tar_member(m: tarfile.TarInfo) -> str | None:
    """Why a tar member must not be used (links, special files, paths leaving the tar), or None.

    Members are never extracted to disk, but their names travel on (ids, the image
    stage opens ``image_member``), so a name that could point outside is refused.
    """
    name = m.name
    if m.issym() or m.islnk():
        return f"tar member {name!r} is a {'symlink' if m.issym() else 'hard link'} (to {m.linkname!r}): refused"
    why = unsafe_member_name(name, "tar member")
    if why is not None:
        return why
    if not (m.isfile() or m.isdir()):
        return f"tar member {name!r} is not a regular file: refused"
    return None


def unsafe_member_name(name: str, what: str = "member") -> str | None:
    """Why a path found inside the data (archive member, ``file_name`` column) must not be
    used - absolute, a drive letter, or a ``..`` step - or None. Same wording for every reader."""
    if name.startswith(("/", "\\")) or (name[:1].isalpha() and name[1:3] in (":/", ":\\")):
        return f"{what} {name!r} has an absolute path: refused"
    if ".." in name.replace("\\", "/").split("/"):
        return f"{what} {name!r} has a '..' path that escapes the archive: refused"
    return None


def is_inside(root: str | os.PathLike[str], path: str | os.PathLike[str]) -> bool:
    """True when ``path`` (after resolving links) lies inside ``root``."""
    r = os.path.realpath(root)
    p = os.path.realpath(path)
    return os.path.commonpath([r, p]) == r

"""Typed errors. Each message says what went wrong and what to do about it.

``explain`` turns the raw exceptions a user meets (an unreachable hub, missing cloud
credentials, a path that does not exist, a full disk, a port in use, a package that is not
installed) into one of these, so the command line prints one sentence instead of a 30-frame
traceback. It walks the exception's ``__cause__`` / ``__context__`` chain because the
libraries in between (fsspec, huggingface_hub, Dagster, SQLAlchemy) wrap the real cause.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator


class CharmetaError(Exception):
    """Base class for errors the user can act on."""

    #: process exit status when this error ends a command
    exit_code = 2


class ConfigError(CharmetaError):
    """A setting is missing or wrong; the message names the setting and valid choices."""


class SourceError(CharmetaError):
    """A source path / URI / shard cannot be read as a whole (bad rows never raise this)."""


class ModelLoadError(CharmetaError):
    """A model backend could not be loaded (missing files, unsafe weights, no network)."""


class UnsafeInputError(CharmetaError):
    """Input tried to escape its folder, run code, or exceed a size limit."""


class UnreachableError(SourceError):
    """A remote host (model or dataset hub, object store) did not answer."""


class CredentialsError(CharmetaError):
    """A remote store needs credentials that are missing or refused."""


class NotFoundError(SourceError):
    """A path, dataset or bucket does not exist."""


class PermissionDeniedError(CharmetaError):
    """The operating system refused to read or write a path."""


class DiskFullError(CharmetaError):
    """A write failed because its file system is full; finished partitions are kept."""

    exit_code = 3


class PortInUseError(CharmetaError):
    """A server could not bind its port."""


class MissingDependencyError(CharmetaError):
    """An optional package is not installed; the message names the extra to install."""


# class names (any module: httpx, httpx2, requests, urllib3, aiohttp, socket) that mean "no answer"
_NETWORK_CLASSES = frozenset(
    {
        "ConnectError",
        "ConnectTimeout",
        "ConnectionError",
        "NewConnectionError",
        "MaxRetryError",
        "ClientConnectorError",
        "ServerDisconnectedError",
        "gaierror",
        "ReadTimeout",
        "TimeoutException",
        "LocalEntryNotFoundError",
        "OfflineModeIsEnabled",
        "EndpointConnectionError",
    }
)
_NETWORK_ERRNOS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT})


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or during, outermost first, each once."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        cur = stack.pop(0)
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        yield cur
        user = getattr(cur, "user_exception", None)  # Dagster's step errors hold the user's exception
        stack.extend(x for x in (cur.__cause__, cur.__context__, user) if isinstance(x, BaseException))


def _names(exc: BaseException) -> set[str]:
    return {k.__name__ for k in type(exc).__mro__}


def free_space(path: str) -> str:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent), human-readable."""
    p = os.path.abspath(path or ".")
    while p and not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return "unknown free space"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if free < 1024 or unit == "TB":
            return f"{free:.0f} {unit} free" if unit == "B" else f"{free:.1f} {unit} free"
        free /= 1024
    return "unknown free space"  # pragma: no cover


def extra_for_module(module: str) -> str | None:
    """The ``charmeta[...]`` extra that installs ``module`` (read from the installed package metadata)."""
    from importlib import metadata

    top = module.split(".")[0]
    try:
        dists = {d.lower().replace("_", "-") for d in metadata.packages_distributions().get(top, [])}
        requires = metadata.requires("charmeta") or []
    except metadata.PackageNotFoundError:
        return None
    dists = dists or {top.lower().replace("_", "-")}
    for req in requires:
        if "extra ==" not in req:
            continue
        name = req.split(";")[0].strip()
        for sep in "<>=!~[ (":
            name = name.split(sep)[0]
        if name.lower().replace("_", "-") in dists:
            return req.split("extra ==")[1].strip().strip("'\"")
    return None


def explain(exc: BaseException, *, path: str | None = None, uri: str | None = None) -> CharmetaError | None:
    """The typed, one-line version of ``exc`` for the error a user meets, or ``None`` if it is not one.

    ``path`` is the output root (for disk-full and permission messages), ``uri`` the source
    (for network / credential / not-found messages)."""
    where = f" ({uri})" if uri else ""
    for cur in chain(exc):
        if isinstance(cur, CharmetaError):
            return cur
        names = _names(cur)
        text = str(cur)
        if isinstance(cur, ModuleNotFoundError) and cur.name and not cur.name.startswith("charmeta"):
            extra = extra_for_module(cur.name)
            fix = f"pip install 'charmeta[{extra}]'" if extra else f"pip install {cur.name.split('.')[0]}"
            return MissingDependencyError(f"the optional package '{cur.name}' is not installed: run `{fix}`")
        if names & {"NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"}:
            return CredentialsError(
                f"no credentials for the object store{where}: set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE), or GOOGLE_APPLICATION_CREDENTIALS for gs://, then re-run"
            )
        if names & {"GatedRepoError"} or (names & {"HfHubHTTPError"} and _status(cur) in (401, 403)):
            return CredentialsError(
                f"the hub refused access{where}: log in with `hf auth login` or set HF_TOKEN to a token "
                "that can read this dataset"
            )
        if names & {"RepositoryNotFoundError", "EntryNotFoundError", "RevisionNotFoundError", "NoSuchBucket"}:
            return NotFoundError(
                f"no such dataset or file{where}: check the name (hf://datasets/<org>/<name>/...), "
                "or log in (HF_TOKEN) if it is private"
            )
        if isinstance(cur, OSError) and cur.errno in (errno.ENOSPC, errno.EDQUOT):
            target = cur.filename or path or "."
            return DiskFullError(
                f"disk full writing {target} ({free_space(str(target))}): free space or choose another "
                "--output, then run the same command again (finished partitions are kept)"
            )
        if (
            "database or disk is full" in text
            or "No space left on device" in text
            or (_io_error(cur, text) and path and _nearly_full(path))
        ):
            target = path or "."
            return DiskFullError(
                f"disk full under {target} ({free_space(target)}): free space or choose another --output, "
                "then run the same command again (finished partitions are kept)"
            )
        if isinstance(cur, OSError) and cur.errno == errno.EADDRINUSE:
            return PortInUseError(f"the port is already in use ({cur.strerror}): stop the other server or pass --port")
        if isinstance(cur, PermissionError) or (isinstance(cur, OSError) and cur.errno in (errno.EACCES, errno.EPERM)):
            target = getattr(cur, "filename", None) or path or "."
            return PermissionDeniedError(
                f"permission denied: {target}: choose a path you can write (--output) or fix its permissions"
            )
        if (names & _NETWORK_CLASSES) or (isinstance(cur, OSError) and cur.errno in _NETWORK_ERRNOS):
            return UnreachableError(
                f"cannot reach the remote store{where}: {_first_line(text) or type(cur).__name__}. "
                "Check the network or proxy (HTTPS_PROXY, HF_ENDPOINT), or copy the data to a local folder "
                "and pass that as --source"
            )
        if isinstance(cur, FileNotFoundError):
            return NotFoundError(f"no such file or folder: {cur.filename or text}")
    return None


#: below this many free bytes an I/O error on the output's file system is taken to be a full disk
#: (SQLite reports ENOSPC on tmpfs as "disk I/O error", SQLITE_IOERR, not SQLITE_FULL)
NEARLY_FULL_BYTES = 16 * 1024 * 1024


def _io_error(exc: BaseException, text: str) -> bool:
    return "disk I/O error" in text or (isinstance(exc, OSError) and exc.errno == errno.EIO)


def _nearly_full(path: str) -> bool:
    p = os.path.abspath(path)
    while not os.path.exists(p) and os.path.dirname(p) != p:
        p = os.path.dirname(p)
    try:
        return shutil.disk_usage(p).free < NEARLY_FULL_BYTES
    except OSError:
        return False


def _status(exc: BaseException) -> int | None:
    resp = getattr(exc, "response", None)
    return getattr(resp, "status_code", None)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""

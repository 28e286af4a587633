"""Atomic file writes: every file pyluz writes goes through here.

The data goes to a temporary file in the destination's directory, is flushed and fsynced, then
``os.replace``d over the destination. A crash at any point leaves either the old file or the
new one under the final name, never a partial file, and no temporary file behind on errors.

A write killed mid-way (SIGKILL, power loss) does leave its temporary,
``.<name>.luz-<pid>@<host>.<random>.tmp``: `remove_stale_temporaries` deletes those at the next
start. A temporary is stale when its writer is gone: on the same host, when the pid in its name
is not a running process (or is this process and not one of its writes in progress, so a
pid reused after a container restart does not protect a dead writer's file); from another
host (a shared file system), or where processes cannot be probed, when it has not been modified
for `STALE_AFTER_S` seconds (a live writer keeps modifying its file until the rename).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

STALE_AFTER_S = 600.0
"""How long a temporary from another host must be untouched before it counts as stale."""

_WRITING: set[str] = set()
"""The temporaries this process is writing now (any thread)."""

_TAG = re.compile(r"\.luz-(\d+)@([A-Za-z0-9-]*)\.[^.]+\.tmp$")


def _host() -> str:
    # The host part of a temporary's name: letters, digits and dashes only, so it parses back.
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32]


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.luz-{os.getpid()}@{_host()}."


def _pid_alive(pid: int) -> bool | None:
    """Whether ``pid`` runs on this host; ``None`` where that cannot be asked."""
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return None
    with contextlib.suppress(OSError, IndexError):  # a killed child not yet reaped is a zombie
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def is_stale_temporary(temp: Path, now: float | None = None) -> bool:
    """Whether ``temp`` is a pyluz temporary whose writer is gone (see the module docstring)."""
    match = _TAG.search(temp.name)
    if match is None:
        return False
    pid, host = int(match.group(1)), match.group(2)
    if host == _host():
        if pid == os.getpid():
            return temp.name not in _WRITING
        alive = _pid_alive(pid)
        if alive is not None:
            return not alive
    try:
        age = (time.time() if now is None else now) - temp.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > STALE_AFTER_S


def remove_stale_temporaries(path: str | os.PathLike[str], *, any_name: bool = False) -> list[Path]:
    """Delete the stale temporaries that killed writes of ``path`` left (``any_name``: of any
    file in ``path``'s directory, for templated names); returns the removed files."""
    target = Path(path).expanduser()
    pattern = ".*.luz-*.tmp" if any_name else f".{glob.escape(target.name)}.luz-*.tmp"
    removed = []
    with contextlib.suppress(OSError):  # no directory yet, or not readable: nothing to clean
        for temp in target.parent.glob(pattern):
            if temp.is_file() and is_stale_temporary(temp):
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
                    removed.append(temp)
    return removed


def _fsync_dir(directory: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path`` atomically.

    Parent directories are created. On an exception the temporary file is removed and ``path``
    is untouched.

    Example:
        >>> with atomic_open("out.txt", "w") as f:  # doctest: +SKIP
        ...     f.write("hello")
    """
    if "w" not in mode:
        raise ValueError(f"atomic_open() only writes; got mode {mode!r}.")
    target = Path(path).expanduser()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    _WRITING.add(tmp.name)
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        _WRITING.discard(tmp.name)
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], None]) -> None:
    """Call ``writer(binary_file)`` on a temporary file, then move it over ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        writer(handle)

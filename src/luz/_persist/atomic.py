"""Atomic file writes: every file pyluz writes goes through here.

The data goes to a temporary file in the destination's directory, is flushed and fsynced, then
``os.replace``d over the destination. A crash at any point leaves either the old file or the
new one under the final name, never a partial file, and no temporary file behind on errors.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any


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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
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
    _fsync_dir(target.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_with(path: str | os.PathLike[str], writer: Callable[[IO[bytes]], None]) -> None:
    """Call ``writer(binary_file)`` on a temporary file, then move it over ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        writer(handle)

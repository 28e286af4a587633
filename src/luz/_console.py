"""Where a run's output goes: a notebook kernel, a terminal, or a redirected stream.

Three environments, told apart without importing anything heavy:

- a Jupyter kernel (IPython's ``ZMQInteractiveShell``): widgets and HTML, nothing on stderr;
- a terminal (stderr is a tty): text bars redrawn in place on stderr;
- anything else (a pipe, a file, a CI log): plain lines, one per epoch, on stderr.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import IO, Any


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython already imported and running in one)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell: Any = ipython.get_ipython()
    except Exception:  # an IPython half torn down
        return False
    if shell is None:
        return False
    return type(shell).__name__ == "ZMQInteractiveShell" or "IPKernelApp" in getattr(shell, "config", {})


def widgets_available() -> bool:
    """Whether ``ipywidgets`` can be imported (checked, not imported, unless already loaded)."""
    if "ipywidgets" in sys.modules:
        return sys.modules["ipywidgets"] is not None
    try:
        return importlib.util.find_spec("ipywidgets") is not None
    except (ImportError, ValueError):
        return False


def is_terminal(stream: IO[str] | None) -> bool:
    """Whether ``stream`` is attached to a terminal."""
    if stream is None:
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def default_verbose() -> bool:
    """``verbose=None`` resolved: progress is shown in a notebook kernel or when stderr is a terminal."""
    return in_notebook() or is_terminal(sys.stderr)


def note_stream() -> IO[str]:
    """Where a one-off note (early stopping, resuming, an interrupt) goes: stdout in a notebook
    (stderr would be painted as an error), else stderr, next to the progress output."""
    return sys.stdout if in_notebook() else sys.stderr


def note(text: str) -> None:
    """Print a one-off note of a verbose run where progress goes (see `note_stream`)."""
    print(text, file=note_stream(), flush=True)

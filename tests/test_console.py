"""luz._console: telling a notebook kernel, a terminal and a redirected stream apart."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from luz import _console


def test_a_pytest_process_is_no_notebook() -> None:
    assert not _console.in_notebook()


def test_is_terminal_on_a_pty_a_file_and_odd_streams(tmp_path: Path) -> None:
    pty = pytest.importorskip("pty")
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as on_tty:
            assert _console.is_terminal(on_tty)
    finally:
        os.close(master)
        os.close(slave)
    with open(tmp_path / "log.txt", "w") as log:
        assert not _console.is_terminal(log)
    closed = io.StringIO()
    closed.close()  # isatty() on a closed stream raises ValueError
    assert not _console.is_terminal(closed)
    assert not _console.is_terminal(io.StringIO())
    assert not _console.is_terminal(None)
    assert not _console.is_terminal(object())  # type: ignore[arg-type]


def test_default_verbose_follows_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert _console.default_verbose() is False
    monkeypatch.setattr(sys, "stderr", Tty())
    assert _console.default_verbose() is True


def test_widgets_available_honours_a_blocked_import(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ipywidgets")
    assert _console.widgets_available()
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    assert not _console.widgets_available()


def test_notes_go_to_stderr_outside_a_notebook(capsys: pytest.CaptureFixture[str]) -> None:
    _console.note("Early stopping at epoch 2 of 5")
    assert capsys.readouterr() == ("", "Early stopping at epoch 2 of 5\n")

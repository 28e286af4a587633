"""Progress output pinned by golden files: a real training run in a subprocess whose stderr is
a pseudo-terminal (the bar form) or a pipe (the one-line-per-epoch form), with ``mode="auto"``.

Times are made deterministic by a fake clock (``Progress(clock=...)``: each reading advances
0.5 s), so ETAs, durations and redraws (every ``refresh=2`` s of that clock) are the same on
every run. In the bar transcripts each carriage return starts a new line shown as
``<CR>`` (the text after it overwrites the line above). Regenerate with
``LUZ_UPDATE_GOLDEN=1 python -m pytest tests/callbacks/test_progress_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SRC = str(Path(__file__).resolve().parents[2] / "src")

SCRIPT = """
import itertools
import torch
from torch import nn
import luz
from luz.callbacks import Progress

torch.manual_seed(0)
torch.set_num_threads(1)
ticks = itertools.count()
clock = lambda: next(ticks) * 0.5
progress = Progress(refresh=2.0, clock=clock)  # mode="auto": the form is picked from stderr
x = torch.randn(100, 10)
y = x @ torch.randn(10, 1)
fitted = (
    luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[luz.metrics.MAE()])
    .set_hparams(in_features=10, out_features=1)
    .set_opt_hparams(lr=0.05)
    .fit((x, y), epochs=3, valid_data=0.2, verbose=True, callbacks=[progress],
         dataloader_options={"batch_size": 8})
)
fitted.evaluate((x, y), verbose=True, callbacks=[progress], dataloader_options={"batch_size": 25})
fitted.predict(x, verbose=True, callbacks=[progress], dataloader_options={"batch_size": 10})
print("done")
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"progress_{name}.txt"
    if os.environ.get("LUZ_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8")


def _transcript(raw: str) -> str:
    assert "<CR>" not in raw
    return raw.replace("\n\r", "\n<CR>").replace("\r", "\n<CR>")


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO from a pty: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def runs() -> dict[str, tuple[str, str]]:
    """``{"lines": (stdout, stderr), "terminal": (stdout, stderr)}``: the script run twice at once,
    stderr to a pipe and to a pseudo-terminal."""
    pty = pytest.importorskip("pty")
    import termios

    command = [sys.executable, "-c", SCRIPT]
    piped = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    master, slave = pty.openpty()
    attrs = termios.tcgetattr(slave)
    attrs[1] &= ~termios.OPOST  # no \n -> \r\n translation: the bytes as written
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    on_tty = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    terminal_err = _read_all(master)
    assert on_tty.stdout is not None
    terminal_out = on_tty.stdout.read()
    on_tty.stdout.close()
    piped_out, piped_err = piped.communicate(timeout=300)
    assert on_tty.wait(timeout=300) == 0 and piped.returncode == 0, piped_err.decode()
    return {
        "lines": (piped_out.decode(), piped_err.decode()),
        "terminal": (terminal_out.decode(), terminal_err.decode()),
    }


@pytest.mark.slow
def test_redirected_output_is_one_line_per_epoch(runs: dict[str, tuple[str, str]]) -> None:
    stdout, stderr = runs["lines"]
    assert stdout == "done\n"  # progress goes to stderr, next to warnings and notes
    assert "\r" not in stderr
    _check_golden("lines", stderr)


@pytest.mark.slow
def test_terminal_output_keeps_the_bar(runs: dict[str, tuple[str, str]]) -> None:
    stdout, stderr = runs["terminal"]
    assert stdout == "done\n"
    _check_golden("terminal", _transcript(stderr))

"""Users' code type-checks: ``mypy --strict`` on a small script written against the README's
API reports no errors, sees precise types (``self.ctx`` is a `luz.Context`, ``predict`` gives a
``Tensor``, or a ``list`` with ``stack=False``), and does report misuse."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mypy")

ROOT = Path(__file__).resolve().parents[1]

USER_SCRIPT = '''
"""A user's script, written against the README's API."""

from typing import Any

import torch
from torch import nn

import luz


class Net(nn.Module):
    def __init__(self, num_class: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_class))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layers(x)
        return out


class PrintEpoch(luz.Callback):
    def on_epoch_end(self) -> None:
        epoch: int = self.ctx.epoch
        print("finished epoch", epoch, self.ctx.get_metric("loss", "train"))


x, y = torch.randn(600, 8, 8), torch.randint(0, 10, (600,))
train, test = (x[:400], y[:400]), (x[500:], y[500:])
fitted = (
    luz.setup(Net, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[luz.metrics.Accuracy()])
    .set_hparams(num_class=10)
    .set_opt_hparams(lr=3e-3)
    .fit(train, epochs=1, valid_data=test, callbacks=[PrintEpoch(), luz.callbacks.LRMonitor()])
)
preds = fitted.predict(test)
labels: torch.Tensor = preds.argmax(dim=1)
batches: list[Any] = fitted.predict(test, stack=False)
functional = luz.predict(fitted, test)
print(labels.shape, len(batches), functional.shape, fitted.evaluate(test).get_metrics())
reveal_type(preds)
reveal_type(fitted.predict(test, stack=False))
reveal_type(luz.predict(fitted, test, stack=False))
reveal_type(functional)
reveal_type(PrintEpoch().ctx)
'''

MISUSE = """
import torch

import luz


def use(fitted: luz.Fitted, data: torch.Tensor) -> None:
    name: str = fitted.predict(data)
    fitted.predict(data, stack=False).argmax()
    luz.predict(fitted, data).append(1)
"""


@pytest.mark.slow
def test_mypy_strict_on_a_users_script(tmp_path: Path) -> None:
    (tmp_path / "user_script.py").write_text(USER_SCRIPT, encoding="utf-8")
    (tmp_path / "misuse.py").write_text(MISUSE, encoding="utf-8")
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}  # this checkout's luz, whatever is installed
    # From the checkout with its config: the same options as the lint run, so mypy's cache of
    # torch is shared (cold, analysing torch takes about a minute).
    command = [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--strict", "--no-pretty"]
    result = subprocess.run(
        [*command, str(tmp_path / "user_script.py"), str(tmp_path / "misuse.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = result.stdout.splitlines()
    errors = [line for line in lines if ": error:" in line]
    assert [line for line in errors if "user_script.py" in line] == [], result.stdout
    revealed = [
        m.group(1) for line in lines if (m := re.search(r'Revealed type is "(?:builtins\.)?(.*)"', line))
    ]
    assert revealed == [
        "torch._tensor.Tensor",
        "list[Any]",
        "list[Any]",
        "torch._tensor.Tensor",
        "luz.context.Context",
    ], result.stdout
    # The types are precise, not Any: misuse is reported, one error per line.
    misuse = sorted(int(line.split(":")[1]) for line in errors if "misuse.py" in line)
    assert misuse == [8, 9, 10], result.stdout
    assert 'expression has type "Tensor", variable has type "str"' in result.stdout
    assert '"list[Any]" has no attribute "argmax"' in result.stdout
    assert '"Tensor" has no attribute "append"' in result.stdout

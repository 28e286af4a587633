"""Smoke test: every example in examples/ runs with ``--quick`` and prints what it achieved.

The examples run as subprocesses (``sys.executable``, cwd = the repository root, one thread
each), two at a time: starting Python with torch costs seconds, so the runs are launched once,
together, by a module-scoped fixture, and each test checks one of them. Output files go to
pytest's temporary directory.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 120

# Example file -> (extra CLI arguments, with {tmp} for the output directory; a line it prints).
EXAMPLES: dict[str, tuple[list[str], str]] = {
    "digits.py": ([], "Validation accuracy after the last epoch:"),
    "digits_autoencoder.py": ([], "Test reconstruction MSE:"),
    "digits_gan.py": (["--out", "{tmp}/gan_digits.png"], "Saved 60 generated digits to"),
    "digits_mixup.py": ([], "Test accuracy:"),
    "digits_triplet.py": ([], "Test triplets ranked correctly:"),
    "virtual_batch_size.py": ([], "virtual batch size 32"),
    "breast_cancer_binary.py": ([], "Test loss"),
    "diabetes_regression.py": (["--logdir", "{tmp}"], "Test MAE"),
    "char_transformer.py": (["--out-dir", "{tmp}"], "luz.load() round trip: predictions match"),
    "accelerator_loop.py": ([], "Test accuracy:"),
    "ddp_digits.py": (["--state", "{tmp}/state.pt"], "Test accuracy:"),
    "hf_text_classifier.py": ([], "Validation accuracy after the last epoch:"),
    "hf_gpt2_lm.py": ([], "Next-number accuracy on 256 new sequences"),
    # Starts itself on 2 CPU processes with torchrun (FSDP2, a sharded AutoResume directory).
    "fsdp_digits.py": (
        ["--state", "{tmp}/state", "--out", "{tmp}/model.safetensors"],
        "luz.load() in one process predicts the same: True",
    ),
}
# Examples that need optional packages (an extra): skipped where one is not installed.
NEEDS: dict[str, tuple[str, ...]] = {
    "hf_text_classifier.py": ("transformers", "datasets"),
    "hf_gpt2_lm.py": ("transformers",),
}


def _installed(name: str) -> bool:
    return all(importlib.util.find_spec(package) is not None for package in NEEDS.get(name, ()))


def _run(name: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    out = tmp / name.removesuffix(".py")
    out.mkdir()
    args = [a.format(tmp=out) for a in EXAMPLES[name][0]]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), "--quick", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("examples")
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {name: pool.submit(_run, name, tmp) for name in EXAMPLES if _installed(name)}
        return {name: run.result() for name, run in runs.items()}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in (ROOT / "examples").glob("*.py")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_runs_quick(name: str, results: dict[str, subprocess.CompletedProcess[str]]) -> None:
    for package in NEEDS.get(name, ()):
        pytest.importorskip(package)
    result = results[name]
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{name} exited with {result.returncode}:\n{output[-3000:]}"
    assert EXAMPLES[name][1] in result.stdout, (
        f"{name} did not print {EXAMPLES[name][1]!r}:\n{output[-3000:]}"
    )

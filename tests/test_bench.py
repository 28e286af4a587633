"""The benchmark scripts in bench/ run and every variant trains (timings are not tested)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _restore_threads() -> object:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("variant", ["dataloader", "floor", "luz_dataloader", "luz_tensors", "luz_hooks"])
def test_overhead_variants_train(variant: str) -> None:
    result = _load("overhead").run_variant(variant, 32, 2)
    assert result["last_loss"] < result["first_loss"]
    assert result["valid_accuracy"] > 0.2
    assert result["sec_per_step"] > 0


def test_gpu_bench_timing_runs_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu = _load("gpu")
    monkeypatch.setattr(sys, "argv", ["gpu.py", "--device", "cpu", "--rounds", "1", "--epochs", "1"])
    gpu.main()  # warm-up and one round of the three variants, on the CPU
    out = capsys.readouterr().out
    for variant in ("hand-written loop", "pyluz, same DataLoader", "pyluz, tensors"):
        assert variant in out
    assert "1.000x" in out  # the baseline's own ratio


def test_gpu_bench_without_cuda_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu = _load("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(sys, "argv", ["gpu.py"])
    gpu.main()
    assert "No CUDA device" in capsys.readouterr().out


def test_scaling_measurements_run() -> None:
    scaling = _load("scaling")
    assert scaling.seconds_per_step(256, [scaling.EpochOnly(), scaling.PerBatch()]) > 0
    # Calls per step are exact: callbacks without per-batch hooks add none, a per-batch hook
    # adds its own call and nothing else.
    alone = scaling.calls_per_step(256, [])
    assert scaling.calls_per_step(256, [scaling.EpochOnly() for _ in range(20)]) == alone
    assert scaling.calls_per_step(256, [scaling.PerBatch() for _ in range(20)]) == alone + 20
    row = scaling.predict_peak(1)
    assert row["output_mib"] == 1.0 and row["peak_growth_mib"] >= 0

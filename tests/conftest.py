"""Shared fixtures: deterministic single-threaded torch, devices, and small data sets."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

torch.set_num_threads(1)


def _devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    return devices


@pytest.fixture(params=_devices())
def device(request: pytest.FixtureRequest) -> str:
    """Every available device: CPU, plus CUDA when present."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


def regression_data(n: int = 100, features: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Random regression data: ``(n, features)`` inputs and ``(n, 1)`` targets."""
    x = torch.randn(n, features)
    y = x @ torch.randn(features, 1) + 0.1 * torch.randn(n, 1)
    return x, y


def classification_data(
    n: int = 100, features: int = 10, classes: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random classification data: ``(n, features)`` inputs and integer class targets."""
    x = torch.randn(n, features)
    y = (x[:, :classes].argmax(dim=1)).long()
    return x, y


class Linear(nn.Module):
    """A flatten + linear model (the R tests' helper model)."""

    def __init__(self, in_features: int = 10, out_features: int = 1) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(x, 1))


def make_recorder(weight: float = 0.0) -> Any:
    """A callback recording, in ``.calls``, every built-in breakpoint it sees (in order)."""
    import luz

    def hook(name: str) -> Any:
        def method(self: Any) -> None:
            self.calls.append(name)

        return method

    methods: dict[str, Any] = {name: hook(name) for name in luz.BREAKPOINTS}
    methods["weight"] = weight
    cls = type("Recorder", (luz.Callback,), methods)
    recorder = cls()
    recorder.calls = []
    return recorder


def two_optimizer_model(
    names: tuple[str, str] = ("first", "second"), *, bias: bool = True
) -> type[nn.Module]:
    """A model class with two linear heads (summed), each stepped by its own named SGD optimizer
    from ``set_optimizers(lr=0.01)``."""

    class TwoOptimizers(nn.Module):
        def __init__(self, in_features: int = 10) -> None:
            super().__init__()
            self.a = nn.Linear(in_features, 1, bias=bias)
            self.b = nn.Linear(in_features, 1, bias=bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.a(x) + self.b(x)

        def set_optimizers(self, lr: float = 0.01) -> dict[str, torch.optim.Optimizer]:
            return {
                names[0]: torch.optim.SGD(self.a.parameters(), lr=lr),
                names[1]: torch.optim.SGD(self.b.parameters(), lr=lr),
            }

    return TwoOptimizers


@pytest.fixture
def one_rank_group() -> Any:
    """A process group of this process alone (Gloo), destroyed after the test."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("needs torch.distributed with Gloo")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()

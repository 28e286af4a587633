"""fit(compile=...): a compiled forward trains like the eager one and keeps the model's identity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import luz
from tests.conftest import regression_data


def _fit(compile: bool | dict[str, str]) -> luz.Fitted:
    torch.manual_seed(1)
    x, y = regression_data(128, 8)
    module = luz.setup(
        lambda: nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)),
        loss=nn.MSELoss(),
        optimizer=torch.optim.SGD,
    ).set_opt_hparams(lr=0.05)
    return module.fit((x, y), epochs=3, verbose=False, compile=compile)


def _losses(fitted: luz.Fitted) -> list[float]:
    return [entry["loss"] for entry in fitted.records["metrics"]["train"]]


def test_compiled_fit_follows_the_eager_loss_trajectory() -> None:
    eager = _fit(False)
    compiled = _fit({"backend": "aot_eager"})
    assert _losses(compiled) == pytest.approx(_losses(eager), rel=1e-5)
    assert type(compiled.model) is nn.Sequential
    assert list(compiled.model.state_dict()) == list(eager.model.state_dict())


def test_compile_rejects_other_values() -> None:
    with pytest.raises(TypeError, match="`compile`"):
        _fit("yes")  # type: ignore[arg-type]

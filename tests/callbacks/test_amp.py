"""MixedPrecision: the autocast window on CPU (bfloat16) and CUDA (float16 + GradScaler)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.callbacks import MixedPrecision
from luz.context import _default_step_opt
from tests.conftest import regression_data


def _fit(module: Any, callbacks: list[Any], valid: bool = True, device: str = "cpu") -> luz.Fitted:
    x, y = regression_data(n=32)
    return module.fit(
        (x, y),
        epochs=1,
        valid_data=(x, y) if valid else None,
        callbacks=callbacks,
        verbose=False,
        accelerator=luz.Accelerator(cpu=device == "cpu"),
        dataloader_options={"batch_size": 16},
    )


def _linear() -> luz.LuzModule:
    module = luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    return module.set_hparams(in_features=10, out_features=1).set_opt_hparams(lr=0.01)


def _probe(seen: dict[str, Any], key: str, device: str) -> Any:
    def hook(ctx: luz.Context) -> None:
        a = torch.randn(4, 4, device=device)
        seen.setdefault(key, []).append((torch.matmul(a, a).dtype, ctx.model.weight.dtype))

    return hook


def test_cpu_autocast_window_is_bfloat16() -> None:
    seen: dict[str, Any] = {}
    step_opts: list[Any] = []
    probes = luz.callback(
        on_train_batch_begin=_probe(seen, "begin", "cpu"),
        on_train_batch_after_pred=_probe(seen, "after_pred", "cpu"),
        on_train_batch_before_backward=_probe(seen, "before_backward", "cpu"),
        on_valid_batch_after_pred=_probe(seen, "valid", "cpu"),
        on_valid_batch_end=_probe(seen, "valid_end", "cpu"),
        on_fit_begin=lambda ctx: step_opts.append(ctx.step_opt),
    )
    preds: list[torch.dtype] = []
    pred_spy = luz.callback(on_train_batch_after_pred=lambda ctx: preds.append(ctx.pred.dtype))
    fitted = _fit(_linear(), [MixedPrecision(), probes, pred_spy])
    bf16, f32 = torch.bfloat16, torch.float32
    assert set(seen["begin"]) == {(bf16, f32)}
    assert set(seen["after_pred"]) == {(bf16, f32)}
    assert set(seen["before_backward"]) == {(f32, f32)}
    assert set(seen["valid"]) == {(bf16, f32)}
    assert set(seen["valid_end"]) == {(f32, f32)}
    assert preds == [bf16, bf16]
    assert step_opts == [_default_step_opt]  # no scaler on CPU
    assert fitted.model.weight.dtype == f32
    assert not torch.is_autocast_enabled("cpu")


class TwoOpt(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(10, 1)
        self.b = nn.Linear(10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)

    def set_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "a": torch.optim.SGD(self.a.parameters(), lr=0.01),
            "b": torch.optim.SGD(self.b.parameters(), lr=0.01),
        }


def test_every_optimizers_forward_is_autocast() -> None:
    preds: list[tuple[str, torch.dtype]] = []
    spy = luz.callback(
        on_train_batch_after_pred=lambda ctx: preds.append(("train", ctx.pred.dtype)),
        on_valid_batch_after_pred=lambda ctx: preds.append(("valid", ctx.pred.dtype)),
    )
    _fit(luz.setup(TwoOpt, loss=nn.MSELoss()), [MixedPrecision(), spy])
    assert len(preds) == 8
    assert {dtype for _, dtype in preds} == {torch.bfloat16}
    assert not torch.is_autocast_enabled("cpu")


class Failing(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_an_error_inside_the_window_does_not_leak_autocast() -> None:
    module = luz.setup(Failing, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    module = module.set_hparams(in_features=10, out_features=1).set_opt_hparams(lr=0.01)
    with pytest.raises(RuntimeError, match="boom"):
        _fit(module, [MixedPrecision()])
    assert not torch.is_autocast_enabled("cpu")
    assert torch.matmul(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32


def test_state_dict_without_scaler() -> None:
    cb = MixedPrecision()
    assert cb.state_dict() == {}
    cb.load_state_dict({"scaler": {"scale": 8.0}})
    assert cb.state_dict() == {"scaler": {"scale": 8.0}}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_float16_and_grad_scaler() -> None:
    seen: dict[str, Any] = {}
    step_opts: list[Any] = []
    probes = luz.callback(
        on_train_batch_after_pred=_probe(seen, "after_pred", "cuda"),
        on_train_batch_before_backward=_probe(seen, "before_backward", "cuda"),
        on_train_batch_begin=lambda ctx: step_opts.append(ctx.step_opt),
    )
    amp = MixedPrecision(init_scale=1024.0)
    fitted = _fit(_linear(), [amp, probes], device="cuda")
    assert set(seen["after_pred"]) == {(torch.float16, torch.float32)}
    assert set(seen["before_backward"]) == {(torch.float32, torch.float32)}
    assert step_opts[0] is not _default_step_opt
    assert amp.scaler is not None
    assert "scale" in amp.state_dict()["scaler"]
    assert fitted.model.weight.dtype == torch.float32
    assert len(fitted.records["metrics"]["train"]) == 1


def test_grad_scaler_keywords_are_checked_on_every_device() -> None:
    # The scaler is only built on CUDA: a typo must fail here, on CPU too.
    with pytest.raises(
        TypeError, match=r"'init_scal'.*Did you mean 'init_scale'\?.*init_scale, growth_factor"
    ):
        MixedPrecision(init_scal=1024)
    with pytest.raises(ValueError, match="`backoff_factor` must be a number in"):
        MixedPrecision(backoff_factor=1.5)
    with pytest.raises(ValueError, match="`growth_factor`"):
        MixedPrecision(growth_factor=0.5)
    assert MixedPrecision(init_scale=1024.0, growth_interval=100).grad_scaler_kwargs == {
        "init_scale": 1024.0,
        "growth_interval": 100,
    }

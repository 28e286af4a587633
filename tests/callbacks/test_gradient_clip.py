"""GradientClip: clipping to zero stops learning; argument checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import luz
from luz.callbacks import GradientClip
from tests.conftest import Linear, regression_data


def _losses(clip: GradientClip | None) -> list[float]:
    x, y = regression_data(n=32)
    fitted = (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit(
            (x, y),
            epochs=2,
            valid_data=(x, y),
            callbacks=[] if clip is None else [clip],
            verbose=False,
            dataloader_options={"batch_size": 32, "shuffle": False},
        )
    )
    return [e["loss"] for s in ("train", "valid") for e in fitted.records["metrics"][s]]


def test_max_norm_zero_means_no_learning() -> None:
    losses = _losses(GradientClip(max_norm=0))
    assert len(losses) == 4
    assert losses == pytest.approx([losses[0]] * 4)


def test_without_clipping_the_loss_changes() -> None:
    losses = _losses(None)
    assert losses[1] < losses[0]


def test_clips_the_total_norm_of_all_parameters() -> None:
    norms: list[float] = []

    def total_norm(ctx: luz.Context) -> None:
        grads = [p.grad.flatten() for p in ctx.model.parameters() if p.grad is not None]
        norms.append(float(torch.cat(grads).norm()))

    x, y = regression_data(n=32)
    luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01).fit(
        (x, 100 * y),
        epochs=1,
        callbacks=[GradientClip(max_norm=1), luz.callback(on_train_batch_before_step=total_norm)],
        verbose=False,
        dataloader_options={"batch_size": 16},
    )
    assert norms == pytest.approx([1.0, 1.0], rel=1e-4)


@pytest.mark.parametrize("argument", ["max_norm", "norm_type"])
def test_argument_checks(argument: str) -> None:
    with pytest.raises(ValueError, match=f"`{argument}`"):
        GradientClip(**{argument: -1.0})
    with pytest.raises(TypeError, match=f"`{argument}`"):
        GradientClip(**{argument: "2"})
    with pytest.raises(ValueError, match=f"`{argument}`"):  # bools are never numbers (SPEC §1)
        GradientClip(**{argument: True})
    assert GradientClip(**{argument: 2}).__dict__[argument] == 2.0


def test_norm_type_zero_is_rejected() -> None:
    with pytest.raises(ValueError, match="`norm_type`"):
        GradientClip(norm_type=0)

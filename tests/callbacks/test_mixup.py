"""Mixup: the mixing function, the mixup loss and the callback in real fits."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import luz
from luz.callbacks import Mixup
from tests.conftest import Linear


def test_mixup_keeps_constant_inputs_and_targets() -> None:
    x = torch.ones(8, 3, 5)
    y = torch.full((8,), 2)
    weight = torch.rand(8)
    mixed, target = luz.mixup(x, y, weight)
    assert isinstance(target, luz.MixupTarget)
    assert float(mixed.mean()) == pytest.approx(1.0)
    assert torch.equal(target.ys[0], target.ys[1])
    assert target.weight is weight


def test_mixup_mixes_each_sample_with_its_own_weight() -> None:
    x = torch.arange(6.0).reshape(6, 1, 1)
    y = torch.arange(6)
    weight = torch.linspace(0, 1, 6)
    mixed, target = luz.mixup(x, y, weight)
    y1, y2 = target.ys
    assert torch.equal(y1, y)
    # x equals y here, so the mixed input is the lerp of the two targets with the sample's weight
    expected = y1.float() + weight * (y2.float() - y1.float())
    assert torch.allclose(mixed.flatten(), expected)
    with pytest.raises(ValueError, match="`weight`"):
        luz.mixup(x, y, torch.rand(6, 2))
    torch.manual_seed(0)
    column, column_target = luz.mixup(x, y, weight.reshape(6, 1))  # R's tests pass a column
    torch.manual_seed(0)
    flat, _ = luz.mixup(x, y, weight)
    assert torch.equal(column, flat) and column_target.weight.shape == (6,)


def test_mixup_loss_matches_manual_lerp_of_per_sample_losses() -> None:
    pred = torch.randn(8, 4)
    y1, y2 = torch.randint(0, 4, (8,)), torch.randint(0, 4, (8,))
    ce = nn.CrossEntropyLoss()
    loss = luz.MixupLoss(ce)
    ce1, ce2 = F.cross_entropy(pred, y1, reduction="none"), F.cross_entropy(pred, y2, reduction="none")
    value = loss(pred, luz.MixupTarget(ys=(y1, y2), weight=torch.full((8,), 0.9)))
    assert value == pytest.approx(float(torch.mean(ce1 + 0.9 * (ce2 - ce1))))
    assert loss(pred, luz.MixupTarget(ys=(y1, y2), weight=torch.ones(8))) == pytest.approx(
        float(F.cross_entropy(pred, y2))
    )
    assert ce.reduction == "mean"
    assert loss(pred, y1) == pytest.approx(float(F.cross_entropy(pred, y1)))


def test_mixup_loss_is_a_per_sample_mix() -> None:
    pred = torch.randn(6, 3)
    y1, y2 = torch.randint(0, 3, (6,)), torch.randint(0, 3, (6,))
    w = torch.rand(6)
    ce1, ce2 = F.cross_entropy(pred, y1, reduction="none"), F.cross_entropy(pred, y2, reduction="none")
    value = luz.MixupLoss(nn.CrossEntropyLoss())(pred, luz.MixupTarget(ys=(y1, y2), weight=w))
    assert value == pytest.approx(float((ce1 + w * (ce2 - ce1)).mean()))
    r_quirk = ce1.mean() + w.mean() * (ce2.mean() - ce1.mean())  # what R's broadcasting computed
    assert value != pytest.approx(float(r_quirk))


def test_mixup_loss_restores_reduction_on_error() -> None:
    ce = nn.CrossEntropyLoss()
    bad = luz.MixupTarget(
        ys=(torch.zeros(3, dtype=torch.long), torch.zeros(5, dtype=torch.long)), weight=torch.ones(3)
    )
    with pytest.raises((ValueError, RuntimeError)):
        luz.MixupLoss(ce)(torch.randn(3, 2), bad)
    assert ce.reduction == "mean"


def test_mixup_loss_checks() -> None:
    with pytest.raises(TypeError, match="loss module"):
        luz.MixupLoss("cross_entropy")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loss module"):
        luz.MixupLoss(nn.CrossEntropyLoss)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="takes `reduction=`"):
        luz.MixupLoss(lambda pred, target: F.cross_entropy(pred, target))
    with pytest.raises(ValueError, match="reduction"):
        luz.MixupLoss(nn.Identity())


def test_mixup_loss_of_a_loss_function_equals_the_module_version() -> None:
    pred = torch.randn(8, 4)
    y1, y2 = torch.randint(0, 4, (8,)), torch.randint(0, 4, (8,))
    target = luz.MixupTarget(ys=(y1, y2), weight=torch.rand(8))
    functional = luz.MixupLoss(F.cross_entropy)
    assert torch.equal(functional(pred, target), luz.MixupLoss(nn.CrossEntropyLoss())(pred, target))
    assert torch.equal(functional(pred, y1), F.cross_entropy(pred, y1))


def _fit(
    shape: tuple[int, ...], classes: int, callbacks: list[Any], loss: Any, metrics: Any = None
) -> luz.Fitted:
    x = torch.randn(64, *shape)
    y = torch.randint(0, classes, (64,))
    features = 1
    for s in shape:
        features *= s
    module = luz.setup(Linear, loss=loss, optimizer=torch.optim.Adam, metrics=metrics)
    module = module.set_hparams(in_features=features, out_features=classes).set_opt_hparams(lr=1e-3)
    return module.fit(
        (x, y),
        epochs=1,
        valid_data=(x, y),
        callbacks=callbacks,
        verbose=False,
        dataloader_options={"batch_size": 32},
    )


@pytest.mark.parametrize(
    ("shape", "classes"),
    [((768,), 10), ((28, 28), 3), ((3, 28, 28), 33)],
    ids=["1d", "2d", "3d"],
)
def test_mixup_callback_trains(shape: tuple[int, ...], classes: int) -> None:
    weights: list[torch.Tensor] = []

    def grab(ctx: luz.Context) -> None:
        assert isinstance(ctx.target, luz.MixupTarget)
        weights.append(ctx.target.weight)

    hook = luz.callback(on_train_batch_after_pred=grab)
    fitted = _fit(shape, classes, [Mixup(), hook], luz.MixupLoss(nn.CrossEntropyLoss()))
    assert len(fitted.records["metrics"]["valid"]) == 1
    w = torch.cat(weights)
    assert w.shape == (64,)
    assert bool((w >= 0.5).all() and (w <= 1).all())


def test_auto_loss_with_valid_only_accuracy() -> None:
    seen: dict[str, Any] = {}

    def spy(ctx: luz.Context) -> None:
        seen.setdefault("train" if ctx.training else "valid", ctx.loss_fn)

    loss = nn.CrossEntropyLoss()
    hooks = luz.callback(on_train_batch_after_pred=spy, on_valid_batch_after_pred=spy)
    after = luz.callback(on_epoch_end=lambda ctx: seen.setdefault("end", ctx.loss_fn))
    metrics = luz.MetricSet(valid=[luz.metrics.Accuracy()])
    fitted = _fit((10,), 3, [Mixup(auto_loss=True), hooks, after], loss, metrics)
    assert "acc" in fitted.records["metrics"]["valid"][0]
    assert isinstance(seen["train"], luz.MixupLoss)
    # Validation is not mixed, but the wrapper stays on to average an unreduced loss (as luz).
    assert isinstance(seen["valid"], luz.MixupLoss) and seen["valid"].loss is loss
    assert seen["end"] is loss


def test_auto_loss_with_run_valid() -> None:
    targets: list[Any] = []
    spy = luz.callback(on_valid_batch_after_pred=lambda ctx: targets.append(ctx.target))
    fitted = _fit((10,), 3, [Mixup(alpha=1.0, run_valid=True, auto_loss=True), spy], nn.CrossEntropyLoss())
    assert len(fitted.records["metrics"]["valid"]) == 1
    assert targets and all(isinstance(t, luz.MixupTarget) for t in targets)


def test_auto_loss_needs_a_loss_that_takes_reduction() -> None:
    with pytest.raises(TypeError, match="auto_loss"):
        _fit((10,), 3, [Mixup(auto_loss=True)], lambda pred, target: F.cross_entropy(pred, target))
    fitted = _fit((10,), 3, [Mixup(auto_loss=True)], F.cross_entropy)  # a function with reduction=
    assert len(fitted.records["metrics"]["train"]) == 1


def test_mixup_arguments() -> None:
    with pytest.raises(ValueError, match="`alpha`"):
        Mixup(alpha=0)
    positional = Mixup(0.2, True, True)  # SPEC §3: Mixup(alpha=0.4, run_valid=False, auto_loss=False)
    assert (positional.alpha, positional.run_valid, positional.auto_loss) == (0.2, True, True)


def test_auto_loss_with_an_unreduced_loss_validates() -> None:
    x, y = torch.randn(128, 5), torch.randint(0, 3, (128,))
    module = luz.setup(
        nn.Linear,
        loss=nn.CrossEntropyLoss(reduction="none"),
        optimizer=torch.optim.Adam,
        metrics=luz.MetricSet(valid=[luz.metrics.Accuracy()]),
    ).set_hparams(in_features=5, out_features=3)
    fitted = module.fit(
        (x, y), epochs=2, valid_data=0.2, verbose=False, callbacks=[luz.callbacks.Mixup(auto_loss=True)]
    )
    valid = fitted.records["metrics"]["valid"][-1]
    assert set(valid) == {"loss", "acc"}
    losses = [entry["loss"] for entry in fitted.records["metrics"]["valid"]]
    assert all(isinstance(v, float) for v in losses)


def test_mixup_loss_averages_an_unreduced_loss_on_plain_targets() -> None:
    pred, y = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    loss = luz.MixupLoss(nn.CrossEntropyLoss(reduction="none"))
    assert torch.allclose(loss(pred, y), nn.functional.cross_entropy(pred, y))

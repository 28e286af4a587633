"""GradientAccumulation: optimizers step every ``steps`` batches on the loss scaled by 1/steps,
equal to one batch ``steps`` times as large; the partial last group steps; it composes with
GradientClip, MixedPrecision and steps_per_epoch; under DDP gradients are all-reduced only on
stepping batches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import IterableDataset

import luz
from luz.callbacks import GradientAccumulation, GradientClip, MixedPrecision
from tests.callbacks.test_resume import FailOnce, assert_identical
from tests.conftest import Linear, regression_data
from tests.test_distributed import assert_ok, load, torchrun


def module(optimizer: Any = torch.optim.SGD, **opt: Any) -> luz.LuzModule:
    return luz.setup(Linear, loss=nn.MSELoss(), optimizer=optimizer).set_opt_hparams(lr=0.1, **opt)


def counter(hook: str) -> tuple[luz.Callback, list[int]]:
    seen: list[int] = []
    return luz.callback(**{hook: lambda ctx: seen.append(ctx.iter)}), seen


def test_accumulating_equals_one_batch_of_steps_times_the_size() -> None:
    x, y = regression_data(64)
    options = {"shuffle": False}
    torch.manual_seed(3)
    small = module(momentum=0.9).fit(
        (x, y),
        epochs=3,
        callbacks=[GradientAccumulation(4)],
        verbose=False,
        dataloader_options={"batch_size": 4, **options},
    )
    torch.manual_seed(3)
    large = module(momentum=0.9).fit(
        (x, y), epochs=3, verbose=False, dataloader_options={"batch_size": 16, **options}
    )
    for a, b in zip(small.model.parameters(), large.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # The recorded loss is the unscaled batch loss: the averages of the same samples agree.
    assert small.records["metrics"]["train"][0]["loss"] == pytest.approx(
        large.records["metrics"]["train"][0]["loss"], rel=1e-5
    )


Batches = list[tuple[torch.Tensor, torch.Tensor]]


def hand_written(batches: Batches, steps: int, *, clip: float | None = None, amp: bool = False) -> nn.Module:
    """``loss / steps`` accumulated; step (after clipping) every ``steps`` batches and at the last."""
    model = Linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i, (x, y) in enumerate(batches, start=1):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = nn.functional.mse_loss(model(x), y)
        (loss / steps).backward()
        if i % steps == 0 or i == len(batches):
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(list(model.parameters()), clip)
            opt.step()
            opt.zero_grad()
    return model


def test_the_partial_last_group_steps_with_the_same_scale() -> None:
    x, y = regression_data(40)  # 10 batches of 4: groups of 4, 4 and 2
    batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 40, 4)]
    steps, steps_seen = counter("on_train_batch_after_step")
    before, before_seen = counter("on_train_batch_before_step")
    torch.manual_seed(1)
    fitted = module().fit(
        (x, y),
        epochs=1,
        callbacks=[GradientAccumulation(4), steps, before],
        verbose=False,
        dataloader_options={"batch_size": 4, "shuffle": False},
    )
    torch.manual_seed(1)
    assert_identical(fitted.model.state_dict(), hand_written(batches, 4).state_dict())
    assert steps_seen == before_seen == [4, 8, 10]


class Unsized(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Ten batches of 4 without a length: the last group is only known to end at its end."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.x), 4):
            yield self.x[i : i + 4], self.y[i : i + 4]


def test_data_without_a_length_steps_its_partial_group_at_the_end_of_training() -> None:
    x, y = regression_data(40)
    batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 40, 4)]
    steps, seen = counter("on_train_batch_after_step")
    torch.manual_seed(1)
    fitted = module().fit(
        Unsized(x, y),
        epochs=1,
        callbacks=[GradientAccumulation(3), steps],
        verbose=False,
        dataloader_options={"batch_size": None},
    )
    torch.manual_seed(1)
    assert_identical(fitted.model.state_dict(), hand_written(batches, 3).state_dict())
    assert seen == [3, 6, 9, 10]


def test_it_composes_with_gradient_clip_and_mixed_precision() -> None:
    x, y = regression_data(24)
    batches = [(x[i : i + 4], y[i : i + 4]) for i in range(0, 24, 4)]
    torch.manual_seed(2)
    callbacks = [MixedPrecision(), GradientAccumulation(4), GradientClip(max_norm=0.05)]
    options = {"batch_size": 4, "shuffle": False}
    fitted = module().fit((x, y), epochs=1, callbacks=callbacks, verbose=False, dataloader_options=options)
    torch.manual_seed(2)
    reference = hand_written(batches, 4, clip=0.05, amp=True)  # clipped once per accumulated step
    assert_identical(fitted.model.state_dict(), reference.state_dict())


def test_groups_restart_each_epoch_with_steps_per_epoch() -> None:
    steps, seen = counter("on_train_batch_after_step")
    module().fit(
        regression_data(64),
        epochs=2,
        steps_per_epoch=5,
        callbacks=[GradientAccumulation(3), steps],
        verbose=False,
        dataloader_options={"batch_size": 4},
    )
    assert seen == [3, 5, 3, 5]


def _accumulated_fit(path: Path, *extra: luz.Callback) -> luz.Fitted:
    torch.manual_seed(0)
    return module(torch.optim.Adam).fit(
        regression_data(40),
        epochs=3,
        callbacks=[GradientAccumulation(3), luz.callbacks.AutoResume(path), *extra],
        verbose=False,
        dataloader_options={"batch_size": 4},  # 10 batches: groups of 3, 3, 3 and 1
    )


def test_a_run_killed_mid_group_resumes_exactly(tmp_path: Path) -> None:
    with pytest.raises(luz.CallbackError):
        _accumulated_fit(tmp_path / "state.pt", FailOnce(2, "on_train_batch_end", iteration=5))
    resumed = _accumulated_fit(tmp_path / "state.pt")
    straight = _accumulated_fit(tmp_path / "straight.pt")
    assert_identical(resumed.model.state_dict(), straight.model.state_dict())
    assert_identical(resumed.records["metrics"], straight.records["metrics"], "records")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_steps_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="steps"):
        GradientAccumulation(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["2", None])
def test_steps_of_wrong_type_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="steps"):
        GradientAccumulation(bad)  # type: ignore[arg-type]


def test_closure_optimizers_are_refused() -> None:
    with pytest.raises(luz.CallbackError, match="closure"):
        module(torch.optim.LBFGS).fit(
            regression_data(16), epochs=1, callbacks=[GradientAccumulation(2)], verbose=False
        )


# -- under DDP -------------------------------------------------------------------------------------

_DDP = """
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
torch.manual_seed(0)
x = torch.randn(32, 5)
y = x @ torch.randn(5, 1)
reduced = []

class CountAllReduce(luz.Callback):
    def on_fit_begin(self):
        def hook(state, bucket):
            reduced.append((self.ctx.epoch, self.ctx.iter))
            return allreduce_hook(state, bucket)
        self.ctx.forward_model.register_comm_hook(None, hook)

module = (luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
          .set_hparams(in_features=5, out_features=1).set_opt_hparams(lr=0.1, momentum=0.9))
fitted = module.fit((x, y), epochs=2, verbose=False, dataloader_options={"batch_size": 2, "shuffle": False},
                    callbacks=[luz.callbacks.GradientAccumulation(4), CountAllReduce()])
dump("accumulated", {"weight": fitted.model.weight.tolist(), "bias": fitted.model.bias.tolist(),
                     "reduced": reduced})
"""


@pytest.mark.distributed
@pytest.mark.slow
def test_under_ddp_gradients_are_reduced_only_on_stepping_batches(tmp_path: Path) -> None:
    assert_ok(torchrun(_DDP, tmp_path))
    ranks = [load(tmp_path, "accumulated", rank) for rank in (0, 1)]
    assert ranks[0] == ranks[1]
    # 16 samples per rank in batches of 2: 8 batches, groups of 4, one all-reduce per group.
    assert ranks[0]["reduced"] == [[1, 4], [1, 8], [2, 4], [2, 8]]
    # 2 ranks x 4 batches x 2 samples == one process with batches of 16 and a mean loss.
    torch.manual_seed(0)
    x = torch.randn(32, 5)
    y = x @ torch.randn(5, 1)
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(2):
        for i in range(0, 32, 16):
            # DistributedSampler without shuffling deals sample j to rank j % 2: same samples.
            nn.functional.mse_loss(model(x[i : i + 16]), y[i : i + 16]).backward()
            opt.step()
            opt.zero_grad()
    torch.testing.assert_close(torch.tensor(ranks[0]["weight"]), model.weight.detach(), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(ranks[0]["bias"]), model.bias.detach(), rtol=0, atol=1e-6)


def test_an_epoch_left_mid_group_leaks_no_gradient_into_the_next() -> None:
    """SkipEpoch after 3 of 4 accumulated batches: the next epoch's first group starts from zero."""

    def skip_at_third(ctx: luz.Context) -> None:
        if ctx.epoch == 1 and ctx.iter == 3:
            raise luz.SkipEpoch

    grads: list[float] = []

    def first_grad(ctx: luz.Context) -> None:
        if ctx.epoch == 2 and ctx.iter == 1:
            grads.extend(float(p.grad.abs().sum()) for p in ctx.model.parameters() if p.grad is not None)

    module(momentum=0.0).fit(
        regression_data(32),
        epochs=2,
        callbacks=[
            GradientAccumulation(4),
            luz.callback(on_train_batch_end=skip_at_third),
            luz.callback(on_train_batch_begin=first_grad),
        ],
        verbose=False,
        dataloader_options={"batch_size": 4, "shuffle": False},
    )
    assert grads == [0.0] * len(grads)

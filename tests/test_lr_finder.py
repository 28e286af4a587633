"""lr_finder: the schedule, one record per batch across epochs, kept hyper-parameters, plots."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import pytest
import torch
from torch import nn

import luz
from luz.lr_finder import lr_schedule
from tests.conftest import Linear, regression_data, two_optimizer_model

matplotlib.use("Agg")


def _module() -> luz.LuzModule:
    return luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(in_features=10)


def test_lr_finder_records_one_row_per_step_across_epochs() -> None:
    x, y = regression_data(64)  # 2 batches per epoch: 100 steps span 50 epochs
    result = luz.lr_finder(_module(), (x, y), verbose=False)
    assert len(result.lr) == len(result.loss) == 100
    frame = result.to_frame()
    assert list(frame.columns) == ["lr", "loss"]
    assert frame.shape == (100, 2)
    assert all(math.isfinite(v) for v in result.loss)
    assert "100 steps" in repr(result)


def test_log_spaced_schedule_is_what_training_used() -> None:
    x, y = regression_data(100)
    result = luz.lr_finder(_module(), (x, y), steps=30, start_lr=1e-5, end_lr=1e-1, verbose=False)
    expected = [1e-5 * (1e-1 / 1e-5) ** (k / 30) for k in range(1, 31)]
    assert result.lr == pytest.approx(expected, rel=1e-12)
    assert result.lr[-1] == pytest.approx(1e-1)


def test_recurrence_schedule_follows_luz() -> None:
    rates = lr_schedule(4, 1e-4, 1.0, log_spaced_intervals=False)
    lr, expected = 1e-4, []
    for k in range(1, 5):
        lr = lr * (1.0 / lr) ** (k / 4)
        expected.append(lr)
    assert rates == pytest.approx(expected)
    assert rates[-1] == pytest.approx(1.0)
    assert rates != pytest.approx(lr_schedule(4, 1e-4, 1.0))


def test_other_optimizer_hparams_are_kept() -> None:
    seen: list[tuple[float, float]] = []

    class Spy(luz.Callback):
        def on_train_batch_end(self) -> None:
            group = self.context.opt.param_groups[0]
            seen.append((group["lr"], group["momentum"]))

    x, y = regression_data(100)
    module = _module().set_opt_hparams(lr=0.5, momentum=0.9)
    luz.lr_finder(module, (x, y), steps=5, verbose=False, callbacks=[Spy()])
    assert len(seen) == 5
    assert all(momentum == 0.9 for _, momentum in seen)
    assert seen[0][0] == pytest.approx(1e-7 * (0.1 / 1e-7) ** (1 / 5))


def test_dataloader_options_are_forwarded() -> None:
    batches: list[int] = []
    x, y = regression_data(100)
    luz.lr_finder(
        _module(),
        (x, y),
        steps=3,
        verbose=False,
        dataloader_options={"batch_size": 10},
        callbacks=[luz.callback(on_train_batch_begin=lambda ctx: batches.append(ctx.input.shape[0]))],
    )
    assert batches == [10, 10, 10]


def test_several_optimizers_are_an_error() -> None:
    Two = two_optimizer_model(("a", "b"))

    x, y = regression_data(100)
    with pytest.raises(ValueError, match="exactly one optimizer"):
        luz.lr_finder(luz.setup(Two, loss=nn.MSELoss()), (x, y), steps=3, verbose=False)


def test_bad_arguments() -> None:
    x, y = regression_data(100)
    with pytest.raises(ValueError, match="steps"):
        luz.lr_finder(_module(), (x, y), steps=0, verbose=False)
    with pytest.raises(ValueError, match="start_lr"):
        luz.lr_finder(_module(), (x, y), start_lr=1.0, end_lr=0.1, verbose=False)


def test_suggest_picks_the_steepest_descent_of_the_smoothed_loss() -> None:
    lrs = [10 ** (-6 + k * 0.1) for k in range(50)]
    # A loss that falls fastest around lr = 1e-3 (k = 30), then explodes.
    losses = [2.0 - math.tanh((k - 30) / 3) if k < 42 else 10.0 + k for k in range(50)]
    result = luz.LRFinderResult(lrs, losses)
    smooth = result.smoothed_loss()
    assert smooth[0] == pytest.approx(losses[0])  # bias correction: first value is the raw one
    suggestion = result.suggest()
    assert 10**-3.6 <= suggestion <= 10**-2.4


def test_plot_has_log_x_axis_and_two_lines(tmp_path: object) -> None:
    x, y = regression_data(100)
    result = luz.lr_finder(_module(), (x, y), steps=20, verbose=False)
    fig = result.plot()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert len(ax.get_lines()) == 2
    assert ax.get_lines()[0].get_linestyle() == ":"
    path = f"{tmp_path}/lr.png"
    fig.savefig(path)
    import os

    assert os.path.getsize(path) > 1000


def test_plot_is_not_registered_with_pyplot(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    plt.close("all")
    x, y = regression_data(64)
    fig = luz.lr_finder(_module(), (x, y), steps=10, verbose=False).plot()
    fig.savefig(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").read_bytes()[:4] == b"\x89PNG"
    assert plt.get_fignums() == []


def test_a_sweep_into_divergence_runs_every_step_without_the_nan_guard() -> None:
    # Rates up to 1e6 blow the loss up to inf/nan after a few epochs: fit's default NaN guard
    # would stop the sweep there with a warning (an error under this suite's filters).
    x, y = regression_data(64)
    result = luz.lr_finder(_module(), (x, y), steps=60, start_lr=1e-3, end_lr=1e6, verbose=False)
    assert len(result.lr) == len(result.loss) == 60
    assert not all(math.isfinite(v) for v in result.loss)  # it did diverge


def test_lr_finder_needs_a_luz_module() -> None:
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    with pytest.raises(
        TypeError, match=r"`module` must be a LuzModule, got the class Linear\. Pass luz\.setup"
    ):
        luz.lr_finder(nn.Linear, (x, y), verbose=False)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`module` must be a LuzModule, got Linear\(.*\(torch\.Linear\)"):
        luz.lr_finder(nn.Linear(3, 1), (x, y), verbose=False)  # type: ignore[arg-type]


def test_lr_finder_verbose_off_a_terminal_writes_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = regression_data(64)
    luz.lr_finder(_module(), (x, y), steps=10, start_lr=1e-4, end_lr=1e-2, verbose=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "Finding the learning rate: 10/10 steps from 0.0001 to 0.01.\n"  # no \r redraws

"""Progress output (captured from stderr)."""

from __future__ import annotations

import io
import itertools
import re
import sys
from collections.abc import Callable

import pytest
import torch
from torch import nn

import luz
from luz.callbacks.progress import Progress
from tests.conftest import Linear, regression_data


def fitted_and_data(verbose: bool = False) -> tuple[luz.Fitted, torch.Tensor]:
    x, y = regression_data()
    fitted = (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=2, valid_data=(x, y), verbose=verbose, callbacks=[Progress(mode="bar")])
    )
    return fitted, x


def test_fit_progress_output(capsys: pytest.CaptureFixture[str]) -> None:
    fitted_and_data(verbose=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err
    lines = [line for chunk in err.split("\n") for line in chunk.split("\r") if line.strip()]
    assert "Epoch 1/2" in lines and "Epoch 2/2" in lines
    train = [line for line in lines if line.startswith("Train metrics: Loss: ")]
    valid = [line for line in lines if line.startswith("Valid metrics: Loss: ")]
    assert len(train) == 2 and len(valid) == 2
    assert re.fullmatch(r"Train metrics: Loss: \d+\.\d{4}", train[0])
    bars = [line for line in lines if re.search(r"\d+/\d+ \[", line)]
    assert any(line.startswith("3/3 [") and "Loss:" in line for line in bars)  # training bar
    assert any(line.startswith("4/4 [") and "Loss:" in line for line in bars)  # validation bar
    assert (
        err.index("Epoch 1/2")
        < err.index("Train metrics")
        < err.index("Valid metrics")
        < err.index("Epoch 2/2")
    )


def test_silent_when_not_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    fitted, x = fitted_and_data(verbose=False)
    fitted.predict(x, verbose=False)
    fitted.evaluate((x, x[:, :1]), verbose=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_predict_progress(capsys: pytest.CaptureFixture[str]) -> None:
    # R row 57: 100 rows, batch 2 -> 50 batches
    fitted, x = fitted_and_data()
    fitted.predict(x, verbose=True, dataloader_options={"batch_size": 2}, callbacks=[Progress(mode="bar")])
    err = capsys.readouterr().err
    assert "50/50 [" in err
    assert "Loss" not in err


def test_evaluate_progress(capsys: pytest.CaptureFixture[str]) -> None:
    fitted, x = fitted_and_data()
    fitted.evaluate((x, x[:, :1]), verbose=True, callbacks=[Progress(mode="bar")])
    err = capsys.readouterr().err
    assert "4/4 [" in err and "Loss:" in err
    assert "Epoch" not in err


def test_progress_to_a_file_and_metric_names() -> None:
    stream = io.StringIO()
    x = torch.randn(64, 10)
    y = torch.randint(0, 3, (64,))
    luz.setup(
        Linear, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.SGD, metrics=[luz.metrics.Accuracy()]
    ).set_hparams(out_features=3).set_opt_hparams(lr=0.1).fit(
        (x, y), epochs=1, callbacks=[Progress(refresh=0.0, file=stream)], verbose=True
    )
    text = stream.getvalue()
    assert re.search(r"Train: Loss: \d+\.\d{4} - Acc: \d\.\d{4}", text)  # a file: one line per epoch
    assert "- Acc: " in text


def test_iterable_data_shows_rate(capsys: pytest.CaptureFixture[str]) -> None:
    from torch.utils.data import IterableDataset

    class Stream(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            for _ in range(40):
                yield torch.randn(10), torch.randn(1)

    luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01).fit(
        Stream(),
        epochs=1,
        dataloader_options={"batch_size": 10},
        verbose=True,
        callbacks=[Progress(mode="bar")],
    )
    err = capsys.readouterr().err
    assert "4/? [" in err and "it/s - Loss: " in err
    assert "ETA" not in err  # no estimate without a length


def test_verbose_none_is_silent_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = regression_data()
    fitted = (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=1)
    )
    fitted.predict(x)
    assert capsys.readouterr().err == ""


# -- the three forms ------------------------------------------------------------------------------


class CountingMAE(luz.metrics.MAE):
    """MAE that counts its compute() calls (each one a host sync)."""

    computes = 0

    def compute(self):  # type: ignore[no-untyped-def]
        CountingMAE.computes += 1
        return super().compute()


def _counting_fit(progress: Progress, epochs: int = 2) -> None:
    x, y = regression_data()
    CountingMAE.computes = 0
    luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[CountingMAE()]).set_opt_hparams(
        lr=0.01
    ).fit((x, y), epochs=epochs, valid_data=(x, y), verbose=True, callbacks=[progress])


def fake_clock(step: float = 0.5) -> Callable[[], float]:
    ticks = itertools.count()
    return lambda: next(ticks) * step


def test_lines_form_computes_no_running_metrics() -> None:
    # Off a terminal nothing is drawn during a phase: the only computes are the Metrics
    # callback's own, one per phase (2 epochs x train and valid), none per batch.
    _counting_fit(Progress(file=io.StringIO()))
    lines_computes = CountingMAE.computes
    _counting_fit(Progress(file=io.StringIO(), mode="bar", refresh=10**9))
    bar_computes = CountingMAE.computes
    assert lines_computes == 4  # train batches: 3, valid: 4 per epoch
    # A bar's end shows the values Metrics just recorded: no compute of its own (a huge
    # refresh means no redraw during the phase either).
    assert bar_computes == 4
    _counting_fit(Progress(file=io.StringIO(), mode="bar", refresh=0))
    assert CountingMAE.computes == 4 + 2 * (3 + 4)  # refresh=0: a redraw at every batch


def test_a_file_gets_the_lines_form_with_evaluate_and_predict_lines() -> None:
    stream = io.StringIO()
    progress = Progress(file=stream, clock=fake_clock())
    assert progress.resolved_mode() == "lines"
    fitted, x = fitted_and_data()
    fitted.evaluate((x, x[:, :1]), verbose=True, callbacks=[progress])
    fitted.predict(x, verbose=True, callbacks=[progress], dataloader_options={"batch_size": 25})
    # the clock is read at the start and the end of a pass only (each reading: +0.5 s)
    assert re.fullmatch(
        r"Evaluate: 4/4 batches - 500ms - Loss: \d+\.\d{4}\nPredict: 4/4 batches - 500ms\n", stream.getvalue()
    )


def test_lines_form_without_a_length_counts_batches() -> None:
    from torch.utils.data import IterableDataset

    class Stream(IterableDataset[torch.Tensor]):
        def __iter__(self):  # type: ignore[no-untyped-def]
            for _ in range(30):
                yield torch.randn(10)

    fitted, _ = fitted_and_data()
    stream = io.StringIO()
    fitted.predict(
        Stream(), verbose=True, callbacks=[Progress(file=stream, clock=fake_clock())],
        dataloader_options={"batch_size": 10},
    )  # fmt: skip
    assert stream.getvalue() == "Predict: 3 batches - 500ms\n"


def test_your_progress_replaces_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[list[str]] = []
    probe = luz.callback(on_fit_begin=lambda ctx: seen.append([type(cb).__name__ for cb in ctx.callbacks]))
    stream = io.StringIO()
    x, y = regression_data()
    luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01).fit(
        (x, y), epochs=1, verbose=True, callbacks=[probe, Progress(file=stream)]
    )
    assert seen[0].count("Progress") == 1
    assert capsys.readouterr().err == ""  # no default bar next to yours
    assert stream.getvalue().startswith("Epoch 1/1 - ")


def test_an_interrupt_ends_the_bar_line_before_the_note(capsys: pytest.CaptureFixture[str]) -> None:
    stop = luz.callback(on_train_batch_end=lambda ctx: _interrupt_at(ctx, 2))
    x, y = regression_data()
    fitted = (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.01)
        .fit((x, y), epochs=3, verbose=True, callbacks=[Progress(mode="bar", refresh=0), stop])
    )
    assert fitted.stop_reason is not None and "interrupted" in fitted.stop_reason
    last = capsys.readouterr().err.rsplit("\r", 1)[1]  # the bar cut at batch 2 of epoch 2, then the note
    assert re.fullmatch(
        r"2/3 \[={20} {10}\] - ETA: \S+ - Loss: \d+\.\d{4}\n"
        r"Training interrupted at epoch 2; returning the model trained so far\.\n",
        last,
    )


def _interrupt_at(ctx: luz.Context, epoch: int) -> None:
    if ctx.epoch == epoch and ctx.iter == 2:
        raise KeyboardInterrupt


def test_mode_and_clock_are_checked() -> None:
    with pytest.raises(
        ValueError, match=r"`mode` must be one of 'auto', 'bar', 'lines', 'notebook', got 'tty'"
    ):
        Progress(mode="tty")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`mode` must be one of 'auto', .*, got None \(NoneType\)"):
        Progress(mode=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"`clock` must be a function returning seconds, got float"):
        Progress(clock=1.0)  # type: ignore[arg-type]


def test_notebook_mode_without_ipywidgets_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import ipywidgets now fails
    x, y = regression_data()
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01)
    with pytest.raises(ImportError, match=r"needs ipywidgets.*pip install ipywidgets"):
        module.fit((x, y), epochs=1, verbose=True, callbacks=[Progress(mode="notebook")])


def test_an_instance_reused_after_a_failed_fit_reports_the_next_evaluation() -> None:
    stream = io.StringIO()
    progress = Progress(file=stream, clock=fake_clock())
    boom = luz.callback(on_epoch_end=lambda ctx: (_ for _ in ()).throw(ValueError("boom")))
    x, y = regression_data()
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01)
    with pytest.raises(ValueError, match="boom"):
        module.fit((x, y), epochs=2, verbose=True, callbacks=[progress, boom])
    fitted = module.fit((x, y), epochs=1, verbose=False)
    fitted.evaluate((x, y), verbose=True, callbacks=[progress])
    assert re.fullmatch(
        r"Epoch 1/2 - \S+ - Train: Loss: \S+\nEvaluate: 4/4 batches - 500ms - Loss: \S+\n", stream.getvalue()
    )

"""Progress output (captured from stderr)."""

from __future__ import annotations

import io
import re

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

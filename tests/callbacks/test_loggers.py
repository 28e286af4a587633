"""CSVLogger and TensorBoard: files written by real (tiny) fits."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.callbacks import CSVLogger, EarlyStopping, TensorBoard
from tests.conftest import Linear, regression_data, two_optimizer_model


def _fit(callbacks: list[Any], epochs: Any = 5, valid: bool = False, module: Any = None) -> luz.Fitted:
    x, y = regression_data(n=32)
    if module is None:
        module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.01)
    return module.fit(
        (x, y),
        epochs=epochs,
        valid_data=(x, y) if valid else None,
        callbacks=callbacks,
        verbose=False,
        dataloader_options={"batch_size": 16},
    )


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    header = path.read_text().splitlines()[0].split(",")
    return header, rows


def test_csv_rows_without_and_with_validation(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    fitted = _fit([CSVLogger(path)])
    header, rows = _read(path)
    assert header == ["epoch", "set", "loss"]
    assert [(r["epoch"], r["set"]) for r in rows] == [(str(e), "train") for e in range(1, 6)]
    losses = [e["loss"] for e in fitted.records["metrics"]["train"]]
    assert [float(r["loss"]) for r in rows] == pytest.approx(losses, rel=1e-12)

    _fit([CSVLogger(path)], valid=True)  # a new instance starts the file over
    header, rows = _read(path)
    assert header == ["epoch", "set", "loss"]
    assert len(rows) == 10
    assert [r["set"] for r in rows[:2]] == ["train", "valid"]
    assert not [p for p in tmp_path.iterdir() if p.name != "log.csv"]  # no temporary files left


def test_csv_matches_get_metrics_after_early_stopping(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "log.csv"
    fitted = _fit([CSVLogger(path), EarlyStopping(patience=1, min_delta=100.0)], epochs=25, valid=True)
    _, rows = _read(path)
    frame = luz.get_metrics(fitted)
    assert len(rows) == len(frame) == 4
    csv_values = sorted((r["set"], "loss", int(r["epoch"]), float(r["loss"])) for r in rows)
    frame_values = sorted(frame[["set", "metric", "epoch", "value"]].itertuples(index=False, name=None))
    assert csv_values == frame_values


def test_csv_union_of_differing_metric_sets(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    metrics = luz.MetricSet(valid=[luz.metrics.MAE()])
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=metrics)
    _fit([CSVLogger(path)], epochs=2, valid=True, module=module.set_opt_hparams(lr=0.01))
    header, rows = _read(path)
    assert header == ["epoch", "set", "loss", "mae"]
    assert [r["mae"] == "" for r in rows] == [True, False, True, False]


TwoOpt = two_optimizer_model(("gen", "disc"), bias=False)  # two parameters, as in luz's test


def test_csv_flattens_per_optimizer_losses(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    _fit([CSVLogger(path)], epochs=2, module=luz.setup(TwoOpt, loss=nn.MSELoss()))
    header, rows = _read(path)
    assert header == ["epoch", "set", "loss_gen", "loss_disc"]
    assert len(rows) == 2


def test_csv_state_dict_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    first = CSVLogger(path)
    _fit([first], epochs=2)
    resumed = CSVLogger(path)
    resumed.load_state_dict(first.state_dict())
    _fit([resumed], epochs=1)
    _, rows = _read(path)
    assert [r["epoch"] for r in rows] == ["1", "2", "1"]


needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed"
)


@needs_tensorboard
def test_tensorboard_scalars_and_histograms(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _fit(
        [TensorBoard(tmp_path, histograms=True)],
        epochs=10,
        valid=True,
        module=luz.setup(TwoOpt, loss=nn.MSELoss()),
    )
    scalars = 0
    for run in ("train", "valid"):
        acc = EventAccumulator(str(tmp_path / run)).Reload()
        assert sorted(acc.Tags()["scalars"]) == ["loss/disc", "loss/gen"]
        events = acc.Scalars("loss/gen")
        assert [e.step for e in events] == list(range(1, 11))
        scalars += sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"])
    assert scalars == 40
    weights = EventAccumulator(str(tmp_path / "weights"), size_guidance={"histograms": 0}).Reload()
    tags = weights.Tags()["histograms"]
    assert sorted(tags) == ["a.weight", "b.weight"]
    assert sum(len(weights.Histograms(t)) for t in tags) == 20


@needs_tensorboard
def test_tensorboard_selected_histograms(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _fit([TensorBoard(tmp_path, histograms=["fc.weight"])], epochs=3)
    weights = EventAccumulator(str(tmp_path / "weights"), size_guidance={"histograms": 0}).Reload()
    assert weights.Tags()["histograms"] == ["fc.weight"]
    assert len(weights.Histograms("fc.weight")) == 3
    with pytest.raises(ValueError, match=r"fc\.bias"):
        _fit([TensorBoard(tmp_path, histograms=["nope"])], epochs=1)


def test_tensorboard_missing_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else real(name, *a)
    )
    with pytest.raises(ImportError, match=r"pip install 'pyluz\[tensorboard\]'"):
        TensorBoard()


def test_importing_luz_does_not_import_tensorboard_mlflow_or_wandb() -> None:
    import subprocess
    import sys

    lazy = ("tensorboard", "torch.utils.tensorboard", "mlflow", "wandb")
    code = f"import sys, luz; sys.exit(any(m in sys.modules for m in {lazy!r}))"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_csv_logger_path_is_checked_at_construction(tmp_path: Path) -> None:
    (tmp_path / "file.txt").write_text("keep")
    with pytest.raises(ValueError, match=r"is an existing directory, not a file\. Name a CSV file inside it"):
        CSVLogger(tmp_path)
    with pytest.raises(ValueError, match=r"file\.txt', which is a file"):
        CSVLogger(tmp_path / "file.txt" / "log.csv")
    with pytest.raises(TypeError, match=r"`path` must be a str or os.PathLike, got 3 \(int\)"):
        CSVLogger(3)  # type: ignore[arg-type]
    assert (tmp_path / "file.txt").read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]

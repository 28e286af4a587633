"""WandbLogger in W&B's offline mode, read back from the run's own ``.wandb`` transaction log
(parsed with wandb's protobuf ``Record`` messages). No account, no network."""

from __future__ import annotations

import json
import struct
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.callbacks import EarlyStopping, LRMonitor, WandbLogger
from tests.callbacks.test_tracking import fit_tracked
from tests.conftest import Linear

wandb = pytest.importorskip("wandb")


@pytest.fixture(autouse=True)
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B offline, writing under a temporary directory, quiet, without console capture."""
    for name, value in {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path),
        "WANDB_CONFIG_DIR": str(tmp_path / "config"),
        "WANDB_CACHE_DIR": str(tmp_path / "cache"),
        "WANDB_DATA_DIR": str(tmp_path / "data"),
        "WANDB_SILENT": "true",
        "WANDB_CONSOLE": "off",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    yield tmp_path
    if wandb.run is not None:  # a failed test may leave a run of its own open
        wandb.finish()


# -- reading a .wandb file: LevelDB-style log blocks of wandb Record protobufs ----------------

_BLOCK, _HEADER = 32768, 7  # block size; the file header and each chunk header are 7 bytes
_FULL, _FIRST, _LAST = 1, 2, 4


def _records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    records, chunks, pos = [], [], _HEADER
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _HEADER])
        if left < _HEADER or (kind == 0 and length == 0):  # the padding at a block's end
            pos += left
            continue
        if pos + _HEADER + length > len(data):  # a chunk still being written
            break
        chunks = [] if kind in (_FULL, _FIRST) else chunks
        chunks.append(data[pos + _HEADER : pos + _HEADER + length])
        pos += _HEADER + length
        if kind in (_FULL, _LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(b"".join(chunks))
            records.append(record)
    return records


def _finished_records(run: Any) -> list[Any]:
    """The records of a finished run's log. wandb's writer (the wandb-core process) may still
    be flushing when ``finish()`` returns, so read until the exit record is there."""
    (path,) = Path(run.settings.sync_dir).glob("run-*.wandb")
    deadline = time.monotonic() + 60
    while True:
        records = _records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def _read_run(run: Any) -> dict[str, Any]:
    """What the offline run wrote: project, config, history rows (by step) and exit code."""
    out: dict[str, Any] = {"config": {}, "history": [], "exit_code": None}
    for record in _finished_records(run):
        kind = record.WhichOneof("record_type")
        updates = []
        if kind == "run":
            out["project"] = record.run.project
            updates = list(record.run.config.update)
        elif kind == "config":
            updates = list(record.config.update)
        elif kind == "history":
            row = {
                "/".join(item.nested_key) or item.key: json.loads(item.value_json)
                for item in record.history.item
            }
            out["history"].append({k: v for k, v in row.items() if not k.startswith("_") or k == "_step"})
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
        for item in updates:
            if item.key != "_wandb":
                out["config"][item.key] = json.loads(item.value_json)
    return out


def _module(**hparams: Any) -> luz.LuzModule:
    return (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(**hparams)
        .set_opt_hparams(lr=0.05)
    )


def _fit(callbacks: list[Any], epochs: int = 3, module: luz.LuzModule | None = None) -> luz.Fitted:
    return fit_tracked(module or _module(), callbacks, epochs)


def _expected_rows(fitted: luz.Fitted) -> list[dict[str, Any]]:
    rows: dict[int, dict[str, Any]] = {}
    for row in fitted.get_metrics().itertuples():
        rows.setdefault(row.epoch, {"_step": row.epoch, "epoch": row.epoch})[f"{row.set}_{row.metric}"] = (
            row.value
        )
    return [rows[e] for e in sorted(rows)]


@pytest.mark.slow
def test_config_and_every_epochs_metrics_are_logged() -> None:
    cb = WandbLogger(project="demo", name="baseline", tags=["t"])
    fitted = _fit([cb, LRMonitor()], module=_module(in_features=10))
    assert wandb.run is None  # the callback finished its run
    written = _read_run(cb.run)
    assert written["project"] == "demo"
    assert written["config"] == {"in_features": 10, "lr": 0.05}
    assert written["history"] == _expected_rows(fitted)  # every value, at step = epoch
    assert [row["train_lr"] for row in written["history"]] == [0.05, 0.05, 0.05]
    assert written["exit_code"] == 0


@pytest.mark.slow
def test_how_the_fit_ended_is_the_exit_code() -> None:
    class Boom(luz.Callback):
        def on_train_batch_end(self) -> None:
            if self.ctx.epoch == 2:
                raise RuntimeError("boom")

    class CtrlC(luz.Callback):
        def on_train_batch_end(self) -> None:
            if self.ctx.epoch == 2:
                raise KeyboardInterrupt

    failed = WandbLogger(project="demo")
    with pytest.raises(RuntimeError, match="boom"):
        _fit([failed, Boom()])
    killed = WandbLogger(project="demo")
    _fit([killed, CtrlC()])
    stopped = WandbLogger(project="demo")
    _fit([stopped, EarlyStopping(min_delta=100.0, patience=1)], epochs=20)
    assert wandb.run is None
    runs = {
        name: _read_run(cb.run) for name, cb in [("failed", failed), ("killed", killed), ("stopped", stopped)]
    }
    assert {name: run["exit_code"] for name, run in runs.items()} == {
        "failed": 1,
        "killed": 255,
        "stopped": 0,
    }
    assert [[row["_step"] for row in run["history"]] for run in runs.values()] == [[1], [1], [1, 2]]


@pytest.mark.slow
def test_a_run_the_user_started_is_logged_into_and_left_open() -> None:
    run = wandb.init(project="mine", config={"batch_size": 16})
    try:
        cb = WandbLogger()
        fitted = _fit([cb], module=_module(in_features=10))
        assert cb.run is run and wandb.run is run  # still open
        # A second fit in the same run continues after its steps (W&B drops steps that go back).
        with pytest.warns(
            UserWarning, match=r"logging into the active W&B run .*`project` and the wandb.init"
        ):
            second = _fit([WandbLogger(project="other")], epochs=2)
    finally:
        run.finish()
    written = _read_run(run)
    assert written["project"] == "mine"
    assert written["config"] == {"batch_size": 16, "in_features": 10, "lr": 0.05}
    later = [{**row, "_step": row["_step"] + 3} for row in _expected_rows(second)]
    assert written["history"] == _expected_rows(fitted) + later
    assert written["exit_code"] == 0


def test_bad_arguments_and_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match=r"`project` must be a non-empty str or None, got 1 \(int\)"):
        WandbLogger(project=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`project` must be a non-empty str or None, got ''"):
        WandbLogger(project="")
    assert repr(WandbLogger("p", mode="offline")) == "WandbLogger(project='p', mode='offline')"
    monkeypatch.setitem(sys.modules, "wandb", None)  # what an absent package looks like to import
    with pytest.raises(ImportError, match=r"WandbLogger needs the `wandb` package.*'pyluz\[wandb\]'"):
        WandbLogger()

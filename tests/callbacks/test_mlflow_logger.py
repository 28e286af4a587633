"""MLflowLogger against a real local MLflow file store, read back with MlflowClient."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz.callbacks import EarlyStopping, LRMonitor, MLflowLogger
from tests.callbacks.test_tracking import fit_tracked
from tests.conftest import Linear, two_optimizer_model

mlflow = pytest.importorskip("mlflow")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A file tracking store in a temporary directory, also MLflow's current URI."""
    # mlflow >= 3.7 refuses a plain file store unless told; mlflow-skinny has no SQL store.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    return uri


class Net(nn.Module):
    """A linear model with a nested hparam and one that shares its name with an opt_hparam."""

    def __init__(
        self, in_features: int = 10, extra: dict[str, Any] | None = None, scale: float = 1.0
    ) -> None:
        super().__init__()
        self.fc = Linear(in_features)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * self.scale


def scaled_sgd(params: Any, lr: float, scale: float = 1.0, momentum: float = 0.0) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr * scale, momentum=momentum)


def _module(**hparams: Any) -> luz.LuzModule:
    module = luz.setup(Net, loss=nn.MSELoss(), optimizer=scaled_sgd)
    return module.set_hparams(**hparams).set_opt_hparams(lr=0.05, momentum=0.5)


def _fit(callbacks: list[Any], epochs: Any = 3, module: luz.LuzModule | None = None) -> luz.Fitted:
    return fit_tracked(module or _module(), callbacks, epochs)


def _history(client: Any, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), ...]}`` of a run, as MLflow stored them."""
    run = client.get_run(run_id)
    return {
        key: [(m.step, m.value) for m in client.get_metric_history(run_id, key)] for key in run.data.metrics
    }


def _expected(fitted: luz.Fitted) -> dict[str, list[tuple[int, float]]]:
    """The same from the fit's records, with monitor names."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in fitted.get_metrics().itertuples():
        expected.setdefault(f"{row.set}_{row.metric}", []).append((row.epoch, row.value))
    return expected


def test_params_and_every_epochs_metrics_are_logged(store: str) -> None:
    cb = MLflowLogger(experiment_name="demo", run_name="baseline", tracking_uri=store)
    fitted = _fit([cb, LRMonitor()], module=_module(in_features=10, extra={"depth": 2, "act": nn.ReLU}))
    client = mlflow.MlflowClient(tracking_uri=store)
    run = client.get_run(cb.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "baseline"
    assert client.get_experiment(run.info.experiment_id).name == "demo"
    assert run.data.params == {
        "in_features": "10",
        "extra.depth": "2",
        "extra.act": "torch.nn.modules.activation.ReLU",
        "lr": "0.05",
        "momentum": "0.5",
    }
    history = _history(client, cb.run_id)
    assert set(history) == {"train_loss", "train_lr", "valid_loss"}
    assert history == _expected(fitted)  # every value, at step = epoch
    assert history["train_lr"] == [(1, 0.05), (2, 0.05), (3, 0.05)]
    assert mlflow.active_run() is None  # the callback's run is not left active


def test_a_key_in_hparams_and_opt_hparams_is_logged_under_both_prefixes(store: str) -> None:
    module = luz.setup(Net, loss=nn.MSELoss(), optimizer=scaled_sgd)
    cb = MLflowLogger(tracking_uri=store)
    _fit([cb], epochs=1, module=module.set_hparams(scale=2.0).set_opt_hparams(lr=0.01, scale=0.5))
    client = mlflow.MlflowClient(tracking_uri=store)
    run = client.get_run(cb.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "Default"
    assert run.data.params == {"hparams.scale": "2.0", "opt_hparams.scale": "0.5", "lr": "0.01"}


def test_dict_metrics_are_flattened(store: str) -> None:
    model = two_optimizer_model(("gen", "disc"))
    cb = MLflowLogger(tracking_uri=store)
    fitted = _fit([cb], epochs=2, module=luz.setup(model, loss=nn.MSELoss()).set_opt_hparams(lr=0.02))
    client = mlflow.MlflowClient(tracking_uri=store)
    assert client.get_run(cb.run_id).data.params == {"lr": "0.02"}
    history = _history(client, cb.run_id)
    assert set(history) == {"train_loss_gen", "train_loss_disc", "valid_loss_gen", "valid_loss_disc"}
    assert history == _expected(fitted)


def test_early_stopping_ends_the_run_finished_with_every_epoch(store: str) -> None:
    cb = MLflowLogger(tracking_uri=store)
    fitted = _fit([cb, EarlyStopping(monitor="valid_loss", min_delta=100.0, patience=1)], epochs=20)
    assert fitted.stop_reason is not None
    assert fitted.stop_reason.startswith("EarlyStopping stopped training at epoch 2")
    client = mlflow.MlflowClient(tracking_uri=store)
    assert client.get_run(cb.run_id).info.status == "FINISHED"
    assert [step for step, _ in _history(client, cb.run_id)["valid_loss"]] == [1, 2]


def test_an_epoch_cut_short_at_its_end_is_still_logged(store: str) -> None:
    # A callback that runs before the logger stops training at epoch 2's end: the epoch is
    # kept in the records, so it is logged (at on_fit_end) too.
    class StopFirst(luz.Callback):
        weight = -1.0

        def on_epoch_end(self) -> None:
            if self.ctx.epoch == 2:
                raise luz.StopTraining("enough")

    cb = MLflowLogger(tracking_uri=store)
    fitted = _fit([cb, StopFirst()], epochs=5)
    history = _history(mlflow.MlflowClient(tracking_uri=store), cb.run_id)
    assert history == _expected(fitted)
    assert [step for step, _ in history["train_loss"]] == [1, 2]


def test_an_error_ends_the_run_failed(store: str) -> None:
    class Boom(luz.Callback):
        def on_train_batch_end(self) -> None:
            if self.ctx.epoch == 2:
                raise RuntimeError("boom")

    cb = MLflowLogger(tracking_uri=store)
    with pytest.raises(RuntimeError, match="boom"):
        _fit([cb, Boom()])
    client = mlflow.MlflowClient(tracking_uri=store)
    run = client.get_run(cb.run_id)
    assert run.info.status == "FAILED"
    assert [step for step, _ in _history(client, cb.run_id)["train_loss"]] == [1]


def test_an_interrupt_ends_the_run_killed(store: str) -> None:
    class CtrlC(luz.Callback):
        def on_train_batch_end(self) -> None:
            if self.ctx.epoch == 3 and self.ctx.iter == 2:
                raise KeyboardInterrupt

    cb = MLflowLogger(tracking_uri=store)
    fitted = _fit([cb, CtrlC()], epochs=5)
    assert fitted.stop_reason == "interrupted (KeyboardInterrupt) during epoch 3"
    client = mlflow.MlflowClient(tracking_uri=store)
    assert client.get_run(cb.run_id).info.status == "KILLED"
    assert [step for step, _ in _history(client, cb.run_id)["train_loss"]] == [1, 2]


def test_a_resumed_fit_logs_the_epochs_it_trains(store: str, tmp_path: Path) -> None:
    class CrashAt3(luz.Callback):
        def on_epoch_begin(self) -> None:
            if self.ctx.epoch == 3:
                raise RuntimeError("crash")

    state = tmp_path / "state.pt"
    first = MLflowLogger(tracking_uri=store)
    with pytest.raises(RuntimeError, match="crash"):
        _fit([first, luz.callbacks.AutoResume(state), CrashAt3()], epochs=4)
    second = MLflowLogger(tracking_uri=store)
    fitted = _fit([second, luz.callbacks.AutoResume(state)], epochs=4)
    client = mlflow.MlflowClient(tracking_uri=store)
    assert client.get_run(first.run_id).info.status == "FAILED"
    assert client.get_run(second.run_id).info.status == "FINISHED"
    expected = _expected(fitted)  # all four epochs; each run has the ones it trained
    assert _history(client, first.run_id) == {k: v[:2] for k, v in expected.items()}
    assert _history(client, second.run_id) == {k: v[2:] for k, v in expected.items()}


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name == "nt", reason="POSIX signals")
def test_a_sigterm_ends_the_run_killed(store: str) -> None:
    def send(ctx: luz.Context) -> None:
        if (ctx.epoch, ctx.iter) == (2, 1):
            os.kill(os.getpid(), signal.SIGTERM)  # a scheduler's preemption

    cb = MLflowLogger(tracking_uri=store)
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(luz.Terminated):
        _fit([cb, luz.callback(on_train_batch_begin=send, weight=-1)])
    assert signal.getsignal(signal.SIGTERM) is previous
    client = mlflow.MlflowClient(tracking_uri=store)
    assert client.get_run(cb.run_id).info.status == "KILLED"
    assert [step for step, _ in _history(client, cb.run_id)["train_loss"]] == [1]


def test_a_run_the_user_started_is_logged_into_and_left_open(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    with mlflow.start_run() as outer:
        cb = MLflowLogger()
        fitted = _fit([cb])
        assert cb.run_id == outer.info.run_id
        active = mlflow.active_run()
        assert active is not None and active.info.run_id == outer.info.run_id
        client = mlflow.MlflowClient()
        assert client.get_run(outer.info.run_id).info.status == "RUNNING"
        assert _history(client, outer.info.run_id) == _expected(fitted)
        with pytest.warns(UserWarning, match=r"logging into the active MLflow run .*`run_name` are not"):
            _fit([MLflowLogger(run_name="ignored")], epochs=1)
        # A later fit with other parameter values: MLflow forbids changing them, so they are
        # not logged (a warning names them) and the fit runs.
        with pytest.warns(UserWarning, match=r"not logged: lr='0.2' \(run has '0.05'\)"):
            _fit([MLflowLogger()], epochs=1, module=_module().set_opt_hparams(lr=0.2, momentum=0.5))
        assert client.get_run(outer.info.run_id).data.params == {"lr": "0.05", "momentum": "0.5"}
    assert client.get_run(outer.info.run_id).info.status == "FINISHED"
    # An error inside the user's run does not end it either.
    with mlflow.start_run() as outer:
        with pytest.raises(luz.CallbackError):
            _fit([MLflowLogger(), luz.callback(on_epoch_end=lambda ctx: 1 / 0)])
        assert client.get_run(outer.info.run_id).info.status == "RUNNING"


def test_without_an_experiment_name_mlflows_choice_is_used(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    cb = MLflowLogger(run_name="r")
    _fit([cb], epochs=1)
    client = mlflow.MlflowClient()
    run = client.get_run(cb.run_id)
    assert client.get_experiment(run.info.experiment_id).name == "from-env"
    assert run.info.status == "FINISHED"


def test_bad_arguments_and_a_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TypeError, match=r"`experiment_name` must be a non-empty str or None, got 3 \(int\)"):
        MLflowLogger(experiment_name=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"`tracking_uri` must be a non-empty str or None, got ''"):
        MLflowLogger(tracking_uri="")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what an absent package looks like to import
    with pytest.raises(
        ImportError, match=r"MLflowLogger needs the `mlflow` package.*pip install 'pyluz\[mlflow\]'"
    ):
        MLflowLogger()


_DDP_SCRIPT = """
from luz.callbacks import MLflowLogger
torch.manual_seed(0)
x, y = torch.randn(48, 10), torch.randn(48, 1)
cb = MLflowLogger(experiment_name="ddp", tracking_uri=sys.argv[2])
fitted = (
    luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    .set_hparams(in_features=10, out_features=1).set_opt_hparams(lr=0.05)
    .fit((x, y), epochs=2, valid_data=(x[:16], y[:16]), callbacks=[cb], verbose=False,
         dataloader_options={"batch_size": 8})
)
dump("mlflow", {"run_id": cb.run_id, "metrics": fitted.get_metrics().to_dict("records")})
"""


@pytest.mark.distributed
@pytest.mark.slow
def test_under_ddp_rank_0_alone_logs_the_reduced_metrics(store: str, tmp_path: Path) -> None:
    from tests.test_distributed import assert_ok, load, torchrun

    assert_ok(torchrun(_DDP_SCRIPT, tmp_path, store))
    ranks = [load(tmp_path, "mlflow", rank) for rank in (0, 1)]
    assert ranks[1]["run_id"] is None and ranks[0]["run_id"] is not None
    assert ranks[0]["metrics"] == ranks[1]["metrics"]  # the records are the same on every rank
    client = mlflow.MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("ddp")
    (run,) = client.search_runs([experiment.experiment_id])  # one run, not one per rank
    assert run.info.run_id == ranks[0]["run_id"] and run.info.status == "FINISHED"
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in ranks[0]["metrics"]:
        expected.setdefault(f"{row['set']}_{row['metric']}", []).append((row["epoch"], row["value"]))
    assert _history(client, run.info.run_id) == expected

"""The bad-input sweep (issue 15, SPEC §8.3): every bad input below gets the right exception type,
a message that names the argument (and what was given), before any optimizer step, with every
file that existed before the call unchanged and no file created.

Each case is one call with one bad argument, on a real module (a small MLP with a step-counting
SGD). The table spans setup, hparams, fit, predict, evaluate, callbacks, metrics, save, load and
lr_finder.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import subprocess
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import luz
from luz.callbacks import (
    AutoResume,
    CSVLogger,
    EarlyStopping,
    GradientClip,
    LRScheduler,
    MixedPrecision,
    Mixup,
    ModelCheckpoint,
    ResumeFromCheckpoint,
    TensorBoard,
)
from luz.metrics import (
    MAE,
    MSE,
    RMSE,
    Accuracy,
    BinaryAccuracy,
    BinaryAccuracyWithLogits,
    BinaryAUROC,
    MulticlassAUROC,
)

STEPS = [0]
"""Optimizer steps taken by any `CountingSGD` (reset before each case)."""


class CountingSGD(torch.optim.SGD):
    """SGD that counts its steps, so a case can assert that none was taken."""

    def step(self, closure: Any = None) -> Any:
        STEPS[0] += 1
        return super().step(closure)


class Net(nn.Module):
    """A two-layer MLP whose hidden size is a hyper-parameter."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


X = torch.randn(64, 4)
Y = torch.randn(64, 1)
DATA = (X, Y)


def module(**opt_hparams: Any) -> luz.LuzModule:
    """The good module: Net with MSE and a counting SGD."""
    m = luz.setup(Net, loss=nn.MSELoss(), optimizer=CountingSGD).set_hparams(hidden=8)
    return m.set_opt_hparams(**(opt_hparams or {"lr": 0.01}))


def fit(*callbacks: Any, **kwargs: Any) -> luz.Fitted:
    """Fit the good module for one epoch with ``callbacks`` and ``kwargs`` (the bad part)."""
    options: dict[str, Any] = {"epochs": 1, "verbose": False}
    options.update(kwargs)
    if callbacks:
        options["callbacks"] = list(callbacks)
    return module().fit(DATA, **options)


@dataclass
class Env:
    """What a case may use: a fitted model and a directory with files that must not change."""

    tmp: Path
    fitted: luz.Fitted

    @property
    def file(self) -> Path:
        return self.tmp / "existing.txt"

    @property
    def directory(self) -> Path:
        return self.tmp / "existing_dir"

    @property
    def saved(self) -> Path:
        return self.tmp / "model.luz"


@dataclass(frozen=True)
class Case:
    """One bad input: the call, the exception type, words the message must contain."""

    id: str
    call: Callable[[Env], object]
    error: type[BaseException]
    words: tuple[str, ...]


def c(id: str, call: Callable[[Env], object], error: type[BaseException], *words: str) -> Case:
    return Case(id, call, error, words)


def _near_miss_class(env: Env) -> None:
    class Typo(luz.Callback):
        def on_epoch_ned(self) -> None:
            pass


def _forward_mismatch(env: Env) -> object:
    return module().fit((torch.randn(64, 7), Y), epochs=1, verbose=False)


def _forward_two_inputs(env: Env) -> object:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.fc(a + b)

    m = luz.setup(Two, loss=nn.MSELoss(), optimizer=CountingSGD).set_opt_hparams(lr=0.1)
    return m.fit((X, X, Y), epochs=1, verbose=False)  # should be ((X, X), Y)


def _ok() -> luz.LuzModule:
    return luz.setup(Net, loss=nn.MSELoss(), optimizer=CountingSGD).set_opt_hparams(lr=0.1)


def _instance_set_hparams(env: Env) -> object:
    return luz.setup(Net(), loss=nn.MSELoss(), optimizer=CountingSGD).set_hparams(hidden=3)


def _partial_inf_lr(env: Env) -> object:
    opt = functools.partial(CountingSGD, lr=math.inf)
    return luz.setup(Net, loss=nn.MSELoss(), optimizer=opt).fit(DATA, epochs=1, verbose=False)


def _set_optimizers_inf_lr(env: Env) -> object:
    class Own(Net):
        def set_optimizers(self, **_: Any) -> torch.optim.Optimizer:
            return CountingSGD(self.parameters(), lr=math.inf)

    return luz.setup(Own, loss=nn.MSELoss()).fit(DATA, epochs=1, verbose=False)


def _loader_with_options(env: Env) -> object:
    loader = DataLoader(TensorDataset(X, Y), batch_size=8)
    return module().fit(loader, epochs=1, verbose=False, dataloader_options={"batch_size": 4})


def _mse_shapes(env: Env) -> object:
    return module().fit((X, torch.randn(64)), epochs=1, verbose=False)


CASES: list[Case] = [
    # -- setup -----------------------------------------------------------------------------
    c(
        "setup-module-str",
        lambda e: luz.setup("Net", loss=nn.MSELoss(), optimizer=CountingSGD),
        TypeError,
        "module",
    ),
    c(
        "setup-module-int",
        lambda e: luz.setup(3, loss=nn.MSELoss(), optimizer=CountingSGD),
        TypeError,
        "module",
    ),
    c(
        "setup-loss-class",
        lambda e: luz.setup(Net, loss=nn.MSELoss, optimizer=CountingSGD),
        TypeError,
        "loss",
    ),
    c(
        "setup-loss-str",
        lambda e: luz.setup(Net, loss="mse", optimizer=CountingSGD),
        TypeError,
        "`loss`",
        "'mse'",
    ),
    c("setup-loss-int", lambda e: luz.setup(Net, loss=3, optimizer=CountingSGD), TypeError, "loss"),
    c(
        "setup-optimizer-str",
        lambda e: luz.setup(Net, loss=nn.MSELoss(), optimizer="adam"),
        TypeError,
        "optimizer",
    ),
    c(
        "setup-optimizer-instance",
        lambda e: luz.setup(Net, loss=nn.MSELoss(), optimizer=CountingSGD(Net().parameters(), lr=0.1)),
        TypeError,
        "optimizer",
    ),
    c("setup-no-loss", lambda e: luz.setup(Net, optimizer=CountingSGD), ValueError, "loss"),
    c("setup-no-optimizer", lambda e: luz.setup(Net, loss=nn.MSELoss()), ValueError, "optimizer"),
    c(
        "setup-metrics-class",
        lambda e: luz.setup(Net, loss=nn.MSELoss(), optimizer=CountingSGD, metrics=[MAE]),
        TypeError,
        "metrics",
    ),
    c(
        "setup-metrics-str",
        lambda e: luz.setup(Net, loss=nn.MSELoss(), optimizer=CountingSGD, metrics="mae"),
        TypeError,
        "metrics",
    ),
    c(
        "setup-metrics-int",
        lambda e: luz.setup(Net, loss=nn.MSELoss(), optimizer=CountingSGD, metrics=[3]),
        TypeError,
        "metrics",
    ),
    c(
        "setup-backward-str",
        lambda e: luz.setup(Net, loss=nn.MSELoss(), optimizer=CountingSGD, backward="x"),
        TypeError,
        "backward",
    ),
    # -- hparams ---------------------------------------------------------------------------
    c(
        "hparams-negative-size",
        lambda e: _ok().set_hparams(hidden=-3).fit(DATA, epochs=1, verbose=False),
        ValueError,
        "hidden=-3",
        "set_hparams",
    ),
    c(
        "hparams-str-size",
        lambda e: _ok().set_hparams(hidden="big").fit(DATA, epochs=1, verbose=False),
        TypeError,
        "hidden='big'",
    ),
    c(
        "hparams-float-size",
        lambda e: _ok().set_hparams(hidden=2.5).fit(DATA, epochs=1, verbose=False),
        TypeError,
        "hidden=2.5",
    ),
    c(
        "hparams-unknown",
        lambda e: _ok().set_hparams(hiden=3).fit(DATA, epochs=1, verbose=False),
        TypeError,
        "hiden",
    ),
    c("hparams-on-instance", _instance_set_hparams, TypeError, "set_hparams"),
    c("opt-lr-str", lambda e: _ok().set_opt_hparams(lr="fast"), TypeError, "`lr`", "'fast'"),
    c("opt-lr-inf", lambda e: _ok().set_opt_hparams(lr=math.inf), ValueError, "`lr`", "inf"),
    c("opt-lr-nan", lambda e: _ok().set_opt_hparams(lr=math.nan), ValueError, "`lr`", "nan"),
    c("opt-lr-negative", lambda e: _ok().set_opt_hparams(lr=-0.1), ValueError, "`lr`", "-0.1"),
    c("opt-lr-none", lambda e: _ok().set_opt_hparams(lr=None), TypeError, "`lr`", "None"),
    c("opt-lr-bool", lambda e: _ok().set_opt_hparams(lr=True), ValueError, "`lr`", "True"),
    c("opt-lr-list", lambda e: _ok().set_opt_hparams(lr=[0.1]), TypeError, "`lr`", "[0.1]"),
    c("opt-lr-str-number", lambda e: _ok().set_opt_hparams(lr="1e-3"), TypeError, "`lr`", "not a string"),
    c("opt-lr-complex", lambda e: _ok().set_opt_hparams(lr=1j), TypeError, "`lr`"),
    c(
        "opt-momentum-negative",
        lambda e: _ok().set_opt_hparams(lr=0.1, momentum=-0.5),
        ValueError,
        "`momentum`",
    ),
    c("opt-momentum-str", lambda e: _ok().set_opt_hparams(lr=0.1, momentum="high"), TypeError, "`momentum`"),
    c(
        "opt-weight-decay-negative",
        lambda e: _ok().set_opt_hparams(lr=0.1, weight_decay=-1),
        ValueError,
        "`weight_decay`",
    ),
    c(
        "opt-weight-decay-inf",
        lambda e: _ok().set_opt_hparams(lr=0.1, weight_decay=math.inf),
        ValueError,
        "`weight_decay`",
    ),
    c("opt-eps-str", lambda e: _ok().set_opt_hparams(lr=0.1, eps="small"), TypeError, "`eps`"),
    c("opt-eps-negative", lambda e: _ok().set_opt_hparams(lr=0.1, eps=-1e-8), ValueError, "`eps`"),
    c("opt-betas-short", lambda e: _ok().set_opt_hparams(lr=0.1, betas=(0.9,)), TypeError, "`betas`"),
    c("opt-betas-one", lambda e: _ok().set_opt_hparams(lr=0.1, betas=(0.9, 1.0)), ValueError, "`betas[1]`"),
    c(
        "opt-betas-negative",
        lambda e: _ok().set_opt_hparams(lr=0.1, betas=(-0.1, 0.9)),
        ValueError,
        "`betas[0]`",
    ),
    c("opt-betas-str", lambda e: _ok().set_opt_hparams(lr=0.1, betas="0.9,0.99"), TypeError, "`betas`"),
    c("opt-factory-inf-lr", _partial_inf_lr, ValueError, "lr of optimizer 'opt'", "inf"),
    c("opt-set-optimizers-inf-lr", _set_optimizers_inf_lr, ValueError, "lr of optimizer 'opt'", "inf"),
    c(
        "opt-unknown-keyword",
        lambda e: _ok().set_opt_hparams(lr=0.1, mometum=0.9).fit(DATA, epochs=1, verbose=False),
        TypeError,
        "mometum",
    ),
    # -- fit -------------------------------------------------------------------------------
    c("fit-epochs-negative", lambda e: fit(epochs=-2), ValueError, "epochs"),
    c("fit-epochs-float", lambda e: fit(epochs=2.5), ValueError, "epochs"),
    c("fit-epochs-str", lambda e: fit(epochs="10"), ValueError, "epochs"),
    c("fit-epochs-bool", lambda e: fit(epochs=True), ValueError, "epochs"),
    c("fit-epochs-reversed", lambda e: fit(epochs=(3, 1)), ValueError, "epochs"),
    c("fit-epochs-triple", lambda e: fit(epochs=(1, 2, 3)), ValueError, "epochs"),
    c("fit-data-str", lambda e: module().fit("data.csv", epochs=1, verbose=False), TypeError, "str"),
    c("fit-data-none", lambda e: module().fit(None, epochs=1, verbose=False), TypeError, "NoneType"),
    c(
        "fit-data-lengths",
        lambda e: module().fit((X, Y[:10]), epochs=1, verbose=False),
        ValueError,
        "64",
        "10",
    ),
    c("fit-valid-str", lambda e: fit(valid_data="0.2"), ValueError, "valid_data", "'0.2'"),
    c("fit-valid-above-one", lambda e: fit(valid_data=1.5), ValueError, "valid_data", "1.5"),
    c("fit-valid-zero", lambda e: fit(valid_data=0.0), ValueError, "valid_data"),
    c("fit-valid-negative", lambda e: fit(valid_data=-0.1), ValueError, "valid_data"),
    c("fit-valid-nan", lambda e: fit(valid_data=math.nan), ValueError, "valid_data"),
    c("fit-valid-int", lambda e: fit(valid_data=1), ValueError, "valid_data"),
    c("fit-callbacks-class", lambda e: fit(EarlyStopping), TypeError, "callbacks", "EarlyStopping()"),
    c("fit-callbacks-str", lambda e: fit(callbacks="early"), TypeError, "callbacks"),
    c("fit-callbacks-function", lambda e: fit(lambda ctx: None), TypeError, "callbacks"),
    c("fit-verbose-str", lambda e: fit(verbose="yes"), TypeError, "verbose"),
    c("fit-verbose-int", lambda e: fit(verbose=1), TypeError, "verbose"),
    c("fit-accelerator-str", lambda e: fit(accelerator="cpu"), TypeError, "accelerator"),
    c("fit-compile-str", lambda e: fit(compile="yes"), TypeError, "compile"),
    c("fit-loader-options", _loader_with_options, ValueError, "DataLoader"),
    c("fit-dataloader-options-str", lambda e: fit(dataloader_options="big"), TypeError, "dataloader_options"),
    c(
        "fit-forward-shapes",
        _forward_mismatch,
        RuntimeError,
        "batch 1",
        "epoch 1",
        "training",
        "(32, 7)",
        "mat1",
    ),
    c("fit-forward-two-inputs", _forward_two_inputs, TypeError, "batch 1", "((x1, x2), y)"),
    c("fit-mse-shapes", _mse_shapes, ValueError, "MSELoss", "(32, 1)", "(32,)"),
    # -- predict ---------------------------------------------------------------------------
    c("predict-stack-str", lambda e: e.fitted.predict(X, stack="no"), TypeError, "stack", "'no'"),
    c("predict-stack-int", lambda e: luz.predict(e.fitted, X, stack=1), TypeError, "stack"),
    c("predict-data-str", lambda e: e.fitted.predict("x.csv"), TypeError, "str"),
    c("predict-verbose-str", lambda e: e.fitted.predict(X, verbose="no"), TypeError, "verbose"),
    c("predict-callbacks-int", lambda e: e.fitted.predict(X, callbacks=[3]), TypeError, "callbacks"),
    c("predict-accelerator-str", lambda e: e.fitted.predict(X, accelerator="cuda"), TypeError, "accelerator"),
    c(
        "predict-forward-shapes",
        lambda e: e.fitted.predict(torch.randn(8, 5)),
        RuntimeError,
        "batch 1",
        "prediction",
        "(8, 5)",
    ),
    # -- evaluate --------------------------------------------------------------------------
    c("evaluate-data-str", lambda e: e.fitted.evaluate("x.csv"), TypeError, "str"),
    c("evaluate-metrics-class", lambda e: e.fitted.evaluate(DATA, metrics=[MAE]), TypeError, "metrics"),
    c("evaluate-metrics-str", lambda e: e.fitted.evaluate(DATA, metrics="mae"), TypeError, "metrics"),
    c("evaluate-callbacks-str", lambda e: e.fitted.evaluate(DATA, callbacks="x"), TypeError, "callbacks"),
    c("evaluate-verbose-str", lambda e: e.fitted.evaluate(DATA, verbose="x"), TypeError, "verbose"),
    c(
        "evaluate-forward-shapes",
        lambda e: e.fitted.evaluate((torch.randn(8, 5), torch.randn(8, 1))),
        RuntimeError,
        "batch 1",
        "validation",
        "(8, 5)",
    ),
    # -- callbacks -------------------------------------------------------------------------
    c("checkpoint-path-none", lambda e: ModelCheckpoint(path=None), TypeError, "`path`", "None"),
    c("checkpoint-path-empty", lambda e: ModelCheckpoint(path=""), ValueError, "`path`"),
    c("checkpoint-path-int", lambda e: ModelCheckpoint(path=3), TypeError, "`path`"),
    c(
        "checkpoint-existing-dir",
        lambda e: ModelCheckpoint(e.directory, monitor="train_loss"),
        ValueError,
        "`path`",
        "existing directory",
        "'/'",
    ),
    c(
        "checkpoint-under-file",
        lambda e: ModelCheckpoint(e.file / "m.pt", monitor="train_loss"),
        ValueError,
        "`path`",
        "existing.txt",
        "a file",
    ),
    c(
        "checkpoint-unknown-field",
        lambda e: ModelCheckpoint(str(e.tmp / "m-{epch}.pt")),
        ValueError,
        "{epch}",
        "{epoch}",
        "{monitor}",
    ),
    c(
        "checkpoint-positional-field",
        lambda e: ModelCheckpoint(str(e.tmp / "m-{}.pt")),
        ValueError,
        "`path`",
        "{epoch}",
    ),
    c(
        "checkpoint-bad-format",
        lambda e: ModelCheckpoint(str(e.tmp / "m-{epoch:.q}.pt")),
        ValueError,
        "`path`",
        "{epoch:.q}",
    ),
    c(
        "checkpoint-unclosed-brace",
        lambda e: ModelCheckpoint(str(e.tmp / "m-{epoch.pt")),
        ValueError,
        "`path`",
        "template",
    ),
    c(
        "checkpoint-save-best-str",
        lambda e: ModelCheckpoint(e.tmp / "m.pt", save_best_only="no"),
        TypeError,
        "save_best_only",
    ),
    c("checkpoint-mode", lambda e: ModelCheckpoint(e.tmp / "m.pt", mode="lowest"), ValueError, "mode"),
    c("checkpoint-monitor-int", lambda e: ModelCheckpoint(e.tmp / "m.pt", monitor=3), TypeError, "monitor"),
    c(
        "checkpoint-min-delta-nan",
        lambda e: ModelCheckpoint(e.tmp / "m.pt", min_delta=math.nan),
        ValueError,
        "min_delta",
    ),
    c("csv-directory", lambda e: CSVLogger(e.directory), ValueError, "`path`", "existing directory"),
    c("csv-under-file", lambda e: CSVLogger(e.file / "log.csv"), ValueError, "`path`", "existing.txt"),
    c("csv-none", lambda e: CSVLogger(None), TypeError, "`path`", "None"),
    c(
        "amp-unknown-keyword",
        lambda e: MixedPrecision(init_scal=1024),
        TypeError,
        "init_scal",
        "init_scale",
        "growth_interval",
    ),
    c("amp-init-scale-negative", lambda e: MixedPrecision(init_scale=-1), ValueError, "init_scale"),
    c(
        "amp-growth-interval-float",
        lambda e: MixedPrecision(growth_interval=0.5),
        ValueError,
        "growth_interval",
    ),
    c("amp-enabled-str", lambda e: MixedPrecision(enabled="yes"), TypeError, "enabled"),
    c(
        "callback-near-miss",
        lambda e: luz.callback(on_epoch_ned=lambda ctx: None),
        UserWarning,
        "on_epoch_ned",
        "on_epoch_end",
    ),
    c("callback-class-near-miss", _near_miss_class, UserWarning, "on_epoch_ned", "on_epoch_end"),
    c("callback-not-callable", lambda e: luz.callback(on_epoch_end=3), TypeError, "on_epoch_end"),
    c("callback-no-hooks", lambda e: luz.callback(), ValueError, "callback()"),
    c("callback-not-on", lambda e: luz.callback(epoch_end=lambda ctx: None), ValueError, "epoch_end"),
    c(
        "callback-weight-str",
        lambda e: luz.callback(on_epoch_end=lambda ctx: None, weight="low"),
        TypeError,
        "weight",
    ),
    c("early-patience-negative", lambda e: EarlyStopping(patience=-1), ValueError, "patience"),
    c("early-patience-float", lambda e: EarlyStopping(patience=1.5), ValueError, "patience"),
    c("early-mode", lambda e: EarlyStopping(mode="smaller"), ValueError, "mode"),
    c("early-min-delta-str", lambda e: EarlyStopping(min_delta="0.1"), TypeError, "min_delta"),
    c("early-baseline-str", lambda e: EarlyStopping(baseline="1"), TypeError, "baseline"),
    c("clip-max-norm-negative", lambda e: GradientClip(max_norm=-1.0), ValueError, "max_norm"),
    c("clip-norm-type-str", lambda e: GradientClip(norm_type="l2"), TypeError, "norm_type"),
    c("mixup-alpha-negative", lambda e: Mixup(alpha=-0.4), ValueError, "alpha"),
    c("mixup-run-valid-str", lambda e: Mixup(run_valid="no"), TypeError, "run_valid"),
    c("scheduler-not-callable", lambda e: LRScheduler("step"), TypeError, "scheduler"),
    c(
        "scheduler-call-on",
        lambda e: LRScheduler(torch.optim.lr_scheduler.StepLR, step_size=1, call_on="on_epoch_ned"),
        ValueError,
        "call_on",
    ),
    c(
        "keep-best-mode",
        lambda e: luz.callbacks.KeepBestModel(mode="lowest"),
        ValueError,
        "`mode`",
        "'lowest'",
    ),
    c(
        "terminate-check-every-zero",
        lambda e: luz.callbacks.TerminateOnNaN(check_every=0),
        ValueError,
        "check_every",
    ),
    c("progress-refresh-negative", lambda e: luz.callbacks.Progress(refresh=-1), ValueError, "refresh"),
    c("mixup-loss-str", lambda e: luz.callbacks.MixupLoss("mse"), TypeError, "`loss`", "'mse'"),
    c("accelerator-cpu-str", lambda e: fit(accelerator=luz.Accelerator(cpu="yes")), TypeError, "`cpu`"),
    c("csv-int", lambda e: CSVLogger(3), TypeError, "`path`", "3 (int)"),
    c("tensorboard-on-file", lambda e: TensorBoard(e.file), ValueError, "`logdir`", "existing.txt"),
    c("tensorboard-under-file", lambda e: TensorBoard(e.file / "logs"), ValueError, "`logdir`", "a file"),
    c("tensorboard-int", lambda e: TensorBoard(3), TypeError, "`logdir`", "3 (int)"),
    # -- metrics ---------------------------------------------------------------------------
    c("accuracy-positional", lambda e: Accuracy(3), TypeError, "Accuracy(3)", "classes"),
    c("accuracy-keyword", lambda e: Accuracy(num_classes=3), TypeError, "num_classes=3"),
    c("mae-positional", lambda e: MAE(1), TypeError, "MAE(1)"),
    c("mse-keyword", lambda e: MSE(reduction="sum"), TypeError, "reduction='sum'"),
    c("rmse-positional", lambda e: RMSE(2), TypeError, "RMSE(2)"),
    c("binary-accuracy-threshold-str", lambda e: BinaryAccuracy(threshold="0.5"), TypeError, "threshold"),
    c(
        "binary-logits-threshold-above-one",
        lambda e: BinaryAccuracyWithLogits(threshold=2.0),
        ValueError,
        "threshold",
    ),
    c("auroc-thresholds-str", lambda e: MulticlassAUROC(thresholds="abc"), TypeError, "thresholds", "'abc'"),
    c("auroc-thresholds-element", lambda e: BinaryAUROC(thresholds=[0.1, "x"]), TypeError, "thresholds[1]"),
    c("auroc-thresholds-empty", lambda e: BinaryAUROC(thresholds=[]), ValueError, "thresholds"),
    c(
        "auroc-thresholds-nan",
        lambda e: BinaryAUROC(thresholds=torch.tensor([0.2, math.nan])),
        ValueError,
        "thresholds",
    ),
    c("auroc-thresholds-int", lambda e: BinaryAUROC(thresholds=3), TypeError, "thresholds"),
    c("auroc-num-thresholds-one", lambda e: BinaryAUROC(num_thresholds=1), ValueError, "num_thresholds"),
    c(
        "auroc-num-thresholds-fraction",
        lambda e: BinaryAUROC(num_thresholds=2.5),
        ValueError,
        "num_thresholds",
    ),
    c("auroc-average", lambda e: MulticlassAUROC(average="avg"), ValueError, "average"),
    c("auroc-from-logits-str", lambda e: MulticlassAUROC(from_logits="yes"), TypeError, "from_logits"),
    # -- save and load ---------------------------------------------------------------------
    c(
        "save-not-fitted",
        lambda e: luz.save(module(), e.tmp / "new.luz"),
        TypeError,
        "luz.Fitted",
        "LuzModule",
    ),
    c("load-missing", lambda e: luz.load(e.tmp / "missing.luz"), FileNotFoundError, "missing.luz"),
    c("load-module-str", lambda e: luz.load(e.saved, module="Net"), TypeError, "module"),
    c("load-directory", lambda e: luz.load(e.directory), ValueError, "existing_dir"),
    c("load-text-file", lambda e: luz.load(e.file), ValueError, "existing.txt"),
    c("load-module-instance", lambda e: luz.load(e.saved, module=Net()), TypeError, "`module`"),
    c(
        "load-weights-text-file",
        lambda e: luz.load_model_weights(e.fitted, e.file),
        ValueError,
        "existing.txt",
    ),
    c(
        "load-weights-missing",
        lambda e: luz.load_model_weights(e.fitted, e.tmp / "nope.pt"),
        FileNotFoundError,
        "nope.pt",
    ),
    c(
        "load-checkpoint-missing",
        lambda e: luz.load_checkpoint(e.fitted, e.tmp / "nope.pt"),
        FileNotFoundError,
        "nope.pt",
    ),
    c("save-path-none", lambda e: luz.save(e.fitted, None), TypeError, "`path`", "NoneType"),
    c("save-path-int", lambda e: luz.save(e.fitted, 3), TypeError, "`path`", "int"),
    c("save-to-directory", lambda e: luz.save(e.fitted, e.directory), ValueError, "`path`", "existing_dir"),
    c(
        "save-under-a-file",
        lambda e: luz.save(e.fitted, e.file / "m.luz"),
        ValueError,
        "`path`",
        "existing.txt",
        "is a file",
    ),
    c(
        "save-weights-path-none",
        lambda e: luz.save_model_weights(e.fitted, None),
        TypeError,
        "save_model_weights",
        "`path`",
    ),
    c(
        "save-weights-to-directory",
        lambda e: luz.save_model_weights(e.fitted, e.directory),
        ValueError,
        "`path`",
        "existing_dir",
    ),
    c("load-path-none", lambda e: luz.load(None), TypeError, "load", "`path`", "NoneType"),
    c(
        "load-weights-path-none",
        lambda e: luz.load_model_weights(e.fitted, None),
        TypeError,
        "`path`",
    ),
    # -- resuming --------------------------------------------------------------------------
    c("auto-resume-none", lambda e: AutoResume(None), TypeError, "AutoResume", "`path`", "NoneType"),
    c("auto-resume-int", lambda e: AutoResume(3), TypeError, "AutoResume", "`path`"),
    c(
        "auto-resume-directory",
        lambda e: AutoResume(e.directory),
        ValueError,
        "AutoResume",
        "`path`",
        "is a directory",
        "state.pt",
    ),
    c(
        "auto-resume-strict-str",
        lambda e: AutoResume(e.tmp / "state.pt", strict="no"),
        TypeError,
        "strict",
    ),
    c(
        "resume-from-missing-file",
        lambda e: ResumeFromCheckpoint(e.tmp / "missing.pt"),
        UserWarning,  # SPEC §6: a warning when made; the fit starts from scratch
        "ResumeFromCheckpoint",
        "missing.pt",
    ),
    # -- predict/evaluate with something that is not fitted --------------------------------
    c("predict-a-class", lambda e: luz.predict(Net, X), TypeError, "`fitted`", "Net", "luz.setup"),
    c("predict-a-module", lambda e: luz.predict(module(), X), TypeError, "`fitted`", "LuzModule", ".fit("),
    c("evaluate-a-module", lambda e: luz.evaluate(module(), DATA), TypeError, "`fitted`", "LuzModule"),
    c("evaluate-none", lambda e: luz.evaluate(None, DATA), TypeError, "`fitted`", "NoneType"),
    # -- lr_finder -------------------------------------------------------------------------
    c(
        "lr-finder-class",
        lambda e: luz.lr_finder(Net, DATA, verbose=False),
        TypeError,
        "`module`",
        "Net",
        "luz.setup",
    ),
    c(
        "lr-finder-instance",
        lambda e: luz.lr_finder(Net(), DATA, verbose=False),
        TypeError,
        "`module`",
        "luz.setup",
    ),
    c(
        "lr-finder-start-str",
        lambda e: luz.lr_finder(module(), DATA, start_lr="1e-7", verbose=False),
        TypeError,
        "start_lr",
        "'1e-7'",
    ),
    c(
        "lr-finder-start-zero",
        lambda e: luz.lr_finder(module(), DATA, start_lr=0.0, verbose=False),
        ValueError,
        "start_lr",
    ),
    c(
        "lr-finder-start-negative",
        lambda e: luz.lr_finder(module(), DATA, start_lr=-1e-7, verbose=False),
        ValueError,
        "start_lr",
    ),
    c(
        "lr-finder-end-inf",
        lambda e: luz.lr_finder(module(), DATA, end_lr=math.inf, verbose=False),
        ValueError,
        "end_lr",
        "inf",
    ),
    c(
        "lr-finder-end-below-start",
        lambda e: luz.lr_finder(module(), DATA, start_lr=0.1, end_lr=0.01, verbose=False),
        ValueError,
        "end_lr",
    ),
    c(
        "lr-finder-steps-zero",
        lambda e: luz.lr_finder(module(), DATA, steps=0, verbose=False),
        ValueError,
        "steps",
    ),
    c(
        "lr-finder-steps-float",
        lambda e: luz.lr_finder(module(), DATA, steps=1.5, verbose=False),
        ValueError,
        "steps",
    ),
    c(
        "lr-finder-log-spaced-str",
        lambda e: luz.lr_finder(module(), DATA, log_spaced_intervals="no", verbose=False),
        TypeError,
        "log_spaced_intervals",
    ),
    c("lr-finder-verbose-str", lambda e: luz.lr_finder(module(), DATA, verbose="no"), TypeError, "verbose"),
    c(
        "lr-finder-epochs",
        lambda e: luz.lr_finder(module(), DATA, epochs=3, verbose=False),
        TypeError,
        "epochs",
    ),
]


if importlib.util.find_spec("tensorboard") is None:  # an optional dependency
    CASES = [case for case in CASES if not case.id.startswith("tensorboard-")]


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with the SHA-256 of its content."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def fitted() -> luz.Fitted:
    return fit()


def test_the_sweep_is_large_and_distinct() -> None:
    assert len(CASES) >= 100
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("bad", CASES, ids=[case.id for case in CASES])
def test_bad_input_fails_clearly_before_any_step(bad: Case, fitted: luz.Fitted, tmp_path: Path) -> None:
    env = Env(tmp_path, fitted)
    env.file.write_text("a file that must survive\n")
    env.directory.mkdir()
    (env.directory / "inside.csv").write_text("epoch,set\n")
    luz.save(fitted, env.saved)
    before = _snapshot(tmp_path)
    STEPS[0] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a near-miss warning is the "error" of its cases
        with pytest.raises(bad.error) as info:
            bad.call(env)
    message = str(info.value)
    for word in bad.words:
        assert word in message, f"{word!r} not in the message: {message}"
    assert STEPS[0] == 0, "an optimizer step ran before the error"
    assert _snapshot(tmp_path) == before, "a file was created or changed"


_FULL_DISK = """
import resource, signal, sys
import torch, luz
from torch import nn
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
fitted = (
    luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    .set_hparams(in_features=200, out_features=200).set_opt_hparams(lr=0.01)
    .fit((torch.randn(32, 200), torch.randn(32, 200)), epochs=1, verbose=False)
)
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the model file is about 160 kB
try:
    luz.save(fitted, sys.argv[1])
except OSError as error:
    print(type(error).__name__, error)
    sys.exit(3)
"""


def test_a_full_disk_during_save_names_the_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "model.luz"
    target.write_bytes(b"the previous model")
    script = tmp_path / "save.py"
    script.write_text(_FULL_DISK)
    done = subprocess.run(
        [sys.executable, str(script), str(target)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "OSError" in done.stdout and str(target) in done.stdout and "save()" in done.stdout
    assert target.read_bytes() == b"the previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.luz", "save.py"]  # no temporary left

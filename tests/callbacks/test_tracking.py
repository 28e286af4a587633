"""The helpers the experiment-tracking loggers share: flat parameters and per-epoch metrics."""

from __future__ import annotations

from typing import Any

import torch

import luz
from luz.callbacks._tracking import epoch_metrics, flat_params, param_value
from tests.conftest import regression_data


def fit_tracked(module: luz.LuzModule, callbacks: list[Any], epochs: Any = 3) -> luz.Fitted:
    """The small fit the logger tests share: 48 samples in batches of 16, 16 of them validating."""
    x, y = regression_data(n=48)
    return module.fit(
        (x, y),
        epochs=epochs,
        valid_data=(x[:16], y[:16]),
        callbacks=callbacks,
        verbose=False,
        dataloader_options={"batch_size": 16},
    )


def test_flat_params_flattens_nested_mappings_and_keeps_both_colliding_keys() -> None:
    hparams = {"block": {"width": 8, "act": {"name": "relu"}}, "scale": 2.0, "empty": {}}
    opt_hparams = {"lr": torch.tensor(0.1), "scale": 0.5, "betas": (0.9, 0.99)}
    assert flat_params(hparams, opt_hparams) == {
        "block.width": 8,
        "block.act.name": "relu",
        "hparams.scale": 2.0,
        "empty": "{}",
        "lr": param_value(torch.tensor(0.1)),
        "opt_hparams.scale": 0.5,
        "betas": "(0.9, 0.99)",
    }
    assert flat_params({}, {}) == {}


def test_param_value_names_classes_and_functions_by_import_path() -> None:
    assert param_value(torch.optim.Adam) == "torch.optim.adam.Adam"
    assert param_value(torch.relu) == "torch.relu"
    assert param_value(flat_params) == "luz.callbacks._tracking.flat_params"
    assert param_value([].append) == "append"
    assert param_value(torch.tensor([3])) == 3 and isinstance(param_value(torch.tensor(2.5)), float)
    assert param_value(torch.ones(2)) == "tensor([1., 1.])"
    assert [param_value(v) for v in (None, True, 3, "a")] == [None, True, 3, "a"]


def test_epoch_metrics_uses_monitor_names() -> None:
    records = {
        "metrics": {
            "train": [{"loss": 1.0}, {"loss": {"gen": 0.5, "disc": 0.25}, "lr": 0.1}],
            "valid": [{"loss": 2.0, "auc": {"0": 0.7, "1": 0.8}}],
        }
    }
    assert epoch_metrics(records, 1) == {
        "train_loss": 1.0,
        "valid_loss": 2.0,
        "valid_auc_0": 0.7,
        "valid_auc_1": 0.8,
    }
    assert epoch_metrics(records, 2) == {"train_loss_gen": 0.5, "train_loss_disc": 0.25, "train_lr": 0.1}
    assert epoch_metrics(records, 3) == {}

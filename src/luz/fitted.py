"""Results: the fitted model (`Fitted`) and an evaluation (`Evaluation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from luz.reporting.summary import evaluation_frame, evaluation_summary, fitted_summary, metrics_frame

if TYPE_CHECKING:
    import pandas as pd

    from luz.accelerator import Accelerator
    from luz.module import LuzModule


class Fitted:
    """A trained model with its records. Returned by ``LuzModule.fit``.

    Attributes:
        model: the trained ``nn.Module`` (on its device; eval mode after predict/evaluate).
        records: ``{"metrics": {"train": [...], "valid": [...]}, "profile": {...}, ...}``.
        hparams: the keyword arguments the model was built with.
        opt_hparams: the keyword arguments the optimizers were built with.
        module: the `LuzModule` it was fitted from (``None`` after loading with a bare class).
        optimizer_names: the names of the optimizers used in training.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        records: dict[str, Any],
        hparams: dict[str, Any] | None = None,
        opt_hparams: dict[str, Any] | None = None,
        module: LuzModule | None = None,
        optimizer_names: list[str] | None = None,
    ) -> None:
        self.model = model
        self.records = records
        self.hparams: dict[str, Any] = dict(hparams or {})
        self.opt_hparams: dict[str, Any] = dict(opt_hparams or {})
        self.module = module
        self.optimizer_names = list(optimizer_names or ["opt"])

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter (CPU for a model without parameters)."""
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    def predict(
        self,
        newdata: Any,
        *,
        stack: bool = True,
        callbacks: Any = None,
        accelerator: Accelerator | None = None,
        verbose: bool | None = None,
        dataloader_options: dict[str, Any] | None = None,
    ) -> Any:
        """Predictions for ``newdata``, concatenated along dim 0 (``stack=False``: the list of
        per-batch outputs). Uses the model's ``predict(input)`` method when it defines one.

        Example:
            >>> preds = fitted.predict(x_test)  # doctest: +SKIP
        """
        from luz._run import run_predict

        return run_predict(
            self,
            newdata,
            stack=stack,
            callbacks=callbacks,
            accelerator=accelerator,
            verbose=verbose,
            dataloader_options=dataloader_options,
        )

    def evaluate(
        self,
        data: Any,
        *,
        metrics: Any = None,
        callbacks: Any = None,
        accelerator: Accelerator | None = None,
        verbose: bool | None = None,
        dataloader_options: dict[str, Any] | None = None,
    ) -> Evaluation:
        """The loss and metrics on ``data`` (one pass, no training).

        Args:
            metrics: metrics to use instead of the module's (for this call only).

        Example:
            >>> fitted.evaluate((x_test, y_test)).get_metrics()  # doctest: +SKIP
        """
        from luz._run import run_evaluate

        return run_evaluate(
            self,
            data,
            metrics=metrics,
            callbacks=callbacks,
            accelerator=accelerator,
            verbose=verbose,
            dataloader_options=dataloader_options,
        )

    def build_optimizers_for_evaluation(self, model: nn.Module) -> dict[str, torch.optim.Optimizer]:
        """Optimizers named as in training (a custom step may look them up); rebuilt from the
        module when possible, else placeholders that are never stepped."""
        if self.module is not None:
            try:
                return self.module.build_optimizers(model)
            except (TypeError, ValueError):
                pass
        params: list[torch.Tensor] = [*model.parameters()] or [torch.zeros(0, requires_grad=True)]
        return {name: torch.optim.SGD(params, lr=0.0) for name in self.optimizer_names}

    def get_metrics(self) -> pd.DataFrame:
        """All recorded metrics: a DataFrame with columns ``set, metric, epoch, value``."""
        return metrics_frame(self.records)

    def plot(self) -> Any:
        """A matplotlib Figure with one panel per metric (train and valid lines by epoch)."""
        from luz.reporting.plots import plot_metrics

        return plot_metrics(self.records)

    def __repr__(self) -> str:
        return fitted_summary(self.records, self.model)


class Evaluation:
    """The result of ``Fitted.evaluate``: the loss and metrics on the evaluated data."""

    def __init__(self, records: dict[str, Any]) -> None:
        self.records = records

    def get_metrics(self) -> pd.DataFrame:
        """A DataFrame with columns ``metric, value`` (loss first)."""
        return evaluation_frame(self.records)

    def __repr__(self) -> str:
        return evaluation_summary(self.records)

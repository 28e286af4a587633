"""Results: the fitted model (`Fitted`) and an evaluation (`Evaluation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

import torch
from torch import nn

from luz._hints import keras_hints
from luz.records import Records, evaluation_frame, metrics_frame
from luz.reporting import evaluation_sections, fitted_sections, plot_metrics, render_html, render_text

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
        stop_reason: ``None`` when every epoch ran, else a short sentence saying what ended
            training and when (``"EarlyStopping stopped training at epoch 7: ..."``,
            ``"interrupted (KeyboardInterrupt) during epoch 3"``, ``"NaNGuard stopped training:
            non-finite training loss (nan) at epoch 4"``).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        records: Records,
        hparams: dict[str, Any] | None = None,
        opt_hparams: dict[str, Any] | None = None,
        module: LuzModule | None = None,
        optimizer_names: list[str] | None = None,
        stop_reason: str | None = None,
    ) -> None:
        self.model = model
        self.records = records
        self.hparams: dict[str, Any] = dict(hparams or {})
        self.opt_hparams: dict[str, Any] = dict(opt_hparams or {})
        self.module = module
        self.optimizer_names = list(optimizer_names or ["opt"])
        self.stop_reason = stop_reason

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter (CPU for a model without parameters)."""
        for p in self.model.parameters():
            return p.device
        return torch.device("cpu")

    @overload
    def predict(
        self,
        newdata: Any,
        *,
        stack: Literal[True] = True,
        callbacks: Any = None,
        accelerator: Accelerator | None = None,
        verbose: bool | None = None,
        dataloader_options: dict[str, Any] | None = None,
        **predict_kwargs: Any,
    ) -> torch.Tensor: ...

    @overload
    def predict(
        self,
        newdata: Any,
        *,
        stack: Literal[False],
        callbacks: Any = None,
        accelerator: Accelerator | None = None,
        verbose: bool | None = None,
        dataloader_options: dict[str, Any] | None = None,
        **predict_kwargs: Any,
    ) -> list[Any]: ...

    @overload
    def predict(
        self,
        newdata: Any,
        *,
        stack: bool,
        callbacks: Any = None,
        accelerator: Accelerator | None = None,
        verbose: bool | None = None,
        dataloader_options: dict[str, Any] | None = None,
        **predict_kwargs: Any,
    ) -> torch.Tensor | list[Any]: ...

    def predict(
        self,
        newdata: Any,
        *,
        stack: bool = True,
        callbacks: Any = None,
        accelerator: Accelerator | None = None,
        verbose: bool | None = None,
        dataloader_options: dict[str, Any] | None = None,
        **predict_kwargs: Any,
    ) -> torch.Tensor | list[Any]:
        """Predictions for ``newdata``: `luz.predict` on this fitted model (see there); extra
        keywords go to the model's ``predict`` method. Typed ``torch.Tensor`` with
        ``stack=True`` (the default; a model returning a tuple or dict gets that structure of
        stacked tensors) and ``list`` of per-batch outputs with ``stack=False``.

        Example:
            >>> preds = fitted.predict(x_test)  # doctest: +SKIP
        """
        from luz.run import predict  # the fluent form of the entry point one layer up

        return predict(
            self,
            newdata,
            stack=stack,
            callbacks=callbacks,
            accelerator=accelerator,
            verbose=verbose,
            dataloader_options=dataloader_options,
            **predict_kwargs,
        )

    @keras_hints  # as on luz.evaluate
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
        """The loss and metrics on ``data``: `luz.evaluate` on this fitted model (see there).

        Example:
            >>> fitted.evaluate((x_test, y_test)).get_metrics()  # doctest: +SKIP
        """
        from luz.run import evaluate  # the fluent form of the entry point one layer up

        return evaluate(
            self,
            data,
            metrics=metrics,
            callbacks=callbacks,
            accelerator=accelerator,
            verbose=verbose,
            dataloader_options=dataloader_options,
        )

    def get_metrics(self) -> pd.DataFrame:
        """All recorded metrics: a DataFrame with columns ``set, metric, epoch, value``."""
        return metrics_frame(self.records)

    def plot(self) -> Any:
        """A matplotlib Figure with one panel per metric (train and valid lines by epoch)."""
        return plot_metrics(self.records)

    def __repr__(self) -> str:
        return render_text("A `luz.Fitted`", fitted_sections(self.records, self.model, self.stop_reason))

    def _repr_html_(self) -> str:
        """The summary of ``repr`` as HTML, for notebooks (all text escaped)."""
        return render_html("A `luz.Fitted`", fitted_sections(self.records, self.model, self.stop_reason))


class Evaluation:
    """The result of ``Fitted.evaluate``: the loss and metrics on the evaluated data."""

    def __init__(self, records: Records) -> None:
        self.records = records

    def get_metrics(self) -> pd.DataFrame:
        """A DataFrame with columns ``metric, value`` (loss first)."""
        return evaluation_frame(self.records)

    def __repr__(self) -> str:
        return render_text("A `luz.Evaluation`", evaluation_sections(self.records))

    def _repr_html_(self) -> str:
        """The summary of ``repr`` as HTML, for notebooks (all text escaped)."""
        return render_html("A `luz.Evaluation`", evaluation_sections(self.records))

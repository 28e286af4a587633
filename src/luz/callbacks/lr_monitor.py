"""`LRMonitor`: each optimizer's learning rate per epoch, as a ``train`` metric."""

from __future__ import annotations

from luz.callbacks.base import Callback


class LRMonitor(Callback):
    """Records the learning rate of each optimizer per epoch as the ``train`` metric ``lr``.

    With one optimizer the metric is ``lr``; with several it is a dict by optimizer name,
    which `get_metrics()`, `CSVLogger` and `TensorBoard` show as ``lr_<opt>`` (as they show
    ``loss_<opt>``). The value is the rate of the optimizer's first parameter group when the
    epoch's training phase begins, so a per-epoch scheduler's new rate shows on the epoch it
    is used in. It is logged at the end of the training phase, after the epoch's metrics, so
    ``lr`` comes after ``loss`` in the records. Reading the rates costs nothing per batch.

    Example:
        >>> import luz
        >>> cb = luz.callbacks.LRMonitor()
    """

    def __init__(self) -> None:
        self._rates: dict[str, float] = {}

    def on_train_begin(self) -> None:
        # float(): a rate may be a tensor (torch allows it); the records hold plain numbers.
        self._rates = {name: float(opt.param_groups[0]["lr"]) for name, opt in self.ctx.optimizers.items()}

    def on_train_end(self) -> None:
        value: float | dict[str, float]
        value = next(iter(self._rates.values())) if len(self._rates) == 1 else dict(self._rates)
        self.ctx.log_metric("lr", value)

    def __repr__(self) -> str:
        return "LRMonitor()"

"""The context: the one object that `fit`, `evaluate`, `predict`, callbacks and metrics share."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from luz._validate import check_count
from luz.events import StopTraining

if TYPE_CHECKING:
    import pandas as pd

    from luz.accelerator import Accelerator
    from luz.callbacks.base import Callback, CallbackRunner
    from luz.metrics.base import Metric, MetricSet

Records = dict[str, Any]


def new_records() -> Records:
    """An empty records structure: metrics per set and wall-clock profile lists."""
    return {
        "metrics": {"train": [], "valid": []},
        "profile": {"fit": [], "epoch": [], "train": [], "valid": []},
    }


def _default_step_opt(opt: torch.optim.Optimizer) -> None:
    opt.step()


def _check_epoch_count(value: object, argument: str) -> int:
    return check_count(value, argument, wrong_type=ValueError)  # as for fit(epochs=) (SPEC §1)


class Context:
    """State shared by the loop, the callbacks (``self.ctx``), metrics and the model (``self.ctx``).

    One context exists per `fit`, `evaluate` or `predict` call. Callbacks communicate through it;
    ``buffers`` is free scratch space for them. Fields are valid as noted; ``records`` and
    ``device`` are read-only.
    """

    verbose: bool
    """Whether progress is shown."""
    accelerator: Accelerator | None
    """The accelerator that places the model and batches on ``device``."""
    data: Iterable[Any] | None
    """The loader being iterated now (training, validation or prediction data)."""
    train_data: Iterable[Any] | None
    """The training loader (device-aware)."""
    valid_data: Iterable[Any] | None
    """The validation loader, or ``None`` when there is no validation."""
    epoch: int
    """The current epoch, 1-based (``evaluate`` uses 1)."""
    training: bool
    """``True`` in the training phase, ``False`` in validation, evaluate and predict."""
    batch: Any
    """The current batch as the loader produced it (moved to ``device``)."""
    pred: Any
    """The last prediction (``None`` after each training batch: its graph is not kept); in
    predict, the list of per-batch predictions so far."""
    loss_fn: Callable[..., torch.Tensor] | None
    """The loss callable ``(pred, target) -> scalar``; callbacks may replace it."""
    loss: dict[str, torch.Tensor]
    """Detached loss of the current batch, keyed by optimizer name."""
    loss_grad: torch.Tensor | None
    """The current training loss with its graph; callbacks may replace it before backward.
    ``None`` after each training batch."""
    step_opt: Callable[[torch.optim.Optimizer], None]
    """Steps an optimizer; mixed precision replaces it with a grad-scaler step."""
    backward: Callable[[torch.Tensor], None] | None
    """Backward function from ``setup(backward=...)`` or the model; ``None``: ``loss.backward()``."""
    metric_set: MetricSet | None
    """The metric prototypes in use (from ``setup``, or ``evaluate(metrics=...)``)."""
    metrics: dict[str, list[Metric]]
    """Live metric objects of the current epoch: ``{"train": [...], "valid": [...]}``."""
    metric_names: dict[str, list[str]]
    """Record names of the live metrics, parallel to ``metrics``."""
    hparams: dict[str, Any]
    """Keyword arguments the model was built with."""
    opt_hparams: dict[str, Any]
    """Keyword arguments the optimizers were built with."""
    buffers: dict[str, Any]
    """Free scratch space for callbacks."""
    stop_requested: StopTraining | None
    """Distributed fits: a `StopTraining` raised on this rank, held until the next agreement
    point (after ``on_fit_begin`` and after each epoch), where every rank stops if any asked."""
    epoch_end_actions: list[Callable[[], None]]
    """Actions run after every callback's ``on_epoch_end`` (see `after_epoch_end`)."""

    def __init__(self, *, verbose: bool = False, accelerator: Accelerator | None = None) -> None:
        self.verbose = verbose
        self.accelerator = accelerator
        self._model: nn.Module | None = None
        self._forward_model: nn.Module | None = None
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        self._opt: torch.optim.Optimizer | None = None
        self._opt_name: str | None = None
        self.data = None
        self.train_data = None
        self.valid_data = None
        self._min_epochs = 0
        self._max_epochs = 999_999_999
        self.epoch = 0
        self._iter = 0
        self.training = False
        self._callbacks: list[Callback] = []
        self._runner: CallbackRunner | None = None
        self.batch = None
        self.pred = None
        self.loss_fn = None
        self.loss = {}
        self.loss_grad = None
        self.step_opt = _default_step_opt
        self.backward = None
        self.metric_set = None
        self.metrics = {"train": [], "valid": []}
        self.metric_names = {"train": [], "valid": []}
        self._records: Records = new_records()
        self.hparams = {}
        self.opt_hparams = {}
        self.buffers = {}
        self.stop_requested = None
        self.epoch_end_actions = []

    def __deepcopy__(self, memo: dict[int, Any]) -> Context:
        # A deep copy of the bound model (an EMA or best-model snapshot, say) shares the run's
        # context instead of copying loaders, optimizers and callbacks along with it.
        return self

    def __copy__(self) -> Context:
        return self

    def __reduce__(self) -> tuple[Callable[[], None], tuple[()]]:
        # Pickling a bound model (torch.save(model)) stores no context: it loads as None.
        return _no_context, ()

    # -- fields with rules ------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """The device of the accelerator (read-only: change the accelerator instead)."""
        if self.accelerator is None:
            raise RuntimeError("The context has no accelerator, so it has no device yet.")
        return self.accelerator.device

    @device.setter
    def device(self, value: object) -> None:
        raise AttributeError("`ctx.device` is read-only: modify the accelerator instead.")

    @property
    def model(self) -> nn.Module:
        """The model being trained or used; assigning binds this context as ``model.ctx``."""
        if self._model is None:
            raise RuntimeError("The context has no model yet.")
        return self._model

    @model.setter
    def model(self, model: nn.Module) -> None:
        if self._model is not None and self._model is not model:
            unbind_context(self._model)
        self._model = model
        bind_context(model, self)

    @property
    def forward_model(self) -> nn.Module:
        """The module the training forward pass runs through: in a distributed fit the
        ``DistributedDataParallel`` wrapper of ``model`` (its backward averages gradients
        across ranks), otherwise ``model`` itself. A custom ``step`` calls this in training."""
        return self._forward_model if self._forward_model is not None else self.model

    @forward_model.setter
    def forward_model(self, module: nn.Module | None) -> None:
        self._forward_model = module

    @property
    def distributed(self) -> bool:
        """Whether this run is one of several processes training together (``torchrun``)."""
        return self.accelerator is not None and self.accelerator.distributed

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name. A bare optimizer is stored as ``{"opt": optimizer}``."""
        return self._optimizers

    @optimizers.setter
    def optimizers(self, value: object) -> None:
        self._optimizers = normalize_optimizers(value)
        self._opt = None
        self._opt_name = None

    @property
    def opt(self) -> torch.optim.Optimizer:
        """The optimizer of the current step; falls back to the only optimizer."""
        if self._opt is not None:
            return self._opt
        if len(self._optimizers) == 1:
            return next(iter(self._optimizers.values()))
        raise RuntimeError(
            "The current optimizer has not been set and there are "
            f"{len(self._optimizers)} optimizers ({', '.join(self._optimizers)})."
        )

    @opt.setter
    def opt(self, value: torch.optim.Optimizer | None) -> None:
        self._opt = value

    @property
    def opt_name(self) -> str:
        """Name of the current optimizer; falls back to the only optimizer's name."""
        if self._opt_name is not None:
            return self._opt_name
        if len(self._optimizers) == 1:
            return next(iter(self._optimizers))
        raise RuntimeError(
            "The current optimizer name has not been set and there are "
            f"{len(self._optimizers)} optimizers ({', '.join(self._optimizers)})."
        )

    @opt_name.setter
    def opt_name(self, value: str | None) -> None:
        self._opt_name = value

    @property
    def iter(self) -> int:
        """The current batch number within the phase, 1-based."""
        return self._iter

    @iter.setter
    def iter(self, value: int) -> None:
        self._iter = check_count(value, "ctx.iter", minimum=None)

    @property
    def min_epochs(self) -> int:
        """Minimum number of epochs (early stopping does not stop before it)."""
        return self._min_epochs

    @min_epochs.setter
    def min_epochs(self, value: int) -> None:
        value = _check_epoch_count(value, "min_epochs")
        if value > self._max_epochs:
            raise ValueError(f"`min_epochs` ({value}) is larger than `max_epochs` ({self._max_epochs}).")
        self._min_epochs = value

    @property
    def max_epochs(self) -> int:
        """Maximum number of epochs."""
        return self._max_epochs

    @max_epochs.setter
    def max_epochs(self, value: int) -> None:
        value = _check_epoch_count(value, "max_epochs")
        if value < self._min_epochs:
            raise ValueError(f"`max_epochs` ({value}) is smaller than `min_epochs` ({self._min_epochs}).")
        self._max_epochs = value

    @property
    def callbacks(self) -> list[Callback]:
        """The callbacks of this run, sorted by weight."""
        return self._callbacks

    @callbacks.setter
    def callbacks(self, value: list[Callback]) -> None:
        from luz.callbacks.base import CallbackRunner, check_callbacks

        self._callbacks = check_callbacks(value)
        for cb in self._callbacks:
            cb.ctx = self
        self._runner = CallbackRunner(self._callbacks)

    @property
    def input(self) -> Any:
        """The first element of ``batch`` (its ``"input"``/``"x"`` entry for a dict batch, the
        batch itself for a loader that yields bare tensors); setting it replaces that element."""
        batch = self.batch
        if type(batch) is tuple or type(batch) is list:  # the common case, checked cheaply
            return batch[0]
        if isinstance(batch, torch.Tensor):  # a loader of bare tensors: the batch is the input
            return batch
        if isinstance(batch, Mapping):
            return _dict_entry(batch, INPUT_KEYS, required=True)
        return batch[0]

    @input.setter
    def input(self, value: Any) -> None:
        self.batch = _replace(self.batch, 0, value)

    @property
    def target(self) -> Any:
        """The second element of ``batch`` (or its ``"target"``/``"y"`` entry for a dict batch;
        ``None`` if there is none, as for a bare-tensor batch)."""
        batch = self.batch
        if type(batch) is tuple or type(batch) is list:  # the common case, checked cheaply
            return batch[1] if len(batch) > 1 else None
        if isinstance(batch, torch.Tensor):
            return None
        if isinstance(batch, Mapping):
            return _dict_entry(batch, TARGET_KEYS, required=False)
        return batch[1] if len(batch) > 1 else None

    @target.setter
    def target(self, value: Any) -> None:
        self.batch = _replace(self.batch, 1, value)

    @property
    def records(self) -> Records:
        """Metrics and timings logged so far (read-only: use ``log`` / ``log_metric``)."""
        return self._records

    @records.setter
    def records(self, value: object) -> None:
        raise AttributeError(
            "`ctx.records` is read-only: use `ctx.log()` / `ctx.log_metric()`, or "
            "`ctx.unsafe_set_records()` to replace everything."
        )

    # -- methods ----------------------------------------------------------------------------

    def call_callbacks(self, name: str) -> None:
        """Fire breakpoint ``name`` on every callback that implements it, in order.

        Custom names are allowed if they start with ``on_`` (e.g. fired from a custom step).
        """
        from luz.events import check_breakpoint_name

        check_breakpoint_name(name)
        self.fire(name)

    def after_epoch_end(self, action: Callable[[], None]) -> None:
        """Run ``action()`` at each epoch end of this fit, after every callback's
        ``on_epoch_end`` (not at skipped or abandoned epochs). `AutoResume` uses it to save a
        state that includes what later callbacks did at the epoch end."""
        self.epoch_end_actions.append(action)

    def fire(self, name: str) -> None:
        """Fire a breakpoint without validating the name (the loop's fast path).

        In a distributed fit a `StopTraining` from a callback is held in ``stop_requested``
        instead of propagating, so this rank keeps pace with the others until they agree.
        """
        runner = self._runner
        if runner is None:
            return
        try:
            runner.fire(name)
        except StopTraining as stop:
            if not self.distributed:
                raise
            self.stop_requested = stop

    def log(self, what: str, set: str, value: Any, index: int | None = None, *, append: bool = True) -> None:
        """Record ``value`` at ``records[what][set]``.

        Args:
            what: top-level key (``"metrics"``, ``"profile"`` or your own).
            set: second-level key (e.g. ``"train"``).
            value: the value to store.
            index: 1-based position (an epoch, say); ``None`` appends.
            append: when the position holds a dict and ``value`` is a dict, merge into it
                instead of replacing.
        """
        entries = self._records.setdefault(what, {}).setdefault(set, [])
        if index is None:
            entries.append(value)
            return
        if index < 1:
            raise ValueError(f"`index` is 1-based, got {index}.")
        while len(entries) < index:
            entries.append({} if isinstance(value, dict) else None)
        current = entries[index - 1]
        if append and isinstance(current, dict) and isinstance(value, dict):
            current.update(value)
        else:
            entries[index - 1] = value

    def log_metric(self, name: str, value: float | dict[str, float]) -> None:
        """Record a metric value for the current epoch in the current set (train or valid)."""
        self.log("metrics", "train" if self.training else "valid", {name: value}, self.epoch)

    def get_log(self, what: str, set: str, index: int | None = None) -> Any:
        """The entry at 1-based ``index`` (default: the last), or ``None`` if absent."""
        entries = self._records.get(what, {}).get(set, [])
        if not entries:
            return None
        if index is None:
            return entries[-1]
        return entries[index - 1] if 1 <= index <= len(entries) else None

    def get_metrics(self, set: str, epoch: int | None = None) -> dict[str, Any] | None:
        """The ``{name: value}`` metrics of ``set`` at ``epoch`` (default: the last epoch)."""
        result = self.get_log("metrics", set, epoch)
        return result if result else None

    def get_metric(self, name: str, set: str, epoch: int | None = None) -> Any:
        """One metric value of ``set`` at ``epoch`` (default: the last), or ``None``."""
        metrics = self.get_metrics(set, epoch)
        return None if metrics is None else metrics.get(name)

    def get_formatted_metrics(self, set: str, epoch: int | None = None) -> dict[str, str]:
        """Metric values of ``set`` at ``epoch`` formatted for display (4 decimals)."""
        from luz.metrics.base import format_value

        return {k: format_value(v) for k, v in (self.get_metrics(set, epoch) or {}).items()}

    def get_metrics_df(self) -> pd.DataFrame:
        """All metrics as a DataFrame with columns ``set, metric, epoch, value``."""
        from luz.reporting.summary import metrics_frame

        return metrics_frame(self._records)

    def unsafe_set_records(self, records: Records) -> None:
        """Replace all records (used when resuming from a checkpoint)."""
        merged = new_records()
        for key, value in records.items():
            merged[key] = value
        self._records = merged

    def clean(self) -> None:
        """Drop transient state and unbind from the model once a run is over."""
        if self._model is not None:
            unbind_context(self._model)
        self._forward_model = None  # the DDP wrapper: nothing may keep it past the run
        callbacks, self._callbacks = self._callbacks, []
        try:
            for cb in callbacks:
                cb.teardown()
        finally:
            for cb in callbacks:
                cb.ctx = None
        self._callbacks = []
        self._runner = None
        self._optimizers = {}
        self._opt = None
        self.data = self.train_data = self.valid_data = None
        self.batch = self.pred = self.loss_grad = None
        self.epoch_end_actions = []
        self.loss = {}
        self.metrics = {"train": [], "valid": []}
        self.buffers = {}


def _no_context() -> None:
    return None


def bind_context(model: nn.Module, ctx: Context | None) -> None:
    """Make ``ctx`` reachable as ``model.ctx`` (without registering it as a submodule)."""
    object.__setattr__(model, "ctx", ctx)


def unbind_context(model: nn.Module) -> None:
    """Remove ``model.ctx`` if present."""
    model.__dict__.pop("ctx", None)


def normalize_optimizers(value: object) -> dict[str, torch.optim.Optimizer]:
    """Turn an optimizer or a mapping of them into ``{name: optimizer}``, validating both."""
    if isinstance(value, torch.optim.Optimizer):
        return {"opt": value}
    if not isinstance(value, Mapping):
        raise TypeError(
            "Expected a torch.optim.Optimizer or a dict of named optimizers, "
            f"got {type(value).__name__}. Return one from `set_optimizers` or pass `optimizer=`."
        )
    result: dict[str, torch.optim.Optimizer] = {}
    for name, opt in value.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"Optimizer names must be non-empty strings, got {name!r}.")
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                f"Expected a torch.optim.Optimizer for optimizer {name!r}, got {type(opt).__name__}."
            )
        result[name] = opt
    if not result:
        raise ValueError("The dict of optimizers is empty: return at least one optimizer.")
    return result


INPUT_KEYS = ("input", "x")
"""Keys of a dict batch that hold the input (the first one present is used)."""
TARGET_KEYS = ("target", "y")
"""Keys of a dict batch that hold the target."""


def _dict_entry(batch: Mapping[Any, Any] | torch.Tensor, keys: tuple[str, ...], *, required: bool) -> Any:
    if isinstance(batch, Mapping):
        for key in keys:
            if key in batch:
                return batch[key]
        if not required and any(k in batch for k in INPUT_KEYS):
            return None
    raise _structure_error(batch)


def _structure_error(batch: Mapping[Any, Any] | torch.Tensor) -> TypeError:
    if isinstance(batch, torch.Tensor):
        got = f"a bare tensor of shape {tuple(batch.shape)}"
        fix = (
            "pass the tensors to fit directly (`fit((x, y))`, or `fit(x)` for `(x,)` batches), or "
            "make your Dataset return `(input, target)` tuples"
        )
    else:
        got = f"a {type(batch).__name__} with keys {list(batch)[:8]}"
        fix = (
            "name the entries 'input' and 'target' (or 'x' and 'y'), or return `(input, target)` "
            "tuples (a dict input goes first: "
            "`({'a': a, 'b': b}, y)` calls `model(a=a, b=b)`), or define a custom `step()` that "
            "reads `ctx.batch`"
        )
    return TypeError(
        f"luz expects each batch to be a tuple/list `(input, target, ...)` or a dict with 'input' "
        f"and 'target' (or 'x' and 'y') entries, got {got}. To fix: {fix}."
    )


def _replace(batch: Any, index: int, value: Any) -> Any:
    if isinstance(batch, Mapping):
        keys = INPUT_KEYS if index == 0 else TARGET_KEYS
        key = next((k for k in keys if k in batch), keys[0])
        return {**batch, key: value}
    if isinstance(batch, torch.Tensor):  # a bare-tensor batch is its input
        if index == 0:
            return value if isinstance(value, torch.Tensor) else (value,)
        return (batch, value)
    items = list(batch)
    while len(items) <= index:
        items.append(None)
    items[index] = value
    return tuple(items) if isinstance(batch, tuple) else items

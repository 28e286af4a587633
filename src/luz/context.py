"""The context: the one object that `fit`, `evaluate` and `predict`, callbacks and metrics share.

It holds the state of a run and nothing else: the records live in `luz.records`, reading a
batch in `luz.batch`, and firing breakpoints in the runner that `luz.run` builds and hands in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from luz._context_fields import CheckedFields
from luz._validate import normalize_optimizers
from luz.batch import BatchAccess
from luz.events import check_breakpoint_name
from luz.records import Records, RecordsAccess, new_records

if TYPE_CHECKING:
    from luz._stream import TrainStream
    from luz.accelerator import Accelerator
    from luz.callbacks._runner import CallbackRunner
    from luz.callbacks.base import Callback
    from luz.metrics.base import Metric
    from luz.metrics.set import MetricSet

__all__ = [
    "Context",
    "Records",
    "bind_context",
    "new_records",
    "normalize_optimizers",
    "unbind_context",
]


def _default_step_opt(opt: torch.optim.Optimizer) -> None:
    opt.step()


def _fire_nothing(name: str) -> None:
    return None


class Context(CheckedFields, RecordsAccess, BatchAccess):
    """State shared by the loop, the callbacks (``self.ctx``), metrics and the model (``self.ctx``).

    One context exists per `fit`, `evaluate` or `predict` call. Callbacks communicate through it;
    ``buffers`` is free scratch space for them. Fields are valid as noted; ``records``,
    ``device`` and ``callbacks`` are read-only.

    Args:
        verbose: whether progress is shown.
        accelerator: places the model and batches on ``device``.
        runner: the callback runner of the run; its callbacks get this context as ``ctx``.
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
    train_stream: TrainStream | None
    """With ``fit(steps_per_epoch=n)``: where the training data stands (passes started, batches
    taken); each epoch takes its next ``n`` batches. ``None``: an epoch is one pass."""
    epoch: int
    """The current epoch, 1-based (``evaluate`` uses 1)."""
    training: bool
    """``True`` in the training phase, ``False`` in validation, evaluate and predict."""
    batch: Any
    """The current batch as the loader produced it (moved to ``device``)."""
    pred: Any
    """The last prediction (kept detached after each training batch: its graph is freed); in
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
    accumulating: bool
    """``True`` while a training batch only accumulates gradients (`GradientAccumulation`
    sets it per batch): the default step runs forward, loss and backward, but not
    ``before_step``, the optimizer step, ``zero_grad`` or ``after_step``."""
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

    def __init__(
        self,
        *,
        verbose: bool = False,
        accelerator: Accelerator | None = None,
        runner: CallbackRunner | None = None,
    ) -> None:
        self.verbose = verbose
        self.accelerator = accelerator
        self._model: nn.Module | None = None
        self._forward_model: nn.Module | None = None
        self._optimizers: dict[str, torch.optim.Optimizer] = {}
        self._opt: torch.optim.Optimizer | None = None
        self._opt_name: str | None = None
        self._min_epochs = 0
        self._max_epochs = 999_999_999
        self.epoch = 0
        self._iter = 0
        self.training = False
        self.loss_fn = None
        self.step_opt = _default_step_opt
        self.accumulating = False
        self.backward = None
        self.metric_set = None
        self.metric_names = {"train": [], "valid": []}
        self._records: Records = new_records()
        self.hparams = {}
        self.opt_hparams = {}
        self._drop_transient()
        self._runner = runner
        self._callbacks: list[Callback] = list(runner.callbacks) if runner is not None else []
        # ``ctx.fire(name)``: the runner's own bound method, so the default step fires its
        # breakpoints with no extra call; `call_callbacks` is the checked public form.
        self.fire: Callable[[str], None] = runner.fire if runner is not None else _fire_nothing
        # ``callers[name]``: ``fire(name)`` for each built-in breakpoint some callback
        # implements, so the default step skips the others without a call.
        self.callers: dict[str, Callable[[], None]] = runner.callers if runner is not None else {}
        for cb in self._callbacks:
            cb.ctx = self

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
        """What a training forward pass runs through: the ``DistributedDataParallel`` wrapper
        of ``model`` in a distributed fit, else ``model``. A custom ``step`` uses it in training."""
        return self._forward_model if self._forward_model is not None else self.model

    @forward_model.setter
    def forward_model(self, module: nn.Module | None) -> None:
        self._forward_model = module

    @property
    def callbacks(self) -> list[Callback]:
        """The callbacks of this run, sorted by weight (read-only: pass them to fit)."""
        return self._callbacks

    # -- methods ----------------------------------------------------------------------------

    def call_callbacks(self, name: str) -> None:
        """Fire breakpoint ``name`` on every callback that implements it, in order.

        Custom names are allowed if they start with ``on_`` (e.g. fired from a custom step).
        """
        check_breakpoint_name(name)
        self.fire(name)

    def after_epoch_end(self, action: Callable[[], None]) -> None:
        """Run ``action()`` when each epoch of this fit commits, after every callback's
        ``on_epoch_end`` (not at skipped or abandoned epochs)."""
        if self._runner is None:
            raise RuntimeError("This context has no runner: after_epoch_end() is for a running fit.")
        self._runner.after_epoch_end(action)

    def clean(self) -> None:
        """Drop transient state, tear the callbacks down and unbind from the model once a run is over."""
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
        self._runner = None
        self.fire = _fire_nothing
        self.callers = {}
        self._optimizers = {}
        self._opt = None
        self._drop_transient()

    def _drop_transient(self) -> None:
        # What a run holds only while it runs: loaders, the batch and its results, scratch space.
        self.data = self.train_data = self.valid_data = None
        self.train_stream = None
        self.batch = self.pred = self.loss_grad = None
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

"""Defining what to train: `setup`, hyper-parameters, and the `LuzModule` it returns."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from luz._hints import keras_hints
from luz._module_checks import (
    build_error,
    check_callable,
    check_loss,
    check_module,
    check_numeric_hparam,
    check_optimizer_params,
    check_param_groups,
    name_of,
    signature_accepts,
)
from luz._validate import normalize_optimizers
from luz.metrics.set import MetricSet, as_metric_set
from luz.outputs import OutputLoss
from luz.reporting import count_parameters, render_fields_html

if TYPE_CHECKING:
    from luz.accelerator import Accelerator
    from luz.results import Fitted

ModuleSpec = type[nn.Module] | nn.Module | Callable[..., nn.Module]
LossSpec = Callable[..., torch.Tensor] | Literal["output"]
"""A loss function ``(pred, target) -> scalar tensor``, or ``"output"``: the loss the model
returns (the ``loss`` field of its output, as Hugging Face models give it)."""


def _defines(module: object, method: str) -> bool | None:
    """Whether the module (class or instance) has a callable ``method``; ``None`` if unknown
    (a factory function: its model is only known at fit time)."""
    cls = module if isinstance(module, type) else type(module) if isinstance(module, nn.Module) else None
    if cls is None:
        return None
    return callable(getattr(cls, method, None))


LossSource = Literal["setup", "method", "step", "unknown", "none"]
"""Where a run's loss comes from: ``setup(loss=...)``, the module's ``loss`` method, its custom
``step`` (which computes the loss itself), not known yet (a factory), or nowhere."""


def loss_source(loss: object, module: object) -> LossSource:
    """The one rule for which loss a run uses: ``setup(loss=...)`` over the module's ``loss``
    method; with neither, a custom ``step`` computes it. ``module`` is a class, a model or a
    factory function (``"unknown"`` until it builds a model)."""
    if loss is not None:
        return "setup"
    if _defines(module, "loss"):
        return "method"
    if isinstance(module, nn.Module) and callable(getattr(module, "loss", None)):
        return "method"  # a loss submodule or attribute set in __init__
    if _defines(module, "step"):
        return "step"
    return "unknown" if _defines(module, "loss") is None else "none"


def resolve_loss(
    loss: LossSpec | None, model: nn.Module, *, required: bool = True
) -> Callable[..., torch.Tensor] | None:
    """The loss callable a run on ``model`` uses (see `loss_source`): ``loss="output"`` is a
    `luz.outputs.OutputLoss`; ``None`` when the model's ``step`` computes the loss, or when
    there is none and ``required`` is false.

    Raises:
        ValueError: there is no loss at all and ``required`` is true.
    """
    source = loss_source(loss, model)
    if source == "setup":
        return OutputLoss() if isinstance(loss, str) else loss
    if source == "method":
        method: Callable[..., torch.Tensor] = getattr(model, "loss")  # noqa: B009 - typed as Tensor
        return method
    if source == "none" and required:
        raise no_loss_error(model)
    return None


def no_loss_error(module: object) -> ValueError:
    """The error for a module with no loss, naming the three ways to give one."""
    owner = type(module) if isinstance(module, nn.Module) else module
    return ValueError(
        f"No loss for {name_of(owner)}: "
        "pass `loss=` to luz.setup() (e.g. nn.CrossEntropyLoss()), define a `loss(pred, target)` "
        "method on the module, or define a custom `step()` method that computes the loss and "
        "optimises itself."
    )


def setup(
    module: ModuleSpec,
    *,
    loss: LossSpec | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    metrics: object = None,
    backward: Callable[[torch.Tensor], None] | None = None,
) -> LuzModule:
    """Describe how to train a module: its loss, optimizer and metrics.

    Args:
        module: an ``nn.Module`` subclass (each fit builds ``module(**hparams)``), a function
            returning a module, or a module instance (each fit trains a deep copy).
        loss: ``(pred, target) -> scalar tensor``; default: the module's ``loss`` method.
            ``"output"``: the loss the model returns, the ``loss`` field (key or attribute) of
            its output, as a Hugging Face model computes it from the batch's ``labels``. When
            the output has ``logits``, metrics, ``predict`` and a loss function receive them.
        optimizer: ``(params, **opt_hparams) -> Optimizer``, e.g. ``torch.optim.Adam``;
            default: the module's ``set_optimizers(**opt_hparams)`` method.
        metrics: metrics (instances), or a `luz.MetricSet`. The loss is always tracked.
        backward: ``fn(loss)`` replacing ``loss.backward()``.

    Returns:
        A `LuzModule`; chain ``.set_hparams(...)``, ``.set_opt_hparams(...)``, ``.fit(...)``.

    Raises:
        ValueError: no loss (and no ``loss``/``step`` method), or no optimizer (and no
            ``set_optimizers`` method).
        TypeError: an argument of the wrong kind (a ``loss`` string other than ``"output"``).

    Example:
        >>> import torch, luz
        >>> from torch import nn
        >>> model = luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        >>> model = model.set_hparams(in_features=3, out_features=1).set_opt_hparams(lr=0.1)
    """
    module = check_module(module)
    check_loss(loss)
    check_callable(optimizer, "optimizer", "an optimizer class such as torch.optim.Adam")
    if backward is not None and not callable(backward):
        raise TypeError(
            f"`backward` must be a function taking the loss, got {backward!r} ({type(backward).__name__})."
        )
    if loss_source(loss, module) == "none":
        raise no_loss_error(module)
    if optimizer is None and _defines(module, "set_optimizers") is False:
        raise ValueError(
            f"No optimizer for {name_of(module)}: pass `optimizer=` to setup() (e.g. "
            "torch.optim.Adam), or define a `set_optimizers(**opt_hparams)` method on the module "
            "returning an optimizer or a dict of named optimizers."
        )
    metric_set = as_metric_set(metrics)
    return LuzModule(module, loss=loss, optimizer=optimizer, metrics=metric_set, backward=backward)


class LuzModule:
    """A module with its training setup. Made by `luz.setup`; immutable: ``set_hparams`` and
    ``set_opt_hparams`` return new objects."""

    def __init__(
        self,
        module: ModuleSpec,
        *,
        loss: LossSpec | None,
        optimizer: Callable[..., torch.optim.Optimizer] | None,
        metrics: MetricSet,
        backward: Callable[[torch.Tensor], None] | None,
        hparams: Mapping[str, Any] | None = None,
        opt_hparams: Mapping[str, Any] | None = None,
    ) -> None:
        self.module = module
        self.loss = loss
        self.optimizer = optimizer
        self.metrics = metrics
        self.backward = backward
        self.hparams: dict[str, Any] = dict(hparams or {})
        self.opt_hparams: dict[str, Any] = dict(opt_hparams or {})

    def _replace(self, **changes: Any) -> LuzModule:
        fields: dict[str, Any] = {
            "loss": self.loss,
            "optimizer": self.optimizer,
            "metrics": self.metrics,
            "backward": self.backward,
            "hparams": self.hparams,
            "opt_hparams": self.opt_hparams,
        }
        fields.update(changes)
        return LuzModule(self.module, **fields)

    def set_hparams(self, **hparams: Any) -> LuzModule:
        """A new `LuzModule` whose model is built with ``module(**hparams)`` (replaces, not
        merges, earlier hyper-parameters)."""
        if isinstance(self.module, nn.Module):
            raise TypeError(
                "set_hparams() cannot be used when `module` is a module instance: it is already "
                "built. Pass the class to luz.setup() to set hyper-parameters."
            )
        return self._replace(hparams=hparams)

    def set_opt_hparams(self, **opt_hparams: Any) -> LuzModule:
        """A new `LuzModule` whose optimizers get ``**opt_hparams`` (e.g. ``lr=1e-3``);
        replaces earlier ones.

        Raises:
            TypeError, ValueError: a common numeric hyper-parameter (``lr``, ``momentum``,
                ``weight_decay``, ``eps``, ``betas``) that is not a finite non-negative number.
        """
        for name, value in opt_hparams.items():
            check_numeric_hparam(value, name, name, "set_opt_hparams")
        return self._replace(opt_hparams=opt_hparams)

    # -- building -------------------------------------------------------------------------

    def build_model(self) -> nn.Module:
        """A fresh model: ``module(**hparams)``, or a deep copy of a module instance."""
        if isinstance(self.module, nn.Module):
            return copy.deepcopy(self.module)
        try:
            model = self.module(**self.hparams)
        except TypeError as error:
            if not signature_accepts(self.module, self.hparams):
                raise TypeError(
                    f"Could not build {name_of(self.module)} with hparams {self.hparams}: {error}. "
                    "Check .set_hparams(...) against the module's __init__ arguments."
                ) from error
            raise build_error(error, self.module, self.hparams, TypeError) from error
        except (ValueError, RuntimeError) as error:  # torch's "negative dimension" is a RuntimeError
            raise build_error(error, self.module, self.hparams, ValueError) from error
        if not isinstance(model, nn.Module):
            raise TypeError(f"`module` returned {type(model).__name__}, expected a torch.nn.Module.")
        return model

    def build_optimizers(self, model: nn.Module) -> dict[str, torch.optim.Optimizer]:
        """The model's optimizers by name (``"opt"`` for a single one)."""
        if self.optimizer is not None:
            params = list(model.parameters())
            if not params:
                raise ValueError(
                    f"{type(model).__name__} has no parameters, so there is nothing to optimise. "
                    "Check the module's __init__ registers its layers as attributes."
                )
            optimizers = normalize_optimizers(self.optimizer(params, **self.opt_hparams))
            check_optimizer_params(model, optimizers)  # a factory may ignore `params`
            check_param_groups(optimizers)
            return optimizers
        set_optimizers = getattr(model, "set_optimizers", None)
        if not callable(set_optimizers):
            raise ValueError(
                f"No optimizer for {type(model).__name__}: pass `optimizer=` to luz.setup() or "
                "define a `set_optimizers(**opt_hparams)` method."
            )
        optimizers = normalize_optimizers(set_optimizers(**self.opt_hparams))
        check_optimizer_params(model, optimizers)
        check_param_groups(optimizers)
        return optimizers

    def loss_fn(self, model: nn.Module) -> Callable[..., torch.Tensor] | None:
        """The loss in effect for ``model`` (see `resolve_loss`)."""
        return resolve_loss(self.loss, model)

    def backward_fn(self, model: nn.Module) -> Callable[[torch.Tensor], None] | None:
        """``setup(backward=...)``, else the module's ``backward`` method, else ``None``."""
        if self.backward is not None:
            return self.backward
        method = getattr(model, "backward", None)
        return method if callable(method) else None

    # -- running --------------------------------------------------------------------------

    @keras_hints  # as on luz.fit: Keras-style calls get a hint naming the pyluz way
    def fit(
        self,
        data: Any,
        *,
        epochs: int | tuple[int, int] = 10,
        callbacks: Any = None,
        valid_data: Any = None,
        accelerator: Accelerator | None = None,
        verbose: bool | None = None,
        dataloader_options: dict[str, Any] | None = None,
        compile: bool | dict[str, Any] = False,
        steps_per_epoch: int | None = None,
    ) -> Fitted:
        """Train a fresh model and return a `luz.Fitted`: `luz.fit` on this module (see there
        for the arguments)."""
        from luz.run import fit  # the fluent form of the entry point one layer up

        return fit(
            self,
            data,
            epochs=epochs,
            callbacks=callbacks,
            valid_data=valid_data,
            accelerator=accelerator,
            verbose=verbose,
            dataloader_options=dataloader_options,
            compile=compile,
            steps_per_epoch=steps_per_epoch,
        )

    def _own_loss(self) -> str:
        return {
            "method": "module.loss()",
            "step": "computed by module.step()",
            "unknown": "the model's loss() or step()",
        }.get(loss_source(None, self.module), "none")

    def _fields(self) -> list[tuple[str, str]]:
        if isinstance(self.module, nn.Module):
            total, trainable = count_parameters(self.module)
            parameters = f"{total:,} ({trainable:,} trainable)"
        else:
            parameters = "counted when fit builds the model"  # building it here would run user code
        return [
            ("module", name_of(self.module)),
            ("parameters", parameters),
            ("loss", _describe(self.loss, self._own_loss())),
            ("optimizer", _describe(self.optimizer, "module.set_optimizers()")),
            ("metrics", f"train={self.metrics.names('train')}, valid={self.metrics.names('valid')}"),
            ("hparams", str(self.hparams)),
            ("opt_hparams", str(self.opt_hparams)),
        ]

    def __repr__(self) -> str:
        return "\n".join(["<LuzModule>", *(f"  {name + ':':<13}{value}" for name, value in self._fields())])

    def _repr_html_(self) -> str:
        """The fields of ``repr`` as an HTML table, for notebooks (all text escaped)."""
        return render_fields_html("`luz.LuzModule`", self._fields())


def _describe(value: object, fallback: str) -> str:
    if value is None:
        return fallback
    if isinstance(value, str):  # loss='output', the one string setup accepts
        return repr(OutputLoss())
    if isinstance(value, nn.Module):
        return repr(value)
    return name_of(value)

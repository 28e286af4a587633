"""The checks behind `luz.setup` and `LuzModule`: what ``module``, ``loss`` and the callables
may be, the optimizers' parameters and numeric hyper-parameters, and the error when a module
cannot be built from its hparams. Each error names the argument, what was given and the fix."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from luz._validate import check_real
from luz.errors import with_origin
from luz.outputs import OUTPUT

if TYPE_CHECKING:
    from luz.module import ModuleSpec


def name_of(obj: object) -> str:
    """How errors name a module, loss or optimizer: its qualified name, else its type's name."""
    return getattr(obj, "__qualname__", None) or type(obj).__name__


def check_module(module: object) -> ModuleSpec:
    """``setup(module=)``: an ``nn.Module`` subclass, instance, or a function returning one."""
    if isinstance(module, nn.Module):
        return module
    if isinstance(module, type) and not issubclass(module, nn.Module):
        raise TypeError(
            f"`module` must be a torch.nn.Module subclass (or a function returning a module), got "
            f"the class {module.__name__}."
        )
    if not callable(module):
        raise TypeError(
            f"`module` must be a torch.nn.Module subclass, a module instance or a function "
            f"returning a module; got {module!r} ({type(module).__name__})."
        )
    return module


def check_loss(loss: object) -> None:
    """``setup(loss=)``: ``None``, ``"output"`` or a callable ``(pred, target) -> scalar``."""
    if isinstance(loss, str):
        if loss != OUTPUT:
            raise TypeError(
                f"`loss` as a string must be 'output' (the loss the model returns, as Hugging Face "
                f"transformers models do when the batch holds labels), got {loss!r}. Pass 'output' "
                "or a loss function such as nn.CrossEntropyLoss()."
            )
        return
    expected = "a callable (pred, target) -> scalar tensor, e.g. nn.MSELoss(), or 'output'"
    check_callable(loss, "loss", expected)


def check_callable(value: object, argument: str, expected: str) -> None:
    """``None`` or a callable; a module class or an optimizer instance gets its own fix."""
    if value is None:
        return
    if isinstance(value, type) and issubclass(value, nn.Module):
        raise TypeError(
            f"`{argument}` got the class {value.__name__}; did you forget to instantiate it? "
            f"Pass {value.__name__}() instead."
        )
    if isinstance(value, torch.optim.Optimizer):
        raise TypeError(
            f"`{argument}` got an optimizer instance; pass the optimizer class (e.g. "
            "torch.optim.Adam) and its hyper-parameters with set_opt_hparams(lr=...)."
        )
    if not callable(value):
        raise TypeError(f"`{argument}` must be {expected}, got {value!r} ({type(value).__name__}).")


def build_error(
    error: Exception, module: object, hparams: Mapping[str, Any], base: type[Exception]
) -> Exception:
    """``error`` (raised while building ``module(**hparams)``) re-raised naming the hparams, as
    an instance of ``base`` and of ``type(error)``."""
    given = ", ".join(f"{k}={v!r}" for k, v in hparams.items()) or "no hparams"
    message = (
        f"Could not build {name_of(module)} from the hparams given to .set_hparams() ({given}); "
        "check their values against what the module's __init__ expects (sizes must be positive "
        "integers, for example). The module said"
    )
    return with_origin(error, message, base)


def signature_accepts(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> bool:
    """Whether ``fn`` can be called with ``kwargs`` (by its signature; nothing is called)."""
    try:
        inspect.signature(fn).bind(**kwargs)
    except (TypeError, ValueError):
        return False
    return True


def check_optimizer_params(model: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
    """A ``ValueError`` when an optimizer holds parameters that are not ``model``'s."""
    own = {id(p) for p in model.parameters()}
    for name, opt in optimizers.items():
        for group in opt.param_groups:
            if any(id(p) not in own for p in group["params"]):
                raise ValueError(
                    f"Optimizer {name!r} holds parameters that are not the model's, so training "
                    "would not change the model. Build it from the parameters luz passes to "
                    "`optimizer=`, or in set_optimizers() from self.parameters() (or a "
                    "submodule's parameters)."
                )


# The numeric hyper-parameters torch's optimizers share: each must be a finite number >= 0
# (``betas`` a pair of numbers in [0, 1)). torch checks some only at the first step, some with
# a message that does not name the argument, and lets ``lr=inf`` train to NaN.
NUMERIC_OPT_HPARAMS = frozenset({"lr", "momentum", "weight_decay", "eps"})


def check_numeric_hparam(value: object, key: str, argument: str, where: str) -> None:
    """``lr``, ``momentum``, ``weight_decay``, ``eps``: a finite number >= 0; ``betas``: a pair
    in [0, 1). Other keys pass."""
    hint = f"Pass a number, e.g. {where}(lr=1e-3)." if key == "lr" else f"Fix `{key}` in {where}()."
    if key in NUMERIC_OPT_HPARAMS:
        check_real(value, argument, minimum=0.0, hint=hint)
    elif key == "betas":
        pair = "a pair of numbers in [0, 1), e.g. (0.9, 0.999)"
        if not isinstance(value, tuple | list) or len(value) != 2:
            raise TypeError(f"`{argument}` must be {pair}, got {value!r} ({type(value).__name__}). {hint}")
        for i, beta in enumerate(value):
            check_real(beta, f"{argument}[{i}]", minimum=0.0, below=1.0, hint=hint)


def check_param_groups(optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
    """Check the numeric hyper-parameters each param group holds, once per fit before any step
    (a factory such as ``functools.partial(Adam, lr=math.inf)`` bypasses `set_opt_hparams`)."""
    for name, opt in optimizers.items():
        for index, group in enumerate(opt.param_groups):
            for key in NUMERIC_OPT_HPARAMS | {"betas"}:
                if key in group:
                    argument = f"{key} of optimizer {name!r} (param group {index})"
                    check_numeric_hparam(group[key], key, argument, "set_opt_hparams")

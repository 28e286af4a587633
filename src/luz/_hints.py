"""Hints for habits from Keras and skorch: ``fit(x, y)``, ``batch_size=``, ``validation_split=``.

A user coming from ``model.fit(x, y, batch_size=32, validation_split=0.2)`` gets Python's bare
``TypeError`` from pyluz's keyword-only ``fit``. `keras_hints` wraps an entry point so that
those calls fail with a ``TypeError`` naming the pyluz way, while the signature the wrapper
shows (``inspect.signature``, IDEs, type checkers) stays the wrapped function's own.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

KERAS_KEYWORDS: dict[str, str] = {
    "batch_size": "dataloader_options={'batch_size': 32}",
    "shuffle": "dataloader_options={'shuffle': True}",
    "validation_split": "valid_data=0.2 (the fraction of the training data held out)",
    "validation_data": "valid_data=(x_valid, y_valid)",
    "device": "accelerator=luz.Accelerator(cpu=True) (or luz.Accelerator(cuda_index=0))",
    "max_epochs": "epochs=10",
    "nb_epoch": "epochs=10",
    "lr": "luz.setup(...).set_opt_hparams(lr=1e-3)",
    "accumulate_grad_batches": "callbacks=[luz.callbacks.GradientAccumulation(4)]",
    "gradient_accumulation_steps": "callbacks=[luz.callbacks.GradientAccumulation(4)]",
}
"""Keras/skorch/Lightning keywords that pyluz spells differently, with the pyluz way."""


def keras_hints(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap the entry point ``fn`` so Keras-style calls raise a ``TypeError`` with the pyluz way.

    Extra positional arguments (``fit(x, y)``) and the keywords of `KERAS_KEYWORDS` get a hint;
    any other call goes to ``fn`` unchanged (other mistakes keep Python's own message). The
    check is one length and one set comparison per call of the entry point, not per batch.
    """
    parameters = inspect.signature(fn).parameters.values()
    positional = sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)
    known = frozenset(p.name for p in parameters)
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if len(args) > positional or not kwargs.keys() <= known:
            hint = _hint(name, len(args) - positional, [k for k in kwargs if k not in known])
            if hint:
                raise TypeError(hint)
        return fn(*args, **kwargs)

    return wrapper


def keyword_hints(name: str, keywords: list[str]) -> list[str]:
    """One sentence per keyword of ``keywords`` found in `KERAS_KEYWORDS`: the pyluz way."""
    return [
        f"{name}() has no `{k}` argument; in pyluz write {KERAS_KEYWORDS[k]}."
        for k in keywords
        if k in KERAS_KEYWORDS
    ]


def _hint(name: str, extra_positional: int, unknown: list[str]) -> str | None:
    lines: list[str] = []
    if extra_positional > 0:
        lines.append(
            f"{name}() takes the data as one argument: pass inputs and targets together, "
            f"{name}((x, y)) (a tuple, a Dataset or a DataLoader), not {name}(x, y); "
            "its other arguments are keyword-only."
        )
    keras = [k for k in unknown if k in KERAS_KEYWORDS]
    lines += keyword_hints(name, keras)
    if not lines:
        return None
    if len(keras) < len(unknown):
        others = ", ".join(f"`{k}`" for k in unknown if k not in KERAS_KEYWORDS)
        lines.append(f"{name}() also got unexpected keyword arguments: {others}.")
    return " ".join(lines)

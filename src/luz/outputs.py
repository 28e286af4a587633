"""Reading a model's output: the prediction metrics and predict see, and the loss it carries.

A model may return more than a tensor: a Hugging Face ``transformers`` model returns a
``ModelOutput`` with ``logits`` and, when the batch holds ``labels``, its own ``loss``. With
``setup(loss="output")`` the loss is that ``loss`` field; whenever the output has a ``logits``
field, metrics, ``predict`` and a loss function given to ``setup`` receive the logits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from luz._tree import map_tensors

OUTPUT = "output"
"""The ``setup(loss=...)`` value that takes the loss the model returns."""


def prediction(output: Any) -> Any:
    """What metrics, ``predict`` and a ``setup(loss=...)`` function see of a model's output: its
    ``logits`` field when it has one (a key of a mapping such as a Hugging Face ``ModelOutput``,
    or a field of a named tuple or dataclass), else the output itself.

    Example:
        >>> import torch
        >>> prediction({"loss": torch.tensor(1.0), "logits": torch.ones(2)})
        tensor([1., 1.])
        >>> prediction(torch.zeros(1))
        tensor([0.])
    """
    if isinstance(output, torch.Tensor):  # the common case, checked first: one isinstance
        return output
    logits = _declared_field(output, "logits")
    return output if logits is None else logits


def _declared_field(output: Any, name: str) -> Any:
    """The ``name`` field of a mapping, named tuple or dataclass ``output``, or ``None``.

    Declared fields only: an object that merely computes a ``logits`` attribute (a
    ``torch.distributions.Categorical``) is a prediction of its own and stays whole.
    """
    if isinstance(output, Mapping):  # a ModelOutput is an OrderedDict: unset fields are absent
        return output.get(name)
    fields = getattr(type(output), "_fields", None)  # a named tuple
    if fields is None and dataclasses.is_dataclass(output):
        fields = [field.name for field in dataclasses.fields(output)]
    return getattr(output, name, None) if fields is not None and name in fields else None


def _field(output: Any, name: str) -> Any:
    """The ``name`` field of ``output`` (a key of a mapping, else an attribute), or ``None``."""
    if isinstance(output, Mapping):
        return output.get(name)
    return getattr(output, name, None)


def detached(output: Any) -> Any:
    """``output`` with every tensor detached, as ``ctx.pred`` is kept after a training batch.

    Tensors in tuples, lists and dicts are detached (a mapping becomes a dict). A model output
    with ``logits`` also loses its fields that are opaque objects rather than tensors or
    containers of them, such as a Hugging Face key/value cache: their tensors still hold the
    batch's autograd graph, which would otherwise stay alive into the next batch.
    """
    if isinstance(output, torch.Tensor):
        return output.detach()
    kept = map_tensors(output, torch.Tensor.detach)
    if isinstance(kept, dict) and "logits" in kept:
        return {key: value for key, value in kept.items() if _plain(value)}
    return kept


def _plain(value: Any) -> bool:
    """A tensor, a number, a string, ``None`` or a tuple/list/dict of them."""
    if value is None or isinstance(value, torch.Tensor | int | float | bool | str):
        return True
    if isinstance(value, tuple | list):
        return all(_plain(item) for item in value)
    if isinstance(value, Mapping):
        return all(_plain(item) for item in value.values())
    return False


class OutputLoss:
    """The loss of ``setup(loss="output")``: the ``loss`` field of the model's output.

    Called as ``OutputLoss()(output, target)`` like any loss; the target is not used (the model
    computed the loss from the ``labels`` it was given).
    """

    def __call__(self, output: Any, target: Any = None) -> torch.Tensor:
        """The ``loss`` field (key or attribute) of ``output``.

        Raises:
            ValueError: the output has no ``loss`` field, or it is ``None`` (a Hugging Face
                model given no ``labels``); the message names the output's type and fields.
        """
        loss = _field(output, "loss")
        if not isinstance(loss, torch.Tensor):
            raise missing_loss_error(output, target)
        return loss

    def __repr__(self) -> str:
        return "the model output's loss (loss='output')"


def missing_loss_error(output: Any, target: Any) -> ValueError:
    """The error for ``loss="output"`` when the model's output carries no loss."""
    if isinstance(output, torch.Tensor):
        got = f"a tensor of shape {tuple(output.shape)}, which has no `loss` field"
    else:
        fields = list(output) if isinstance(output, Mapping) else _public_fields(output)
        got = f"{type(output).__name__} with fields {fields[:8]} and no `loss`"
    labels = (
        "the batch has no `labels` entry, so a Hugging Face model computes no loss: "
        if target is None
        else ""
    )
    return ValueError(
        f"setup(loss='output') takes the loss the model returns, but the model returned {got}; "
        f"{labels}include `labels` in each batch (a dict batch's `labels` entry goes to the "
        "model too), have the model return its loss as a `loss` key or attribute, or pass a "
        "loss function to setup(loss=...) (e.g. nn.CrossEntropyLoss(), which receives the "
        "output's `logits`)."
    )


def _public_fields(output: Any) -> list[str]:
    names = getattr(output, "_fields", None)  # a named tuple
    if names is not None:
        return list(names)
    return [name for name in vars(output) if not name.startswith("_")] if hasattr(output, "__dict__") else []

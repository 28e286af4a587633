"""The loaders of a run: training and evaluation loaders with luz's defaults, the validation
split, the options check, and the warnings about the user's data (reported at the user's line)."""

from __future__ import annotations

import inspect
import math
import os
import reprlib
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from luz._inmemory import Structure, TensorBatchDataset
from luz._validate import check_real
from luz.data import _loader, _memory_dataset, as_dataloader


def check_fraction(value: object) -> float:
    """Validate a ``valid_data`` fraction: a float in (0, 1).

    Every bad value is a ``ValueError``, a non-number too (SPEC §8.2)."""
    return check_real(
        value,
        "valid_data",
        above=0,
        below=1,
        wrong_type=ValueError,
        hint="As a number it is the share of `data` used for validation: pass a float in (0, 1).",
    )


def split_valid(data: Any, fraction: float) -> tuple[Dataset[Any], Dataset[Any]]:
    """Carve ``floor(n * fraction)`` random samples out of ``data`` for validation.

    The indices come from torch's global RNG, so ``torch.manual_seed`` reproduces the split.
    Both parts keep the original order.
    """
    fraction = check_fraction(fraction)
    if isinstance(data, DataLoader):
        raise ValueError(
            "`valid_data` as a fraction cannot split a DataLoader: pass a Dataset (or tensors) "
            "as `data`, or pass the validation DataLoader as `valid_data`."
        )
    dataset = _memory_dataset(data)
    if isinstance(dataset, IterableDataset):
        raise ValueError(
            "`valid_data` as a fraction cannot split an IterableDataset: pass separate "
            "validation data instead."
        )
    n = len(dataset)
    n_valid = math.floor(n * fraction)
    perm = torch.randperm(n)
    valid_idx, _ = torch.sort(perm[:n_valid])
    train_idx, _ = torch.sort(perm[n_valid:])
    if isinstance(dataset, TensorBatchDataset):
        return dataset.subset(train_idx), dataset.subset(valid_idx)
    return Subset(dataset, train_idx.tolist()), Subset(dataset, valid_idx.tolist())


_LOADER_KEYS = frozenset(inspect.signature(DataLoader).parameters) - {"dataset"}
_OWN_CONVERTERS = frozenset(
    as_dataloader.dispatch(t) for t in (object, DataLoader, Dataset, torch.Tensor, np.ndarray, tuple, list)
)


def check_loader_options(options: object) -> dict[str, Any]:
    """Validate ``dataloader_options`` (``None`` or a mapping) and return a copy as a dict."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(
            "`dataloader_options` must be a dict of DataLoader arguments such as "
            f"{{'batch_size': 64}}, got {type(options).__name__} {reprlib.repr(options)}."
        )
    return dict(options)


def training_loader(data: Any, options: Mapping[str, Any] | None) -> DataLoader[Any]:
    """The training loader: defaults ``batch_size=32``, ``shuffle=True``, ``drop_last=True``
    (no ``shuffle`` with a ``sampler``; none of them with a ``batch_sampler``)."""
    opts = check_loader_options(options)
    if isinstance(data, DataLoader):
        if opts:
            raise ValueError(
                f"`dataloader_options` ({', '.join(map(str, opts))}) cannot be applied: `data` is "
                "already a dataloader (a torch DataLoader), so luz does not build one. Set them "
                "when you create your DataLoader, or pass a Dataset or tensors as `data`."
            )
        return data
    # A sampler or batch sampler of the user's decides order (and batches): defaults that
    # DataLoader refuses alongside them are left out.
    defaults: dict[str, Any] = {}
    if "batch_size" in opts and opts["batch_size"] is None:
        pass  # items are batches: DataLoader refuses drop_last then, and shuffle was not asked for
    elif "batch_sampler" not in opts:
        defaults.update(batch_size=32, drop_last=True)
    if (
        not isinstance(data, IterableDataset)
        and not {"sampler", "batch_sampler"} & opts.keys()
        and not ("batch_size" in opts and opts["batch_size"] is None)
    ):
        defaults["shuffle"] = True
    return _convert(data, opts, defaults)


def eval_loader(data: Any, options: Mapping[str, Any] | None, *, role: str) -> DataLoader[Any]:
    """A validation/evaluate/predict loader: never shuffled; options ignored for DataLoaders."""
    opts = check_loader_options(options)
    if isinstance(data, DataLoader):
        if opts:
            warn_at_user_line(
                f"`dataloader_options` ({', '.join(map(str, opts))}) are ignored for the {role} "
                "data: it is already a dataloader (a torch DataLoader). Set them when you "
                "create that DataLoader."
            )
        return data
    if opts.pop("shuffle", False) and role != "validation":
        warn_at_user_line(
            f"`shuffle=True` in `dataloader_options` is ignored for predictions and evaluation: "
            f"the {role} data is never shuffled. Leave `shuffle` out of the options."
        )
    defaults = {} if "batch_sampler" in opts else {"batch_size": 32}
    return _convert(data, opts, defaults)


def _convert(data: Any, options: dict[str, Any], defaults: dict[str, Any]) -> DataLoader[Any]:
    """Call the converter registered for ``data``. luz's own converters get the user's
    ``options`` over luz's ``defaults``; a user's converter gets the ``options`` alone."""
    converter = as_dataloader.dispatch(type(data))
    if converter in _OWN_CONVERTERS:
        unknown = [k for k in options if k not in _LOADER_KEYS]
        if unknown:
            raise TypeError(
                f"`dataloader_options` has keys DataLoader does not accept: "
                f"{', '.join(map(repr, unknown))}. Valid keys: {', '.join(sorted(_LOADER_KEYS))}."
            )
        return _loader(_memory_dataset(data), {**defaults, **options})
    name = f"{getattr(converter, '__module__', '?')}.{getattr(converter, '__qualname__', converter)}"
    try:
        loader = converter(data, **options)
    except TypeError as error:
        if not options:
            raise
        raise TypeError(
            f"The as_dataloader converter {name} for {type(data).__name__} failed when called "
            f"with `dataloader_options` {', '.join(map(repr, options))}: {error}. luz calls a "
            "converter as converter(data, **dataloader_options): give it **options (or these "
            "keywords), or remove them from `dataloader_options`."
        ) from error
    if not isinstance(loader, DataLoader):
        raise TypeError(
            f"The as_dataloader converter {name} for {type(data).__name__} returned "
            f"{type(loader).__name__} {reprlib.repr(loader)}; a converter must return a "
            "torch.utils.data.DataLoader."
        )
    return loader


def warn_non_finite(loader: DataLoader[Any], role: str) -> None:
    """Warn when the in-memory tensors behind ``loader`` hold NaN or infinite values.

    Only a `TensorBatchDataset` (what tensors and arrays become) is checked: one
    ``torch.isfinite(t).all()`` per floating tensor, once per call. The warning names the
    tensor by its place in the batch (``input``, ``target``, ``input[1]``, …) and its shape.
    """
    dataset = loader.dataset
    if not isinstance(dataset, TensorBatchDataset):
        return
    names = _leaf_names(dataset.structure)
    for i, tensor in enumerate(dataset.tensors):
        if not (tensor.is_floating_point() or tensor.is_complex()):
            continue  # integers and bools are always finite
        finite = torch.isfinite(tensor)
        if bool(finite.all()):
            continue
        bad = finite.numel() - int(finite.sum())
        warn_at_user_line(
            f"The {role} data's {names[i]} tensor (shape {tuple(tensor.shape)}) holds {bad} NaN or "
            "infinite value(s): the loss will not be finite. Clean or impute them before fitting."
        )


def _leaf_names(structure: tuple[Structure, ...]) -> dict[int, str]:
    """Each leaf's place in a batch: ``(x, y)`` gives input and target, ``((xa, xb), y)``
    gives ``input[0]``, ``input[1]`` and target; elements past the second are ``element 2``…"""
    names: dict[int, str] = {}

    def walk(node: Structure, name: str) -> None:
        if isinstance(node, int):
            names[node] = name
        else:
            for j, child in enumerate(node):
                walk(child, f"{name}[{j}]")

    for position, node in enumerate(structure):
        walk(node, ("input", "target")[position] if position < 2 else f"element {position}")
    return names


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn_at_user_line(message: str) -> None:
    """A `UserWarning` reported at the first caller outside luz (the user's ``fit(...)`` line),
    whichever way luz was entered (``luz.fit``, ``LuzModule.fit``, ``Fitted.predict``, …)."""
    level, frame = 1, sys._getframe(0)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, UserWarning, stacklevel=level)

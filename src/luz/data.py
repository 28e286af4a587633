"""Turning user data into loaders: `as_dataloader`, the validation split and loader options."""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, TensorDataset


class TensorBatchDataset(Dataset[tuple[torch.Tensor, ...]]):
    """A dataset over tensors with equal first dimension; items are tuples.

    It implements ``__getitems__``, so a `DataLoader` fetches a whole batch with one indexing
    operation per tensor instead of collating samples one by one (much faster for in-memory
    data). Use it with `collate_batch` as ``collate_fn``.
    """

    def __init__(self, *tensors: torch.Tensor) -> None:
        if not tensors:
            raise ValueError("TensorBatchDataset needs at least one tensor.")
        n = tensors[0].shape[0] if tensors[0].ndim else 0
        for i, t in enumerate(tensors):
            if t.ndim == 0 or t.shape[0] != n:
                shapes = [tuple(x.shape) for x in tensors]
                raise ValueError(
                    f"All tensors/arrays must share their first dimension (number of samples); "
                    f"element {i} does not. Shapes: {shapes}."
                )
        self.tensors = tensors

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return tuple(t[idx] for t in self.tensors)

    def subset(self, indices: torch.Tensor) -> TensorBatchDataset:
        """A new dataset with the rows at ``indices`` (copied)."""
        return TensorBatchDataset(*(t[indices] for t in self.tensors))


def collate_batch(batch: Any) -> Any:
    """The collate function for `TensorBatchDataset`: its batches are already stacked."""
    return batch


def _to_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    array = np.asarray(x)
    if array.dtype == object:
        raise TypeError(f"Cannot convert an array of Python objects ({array.shape}) to a tensor.")
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    # NumPy's float64 default would clash with float32 models: use torch's default float type.
    if tensor.is_floating_point():
        tensor = tensor.to(torch.get_default_dtype())
    return tensor


@functools.singledispatch
def as_dataloader(x: Any, **options: Any) -> DataLoader[Any]:
    """Convert data to a `torch.utils.data.DataLoader`.

    Supported: a `DataLoader` (returned as is), map-style and iterable datasets, a tensor or
    NumPy array (batches are 1-tuples ``(x,)``), and a tuple/list of tensors or arrays with the
    same first dimension (batches are tuples). Defaults: ``batch_size=32``, no shuffling; other
    ``options`` go to `DataLoader`. Floating NumPy arrays become tensors of torch's default
    float type. Register your own types with ``@luz.as_dataloader.register``; a converter takes
    ``(x, **options)`` (inside ``fit`` the training loader passes ``shuffle`` and ``drop_last``).

    Raises:
        TypeError: unsupported type.

    Example:
        >>> import torch, luz
        >>> dl = luz.as_dataloader((torch.randn(100, 3), torch.randn(100)), batch_size=10)
        >>> len(dl)
        10
    """
    raise TypeError(
        f"as_dataloader() does not support data of type {type(x).__name__}. Pass a DataLoader, "
        "a Dataset, a tensor or array, or a tuple of tensors/arrays, or register a converter "
        "with @luz.as_dataloader.register."
    )


@as_dataloader.register
def _(x: DataLoader, **options: Any) -> DataLoader[Any]:  # type: ignore[type-arg]
    if options:
        raise ValueError(
            f"`dataloader_options` ({', '.join(options)}) cannot be applied: the data is already "
            "a DataLoader. Set the options when you build the DataLoader, or pass a Dataset."
        )
    return x


@as_dataloader.register
def _(x: Dataset, **options: Any) -> DataLoader[Any]:  # type: ignore[type-arg]
    if "batch_sampler" not in options:  # a batch sampler decides the batch size itself
        options.setdefault("batch_size", 32)
    if isinstance(x, IterableDataset):
        options.pop("shuffle", None)  # an iterable dataset decides its own order
    elif isinstance(x, TensorBatchDataset) or _is_tensor_subset(x):
        if "collate_fn" in options:
            x = _per_sample(x)  # the user's collate_fn expects a list of samples
        else:
            options["collate_fn"] = collate_batch
    return DataLoader(x, **options)


def _per_sample(x: Dataset[Any]) -> Dataset[Any]:
    """The same tensor data without the batched fetch, for a user-supplied ``collate_fn``."""
    if isinstance(x, Subset):
        return Subset(_per_sample(x.dataset), x.indices)
    assert isinstance(x, TensorBatchDataset)
    return TensorDataset(*x.tensors)


def _is_tensor_subset(x: Dataset[Any]) -> bool:
    return isinstance(x, Subset) and isinstance(x.dataset, TensorBatchDataset)


@as_dataloader.register(torch.Tensor)
@as_dataloader.register(np.ndarray)
def _(x: Any, **options: Any) -> DataLoader[Any]:
    return as_dataloader(TensorBatchDataset(_to_tensor(x)), **options)


@as_dataloader.register(tuple)
@as_dataloader.register(list)
def _(x: Sequence[Any], **options: Any) -> DataLoader[Any]:
    return as_dataloader(as_dataset(x), **options)


def as_dataset(x: Any) -> Dataset[Any]:
    """Convert tensors, arrays or a tuple/list of them to a dataset; datasets pass through."""
    if isinstance(x, Dataset):
        return x
    if isinstance(x, torch.Tensor | np.ndarray):
        return TensorBatchDataset(_to_tensor(x))
    if isinstance(x, tuple | list) and x and all(isinstance(e, torch.Tensor | np.ndarray) for e in x):
        return TensorBatchDataset(*(_to_tensor(e) for e in x))
    if isinstance(x, tuple | list):
        kinds = sorted({type(e).__name__ for e in x})
        raise TypeError(
            "A tuple/list of data must hold tensors or NumPy arrays with the same first "
            f"dimension; got elements of type {', '.join(kinds) or 'nothing (empty)'}."
        )
    raise TypeError(
        f"Cannot make a dataset from {type(x).__name__}: pass a Dataset, a tensor/array or a tuple of them."
    )


def check_fraction(value: object) -> float:
    """Validate a ``valid_data`` fraction: a float in (0, 1)."""
    if (
        isinstance(value, bool | numbers.Integral)
        or not isinstance(value, numbers.Real)
        or not 0.0 < float(value) < 1.0
    ):
        raise ValueError(
            f"`valid_data` as a number must be a float in (0, 1) giving the share of `data` "
            f"used for validation; got {value!r}."
        )
    return float(value)


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
    dataset = as_dataset(data)
    if isinstance(dataset, IterableDataset):
        raise ValueError(
            "`valid_data` as a fraction cannot split an IterableDataset: pass separate "
            "validation data instead."
        )
    n = len(dataset)  # type: ignore[arg-type]
    n_valid = math.floor(n * fraction)
    perm = torch.randperm(n)
    valid_idx, _ = torch.sort(perm[:n_valid])
    train_idx, _ = torch.sort(perm[n_valid:])
    if isinstance(dataset, TensorBatchDataset):
        return dataset.subset(train_idx), dataset.subset(valid_idx)
    return Subset(dataset, train_idx.tolist()), Subset(dataset, valid_idx.tolist())


def training_loader(data: Any, options: dict[str, Any] | None) -> DataLoader[Any]:
    """The training loader: defaults ``batch_size=32``, ``shuffle=True``, ``drop_last=True``
    (no ``shuffle`` with a ``sampler``; neither default with a ``batch_sampler``)."""
    if isinstance(data, DataLoader):
        if options:
            raise ValueError(
                f"`dataloader_options` ({', '.join(options)}) cannot be applied: `data` is "
                "already a DataLoader. Set them on your DataLoader, or pass a Dataset or tensors."
            )
        return data
    opts = dict(options or {})
    # A sampler or batch sampler of the user's decides order (and batches): defaults that
    # DataLoader refuses alongside them are left out.
    if not isinstance(data, IterableDataset) and not {"sampler", "batch_sampler"} & opts.keys():
        opts.setdefault("shuffle", True)
    if "batch_sampler" not in opts:
        opts.setdefault("drop_last", True)
    return as_dataloader(data, **opts)


def eval_loader(data: Any, options: dict[str, Any] | None, *, role: str) -> DataLoader[Any]:
    """A validation/evaluate/predict loader: never shuffled; options ignored for DataLoaders."""
    if isinstance(data, DataLoader):
        if options:
            warnings.warn(
                f"`dataloader_options` are ignored for the {role} data: it is already a DataLoader.",
                UserWarning,
                stacklevel=3,
            )
        return data
    opts = dict(options or {})
    if opts.pop("shuffle", False) and role != "validation":
        warnings.warn(
            f"`shuffle=True` is ignored for predictions and evaluation ({role} data is never shuffled).",
            UserWarning,
            stacklevel=3,
        )
    return as_dataloader(data, **opts)

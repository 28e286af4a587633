"""Turning user data into loaders and datasets: `as_dataloader` (a registry of converters),
`as_dataset`, and the model's dtype for in-memory data. The in-memory dataset and loader live in
`luz._inmemory`, the loaders of a run (defaults, validation split) in `luz._loaders`."""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from luz._inmemory import (
    IndexBatchSampler,
    InMemoryLoader,
    Structure,
    TensorBatchDataset,
    _plain_batching,
    collate_batch,
)

__all__ = [
    "InMemoryLoader",
    "IndexBatchSampler",
    "Structure",
    "TensorBatchDataset",
    "as_dataloader",
    "as_dataset",
    "collate_batch",
    "float_dtype",
    "match_model_dtype",
]


def _pandas_types() -> tuple[type, ...]:
    # pandas stays unimported until the user imports it: then its objects can exist.
    pandas = sys.modules.get("pandas")
    return (pandas.DataFrame, pandas.Series) if pandas is not None else ()


def _is_array(x: Any) -> bool:
    """A tensor, a NumPy array or a pandas DataFrame/Series: one column of in-memory data."""
    return isinstance(x, (torch.Tensor, np.ndarray, *_pandas_types()))


def _to_tensor(x: Any, *, numpy_float: torch.dtype | None = None) -> torch.Tensor:
    """A tensor from a tensor, array or pandas object; integers become int64.

    Floating NumPy/pandas data becomes ``numpy_float`` when given, else keeps its dtype.
    """
    if isinstance(x, torch.Tensor):
        return x.long() if _is_integer(x.dtype) else x
    is_pandas = isinstance(x, _pandas_types())
    array = np.asarray(x.to_numpy() if is_pandas else x)
    if array.dtype == object:
        raise TypeError(
            f"Cannot convert an array of Python objects ({array.shape}) to a tensor"
            + (": give each DataFrame column a numeric dtype." if is_pandas else ".")
        )
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # pandas 3 and memory maps hand out read-only arrays
        array = array.copy()  # torch would warn: its tensor could write to read-only memory
    tensor = torch.from_numpy(array)
    if _is_integer(tensor.dtype):
        return tensor.long()  # what losses and embeddings index with
    if numpy_float is not None and tensor.is_floating_point():
        return tensor.to(numpy_float)
    return tensor


def _is_integer(dtype: torch.dtype) -> bool:
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


@functools.singledispatch
def as_dataloader(x: Any, **options: Any) -> DataLoader[Any]:
    """Convert data to a `torch.utils.data.DataLoader`.

    Supported: a `DataLoader` (returned as is), map-style and iterable datasets, any object
    with ``__getitem__`` and ``__len__`` (a Hugging Face ``datasets.Dataset``, a list of
    samples), a tensor, NumPy array or pandas DataFrame/Series (batches are 1-tuples
    ``(x,)``), and a tuple/list of them with the same first dimension, possibly nested like
    ``((xa, xb), y)`` (batches are tuples nested alike). A ``list`` whose elements are all
    tuples or dicts is a list of samples, as `DataLoader` reads it. Defaults:
    ``batch_size=32``, no shuffling; other ``options`` go to `DataLoader`. Floating NumPy
    arrays become tensors of torch's default float type, integer data becomes int64.

    Register your own types with ``@luz.as_dataloader.register``: a converter takes the data
    and returns a `DataLoader`. Inside ``fit``/``predict``/``evaluate`` luz calls it as
    ``converter(data, **dataloader_options)``, with the options exactly as given (evaluation
    and prediction loaders drop ``shuffle``) and none of luz's defaults: the converter applies
    its own, such as ``batch_size=32``, so it should accept ``**options``.

    Raises:
        TypeError: unsupported type, or a generator (it can be read only once).

    Example:
        >>> import torch, luz
        >>> dl = luz.as_dataloader((torch.randn(100, 3), torch.randn(100)), batch_size=10)
        >>> len(dl)
        10
    """
    if isinstance(x, _pandas_types()):
        return _loader(TensorBatchDataset(_to_tensor(x, numpy_float=torch.get_default_dtype())), options)
    return _loader(_as_map_style(x), options)


def _as_map_style(x: Any) -> Any:
    """``x`` itself when it reads as a map-style dataset (``__getitem__`` and ``__len__``)."""
    if isinstance(x, Iterator) or inspect.isgenerator(x):
        raise TypeError(
            f"luz cannot use a {type(x).__name__} as data: it can be read only once, and fit reads "
            "the data every epoch. Wrap the code that makes it in an IterableDataset "
            "(class Stream(torch.utils.data.IterableDataset): def __iter__(self): return "
            "make_items()), or pass a DataLoader over such a dataset."
        )
    if isinstance(x, str | bytes | Mapping) or not (hasattr(x, "__getitem__") and hasattr(x, "__len__")):
        raise TypeError(
            f"as_dataloader() does not support data of type {type(x).__name__}. Pass a DataLoader, "
            "a torch Dataset or any object with __getitem__ and __len__ (a map-style dataset), "
            "a tensor, array or pandas object, or a tuple of them, or register a converter with "
            "@luz.as_dataloader.register."
        )
    return x


def _loader(x: Any, options: dict[str, Any]) -> DataLoader[Any]:
    """A `DataLoader` over a dataset (or map-style object) with luz's defaults; an
    `InMemoryLoader` for in-memory tensors with plain batching options."""
    if "batch_sampler" not in options:  # a batch sampler decides the batch size itself
        options.setdefault("batch_size", 32)
    if isinstance(x, TensorBatchDataset) and _plain_batching(options):
        return InMemoryLoader(x, **options)
    if isinstance(x, IterableDataset):
        options.pop("shuffle", None)  # an iterable dataset decides its own order
    elif isinstance(x, TensorBatchDataset) or _is_tensor_subset(x):
        if "collate_fn" in options:
            x = _PerSample(x)  # the user's collate_fn expects a list of samples
        else:
            options["collate_fn"] = collate_batch
    return DataLoader(x, **options)


@as_dataloader.register
def _(x: DataLoader, **options: Any) -> DataLoader[Any]:  # type: ignore[type-arg]
    if options:
        raise ValueError(
            f"as_dataloader() options ({', '.join(options)}) cannot be applied: the data is "
            "already a dataloader (a torch DataLoader). Set them when you create that "
            "DataLoader, or pass a Dataset."
        )
    return x


@as_dataloader.register
def _(x: Dataset, **options: Any) -> DataLoader[Any]:  # type: ignore[type-arg]
    return _loader(x, options)


class _PerSample(Dataset[Any]):
    """The same tensor data without the batched fetch, for a user-supplied ``collate_fn``."""

    def __init__(self, dataset: Dataset[Any]) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]


def _is_tensor_subset(x: Any) -> bool:
    return isinstance(x, Subset) and isinstance(x.dataset, TensorBatchDataset)


@as_dataloader.register(torch.Tensor)
@as_dataloader.register(np.ndarray)
@as_dataloader.register(tuple)
@as_dataloader.register(list)
def _(x: Any, **options: Any) -> DataLoader[Any]:
    return _loader(as_dataset(x), options)


def _is_tensor_tree(x: Any) -> bool:
    if _is_array(x):
        return True
    return isinstance(x, tuple | list) and bool(x) and all(_is_tensor_tree(e) for e in x)


def _tree_to_tensors(x: Any, numpy_float: torch.dtype | None) -> Any:
    if isinstance(x, tuple | list):
        return tuple(_tree_to_tensors(e, numpy_float) for e in x)
    return _to_tensor(x, numpy_float=numpy_float)


def _is_sample_list(x: Any) -> bool:
    """A list of samples (all tuples or all dicts), as ``DataLoader(list)`` reads it; a tuple,
    or a list holding a tensor/array, is columns."""
    return (
        isinstance(x, list)
        and bool(x)
        and (all(isinstance(e, tuple) for e in x) or all(isinstance(e, Mapping) for e in x))
    )


def _odd_kinds(x: Sequence[Any]) -> set[str]:
    """The type names in a tuple/list that stop it from being (nested) tensors/arrays."""
    if not x:
        return {"nothing (empty)"}
    kinds: set[str] = set()
    for e in x:
        if isinstance(e, tuple | list):
            kinds |= _odd_kinds(e)
        elif not _is_array(e):
            kinds.add(type(e).__name__)
    return kinds


def as_dataset(x: Any) -> Dataset[Any]:
    """Convert tensors, arrays or a (nested) tuple/list of them to a dataset; datasets, lists
    of samples and other map-style objects pass through.

    Floating NumPy/pandas data becomes torch's default float type, integer data int64."""
    return _dataset(x, numpy_float=torch.get_default_dtype())


def _dataset(x: Any, *, numpy_float: torch.dtype | None) -> Dataset[Any]:
    if isinstance(x, Dataset):
        return x
    if _is_array(x):
        return TensorBatchDataset(_to_tensor(x, numpy_float=numpy_float))
    if _is_sample_list(x):
        return x  # type: ignore[no-any-return]  # DataLoader indexes a list like a dataset
    if _is_tensor_tree(x):
        return TensorBatchDataset(*_tree_to_tensors(x, numpy_float))
    if isinstance(x, tuple | list):
        raise TypeError(
            "A tuple/list of data must hold tensors, NumPy arrays or pandas objects (or "
            "tuples/lists of them) with the same first dimension, or be a list of samples (all "
            f"tuples or all dicts); got elements of type {', '.join(sorted(_odd_kinds(x)))}."
        )
    return _as_map_style(x)  # type: ignore[no-any-return]  # refuses what is not map-style


def _memory_dataset(x: Any) -> Any:
    """What luz trains on for ``x`` inside fit/predict/evaluate: in-memory data becomes a
    `TensorBatchDataset` whose floats keep their dtype until `match_model_dtype`."""
    dataset = _dataset(x, numpy_float=None)
    if isinstance(dataset, TensorBatchDataset) and dataset is not x:
        dataset._from_memory = True
    return dataset


def float_dtype(model: nn.Module) -> torch.dtype:
    """The model's floating dtype: that of its first floating parameter (or buffer), else
    torch's default."""
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def match_model_dtype(model: nn.Module, *loaders: Any) -> None:
    """Give the floating tensors of the in-memory data behind ``loaders`` the model's dtype.

    Only data luz converted from tensors/arrays is cast (once, in place, before the first
    batch); datasets and DataLoaders of the user's are used as they are."""
    dtype = float_dtype(model)
    for loader in loaders:
        dataset = loader
        while dataset is not None and not isinstance(dataset, TensorBatchDataset):
            dataset = getattr(dataset, "dataset", None)  # DataLoader, Subset, wrappers
        if dataset is None or not getattr(dataset, "_from_memory", False):  # False: unpickled old
            continue
        dataset.tensors = tuple(
            t.to(dtype) if t.is_floating_point() and t.dtype != dtype else t for t in dataset.tensors
        )

"""Turning user data into loaders: `as_dataloader`, the validation split and loader options."""

from __future__ import annotations

import functools
import inspect
import math
import os
import reprlib
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import (
    DataLoader,
    Dataset,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
    Subset,
)

from luz._validate import check_real

# A nested tuple of leaf positions, e.g. ``((0, 1), 2)`` for ``((xa, xb), y)``.
Structure = int | tuple["Structure", ...]


class TensorBatchDataset(Dataset[Any]):
    """A dataset over tensors with equal first dimension; items are tuples.

    Each argument is a tensor or a (nested) tuple/list of tensors, e.g.
    ``TensorBatchDataset((xa, xb), y)`` for a two-input model: items and batches keep that
    nesting, as tuples. It implements ``__getitems__``, so a `DataLoader` fetches a whole batch
    with one indexing operation per tensor instead of collating samples one by one (much
    faster for in-memory data). Use it with `collate_batch` as ``collate_fn``.
    """

    def __init__(self, *tensors: Any) -> None:
        if not tensors:
            raise ValueError("TensorBatchDataset needs at least one tensor.")
        leaves: list[torch.Tensor] = []
        self.structure: tuple[Structure, ...] = tuple(_flatten(t, leaves) for t in tensors)
        self._flat = all(isinstance(s, int) for s in self.structure)
        n = leaves[0].shape[0] if leaves[0].ndim else 0
        for i, t in enumerate(leaves):
            if t.ndim == 0 or t.shape[0] != n:
                shapes = [tuple(x.shape) for x in leaves]
                raise ValueError(
                    f"All tensors/arrays must share their first dimension (number of samples); "
                    f"tensor {i} does not. Shapes (in order, nesting flattened): {shapes}."
                )
        self.tensors = tuple(leaves)
        """The tensors, flattened in order."""
        # True when luz built it from the user's in-memory data inside fit/predict/evaluate:
        # its floating tensors then take the model's dtype (`match_model_dtype`).
        self._from_memory = False

    def __len__(self) -> int:
        return int(self.tensors[0].shape[0])

    def _build(self, leaves: list[torch.Tensor]) -> tuple[Any, ...]:
        if self._flat:
            return tuple(leaves)
        return tuple(_unflatten(s, leaves) for s in self.structure)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return self._build([t[index] for t in self.tensors])

    def __getitems__(self, indices: Sequence[int] | torch.Tensor) -> tuple[Any, ...]:
        return self.gather(torch.as_tensor(indices, dtype=torch.int64))

    def gather(self, index: torch.Tensor) -> tuple[Any, ...]:
        """The batch at ``index`` (an int64 tensor on the tensors' device): one
        ``index_select`` per tensor, nested like the dataset."""
        if self._flat:
            return tuple([torch.index_select(t, 0, index) for t in self.tensors])
        return self._build([torch.index_select(t, 0, index) for t in self.tensors])

    def to(self, device: torch.device) -> TensorBatchDataset:
        """A dataset with the same nesting over the tensors moved to ``device``."""
        moved = TensorBatchDataset(*self._build([t.to(device) for t in self.tensors]))
        moved._from_memory = self._from_memory
        return moved

    def subset(self, indices: torch.Tensor) -> TensorBatchDataset:
        """A new dataset with the rows at ``indices`` (copied), nested alike."""
        subset = TensorBatchDataset(*self._build([t[indices] for t in self.tensors]))
        subset._from_memory = self._from_memory
        return subset


class IndexBatchSampler(Sampler[torch.Tensor]):
    """Batches of sample indices as int64 tensors, in the order of a `RandomSampler` or a
    `SequentialSampler`: each epoch draws the same permutation as torch's own
    ``BatchSampler(RandomSampler(...))`` from the same random state (the same global-RNG seed
    draw, or the sampler's generator, advanced alike), so shuffled batches are bitwise equal;
    it is one ``randperm`` split into views instead of a Python int per sample.

    Args:
        sampler: a `RandomSampler` without replacement over the whole dataset, or a
            `SequentialSampler`.
        batch_size: samples per batch.
        drop_last: drop the last, incomplete batch.
        device: where the index tensors go (the permutation is drawn on the CPU and moved
            once per epoch, so CUDA data is gathered there without a per-batch copy).
    """

    def __init__(
        self,
        sampler: RandomSampler | SequentialSampler,
        batch_size: int,
        drop_last: bool,
        device: torch.device | None = None,
    ) -> None:
        if not _plain_sampler(sampler):
            raise ValueError(
                "IndexBatchSampler takes a RandomSampler without replacement over the whole "
                f"dataset or a SequentialSampler; got {type(sampler).__name__}."
            )
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.device = device

    def __iter__(self) -> Iterator[torch.Tensor]:
        sampler = self.sampler
        n = len(sampler)
        generator = None
        if isinstance(sampler, RandomSampler):
            generator = sampler.generator
            if generator is None:  # exactly RandomSampler.__iter__'s draw from the global RNG
                seed = int(torch.empty((), dtype=torch.int64).random_().item())
                own = torch.Generator()
                own.manual_seed(seed)
                order = torch.randperm(n, generator=own)
            else:
                order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        if self.device is not None and self.device.type != "cpu":
            # Once per epoch; from pinned memory the copy does not wait for the device.
            pinned = order.pin_memory() if self.device.type == "cuda" else order
            order = pinned.to(self.device, non_blocking=True)
        batches = torch.split(order, self.batch_size)[: len(self)]
        if generator is None:
            yield from batches
            return
        # An exhausted RandomSampler draws one more permutation (and keeps none of it), so the
        # user's generator advances alike, when torch's BatchSampler exhausts it: before the
        # last batch when that one is short and kept, else after the last batch.
        short_last = not self.drop_last and n % self.batch_size != 0
        yield from batches[:-1] if short_last else batches
        torch.randperm(n, generator=generator)
        if short_last:
            yield batches[-1]

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def _plain_sampler(sampler: object) -> bool:
    if type(sampler) is SequentialSampler:
        return True
    return (
        type(sampler) is RandomSampler
        and not sampler.replacement
        and sampler.num_samples == len(sampler.data_source)
    )


_PLAIN_OPTIONS = frozenset({"batch_size", "shuffle", "drop_last", "generator"})


def _plain_batching(options: Mapping[str, Any]) -> bool:
    """Options an `InMemoryLoader` implements itself: batch size (an int), shuffle, drop_last
    and a generator. Workers, samplers, a collate function, pinning and the rest keep torch's
    `DataLoader`."""
    batch_size = options.get("batch_size")
    return (
        options.keys() <= _PLAIN_OPTIONS
        and isinstance(batch_size, int)
        and not isinstance(batch_size, bool)
        and batch_size > 0
    )


class InMemoryLoader(DataLoader[Any]):
    """The loader luz builds for in-memory tensors: a `DataLoader` over a `TensorBatchDataset`
    whose batches are gathered with one ``index_select`` per tensor.

    It is a real `DataLoader` (``dataset``, ``sampler``, ``batch_sampler``, ``batch_size``,
    ``len`` are torch's), and yields the same batches in the same order as
    ``DataLoader(dataset, batch_size, shuffle, drop_last, generator, collate_fn=collate_batch)``
    from the same random state, drawing the same random numbers: its batch indices come from an
    `IndexBatchSampler`, and iterating skips the per-batch machinery of torch's iterator
    (with workers set later, or pinned memory, it falls back to it). Built by
    `as_dataloader` and inside ``fit``/``predict``/``evaluate`` for tensors and arrays when
    ``dataloader_options`` hold only ``batch_size``, ``shuffle``, ``drop_last`` and
    ``generator``.

    Its tensors may live on another device than the CPU (`on_device`): the permutation is
    then drawn on the CPU as here and moved once per epoch, and batches are gathered on the
    device.
    """

    def __init__(
        self,
        dataset: TensorBatchDataset,
        batch_size: int = 32,
        shuffle: bool = False,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            shuffle=bool(shuffle),
            drop_last=drop_last,
            generator=generator,
            collate_fn=collate_batch,
        )
        self.index_batches = IndexBatchSampler(
            self.sampler,  # type: ignore[arg-type]  # DataLoader built a Random/SequentialSampler
            batch_size,
            drop_last,
            device=_device_of(dataset),
        )
        """The index tensors of each batch (what torch's own iterator fetches with, too)."""

    @property
    def _index_sampler(self) -> Any:  # what torch's iterator and len() read
        return self.index_batches

    def __iter__(self) -> Any:
        if self.num_workers > 0 or self.pin_memory:  # set after construction: torch's iterator
            return super().__iter__()
        return self._batches()

    def _batches(self) -> Iterator[tuple[Any, ...]]:
        # The random draw of torch's iterator (its workers' base seed), made here too so the
        # global random stream advances exactly as with a DataLoader.
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        dataset: TensorBatchDataset = self.dataset  # type: ignore[assignment]
        for index in self.index_batches:
            yield dataset.gather(index)

    def on_device(self, device: torch.device) -> InMemoryLoader:
        """The same loader (same sampler, hence the same order and random draws) over a copy of
        the tensors on ``device``; gathering happens there, with no per-batch copy."""
        dataset: TensorBatchDataset = self.dataset  # type: ignore[assignment]
        moved = dataset.to(device)
        loader = InMemoryLoader.__new__(InMemoryLoader)
        DataLoader.__init__(
            loader,
            moved,
            batch_size=self.batch_size,
            sampler=self.sampler,
            drop_last=self.drop_last,
            generator=self.generator,
            collate_fn=collate_batch,
        )
        loader.index_batches = IndexBatchSampler(
            self.index_batches.sampler, self.index_batches.batch_size, self.drop_last, device=device
        )
        return loader

    def nbytes(self) -> int:
        """Bytes of the tensors behind the loader."""
        dataset: TensorBatchDataset = self.dataset  # type: ignore[assignment]
        return sum(t.numel() * t.element_size() for t in dataset.tensors)


def _device_of(dataset: TensorBatchDataset) -> torch.device:
    return dataset.tensors[0].device


def _flatten(x: Any, leaves: list[torch.Tensor]) -> Structure:
    if isinstance(x, torch.Tensor):
        leaves.append(x)
        return len(leaves) - 1
    if isinstance(x, tuple | list) and x:
        return tuple(_flatten(e, leaves) for e in x)
    raise TypeError(
        f"TensorBatchDataset takes tensors or non-empty (nested) tuples/lists of tensors; "
        f"got {type(x).__name__}."
    )


def _unflatten(structure: Structure, leaves: list[torch.Tensor]) -> Any:
    if isinstance(structure, int):
        return leaves[structure]
    return tuple(_unflatten(s, leaves) for s in structure)


def collate_batch(batch: Any) -> Any:
    """The collate function for `TensorBatchDataset`: its batches are already stacked."""
    return batch


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

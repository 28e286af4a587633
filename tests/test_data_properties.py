"""Properties of `luz.as_dataloader`, the `valid_data` split and fit's loaders, over random shapes,
dtypes, containers and sizes: every sample lands in exactly one place, batch counts follow
``batch_size`` and ``drop_last`` (reliability §8)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import luz
from luz._loaders import eval_loader, split_valid, training_loader

DTYPES = {
    "float32": (torch.float32, np.float32),
    "float64": (torch.float64, np.float64),
    "int64": (torch.int64, np.int64),
    "bool": (torch.bool, np.bool_),
}

FAST = settings(max_examples=50, deadline=None)


@st.composite
def datasets(draw: st.DrawFn, min_n: int = 0) -> tuple[Any, int, list[str]]:
    """A tuple of 1-3 tensors/arrays with ``n`` samples: an ``int64`` sample id column first,
    then features of random shapes, dtypes and kinds. Returns ``(data, n, kinds)``."""
    n = draw(st.integers(min_n, 70))
    parts: list[Any] = []
    kinds: list[str] = []
    ids = np.arange(n, dtype=np.int64) * 3 + 1  # distinct, not equal to positions
    id_kind = draw(st.sampled_from(["numpy", "torch"]))
    parts.append(torch.from_numpy(ids) if id_kind == "torch" else ids)
    kinds.append(f"{id_kind}:int64")
    for _ in range(draw(st.integers(0, 2))):
        dtype = draw(st.sampled_from(sorted(DTYPES)))
        kind = draw(st.sampled_from(["numpy", "torch"]))
        shape = (n, *draw(st.lists(st.integers(1, 3), max_size=2)))
        array = (np.random.default_rng(n).random(shape) * 10).astype(DTYPES[dtype][1])
        parts.append(torch.from_numpy(array) if kind == "torch" else array)
        kinds.append(f"{kind}:{dtype}")
    return tuple(parts), n, kinds


def ids_of(loader: Any) -> list[int]:
    out: list[int] = []
    for batch in loader:
        assert isinstance(batch, tuple)
        out += batch[0].tolist()
    return out


def expected_dtype(kind: str) -> torch.dtype:
    source, name = kind.split(":")
    dtype = DTYPES[name][0]
    # NumPy floats become torch's default float type; torch tensors keep theirs.
    return torch.get_default_dtype() if source == "numpy" and dtype.is_floating_point else dtype


@FAST
@given(data=datasets(), batch_size=st.integers(1, 40), drop_last=st.booleans())
def test_as_dataloader_covers_every_sample_once(data: Any, batch_size: int, drop_last: bool) -> None:
    parts, n, kinds = data
    loader = luz.as_dataloader(parts, batch_size=batch_size, drop_last=drop_last)
    batches = list(loader)
    full, rest = divmod(n, batch_size)
    expected_batches = full if drop_last else full + (rest > 0)
    assert len(loader) == len(batches) == expected_batches
    kept = full * batch_size if drop_last else n
    assert ids_of(batches) == [3 * i + 1 for i in range(kept)]  # in order: no shuffle by default
    for batch in batches:
        assert len(batch) == len(parts)
        for value, part, kind in zip(batch, parts, kinds, strict=True):
            assert isinstance(value, torch.Tensor)
            assert value.shape[1:] == tuple(part.shape[1:])
            assert value.dtype == expected_dtype(kind)
        assert batch[0].shape[0] == batch_size or (not drop_last and batch is batches[-1])


@FAST
@given(data=datasets(), batch_size=st.integers(1, 40))
def test_a_bare_tensor_or_array_gives_one_tuples(data: Any, batch_size: int) -> None:
    parts, n, _ = data
    loader = luz.as_dataloader(parts[-1], batch_size=batch_size)
    assert len(loader) == math.ceil(n / batch_size)
    assert all(isinstance(b, tuple) and len(b) == 1 for b in loader)
    assert sum(b[0].shape[0] for b in loader) == n


@FAST
@given(
    data=datasets(min_n=1),
    fraction=st.floats(0.01, 0.99),
    seed=st.integers(0, 2**16),
)
def test_split_valid_puts_every_sample_in_exactly_one_part(data: Any, fraction: float, seed: int) -> None:
    parts, n, _ = data
    torch.manual_seed(seed)
    train, valid = split_valid(parts, fraction)
    assert len(valid) == math.floor(n * fraction)  # type: ignore[arg-type]
    assert len(train) == n - len(valid)  # type: ignore[arg-type]
    train_ids = ids_of(luz.as_dataloader(train, batch_size=7))
    valid_ids = ids_of(luz.as_dataloader(valid, batch_size=7))
    assert sorted(train_ids + valid_ids) == [3 * i + 1 for i in range(n)]
    assert train_ids == sorted(train_ids) and valid_ids == sorted(valid_ids)  # order kept
    # Every column follows its sample: the features of a sample are its own.
    for part_index in range(1, len(parts)):
        column = torch.as_tensor(parts[part_index])
        for batch in luz.as_dataloader(valid, batch_size=7):
            rows = (batch[0] - 1) // 3
            got = batch[part_index]
            assert torch.equal(got, column[rows].to(got.dtype))


@FAST
@given(
    data=datasets(min_n=2),
    fraction=st.floats(0.05, 0.95),
    batch_size=st.integers(1, 40),
    drop_last=st.one_of(st.none(), st.booleans()),
)
def test_fit_loaders_follow_batch_size_and_drop_last(
    data: Any, fraction: float, batch_size: int, drop_last: bool | None
) -> None:
    parts, n, _ = data
    options: dict[str, Any] = {"batch_size": batch_size}
    if drop_last is not None:
        options["drop_last"] = drop_last
    train, valid = split_valid(parts, fraction)
    train_dl = training_loader(train, options)
    valid_dl = eval_loader(valid, options, role="validation")
    n_train, n_valid = len(train), len(valid)  # type: ignore[arg-type]
    assert n_train + n_valid == n and n_valid == math.floor(n * fraction)
    drops = True if drop_last is None else drop_last  # fit's default for training: drop_last=True
    full, rest = divmod(n_train, batch_size)
    assert len(train_dl) == (full if drops else full + (rest > 0))
    train_ids = ids_of(train_dl)
    assert len(train_ids) == len(set(train_ids)) == (full * batch_size if drops else n_train)
    valid_ids = ids_of(valid_dl)  # the validation loader uses the same options, never shuffles
    assert valid_ids == sorted(valid_ids)
    valid_full, valid_rest = divmod(n_valid, batch_size)
    assert len(valid_dl) == (valid_full if drop_last else valid_full + (valid_rest > 0))
    assert not set(train_ids) & set(valid_ids)


@st.composite
def nestings(draw: st.DrawFn, leaves: list[Any]) -> Any:
    """``leaves`` (in order) grouped into random nested tuples/lists, at least one level deep."""
    if len(leaves) == 1 and draw(st.booleans()):
        return leaves[0]
    cut = draw(st.integers(1, len(leaves)))
    groups = [leaves[:cut], leaves[cut:]] if cut < len(leaves) else [leaves]
    inner = [draw(nestings(g)) for g in groups]
    return tuple(inner) if draw(st.booleans()) else inner


def flatten(tree: Any) -> list[Any]:
    if isinstance(tree, tuple | list):
        return [leaf for branch in tree for leaf in flatten(branch)]
    return [tree]


def same_nesting(batch: Any, tree: Any) -> bool:
    if isinstance(tree, tuple | list):
        return isinstance(batch, tuple) and len(batch) == len(tree) and all(map(same_nesting, batch, tree))
    return isinstance(batch, torch.Tensor)


@FAST
@given(data=datasets(min_n=1), fraction=st.floats(0.01, 0.99), batch_size=st.integers(1, 40), draws=st.data())
def test_nested_data_keeps_its_nesting_and_every_sample_through_a_split(
    data: Any, fraction: float, batch_size: int, draws: st.DataObject
) -> None:
    parts, n, _ = data
    leaves = list(parts)
    tree = draws.draw(nestings(leaves))
    if not isinstance(tree, tuple | list):
        tree = (tree,)
    if isinstance(tree, list) and all(isinstance(e, tuple) for e in tree):
        tree = tuple(tree)  # SPEC §4: a list of tuples is a list of samples; columns are a tuple
    train, valid = split_valid(tree, fraction)
    assert len(valid) == math.floor(n * fraction)  # type: ignore[arg-type]
    seen: list[int] = []
    for part in (train, valid):
        for batch in luz.as_dataloader(part, batch_size=batch_size):
            assert same_nesting(batch, tree)
            flat = flatten(batch)
            rows = (flat[0] - 1) // 3
            seen += flat[0].tolist()
            for got, column in zip(flat[1:], leaves[1:], strict=True):
                assert torch.equal(got, torch.as_tensor(column)[rows].to(got.dtype))
    assert sorted(seen) == [3 * i + 1 for i in range(n)]

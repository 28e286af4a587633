"""`as_dataloader`, datasets, the validation split and loader options."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

import luz
from luz._loaders import eval_loader, split_valid, training_loader, warn_non_finite
from luz.callbacks import NaNGuard
from luz.data import TensorBatchDataset, as_dataset


class Images(Dataset[Any]):
    def __init__(self, n: int = 100) -> None:
        self.x = torch.randn(n, 10, 10)
        self.y = torch.randn(n, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Any:
        return self.x[i], self.y[i]


class Stream(IterableDataset[Any]):
    def __iter__(self) -> Any:
        for i in range(10):
            yield torch.full((2,), float(i)), torch.tensor(float(i))


def shapes(dl: Any) -> list[list[tuple[int, ...]]]:
    return [[tuple(t.shape) for t in batch] for batch in dl]


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ("text", "str"),
        (3, "int"),
        ({"a": 1}, "dict"),
        (None, "NoneType"),
        ([], "empty"),
        ([1, 2], "int"),
        ((torch.ones(2), "x"), "str"),
    ],
)
def test_unsupported_types(bad: Any, named: str) -> None:
    # R row 3
    with pytest.raises(TypeError, match=named):
        luz.as_dataloader(bad)


def test_unsupported_type_names_it() -> None:
    with pytest.raises(TypeError, match="of type str"):
        luz.as_dataloader("text")
    with pytest.raises(TypeError, match="Python objects"):
        luz.as_dataloader(np.array([object(), object()]))


def test_datasets() -> None:
    # R row 4
    ds = Images()
    dl = luz.as_dataloader(ds)
    assert isinstance(dl, DataLoader)
    got = shapes(dl)
    assert len(got) == 4 and got[0] == [(32, 10, 10), (32, 1)] and got[-1] == [(4, 10, 10), (4, 1)]
    dl10 = luz.as_dataloader(ds, batch_size=10)
    assert len(dl10) == 10 and len(shapes(dl10)) == 10


def test_lists_of_tensors_and_arrays() -> None:
    # R row 5
    x, y = torch.randn(100, 10), torch.randn(100, 5)
    for data in [[x, y], (x, y), (x, y.numpy())]:
        got = shapes(luz.as_dataloader(data))
        assert len(got) == 4
        assert got[0] == [(32, 10), (32, 5)]
        assert got[-1] == [(4, 10), (4, 5)]
    first = next(iter(luz.as_dataloader((x, y))))
    assert isinstance(first, tuple)
    assert torch.equal(first[0], x[:32])


@pytest.mark.parametrize(
    "data", [np.arange(100.0), np.ones((100, 3)), np.ones((100, 2, 2)), torch.ones(100, 3), torch.arange(100)]
)
def test_numerics(data: Any) -> None:
    # R row 6
    batches = list(luz.as_dataloader(data))
    assert len(batches) == 4
    assert all(isinstance(b, tuple) and len(b) == 1 for b in batches)
    assert batches[0][0].shape[0] == 32


def test_numpy_float64_becomes_float32() -> None:
    (batch,) = next(iter(luz.as_dataloader(np.zeros((4, 2), dtype=np.float64))))
    assert batch.dtype == torch.float32
    (ints,) = next(iter(luz.as_dataloader(np.zeros(4, dtype=np.int64))))
    assert ints.dtype == torch.int64


def test_as_dataloader_direct_call_does_not_shuffle_or_drop() -> None:
    x = torch.arange(70)
    (a, b, c) = [batch[0] for batch in luz.as_dataloader(x)]
    assert torch.equal(torch.cat([a, b, c]), x)
    assert len(list(luz.as_dataloader(x, batch_size=32, drop_last=True))) == 2


def test_dataloader_is_returned_as_is_and_rejects_options() -> None:
    dl = luz.as_dataloader(torch.ones(3))
    assert luz.as_dataloader(dl) is dl
    with pytest.raises(ValueError, match="already a dataloader"):
        luz.as_dataloader(dl, batch_size=2)


def test_iterable_dataset_ignores_shuffle() -> None:
    dl = luz.as_dataloader(Stream(), batch_size=4, shuffle=True)
    assert [len(b[0]) for b in dl] == [4, 4, 2]
    assert len(list(training_loader(Stream(), {"batch_size": 4}))) == 2  # drop_last


def test_unequal_first_dimensions() -> None:
    with pytest.raises(ValueError, match="first dimension"):
        luz.as_dataloader((torch.ones(3, 2), torch.ones(4)))
    with pytest.raises(ValueError, match="first dimension"):
        TensorBatchDataset(torch.ones(3), torch.tensor(1.0))


def test_register_custom_type() -> None:
    class Pairs:
        def __init__(self, n: int) -> None:
            self.n = n

    @luz.as_dataloader.register(Pairs)
    def _(x: Pairs, **options: Any) -> DataLoader[Any]:
        return luz.as_dataloader(torch.arange(x.n), **options)

    assert len(list(luz.as_dataloader(Pairs(40), batch_size=10))) == 4


def test_as_dataset() -> None:
    ds = Images(5)
    assert as_dataset(ds) is ds
    assert len(as_dataset(np.ones((5, 2)))) == 5
    with pytest.raises(TypeError, match="str"):
        as_dataset("x")


def test_training_loader_defaults() -> None:
    x = torch.arange(70)
    torch.manual_seed(0)
    batches = [b[0] for b in training_loader(x, None)]
    assert len(batches) == 2  # drop_last
    assert not torch.equal(torch.cat(batches), x[:64])  # shuffled
    kept = [b[0] for b in training_loader(x, {"shuffle": False, "drop_last": False, "batch_size": 7})]
    assert torch.equal(torch.cat(kept), x)


def test_eval_loader_never_shuffles() -> None:
    x = torch.arange(70)
    loaded = torch.cat([b[0] for b in eval_loader(x, {"shuffle": True}, role="validation")])
    assert torch.equal(loaded, x)
    with pytest.warns(UserWarning, match="ignored for predictions"):
        loaded = torch.cat([b[0] for b in eval_loader(x, {"shuffle": True}, role="prediction")])
    assert torch.equal(loaded, x)
    with pytest.warns(UserWarning, match="already a dataloader"):
        eval_loader(luz.as_dataloader(x), {"batch_size": 2}, role="prediction")


def test_split_valid_sizes_and_disjointness() -> None:
    x = torch.arange(103)
    train, valid = split_valid(x, 0.2)
    assert len(valid) == 20 and len(train) == 83
    tx = torch.cat([b[0] for b in luz.as_dataloader(train)])
    vx = torch.cat([b[0] for b in luz.as_dataloader(valid)])
    assert sorted(torch.cat([tx, vx]).tolist()) == list(range(103))
    assert torch.equal(tx, tx.sort().values)  # keeps the original order


def test_split_valid_on_a_dataset() -> None:
    train, valid = split_valid(Images(50), 0.1)
    assert len(train) == 45 and len(valid) == 5
    assert shapes(luz.as_dataloader(valid)) == [[(5, 10, 10), (5, 1)]]


@pytest.mark.parametrize("fraction", [0, 1, 2, -0.5, 1.0, True, "0.2"])
def test_split_valid_bad_fraction(fraction: Any) -> None:
    with pytest.raises(ValueError, match="float in \\(0, 1\\)") as info:
        split_valid(torch.arange(10), fraction)
    assert repr(fraction) in str(info.value)


def test_split_valid_rejects_loaders_and_streams() -> None:
    with pytest.raises(ValueError, match="DataLoader"):
        split_valid(luz.as_dataloader(torch.arange(10)), 0.5)
    with pytest.raises(ValueError, match="IterableDataset"):
        split_valid(Stream(), 0.5)


def test_a_sampler_in_the_options_replaces_the_shuffle_default() -> None:
    from torch.utils.data import WeightedRandomSampler

    x, y = torch.randn(40, 3), torch.randn(40, 1)
    sampler = WeightedRandomSampler(torch.ones(40), 40)
    loader = training_loader((x, y), {"sampler": sampler, "batch_size": 8})
    assert loader.sampler is sampler
    assert len(list(loader)) == 5


def test_a_batch_sampler_in_the_options_replaces_batch_size_and_drop_last() -> None:
    from torch.utils.data import BatchSampler, SequentialSampler

    x, y = torch.randn(40, 3), torch.randn(40, 1)
    batches = BatchSampler(SequentialSampler(range(40)), batch_size=6, drop_last=False)
    loader = training_loader((x, y), {"batch_sampler": batches})
    sizes = [xb.shape[0] for xb, _ in loader]
    assert sizes == [6, 6, 6, 6, 6, 6, 4]
    assert torch.equal(next(iter(loader))[0], x[:6])


def test_a_user_collate_fn_gets_samples_from_tensor_data() -> None:
    from torch.utils.data import default_collate

    x, y = torch.randn(10, 3), torch.randn(10, 1)
    seen: list[int] = []

    def collate(samples: list[Any]) -> Any:
        seen.append(len(samples))
        return default_collate(samples)

    loader = luz.as_dataloader((x, y), batch_size=4, collate_fn=collate)
    batches = list(loader)
    assert seen == [4, 4, 2]
    assert torch.equal(batches[0][0], x[:4])


def test_numpy_numbers_are_accepted_for_epochs_and_fractions() -> None:
    from torch import nn

    x, y = torch.randn(100, 2), torch.randn(100, 1)
    module = luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    fitted = module.set_hparams(in_features=2, out_features=1).fit(
        (x, y), epochs=np.int64(2), valid_data=np.float32(0.2), verbose=False
    )
    assert len(fitted.records["metrics"]["valid"]) == 2


def test_dataloader_with_options_messages_say_already_a_dataloader() -> None:
    # R's tests match "already a dataloader" case-sensitively (inventory §7.3)
    dl = luz.as_dataloader(torch.arange(10))
    with pytest.raises(ValueError, match="already a dataloader") as info:
        training_loader(dl, {"batch_size": 2})
    assert "`dataloader_options` (batch_size)" in str(info.value) and "`data`" in str(info.value)
    with pytest.warns(UserWarning, match="already a dataloader") as record:
        assert eval_loader(dl, {"batch_size": 2}, role="validation") is dl
    assert "validation data" in str(record[0].message)


class Rows:
    """A user type with registered converters below."""

    def __init__(self, n: int) -> None:
        self.x = torch.arange(float(n)).unsqueeze(1)


class PlainRows(Rows):
    pass


class KeywordRows(Rows):
    pass


class BadRows(Rows):
    pass


RECEIVED: list[dict[str, Any]] = []  # the options each call of the Rows converter got


@luz.as_dataloader.register
def _(x: Rows, **options: Any) -> DataLoader[Any]:
    RECEIVED.append(dict(options))
    options = {"batch_size": 32, **options}  # a converter applies its own defaults
    return DataLoader(TensorBatchDataset(x.x, x.x), collate_fn=luz.data.collate_batch, **options)


@luz.as_dataloader.register
def _(x: PlainRows) -> DataLoader[Any]:
    return DataLoader(TensorBatchDataset(x.x, x.x), batch_size=10, collate_fn=luz.data.collate_batch)


@luz.as_dataloader.register
def _(x: KeywordRows, batch_size: int = 5, *, drop_last: bool = False) -> DataLoader[Any]:
    return DataLoader(
        TensorBatchDataset(x.x, x.x),
        batch_size=batch_size,
        drop_last=drop_last,
        collate_fn=luz.data.collate_batch,
    )


@luz.as_dataloader.register
def _(x: BadRows, **options: Any) -> Any:
    return [x.x]


def test_user_converter_gets_the_options_exactly_as_given() -> None:
    RECEIVED.clear()
    (first, _), *rest = training_loader(Rows(70), None)  # no luz defaults: no shuffle, no drop_last
    assert torch.equal(first.flatten(), torch.arange(32.0)) and [len(b[0]) for b in rest] == [32, 6]
    assert [len(b[0]) for b in eval_loader(Rows(70), None, role="prediction")] == [32, 32, 6]
    torch.manual_seed(0)
    (first, _), *_ = training_loader(Rows(70), {"batch_size": 64, "shuffle": True})
    assert len(first) == 64 and not torch.equal(first.flatten(), torch.arange(64.0))  # shuffled
    assert len(eval_loader(Rows(70), {"batch_size": 7}, role="evaluation")) == 10
    eval_loader(Rows(70), {"batch_size": 7, "shuffle": True}, role="validation")  # never shuffled
    assert RECEIVED == [{}, {}, {"batch_size": 64, "shuffle": True}, {"batch_size": 7}, {"batch_size": 7}]


def test_user_converter_taking_only_x_drops_defaults() -> None:
    assert [len(b[0]) for b in training_loader(PlainRows(25), None)] == [10, 10, 5]
    assert len(eval_loader(PlainRows(25), None, role="prediction")) == 3
    with pytest.raises(TypeError, match="with `dataloader_options` 'batch_size'") as info:
        training_loader(PlainRows(25), {"batch_size": 4})
    message = str(info.value)
    assert "PlainRows" in message and "unexpected keyword argument" in message and "**options" in message
    assert isinstance(info.value.__cause__, TypeError)


def test_user_converter_with_keywords_applies_its_own_defaults() -> None:
    # the converter's own batch_size=5 applies: luz passes no defaults, only the user's options
    assert [len(b[0]) for b in training_loader(KeywordRows(12), None)] == [5, 5, 2]
    assert [len(b[0]) for b in eval_loader(KeywordRows(12), {"batch_size": 5}, role="evaluation")] == [
        5,
        5,
        2,
    ]
    assert [len(b[0]) for b in training_loader(KeywordRows(12), {"drop_last": True})] == [5, 5]
    with pytest.raises(TypeError, match="'shuffle', 'num_workers', 'batch_size'") as info:
        training_loader(KeywordRows(12), {"shuffle": False, "num_workers": 0, "batch_size": 4})
    assert "`dataloader_options`" in str(info.value) and "'shuffle'" in str(info.value.__cause__)


def test_user_converter_must_return_a_dataloader() -> None:
    with pytest.raises(TypeError, match=r"returned list .*must return a torch\.utils\.data") as info:
        training_loader(BadRows(4), None)
    assert "BadRows" in str(info.value) and "DataLoader" in str(info.value)
    with pytest.raises(TypeError, match="returned list"):
        eval_loader(BadRows(4), None, role="prediction")


def test_fit_and_predict_with_a_user_converter_taking_only_x() -> None:
    from torch import nn

    module = luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
    fitted = module.set_hparams(in_features=1, out_features=1).fit(PlainRows(25), epochs=1, verbose=False)
    assert fitted.predict(PlainRows(25)).shape == (25, 1)


@pytest.mark.parametrize(
    ("options", "shown"), [([1], "list [1]"), ("batch_size", "str 'batch_size'"), (32, "int 32")]
)
def test_dataloader_options_must_be_a_mapping(options: Any, shown: str) -> None:
    for build in (
        lambda: training_loader(torch.arange(4), options),
        lambda: eval_loader(torch.arange(4), options, role="prediction"),
    ):
        with pytest.raises(
            TypeError, match="`dataloader_options` must be a dict of DataLoader arguments"
        ) as info:
            build()
        assert f"got {shown}" in str(info.value)


def test_unknown_dataloader_options_name_the_keys_and_valid_ones() -> None:
    for build in (
        lambda o: training_loader((torch.ones(4, 2), torch.ones(4)), o),
        lambda o: eval_loader(Images(4), o, role="validation"),
    ):
        with pytest.raises(
            TypeError, match="`dataloader_options` has keys DataLoader does not accept: 'nope'"
        ) as info:
            build({"nope": 1, "batch_size": 2})
        assert "batch_size" in str(info.value) and "num_workers" in str(info.value)
        assert "unexpected keyword" not in str(info.value)


def test_unknown_dataloader_options_from_fit_predict_evaluate() -> None:
    from types import MappingProxyType

    from torch import nn

    x, y = torch.randn(20, 2), torch.randn(20, 1)
    module = luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(
        in_features=2, out_features=1
    )
    with pytest.raises(TypeError, match="'nope'"):
        module.fit((x, y), epochs=1, verbose=False, dataloader_options={"nope": 1})
    fitted = module.fit(
        (x, y), epochs=1, verbose=False, dataloader_options=MappingProxyType({"batch_size": 5})
    )
    with pytest.raises(TypeError, match="'nope'"):
        fitted.predict(x, dataloader_options={"nope": 1})
    with pytest.raises(TypeError, match="must be a dict"):
        fitted.evaluate((x, y), dataloader_options=[("batch_size", 5)])  # type: ignore[arg-type]


def test_nested_tuples_batch_with_the_same_nesting() -> None:
    xa, xb, y = torch.randn(70, 3), np.ones((70, 2)), torch.arange(70)
    dl = luz.as_dataloader(((xa, [xb]), y), batch_size=32)
    assert dl.collate_fn is luz.data.collate_batch  # the batched fetch
    batches = list(dl)
    assert len(batches) == 3
    (a, (b,)), target = batches[-1]
    assert isinstance(batches[-1][0][1], tuple)
    assert a.shape == (6, 3) and b.shape == (6, 2) and b.dtype == torch.float32
    assert torch.equal(a, xa[64:]) and torch.equal(target, y[64:])
    ds = TensorBatchDataset((xa, torch.from_numpy(xb)), y)
    (sa, sb), sy = ds[3]
    assert torch.equal(sb, torch.ones(2))
    assert torch.equal(sa, xa[3]) and sy == 3 and len(ds.tensors) == 3


def test_nested_tuples_with_a_user_collate_fn_and_a_split() -> None:
    from torch.utils.data import default_collate

    x1, x2, y = torch.randn(10, 3), torch.randn(10, 2), torch.arange(10)
    (a, b), t = next(iter(luz.as_dataloader(((x1, x2), y), batch_size=4, collate_fn=default_collate)))
    assert torch.equal(a, x1[:4]) and torch.equal(b, x2[:4]) and torch.equal(t, y[:4])
    train, valid = split_valid(((x1, x2), y), 0.3)
    assert isinstance(train, TensorBatchDataset) and len(train) == 7 and len(valid) == 3
    ((va, vb), vt) = next(iter(luz.as_dataloader(valid)))
    assert torch.equal(va, x1[vt]) and torch.equal(vb, x2[vt])


def test_nested_tuples_need_equal_first_dimensions() -> None:
    with pytest.raises(ValueError, match="first dimension"):
        luz.as_dataloader(((torch.ones(3, 2), torch.ones(4)), torch.ones(3)))
    with pytest.raises(TypeError, match="str"):
        luz.as_dataloader(((torch.ones(3), "x"), torch.ones(3)))
    with pytest.raises(TypeError, match="empty"):
        luz.as_dataloader(((), torch.ones(3)))


def test_two_input_model_fits_on_nested_tuples() -> None:
    from torch import nn

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(3, 1), nn.Linear(2, 1)

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return self.a(a) + self.b(b)

    xa, xb = torch.randn(100, 3), torch.randn(100, 2)
    y = xa.sum(1, keepdim=True) - xb.sum(1, keepdim=True)
    module = luz.setup(TwoInputs, loss=nn.MSELoss(), optimizer=torch.optim.Adam).set_opt_hparams(lr=0.05)
    fitted = module.fit(((xa, xb), y), epochs=20, valid_data=0.2, verbose=False)
    valid = fitted.records["metrics"]["valid"]
    assert len(valid) == 20 and valid[-1]["loss"] < valid[0]["loss"]
    preds = fitted.predict(((xa, xb),))
    assert preds.shape == (100, 1)
    assert torch.allclose(preds, fitted.model(xa, xb).detach())


# -- non-finite values in in-memory training data --------------------------------------------------


@pytest.mark.parametrize(
    ("where", "name"), [("x", "input"), ("y", "target")], ids=["nan-in-input", "inf-in-target"]
)
def test_non_finite_training_tensors_warn_before_training_naming_the_tensor(where: str, name: str) -> None:
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    if where == "x":
        x[5, 1] = float("nan")
        x[9, 0] = float("nan")
    else:
        y[3, 0] = float("inf")
    steps: list[int] = []
    probe = luz.callback(on_train_batch_end=lambda ctx: steps.append(ctx.iter))
    with pytest.warns(
        UserWarning, match=rf"training data's {name} tensor \(shape \((64, 3|64, 1)\)\) holds"
    ) as caught:
        module = luz.setup(torch.nn.Linear, loss=torch.nn.MSELoss(), optimizer=torch.optim.SGD)
        guard = luz.callbacks.NaNGuard(enabled=False)
        module.set_hparams(in_features=3, out_features=1).fit(
            (x, y), epochs=1, callbacks=[guard, probe], verbose=False
        )
    message = next(str(w.message) for w in caught if "training data" in str(w.message))
    assert ("holds 2 NaN" if where == "x" else "holds 1 NaN") in message
    assert steps  # a warning, not an error: training ran


def test_non_finite_numpy_arrays_and_nested_inputs_are_named() -> None:
    xa, xb, y = np.random.randn(64, 3), np.random.randn(64, 2), np.random.randn(64, 1)
    xb[0, 0] = np.inf
    ds = TensorBatchDataset((torch.as_tensor(xa), torch.as_tensor(xb)), torch.as_tensor(y))
    with pytest.warns(UserWarning, match=r"training data's input\[1\] tensor \(shape \(64, 2\)\)"):
        warn_non_finite(training_loader(ds, None), "training")
    with pytest.warns(UserWarning, match="training data's input tensor"):
        warn_non_finite(training_loader((xb, y), None), "training")


def test_finite_and_integer_training_data_do_not_warn(recwarn: pytest.WarningsRecorder) -> None:
    x, labels = torch.randn(64, 3), torch.randint(0, 3, (64,))
    warn_non_finite(training_loader((x, labels), None), "training")
    warn_non_finite(training_loader(Images(), None), "training")  # not in memory: unchecked
    assert not [w for w in recwarn if "training data" in str(w.message)]


# -- real data as people have it (SPEC §4 Beyond): compared with a hand-written torch loop ---------


class Mlp(torch.nn.Module):
    def __init__(self, n_in: int = 4, n_out: int = 3) -> None:
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(n_in, 8), torch.nn.Linear(8, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def _fit(
    data: Any, loss: Any, *, epochs: int = 2, dtype: torch.dtype = torch.float32, **fit_kwargs: Any
) -> Any:
    torch.manual_seed(7)
    module = luz.setup(lambda: Mlp().to(dtype), loss=loss, optimizer=torch.optim.Adam).set_opt_hparams(
        lr=0.01
    )
    return module.fit(data, epochs=epochs, verbose=False, **fit_kwargs)


def _by_hand(
    dataset: Any, loss: Any, *, epochs: int = 2, dtype: torch.dtype = torch.float32, **loader: Any
) -> torch.nn.Module:
    """The same training as `_fit`, written with a plain `DataLoader` (fit's defaults)."""
    torch.manual_seed(7)
    model = Mlp().to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loader = {"batch_size": 32, "shuffle": True, "drop_last": True, **loader}
    for _ in range(epochs):
        for batch in DataLoader(dataset, **loader):
            x, y = (batch["input"], batch["target"]) if isinstance(batch, dict) else batch
            opt.zero_grad()
            loss(model(x), y).backward()
            opt.step()
    return model


def _assert_same_weights(fitted: Any, model: torch.nn.Module) -> None:
    got = dict(fitted.model.named_parameters())
    for name, param in model.named_parameters():
        assert got[name].dtype == param.dtype, name
        assert torch.equal(got[name].detach(), param.detach()), name


def _classes(n: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_a_hugging_face_dataset_trains_like_a_dataloader_over_it() -> None:
    hf = pytest.importorskip("datasets")
    x, y = _classes()
    ds = hf.Dataset.from_dict({"input": x.tolist(), "target": y.tolist()}).with_format("torch")
    loss = torch.nn.CrossEntropyLoss()
    _assert_same_weights(_fit(ds, loss), _by_hand(ds, loss))
    fitted = _fit(ds, loss, valid_data=0.2)  # a fraction splits it like any map-style dataset
    assert len(fitted.records["metrics"]["valid"]) == 2
    preds = fitted.predict(ds)
    assert preds.shape == (100, 3)


def test_a_map_style_object_without_len_is_refused_with_what_works() -> None:
    class OnlyGetitem:
        def __getitem__(self, i: int) -> int:
            return i

    with pytest.raises(TypeError, match=r"of type OnlyGetitem.*__getitem__ and __len__"):
        luz.as_dataloader(OnlyGetitem())


@pytest.mark.parametrize("kind", ["tuples", "dicts"])
def test_a_list_of_samples_trains_like_a_dataloader_over_it(kind: str) -> None:
    x, y = _classes()
    if kind == "tuples":
        samples: list[Any] = [(x[i], int(y[i])) for i in range(100)]  # labels are Python ints
    else:
        samples = [{"input": x[i], "target": y[i]} for i in range(100)]
    loss = torch.nn.CrossEntropyLoss()
    _assert_same_weights(_fit(samples, loss), _by_hand(samples, loss))
    assert _fit(samples, loss, valid_data=0.25).predict(samples).shape == (100, 3)


def test_a_list_of_tensors_is_still_columns() -> None:
    x, y = _classes()
    loss = torch.nn.CrossEntropyLoss()
    _assert_same_weights(_fit([x, y], loss), _by_hand(torch.utils.data.TensorDataset(x, y), loss))


def test_pandas_frame_and_series_train_like_their_tensors(recwarn: pytest.WarningsRecorder) -> None:
    pd = pytest.importorskip("pandas")
    x, y = _classes()
    frame = pd.DataFrame(x.double().numpy(), columns=list("abcd"))  # float64 columns
    labels = pd.Series(y.numpy().astype(np.int32))  # int32 labels: CrossEntropyLoss needs int64
    loss = torch.nn.CrossEntropyLoss()
    fitted = _fit((frame, labels), loss)
    _assert_same_weights(fitted, _by_hand(torch.utils.data.TensorDataset(x, y), loss))
    assert torch.allclose(fitted.predict(frame), fitted.model(x).detach(), atol=1e-6)
    assert not [w for w in recwarn if "writable" in str(w.message)]


def test_read_only_arrays_are_copied_without_a_warning(recwarn: pytest.WarningsRecorder) -> None:
    x, y = _classes()
    xs, ys = x.numpy().copy(), y.numpy().copy()
    xs.flags.writeable = ys.flags.writeable = False
    loss = torch.nn.CrossEntropyLoss()
    _assert_same_weights(_fit((xs, ys), loss), _by_hand(torch.utils.data.TensorDataset(x, y), loss))
    assert not [w for w in recwarn if "writable" in str(w.message)]


# -- dtypes: in-memory data takes the model's floating dtype, integers become int64 ---------------


def test_float64_arrays_train_a_double_model_in_float64() -> None:
    x, y = _classes()
    loss = torch.nn.CrossEntropyLoss()
    xs = x.double().numpy() + 1e-12  # float64 detail a float32 round trip would lose
    fitted = _fit((xs, y.int().numpy()), loss, dtype=torch.float64)
    by_hand = _by_hand(torch.utils.data.TensorDataset(torch.from_numpy(xs), y), loss, dtype=torch.float64)
    _assert_same_weights(fitted, by_hand)
    assert fitted.predict(xs).dtype == torch.float64


def test_float64_tensors_train_a_float32_model() -> None:
    x, y = _classes()
    loss = torch.nn.CrossEntropyLoss()
    fitted = _fit((x.double(), y.int()), loss)
    _assert_same_weights(fitted, _by_hand(torch.utils.data.TensorDataset(x, y), loss))
    assert fitted.predict(x.double()).dtype == torch.float32
    assert fitted.evaluate((x.double(), y.int())).get_metrics()["value"].notna().all()


def test_datasets_and_loaders_are_used_as_they_are() -> None:
    x, y = _classes()
    seen: list[torch.dtype] = []

    class Spy(luz.Callback):
        def on_train_batch_begin(self) -> None:
            seen.append(self.ctx.input.dtype)

    ds = torch.utils.data.TensorDataset(x.double(), y)
    with pytest.raises(RuntimeError, match="dtype"):  # the user's float64 reaches the model
        _fit(ds, torch.nn.CrossEntropyLoss(), epochs=1, callbacks=[Spy()])
    assert seen == [torch.float64]
    (batch,) = next(iter(luz.as_dataloader(np.zeros(4, dtype=np.int32))))
    assert batch.dtype == torch.int64  # integer data becomes int64, also converted directly


# -- options, generators ---------------------------------------------------------------------------


class Batches(Dataset[Any]):
    """A dataset whose items are whole batches (for ``batch_size=None``)."""

    def __init__(self) -> None:
        self.x, self.y = _classes(96)

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[32 * i : 32 * (i + 1)], self.y[32 * i : 32 * (i + 1)]


def test_batch_size_none_uses_items_as_batches_without_adding_options() -> None:
    loss = torch.nn.CrossEntropyLoss()
    options = {"batch_size": None}
    fitted = _fit(Batches(), loss, dataloader_options=options, valid_data=Batches())
    _assert_same_weights(fitted, _by_hand(Batches(), loss, batch_size=None, shuffle=False, drop_last=False))
    assert fitted.predict(Batches(), dataloader_options=options).shape == (96, 3)
    loader = training_loader(Batches(), options)
    assert loader.batch_size is None and not loader.drop_last
    assert isinstance(loader.sampler, torch.utils.data.SequentialSampler)


def test_a_generator_is_refused_saying_how_to_wrap_it() -> None:
    x, y = _classes()
    gen = ((x[i], y[i]) for i in range(100))
    with pytest.raises(TypeError, match=r"generator.*read only once.*IterableDataset.*DataLoader"):
        _fit(gen, torch.nn.CrossEntropyLoss())
    with pytest.raises(TypeError, match="IterableDataset"):
        luz.as_dataloader(iter([x, y]))


# -- data warnings point at the user's line ---------------------------------------------------------


def test_data_warnings_are_reported_at_the_callers_line() -> None:
    x, y = _classes()
    bad = x.clone()
    bad[0, 0] = float("nan")
    module = luz.setup(Mlp, loss=torch.nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)
    with pytest.warns(UserWarning, match="NaN") as fluent:
        fitted = module.fit((bad, y), epochs=1, verbose=False, callbacks=[NaNGuard(enabled=False)])
    with pytest.warns(UserWarning, match="NaN") as functional:
        luz.fit(module, (bad, y), epochs=1, verbose=False, callbacks=[NaNGuard(enabled=False)])
    with pytest.warns(UserWarning, match="never shuffled") as predicted:
        fitted.predict(x, dataloader_options={"shuffle": True})
    with pytest.warns(UserWarning, match="already a dataloader") as evaluated:
        fitted.evaluate(
            DataLoader(torch.utils.data.TensorDataset(x, y)), dataloader_options={"batch_size": 4}
        )
    with pytest.warns(UserWarning, match="already a dataloader") as validated:
        module.fit(
            (x, y),
            epochs=1,
            verbose=False,
            valid_data=DataLoader(torch.utils.data.TensorDataset(x, y)),
            dataloader_options={"batch_size": 4},
        )
    for record in (fluent, functional, predicted, evaluated, validated):
        data_warnings = [w for w in record if w.category is UserWarning]
        assert data_warnings and [w.filename for w in data_warnings] == [__file__] * len(data_warnings)


def test_a_frame_with_a_text_column_says_to_make_it_numeric() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"]})
    with pytest.raises(TypeError, match="numeric dtype"):
        luz.as_dataloader(frame)


# -- the in-memory loader (issue 18) ----------------------------------------------------------------


class _TorchIteration:
    def __init__(self, loader: DataLoader[Any]) -> None:
        self.loader = loader

    def __iter__(self) -> Any:
        return DataLoader.__iter__(self.loader)

    def __len__(self) -> int:
        return len(self.loader)


def _draws(loader: Any, generator: torch.Generator | None) -> list[tuple[Any, ...]]:
    """Every batch of two epochs, with a global-RNG draw after each and the generator's state."""
    seen = []
    for _ in range(2):
        for batch in loader:
            state = None if generator is None else generator.get_state()
            seen.append((batch, torch.rand(1), state))
    return seen


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last", "shuffle", "own_generator"),
    [
        (100, 32, False, True, False),  # a short last batch
        (96, 32, False, True, True),  # no short batch
        (100, 32, False, True, True),  # the user's generator, short last batch kept
        (100, 32, True, True, True),  # short last batch dropped
        (100, 7, False, False, False),  # sequential
        (5, 32, True, True, False),  # no batch at all
    ],
)
def test_in_memory_loader_equals_torch_dataloader_bitwise(
    n: int, batch_size: int, drop_last: bool, shuffle: bool, own_generator: bool
) -> None:
    from luz.data import InMemoryLoader, collate_batch

    x, y = torch.randn(n, 3), torch.arange(n)
    dataset = TensorBatchDataset((x, [x * 2]), y)
    runs = []
    for kind in ("torch", "luz", "luz through torch's iterator"):
        torch.manual_seed(0)
        generator = torch.Generator().manual_seed(5) if own_generator else None
        options = {"batch_size": batch_size, "shuffle": shuffle, "drop_last": drop_last}
        options["generator"] = generator
        if kind == "torch":
            loader: Any = DataLoader(dataset, collate_fn=collate_batch, **options)
        else:
            loader = InMemoryLoader(dataset, **options)
            assert isinstance(loader, DataLoader) and loader.batch_size == batch_size
            if kind != "luz":  # torch's iterator fetches with the same index batches
                loader = _TorchIteration(loader)
        runs.append((_draws(loader, generator), torch.rand(3), len(loader)))
    reference, after, length = runs[0]
    assert len(reference) == 2 * length
    for seen, rest, size in runs[1:]:
        assert size == length and len(seen) == len(reference) and torch.equal(rest, after)
        for (batch, draw, state), (want, want_draw, want_state) in zip(seen, reference, strict=True):
            (xa, (xb,)), yb = batch
            assert isinstance(batch, tuple) and isinstance(batch[0][1], tuple)
            assert torch.equal(yb, want[1]) and torch.equal(xa, want[0][0]) and torch.equal(xb, want[0][1][0])
            assert torch.equal(draw, want_draw)
            assert state is None or torch.equal(state, want_state)
    if shuffle and n > batch_size:
        assert not torch.equal(reference[0][0][1], torch.arange(batch_size))  # it did shuffle


def test_tensors_get_an_in_memory_loader_unless_options_need_torchs() -> None:
    from torch.utils.data import default_collate

    from luz.data import InMemoryLoader

    x, y = torch.randn(20, 3), torch.arange(20)
    assert type(luz.as_dataloader((x, y))) is InMemoryLoader
    assert type(training_loader((x, y), {"batch_size": 4})) is InMemoryLoader
    assert type(eval_loader(x, None, role="prediction")) is InMemoryLoader
    for options in (
        {"num_workers": 0},
        {"collate_fn": default_collate},
        {"pin_memory": False},
        {"sampler": range(20)},
        {"batch_size": None},
    ):
        loader = luz.as_dataloader((x, y), **options)
        assert type(loader) is DataLoader, options
    batch = next(iter(luz.as_dataloader((x, y), batch_size=5, num_workers=0)))
    assert torch.equal(batch[0], x[:5])  # the DataLoader path still fetches whole batches

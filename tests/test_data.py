"""luz.data: `as_dataloader` and `as_dataset` on every kind of data people have, the registry of
converters, the dtype rule, and real data trained like a hand-written loop over it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

import luz
from luz._loaders import eval_loader, split_valid, training_loader
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

"""luz._loaders: the training and evaluation loaders of a run (luz's defaults, samplers and
batch samplers of the user's), the validation split, the options check and the warnings
about the user's data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import luz
from luz._loaders import eval_loader, split_valid, training_loader, warn_non_finite
from luz.data import TensorBatchDataset
from tests.test_data import Images, Stream, shapes


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


def test_dataloader_with_options_messages_say_already_a_dataloader() -> None:
    # R's tests match "already a dataloader" case-sensitively (inventory §7.3)
    dl = luz.as_dataloader(torch.arange(10))
    with pytest.raises(ValueError, match="already a dataloader") as info:
        training_loader(dl, {"batch_size": 2})
    assert "`dataloader_options` (batch_size)" in str(info.value) and "`data`" in str(info.value)
    with pytest.warns(UserWarning, match="already a dataloader") as record:
        assert eval_loader(dl, {"batch_size": 2}, role="validation") is dl
    assert "validation data" in str(record[0].message)


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

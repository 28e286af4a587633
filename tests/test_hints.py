"""Keras/skorch habits in `fit`, `evaluate` and `predict` get a TypeError naming the pyluz way,
and that way works."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz import run
from luz.module import LuzModule
from tests.conftest import regression_data


def _module() -> LuzModule:
    return luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(
        in_features=10, out_features=1
    )


_X, _Y = regression_data(64)

# (the Keras-style call, the text the hint must contain, the pyluz call it points to)
CASES: list[tuple[str, Callable[[LuzModule], Any], str, Callable[[LuzModule], Any]]] = [
    ("x, y", lambda m: m.fit(_X, _Y, epochs=1), "fit((x, y))", lambda m: m.fit((_X, _Y), epochs=1)),
    (
        "functional x, y",
        lambda m: luz.fit(m, _X, _Y, epochs=1),
        "fit((x, y))",
        lambda m: luz.fit(m, (_X, _Y), epochs=1),
    ),
    (
        "batch_size",
        lambda m: m.fit((_X, _Y), epochs=1, batch_size=32),
        "dataloader_options={'batch_size': 32}",
        lambda m: m.fit((_X, _Y), epochs=1, dataloader_options={"batch_size": 32}),
    ),
    (
        "validation_split",
        lambda m: m.fit((_X, _Y), epochs=1, validation_split=0.2),
        "valid_data=0.2",
        lambda m: m.fit((_X, _Y), epochs=1, valid_data=0.2),
    ),
    (
        "device",
        lambda m: m.fit((_X, _Y), epochs=1, device="cpu"),
        "accelerator=luz.Accelerator(cpu=True)",
        lambda m: m.fit((_X, _Y), epochs=1, accelerator=luz.Accelerator(cpu=True)),
    ),
]


@pytest.mark.parametrize(("case", "keras", "hint", "pyluz"), CASES, ids=[c[0] for c in CASES])
def test_keras_habit_names_the_pyluz_way_which_then_trains(
    case: str, keras: Callable[[LuzModule], Any], hint: str, pyluz: Callable[[LuzModule], Any]
) -> None:
    module = _module()
    with pytest.raises(TypeError, match=re.escape(hint)):
        keras(module)
    fitted = pyluz(module)
    assert len(fitted.records["metrics"]["train"]) == 1
    if case == "validation_split":
        assert len(fitted.records["metrics"]["valid"]) == 1


def test_several_habits_at_once_are_all_named() -> None:
    with pytest.raises(TypeError) as info:
        _module().fit((_X, _Y), batch_size=8, validation_split=0.2, device="cpu", colour="red")
    message = str(info.value)
    for text in ("dataloader_options=", "valid_data=0.2", "luz.Accelerator(cpu=True)", "`colour`"):
        assert text in message


def test_other_mistakes_keep_pythons_own_message() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        _module().fit((_X, _Y), colour="red")


def test_the_wrapped_entry_points_keep_their_signatures() -> None:
    assert "batch_size" not in inspect.signature(run.fit).parameters
    assert list(inspect.signature(LuzModule.fit).parameters)[:2] == ["self", "data"]
    assert inspect.signature(run.fit).parameters["epochs"].kind is inspect.Parameter.KEYWORD_ONLY


def test_accumulation_keywords_point_to_the_callback() -> None:
    with pytest.raises(TypeError, match=re.escape("GradientAccumulation(4)")):
        _module().fit((_X, _Y), epochs=1, accumulate_grad_batches=4)


@pytest.fixture(scope="module")
def fitted() -> luz.Fitted:
    return _module().fit((_X, _Y), epochs=1, verbose=False)


@pytest.mark.parametrize(
    "evaluate", [lambda f: f.evaluate, lambda f: lambda *a, **k: luz.evaluate(f, *a, **k)]
)
def test_evaluate_names_the_pyluz_way(fitted: luz.Fitted, evaluate: Callable[[luz.Fitted], Any]) -> None:
    with pytest.raises(TypeError, match=re.escape("evaluate((x, y))")):
        evaluate(fitted)(_X, _Y)
    with pytest.raises(TypeError, match=re.escape("dataloader_options={'batch_size': 32}")):
        evaluate(fitted)((_X, _Y), batch_size=32)
    # the pyluz way evaluates
    assert evaluate(fitted)((_X, _Y), dataloader_options={"batch_size": 32}).get_metrics().shape[0] == 1


def test_predict_names_the_pyluz_way(fitted: luz.Fitted) -> None:
    with pytest.raises(TypeError, match=re.escape("dataloader_options={'batch_size': 32}")):
        fitted.predict(_X, batch_size=32)
    assert fitted.predict(_X, dataloader_options={"batch_size": 32}).shape == (64, 1)

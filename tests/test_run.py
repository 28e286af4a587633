"""The entry points: one canonical signature each, which the fluent methods and `luz.*` share."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import luz
from luz import run
from luz.module import LuzModule
from luz.results import Fitted


def _parameters(fn: Callable[..., Any], *, drop_first: bool) -> list[tuple[str, Any, Any, str]]:
    params = list(inspect.signature(fn).parameters.values())
    if drop_first:
        params = params[1:]
    return [(p.name, p.kind, p.default, str(p.annotation)) for p in params]


@pytest.mark.parametrize(
    ("canonical", "method"),
    [(run.fit, LuzModule.fit), (run.predict, Fitted.predict), (run.evaluate, Fitted.evaluate)],
)
def test_methods_have_the_canonical_signature(
    canonical: Callable[..., Any], method: Callable[..., Any]
) -> None:
    # The method's `self` stands where the function takes the module or the fitted model.
    assert _parameters(method, drop_first=True) == _parameters(canonical, drop_first=True)
    assert inspect.signature(method).return_annotation == inspect.signature(canonical).return_annotation


def test_the_functional_forms_are_the_canonical_functions() -> None:
    assert luz.fit is run.fit and luz.predict is run.predict and luz.evaluate is run.evaluate
    for fn in (run.fit, run.predict, run.evaluate):
        assert fn.__doc__ and "Args:" in fn.__doc__ and "What runs" in fn.__doc__


def test_methods_and_functions_give_the_same_results() -> None:
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    module = luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_hparams(
        in_features=3, out_features=1
    )
    torch.manual_seed(0)
    a = module.fit((x, y), epochs=2, verbose=False)
    torch.manual_seed(0)
    b = luz.fit(module, (x, y), epochs=2, verbose=False)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    assert torch.equal(a.predict(x, verbose=False), luz.predict(b, x, verbose=False))
    metrics = a.evaluate((x, y), verbose=False).records["metrics"]
    assert metrics == luz.evaluate(b, (x, y), verbose=False).records["metrics"]


def test_fit_names_a_module_that_is_not_from_setup() -> None:
    with pytest.raises(TypeError, match=r"`module` must be a luz\.LuzModule"):
        luz.fit(nn.Linear(3, 1), (torch.randn(8, 3), torch.randn(8, 1)))  # type: ignore[arg-type]


def test_predict_stack_must_be_a_flag() -> None:
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    fitted = (
        luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=3, out_features=1)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=1, verbose=False)
    )
    with pytest.raises(TypeError, match=r"`stack` must be True or False, got 'no' \(str\)"):
        fitted.predict(x, stack="no")  # type: ignore[arg-type]
    assert len(fitted.predict(x, stack=False, dataloader_options={"batch_size": 16})) == 4


def test_valid_fraction_given_as_text() -> None:
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    module = (
        luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_hparams(in_features=3, out_features=1)
        .set_opt_hparams(lr=0.1)
    )
    with pytest.raises(
        ValueError,
        match=r"`valid_data` must be a number in \(0, 1\), got '0.2' \(str\)\. Pass the number 0.2",
    ):
        module.fit((x, y), epochs=1, valid_data="0.2", verbose=False)

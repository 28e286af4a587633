"""`luz.errors`: errors that name their origin keep their type, and survive pickling."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest
import torch
from torch import nn

import luz
from luz.errors import CallbackError, MetricError, with_origin
from tests.conftest import Linear, regression_data


class DomainError(Exception):
    """A user's exception type, defined at module level (so pickle can find it)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


def raised(error: BaseException, message: str, base: type[Exception]) -> Exception:
    """The error `with_origin` builds, raised ``from error`` as luz does (so it has a cause)."""
    try:
        raise with_origin(error, message, base) from error
    except Exception as wrapped:
        return wrapped


def round_trip(error: BaseException) -> BaseException:
    restored: BaseException = pickle.loads(pickle.dumps(error))
    return restored


@pytest.mark.parametrize(
    ("original", "kind"),
    [
        (ValueError("bad value"), ValueError),
        (KeyError("missing"), KeyError),
        (DomainError("no", 7), DomainError),
    ],
    ids=["ValueError", "KeyError", "user-defined"],
)
def test_wrapped_errors_keep_type_message_and_cause_through_pickle(
    original: Exception, kind: type[Exception]
) -> None:
    error = raised(original, "Error in callback Spy at breakpoint 'on_epoch_end'", CallbackError)
    restored = round_trip(error)
    assert isinstance(restored, kind) and isinstance(restored, CallbackError)
    assert str(restored) == str(error) == f"Error in callback Spy at breakpoint 'on_epoch_end': {original}"
    assert type(restored) is type(error)  # the same combined class in this process
    cause = restored.__cause__
    assert type(cause) is kind and str(cause) == str(original) and cause is not original
    assert restored.__suppress_context__  # shown as "the direct cause", as when raised
    if isinstance(original, DomainError):
        assert isinstance(cause, DomainError) and cause.code == 7


@pytest.mark.parametrize(
    "original",
    [FileNotFoundError(2, "No such file or directory", "data.csv"), PermissionError(13, "Denied", "out")],
    ids=["FileNotFoundError", "PermissionError"],
)
def test_os_errors_keep_their_type_and_their_cause_keeps_errno(original: OSError) -> None:
    error = raised(original, "Error in callback Loader at breakpoint 'on_fit_begin'", CallbackError)
    restored = round_trip(error)
    assert isinstance(restored, type(original)) and isinstance(restored, CallbackError)
    assert str(restored) == str(error) and original.filename in str(restored)
    cause = restored.__cause__
    assert type(cause) is type(original)
    assert cause.errno == original.errno and cause.filename == original.filename


class FinalError(Exception):
    """An exception type that refuses subclasses: luz cannot add its own type to it."""

    def __init_subclass__(cls) -> None:
        raise TypeError("FinalError cannot be subclassed")


class Abort(BaseException):
    """Not an ``Exception``: luz does not combine it either."""


@pytest.mark.parametrize("original", [FinalError("final"), Abort("abort")], ids=["final", "BaseException"])
def test_types_that_cannot_be_combined_fall_back_to_the_luz_type(original: BaseException) -> None:
    error = raised(original, "Error in callback Spy at breakpoint 'on_epoch_end'", CallbackError)
    assert type(error) is CallbackError
    restored = round_trip(error)
    assert type(restored) is CallbackError and str(restored) == str(error)
    assert str(error) == f"Error in callback Spy at breakpoint 'on_epoch_end': {original}"
    assert type(restored.__cause__) is type(original) and str(restored.__cause__) == str(original)


def test_an_unpicklable_original_type_keeps_the_luz_type_and_message() -> None:
    class LocalError(Exception):  # defined in a function: pickle cannot find the class
        pass

    error = raised(LocalError("local"), "Error in callback Spy at breakpoint 'on_fit_end'", CallbackError)
    assert isinstance(error, LocalError)
    with pytest.raises((pickle.PicklingError, AttributeError)):  # what a plain pickle of it does
        pickle.dumps(LocalError("local"))
    restored = round_trip(error)
    assert type(restored) is CallbackError and str(restored) == str(error)
    assert restored.__cause__ is None  # the cause does not pickle: dropped, not an error


def test_notes_and_attributes_survive_pickle() -> None:
    error = raised(ValueError("bad"), "Error in metric", MetricError)
    error.add_note("while fitting fold 3")
    error.fold = 3  # type: ignore[attr-defined]
    restored = round_trip(error)
    assert restored.__notes__ == ["while fitting fold 3"] and restored.fold == 3  # type: ignore[attr-defined]


def fit_with_metric(metric: luz.Metric) -> None:
    x, y = regression_data(32)
    luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD, metrics=[metric]).fit(
        (x, y), epochs=1, verbose=False
    )


class FailingMetric(luz.Metric):
    abbrev = "failing"

    def reset(self) -> None:
        pass

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        raise ValueError("shapes disagree")

    def compute(self) -> torch.Tensor:
        return torch.tensor(0.0)


def test_a_metric_error_inside_a_callback_error_survives_pickle() -> None:
    with pytest.raises(CallbackError) as info:
        fit_with_metric(FailingMetric())
    restored = round_trip(info.value)
    for kind in (CallbackError, MetricError, ValueError):
        assert isinstance(restored, kind)
    assert str(restored) == str(info.value) and "shapes disagree" in str(restored)
    cause = restored.__cause__
    assert isinstance(cause, MetricError) and isinstance(cause, ValueError)
    assert isinstance(cause.__cause__, ValueError) and str(cause.__cause__) == "shapes disagree"


class Exploding(luz.Callback):
    def on_epoch_end(self) -> None:
        raise ValueError("exploded at the epoch end")


def fit_that_explodes() -> None:
    """Runs in a worker process: a tiny fit whose callback raises."""
    torch.set_num_threads(1)
    x, y = regression_data(32)
    luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).fit(
        (x, y), epochs=1, callbacks=[Exploding()], verbose=False
    )


def test_a_fit_in_a_process_pool_reports_the_callback_error() -> None:
    context = multiprocessing.get_context("spawn")  # fork is unsafe with torch's threads
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(fit_that_explodes)
        with pytest.raises(ValueError, match="exploded at the epoch end") as info:
            future.result(timeout=120)
    error = info.value
    assert isinstance(error, CallbackError) and not isinstance(error, pickle.PicklingError)
    assert "Exploding" in str(error) and "'on_epoch_end'" in str(error)

"""`luz.Context`: fields with rules, logging, metrics access, callback dispatch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import luz
from luz.callbacks._runner import CallbackRunner
from luz.records import new_records


def make_ctx() -> luz.Context:
    return luz.Context(accelerator=luz.Accelerator(cpu=True))


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1)


def test_every_field_is_documented() -> None:
    import inspect

    source = inspect.getsource(luz.Context)
    for name, _ in luz.Context.__annotations__.items():
        assert f"    {name}:" in source
    # Properties of the context and of the field groups it inherits (records, batch, checked fields).
    props = {n: v for cls in luz.Context.__mro__ for n, v in vars(cls).items() if isinstance(v, property)}
    assert {"device", "model", "optimizers", "opt", "opt_name", "iter", "records", "input", "target"} <= set(
        props
    )
    for name, prop in props.items():
        assert prop.__doc__, name


def test_device_is_read_only() -> None:
    ctx = make_ctx()
    assert ctx.device == torch.device("cpu")
    with pytest.raises(AttributeError, match="read-only"):
        ctx.device = torch.device("cpu")


def test_device_without_accelerator() -> None:
    with pytest.raises(RuntimeError, match="no accelerator"):
        _ = luz.Context().device


def test_records_are_read_only() -> None:
    ctx = make_ctx()
    assert ctx.records == new_records()
    with pytest.raises(AttributeError, match="read-only"):
        ctx.records = {}
    ctx.unsafe_set_records({"metrics": {"train": [{"loss": 1.0}], "valid": []}})
    assert ctx.records["metrics"]["train"] == [{"loss": 1.0}]
    assert ctx.records["profile"] == new_records()["profile"]


def test_optimizers_validation_and_fallbacks() -> None:
    ctx = make_ctx()
    model = nn.Linear(2, 1)
    opt = sgd(model)
    ctx.optimizers = opt
    assert ctx.optimizers == {"opt": opt}
    assert ctx.opt is opt and ctx.opt_name == "opt"

    second = sgd(model)
    ctx.optimizers = {"a": opt, "b": second}
    with pytest.raises(RuntimeError, match="2 optimizers"):
        _ = ctx.opt
    with pytest.raises(RuntimeError, match="2 optimizers"):
        _ = ctx.opt_name
    ctx.opt, ctx.opt_name = second, "b"
    assert ctx.opt is second and ctx.opt_name == "b"

    with pytest.raises(TypeError, match="names must be non-empty strings"):
        ctx.optimizers = {1: opt}
    with pytest.raises(TypeError, match="names must be non-empty strings"):
        ctx.optimizers = {"": opt}
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        ctx.optimizers = {"a": "adam"}
    with pytest.raises(TypeError, match=r"torch\.optim\.Optimizer"):
        ctx.optimizers = [opt]
    with pytest.raises(ValueError, match="empty"):
        ctx.optimizers = {}


def test_model_binding() -> None:
    ctx = make_ctx()
    with pytest.raises(RuntimeError, match="no model"):
        _ = ctx.model
    a, b = nn.Linear(1, 1), nn.Linear(1, 1)
    ctx.model = a
    assert a.ctx is ctx
    assert "ctx" not in dict(a.named_modules()) and "ctx" not in a._modules
    ctx.model = b
    assert "ctx" not in a.__dict__ and b.ctx is ctx
    ctx.clean()
    assert "ctx" not in b.__dict__


def test_epoch_counts_validation() -> None:
    ctx = make_ctx()
    ctx.max_epochs = 5
    ctx.min_epochs = 2
    with pytest.raises(ValueError, match="larger than `max_epochs`"):
        ctx.min_epochs = 6
    with pytest.raises(ValueError, match="smaller than `min_epochs`"):
        ctx.max_epochs = 1
    with pytest.raises(ValueError, match="non-negative int"):
        ctx.max_epochs = -1
    with pytest.raises(ValueError, match="non-negative int"):
        ctx.max_epochs = True
    with pytest.raises(ValueError, match="must be an int"):
        ctx.iter = 1.5  # type: ignore[assignment]
    ctx.iter = 3
    assert ctx.iter == 3


def test_input_and_target() -> None:
    ctx = make_ctx()
    ctx.batch = (torch.ones(2), torch.zeros(2), "extra")
    assert torch.equal(ctx.input, torch.ones(2)) and torch.equal(ctx.target, torch.zeros(2))
    ctx.input = torch.full((2,), 3.0)
    ctx.target = torch.full((2,), 4.0)
    assert isinstance(ctx.batch, tuple) and ctx.batch[2] == "extra"
    assert ctx.input[0] == 3 and ctx.target[0] == 4
    ctx.batch = [torch.ones(1)]
    assert ctx.target is None
    ctx.target = torch.zeros(1)
    assert isinstance(ctx.batch, list) and len(ctx.batch) == 2


def test_log_and_get_metrics() -> None:
    ctx = make_ctx()
    ctx.epoch, ctx.training = 1, True
    ctx.log_metric("loss", 1.0)
    ctx.log_metric("acc", 0.5)
    ctx.training = False
    ctx.log_metric("loss", 2.0)
    ctx.epoch, ctx.training = 2, True
    ctx.log_metric("loss", 0.75)
    assert ctx.records["metrics"]["train"] == [{"loss": 1.0, "acc": 0.5}, {"loss": 0.75}]
    assert ctx.get_metrics("train") == {"loss": 0.75}
    assert ctx.get_metrics("train", 1) == {"loss": 1.0, "acc": 0.5}
    assert ctx.get_metric("acc", "train", 1) == 0.5
    assert ctx.get_metric("acc", "train") is None
    assert ctx.get_metrics("valid", 2) is None
    assert ctx.get_formatted_metrics("train", 1) == {"loss": "1.0000", "acc": "0.5000"}
    frame = ctx.get_metrics_df()
    assert list(frame.columns) == ["set", "metric", "epoch", "value"]
    assert len(frame) == 4
    assert luz.get_metrics(ctx).equals(frame)


def test_log_custom_entries() -> None:
    ctx = make_ctx()
    ctx.log("notes", "train", "first")
    ctx.log("notes", "train", "third", index=3)
    assert ctx.get_log("notes", "train", 1) == "first"
    assert ctx.get_log("notes", "train", 2) is None
    assert ctx.get_log("notes", "train") == "third"
    assert ctx.get_log("notes", "valid") is None
    assert ctx.get_log("notes", "train", 9) is None
    ctx.log("dicts", "x", {"a": 1}, index=1)
    ctx.log("dicts", "x", {"b": 2}, index=1)
    assert ctx.get_log("dicts", "x", 1) == {"a": 1, "b": 2}
    ctx.log("dicts", "x", {"c": 3}, index=1, append=False)
    assert ctx.get_log("dicts", "x", 1) == {"c": 3}
    with pytest.raises(ValueError, match="1-based"):
        ctx.log("dicts", "x", {}, index=0)


def test_call_callbacks_names() -> None:
    hits: list[str] = []
    cb = luz.callback(
        on_epoch_end=lambda c: hits.append("end"), on_custom_thing=lambda c: hits.append("custom")
    )
    ctx = luz.Context(accelerator=luz.Accelerator(cpu=True), runner=CallbackRunner([cb]))
    ctx.call_callbacks("on_epoch_end")
    ctx.call_callbacks("on_custom_thing")
    ctx.call_callbacks("on_nothing_listens")
    assert hits == ["end", "custom"]
    with pytest.raises(ValueError, match="not a breakpoint name"):
        ctx.call_callbacks("bad_name")
    with pytest.raises(TypeError, match="breakpoint name"):
        ctx.call_callbacks(3)  # type: ignore[arg-type]


def test_callbacks_are_sorted_and_bound() -> None:
    ctx = make_ctx()
    late, early = luz.callback(on_fit_end=print, weight=2), luz.callback(on_fit_end=print, weight=-2)
    ctx = luz.Context(runner=CallbackRunner([late, early]))
    assert ctx.callbacks == [early, late]
    assert early.ctx is ctx
    ctx.clean()
    assert ctx.callbacks == []
    with pytest.raises(RuntimeError, match="not attached"):
        _ = early.ctx
    with pytest.raises(TypeError, match=r"luz\.Callback instances"):
        CallbackRunner([object()])
    with pytest.raises(AttributeError):
        ctx.callbacks = [late]  # type: ignore[misc]  # the runner is handed in when the run starts


def test_buffers_are_free_space() -> None:
    ctx = make_ctx()
    ctx.buffers["mine"] = [1]
    assert ctx.buffers == {"mine": [1]}


def test_setting_the_input_of_a_bare_tensor_batch() -> None:
    ctx = luz.Context()
    a, b = torch.zeros(4, 3), torch.ones(4, 2)
    ctx.batch = torch.full((4, 3), 7.0)
    ctx.input = a
    assert ctx.input is a and ctx.target is None
    ctx.batch = torch.full((4, 3), 7.0)
    ctx.input = (a, b)  # a multi-input replaces the input only
    assert ctx.input == (a, b) and ctx.target is None
    ctx.batch = torch.full((4, 3), 7.0)
    ctx.target = b
    assert torch.equal(ctx.input, torch.full((4, 3), 7.0)) and ctx.target is b

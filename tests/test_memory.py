"""Memory: no autograd graph outlives its batch, records hold plain numbers, predictions carry no
graph, and a long run's memory does not grow with the number of steps (reliability §7, §8.20)."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import torch
from torch import nn

import luz
from tests.conftest import Linear, regression_data

_SKIP = (nn.Module, torch.optim.Optimizer, torch.utils.data.DataLoader, luz.Context)


def graph_tensors(obj: Any, seen: set[int] | None = None, depth: int = 0) -> list[torch.Tensor]:
    """Tensors with a ``grad_fn`` reachable from ``obj`` through containers and plain objects'
    attributes (models, optimizers, loaders and contexts are not entered)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 8:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.grad_fn is not None else []
    if isinstance(obj, (*_SKIP, str, bytes, int, float, bool, type(None))):
        return []
    if isinstance(obj, dict):
        children: list[Any] = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple | set | frozenset):
        children = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = list(vars(obj).values())
    else:
        return []
    return [t for child in children for t in graph_tensors(child, seen, depth + 1)]


def context_graph_tensors(ctx: luz.Context) -> list[torch.Tensor]:
    """Graph-holding tensors in the context's own fields and in every callback."""
    seen: set[int] = set()
    found = graph_tensors({k: v for k, v in vars(ctx).items() if not isinstance(v, _SKIP)}, seen)
    for cb in ctx.callbacks:
        found += graph_tensors(vars(cb), seen)
    return found


def live_graph_tensors() -> int:
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor) and o.grad_fn is not None)


def live_tensors() -> int:
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))


class Watch(luz.Callback):
    """Checks between batches that nothing keeps a graph, and samples memory: live tensors at
    the end of epochs 2 and 10, Python allocations (tracemalloc) over epochs 7 to 10."""

    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []
        self.leaks: list[tuple[int, int, str]] = []
        self.tensors: dict[int, int] = {}
        self.python_bytes: tuple[int, int] | None = None
        self.checked = 0

    def on_train_batch_begin(self) -> None:
        ctx = self.context
        if ctx.iter > 1 or ctx.epoch > 1:  # from the second batch on: the previous one is over
            self.checked += 1
            for tensor in context_graph_tensors(ctx):
                self.leaks.append((ctx.epoch, ctx.iter, repr(tensor.grad_fn)))
        if ctx.iter == 2 and ctx.epoch == 5:  # a full gc scan is slow: once
            self.leaks += [(ctx.epoch, ctx.iter, "gc")] * live_graph_tensors()

    def on_train_batch_end(self) -> None:
        self.losses.append(self.context.loss["opt"])  # a loss-recording callback

    def on_epoch_end(self) -> None:
        epoch = self.context.epoch
        if epoch == 6:
            tracemalloc.start()
        if epoch == 10:  # before the gc scan below, which allocates a list of every object
            self.python_bytes = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        if epoch in (2, 10):
            gc.collect()
            self.tensors[epoch] = live_tensors()


def test_300_steps_keep_no_graph_and_bounded_memory() -> None:
    x, y = regression_data(240)
    watch = Watch()
    module = luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.Adam, metrics=[luz.metrics.MAE()])
    try:
        fitted = module.set_opt_hparams(lr=0.01).fit(
            (x, y),
            epochs=10,
            valid_data=(x[:16], y[:16]),
            callbacks=[watch],
            verbose=False,
            dataloader_options={"batch_size": 8},
        )
    finally:
        tracemalloc.stop()
    assert len(watch.losses) == 300
    assert watch.checked == 299
    assert watch.leaks == []
    assert all(loss.grad_fn is None for loss in watch.losses)
    # Live tensors do not grow with the step count (the 240 recorded loss scalars aside).
    assert watch.tensors[10] - watch.tensors[2] <= 8 * 30
    # Python allocations over 120 steps: what is still held (records, the recorded losses) and
    # the peak stay within a fixed budget (a leak of 1 KiB per step would break it).
    assert watch.python_bytes is not None
    held, peak = watch.python_bytes
    assert held < 96 * 1024, held
    assert peak < 512 * 1024, peak
    assert graph_tensors(fitted.records) == []
    assert _only_plain_numbers(fitted.records)


def _only_plain_numbers(obj: Any) -> bool:
    if isinstance(obj, dict):
        return all(_only_plain_numbers(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return all(_only_plain_numbers(v) for v in obj)
    return isinstance(obj, float | int | str) or obj is None


def test_the_detector_finds_a_kept_graph() -> None:
    # A callback that keeps ctx.loss_grad (the classic leak) is caught: the checks can fail.
    class Leaky(luz.Callback):
        def on_train_batch_after_loss(self) -> None:
            self.kept = self.context.loss_grad

    watch = Watch()
    x, y = regression_data(64)
    luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD).set_opt_hparams(lr=0.1).fit(
        (x, y), epochs=1, callbacks=[Leaky(), watch], verbose=False, dataloader_options={"batch_size": 16}
    )
    assert len(watch.leaks) == 3
    assert "MseLossBackward" in watch.leaks[0][2]


def test_large_predict_keeps_no_graph() -> None:
    x, y = regression_data(64)
    fitted = (
        luz.setup(Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        .set_opt_hparams(lr=0.1)
        .fit((x, y), epochs=1, verbose=False)
    )
    big = torch.randn(20_000, 10)
    preds = fitted.predict(big, dataloader_options={"batch_size": 1000})
    assert preds.shape == (20_000, 1)
    assert preds.grad_fn is None and not preds.requires_grad
    per_batch = fitted.predict(big, stack=False, dataloader_options={"batch_size": 1000})
    assert len(per_batch) == 20 and all(p.grad_fn is None for p in per_batch)
    gc.collect()
    assert live_graph_tensors() == 0

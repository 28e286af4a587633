"""The runner that fires breakpoints on the callbacks that implement them."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch

from luz.callbacks.base import Callback, check_callbacks
from luz.errors import CallbackError, with_origin
from luz.events import BREAKPOINTS, LOOP_SIGNALS, StopTraining

_PASS_THROUGH = (*LOOP_SIGNALS, CallbackError)
_set_grad_enabled = torch._C._set_grad_enabled  # what torch.set_grad_enabled calls, without its object


class StopPolicy(Protocol):
    """Where a `StopTraining` raised by a hook goes instead of propagating (see `CallbackRunner`)."""

    def hold(self, stop: StopTraining) -> None:
        """Called with the `StopTraining`; may re-raise it or keep it for `settle`."""

    def settle(self) -> None:
        """Called at each agreement point of a fit; raises a held stop, if any."""


class CallbackRunner:
    """Fires breakpoints. The table of hooks is built once from each callback's
    `Callback.hook`, so a breakpoint that no callback implements costs one dict lookup.

    Args:
        callbacks: the run's callbacks; they are checked and sorted stably by weight.
        stop_policy: gets a `StopTraining` raised by a hook instead of letting it propagate; it
            may re-raise it or hold it (the breakpoint's later hooks do not run either way).
            ``None``: the `StopTraining` propagates.
    """

    def __init__(self, callbacks: Iterable[object], *, stop_policy: StopPolicy | None = None) -> None:
        self.callbacks: list[Callback] = check_callbacks(callbacks)
        self.stop_policy = stop_policy
        self.epoch_end_actions: list[Callable[[], None]] = []
        self.table: dict[str, list[tuple[Callback, Callable[[], Any]]]] = {}
        for name in BREAKPOINTS:
            self.table[name] = self._hooks_for(name)
        self.callers: dict[str, Callable[[], None]] = {
            name: functools.partial(self.fire, name) for name, hooks in self.table.items() if hooks
        }
        """``fire(name)`` ready to call, for each built-in breakpoint some callback implements: the
        loops look a breakpoint up once per phase and skip it when absent (see `caller`)."""

    def after_epoch_end(self, action: Callable[[], None]) -> None:
        """Run ``action()`` when each epoch commits, after every callback's ``on_epoch_end``."""
        self.epoch_end_actions.append(action)

    def commit_epoch(self) -> None:
        """The epoch commit of `luz.events.BREAKPOINT_TREE`: run the registered actions."""
        for action in self.epoch_end_actions:
            action()

    def settle_stop(self) -> None:
        """An agreement point of a fit (after ``on_fit_begin`` and after each epoch): the stop
        policy raises a `StopTraining` it holds, if any."""
        if self.stop_policy is not None:
            self.stop_policy.settle()

    def _hooks_for(self, name: str) -> list[tuple[Callback, Callable[[], Any]]]:
        found = []
        for cb in self.callbacks:
            fn = cb.hook(name)
            if fn is not None:
                found.append((cb, fn))
        return found

    def caller(self, name: str) -> Callable[[], None] | None:
        """``fire(name)`` as a function of no argument, or ``None`` when no callback implements
        ``name``: a loop asks once, before its batches, and skips the breakpoint at no cost."""
        if name in self.callers:
            return self.callers[name]
        return functools.partial(self.fire, name) if self.has(name) else None

    def has(self, name: str) -> bool:
        """Whether any callback implements ``name``."""
        hooks = self.table.get(name)
        if hooks is None:  # a custom breakpoint: look it up once and cache it
            hooks = self.table[name] = self._hooks_for(name)
        return bool(hooks)

    def fire(self, name: str) -> None:
        """Run every hook for ``name`` in order under ``torch.no_grad()``.

        Raises:
            CallbackError: a hook raised; the error names the callback class and the breakpoint
                and keeps the original type (`luz.errors.with_origin`).
        """
        hooks = self.table.get(name)
        if hooks is None:  # a custom breakpoint: look it up once and cache it
            hooks = self.table[name] = self._hooks_for(name)
        if not hooks:
            return
        try:
            # No grad without the torch.no_grad() object: this runs every batch, and no_grad's
            # __enter__/__exit__ cost about 1.3 µs a fire against about 0.1 µs of typical hooks.
            # The C switch costs about 0.1 µs; each fire restores the mode it found, so nested
            # fires (a hook firing a custom breakpoint) restore correctly.
            grad_was_on = torch.is_grad_enabled()
            if grad_was_on:
                _set_grad_enabled(False)
            try:
                for cb, fn in hooks:
                    try:
                        fn()
                    except Exception as error:
                        if not isinstance(error, _PASS_THROUGH):
                            message = f"Error in callback {type(cb).__name__} at breakpoint '{name}'"
                            raise with_origin(error, message, CallbackError) from error
                        if isinstance(error, StopTraining) and error.raised_by is None:
                            error.raised_by = _display_name(cb)  # Fitted.stop_reason names it
                        raise
            finally:
                if grad_was_on:
                    _set_grad_enabled(True)
                elif torch.is_grad_enabled():  # a hook switched grad on and left it on
                    _set_grad_enabled(False)
        except StopTraining as stop:
            if self.stop_policy is None:
                raise
            self.stop_policy.hold(stop)


def _display_name(cb: Callback) -> str:
    # A luz.callback(...) instance has a private class: its repr names its hooks instead.
    name = type(cb).__name__
    return repr(cb) if name.startswith("_") else name

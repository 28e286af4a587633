"""The callback base class with its declared hooks, the `callback()` shortcut and list checks."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, overload

from luz._validate import check_real
from luz.events import BREAKPOINTS, check_breakpoint_name

if TYPE_CHECKING:
    from luz.context import Context


class _RunningContext:
    """The descriptor behind `Callback.ctx`: reads give a `Context` (so ``self.ctx.epoch``
    type-checks in users' code without a ``None`` check), or raise a clear error outside a run;
    a run assigns the context when it starts and ``None`` when it ends.

    The value lives in the instance's ``__dict__`` under ``"ctx"``, where a plain attribute
    would be, so copies and ``vars(callback)`` look as before. A read costs one dict lookup.
    """

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> _RunningContext: ...

    @overload
    def __get__(self, obj: object, owner: type[Any] | None = None) -> Context: ...

    def __get__(self, obj: object | None, owner: type[Any] | None = None) -> Context | _RunningContext:
        if obj is None:
            return self
        ctx: Context | None = obj.__dict__.get("ctx")
        if ctx is None:
            raise RuntimeError(
                f"{type(obj).__name__} is not attached to a running context: `self.ctx` exists only "
                "while fit(), evaluate() or predict() runs its hooks."
            )
        return ctx

    def __set__(self, obj: object, value: Context | None) -> None:
        obj.__dict__["ctx"] = value


class Callback:
    """Base class for callbacks: override methods named after breakpoints (no arguments).

    Every built-in breakpoint (`luz.events.BREAKPOINTS`) is declared here as a no-op; a run
    calls only the hooks a callback overrides (see `hook`), and any custom ``on_*`` method it
    defines for a breakpoint a custom step fires. The running context is ``self.ctx``. Hooks
    run under ``torch.no_grad()``. Lower ``weight`` runs first (stable: defaults, then user
    callbacks, in list order). Implement ``state_dict()`` / ``load_state_dict(state)`` to make
    a callback resumable.

    Example:
        >>> import luz
        >>> class PrintEpoch(luz.Callback):
        ...     def on_epoch_end(self) -> None:
        ...         print("finished epoch", self.ctx.epoch)
    """

    weight: ClassVar[float] = 0.0
    ctx = _RunningContext()
    """The running `Context` (typed `Context`); outside a run, reading it raises ``RuntimeError``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Warn about a hook whose name is a near miss of a built-in breakpoint (SPEC §3)."""
        super().__init_subclass__(**kwargs)
        for name, value in vars(cls).items():
            if callable(value):
                _warn_near_miss(name, f"{cls.__qualname__}.{name}", stacklevel=3)

    def teardown(self) -> None:
        """Called once when a run ends, whether it returned or raised (not a breakpoint: no
        context, no ``no_grad``). Override it to release what the callback holds for the run,
        such as a signal handler or an autocast window."""

    @property
    def context(self) -> Context:
        """``self.ctx`` (kept from when ``ctx`` was typed ``Context | None``)."""
        return self.ctx

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def hook(self, name: str) -> Callable[[], Any] | None:
        """The function a run calls at breakpoint ``name``, or ``None`` to skip this callback there.

        By default: the method ``name`` when it overrides `Callback`'s no-op (or a custom
        ``on_*`` method the class defines). Override it to choose hooks when the callback is
        built, as `LRScheduler` does for ``call_on``. A run asks once per breakpoint, when it
        starts, so a hook that returns ``None`` costs nothing per batch.

        Example:
            >>> import luz
            >>> class PrintEpoch(luz.Callback):
            ...     def on_epoch_end(self) -> None:
            ...         print("finished epoch", self.ctx.epoch)
            >>> PrintEpoch().hook("on_epoch_end") is not None, PrintEpoch().hook("on_fit_end")
            (True, None)
        """
        fn = getattr(self, name, None)
        if not callable(fn):
            return None
        if name in _NO_OPS and getattr(fn, "__func__", None) is _NO_OPS[name]:
            return None  # the base class's no-op: not overridden
        hook: Callable[[], Any] = fn
        return hook

    # -- hooks: a no-op per built-in breakpoint, in the order of luz.events.BREAKPOINTS ---------

    def on_fit_begin(self) -> None:
        """Fires once when `fit` starts, before the first epoch."""

    def on_epoch_begin(self) -> None:
        """Fires at the start of each epoch."""

    def on_train_begin(self) -> None:
        """Fires at the start of each epoch's training pass."""

    def on_train_batch_begin(self) -> None:
        """Fires before each training batch."""

    def on_train_batch_after_pred(self) -> None:
        """Fires after a training batch's forward pass (once per optimizer)."""

    def on_train_batch_after_loss(self) -> None:
        """Fires after a training batch's loss is computed (once per optimizer)."""

    def on_train_batch_before_backward(self) -> None:
        """Fires just before a training batch's ``backward()`` (once per optimizer)."""

    def on_train_batch_before_step(self) -> None:
        """Fires after the backward pass, before the optimizer step (once per optimizer)."""

    def on_train_batch_after_step(self) -> None:
        """Fires after the optimizer step (once per optimizer)."""

    def on_train_batch_end(self) -> None:
        """Fires after each training batch."""

    def on_train_end(self) -> None:
        """Fires at the end of each epoch's training pass."""

    def on_valid_begin(self) -> None:
        """Fires at the start of each validation pass (`fit` with validation data, `evaluate`)."""

    def on_valid_batch_begin(self) -> None:
        """Fires before each validation batch."""

    def on_valid_batch_after_pred(self) -> None:
        """Fires after a validation batch's forward pass (once per optimizer)."""

    def on_valid_batch_after_loss(self) -> None:
        """Fires after a validation batch's loss is computed (once per optimizer)."""

    def on_valid_batch_end(self) -> None:
        """Fires after each validation batch."""

    def on_valid_end(self) -> None:
        """Fires at the end of each validation pass."""

    def on_epoch_end(self) -> None:
        """Fires at the end of each epoch, after training and validation."""

    def on_early_stopping(self) -> None:
        """Fires once when a `StopTraining` ended the fit, before ``on_fit_end``."""

    def on_interrupt(self) -> None:
        """Fires once when a ``KeyboardInterrupt`` ended the fit, before ``on_fit_end``."""

    def on_fit_end(self) -> None:
        """Fires once when `fit` finishes, also after early stopping or an interrupt."""

    def on_predict_begin(self) -> None:
        """Fires once when `predict` starts."""

    def on_predict_batch_begin(self) -> None:
        """Fires before each prediction batch."""

    def on_predict_batch_end(self) -> None:
        """Fires after each prediction batch."""

    def on_predict_end(self) -> None:
        """Fires once when `predict` finishes."""


_NO_OPS: dict[str, object] = {name: vars(Callback)[name] for name in BREAKPOINTS}
"""The declared no-op of each built-in hook: `Callback.hook` skips a method that is still one."""


def _warn_near_miss(name: str, where: str, *, stacklevel: int) -> None:
    """Warn when ``name`` is a custom ``on_*`` name within two edits of a built-in breakpoint:
    most likely a typo, whose hook would never run. Runs when a class or callback is made."""
    if not name.startswith("on_") or name in _NO_OPS:
        return
    close = [b for b in BREAKPOINTS if _within_two_edits(name, b)]
    if close:
        warnings.warn(
            f"{where}: {name!r} is not a built-in breakpoint but resembles {close[0]!r}, so it "
            f"only runs if a custom step fires {name!r}. Rename it to {close[0]!r} if that was "
            "meant (a custom breakpoint name should not be a near miss of a built-in).",
            UserWarning,
            stacklevel=stacklevel,
        )


def _within_two_edits(a: str, b: str) -> bool:
    """Whether the Levenshtein distance of ``a`` and ``b`` is at most 2 (insert, delete, replace)."""
    if abs(len(a) - len(b)) > 2:
        return False
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        if min(current) > 2:  # the distance only grows from here
            return False
        previous = current
    return previous[-1] <= 2


class _LambdaCallback(Callback):
    """A callback made by `callback()`: each hook calls a function with the context."""

    def __init__(self, hooks: dict[str, Callable[[Context], Any]], weight: float) -> None:
        self._hooks = hooks
        self.weight = weight  # type: ignore[misc]  # per-instance weight overrides the class one

    def hook(self, name: str) -> Callable[[], Any] | None:
        """The function given for ``name``, called with the context; ``None`` if none was."""
        fn = self._hooks.get(name)
        if fn is None:
            return None
        return lambda: fn(self.context)

    def __repr__(self) -> str:
        return f"callback({', '.join(self._hooks)})"


def callback(*, weight: float = 0.0, **hooks: Callable[[Context], Any]) -> Callback:
    """Make a callback from functions that take the context.

    Args:
        weight: ordering weight (lower runs first).
        **hooks: breakpoint name -> function ``(ctx) -> None``.

    Example:
        >>> import luz
        >>> cb = luz.callback(on_epoch_end=lambda ctx: print(ctx.epoch))
    """
    if not hooks:
        raise ValueError("`callback()` needs at least one hook, e.g. on_epoch_end=lambda ctx: ...")
    for name, fn in hooks.items():
        check_breakpoint_name(name, argument=name)
        _warn_near_miss(name, f"callback({name}=...)", stacklevel=3)
        if not callable(fn):
            raise TypeError(f"`{name}` must be a function taking the context, got {type(fn).__name__}.")
    return _LambdaCallback(dict(hooks), check_real(weight, "weight", finite=False))


def check_callbacks(callbacks: Iterable[object]) -> list[Callback]:
    """Validate a list of callback instances and sort it stably by weight."""
    checked: list[Callback] = []
    for i, cb in enumerate(callbacks):
        if isinstance(cb, Callback):
            checked.append(cb)
            continue
        hint = ""
        if isinstance(cb, type) and issubclass(cb, Callback):
            hint = f"; did you forget to instantiate it? Pass {cb.__name__}() instead of {cb.__name__}."
        elif callable(cb):
            hint = "; did you forget to instantiate it (call it)?"
        raise TypeError(
            f"`callbacks` must hold luz.Callback instances, but the one at index {i} is "
            f"{cb!r} ({type(cb).__name__}){hint or '.'}"
        )
    return sorted(checked, key=lambda cb: cb.weight)


def as_callback_list(callbacks: Any) -> list[Callback]:
    """``None`` -> ``[]``; a single callback -> ``[it]``; lists as lists (in the given order).

    Raises:
        TypeError: an element is not a callback instance; the index is the user's.
    """
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback | type) or not isinstance(callbacks, list | tuple):
        callbacks = [callbacks]
    check_callbacks(callbacks)  # before the defaults are added, so error indices are the user's
    return list(callbacks)

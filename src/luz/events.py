"""Breakpoints (the closed vocabulary of callback hooks) and the exceptions that steer the loop.

The tree below is the contract: it is what `fit`, `evaluate` and `predict` fire, in order.
The documentation shows this very text and a test replays a real fit against it.
"""

from __future__ import annotations

from typing import Any

BREAKPOINT_TREE = """\
fit:
  on_fit_begin
  for each epoch:
    on_epoch_begin
    on_train_begin
    for each training batch:
      on_train_batch_begin
      for each optimizer:
        on_train_batch_after_pred
        on_train_batch_after_loss
        on_train_batch_before_backward
        on_train_batch_before_step
        on_train_batch_after_step
      on_train_batch_end
    on_train_end
    if validation data:
      on_valid_begin
      for each validation batch:
        on_valid_batch_begin
        for each optimizer:
          on_valid_batch_after_pred
          on_valid_batch_after_loss
        on_valid_batch_end
      on_valid_end
    on_epoch_end
    (the epoch commits, even if on_epoch_end stopped training: ctx.after_epoch_end actions run)
  if StopTraining was raised:
    on_early_stopping
  if KeyboardInterrupt was raised:
    on_interrupt
  on_fit_end
evaluate:
  on_valid_begin
  for each batch:
    on_valid_batch_begin
    for each optimizer:
      on_valid_batch_after_pred
      on_valid_batch_after_loss
    on_valid_batch_end
  on_valid_end
predict:
  on_predict_begin
  for each batch:
    on_predict_batch_begin
    on_predict_batch_end
  on_predict_end
"""
"""The order in which breakpoints fire. A custom ``step`` replaces the per-optimizer parts.
A line in parentheses is a control point of the loop that is not a breakpoint."""


def _names_in_tree(tree: str) -> tuple[str, ...]:
    names: list[str] = []
    for line in tree.splitlines():
        word = line.strip()
        if word.startswith("on_") and word not in names:
            names.append(word)
    return tuple(names)


BREAKPOINTS: tuple[str, ...] = _names_in_tree(BREAKPOINT_TREE)
"""Every built-in breakpoint name (25), in the order they first appear in the tree."""

_BREAKPOINT_SET = frozenset(BREAKPOINTS)


def check_breakpoint_name(name: str, *, argument: str = "name", custom: bool = True) -> str:
    """Validate a breakpoint name and return it.

    Args:
        name: the name to check.
        argument: the argument name used in the error message.
        custom: accept names that are not built in but start with ``on_``.

    Raises:
        ValueError: the name is not a breakpoint.
    """
    if not isinstance(name, str):
        raise TypeError(f"`{argument}` must be a breakpoint name (a str), got {type(name).__name__}.")
    if name in _BREAKPOINT_SET or (custom and name.startswith("on_")):
        return name
    if custom:
        raise ValueError(
            f"`{argument}`={name!r} is not a breakpoint name: custom breakpoints must start "
            f"with 'on_'. Built-in names: {', '.join(BREAKPOINTS)}."
        )
    raise ValueError(
        f"`{argument}`={name!r} is not a built-in breakpoint. Use one of: {', '.join(BREAKPOINTS)}."
    )


EPOCH_END_STOP = "luz.epoch_end_stop"
"""The ``ctx.buffers`` key holding the `StopTraining` an ``on_epoch_end`` hook raised, set
before that epoch commits (so a commit action such as `AutoResume` can save that the fit
stopped there)."""


class StopTraining(Exception):  # noqa: N818 - a signal, not an error
    """Raise anywhere during `fit` to end training gracefully.

    The loop stops where it is, fires ``on_early_stopping`` and then ``on_fit_end``, and `fit`
    returns the model trained so far. An epoch it interrupts leaves no records. The message,
    if any, goes into ``Fitted.stop_reason`` with the name of the callback that raised it.
    """

    raised_by: str | None = None
    """The name of the callback whose hook raised it (set when it leaves the hook), or ``None``."""


class SkipEpoch(Exception):  # noqa: N818 - a signal, not an error
    """Raise during an epoch to abandon the rest of it and continue with the next one.

    The remaining breakpoints of the epoch do not fire and it leaves no records.
    """


LOOP_SIGNALS: tuple[type[Exception], ...] = (StopTraining, SkipEpoch)
"""The loop-control signals: code that wraps a user error (a forward pass, a loss, a hook)
lets them through unchanged, for the loop level that handles them (see `luz.loop`)."""


TERMINATED_STATUS = 143
"""The exit status of a process ended by SIGTERM (128 + 15), which `Terminated` carries."""


class Terminated(SystemExit):
    """Raised by `fit` after a SIGTERM stopped training: ends the process with status 143.

    The stop itself is the graceful one of Ctrl-C (``on_interrupt``, then ``on_fit_end``, with
    the checkpoints those write); then, instead of returning, `fit` raises this `SystemExit`,
    so a script that does not catch it exits with status 143 as if SIGTERM had killed it,
    and a job scheduler sees a preempted job, not a finished one.

    Attributes:
        code: ``143``.
        fitted: the `luz.Fitted` trained so far (``None`` after unpickling).
        reason: what ended training, as in ``Fitted.stop_reason``.

    Example:
        >>> import luz
        >>> try:
        ...     raise luz.Terminated("interrupted (SIGTERM) during epoch 3")
        ... except SystemExit as stop:
        ...     print(stop.code, stop)
        143 interrupted (SIGTERM) during epoch 3
    """

    def __init__(self, reason: str = "interrupted (SIGTERM)", fitted: Any = None) -> None:
        super().__init__(TERMINATED_STATUS)
        self.reason = reason
        self.fitted = fitted

    def __str__(self) -> str:
        return self.reason

    def __reduce__(self) -> tuple[Any, ...]:
        # SystemExit pickles its args (143): keep the reason instead; the model stays behind.
        return (type(self), (self.reason,))

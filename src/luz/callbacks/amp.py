"""Mixed precision: autocast the forward pass and the loss, scale the loss on CUDA."""

from __future__ import annotations

import difflib
import inspect
from typing import Any

import torch

from luz._validate import check_count, check_flag, check_real
from luz.callbacks.base import Callback


def _check_scaler_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Check the ``GradScaler`` keywords when the callback is made: the scaler is built only on
    CUDA, so a typo would otherwise pass on CPU and fail on the first GPU run."""
    valid = [p for p in inspect.signature(torch.amp.GradScaler).parameters if p != "device"]
    for name in kwargs:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(
                f"MixedPrecision got the keyword {name!r}, which torch.amp.GradScaler does not take."
                f"{hint} Its keywords are: {', '.join(valid)}."
            )
    if "init_scale" in kwargs:
        check_real(kwargs["init_scale"], "init_scale", above=0.0)
    if "growth_factor" in kwargs:
        check_real(kwargs["growth_factor"], "growth_factor", above=1.0)
    if "backoff_factor" in kwargs:
        check_real(kwargs["backoff_factor"], "backoff_factor", above=0.0, below=1.0)
    if "growth_interval" in kwargs:
        check_count(kwargs["growth_interval"], "growth_interval", minimum=1)
    if "enabled" in kwargs:
        check_flag(kwargs["enabled"], "enabled")
    return dict(kwargs)


class MixedPrecision(Callback):
    """Runs the forward pass and the loss under ``torch.autocast``, in training and validation.

    On CUDA: float16 autocast and a ``torch.amp.GradScaler`` (the loss is scaled, the gradients
    are unscaled before the step, ``ctx.step_opt`` steps through the scaler); list a
    `GradientClip` *after* this callback so it clips true gradients. Elsewhere: bfloat16
    autocast (CPU) or the device's default autocast type, no scaler. Backward, the optimizer
    step and other callbacks run in float32. The scaler's state is in ``state_dict()``.

    How it works (the autocast window, breakpoint by breakpoint): docs/performance.md.

    Args:
        **grad_scaler_kwargs: passed to ``torch.amp.GradScaler`` (CUDA only), e.g.
            ``init_scale=1024``.

    Example:
        >>> import luz
        >>> cb = luz.callbacks.MixedPrecision()
    """

    def __init__(self, **grad_scaler_kwargs: Any) -> None:
        self.grad_scaler_kwargs = _check_scaler_kwargs(grad_scaler_kwargs)
        self.scaler: torch.amp.GradScaler | None = None
        self._autocast: torch.autocast | None = None
        self._pending_state: dict[str, Any] | None = None

    def teardown(self) -> None:
        """Close an autocast window that an error left open."""
        self._close()

    def on_fit_begin(self) -> None:
        ctx = self.context
        self.scaler = None
        if ctx.device.type == "cuda":
            self.scaler = torch.amp.GradScaler("cuda", **self.grad_scaler_kwargs)
            if self._pending_state is not None:
                self.scaler.load_state_dict(self._pending_state)
                self._pending_state = None
            scaler = self.scaler

            def step_opt(opt: torch.optim.Optimizer) -> None:
                scaler.step(opt)
                scaler.update()

            ctx.step_opt = step_opt

    def _open(self) -> None:
        if self._autocast is not None:
            return
        device_type = self.context.device.type
        if device_type == "cuda":
            window = torch.autocast("cuda", dtype=torch.float16)
        elif device_type == "cpu":
            window = torch.autocast("cpu", dtype=torch.bfloat16)
        else:
            window = torch.autocast(device_type)
        window.__enter__()  # type: ignore[no-untyped-call]
        self._autocast = window

    def _close(self) -> None:
        window, self._autocast = self._autocast, None
        if window is not None:
            window.__exit__(None, None, None)

    def _more_optimizers(self) -> bool:
        ctx = self.context
        names = list(ctx.optimizers)
        return bool(names) and ctx.opt_name != names[-1]

    def on_train_batch_begin(self) -> None:
        self._open()

    def on_train_batch_after_loss(self) -> None:
        self._close()

    def on_train_batch_before_backward(self) -> None:
        ctx = self.context
        if self.scaler is not None and ctx.loss_grad is not None:
            with torch.enable_grad():  # hooks run under no_grad; the scaled loss needs a graph
                ctx.loss_grad = self.scaler.scale(ctx.loss_grad)

    def on_train_batch_before_step(self) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.context.opt)

    def on_train_batch_after_step(self) -> None:
        if self._more_optimizers():
            self._open()

    def on_train_batch_end(self) -> None:
        self._close()

    def on_valid_batch_begin(self) -> None:
        self._open()

    def on_valid_batch_after_loss(self) -> None:
        self._close()
        if self._more_optimizers():
            self._open()

    def on_valid_batch_end(self) -> None:
        self._close()

    def on_early_stopping(self) -> None:
        self._close()

    def on_interrupt(self) -> None:
        self._close()

    def on_fit_end(self) -> None:
        self._close()

    def state_dict(self) -> dict[str, Any]:
        """The grad scaler's state (``{}`` without a scaler)."""
        if self.scaler is not None:
            return {"scaler": self.scaler.state_dict()}
        return {"scaler": self._pending_state} if self._pending_state else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the grad scaler's state (applied when the scaler exists)."""
        scaler_state = state.get("scaler")
        if not scaler_state:
            return
        if self.scaler is not None:
            self.scaler.load_state_dict(scaler_state)
        else:
            self._pending_state = dict(scaler_state)

    def __repr__(self) -> str:
        return f"MixedPrecision({', '.join(f'{k}={v!r}' for k, v in self.grad_scaler_kwargs.items())})"

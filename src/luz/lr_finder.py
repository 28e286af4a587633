"""The learning-rate finder: train briefly while raising the learning rate, record the loss."""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Any

import torch

from luz._console import in_notebook, is_terminal, note, widgets_available
from luz._validate import check_count, check_flag, check_optional_flag, check_real, describe
from luz.accelerator import Accelerator
from luz.callbacks.base import Callback, as_callback_list
from luz.callbacks.progress import default_verbose
from luz.callbacks.terminate_on_nan import NaNGuard
from luz.events import StopTraining
from luz.module import LuzModule
from luz.reporting import new_figure
from luz.run import fit

if TYPE_CHECKING:
    import pandas as pd


def lr_schedule(steps: int, start_lr: float, end_lr: float, log_spaced_intervals: bool = True) -> list[float]:
    """The learning rates of batches ``1..steps``; the last one is ``end_lr``.

    Log-spaced: ``start_lr * (end_lr / start_lr) ** (k / steps)``. Otherwise luz's recurrence
    ``lr_k = lr_{k-1} * (end_lr / lr_{k-1}) ** (k / steps)`` (a pull toward ``end_lr`` that
    grows with ``k``), starting from ``lr_0 = start_lr``.
    """
    rates = []
    lr = start_lr
    for k in range(1, steps + 1):
        if log_spaced_intervals:
            lr = start_lr * (end_lr / start_lr) ** (k / steps)
        else:
            lr = lr * (end_lr / lr) ** (k / steps)
        rates.append(lr)
    return rates


class _LRFinderCallback(Callback):
    """Sets each batch's learning rate, records (lr, loss) and stops after ``steps`` batches."""

    def __init__(self, rates: list[float], bar: Any) -> None:
        self.rates = rates
        self.bar = bar
        self.lrs: list[float] = []
        self.losses: list[torch.Tensor] = []  # kept on device; read back once at the end

    def on_fit_begin(self) -> None:
        ctx = self.context
        if len(ctx.optimizers) != 1:
            raise ValueError(
                f"lr_finder() needs a module with exactly one optimizer; this one has "
                f"{len(ctx.optimizers)} ({', '.join(ctx.optimizers)})."
            )

    def on_train_batch_begin(self) -> None:
        if len(self.lrs) >= len(self.rates):
            # Stop here rather than at the last batch end, so later callbacks see that batch.
            raise StopTraining
        lr = self.rates[len(self.lrs)]
        for group in self.context.opt.param_groups:
            group["lr"] = lr
        self.lrs.append(lr)

    def on_train_batch_end(self) -> None:
        ctx = self.context
        self.losses.append(ctx.loss[ctx.opt_name].detach())
        if self.bar is not None:
            self.bar.update(1)


def lr_finder(
    module: LuzModule,
    data: Any,
    *,
    steps: int = 100,
    start_lr: float = 1e-7,
    end_lr: float = 0.1,
    log_spaced_intervals: bool = True,
    verbose: bool | None = None,
    **fit_kwargs: Any,
) -> LRFinderResult:
    """Train a fresh model for ``steps`` batches with a rising learning rate.

    The learning rate goes from ``start_lr`` to ``end_lr`` (see `lr_schedule`); the module's
    other optimizer hyper-parameters are kept. Data is looped over as many epochs as needed.

    Args:
        module: a `LuzModule` with a single optimizer.
        data: training data, as for ``fit``.
        steps: number of batches (one record each).
        start_lr: the first (lowest) learning rate.
        end_lr: the last (highest) learning rate.
        log_spaced_intervals: log-spaced rates, or luz's recurrence (see `lr_schedule`).
        verbose: show progress (a bar on a terminal or in a notebook, one line at the end in a
            log); ``None``: when attached to a terminal or notebook.
        **fit_kwargs: passed to ``fit`` (e.g. ``dataloader_options``; ``callbacks`` run after
            the finder's own). An ``accelerator`` must not be distributed: the finder always
            runs in one process (under ``torchrun``, each process runs it on its own).

    Returns:
        An `LRFinderResult` with ``.lr``, ``.loss``, ``.to_frame()``, ``.plot()``,
        ``.suggest()``.

    Example:
        >>> import torch, luz
        >>> from torch import nn
        >>> x, y = torch.randn(256, 4), torch.randn(256, 1)
        >>> m = luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        >>> m = m.set_hparams(in_features=4, out_features=1)
        >>> result = luz.lr_finder(m, (x, y), steps=20, verbose=False)
        >>> len(result.lr)
        20
    """
    if not isinstance(module, LuzModule):
        what = f"the class {module.__name__}" if isinstance(module, type) else describe(module)
        raise TypeError(
            f"`module` must be a LuzModule, got {what}. Pass luz.setup(...) of your module, e.g. "
            "lr_finder(luz.setup(Net, loss=..., optimizer=...).set_hparams(...), data)."
        )
    steps = check_count(steps, "steps", minimum=1)
    start_lr = check_real(start_lr, "start_lr", above=0)
    end_lr = check_real(end_lr, "end_lr", above=start_lr, hint="The rates rise from `start_lr` to `end_lr`.")
    log_spaced_intervals = check_flag(log_spaced_intervals, "log_spaced_intervals")
    verbose = check_optional_flag(verbose, "verbose")
    for key in ("epochs", "verbose"):
        if key in fit_kwargs:
            raise TypeError(f"lr_finder() sets `{key}` itself; do not pass it in fit_kwargs.")
    fit_kwargs["accelerator"] = _single_process(fit_kwargs.get("accelerator"))
    show = default_verbose() if verbose is None else bool(verbose)
    bar = _finder_bar(steps) if show else None
    finder = _LRFinderCallback(lr_schedule(steps, start_lr, end_lr, log_spaced_intervals), bar)
    # The sweep is meant to reach the rates where the loss blows up: fit's default NaN guard
    # would stop it there with a warning, so it is off (a NaN-guard callback of yours still runs).
    callbacks = [finder, NaNGuard(enabled=False), *as_callback_list(fit_kwargs.pop("callbacks", None))]
    module = module.set_opt_hparams(**{**module.opt_hparams, "lr": start_lr})
    try:
        fit(module, data, epochs=10**9, verbose=False, callbacks=callbacks, **fit_kwargs)
    finally:
        if bar is not None:
            bar.close()
    losses = torch.stack(finder.losses).double().cpu().tolist() if finder.losses else []
    if show and bar is None:  # a log: one line, no redraws
        note(f"Finding the learning rate: {len(losses)}/{steps} steps from {start_lr:g} to {end_lr:g}.")
    return LRFinderResult(finder.lrs[: len(losses)], losses)


def _finder_bar(steps: int) -> Any:
    """A tqdm bar for the sweep: a widget in a notebook with ipywidgets, text on a terminal;
    ``None`` elsewhere (a log gets one line at the end instead of redraws)."""
    if in_notebook():
        if not widgets_available():
            return None
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm(total=steps, desc="Finding the learning rate")
    if not is_terminal(sys.stderr):
        return None
    from tqdm import tqdm

    return tqdm(total=steps, desc="Finding the learning rate")


def _single_process(accelerator: Any) -> Any:
    # The finder stops at an exact batch, which a distributed fit would defer to the end of
    # the epoch (see docs/distributed.md): under torchrun each process runs it on its own.
    if accelerator is None:
        return Accelerator(distributed=False)
    if isinstance(accelerator, Accelerator) and accelerator.distributed:
        raise ValueError(
            "lr_finder() runs in one process: pass accelerator=luz.Accelerator(distributed=False) "
            "or no accelerator (under torchrun each process then runs the finder on its own data)."
        )
    return accelerator


class LRFinderResult:
    """Learning rates and the training loss at each, from `lr_finder`.

    Attributes:
        lr: the learning rate of each batch.
        loss: the training loss of each batch.
    """

    def __init__(self, lr: list[float], loss: list[float]) -> None:
        self.lr = lr
        self.loss = loss

    def smoothed_loss(self, beta: float = 0.9) -> list[float]:
        """Bias-corrected exponential moving average of the loss:
        ``avg_i = beta * avg_{i-1} + (1 - beta) * loss_i``, ``smoothed_i = avg_i / (1 - beta**i)``."""
        avg, out = 0.0, []
        for i, value in enumerate(self.loss, start=1):
            avg = beta * avg + (1 - beta) * value
            out.append(avg / (1 - beta**i))
        return out

    def suggest(self) -> float:
        """The learning rate where the smoothed loss falls fastest per unit of ``log10(lr)``.

        The slope is taken with central differences over ``log10(lr)``, only up to the
        minimum of the smoothed loss (past it the loss is diverging), and the steepest
        negative slope wins.
        """
        import numpy as np

        smooth = np.asarray(self.smoothed_loss())
        if len(smooth) < 3:
            raise ValueError("suggest() needs at least 3 recorded steps.")
        stop = max(int(np.nanargmin(smooth)), 2) + 1
        slopes = np.gradient(smooth[:stop], np.log10(np.asarray(self.lr[:stop])))
        return float(self.lr[int(np.nanargmin(slopes))])

    def to_frame(self) -> pd.DataFrame:
        """A DataFrame with columns ``lr, loss``."""
        import pandas as pd

        frame: pd.DataFrame = pd.DataFrame({"lr": self.lr, "loss": self.loss})
        return frame

    def plot(self) -> Any:
        """A matplotlib Figure: raw loss dotted, smoothed loss solid, log-10 learning rate axis."""
        fig = new_figure(figsize=(6, 4))
        ax = fig.subplots()
        ax.plot(self.lr, self.loss, linestyle=":", label="loss")
        ax.plot(self.lr, self.smoothed_loss(), linestyle="-", label="smoothed loss")
        ax.set_xscale("log", base=10)
        ax.set_xlabel("Learning Rate")
        ax.set_ylabel("Loss")
        ax.legend()
        fig.tight_layout()
        return fig

    def __len__(self) -> int:
        return len(self.lr)

    def __repr__(self) -> str:
        head = [f"LRFinderResult: {len(self.lr)} steps", f"{'lr':>12}  {'loss':>10}"]
        rows = list(zip(self.lr, self.loss, strict=True))
        shown = rows if len(rows) <= 10 else [*rows[:5], (math.nan, math.nan), *rows[-5:]]
        for lr, loss in shown:
            head.append("         ...         ..." if math.isnan(lr) else f"{lr:>12.4g}  {loss:>10.4f}")
        return "\n".join(head)

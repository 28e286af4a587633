"""`WandbLogger`: a fit's parameters and per-epoch metrics in a Weights & Biases run."""

from __future__ import annotations

from typing import Any

from luz._validate import invalid
from luz.callbacks._tracking import Status, TrackingLogger, import_backend, warn_joined_run

# W&B marks a run "failed" for any non-zero exit code; 255 is what it uses for an interrupt.
_EXIT_CODES: dict[Status, int] = {"FINISHED": 0, "FAILED": 1, "KILLED": 255}


class WandbLogger(TrackingLogger):
    """Logs a fit to Weights & Biases: its hparams and opt_hparams in the run's config, and
    every metric of every epoch (``train_loss``, ``valid_acc``, `LRMonitor`'s ``train_lr``…,
    named like monitor names, plus ``epoch``) with ``step = epoch``.

    When a W&B run is active (``wandb.init()`` before the fit) the fit is logged into it, and
    it is left open; if that run already holds steps (an earlier fit, your own
    ``wandb.log``), the epochs are logged after its current step (W&B drops steps that go
    back), still with their ``epoch``. Otherwise the callback calls ``wandb.init(project=project,
    **init_kwargs)`` at ``on_fit_begin`` and finishes the run at the fit's end, with exit
    code 0 (every epoch, or an early stop), 255 (Ctrl-C, SIGTERM) or 1 (an error), which W&B
    shows as finished or failed. Nested hparams are flattened to dotted keys. In a
    distributed fit rank 0 logs. ``run`` is the W&B run once the fit began.

    Set ``WANDB_MODE=offline`` (or ``mode="offline"``) to log without an account or network;
    ``wandb sync`` uploads such a run later. Needs ``wandb`` (``pip install 'pyluz[wandb]'``).

    Args:
        project: the W&B project of a run this callback starts (``None``: W&B's default,
            ``WANDB_PROJECT``).
        **init_kwargs: more arguments for ``wandb.init`` (``name``, ``entity``, ``tags``,
            ``mode``, ``dir``, ``config``…); the fit's parameters are added to ``config``.

    Example:
        >>> import luz
        >>> cb = luz.callbacks.WandbLogger(project="demo", mode="offline")  # doctest: +SKIP
    """

    def __init__(self, project: str | None = None, **init_kwargs: Any) -> None:
        super().__init__()
        if project is not None and not (isinstance(project, str) and project):
            error = ValueError if isinstance(project, str) else TypeError
            raise invalid(
                "project", "a non-empty str or None", project, "Pass e.g. 'my-project'.", error=error
            )
        self.project = project
        self.init_kwargs = init_kwargs
        self._wandb = import_backend("wandb", "wandb", "WandbLogger")
        self.run: Any = None
        """The W&B run being (or last) logged to."""
        self._step_offset = 0

    def open_run(self) -> bool:
        wandb = self._wandb
        active = wandb.run
        if active is not None:
            if self.project is not None or self.init_kwargs:
                warn_joined_run(
                    "WandbLogger",
                    f"W&B run {active.id}",
                    "`project` and the wandb.init arguments are",
                    "Call wandb.finish() first to log the fit to a run of its own.",
                )
            self.run = active
            # W&B drops (or merges into the open row) steps that are not past the run's
            # current one: a run that already holds steps gets the epochs after them.
            self._step_offset = max(int(active.step), 0)
            return False
        self.run = wandb.init(project=self.project, **self.init_kwargs)
        self._step_offset = 0
        return True

    def log_params(self, params: dict[str, Any]) -> None:
        # allow_val_change: a run reused by another fit may hold other values.
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        self.run.log({**metrics, "epoch": epoch}, step=self._step_offset + epoch)

    def close_run(self, status: Status) -> None:
        self.run.finish(exit_code=_EXIT_CODES[status])

    def __repr__(self) -> str:
        extra = "".join(f", {key}={value!r}" for key, value in self.init_kwargs.items())
        return f"WandbLogger(project={self.project!r}{extra})"

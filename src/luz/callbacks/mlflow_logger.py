"""`MLflowLogger`: a fit's parameters and per-epoch metrics in an MLflow run."""

from __future__ import annotations

import time
import warnings
from typing import Any

from luz._validate import invalid
from luz.callbacks._tracking import Status, TrackingLogger, import_backend, warn_joined_run

_MAX_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value (mlflow.utils.validation)
_PARAMS_PER_BATCH = 100  # and on the parameters of one log_batch call
_METRICS_PER_BATCH = 1000


def _check_optional_str(value: object, argument: str, example: str) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    error = ValueError if isinstance(value, str) else TypeError
    raise invalid(argument, "a non-empty str or None", value, f"Pass e.g. {example!r}.", error=error)


class MLflowLogger(TrackingLogger):
    """Logs a fit to MLflow: its hparams and opt_hparams as run parameters, and every metric of
    every epoch (``train_loss``, ``valid_acc``, `LRMonitor`'s ``train_lr``…, named like monitor
    names) with ``step = epoch``.

    When an MLflow run is active (``with mlflow.start_run():`` around the fit) the fit is
    logged into it, and it is left open. Otherwise the callback starts a run at
    ``on_fit_begin`` and ends it at the fit's end: ``FINISHED`` (every epoch, or an early
    stop), ``KILLED`` (Ctrl-C, SIGTERM) or ``FAILED`` (an error). Nested hparams are
    flattened to dotted keys; values longer than MLflow's limit (6000 characters) are cut.
    In a distributed fit rank 0 logs. ``run_id`` holds the run's id once the fit began.

    Needs ``mlflow`` or ``mlflow-skinny`` (``pip install 'pyluz[mlflow]'``).

    Args:
        experiment_name: the experiment of a run this callback starts (created if missing).
            ``None``: the one MLflow would use (``mlflow.set_experiment``,
            ``MLFLOW_EXPERIMENT_NAME``, else ``Default``).
        run_name: the name of a run this callback starts (``None``: MLflow picks one).
        tracking_uri: where to log (``"file:./mlruns"``, ``"sqlite:///mlflow.db"``, a server
            URL). ``None``: MLflow's current URI (``mlflow.set_tracking_uri``,
            ``MLFLOW_TRACKING_URI``); only then is an active run joined.

    Example:
        >>> import luz
        >>> cb = luz.callbacks.MLflowLogger(experiment_name="demo")  # doctest: +SKIP
    """

    def __init__(
        self, experiment_name: str | None = None, run_name: str | None = None, tracking_uri: str | None = None
    ) -> None:
        super().__init__()
        self.experiment_name = _check_optional_str(experiment_name, "experiment_name", "my-experiment")
        self.run_name = _check_optional_str(run_name, "run_name", "baseline")
        self.tracking_uri = _check_optional_str(tracking_uri, "tracking_uri", "file:./mlruns")
        self._mlflow = import_backend("mlflow", "mlflow", "MLflowLogger")
        self.run_id: str | None = None
        """The id of the run being (or last) logged to."""
        self._client: Any = None

    def open_run(self) -> bool:
        mlflow = self._mlflow
        self._client = mlflow.MlflowClient(tracking_uri=self.tracking_uri)
        active = mlflow.active_run() if self.tracking_uri is None else None
        if active is not None:
            if self.experiment_name is not None or self.run_name is not None:
                warn_joined_run(
                    "MLflowLogger",
                    f"MLflow run {active.info.run_id}",
                    "`experiment_name` and `run_name` are",
                    "End that run first, or start a nested one yourself with mlflow.start_run(nested=True).",
                )
            self.run_id = active.info.run_id
            return False
        tags = self._default_tags()
        run = self._client.create_run(self._experiment_id(), run_name=self.run_name, tags=tags)
        self.run_id = run.info.run_id
        return True

    def _experiment_id(self) -> str:
        client = self._client
        if self.experiment_name is not None:
            experiment = client.get_experiment_by_name(self.experiment_name)
            if experiment is not None:
                return str(experiment.experiment_id)
            return str(client.create_experiment(self.experiment_name))
        if self.tracking_uri is None:
            # What mlflow.start_run() would use: mlflow.set_experiment(), then the
            # environment, then the default experiment. Not public API, hence the fallback.
            resolve = getattr(self._mlflow.tracking.fluent, "_get_experiment_id", None)
            found = resolve() if callable(resolve) else None
            if found is not None:
                return str(found)
        default = client.get_experiment_by_name("Default")
        return "0" if default is None else str(default.experiment_id)

    def _default_tags(self) -> dict[str, str]:
        # The tags mlflow.start_run() adds (user, source file, git commit).
        try:
            registry = import_backend("mlflow.tracking.context.registry", "mlflow", "MLflowLogger")
            tags: dict[str, str] = registry.resolve_tags({})
        except (ImportError, AttributeError):
            return {}
        return tags

    def log_params(self, params: dict[str, Any]) -> None:
        entities = import_backend("mlflow.entities", "mlflow", "MLflowLogger")
        values = {key: str(value)[:_MAX_PARAM_LENGTH] for key, value in params.items()}
        if not self.owns_run:  # a run of yours may hold them already: MLflow refuses changes
            held = self._client.get_run(self.run_id).data.params
            changed = {key: value for key, value in values.items() if key in held and held[key] != value}
            if changed:
                shown = ", ".join(
                    f"{key}={value!r} (run has {held[key]!r})" for key, value in changed.items()
                )
                warnings.warn(
                    f"MLflowLogger: the active run {self.run_id} already holds other values for "
                    f"parameters the fit has, and MLflow does not allow changing them; not logged: "
                    f"{shown}. Log each fit to a run of its own, e.g. mlflow.start_run(nested=True).",
                    UserWarning,
                    stacklevel=2,
                )
            values = {key: value for key, value in values.items() if key not in held}
        items = [entities.Param(key, value) for key, value in values.items()]
        for start in range(0, len(items), _PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=items[start : start + _PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], epoch: int) -> None:
        entities = import_backend("mlflow.entities", "mlflow", "MLflowLogger")
        stamp = int(time.time() * 1000)
        items = [entities.Metric(key, value, stamp, epoch) for key, value in metrics.items()]
        for start in range(0, len(items), _METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=items[start : start + _METRICS_PER_BATCH])

    def close_run(self, status: Status) -> None:
        self._client.set_terminated(self.run_id, status=status)

    def __repr__(self) -> str:
        return (
            f"MLflowLogger(experiment_name={self.experiment_name!r}, run_name={self.run_name!r}, "
            f"tracking_uri={self.tracking_uri!r})"
        )

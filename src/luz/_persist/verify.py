"""Checking a checkpoint before any of it is put back: its structure when it is read, and its
parts against the running fit (model keys and shapes, optimizer state shapes, random-state
sizes) before the first one is restored.

Every error is a ``ValueError`` that names the file and the part, so a damaged or edited
checkpoint fails at ``on_fit_begin``, before any optimizer step, and nothing is half-restored.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import torch

from luz._persist.rng import loader_generators

if TYPE_CHECKING:
    from luz.context import Context

_PARTS: dict[str, type | tuple[type, ...]] = {
    "model": dict,
    "grads": dict,
    "optimizers": dict,
    "records": dict,
    "callbacks": list,
    "rng": dict,
    "distributed": dict,
    "run": dict,
    "stopped": dict,
    "stream": dict,
    "sharded": dict,
}
"""The type of each part a checkpoint may hold (which ones it holds depends on its writer)."""

_ELEMENTWISE = frozenset(
    {
        "exp_avg",
        "exp_avg_sq",
        "max_exp_avg_sq",
        "exp_inf",
        "momentum_buffer",
        "square_avg",
        "grad_avg",
        "acc_delta",
        "sum",
        "ax",
        "prev",
        "step_size",
    }
)
"""Optimizer state entries of torch.optim that have their parameter's shape."""


def damaged(file: str, part: str, what: str, *, checked: bool = True) -> ValueError:
    """The error for a checkpoint ``file`` whose ``part`` is ``what`` (damaged or not this run's);
    ``checked``: found before anything was restored."""
    return ValueError(
        f"Cannot restore from checkpoint {file}: part {part!r} {what}. The file is damaged, was "
        "edited, or belongs to another model or setup"
        + ("; nothing was restored" if checked else "")
        + ". Resume from another checkpoint, or delete this one to start over."
    )


@contextlib.contextmanager
def restoring(file: str, part: str) -> Iterator[None]:
    """Turn an error raised while ``part`` is put back into `damaged` (chained)."""
    try:
        yield
    except OSError:
        raise  # a disk error (a callback rewriting its scratch file), not a damaged part
    except Exception as error:
        if isinstance(error, ValueError) and file in str(error):
            raise
        what = f"could not be restored ({type(error).__name__}: {error})"
        raise damaged(file, part, what, checked=False) from error


def check_structure(state: dict[str, Any], file: str) -> None:
    """Check what a checkpoint holds without the running fit: the epoch counter, the type of
    each part, finite floating-point weights, and an epoch counter the records agree with."""
    epoch = state.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0):
        raise damaged(file, "epoch", f"is {epoch!r}, not a count of completed epochs")
    for part, kind in _PARTS.items():
        if part in state and not isinstance(state[part], kind):
            raise damaged(file, part, f"is a {type(state[part]).__name__}, not a {_kind_name(kind)}")
    if "model" in state:
        check_tensors(state["model"], file, "model")
        check_finite(state["model"], file, "model")
    if "grads" in state:
        check_tensors(state["grads"], file, "grads")
    if "records" in state:
        _check_records(state["records"], epoch, file)
    if "stream" in state:
        _check_stream(state["stream"], file)
    for i, entry in enumerate(state.get("callbacks", [])):
        if not isinstance(entry, dict) or not {"class", "position", "state"} <= set(entry):
            raise damaged(file, f"callbacks[{i}]", "is not a {class, position, state} entry")


def _check_stream(stream: dict[str, Any], file: str) -> None:
    # The training data's position (`luz._stream.TrainStream.state_dict`).
    counts = [stream.get(key) for key in ("passes", "taken")]
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in counts):
        raise damaged(file, "stream", f"has counts {counts}, not non-negative integers (passes, taken)")
    pass_state = stream.get("pass_state")
    if not (isinstance(pass_state, dict) or (pass_state is None and counts[1] == 0)):
        raise damaged(file, "stream", "has no random state for the pass it is inside")


_RUN_FIELDS = {
    "optimizers": "optimizer classes",
    "batch_size": "training batch size",
    "samples": "number of training samples",
    "shuffle": "training data shuffled",
}
"""The fields of a checkpoint's ``"run"`` part (`luz._persist.checkpoint.run_shape`)."""


def run_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Each field of the run's shape that differs between a checkpoint and this fit, as
    ``"what: saved X, now Y"``. A field the checkpoint lacks, or that is unknown (``None``) on
    either side, is not compared."""
    found = []
    for field, what in _RUN_FIELDS.items():
        before, now = saved.get(field), current.get(field)
        if before is not None and now is not None and before != now:
            found.append(f"{what}: saved {before!r}, now {now!r}")
    # Absent means one pass per epoch (the only kind of epoch before steps_per_epoch), so it
    # is compared even when one side lacks it.
    before, now = saved.get("steps_per_epoch"), current.get("steps_per_epoch")
    if before != now:
        found.append(f"steps per epoch: saved {before or 'one pass'}, now {now or 'one pass'}")
    return found


def check_run_shape(state: Mapping[str, Any], current: Mapping[str, Any], file: str, *, strict: bool) -> None:
    """Compare the run recorded in a checkpoint with this fit's (`run_differences`). A
    checkpoint written before pyluz recorded it (no ``"run"`` part) passes.

    Raises:
        ValueError: something differs and ``strict``; otherwise a ``UserWarning`` lists it.
    """
    saved = state.get("run")
    if not isinstance(saved, Mapping):
        return
    found = run_differences(saved, current)
    if not found:
        return
    listed = "; ".join(found)
    if strict:
        raise ValueError(
            f"Cannot resume from checkpoint {file}: this run differs from the one that wrote it "
            f"({listed}). Nothing was restored. Resume with the same optimizers and data "
            "options, delete the file to start over, or pass AutoResume(path, strict=False) to "
            "resume anyway."
        )
    warnings.warn(
        f"Resuming from checkpoint {file} although this run differs from the one that wrote it "
        f"({listed}); the result will not match an uninterrupted run.",
        UserWarning,
        stacklevel=4,
    )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)


def _check_records(records: dict[str, Any], epoch: int | None, file: str) -> None:
    metrics = records.get("metrics")
    if not isinstance(metrics, dict) or not all(
        isinstance(metrics.get(s, []), list) for s in ("train", "valid")
    ):
        raise damaged(file, "records", "has no metrics lists ({'metrics': {'train': [...], 'valid': [...]}})")
    recorded = len(metrics.get("train", []))
    if epoch is not None and epoch > recorded:
        raise damaged(
            file,
            "epoch",
            f"says {epoch} epochs were completed but the records hold {recorded} epochs of training metrics",
        )


def check_tensors(tensors: Mapping[str, Any], file: str, part: str) -> None:
    """Every entry of ``tensors`` is a tensor."""
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise damaged(file, f"{part}[{key!r}]", f"is a {type(value).__name__}, not a tensor")


def check_finite(tensors: Mapping[str, torch.Tensor], file: str, part: str) -> None:
    """Every floating-point tensor of ``tensors`` is free of NaN and inf."""
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise damaged(file, f"{part}[{key!r}]", "holds NaN or infinite values")


def check_model_state(model: torch.nn.Module, tensors: Mapping[str, Any], file: str, part: str) -> None:
    """``tensors`` load strictly into ``model``: the same keys, tensors of the same shapes.

    Checked before anything is copied, so a failed load leaves the model unchanged.
    """
    check_tensors(tensors, file, part)
    expected = model.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    wrong = [
        f"{k}: {tuple(tensors[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected}")
    if wrong:
        problems.append("wrong shapes (" + "; ".join(wrong) + ")")
    if problems:
        raise ValueError(
            f"Cannot load {part} from {file} into {type(model).__name__}: "
            + ", ".join(problems)
            + ". The model is unchanged. Load a file saved from this model class with the same "
            "hparams."
        )


def check_against_fit(
    ctx: Context,
    state: dict[str, Any],
    file: str,
    *,
    model: bool,
    optimizers: bool,
    records: bool,
    callbacks: bool,
    rng: bool,
    rng_state: Any = None,
) -> None:
    """Check each part that is about to be restored against the running fit (``rng_state``:
    the random state that will be put back, this rank's in a distributed fit)."""
    needed = [
        ("model", model),
        ("optimizers", optimizers),
        ("records", records),
        ("callbacks", callbacks),
        ("rng", rng),
    ]
    for part, wanted in needed:
        if wanted and part not in state:
            raise damaged(file, part, "is missing")
    if model:
        check_model_state(ctx.model, state["model"], file, "model")
        _check_grads(ctx, state.get("grads", {}), file)
    if optimizers:
        _check_optimizers(ctx, state["optimizers"], file)
    if rng:
        check_rng(rng_state, file, _loaders(ctx))


def _loaders(ctx: Context) -> dict[str, Any]:
    loaders = {"train": ctx.train_data, "valid": ctx.valid_data}
    return {role: loader for role, loader in loaders.items() if loader is not None}


def _check_grads(ctx: Context, grads: dict[str, Any], file: str) -> None:
    params = dict(ctx.model.named_parameters())
    for name, grad in grads.items():
        if name not in params:
            raise damaged(file, f"grads[{name!r}]", "is for a parameter this model does not have")
        if grad.shape != params[name].shape:
            raise damaged(
                file,
                f"grads[{name!r}]",
                f"has shape {tuple(grad.shape)}, the parameter {tuple(params[name].shape)}",
            )


def _check_optimizers(ctx: Context, saved: dict[str, Any], file: str) -> None:
    if list(saved) != list(ctx.optimizers):
        raise ValueError(
            f"Cannot restore optimizer states from {file}: the checkpoint has optimizers "
            f"{list(saved)} but this model has {list(ctx.optimizers)}."
        )
    for name, opt in ctx.optimizers.items():
        part = f"optimizers[{name!r}]"
        entry = saved[name]
        if not isinstance(entry, dict) or not isinstance(entry.get("state"), dict):
            raise damaged(file, part, "is not an optimizer state_dict (no 'state' dict)")
        groups = entry.get("param_groups")
        if not isinstance(groups, list) or len(groups) != len(opt.param_groups):
            count = len(groups) if isinstance(groups, list) else "no"
            raise damaged(file, part, f"has {count} parameter groups, the optimizer {len(opt.param_groups)}")
        ids: list[Any] = []
        for i, (group, current) in enumerate(zip(groups, opt.param_groups, strict=True)):
            if not isinstance(group, dict) or len(group.get("params", ())) != len(current["params"]):
                raise damaged(file, f"{part} param_groups[{i}]", "does not have this group's parameters")
            ids.extend(group["params"])
        params = dict(zip(ids, [p for g in opt.param_groups for p in g["params"]], strict=True))
        for key, values in entry["state"].items():
            if key not in params:
                raise damaged(
                    file, f"{part} state[{key!r}]", "is for a parameter the optimizer does not have"
                )
            if not isinstance(values, dict):
                continue
            shape = params[key].shape
            for field, value in values.items():
                if field in _ELEMENTWISE and isinstance(value, torch.Tensor) and value.shape != shape:
                    raise damaged(
                        file,
                        f"{part} state[{key!r}][{field!r}]",
                        f"has shape {tuple(value.shape)}, its parameter {tuple(shape)}",
                    )


def check_rng(rng: Any, file: str, loaders: dict[str, Any], part: str = "rng") -> None:
    """Check every random state that is about to be put back: its kind and size (``part``:
    where the state is in the checkpoint, for the message)."""
    if not isinstance(rng, dict):
        raise damaged(file, part, f"is a {type(rng).__name__}, not a dict")
    for stream in ("python", "numpy", "torch"):
        if stream not in rng:
            raise damaged(file, f"{part}[{stream!r}]", "is missing")
    py = rng["python"]
    if not (
        isinstance(py, dict) and isinstance(py.get("state"), torch.Tensor) and py["state"].numel() == 625
    ):
        raise damaged(file, f"{part}['python']", "is not a Mersenne Twister state of 625 words")
    npy = rng["numpy"]
    keys = npy.get("keys") if isinstance(npy, dict) else None
    pos = npy.get("pos") if isinstance(npy, dict) else None
    if not (
        isinstance(keys, torch.Tensor) and keys.numel() == 624 and isinstance(pos, int) and 0 <= pos <= 624
    ):
        raise damaged(file, f"{part}['numpy']", "is not a Mersenne Twister state of 624 words and a position")
    _check_generator_state(rng["torch"], torch.get_rng_state(), file, f"{part}['torch']")
    cuda = rng.get("cuda") or []
    if not isinstance(cuda, list):
        raise damaged(file, f"{part}['cuda']", "is not a list of device states")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        for i, saved in enumerate(cuda):
            _check_generator_state(saved, torch.cuda.get_rng_state(i), file, f"{part}['cuda'][{i}]")
    saved_loaders = rng.get("loaders") or {}
    if not isinstance(saved_loaders, dict):
        raise damaged(file, f"{part}['loaders']", "is not a dict")
    for role, loader in loaders.items():
        saved = saved_loaders.get(role, {})
        for key, generator in loader_generators(loader).items():
            if isinstance(saved, dict) and key in saved:
                where = f"{part}['loaders'][{role!r}][{key!r}]"
                _check_generator_state(saved[key], generator.get_state(), file, where)


def _check_generator_state(saved: Any, current: torch.Tensor, file: str, part: str) -> None:
    if not isinstance(saved, torch.Tensor) or saved.dtype != current.dtype or saved.shape != current.shape:
        got = (
            f"{saved.dtype} {tuple(saved.shape)}" if isinstance(saved, torch.Tensor) else type(saved).__name__
        )
        raise damaged(
            file, part, f"is {got}, not a generator state of {current.dtype} {tuple(current.shape)}"
        )

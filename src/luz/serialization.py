"""Saving and loading fitted models, their weights, and training checkpoints, without pickle.

- `save` / `load`: one safetensors file. The tensors are the model's ``state_dict``; the
  safetensors metadata holds JSON with the format version, the model class's import path
  (``module:qualname``), hparams, opt_hparams, records and optimizer names.
- `save_model_weights` / `load_model_weights`: the ``state_dict`` alone, as safetensors.
- Checkpoints (`save_checkpoint`, `read_checkpoint`, `load_checkpoint_into_context`,
  `load_checkpoint`): ``torch.save`` files of plain containers, read with
  ``torch.load(weights_only=True)``.

Loading never imports a module or calls anything because a file names it: the class comes from
``module=`` or from a module that is already imported. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from luz._dist.fsdp import is_sharded, user_class
from luz._persist.atomic import atomic_write_bytes
from luz._persist.checkpoint import (
    read_checkpoint,
    save_checkpoint,
)
from luz._persist.model_file import (
    MODEL_FORMAT,
    MODEL_VERSION,
    WEIGHTS_FORMAT,
    find_class,
    model_metadata,
    read_safetensors,
    read_state_dict,
    safetensors_bytes,
    state_tensors,
)
from luz._persist.plain import from_json, to_json
from luz._persist.restore import load_checkpoint_into_context
from luz._persist.sharded_read import check_shards
from luz._persist.verify import check_model_state
from luz.accelerator import is_writer
from luz.module import LuzModule
from luz.results import Fitted

__all__ = [
    "load",
    "load_checkpoint",
    "load_checkpoint_into_context",
    "load_model_weights",
    "read_checkpoint",
    "save",
    "save_checkpoint",
    "save_model_weights",
]


# -- tensors ---------------------------------------------------------------------------------------


def _check_fitted(fitted: object, function: str) -> Fitted:
    if not isinstance(fitted, Fitted):
        raise TypeError(
            f"{function}() takes a luz.Fitted (the result of fit()), got {type(fitted).__name__}."
        )
    return fitted


def _check_path(path: object, function: str) -> Path:
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"{function}(): `path` must be a file path (a str or os.PathLike), got "
            f"{type(path).__name__} {path!r}."
        )
    return Path(path)


def _check_target(path: object, function: str) -> Path:
    """``path`` as a file that can be written: not a directory, not under a file."""
    target = _check_path(path, function).expanduser()
    if target.is_dir():
        raise ValueError(
            f"{function}(): `path`={str(target)!r} is a directory; pass a file path inside it, "
            f"e.g. {str(target / 'model.safetensors')!r}."
        )
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(
                    f"{function}(): `path`={str(target)!r} is under {str(parent)!r}, which is a "
                    "file, not a directory: choose another path."
                )
            break
    return target


def _write(target: Path, data: bytes, function: str) -> None:
    try:
        atomic_write_bytes(target, data)
    except OSError as error:  # a full disk or a file size limit: say which file
        raise OSError(
            error.errno,
            f"{function}() could not write {str(target)!r}: {error.strerror or error}. Nothing "
            "was replaced (a file already there is unchanged); free space or choose another path.",
        ) from error


# -- save / load -------------------------------------------------------------------------------------


def _built_with(fitted: Fitted) -> str:
    spec = None if fitted.module is None else fitted.module.module
    if spec is None or spec is user_class(fitted.model):
        return "class"
    return "instance" if isinstance(spec, nn.Module) else "factory"


def save(fitted: Fitted, path: str | os.PathLike[str]) -> None:
    """Save a fitted model to one safetensors file (weights + JSON metadata), atomically.

    The file holds the model's ``state_dict``, the class's import path, hparams, opt_hparams,
    records and optimizer names. Nothing is pickled. When a process group is initialised
    (``torchrun``), only rank 0 writes; the call returns at once on the other ranks. A model
    trained with ``strategy="fsdp"`` has its full weights gathered onto rank 0 first (every
    rank must call ``save``), so the file is the same as for one process.

    Raises:
        TypeError: ``fitted`` is not a `luz.Fitted`, ``path`` is not a path, or
            hparams/opt_hparams/records hold values that are not JSON-friendly (the message
            names the offending entry).
        ValueError: ``path`` is a directory or lies under a file.
        OSError: the write failed (a full disk); the message names the file, and a file
            already at ``path`` is unchanged.

    Example:
        >>> import tempfile, os, torch, luz
        >>> from torch import nn
        >>> fitted = (
        ...     luz.setup(nn.Linear, loss=nn.MSELoss(), optimizer=torch.optim.SGD)
        ...     .set_hparams(in_features=3, out_features=1).set_opt_hparams(lr=0.1)
        ...     .fit((torch.randn(64, 3), torch.randn(64, 1)), epochs=1, verbose=False)
        ... )
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> luz.save(fitted, path)
        >>> luz.load(path, module=nn.Linear).hparams
        {'in_features': 3, 'out_features': 1}
    """
    fitted = _check_fitted(fitted, "save")
    target = _check_target(path, "save")
    cls = user_class(fitted.model)  # a sharded model's class is FSDP<Class>: name the user's
    meta = {
        "version": MODEL_VERSION,
        "class": f"{cls.__module__}:{cls.__qualname__}",
        "built_with": _built_with(fitted),
        "hparams": to_json(fitted.hparams, "hparams"),
        "opt_hparams": to_json(fitted.opt_hparams, "opt_hparams"),
        "records": to_json(fitted.records, "records"),
        "optimizer_names": list(fitted.optimizer_names),
    }
    text = json.dumps(meta)  # checked on every rank: a bad value fails the whole job alike
    if not (is_writer(None) or is_sharded(fitted.model)):  # DDP: rank 0 holds the same model
        return
    tensors = state_tensors(fitted.model)  # a sharded model gathers on every rank
    if is_writer(None):
        data = safetensors_bytes(tensors, metadata={"format": MODEL_FORMAT, "pyluz": text})
        _write(target, data, "save")


def load(path: str | os.PathLike[str], module: type[nn.Module] | LuzModule | None = None) -> Fitted:
    """Load a model saved with `luz.save`.

    Args:
        path: the file.
        module: the model class, or the `LuzModule` it was fitted from (then the result can
            ``evaluate`` with that loss and metrics). If omitted, the class recorded in the file
            is looked up in modules that are **already imported** (import the defining module
            first); nothing is imported or called because the file says so.

    Returns:
        A `luz.Fitted` whose model is ``cls(**hparams)`` with the saved weights (strict).

    Raises:
        ValueError: not a pyluz model file, or the class cannot be found without importing.
        TypeError: ``module`` is not an ``nn.Module`` class or a `LuzModule`.

    Example:
        >>> fitted = luz.load("model.safetensors", module=Net)  # doctest: +SKIP
    """
    _check_path(path, "load")
    tensors, metadata = read_safetensors(path, MODEL_FORMAT)
    meta = model_metadata(metadata, path)
    hparams = from_json(meta["hparams"])
    opt_hparams = from_json(meta["opt_hparams"])
    luz_module: LuzModule | None = None
    if module is None:
        if meta["built_with"] != "class":
            raise ValueError(
                f"{str(path)!r} holds a model built by a {meta['built_with']} in luz.setup(), not by "
                f"its class {meta['class']}: pass module=<the LuzModule> to luz.load()."
            )
        model = _build(find_class(meta["class"], path), hparams)
    elif isinstance(module, LuzModule):
        luz_module = module._replace(
            hparams={} if isinstance(module.module, nn.Module) else hparams, opt_hparams=opt_hparams
        )
        model = luz_module.build_model()
    elif isinstance(module, type) and issubclass(module, nn.Module):
        model = _build(module, hparams)
    else:
        raise TypeError(
            "`module` must be an nn.Module subclass or a LuzModule, "
            f"got {module!r} ({type(module).__name__})."
        )
    check_model_state(model, tensors, repr(str(path)), "the weights")
    model.load_state_dict(tensors)
    return Fitted(
        model,
        records=from_json(meta["records"]),
        hparams=hparams,
        opt_hparams=opt_hparams,
        module=luz_module,
        optimizer_names=list(meta["optimizer_names"]),
    )


def _build(cls: type[nn.Module], hparams: dict[str, Any]) -> nn.Module:
    try:
        return cls(**hparams)
    except TypeError as error:
        raise TypeError(
            f"Could not build {cls.__qualname__} with the saved hparams {hparams}: {error}"
        ) from error


# -- weights -------------------------------------------------------------------------------------


def save_model_weights(fitted: Fitted, path: str | os.PathLike[str]) -> None:
    """Save only the model's ``state_dict``, as safetensors, atomically (rank 0 only under
    ``torchrun``; a sharded model's full weights are gathered first, on every rank).

    Example:
        >>> luz.save_model_weights(fitted, "weights.safetensors")  # doctest: +SKIP
    """
    fitted = _check_fitted(fitted, "save_model_weights")
    target = _check_target(path, "save_model_weights")
    if not (is_writer(None) or is_sharded(fitted.model)):  # DDP: rank 0 holds the same model
        return
    tensors = state_tensors(fitted.model)  # a sharded model gathers on every rank
    if not is_writer(None):
        return
    data = safetensors_bytes(tensors, metadata={"format": WEIGHTS_FORMAT})
    _write(target, data, "save_model_weights")


def load_model_weights(fitted: Fitted, path: str | os.PathLike[str]) -> None:
    """Copy weights into ``fitted.model`` **in place** (strict). Returns ``None`` on purpose:
    nothing is copied.

    Reads files written by `save_model_weights`, any safetensors file of a state dict, and a
    state dict written with ``torch.save(model.state_dict(), path)`` (read with
    ``torch.load(weights_only=True)``: no code in the file runs).

    Example:
        >>> luz.load_model_weights(fitted, "weights.safetensors")  # doctest: +SKIP
    """
    fitted = _check_fitted(fitted, "load_model_weights")
    tensors = read_state_dict(_check_path(path, "load_model_weights"))
    check_model_state(fitted.model, tensors, repr(str(path)), "weights")
    fitted.model.load_state_dict(tensors)


def load_checkpoint(fitted: Fitted, path: str | os.PathLike[str]) -> None:
    """Copy the model weights of a checkpoint (from `luz.callbacks.ModelCheckpoint`,
    `luz.callbacks.AutoResume`, ...) into ``fitted.model`` in place. Records are untouched. A
    sharded checkpoint directory (a fit with ``strategy="fsdp"``) loads too, in one process or
    into a sharded model: its shards are resharded to fit.

    Example:
        >>> luz.load_checkpoint(fitted, "checkpoints/epoch-03-valid_loss-0.123.pt")  # doctest: +SKIP
    """
    fitted = _check_fitted(fitted, "load_checkpoint")
    state = read_checkpoint(Path(path))
    if "sharded" in state:  # a sharded fit's directory: its shards are gathered (resharded)
        check_shards(fitted.model, {}, state, model=True)()
        return
    if "model" not in state:
        raise ValueError(f"Cannot load checkpoint {str(path)!r}: it has no 'model' part.")
    check_model_state(fitted.model, state["model"], repr(str(path)), "model")
    fitted.model.load_state_dict(state["model"])

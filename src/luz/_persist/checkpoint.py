"""Training checkpoints: what a run's state is, how it is written, read and put back.

A checkpoint is one ``torch.save`` file holding only plain containers (dicts, lists, tuples) of
tensors, numbers and strings, so it is read with ``torch.load(weights_only=True)`` and never
runs code. It is written atomically (`luz._persist.atomic`).
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from luz._dist.collectives import gather_objects
from luz._dist.sharding import distributed_sampler
from luz._persist.atomic import atomic_write_with
from luz._persist.plain import plain
from luz._persist.rng import get_rng_state, set_rng_state
from luz.accelerator import is_writer, unwrap_loader

if TYPE_CHECKING:
    from luz.context import Context

FORMAT = "pyluz-checkpoint"
VERSION = 1


def stateful_callbacks(ctx: Context) -> list[tuple[int, Any]]:
    """``(position, callback)`` for each callback of the run that has a ``state_dict``."""
    return [(i, cb) for i, cb in enumerate(ctx.callbacks) if callable(getattr(cb, "state_dict", None))]


def checkpoint_state(ctx: Context) -> dict[str, Any]:
    """The full state of a fit after ``ctx.epoch``: model, optimizers, records, callback
    states (keyed by class name and position) and every random stream.

    In a distributed fit every rank must call it (it gathers each rank's random streams and
    adds them under ``"distributed"``, with the training sampler's seed).
    """
    callbacks = [
        {
            "class": type(cb).__qualname__,
            "position": i,
            "state": plain(cb.state_dict(), type(cb).__qualname__),
        }
        for i, cb in stateful_callbacks(ctx)
    ]
    return new_checkpoint(
        ctx.epoch,
        model=ctx.model.state_dict(),
        grads=leftover_grads(ctx),
        optimizers={
            name: plain(opt.state_dict(), f"optimizer {name!r}") for name, opt in ctx.optimizers.items()
        },
        records=plain(ctx.records, "ctx.records"),
        callbacks=callbacks,
        rng=get_rng_state(_loaders(ctx)),
        **_distributed_state(ctx),
    )


def new_checkpoint(epoch: int | None, **parts: Any) -> dict[str, Any]:
    """A checkpoint dict: the format marker and version, ``epoch``, then ``parts`` in order."""
    return {"format": FORMAT, "version": VERSION, "epoch": epoch, **parts}


def model_parts(state: dict[str, Any], *, blank: str) -> dict[str, Any]:
    """A checkpoint's model, optimizer and callback states (what `KeepBestModel` keeps of its
    best epoch), with the state of the callbacks of class ``blank`` dropped (``None``)."""
    return {
        "model": state["model"],
        "optimizers": state["optimizers"],
        "callbacks": [
            entry if entry["class"] != blank else {**entry, "state": None}
            for entry in state.get("callbacks", [])
        ],
    }


def checkpoint_of_parts(epoch: int | None, parts: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint holding only `model_parts` (no records, gradients or random streams)."""
    return new_checkpoint(
        epoch, model=parts["model"], optimizers=parts["optimizers"], callbacks=parts.get("callbacks", [])
    )


def _distributed_state(ctx: Context) -> dict[str, Any]:
    if not ctx.distributed:
        return {}
    sampler = distributed_sampler(unwrap_loader(ctx.train_data))
    return {
        "distributed": {
            "world_size": ctx.accelerator.world_size if ctx.accelerator is not None else 1,
            "rng": gather_objects(get_rng_state(_loaders(ctx))),
            "sampler_seed": None if sampler is None else int(sampler.seed),
        }
    }


def _restore_rng(ctx: Context, state: dict[str, Any]) -> None:
    # Each rank takes back its own streams when the world size is unchanged; otherwise (or in
    # one process) rank 0's.
    saved = state.get("distributed")
    rng = state["rng"]
    if saved is not None and ctx.distributed and ctx.accelerator is not None:
        if saved["world_size"] == ctx.accelerator.world_size:
            rng = saved["rng"][ctx.accelerator.rank]
        sampler = distributed_sampler(unwrap_loader(ctx.train_data))
        if sampler is not None and saved["sampler_seed"] is not None:
            sampler.seed = int(saved["sampler_seed"])
    set_rng_state(rng, _loaders(ctx))


def leftover_grads(ctx: Context) -> dict[str, torch.Tensor]:
    """Gradients still held by parameters between epochs. The default step zeroes only the
    stepped optimizer's gradients, so with several optimizers the others' gradients carry over
    into the next batch (and epoch): they are state for an exact resume."""
    return {name: p.grad for name, p in ctx.model.named_parameters() if p.grad is not None}


def _restore_grads(ctx: Context, grads: dict[str, torch.Tensor]) -> None:
    for name, param in ctx.model.named_parameters():
        saved = grads.get(name)
        param.grad = None if saved is None else saved.to(param.device).clone()


def _loaders(ctx: Context) -> dict[str, Any]:
    loaders = {"train": ctx.train_data, "valid": ctx.valid_data}
    return {role: loader for role, loader in loaders.items() if loader is not None}


def write_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a checkpoint dict atomically (temp file in the same directory, fsync, rename)."""
    atomic_write_with(path, lambda handle: torch.save(state, handle))


def save_checkpoint(ctx: Context, path: str | os.PathLike[str]) -> None:
    """Write the full state of the running fit to ``path`` atomically. Consumes no randomness.

    In a distributed fit every rank calls it and rank 0 writes.
    """
    state = checkpoint_state(ctx)
    if is_writer(ctx.accelerator):
        write_checkpoint(state, path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` onto the CPU.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is corrupt, is not a pyluz checkpoint, or would need pickle to
            load (its payload is never run; there is no fallback to full unpickling).
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # A raw (non-zip) pickle makes torch warn about its protocol before refusing it.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        raise ValueError(
            f"Refusing to load {str(path)!r}: it is not a safely loadable checkpoint. Either it is "
            "corrupt or truncated, or it holds Python objects that only pickle could rebuild "
            "(pyluz loads with weights_only=True and never runs code from a file; there is no "
            f"unsafe fallback). Details: {error}"
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a pyluz checkpoint (no format marker {FORMAT!r}); for a model "
            "saved with luz.save() use luz.load()."
        )
    return state


def all_finite(state_dict: dict[str, Any]) -> bool:
    """Whether every floating-point tensor of a model state is free of NaN and inf."""
    for value in state_dict.values():
        floating = isinstance(value, torch.Tensor) and value.is_floating_point()
        if floating and not bool(torch.isfinite(value).all()):  # a host sync per tensor, at save time
            return False
    return True


def load_checkpoint_into_context(
    ctx: Context,
    source: str | os.PathLike[str] | dict[str, Any],
    *,
    restore_model_state: bool = True,
    restore_optimizer_state: bool = True,
    restore_records: bool = True,
    restore_callbacks_state: bool = True,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Put a checkpoint (a path or an already-read dict) back into a running fit.

    Optimizers are matched by name and callbacks with state by class name in order; any
    mismatch is a ``ValueError`` naming both lists. Returns the checkpoint dict.
    """
    state = source if isinstance(source, dict) else read_checkpoint(source)
    if restore_model_state:
        ctx.model.load_state_dict(state["model"])
        _restore_grads(ctx, state.get("grads", {}))
    if restore_optimizer_state:
        _restore_optimizers(ctx, state["optimizers"])
    if restore_callbacks_state:
        _restore_callbacks(ctx, state["callbacks"])
    if restore_records:
        ctx.unsafe_set_records(state["records"])
    if restore_rng:
        _restore_rng(ctx, state)
    return state


def _restore_optimizers(ctx: Context, saved: dict[str, Any]) -> None:
    if list(saved) != list(ctx.optimizers):
        raise ValueError(
            f"Cannot restore optimizer states: the checkpoint has optimizers {list(saved)} but "
            f"this model has {list(ctx.optimizers)}."
        )
    for name, opt in ctx.optimizers.items():
        opt.load_state_dict(saved[name])


def match_callbacks(ctx: Context, saved: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]] | None:
    """Each saved callback entry with this run's stateful callback at the same place, or
    ``None`` when their classes (in order) differ."""
    current = stateful_callbacks(ctx)
    if [entry["class"] for entry in saved] != [type(cb).__qualname__ for _, cb in current]:
        return None
    return [(entry, cb) for entry, (_, cb) in zip(saved, current, strict=True)]


def _restore_callbacks(ctx: Context, saved: list[dict[str, Any]]) -> None:
    pairs = match_callbacks(ctx, saved)
    if pairs is None:
        saved_names = [f"{entry['class']}@{entry['position']}" for entry in saved]
        current_names = [f"{type(cb).__qualname__}@{i}" for i, cb in stateful_callbacks(ctx)]
        raise ValueError(
            "Cannot restore callback states: the checkpoint has stateful callbacks "
            f"{saved_names} (class@position) but this run has {current_names}. Resume with the "
            "same callbacks, or pass restore_callbacks_state=False."
        )
    for entry, cb in pairs:
        load = getattr(cb, "load_state_dict", None)
        if entry["state"] is not None and not callable(load):
            raise ValueError(
                f"Cannot restore the state of callback {type(cb).__qualname__}: it has a "
                "state_dict() but no load_state_dict() method."
            )
        if entry["state"] is not None and load is not None:
            load(entry["state"])

"""Putting a checkpoint back into a running fit: the model (full weights or shards), the
optimizers, the gradients, the records, the callbacks' states (matched by class and order)
and every random stream, each part checked against the fit before anything is restored."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from luz._dist.fsdp import is_sharded
from luz._dist.run_state import (
    position_to_restore,
    restore_sampler_seed,
    rng_to_restore,
)
from luz._persist import sharded_read
from luz._persist.checkpoint import (
    read_checkpoint,
    run_loaders,
    stateful_callbacks,
)
from luz._persist.rng import set_rng_state
from luz._persist.verify import check_against_fit, check_rng, restoring

if TYPE_CHECKING:
    from luz.context import Context


def _restore_rng(ctx: Context, state: dict[str, Any], rng: Any) -> None:
    restore_sampler_seed(ctx, state)
    set_rng_state(rng, run_loaders(ctx))
    if ctx.train_stream is not None and "stream" in state:
        ctx.train_stream.load_state_dict(position_to_restore(ctx, state))


def _restore_grads(ctx: Context, grads: dict[str, torch.Tensor]) -> None:
    for name, param in ctx.model.named_parameters():
        saved = grads.get(name)
        param.grad = None if saved is None else saved.to(param.device).clone()


@dataclass(frozen=True)
class _Parts:
    """Which parts of a checkpoint a restore puts back."""

    model: bool
    optimizers: bool
    records: bool
    callbacks: bool
    rng: bool


def load_checkpoint_into_context(
    ctx: Context,
    source: str | os.PathLike[str] | dict[str, Any],
    *,
    restore_model_state: bool = True,
    restore_optimizer_state: bool = True,
    restore_records: bool = True,
    restore_callbacks_state: bool = True,
    restore_rng: bool = True,
    name: str | None = None,
) -> dict[str, Any]:
    """Put a checkpoint (a path or an already-read dict) back into a running fit.

    Every part to restore is checked first (present, well-formed, and fitting this model, its
    optimizers and data loaders), so a bad checkpoint is a ``ValueError`` naming the file
    (``name`` for a dict source) and the part, and nothing is restored. Optimizers are matched
    by name and callbacks with state by class name in order; any mismatch is a ``ValueError``
    naming both lists. Returns the checkpoint dict.
    """
    if isinstance(source, dict):
        state, file = source, repr(name) if name is not None else "(a checkpoint dict)"
    else:
        state, file = read_checkpoint(source), repr(str(source))
    parts = _Parts(
        restore_model_state, restore_optimizer_state, restore_records, restore_callbacks_state, restore_rng
    )
    rng = rng_to_restore(ctx, state) if parts.rng else None
    restore_shards = _check(ctx, state, file, parts, rng)
    _restore(ctx, state, file, parts, rng, restore_shards)
    return state


def _check(
    ctx: Context, state: dict[str, Any], file: str, parts: _Parts, rng: Any
) -> Callable[[], None] | None:
    # Every part to restore, checked against this fit; returns the restore of a sharded
    # checkpoint's tensors (checked too), or None for a single file.
    if "sharded" not in state and is_sharded(ctx.model) and parts.optimizers:
        raise ValueError(
            f"Cannot restore the optimizer state of checkpoint {file} into a sharded model "
            "(strategy='fsdp'): it is a single file, written by a run that was not sharded. "
            "Resume it with the strategy that wrote it, or load only its weights "
            "(ResumeFromCheckpoint(path) without restore_optimizer_state)."
        )
    restore_shards = None
    if "sharded" in state:  # checked (keys, shapes, files) before anything is restored
        restore_shards = sharded_read.check_shards(
            ctx.model, ctx.optimizers, state, model=parts.model, optimizers=parts.optimizers
        )
    in_file = restore_shards is None  # the model and optimizer states are in the file itself
    check_against_fit(
        ctx,
        state,
        file,
        model=parts.model and in_file,
        optimizers=parts.optimizers and in_file,
        records=parts.records,
        callbacks=parts.callbacks,
        rng=parts.rng,
        rng_state=rng,
    )
    if parts.rng and ctx.train_stream is not None and "stream" in state:
        pass_state = position_to_restore(ctx, state).get("pass_state")
        if pass_state is not None:  # put back when the resumed pass restarts: check it now
            check_rng(pass_state, file, {"train": ctx.train_data}, part="stream['pass_state']")
    if parts.callbacks:
        _check_callbacks(ctx, state["callbacks"], file)
    return restore_shards


def _restore(
    ctx: Context,
    state: dict[str, Any],
    file: str,
    parts: _Parts,
    rng: Any,
    restore_shards: Callable[[], None] | None,
) -> None:
    # The checked parts, each put back under `restoring` (an error names the file and part).
    if restore_shards is not None:
        with restoring(file, "sharded"):
            restore_shards()
    else:
        if parts.model:
            with restoring(file, "model"):
                if is_sharded(ctx.model):  # full weights (every rank read them) into the shards
                    _load_full_weights(ctx.model, state["model"])
                else:
                    ctx.model.load_state_dict(state["model"])
                    _restore_grads(ctx, state.get("grads", {}))
        if parts.optimizers:
            with restoring(file, "optimizers"):
                _restore_optimizers(ctx, state["optimizers"])
    if parts.callbacks:
        with restoring(file, "callbacks"):
            _restore_callbacks(ctx, state["callbacks"])
    if parts.records:
        with restoring(file, "records"):
            ctx.unsafe_set_records(state["records"])
    if parts.rng:
        with restoring(file, "rng"):
            _restore_rng(ctx, state, rng)


def _load_full_weights(model: torch.nn.Module, weights: dict[str, Any]) -> None:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True))


def _restore_optimizers(ctx: Context, saved: dict[str, Any]) -> None:
    for name, opt in ctx.optimizers.items():
        opt.load_state_dict(saved[name])


def match_callbacks(ctx: Context, saved: list[dict[str, Any]]) -> list[tuple[dict[str, Any], Any]] | None:
    """Each saved callback entry with this run's stateful callback at the same place, or
    ``None`` when their classes (in order) differ."""
    current = stateful_callbacks(ctx)
    if [entry["class"] for entry in saved] != [type(cb).__qualname__ for _, cb in current]:
        return None
    return [(entry, cb) for entry, (_, cb) in zip(saved, current, strict=True)]


def _check_callbacks(
    ctx: Context, saved: list[dict[str, Any]], file: str
) -> list[tuple[dict[str, Any], Any]]:
    pairs = match_callbacks(ctx, saved)
    if pairs is None:
        saved_names = [f"{entry['class']}@{entry['position']}" for entry in saved]
        current_names = [f"{type(cb).__qualname__}@{i}" for i, cb in stateful_callbacks(ctx)]
        raise ValueError(
            f"Cannot restore callback states from {file}: the checkpoint has stateful callbacks "
            f"{saved_names} (class@position) but this run has {current_names}. Resume with the "
            "same callbacks, or pass restore_callbacks_state=False."
        )
    for entry, cb in pairs:
        if entry["state"] is not None and not callable(getattr(cb, "load_state_dict", None)):
            raise ValueError(
                f"Cannot restore the state of callback {type(cb).__qualname__}: it has a "
                "state_dict() but no load_state_dict() method."
            )
    return pairs


def _restore_callbacks(ctx: Context, saved: list[dict[str, Any]]) -> None:
    for entry, cb in match_callbacks(ctx, saved) or []:
        load = getattr(cb, "load_state_dict", None)
        if entry["state"] is not None and load is not None:
            load(entry["state"])

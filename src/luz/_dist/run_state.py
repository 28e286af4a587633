"""A process group's part of a training checkpoint: every rank's random streams and data
position, saved under ``"distributed"``, and what a resume takes back from them (each rank its
own when the number of processes is unchanged, else rank 0's, which the run's top-level entries
hold)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from luz._dist.collectives import gather_objects
from luz._dist.fsdp import is_sharded
from luz._dist.sharding import shard_sampler
from luz._persist.rng import get_rng_state
from luz.accelerator import unwrap_loader

if TYPE_CHECKING:
    from luz.context import Context


def in_process_group(ctx: Context) -> bool:
    """Whether this run is one of several processes training together (``torchrun``)."""
    return ctx.accelerator is not None and ctx.accelerator.distributed


def shards_state(ctx: Context) -> bool:
    """Whether this fit's checkpoints are sharded directories: its model is sharded (FSDP)."""
    return in_process_group(ctx) and is_sharded(ctx.model)


def rank_states(ctx: Context, loaders: dict[str, Any]) -> dict[str, Any]:
    """``{"distributed": ...}``: the world size, every rank's random streams (those of
    ``loaders`` included), the training sampler's seed and, with ``fit(steps_per_epoch=)``,
    every rank's position in the data; ``{}`` in one process. Every rank must call it."""
    if not in_process_group(ctx):
        return {}
    sampler = shard_sampler(unwrap_loader(ctx.train_data))
    stream = ctx.train_stream
    return {
        "distributed": {
            "world_size": ctx.accelerator.world_size if ctx.accelerator is not None else 1,
            "rng": gather_objects(get_rng_state(loaders)),
            "sampler_seed": None if sampler is None else int(sampler.seed),
            **({} if stream is None else {"streams": gather_objects(stream.state_dict())}),
        }
    }


def _own_entry(ctx: Context, state: dict[str, Any], key: str) -> Any:
    # This rank's saved entry when the world size is unchanged, else None (then rank 0's).
    saved, accelerator = state.get("distributed"), ctx.accelerator
    if saved is None or key not in saved or not in_process_group(ctx) or accelerator is None:
        return None
    return saved[key][accelerator.rank] if saved["world_size"] == accelerator.world_size else None


def rng_to_restore(ctx: Context, state: dict[str, Any]) -> Any:
    """The random streams this rank takes back from checkpoint ``state``."""
    own = _own_entry(ctx, state, "rng")
    return state.get("rng") if own is None else own


def position_to_restore(ctx: Context, state: dict[str, Any]) -> Any:
    """The position in the training data this rank takes back from checkpoint ``state``."""
    own = _own_entry(ctx, state, "streams")
    return state["stream"] if own is None else own


def restore_sampler_seed(ctx: Context, state: dict[str, Any]) -> None:
    """Give the training sampler the seed checkpoint ``state`` saved, in a process group."""
    saved = state.get("distributed")
    if saved is None or not in_process_group(ctx) or saved["sampler_seed"] is None:
        return
    sampler = shard_sampler(unwrap_loader(ctx.train_data))
    if sampler is not None:
        sampler.seed = int(saved["sampler_seed"])

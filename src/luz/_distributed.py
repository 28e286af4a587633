"""Running under ``torchrun``: the process group, the few collectives pyluz needs, and teardown.

Everything here is PyTorch's own machinery (``torch.distributed`` and
``DistributedDataParallel``); pyluz adds no communication layer. Collectives run at phase and
epoch boundaries only (metric reduction, the stop agreement, checkpoint RNG states), never per
batch: per batch, DDP's gradient all-reduce is the only communication.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import weakref
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

_created_by_luz = False
_wrappers: list[weakref.ref[nn.Module]] = []


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset or not a number)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def torchrun_environment() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return env_world_size() > 1 and "RANK" in os.environ and "LOCAL_RANK" in os.environ


def group_ready() -> bool:
    """Whether a default process group exists."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if group_ready() else 0


def world_size() -> int:
    """The number of processes in the default group (1 without one)."""
    return dist.get_world_size() if group_ready() else 1


def local_rank() -> int:
    """``LOCAL_RANK`` from the environment (0 when unset): the device index on this machine."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def is_main_process() -> bool:
    """``False`` only on ranks other than 0 of an initialised process group."""
    return rank() == 0


def ensure_process_group(backend: str, timeout: timedelta) -> None:
    """Initialise the default process group from the ``torchrun`` environment unless the user
    already has. A group pyluz creates is destroyed at interpreter exit (`_teardown`)."""
    global _created_by_luz
    if group_ready():
        return
    if not dist.is_available():
        raise RuntimeError("Distributed training needs a PyTorch build with torch.distributed.")
    missing = [key for key in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE") if key not in os.environ]
    if missing:
        raise RuntimeError(
            f"Accelerator(distributed=True) found no process group and no torchrun environment "
            f"(missing {', '.join(missing)}). Launch with `torchrun --nproc-per-node=N script.py`, "
            "or call torch.distributed.init_process_group() yourself first."
        )
    dist.init_process_group(backend=backend, timeout=timeout)
    _created_by_luz = True
    atexit.register(_teardown)


def track_wrapper(wrapper: nn.Module) -> None:
    """Remember a DDP wrapper (weakly), so teardown can wait for it to be gone."""
    _wrappers.append(weakref.ref(wrapper))


def _teardown() -> None:
    # Destroying the group while a DDP wrapper (its reducer) is alive, or leaving both alive
    # to the interpreter's own shutdown, can abort the process at exit ("terminate called
    # without an active exception"). So: drop what keeps a wrapper alive after an uncaught
    # error (the traceback kept for post-mortem debugging), collect cycles, then destroy.
    if not (_created_by_luz and group_ready()):
        return
    failed = getattr(sys, "last_value", None) is not None  # exiting on an uncaught error
    for name in ("last_exc", "last_traceback", "last_value", "last_type"):
        if hasattr(sys, name):
            setattr(sys, name, None)
    gc.collect()
    if any(ref() is not None for ref in _wrappers):
        return  # someone still holds a wrapper: leave the group to the interpreter
    if not failed:
        # Wait until every rank is here, so no rank tears down its connections while a peer
        # still uses them. Skipped after an error: that rank must exit at once, so torchrun
        # can stop the others.
        try:
            if dist.get_backend() == "gloo":
                dist.monitored_barrier(timeout=timedelta(seconds=60))
            else:
                dist.barrier()
        except Exception:  # a peer is gone: destroying our side is all that is left
            pass
    dist.destroy_process_group()


# -- collectives (phase and epoch boundaries only) ---------------------------------------------


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable, CPU tensors), in rank order, on every rank."""
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on any rank (one all-reduce of one number)."""
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def sum_ints(value: int, device: torch.device) -> int:
    """The sum of an int over all ranks."""
    total = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return int(total.item())


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in nested lists/tuples/dicts moved to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, list | tuple):
        moved = [to_cpu(v) for v in value]
        return type(value)(moved) if not hasattr(value, "_fields") else type(value)(*moved)
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    return value


def sync_random_state() -> None:
    """Give every rank rank 0's Python, NumPy and torch random state (one broadcast).

    Called at the start of a distributed fit, so the validation split, the sampler seed and
    any later draw are the same on every rank without the user seeding each process alike.
    """
    from luz._rng import get_rng_state, set_rng_state

    state = broadcast_object(get_rng_state() if rank() == 0 else None)
    if rank() != 0:
        cuda = state.get("cuda") or []
        if len(cuda) != (torch.cuda.device_count() if torch.cuda.is_available() else 0):
            state = {**state, "cuda": []}
        set_rng_state(state)


def check_parameters_agree(model: nn.Module, device: torch.device, epoch: int) -> None:
    """Raise on every rank if the model's parameters differ between ranks (one all-gather of a
    few numbers per epoch): the sign of a custom step that bypassed the DDP wrapper."""
    with torch.no_grad():
        sums = [p.detach().double().sum() for p in model.parameters()]
        if not sums:
            return
        fingerprint = torch.stack(sums).to(device)
    gathered = [torch.empty_like(fingerprint) for _ in range(world_size())]
    dist.all_gather(gathered, fingerprint)
    if any(not torch.equal(gathered[0], other) for other in gathered[1:]):
        raise RuntimeError(
            f"The model's parameters differ between processes after epoch {epoch}: gradients "
            "were not averaged. A custom `step()` must run the training forward pass through "
            "`ctx.forward_model` (the DistributedDataParallel wrapper), e.g. "
            "`luz.step.call_model(ctx.forward_model, ctx.input)`, not through the module itself."
        )

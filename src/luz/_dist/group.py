"""Running under ``torchrun``: detecting it, this process's place in the group, and the
process group's set-up and teardown.

Everything in `luz._dist` is PyTorch's own machinery (``torch.distributed`` and
``DistributedDataParallel``); pyluz adds no communication layer.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import weakref
from datetime import timedelta
from typing import TYPE_CHECKING

import torch.distributed as dist
from torch import nn

if TYPE_CHECKING:
    from torch.distributed.distributed_c10d import Store

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
    store = elastic_store(timeout)
    if store is None:
        dist.init_process_group(backend=backend, timeout=timeout)
    else:
        this_rank = int(os.environ["RANK"])
        dist.init_process_group(
            backend=backend, timeout=timeout, store=store, rank=this_rank, world_size=env_world_size()
        )
    _created_by_luz = True
    atexit.register(_teardown)


def elastic_store(timeout: timedelta) -> Store | None:
    """Under ``torchrun`` (``TORCHELASTIC_RESTART_COUNT`` set): the launcher's store, reached
    as ``env://`` does (``MASTER_ADDR``/``MASTER_PORT``), with its keys namespaced by the restart
    count; ``None`` otherwise (``init_process_group`` then reads the environment itself).

    Why: the launcher's store outlives its workers. After a worker dies and ``torchrun
    --max-restarts`` starts the group again, the keys the dead group wrote (its Gloo
    addresses among them) are still there, and a restarted rank can read a dead peer's address
    and time out connecting to it. Under ``luz/restart<N>/`` each generation of workers only
    sees its own keys.
    """
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None:
        return None
    from torch.distributed.distributed_c10d import PrefixStore
    from torch.distributed.rendezvous import rendezvous

    store, _, _ = next(rendezvous("env://", timeout=timeout))  # env:// builds the same client
    return PrefixStore(f"luz/restart{restart}/", store)


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

"""Fully sharded data parallel training with PyTorch's FSDP2 (``fully_shard``).

`shard_model` shards a model in place: ``fully_shard`` on each module to shard (by default
each direct child that holds parameters), then on the root. Its parameters become ``DTensor``
shards (each rank holds a slice along dim 0), and so do their gradients and the optimizer
state built over them. A forward pass all-gathers each group's parameters, backward
reduce-scatters the gradients.

Every FSDP forward pass is a collective, so every rank must run the same number of them.
Evaluation and prediction deal batches out unevenly (a rank may get one fewer), so they run
inside `gathered`: the parameters are all-gathered once, and forward passes need no
communication until the parameters are sharded again.

``torch.distributed.fsdp`` and ``torch.distributed.checkpoint`` are imported when first used
(about a second), not by ``import luz``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from luz._dist.collectives import any_rank

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh
    from torch.distributed.fsdp import FSDPModule


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` was sharded with ``fully_shard`` (FSDP2)."""
    if "torch.distributed.fsdp" not in sys.modules:  # nothing can be sharded yet: stay light
        return False
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def user_class(model: nn.Module) -> type[nn.Module]:
    """The class of ``model`` before ``fully_shard`` swapped it for ``FSDP<Class>``."""
    cls = type(model)
    if is_sharded(model):
        from torch.distributed.fsdp import FSDPModule

        for base in cls.__mro__[1:]:
            if issubclass(base, nn.Module) and not issubclass(base, FSDPModule):
                return base
    return cls


def device_mesh(device: torch.device, world: int) -> DeviceMesh:
    """A one-dimensional mesh of the ``world`` ranks on ``device``'s type (``"cpu"`` with
    Gloo, ``"cuda"`` with NCCL)."""
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh(device.type, (world,))


def _holds_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def shard_model(
    model: nn.Module, mesh: DeviceMesh, classes: Sequence[type[nn.Module]] | None = None
) -> nn.Module:
    """Shard ``model`` in place and return it: ``fully_shard`` on every submodule whose class
    is in ``classes`` (``None``: every direct child holding parameters), innermost first, then
    on the root."""
    from torch.distributed.fsdp import fully_shard

    if classes:
        kinds = tuple(classes)
        targets = [m for m in model.modules() if m is not model and isinstance(m, kinds)]
    else:
        targets = [child for child in model.children() if _holds_parameters(child)]
    for module in reversed(targets):  # innermost first: a group never contains a sharded one
        if not is_sharded(module):
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def _groups(model: nn.Module) -> list[FSDPModule]:
    return [m for m in model.modules() if is_sharded(m)]  # type: ignore[misc]


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Within the block, a sharded ``model`` holds its full parameters (one all-gather per
    group on entry, on every rank) and its forward passes communicate nothing, so ranks may run
    different numbers of them. On exit the parameters are sharded again. A model that is not
    sharded is left alone."""
    groups = _groups(model)
    for group in groups:
        group.unshard()
        group.set_reshard_after_forward(False)
    try:
        yield
    finally:
        for group in groups:
            group.reshard()
            group.set_reshard_after_forward(True)


def full_state_dict(model: nn.Module) -> dict[str, Any]:
    """The full (unsharded) state dict of a sharded ``model`` as CPU tensors on rank 0, and an
    empty dict on the other ranks. Every rank must call it (it all-gathers the shards)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def local_all_finite(tensors: dict[str, Any]) -> bool:
    """Whether this rank's part of every floating-point tensor is free of NaN and inf (a
    ``DTensor`` counts by its local shard; combine the ranks' answers with a collective)."""
    for value in tensors.values():
        if not isinstance(value, torch.Tensor):
            continue
        local = value.to_local() if hasattr(value, "to_local") else value
        if local.is_floating_point() and not bool(torch.isfinite(local).all()):
            return False
    return True


def finite_on_every_rank(tensors: dict[str, Any]) -> bool:
    """Whether every floating-point tensor is finite on every rank (a collective when a
    process group exists)."""
    finite = local_all_finite(tensors)
    if not (dist.is_available() and dist.is_initialized()):
        return finite
    first: Any = next(iter(tensors.values()), None)
    local = first.to_local() if hasattr(first, "to_local") else first
    device = local.device if isinstance(local, torch.Tensor) else torch.device("cpu")
    return not any_rank(not finite, device)

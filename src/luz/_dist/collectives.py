"""The few collectives pyluz needs, and combining metric state across ranks.

Collectives run at phase and epoch boundaries only (metric reduction, the stop agreement,
checkpoint RNG states), never per batch: per batch, DDP's gradient all-reduce is the only
communication.

A metric declares how each state attribute combines (``dist_reduce``); `reduce_state` gathers
those attributes from every rank (one ``all_gather_object``, tensors moved to the CPU) and
combines them in rank order, so every rank ends with the same state.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from luz._dist.group import world_size
from luz._tree import map_tensors

OPS = ("sum", "max", "min", "cat")


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


# -- metric state --------------------------------------------------------------------------------


def combine(values: list[Any], op: str) -> Any:
    """Combine the per-rank ``values`` of one attribute (rank order); ``None`` is "no state".

    Numbers and tensors: ``sum``, ``max``, ``min`` (elementwise) or ``cat`` (tensors along
    dim 0, lists appended). Dicts combine key by key.
    """
    present = [v for v in values if v is not None]
    if not present:
        return None
    first = present[0]
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for v in present for k in v))
        return {k: combine([v.get(k) for v in present], op) for k in keys}
    if op == "cat":
        if isinstance(first, torch.Tensor):
            return torch.cat(present)
        return [item for v in present for item in v]
    result = first
    for value in present[1:]:
        if op == "sum":
            result = result + value
        elif isinstance(first, torch.Tensor):
            result = torch.maximum(result, value) if op == "max" else torch.minimum(result, value)
        else:
            result = max(result, value) if op == "max" else min(result, value)
    return result


def _device_of(obj: object) -> torch.device:
    for value in vars(obj).values():
        if isinstance(value, torch.Tensor):
            return value.device
        if isinstance(value, dict):
            for item in value.values():
                if isinstance(item, torch.Tensor):
                    return item.device
    return torch.device("cpu")


def reduce_state(metric: object, spec: dict[str, str]) -> None:
    """Replace the attributes named in ``spec`` by their combination over all ranks."""
    for name, op in spec.items():
        if op not in OPS:
            raise ValueError(
                f"{type(metric).__name__}.dist_reduce[{name!r}] is {op!r}; use one of {', '.join(OPS)}."
            )
    device = _device_of(metric)
    cpu = torch.device("cpu")
    local = {name: map_tensors(getattr(metric, name), lambda t: t.to(cpu)) for name in spec}
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    for name, op in spec.items():
        combined = combine([state[name] for state in gathered], op)
        setattr(metric, name, map_tensors(combined, lambda t: t.to(device)))

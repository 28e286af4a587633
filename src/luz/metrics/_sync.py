"""Combining metric state across the processes of a distributed run.

A metric declares how each state attribute combines (``dist_reduce``); `reduce_state` gathers
those attributes from every rank (one ``all_gather_object``, tensors moved to the CPU) and
combines them in rank order, so every rank ends with the same state.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

OPS = ("sum", "max", "min", "cat")


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


def _move(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    if isinstance(value, list):
        return [_move(v, device) for v in value]
    return value


def _cpu(value: Any) -> Any:
    return _move(value, torch.device("cpu"))


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
    local = {name: _cpu(getattr(metric, name)) for name in spec}
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    for name, op in spec.items():
        combined = combine([state[name] for state in gathered], op)
        setattr(metric, name, _move(combined, device))

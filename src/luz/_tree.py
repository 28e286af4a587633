"""The one walker over nested batches and states: tuples (named tuples too), lists and dicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

_SEQUENCES = (tuple, list)  # a constant: `tuple | list` would build a union at every call


def map_tensors(tree: Any, fn: Callable[[torch.Tensor], Any]) -> Any:
    """``tree`` with ``fn`` applied to every tensor in it.

    Tuples keep their type (named tuples too), lists become lists and mappings dicts; anything
    else is returned as it is.

    Example:
        >>> import torch
        >>> map_tensors({"x": (torch.ones(1), 2)}, lambda t: t * 3)
        {'x': (tensor([3.]), 2)}
    """
    if isinstance(tree, torch.Tensor):
        return fn(tree)
    if isinstance(tree, _SEQUENCES):
        # Tensors inline: one call per leaf (``fn``), not two; this walk runs once per batch.
        mapped = [fn(item) if isinstance(item, torch.Tensor) else map_tensors(item, fn) for item in tree]
        if hasattr(tree, "_fields"):  # a named tuple takes its fields as arguments
            return type(tree)(*mapped)
        return type(tree)(mapped) if isinstance(tree, tuple) else mapped
    if isinstance(tree, Mapping):
        return {
            key: fn(value) if isinstance(value, torch.Tensor) else map_tensors(value, fn)
            for key, value in tree.items()
        }
    return tree


def _detached_cpu(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().cpu()


def to_cpu(tree: Any) -> Any:
    """``tree`` with every tensor detached and moved to the CPU (for gathering across ranks)."""
    return map_tensors(tree, _detached_cpu)

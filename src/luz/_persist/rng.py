"""Capturing and restoring every random stream a run draws from, as plain tensors and numbers,
and giving every rank of a distributed fit rank 0's streams.

The states are converted to tensors, lists and numbers so a checkpoint holding them loads with
``torch.load(weights_only=True)``: no pickled NumPy or Python objects.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from luz._dist.collectives import broadcast_object
from luz._dist.group import rank
from luz.accelerator import unwrap_loader


def get_rng_state(loaders: dict[str, Any] | None = None) -> dict[str, Any]:
    """Python ``random``, NumPy's global RNG, torch CPU, every CUDA device, and the explicit
    generators of ``loaders`` (``{role: loader}``), as plain containers."""
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {
            "version": int(version),
            "state": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loaders": {},
    }
    for role, loader in (loaders or {}).items():
        generators = loader_generators(loader)
        if generators:
            state["loaders"][role] = {key: g.get_state() for key, g in generators.items()}
    return state


def set_rng_state(state: dict[str, Any], loaders: dict[str, Any] | None = None) -> None:
    """Restore what `get_rng_state` captured (CUDA streams only where CUDA is available)."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss_next"]))
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    saved_loaders = state.get("loaders") or {}
    for role, loader in (loaders or {}).items():
        generators = loader_generators(loader)
        saved = saved_loaders.get(role, {})
        if set(generators) != set(saved):
            raise ValueError(
                f"The {role} data loader's random generators ({sorted(generators) or 'none'}) do not "
                f"match the checkpoint's ({sorted(saved) or 'none'}): resume with the same data setup."
            )
        for key, generator in generators.items():
            generator.set_state(saved[key])


def sync_random_state() -> None:
    """Give every rank rank 0's Python, NumPy and torch random state (one broadcast).

    Called at the start of a distributed fit, so the validation split, the sampler seed and
    any later draw are the same on every rank without the user seeding each process alike.
    """
    state = broadcast_object(get_rng_state() if rank() == 0 else None)  # rank 0 is the source
    if rank() != 0:
        cuda = state.get("cuda") or []
        if len(cuda) != (torch.cuda.device_count() if torch.cuda.is_available() else 0):
            state = {**state, "cuda": []}
        set_rng_state(state)


def loader_generators(loader: Any) -> dict[str, torch.Generator]:
    """The ``torch.Generator`` objects a loader owns: the loader's own (worker base seeds) and
    its sampler's (shuffling). Loaders luz builds have none: they draw from the global RNG."""
    loader = unwrap_loader(loader)
    found: dict[str, torch.Generator] = {}
    candidates = {
        "loader": getattr(loader, "generator", None),
        "sampler": getattr(getattr(loader, "sampler", None), "generator", None),
        "batch_sampler": getattr(
            getattr(getattr(loader, "batch_sampler", None), "sampler", None), "generator", None
        ),
    }
    seen: set[int] = set()
    for key, generator in candidates.items():
        if isinstance(generator, torch.Generator) and id(generator) not in seen:
            seen.add(id(generator))
            found[key] = generator
    return found

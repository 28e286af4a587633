"""Sharded checkpoints: the state of a fit whose model is sharded (FSDP) as a directory that
``torch.distributed.checkpoint`` (DCP) writes, each rank its own shard.

Layout of a checkpoint directory ``path``::

    path/checkpoint.pt      rank 0: everything but the tensors of the model, optimizers and
                            gradients (records, callback and random states, ...), where those
                            tensors stand as ``{"__dcp__": key}``, and the SHA-256 of every file
                            of the data directory. Written atomically last: it commits the
                            checkpoint.
    path/shards-<id>/       DCP's files: ``.metadata`` and ``__<rank>_0.distcp`` per rank.

Writing: every rank writes its shard into a hidden temporary directory; when all have finished
(DCP's own gather, then the digests gathered on rank 0), rank 0 renames it to
``shards-<id>``, writes ``checkpoint.pt`` atomically (the commit) and deletes the previous
data directory; a final barrier returns on every rank together. A kill at any instant leaves
either the previous checkpoint or the new one; what a killed write leaves is removed at the
next start or write (`remove_uncommitted`).

Reading never runs code from the files: ``checkpoint.pt`` is read with
``torch.load(weights_only=True)`` and checked against its checksum, every data file against
its SHA-256, DCP's ``.metadata`` (a pickle) is read by an unpickler that rebuilds only DCP's
own metadata classes, and only tensor entries are loaded (DCP reads tensors with
``weights_only=True``; its non-tensor entries, which it unpickles, are refused).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from luz._dist.collectives import broadcast_object, gather_objects
from luz._dist.group import rank

if TYPE_CHECKING:
    pass

MANIFEST = "checkpoint.pt"
"""The file of rank 0 that commits a sharded checkpoint (a regular pyluz checkpoint file)."""

DATA_PREFIX = "shards-"
TENSOR_PARTS = ("model", "optimizers", "grads")
"""The parts of a checkpoint whose tensors DCP stores, sharded; the rest stays with rank 0."""

LEAF = "__dcp__"


def is_sharded_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a committed sharded checkpoint directory."""
    return (Path(path) / MANIFEST).is_file()


def checkpoint_exists(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a checkpoint: a file, or a committed sharded directory (a
    directory a killed first write left without its commit holds none)."""
    path = Path(path)
    return path.is_file() or is_sharded_checkpoint(path)


def file_digest(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


# -- the tensors DCP stores ----------------------------------------------------------------------


def split_tensors(tree: Any, path: tuple[str, ...] = ()) -> tuple[Any, dict[str, torch.Tensor]]:
    """``tree`` with every tensor replaced by ``{LEAF: key}``, and the tensors by key (the
    JSON list of the keys leading to it, so keys from any dict stay distinct)."""
    if isinstance(tree, torch.Tensor):
        key = json.dumps(list(path))
        return {LEAF: key}, {key: tree}
    tensors: dict[str, torch.Tensor] = {}
    if isinstance(tree, dict):
        skeleton: dict[Any, Any] = {}
        for k, v in tree.items():
            skeleton[k], found = split_tensors(v, (*path, str(k)))
            tensors.update(found)
        return skeleton, tensors
    if isinstance(tree, list | tuple):
        items = []
        for i, v in enumerate(tree):
            item, found = split_tensors(v, (*path, str(i)))
            items.append(item)
            tensors.update(found)
        return (tuple(items) if isinstance(tree, tuple) else items), tensors
    return tree, tensors


def join_tensors(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of `split_tensors`."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {LEAF}:
            return tensors[skeleton[LEAF]]
        return {k: join_tensors(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list | tuple):
        items = [join_tensors(v, tensors) for v in skeleton]
        return tuple(items) if isinstance(skeleton, tuple) else items
    return skeleton


def leaf_keys(skeleton: Any) -> list[str]:
    """The tensor keys of a skeleton, in order."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {LEAF}:
            return [skeleton[LEAF]]
        return [key for v in skeleton.values() for key in leaf_keys(v)]
    if isinstance(skeleton, list | tuple):
        return [key for v in skeleton for key in leaf_keys(v)]
    return []


# -- writing ---------------------------------------------------------------------------------------


Writer = Callable[[dict[str, Any], Path], None]


def write_sharded(state: dict[str, Any], path: str | os.PathLike[str], write_manifest: Writer) -> None:
    """Write a checkpoint dict whose `TENSOR_PARTS` hold sharded tensors as a sharded
    checkpoint directory at ``path`` (see the module docstring). Every rank calls it with its
    own state; ``write_manifest(state, file)`` writes rank 0's file atomically."""
    from torch.distributed.checkpoint.filesystem import FileSystemWriter
    from torch.distributed.checkpoint.state_dict_saver import save

    path = Path(path)
    if path.is_file():
        raise ValueError(
            f"Cannot write a sharded checkpoint to {str(path)!r}: a file is there (a checkpoint "
            "of a run that was not sharded?). Delete it, or use another path."
        )
    skeleton, tensors = split_tensors({part: state[part] for part in TENSOR_PARTS if part in state})
    writer = rank() == 0
    name = broadcast_object(f"{DATA_PREFIX}{state.get('epoch')}-{secrets.token_hex(4)}" if writer else None)
    temp = path / f".{name}.tmp"
    if writer:
        path.mkdir(parents=True, exist_ok=True)
        remove_uncommitted(path)
    dist.barrier()
    save(tensors, storage_writer=FileSystemWriter(temp, sync_files=True))
    # DCP returns once rank 0 wrote the metadata; each rank hashes its own shard files.
    own = {f.name: file_digest(f) for f in sorted(temp.glob(f"__{rank()}_*"))}
    digests = gather_objects(own)
    if writer:
        files = {".metadata": file_digest(temp / ".metadata")}
        for part in digests:
            files.update(part)
        os.replace(temp, path / name)
        rest = {k: v for k, v in state.items() if k not in TENSOR_PARTS}
        manifest = {**rest, "sharded": {"data": name, "files": files, "skeleton": skeleton}}
        write_manifest(manifest, path / MANIFEST)  # the commit
        remove_uncommitted(path, keep=name)
    dist.barrier()  # every rank returns after the commit


def remove_uncommitted(path: Path, *, keep: str | None = None) -> list[Path]:
    """Delete the data directories of ``path`` that its manifest does not name (temporaries of
    a killed write, the previous checkpoint's data); ``keep``: the committed one."""
    if keep is None:
        keep = _committed_data(path)
    if keep == "*":  # an unreadable manifest: keep everything, reading it says what is wrong
        return []
    removed = []
    for entry in path.iterdir() if path.is_dir() else ():
        stem = entry.name.removeprefix(".")
        if entry.is_dir() and stem.startswith(DATA_PREFIX) and entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _committed_data(path: Path) -> str | None:
    if not is_sharded_checkpoint(path):
        return None
    try:
        state = torch.load(path / MANIFEST, map_location="cpu", weights_only=True)
        name = state["sharded"]["data"]
    except Exception:  # unreadable: keep every data directory, reading it will say what is wrong
        return "*"
    return name if isinstance(name, str) else "*"


def remove_checkpoint(path: str | os.PathLike[str]) -> None:
    """Delete a checkpoint file or sharded checkpoint directory, if there."""
    path = Path(path)
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# -- reading ---------------------------------------------------------------------------------------


# -- restoring -----------------------------------------------------------------------------------

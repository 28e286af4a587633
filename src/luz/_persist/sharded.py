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
import io
import json
import os
import pickle
import secrets
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from luz._dist.collectives import any_rank, broadcast_object, gather_objects
from luz._dist.fsdp import local_all_finite
from luz._dist.group import rank
from luz._persist.verify import damaged

if TYPE_CHECKING:
    from torch.distributed.checkpoint.metadata import Metadata

MANIFEST = "checkpoint.pt"
"""The file of rank 0 that commits a sharded checkpoint (a regular pyluz checkpoint file)."""

DATA_PREFIX = "shards-"
TENSOR_PARTS = ("model", "optimizers", "grads")
"""The parts of a checkpoint whose tensors DCP stores, sharded; the rest stays with rank 0."""

LEAF = "__dcp__"

_METADATA_CLASSES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "MetadataIndex",
        "StorageMeta",
        "TensorProperties",
        "TensorStorageMetadata",
        "ChunkStorageMetadata",
        "BytesStorageMetadata",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}
"""What DCP's ``.metadata`` pickle may name (plain data classes, enums and torch.Size)."""


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


def check_files(state: dict[str, Any], directory: Path) -> Path:
    """Check the ``"sharded"`` part of a manifest read from ``directory`` and every data file
    against its SHA-256; returns the data directory.

    Raises:
        ValueError: the part is malformed, a file is missing, or its content does not match.
    """
    where = repr(str(directory))
    sharded = state.get("sharded")
    files = sharded.get("files") if isinstance(sharded, dict) else None
    data = sharded.get("data") if isinstance(sharded, dict) else None
    if not (isinstance(data, str) and isinstance(files, dict) and isinstance(sharded, dict)):
        raise damaged(where, "sharded", "is not a {data, files, skeleton} entry")
    if "skeleton" not in sharded or "/" in data or data.startswith(".") or ".metadata" not in files:
        raise damaged(where, "sharded", f"names the data directory {data!r} and files {sorted(files)}")
    folder = directory / data
    for name, digest in files.items():
        file = folder / str(name)
        if "/" in str(name) or not file.is_file():
            raise damaged(where, f"sharded file {data}/{name}", "is missing (a shard was lost or deleted)")
        if file_digest(file) != digest:
            raise damaged(
                where, f"sharded file {data}/{name}", "does not match its SHA-256 (damaged or edited)"
            )
    return folder


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = name in _METADATA_CLASSES.get(module, ())
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            allowed = True
        if not allowed:
            raise pickle.UnpicklingError(f"refusing to rebuild {module}.{name}")
        return super().find_class(module, name)


def read_metadata(folder: Path, where: str, files: dict[str, Any] | None = None) -> Metadata:
    """DCP's metadata of ``folder``, rebuilt from DCP's own classes only (never runs code);
    ``files``: the data files whose digests were checked, the only ones it may refer to."""
    from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

    try:
        metadata = _MetadataUnpickler(io.BytesIO((folder / ".metadata").read_bytes())).load()
    except Exception as error:
        raise damaged(where, "sharded metadata", f"cannot be read safely ({error})") from error
    if not isinstance(metadata, Metadata):
        raise damaged(where, "sharded metadata", f"is a {type(metadata).__name__}, not DCP metadata")
    for info in (metadata.storage_data or {}).values():  # only files whose digest was checked
        relative = getattr(info, "relative_path", None)
        if files is not None and relative not in files:
            raise damaged(where, "sharded metadata", f"refers to {relative!r}, which has no checked digest")
    if getattr(metadata, "storage_meta", None) is None:
        metadata.storage_meta = StorageMeta()
    return metadata


def safe_reader(folder: Path, where: str) -> Any:
    """A DCP ``FileSystemReader`` of ``folder`` whose metadata comes from `read_metadata`."""
    from torch.distributed.checkpoint.filesystem import FileSystemReader

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
            metadata = read_metadata(folder, where)
            if metadata.storage_meta is not None:
                metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeReader(folder)


def check_against(
    templates: dict[str, torch.Tensor], saved: list[str], metadata: Metadata, where: str
) -> None:
    """The saved tensor keys are the keys of this fit's ``templates``, and each is a tensor of
    the template's global shape and dtype in DCP's metadata (so nothing but tensors is read)."""
    missing = [json.loads(k) for k in templates if k not in saved]
    unexpected = [json.loads(k) for k in saved if k not in templates]
    if missing or unexpected:
        raise damaged(
            where, "sharded tensors", f"do not fit this fit: missing {missing}, unexpected {unexpected}"
        )
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    for key, template in templates.items():
        entry = metadata.state_dict_metadata.get(key)
        if not isinstance(entry, TensorStorageMetadata):
            raise damaged(where, f"sharded tensor {json.loads(key)}", "is not a tensor in the metadata")
        if tuple(entry.size) != tuple(template.shape) or entry.properties.dtype != template.dtype:
            raise damaged(
                where,
                f"sharded tensor {json.loads(key)}",
                f"is {entry.properties.dtype} {tuple(entry.size)}, this fit's "
                f"{template.dtype} {tuple(template.shape)}",
            )


def load_tensors(templates: dict[str, torch.Tensor], folder: Path, where: str) -> None:
    """Load the saved tensors into ``templates`` in place (each rank its own shards); DCP
    reshards when the saved layout differs (another world size, or one process)."""
    from torch.distributed.checkpoint.state_dict_loader import load

    alone = not (dist.is_available() and dist.is_initialized())  # one process: no collectives
    with warnings.catch_warnings():  # DCP warns that it loads in one process, as asked
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        load(templates, storage_reader=safe_reader(folder, where), no_dist=alone)


# -- restoring -----------------------------------------------------------------------------------


def check_shards(
    module: torch.nn.Module,
    opts: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
    *,
    model: bool = True,
    optimizers: bool = False,
) -> Callable[[], None]:
    """Check the tensors of a sharded checkpoint ``state`` (from `read_checkpoint`) against
    ``module`` and its optimizers ``opts`` (keys, global shapes, dtypes, in DCP's metadata) and
    return the function that loads and puts back the model's (``model``) and the optimizers'
    (``optimizers``) state. The model may be sharded or not, on any number of ranks or in one
    process: DCP reshards. Nothing is loaded until that function is called (an optimizer
    without state gets its initial state first, by a step with zero gradients and lr 0); it
    reads the model's tensors into new ones and checks that they are finite (on every rank)
    before any is copied into the model.

    Raises:
        ValueError: the checkpoint does not fit (naming its directory and the part).
    """
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    directory = Path(state["sharded"]["directory"])
    where = repr(str(directory))
    folder = directory / state["sharded"]["data"]
    skeleton = state["sharded"]["skeleton"]
    if not isinstance(skeleton, dict):
        raise damaged(where, "sharded skeleton", f"is a {type(skeleton).__name__}, not a dict")
    saved = list(skeleton.get("optimizers", {}))
    if optimizers and saved != list(opts):
        raise ValueError(
            f"Cannot restore optimizer states from {where}: the checkpoint has optimizers "
            f"{saved} but this model has {list(opts)}."
        )
    wanted: dict[str, Any] = {}
    if model:  # fresh tensors of the same sharding: the model changes only once all is read
        current = get_model_state_dict(module)
        wanted["model"] = {
            name: torch.empty_like(value) if isinstance(value, torch.Tensor) else value
            for name, value in current.items()
        }
        params = dict(module.named_parameters())
        grads = skeleton.get("grads", {})
        wanted["grads"] = {name: torch.empty_like(params[name]) for name in grads if name in params}
    if optimizers:  # the optimizers' current state (made by a zero step if empty) as templates
        pairs = opts.items()
        wanted["optimizers"] = {name: get_optimizer_state_dict(module, opt) for name, opt in pairs}
    _, templates = split_tensors(wanted)
    saved_keys = leaf_keys({part: skeleton.get(part, {}) for part in wanted})
    metadata = read_metadata(folder, where, state["sharded"]["files"])
    check_against(templates, saved_keys, metadata, where)

    def restore() -> None:
        load_tensors(templates, folder, where)
        if model:
            weights = join_tensors(skeleton["model"], templates)
            if not finite_on_every_rank(weights):
                raise damaged(where, "model", "holds NaN or infinite values")
            set_model_state_dict(module, weights)
        if optimizers:
            for name, opt in opts.items():
                loaded = join_tensors(skeleton["optimizers"][name], templates)
                set_optimizer_state_dict(module, opt, loaded)
        if model:  # after the optimizers: their zero step for templates cleared the gradients
            loaded = join_tensors(skeleton.get("grads", {}), templates)
            for name, param in module.named_parameters():
                param.grad = loaded.get(name)

    return restore


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

"""Reading a sharded checkpoint directory (see `luz._persist.sharded` for its layout) without
running code from it: every data file checked against its SHA-256, DCP's ``.metadata`` pickle
read by an unpickler that rebuilds only DCP's own metadata classes, each tensor checked against
the fit before anything is loaded, and only tensor entries loaded."""

from __future__ import annotations

import io
import json
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from luz._dist.fsdp import finite_on_every_rank
from luz._persist.sharded import file_digest, join_tensors, leaf_keys, split_tensors
from luz._persist.verify import damaged

if TYPE_CHECKING:
    from torch.distributed.checkpoint.metadata import Metadata


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


def safe_reader(folder: Path, metadata: Metadata) -> Any:
    """A DCP ``FileSystemReader`` of ``folder`` that reads no metadata itself: it gives DCP
    ``metadata``, which `read_metadata` rebuilt safely (and the checks used)."""
    from torch.distributed.checkpoint.filesystem import FileSystemReader

    class SafeReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
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


def load_tensors(templates: dict[str, torch.Tensor], folder: Path, metadata: Metadata) -> None:
    """Load the saved tensors into ``templates`` in place (each rank its own shards), with the
    ``metadata`` `read_metadata` gave; DCP reshards when the saved layout differs (another
    world size, or one process)."""
    from torch.distributed.checkpoint.state_dict_loader import load

    alone = not (dist.is_available() and dist.is_initialized())  # one process: no collectives
    with warnings.catch_warnings():  # DCP warns that it loads in one process, as asked
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        load(templates, storage_reader=safe_reader(folder, metadata), no_dist=alone)


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
        load_tensors(templates, folder, metadata)
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

"""The files `luz.save` and `luz.save_model_weights` write: safetensors files whose metadata
carries a checksum of the tensors and the other metadata (``"sha256"``) and, for a model file,
JSON naming the class, hparams, records and optimizers. Reading verifies the checksum and the
metadata; a state dict written by ``torch.save`` is read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import inspect
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from luz._dist.fsdp import full_state_dict, is_sharded
from luz._persist.checkpoint import FORMAT as CHECKPOINT_FORMAT
from luz._persist.digest import content_digest

MODEL_FORMAT = "pyluz-model"
WEIGHTS_FORMAT = "pyluz-weights"
MODEL_VERSION = 1
DIGEST_KEY = "sha256"
"""The safetensors metadata entry holding the checksum of the tensors and the other metadata
(files without it, from older pyluz or other tools, are read unverified)."""


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state as contiguous CPU tensors; tensors sharing memory (tied weights) are
    copied, since safetensors stores each tensor once. Loading copies into the model, so ties
    built by the constructor survive. For a sharded model: the full tensors on rank 0, nothing
    on the other ranks."""
    tensors: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    # A sharded (FSDP) model's full weights are gathered onto rank 0 (every rank takes part).
    state = full_state_dict(model) if is_sharded(model) else model.state_dict()
    for name, tensor in state.items():
        t = tensor.detach().cpu().contiguous()
        if t.untyped_storage().data_ptr() in storages:
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        tensors[name] = t
    return tensors


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Serialize ``tensors`` with ``metadata`` to safetensors bytes (safetensors imported lazily,
    to keep ``import luz`` light)."""
    from safetensors.torch import save

    data: bytes = save(tensors, metadata={**metadata, DIGEST_KEY: _digest(tensors, metadata)})
    return data


def _digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    # Tensors in name order: safetensors stores them sorted, so the order read back differs.
    content = {k: v for k, v in metadata.items() if k != DIGEST_KEY}
    return content_digest([sorted(content.items()), sorted(tensors.items())])


def read_safetensors(
    path: str | os.PathLike[str], expected: str | None = None, *, metadata_optional: bool = False
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and metadata of a safetensors file, its checksum verified when pyluz wrote
    it, and its format checked against ``expected`` unless ``metadata_optional``."""
    from safetensors import safe_open

    if Path(path).is_dir():
        raise ValueError(f"{str(path)!r} is a directory: pass the file that luz.save() wrote.")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except FileNotFoundError:
        raise
    except Exception as error:  # safetensors raises its own error type for a bad header
        raise ValueError(
            f"Cannot read {str(path)!r}: it is not a safetensors file written by pyluz (it may be "
            f"corrupt, or a pickle file, which pyluz never loads). Details: {error}"
        ) from error
    # Only pyluz's own files are verified: another tool's metadata may use the same key.
    digest = metadata.pop(DIGEST_KEY, None) if str(metadata.get("format", "")).startswith("pyluz-") else None
    if digest is not None and digest != _digest(tensors, metadata):
        raise ValueError(
            f"{str(path)!r} is damaged: its tensors or metadata do not match the checksum saved "
            "with them (a flipped bit on disk, a bad copy or an edit). Nothing was loaded."
        )
    if metadata_optional:
        return tensors, metadata
    if metadata.get("format") != expected:
        raise ValueError(
            f"{str(path)!r} is not a {expected} file (format: {metadata.get('format')!r}). Use "
            "luz.load() for luz.save() files, luz.load_model_weights() for weight files and "
            "luz.load_checkpoint() for checkpoints."
        )
    return tensors, metadata


_FIELDS: dict[str, type | tuple[type, ...]] = {
    "class": str,
    "built_with": str,
    "hparams": dict,
    "opt_hparams": dict,
    "records": dict,
    "optimizer_names": list,
}
"""The fields of a model file's JSON metadata and their JSON types."""


def model_metadata(metadata: dict[str, str], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model file's JSON metadata, checked: an object of the expected version and fields."""
    file = repr(str(path))
    try:
        meta = json.loads(metadata.get("pyluz", ""))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"{file} has metadata that is not valid JSON ({error}): the file is damaged."
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(
            f"{file} has metadata that is a JSON {type(meta).__name__}, not an object: the file is damaged."
        )
    if meta.get("version") != MODEL_VERSION:
        raise ValueError(f"{file} has pyluz model format version {meta.get('version')!r}; expected 1.")
    for field, kind in _FIELDS.items():
        if field not in meta:
            raise ValueError(f"{file} has no {field!r} field in its metadata: the file is damaged.")
        if not isinstance(meta[field], kind):
            raise ValueError(
                f"{file} has a metadata field {field!r} that is a {type(meta[field]).__name__}, not a "
                f"{kind.__name__ if isinstance(kind, type) else kind}: the file is damaged."
            )
    if ":" not in meta["class"] or not all(isinstance(n, str) for n in meta["optimizer_names"]):
        raise ValueError(
            f"{file} has a malformed 'class' ({meta['class']!r}, expected 'module:qualname') or "
            "'optimizer_names' (expected a list of strings) in its metadata: the file is damaged."
        )
    return meta


def find_class(path_text: str, path: str | os.PathLike[str]) -> type[nn.Module]:
    """The class at ``module:qualname`` in an already-imported module, looked up statically
    (no module ``__getattr__``, no descriptors, no import)."""
    module_name, _, qualname = path_text.partition(":")
    hint = f"Import the module that defines it first, or pass module=<the class> to luz.load({str(path)!r})."
    obj: Any = sys.modules.get(module_name)
    if obj is None:
        raise ValueError(
            f"The model class {path_text} is not available: module {module_name!r} is not imported. {hint}"
        )
    for part in qualname.split("."):
        try:
            obj = inspect.getattr_static(obj, part)
        except AttributeError:
            raise ValueError(
                f"The model class {path_text} was not found in the imported modules. {hint}"
            ) from None
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"{path_text} is not an nn.Module subclass, so it is not used. {hint}")
    return obj


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a weights file: safetensors (any tool's, or pyluz's weights) or a
    ``torch.save`` state dict read with ``weights_only=True``."""
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a directory: pass the weights file itself.")
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic != b"PK":  # not a torch.save zip archive: safetensors
        tensors, metadata = read_safetensors(path, metadata_optional=True)
        kind = str(metadata.get("format", ""))
        if kind.startswith("pyluz-") and kind != WEIGHTS_FORMAT:  # other tools write e.g. "pt"
            raise ValueError(
                f"{str(path)!r} is a {metadata['format']} file, not model weights. Use luz.load() "
                "for luz.save() files and luz.load_checkpoint() for checkpoints."
            )
        return tensors
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"Cannot read {str(path)!r} safely: it is corrupt or holds Python objects that only "
            f"pickle could rebuild (pyluz loads with weights_only=True). Details: {error}"
        ) from error
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is a training checkpoint: use luz.load_checkpoint(fitted, path).")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{str(path)!r} does not hold a state dict (a dict of tensors, as torch.save("
            "model.state_dict(), path) writes)."
        )
    return state

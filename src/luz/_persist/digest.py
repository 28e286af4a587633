"""Content checksums: a SHA-256 of a nested value of dicts, lists, tuples, tensors and plain
leaves, independent of the file format it is stored in and of the tensors' devices.

A checkpoint (and a `luz.save` file) carries the digest of its content; the reader recomputes
it, so a flipped bit anywhere in the weights, records or states is caught (``torch.load`` does
not check the zip's CRCs, and safetensors has no checksum of its own).
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import torch

ALGORITHM = "sha256"


def content_digest(value: Any) -> str:
    """The hex SHA-256 of ``value``'s structure and content.

    Dict keys are taken in order (``torch.load`` keeps it), a tensor counts by dtype, shape and
    bytes (moved to the CPU, so the digest does not depend on the device). It costs one pass
    over every tensor's bytes, at write and at read time, next to the write or read itself.
    """
    hasher = hashlib.sha256()
    _feed(hasher, value)
    return hasher.hexdigest()


def _feed(hasher: Any, value: Any) -> None:
    update = hasher.update
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        tensor = tensor.cpu().contiguous()
        update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        if tensor.numel():
            update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    elif isinstance(value, dict):
        update(b"D" + struct.pack("<q", len(value)))
        for key, item in value.items():
            _feed(hasher, key)
            _feed(hasher, item)
    elif isinstance(value, list | tuple):
        update((b"L" if isinstance(value, list) else b"U") + struct.pack("<q", len(value)))
        for item in value:
            _feed(hasher, item)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        update(b"S" + struct.pack("<q", len(data)) + data)
    else:  # None, bool, int, float (repr round-trips floats exactly), and anything else by repr
        text = f"{type(value).__name__}:{value!r}".encode()
        update(b"V" + struct.pack("<q", len(text)) + text)

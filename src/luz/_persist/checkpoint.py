"""Training checkpoints: what a run's state is, how it is written, read and put back.

A checkpoint is one ``torch.save`` file holding only plain containers (dicts, lists, tuples) of
tensors, numbers and strings, so it is read with ``torch.load(weights_only=True)`` and never
runs code. It is written atomically (`luz._persist.atomic`), carries a checksum of its content
(`luz._persist.digest`) and is verified when read (`luz._persist.verify`): a damaged file is a
``ValueError`` naming the file and the part, never a silent resume.

A fit whose model is sharded (``Accelerator(strategy="fsdp")``) writes a directory instead,
each rank its shard of the model, optimizer and gradient tensors (`luz._persist.sharded`),
verified and restored the same way.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import RandomSampler

from luz._dist.fsdp import finite_on_every_rank, local_all_finite
from luz._dist.run_state import (
    rank_states,
    shards_state,
)
from luz._persist import sharded, sharded_read
from luz._persist.atomic import atomic_write_with
from luz._persist.digest import ALGORITHM, content_digest
from luz._persist.plain import plain
from luz._persist.rng import get_rng_state
from luz._persist.verify import check_run_shape, check_structure
from luz.accelerator import is_writer, unwrap_loader

if TYPE_CHECKING:
    from luz.context import Context

FORMAT = "pyluz-checkpoint"
VERSION = 2
"""Version 2 added the ``"checksum"`` entry; version 1 files (no checksum) are still read."""
VERSIONS = (1, 2)
CHECKSUM = "checksum"


def stateful_callbacks(ctx: Context) -> list[tuple[int, Any]]:
    """``(position, callback)`` for each callback of the run that has a ``state_dict``."""
    return [(i, cb) for i, cb in enumerate(ctx.callbacks) if callable(getattr(cb, "state_dict", None))]


def checkpoint_state(ctx: Context) -> dict[str, Any]:
    """The full state of a fit after ``ctx.epoch``: model, optimizers, records, callback
    states (keyed by class name and position) and every random stream.

    In a distributed fit every rank must call it (it gathers each rank's random streams and
    adds them under ``"distributed"``, with the training sampler's seed).
    """
    callbacks = [
        {
            "class": type(cb).__qualname__,
            "position": i,
            "state": plain(cb.state_dict(), type(cb).__qualname__),
        }
        for i, cb in stateful_callbacks(ctx)
    ]
    if shards_state(ctx):  # each rank's shards, optimizer state keyed by parameter name
        model, optimizers = _sharded_states(ctx)
    else:
        model = ctx.model.state_dict()
        optimizers = {name: opt.state_dict() for name, opt in ctx.optimizers.items()}
    return new_checkpoint(
        ctx.epoch,
        model=model,
        grads=leftover_grads(ctx),
        optimizers={name: plain(state, f"optimizer {name!r}") for name, state in optimizers.items()},
        records=plain(ctx.records, "ctx.records"),
        callbacks=callbacks,
        rng=get_rng_state(run_loaders(ctx)),
        run=run_shape(ctx),
        **_stream_state(ctx),
        **rank_states(ctx, run_loaders(ctx)),
    )


def _stream_state(ctx: Context) -> dict[str, Any]:
    # With steps_per_epoch: the position in the training data, so a resume continues mid-pass.
    stream = ctx.train_stream
    return {} if stream is None else {"stream": plain(stream.state_dict(), "the training data's position")}


def _sharded_states(ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model = get_model_state_dict(ctx.model)
    optimizers = {name: get_optimizer_state_dict(ctx.model, opt) for name, opt in ctx.optimizers.items()}
    return model, optimizers


def model_finite(ctx: Context, state: dict[str, Any]) -> bool:
    """Whether the model weights of a checkpoint ``state`` of this fit are all finite (a
    sharded model: on every rank; every rank must call it then)."""
    if shards_state(ctx):
        return finite_on_every_rank(state["model"])
    return local_all_finite(state["model"])


def commit_checkpoint(ctx: Context, state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a checkpoint ``state`` of this fit to ``path``: a file that rank 0 writes, or
    for a sharded model a directory that every rank writes its shard of (every rank must call
    it then)."""
    if shards_state(ctx):
        sharded.write_sharded(state, path, write_checkpoint)
    elif is_writer(ctx.accelerator):
        write_checkpoint(state, path)


def run_shape(ctx: Context) -> dict[str, Any]:
    """What a resume must not change without saying so: the optimizer classes (by name), the
    training batch size, the number of training samples (``None`` when the dataset has no
    length), whether the training data is shuffled, and, with ``fit(steps_per_epoch=n)``,
    ``n`` (absent: an epoch is one pass over the data)."""
    loader = unwrap_loader(ctx.train_data)
    dataset = getattr(loader, "dataset", None)
    try:
        samples = len(dataset) if dataset is not None else None
    except TypeError:  # an IterableDataset without __len__
        samples = None
    sampler = getattr(loader, "sampler", None)
    shuffle = isinstance(sampler, RandomSampler) or bool(getattr(sampler, "shuffle", False))
    batch_size = getattr(loader, "batch_size", None)
    return {
        "optimizers": {
            name: f"{type(opt).__module__}.{type(opt).__qualname__}" for name, opt in ctx.optimizers.items()
        },
        "batch_size": batch_size if isinstance(batch_size, int) else None,
        "samples": samples,
        "shuffle": shuffle,
        **({} if ctx.train_stream is None else {"steps_per_epoch": ctx.train_stream.steps}),
    }


def check_run(ctx: Context, state: dict[str, Any], file: str, *, strict: bool = True) -> None:
    """Compare the run recorded in checkpoint ``state`` with this fit (see
    `luz._persist.verify.check_run_shape`): a ``ValueError`` listing each difference, or with
    ``strict=False`` a ``UserWarning``."""
    check_run_shape(state, run_shape(ctx), file, strict=strict)


def new_checkpoint(epoch: int | None, **parts: Any) -> dict[str, Any]:
    """A checkpoint dict: the format marker and version, ``epoch``, then ``parts`` in order."""
    return {"format": FORMAT, "version": VERSION, "epoch": epoch, **parts}


def model_parts(state: dict[str, Any], *, blank: str) -> dict[str, Any]:
    """A checkpoint's model, optimizer and callback states (what `KeepBestModel` keeps of its
    best epoch), with the state of the callbacks of class ``blank`` dropped (``None``)."""
    return {
        "model": state["model"],
        "optimizers": state["optimizers"],
        "callbacks": [
            entry if entry["class"] != blank else {**entry, "state": None}
            for entry in state.get("callbacks", [])
        ],
    }


def checkpoint_of_parts(epoch: int | None, parts: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint holding only `model_parts` (no records, gradients or random streams)."""
    return new_checkpoint(
        epoch, model=parts["model"], optimizers=parts["optimizers"], callbacks=parts.get("callbacks", [])
    )


def leftover_grads(ctx: Context) -> dict[str, torch.Tensor]:
    """Gradients still held by parameters between epochs. The default step zeroes only the
    stepped optimizer's gradients, so with several optimizers the others' gradients carry over
    into the next batch (and epoch): they are state for an exact resume."""
    return {name: p.grad for name, p in ctx.model.named_parameters() if p.grad is not None}


def run_loaders(ctx: Context) -> dict[str, Any]:
    """The run's loaders by role (``train``, ``valid``), those it has: whose random streams a
    checkpoint holds."""
    loaders = {"train": ctx.train_data, "valid": ctx.valid_data}
    return {role: loader for role, loader in loaders.items() if loader is not None}


def signed(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with the checksum of its content (every entry but the checksum) added."""
    content = {k: v for k, v in state.items() if k != CHECKSUM}
    return {
        **content,
        "version": VERSION,
        CHECKSUM: {"algorithm": ALGORITHM, "digest": content_digest(content)},
    }


def write_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Write a checkpoint dict atomically (temp file in the same directory, fsync, rename),
    with the checksum of its content."""
    state = signed(state)
    atomic_write_with(path, lambda handle: torch.save(state, handle))


def save_checkpoint(ctx: Context, path: str | os.PathLike[str]) -> None:
    """Write the full state of the running fit to ``path`` atomically. Consumes no randomness.

    In a distributed fit every rank calls it and rank 0 writes (a sharded model: every rank
    writes its shard of a checkpoint directory).
    """
    commit_checkpoint(ctx, checkpoint_state(ctx), path)


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` onto the CPU. A sharded
    checkpoint directory gives its manifest (rank 0's part), with every data file checked
    against its SHA-256 and ``state["sharded"]["directory"]`` set; its tensors are loaded when
    it is restored.

    The content is checked against the file's checksum and its structure is checked
    (`luz._persist.verify.check_structure`); the checksum entry is dropped from the result.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file is corrupt, is a directory that is not a committed sharded
            checkpoint (or one whose files are missing or damaged), is not a pyluz checkpoint, does not
            match its checksum, has a malformed part, or would need pickle to load (its payload
            is never run; there is no fallback to full unpickling). The message names the file.
    """
    path = Path(path)
    if path.is_dir():
        return _read_sharded(path)
    try:
        with warnings.catch_warnings():
            # A raw (non-zip) pickle makes torch warn about its protocol before refusing it.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # the unpickler raises anything (IndexError for a CSV file)
        raise ValueError(
            f"Refusing to load {str(path)!r}: it is not a safely loadable checkpoint. Either it is "
            "corrupt or truncated, or it holds Python objects that only pickle could rebuild "
            "(pyluz loads with weights_only=True and never runs code from a file; there is no "
            f"unsafe fallback). Details: {error}"
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a pyluz checkpoint (no format marker {FORMAT!r}); for a model "
            "saved with luz.save() use luz.load()."
        )
    file = repr(str(path))
    verify_checksum(state, file)
    check_structure(state, file)
    return state


def _read_sharded(path: Path) -> dict[str, Any]:
    manifest = path / sharded.MANIFEST
    if not manifest.is_file():
        raise ValueError(
            f"{str(path)!r} is a directory but not a sharded pyluz checkpoint (it has no "
            f"{sharded.MANIFEST!r}: not one, or its first write never committed). Pass a "
            "checkpoint file, or a directory that a sharded (strategy='fsdp') fit wrote."
        )
    state = read_checkpoint(manifest)
    sharded_read.check_files(state, path)
    state["sharded"]["directory"] = str(path)
    return state


def verify_checksum(state: dict[str, Any], file: str) -> None:
    """Check ``state`` against its checksum entry and drop that entry (in place).

    Raises:
        ValueError: the version is unknown, the checksum is missing (version 2) or the content
            does not match it.
    """
    version = state.get("version")
    if version not in VERSIONS:
        raise ValueError(
            f"{file} has pyluz checkpoint format version {version!r}; this pyluz reads versions "
            f"{list(VERSIONS)}. The file is damaged or was written by a newer pyluz."
        )
    saved = state.pop(CHECKSUM, None)
    if version == 1 and saved is None:
        return  # written before checksums existed
    digest = saved.get("digest") if isinstance(saved, dict) else None
    if not isinstance(digest, str) or (isinstance(saved, dict) and saved.get("algorithm") != ALGORITHM):
        raise ValueError(
            f"Checkpoint {file} has no valid {ALGORITHM} checksum of its content: it was damaged or "
            "not written by pyluz's checkpoint writer. Nothing was restored."
        )
    if content_digest(state) != digest:
        raise ValueError(
            f"Checkpoint {file} is damaged: its content does not match its {ALGORITHM} checksum "
            "(a flipped bit on disk, a bad copy or an edit). Nothing was restored; resume from "
            "another checkpoint, or delete this one to start over."
        )

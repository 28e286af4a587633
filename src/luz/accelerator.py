"""Device placement: choose a device, move modules, and move batches as loaders yield them."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel  # loaded by `import torch` already

from luz._dist import fsdp, group
from luz._tree import map_tensors
from luz._validate import check_choice, check_flag, check_optional_count, check_optional_flag, check_real
from luz.data import InMemoryLoader

STRATEGIES = ("ddp", "fsdp")
"""How a distributed fit spreads the model: replicated (``"ddp"``) or sharded (``"fsdp"``)."""

DEFAULT_TIMEOUT = timedelta(minutes=30)
"""The collective timeout of a process group luz creates (PyTorch's Gloo default)."""


def mps_usable() -> bool:
    """MPS counts unless ``LUZ_DISABLE_MPS`` is set, on arm64 machines where torch has it."""
    if os.environ.get("LUZ_DISABLE_MPS", "").lower() not in ("", "0", "false"):
        return False
    return platform.machine() == "arm64" and torch.backends.mps.is_available()


def move_to_device(batch: Any, device: torch.device, non_blocking: bool = True) -> Any:
    """Move every tensor in a nested tuple/list/dict to ``device``."""
    if isinstance(batch, torch.Tensor):  # a bare tensor needs no walk
        return batch.to(device, non_blocking=non_blocking)
    return map_tensors(batch, _mover(device, non_blocking))


def _mover(device: torch.device, non_blocking: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    def move(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.to(device, non_blocking=non_blocking)

    return move


class DeviceLoader:
    """Wraps a loader so every batch it yields is on ``device``. ``len`` is the loader's."""

    def __init__(self, loader: Iterable[Any], device: torch.device) -> None:
        self.loader = loader
        self.device = device

    def __iter__(self) -> Iterator[Any]:
        # `move_to_device`'s walk with the mover built once per pass, not once per batch.
        move = _mover(self.device, True)
        for batch in self.loader:
            yield move(batch) if isinstance(batch, torch.Tensor) else map_tensors(batch, move)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"DeviceLoader({self.loader!r}, device={self.device})"


def in_memory_on_device(
    loader: InMemoryLoader, device: torch.device, free_bytes: int, share: float
) -> InMemoryLoader | None:
    """``loader`` with its tensors moved to ``device`` once (`InMemoryLoader.on_device`), when
    they take at most ``share`` of the ``free_bytes`` there; else ``None`` (batches are then
    moved one by one). The order and the random draws stay those of the CPU loader: the
    permutation is drawn on the CPU and moved once per epoch."""
    if share <= 0 or loader.nbytes() > share * free_bytes:
        return None
    return loader.on_device(device)


def unwrap_loader(loader: Any) -> Any:
    """The user's loader behind a `DeviceLoader` (or the loader itself)."""
    return loader.loader if isinstance(loader, DeviceLoader) else loader


class Accelerator:
    """Chooses the device and prepares models, optimizers and loaders for it.

    Args:
        device_placement: move modules to the device in ``prepare``.
        cpu: force the CPU.
        cuda_index: which CUDA device (default: the current one; ``LOCAL_RANK`` under torchrun).
        distributed: train with ``DistributedDataParallel`` across the processes started by
            ``torchrun``. ``None`` (default): when the environment has ``WORLD_SIZE > 1`` with
            ``RANK`` and ``LOCAL_RANK`` set, or a process group of more than one process exists.
        timeout: the process group's collective timeout (seconds or a ``timedelta``) when luz
            creates the group: a rank whose peers died stops waiting after it.
        ddp_options: keyword arguments for ``DistributedDataParallel`` (e.g.
            ``{"find_unused_parameters": True}``).
        strategy: how a distributed fit spreads the model: ``"ddp"`` (``None``, the default:
            every rank holds the whole model, ``DistributedDataParallel``) or ``"fsdp"``
            (parameters, gradients and optimizer state sharded across ranks with FSDP2's
            ``fully_shard``). Outside ``torchrun`` it has no effect: one process trains the
            whole model.
        fsdp_modules: with ``strategy="fsdp"``, the module classes to shard as units (e.g.
            ``(Block,)``); ``None``: each direct child of the model that holds parameters.
            The root is always sharded last.
        device_data_share: on CUDA, in-memory tensor data (the `luz.data.InMemoryLoader` luz
            builds for tensors and arrays) whose size is at most this share of the device's
            free memory is moved there once, and batches are gathered on the device: no
            per-batch host-to-device copy. ``0`` turns it off (batches are copied as loaded).

    The device is CUDA if available, else MPS (Apple silicon), else CPU; a distributed process
    uses ``cuda:LOCAL_RANK`` (NCCL) or the CPU (Gloo). Distributed mode initialises the process
    group if needed (see ``docs/distributed.md``). Usable on its own in a hand-written loop.

    Example:
        >>> import torch, luz
        >>> from torch import nn
        >>> acc = luz.Accelerator(cpu=True)
        >>> model = nn.Linear(3, 1)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> dl = luz.as_dataloader((torch.randn(8, 3), torch.randn(8, 1)), batch_size=4)
        >>> model, opt, dl = acc.prepare(model, opt, dl)
        >>> for x, y in dl:
        ...     loss = nn.functional.mse_loss(model(x), y)
        ...     loss.backward(); opt.step(); opt.zero_grad()
    """

    def __init__(
        self,
        device_placement: bool = True,
        cpu: bool = False,
        cuda_index: int | None = None,
        *,
        distributed: bool | None = None,
        timeout: float | timedelta = DEFAULT_TIMEOUT,
        ddp_options: dict[str, Any] | None = None,
        strategy: str | None = None,
        fsdp_modules: Iterable[type[nn.Module]] | None = None,
        device_data_share: float = 0.25,
    ) -> None:
        self.device_placement = check_flag(device_placement, "device_placement")
        self.cpu = check_flag(cpu, "cpu")
        self.cuda_index = check_optional_count(cuda_index, "cuda_index", hint="None uses the current device.")
        if check_optional_flag(distributed, "distributed") is None:
            distributed = group.torchrun_environment() or group.world_size() > 1
        self.distributed = bool(distributed)
        if not isinstance(timeout, timedelta):
            seconds = check_real(timeout, "timeout", above=0, hint="Pass seconds or a datetime.timedelta.")
            timeout = timedelta(seconds=seconds)
        self.ddp_options = dict(ddp_options or {})
        self.strategy = _check_strategy(strategy)
        self.fsdp_modules = _check_fsdp_modules(fsdp_modules, self.strategy)
        self._mesh: Any = None
        self.device_data_share = check_real(
            device_data_share,
            "device_data_share",
            minimum=0,
            maximum=1,
            hint="It is the share of free device memory in-memory data may take (0 turns it off).",
        )
        self.device = self._choose_device()
        if self.distributed:
            if self.device.type == "cuda":
                torch.cuda.set_device(self.device)
            group.ensure_process_group("nccl" if self.device.type == "cuda" else "gloo", timeout)

    def _choose_device(self) -> torch.device:
        if self.cpu:
            return torch.device("cpu")
        if torch.cuda.is_available():
            index = self.cuda_index
            if index is None:
                under_torchrun = "LOCAL_RANK" in os.environ
                index = group.local_rank() if under_torchrun else torch.cuda.current_device()
            return torch.device("cuda", index)
        if mps_usable() and not self.distributed:  # MPS has no distributed backend
            return torch.device("mps")
        return torch.device("cpu")

    @property
    def rank(self) -> int:
        """This process's rank (0 when not distributed)."""
        return group.rank() if self.distributed else 0

    @property
    def world_size(self) -> int:
        """The number of processes training together (1 when not distributed)."""
        return group.world_size() if self.distributed else 1

    @property
    def is_main_process(self) -> bool:
        """Whether this process prints progress and writes files (rank 0, or not distributed)."""
        return self.is_writer

    @property
    def is_writer(self) -> bool:
        """Whether this process writes the run's files (rank 0, or not distributed)."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Whether models are sharded across the ranks (``strategy="fsdp"`` under ``torchrun``)."""
        return self.distributed and self.strategy == "fsdp"

    def wrap_for_training(self, model: nn.Module) -> nn.Module:
        """The module to run the training forward pass through: a ``DistributedDataParallel``
        wrapper of ``model`` when distributed (gradients averaged across ranks during
        backward), else ``model`` itself. With ``strategy="fsdp"`` the model is sharded in
        place (``fully_shard``) and returned: build its optimizers after this call. A model
        without trainable parameters or without ``forward`` is not wrapped."""
        trainable = any(p.requires_grad for p in model.parameters())
        if not (self.distributed and trainable and type(model).forward is not nn.Module.forward):
            return model
        if self.sharded:
            if self._mesh is None:
                self._mesh = fsdp.device_mesh(self.device, self.world_size)
            return fsdp.shard_model(model, self._mesh, self.fsdp_modules)
        options = dict(self.ddp_options)
        if self.device.type == "cuda":
            options.setdefault("device_ids", [self.device.index])
        wrapper = DistributedDataParallel(model, **options)
        group.track_wrapper(wrapper)
        return wrapper

    def prepare(self, *objs: Any) -> Any:
        """Prepare each object for the device and return them in order.

        Modules are moved (if ``device_placement``); optimizers are returned as they are
        (PyTorch moves parameters in place); loaders (any other iterable) are wrapped so their
        batches are moved (on the CPU they are returned unchanged); lists and dicts are
        prepared element-wise; ``None`` stays ``None``. One object returns it; several return a
        tuple.

        Raises:
            TypeError: a tensor, array, string, bytes, tuple or non-iterable object.
        """
        prepared = tuple(self._prepare_one(obj) for obj in objs)
        return prepared[0] if len(prepared) == 1 else prepared

    def _prepare_one(self, obj: Any) -> Any:
        if obj is None or isinstance(obj, torch.optim.Optimizer):
            return obj
        if isinstance(obj, nn.Module):
            return obj.to(self.device) if self.device_placement else obj
        if isinstance(obj, list):
            return [self._prepare_one(o) for o in obj]
        if isinstance(obj, dict):
            return {k: self._prepare_one(v) for k, v in obj.items()}
        if isinstance(obj, DeviceLoader):
            return obj
        if isinstance(obj, torch.Tensor | np.ndarray | str | bytes | tuple):
            raise TypeError(_not_preparable(obj))
        if isinstance(obj, Iterable):
            # On the CPU, batches are already in place: skip the per-batch wrapper entirely.
            if self.device.type == "cpu":
                return obj
            if isinstance(obj, InMemoryLoader) and self.device.type == "cuda":
                free, _total = torch.cuda.mem_get_info(self.device)
                moved = in_memory_on_device(obj, self.device, free, self.device_data_share)
                if moved is not None:
                    return moved
            return DeviceLoader(obj, self.device)
        raise TypeError(_not_preparable(obj))

    def __repr__(self) -> str:
        if self.distributed:
            shown = ", strategy='fsdp'" if self.sharded else ""
            return f"Accelerator(device={self.device}, rank={self.rank}, world_size={self.world_size}{shown})"
        return f"Accelerator(device={self.device})"


def is_writer(accelerator: Accelerator | None) -> bool:
    """Whether this process writes files: `Accelerator.is_writer`, or without an accelerator,
    unless it is a rank other than 0 of an initialised process group (e.g. `luz.save` under
    ``torchrun``)."""
    return group.rank() == 0 if accelerator is None else accelerator.is_writer


def _check_strategy(strategy: object) -> str:
    if strategy is None:
        return "ddp"
    hint = "None is DDP; pass strategy='fsdp' to shard the model across ranks."
    return check_choice(strategy, "strategy", STRATEGIES, hint=hint)


def _check_fsdp_modules(classes: object, strategy: str) -> tuple[type[nn.Module], ...] | None:
    if classes is None:
        return None
    if isinstance(classes, type):
        classes = (classes,)
    if isinstance(classes, str | bytes) or not isinstance(classes, Iterable):
        raise TypeError(
            f"Accelerator: `fsdp_modules` must be a tuple of nn.Module subclasses, got "
            f"{type(classes).__name__} {classes!r}. Pass e.g. fsdp_modules=(Block,)."
        )
    found = tuple(classes)
    for cls in found:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(
                f"Accelerator: `fsdp_modules` must hold nn.Module subclasses, got {cls!r}. Pass "
                "the classes themselves, e.g. fsdp_modules=(Block,), not instances or names."
            )
    if strategy != "fsdp":
        raise ValueError(
            f"Accelerator: `fsdp_modules` is only used with strategy='fsdp' (strategy is "
            f"{strategy!r}). Pass strategy='fsdp', or drop fsdp_modules."
        )
    return found


def _not_preparable(obj: object) -> str:
    accepted = (
        "Accelerator.prepare() supports modules, optimizers and data loaders (or lists/dicts "
        f"of them); got {type(obj).__name__}"
    )
    if isinstance(obj, torch.Tensor | np.ndarray):
        how = "torch.as_tensor(array)" if isinstance(obj, np.ndarray) else "tensor"
        return (
            f"{accepted}. Move it with `{how}.to(accelerator.device)`, or batch it with "
            "luz.as_dataloader(...) and prepare the loader."
        )
    if isinstance(obj, tuple):
        return f"{accepted}. Pass the objects as separate arguments, prepare(*objs), or as a list."
    return f"{accepted}."

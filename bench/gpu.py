"""GPU checks for issue 7: no host-device sync in the hot loop, and pyluz's time per step on CUDA.

1. ``sync``: one training epoch with validation, ``verbose=False``, the default callbacks and
   Accuracy plus the loss average, run under ``torch.cuda.set_sync_debug_mode("error")``: any
   host-device synchronisation between ``on_train_begin`` and ``on_train_end`` (and in the
   validation batches) raises. Metrics are computed at phase end, which may sync, so the debug
   mode is switched on after the other callbacks' ``on_train_begin`` / ``on_valid_begin`` and
   off before their ``on_train_end`` / ``on_valid_end``.
   The fit is given tensors, so it also checks that the in-memory data was moved to the device
   once (``Accelerator(device_data_share=...)``) and that gathering batches there never syncs.
2. ``timing``: the get-started CNN (``examples/digits.py``) on the digits data at batch 256,
   Adam, a validation pass each epoch: a hand-written loop over a ``DataLoader`` with
   ``pin_memory`` and ``non_blocking`` copies, pyluz given that ``DataLoader``, pyluz given
   the tensors (gathered on the device), and pyluz given the tensors with
   ``device_data_share=0`` (batches gathered on the host and copied, as before issue 18).
   Variants alternate in one process after a warm-up; the median time per step over the
   rounds is reported with ratios to the hand-written loop.

Run:  python bench/gpu.py                 (both; exits 0 with a message when there is no GPU)
      python bench/gpu.py --rounds 7 --epochs 5
      python bench/gpu.py --device cpu    (the timing on the CPU, to try the script anywhere)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from digits import DigitsCNN, load_data

import luz

BATCH = 256


class SyncDebugOn(luz.Callback):
    """Switches CUDA's sync debug mode to ``error`` once the phase's metrics exist (it runs
    after every default callback's ``on_train_begin`` / ``on_valid_begin``)."""

    weight = float("inf")

    def on_train_begin(self) -> None:
        torch.cuda.set_sync_debug_mode("error")

    on_valid_begin = on_train_begin

    def teardown(self) -> None:
        torch.cuda.set_sync_debug_mode("default")


class SyncDebugOff(luz.Callback):
    """Switches it back before the phase-end metrics are computed (they read values back)."""

    weight = -float("inf")

    def on_train_end(self) -> None:
        torch.cuda.set_sync_debug_mode("default")

    on_valid_end = on_train_end


class DataPlace(luz.Callback):
    """Records where the training and validation tensors live once the fit has started."""

    def __init__(self) -> None:
        self.devices: dict[str, str] = {}

    def on_fit_begin(self) -> None:
        for role, loader in (("train", self.ctx.train_data), ("valid", self.ctx.valid_data)):
            dataset = getattr(loader, "dataset", None)
            tensors = getattr(dataset, "tensors", None)
            self.devices[role] = str(tensors[0].device) if tensors else type(loader).__name__


def check_no_sync(device: torch.device) -> None:
    """Fit one epoch under the sync debug mode; raises if any batch synchronises."""
    (x, y), (xt, yt) = load_data()
    torch.manual_seed(0)
    module = luz.setup(
        DigitsCNN, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[luz.metrics.Accuracy()]
    )
    place = DataPlace()
    fitted = module.fit(
        (x, y),
        epochs=1,
        valid_data=(xt, yt),
        verbose=False,
        callbacks=[SyncDebugOn(), SyncDebugOff(), place],
        accelerator=luz.Accelerator(cpu=device.type == "cpu"),
        dataloader_options={"batch_size": BATCH},
    )
    assert next(fitted.model.parameters()).device.type == device.type
    print(f"in-memory data during the fit: {place.devices}")
    assert all(where.startswith(device.type) for where in place.devices.values()), place.devices
    metrics = fitted.get_metrics()
    print(f"sync check on {device}: one epoch under set_sync_debug_mode('error') passed")
    print(metrics.to_string(index=False))


def _hand_loop(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train: DataLoader[Any],
    valid: DataLoader[Any],
    device: torch.device,
    epochs: int,
) -> None:
    criterion = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        total = torch.zeros((), device=device)
        for xb, yb in train:
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            loss = criterion(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.detach()
        model.eval()
        with torch.no_grad():
            for xb, yb in valid:
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
                total += criterion(model(xb), yb)
        total.item()  # one read per epoch, as pyluz's phase-end metrics do


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_variant(variant: str, device: torch.device, epochs: int) -> float:
    """Seconds per optimizer step for one run of ``variant``."""
    (x, y), (xt, yt) = load_data()
    pin = device.type == "cuda"
    train = DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, drop_last=True, pin_memory=pin)
    valid = DataLoader(TensorDataset(xt, yt), batch_size=BATCH, pin_memory=pin)
    steps = epochs * len(train)
    torch.manual_seed(0)
    _synchronize(device)
    start = time.perf_counter()
    if variant == "hand-written loop":
        model = DigitsCNN().to(device)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        _hand_loop(model, opt, train, valid, device, epochs)
    else:
        data: Any = train if variant == "pyluz, same DataLoader" else (x, y)
        valid_data: Any = valid if variant == "pyluz, same DataLoader" else (xt, yt)
        options = None if variant == "pyluz, same DataLoader" else {"batch_size": BATCH}
        share = 0.0 if variant == "pyluz, tensors, host" else 0.25  # 0: copy each batch over
        luz.setup(DigitsCNN, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam).set_opt_hparams(
            lr=3e-3
        ).fit(
            data,
            epochs=epochs,
            valid_data=valid_data,
            verbose=False,
            accelerator=luz.Accelerator(cpu=device.type == "cpu", device_data_share=share),
            dataloader_options=options,
        )
    _synchronize(device)
    return (time.perf_counter() - start) / steps


def timing(device: torch.device, rounds: int, epochs: int) -> None:
    variants = ("hand-written loop", "pyluz, same DataLoader", "pyluz, tensors", "pyluz, tensors, host")
    for variant in variants:  # warm-up: CUDA context, cuDNN autotuning, allocator
        time_variant(variant, device, 1)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            times[variant].append(time_variant(variant, device, epochs))
    base = statistics.median(times[variants[0]])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\nDigits CNN, batch {BATCH}, {epochs} epochs x {rounds} rounds on {name} (median ms/step)")
    for variant, values in times.items():
        m = statistics.median(values)
        print(f"{variant:<26}{m * 1e3:>8.3f} ms  {m / base:>6.3f}x  (min {min(values) * 1e3:.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--skip-sync", action="store_true", help="only the timing")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("No CUDA device: nothing to measure (use --device cpu to try the timing on the CPU).")
        return
    if device.type == "cuda" and not args.skip_sync:
        check_no_sync(device)
    timing(device, args.rounds, args.epochs)


if __name__ == "__main__":
    main()

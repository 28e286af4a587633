"""Time per optimizer step: pyluz against a hand-written loop and the in-memory floor.

Every variant trains the same MLP the same way (Adam, an ``nn.CrossEntropyLoss()`` object, a
validation pass each epoch, data in memory, one thread) and tracks the mean training loss per
epoch. Variants:

- ``dataloader``: the loop people write by hand over ``DataLoader(TensorDataset)``.
- ``floor``: the same loop slicing shuffled in-memory tensors (no DataLoader at all).
- ``luz_dataloader``: pyluz given that same DataLoader, ``verbose=False``.
- ``luz_tensors``: pyluz given the tensors (its in-memory fast path), ``verbose=False``.
- ``luz_progress``: pyluz on the tensors with the progress bar drawn (to a file).
- ``luz_hooks``: ``luz_tensors`` plus a user callback with 7 empty per-batch hooks, to price a
  callback's hooks (a callback that implements no per-batch hook costs nothing per step).

Each (variant, round) runs in a fresh process; rounds interleave the variants so drift in the
machine's speed hits all of them alike. Reported: the median time per step, ratios to both
baselines measured in the same run, peak RSS, and whether each run trained (loss fell and
validation accuracy is above chance). Import time is measured with ``python -X importtime``.

Run:  python bench/overhead.py                 (batch 32 and 512, 5 rounds)
      python bench/overhead.py --rounds 3 --batch 32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

VARIANTS = ("dataloader", "floor", "luz_dataloader", "luz_tensors", "luz_progress", "luz_hooks")
CONFIGS = {32: {"hidden": 64, "n_train": 8192}, 512: {"hidden": 1024, "n_train": 32768}}


def make_data(n_train: int, n_valid: int) -> tuple[Any, Any, Any, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 10, generator=g)
    x = torch.randn(n_train + n_valid, 32, generator=g)
    y = (x @ w + 0.5 * torch.randn(n_train + n_valid, 10, generator=g)).argmax(dim=1)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def make_model(hidden: int) -> Any:
    from torch import nn

    return nn.Sequential(
        nn.Linear(32, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )


def run_variant(variant: str, batch: int, epochs: int) -> dict[str, Any]:
    """Train once with ``variant``; return seconds per step and what it learned."""
    import torch
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    # Building the first optimizer imports torch's compiler stack (about a second): do it
    # before any timer starts, so it counts against no variant.
    torch.optim.Adam(nn.Linear(1, 1).parameters())
    cfg = CONFIGS[batch]
    x, y, xv, yv = make_data(cfg["n_train"], 2048)
    torch.manual_seed(0)
    steps = epochs * (len(x) // batch)
    losses: list[float] = []

    if variant.startswith("luz"):
        import luz

        class Epochs(luz.Callback):
            def on_epoch_end(self) -> None:
                losses.append(self.context.get_metric("loss", "train"))

        module = luz.setup(
            lambda: make_model(cfg["hidden"]), loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam
        )
        module = module.set_opt_hparams(lr=1e-3)
        if variant == "luz_dataloader":
            data: Any = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, drop_last=True)
            valid: Any = DataLoader(TensorDataset(xv, yv), batch_size=batch)
            options = None
        else:
            data, valid, options = (x, y), (xv, yv), {"batch_size": batch}
        callbacks: list[Any] = [Epochs()]
        if variant == "luz_hooks":

            class Empty(luz.Callback):
                def on_train_batch_begin(self) -> None: ...
                def on_train_batch_after_pred(self) -> None: ...
                def on_train_batch_after_loss(self) -> None: ...
                def on_train_batch_before_backward(self) -> None: ...
                def on_train_batch_before_step(self) -> None: ...
                def on_train_batch_after_step(self) -> None: ...
                def on_train_batch_end(self) -> None: ...

            callbacks.append(Empty())
        verbose = variant == "luz_progress"  # the bar goes to stderr: the parent discards it
        start, cpu_start = time.perf_counter(), time.process_time()
        fitted = module.fit(
            data,
            epochs=epochs,
            valid_data=valid,
            verbose=verbose,
            callbacks=callbacks,
            dataloader_options=options,
        )
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        model = fitted.model
    else:
        model = make_model(cfg["hidden"])
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        criterion = nn.CrossEntropyLoss()  # the loss object pyluz is given, used the same way
        start, cpu_start = time.perf_counter(), time.process_time()
        if variant == "dataloader":
            train_dl = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=True, drop_last=True)
            valid_dl = DataLoader(TensorDataset(xv, yv), batch_size=batch)
        for _ in range(epochs):
            model.train()
            total = torch.zeros(())
            if variant == "dataloader":
                batches: Any = train_dl
            else:
                perm = torch.randperm(len(x))
                batches = ((x[idx], y[idx]) for idx in perm[: len(x) // batch * batch].split(batch))
            for xb, yb in batches:
                loss = criterion(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.detach()
            losses.append(total.item() / (len(x) // batch))
            model.eval()
            with torch.no_grad():
                vbatches = (
                    valid_dl
                    if variant == "dataloader"
                    else zip(xv.split(batch), yv.split(batch), strict=True)
                )
                vtotal = torch.zeros(())
                for xb, yb in vbatches:
                    vtotal += criterion(model(xb), yb)
            _ = vtotal.item()
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start

    with torch.no_grad():
        model.eval()
        accuracy = (model(xv).argmax(dim=1) == yv).float().mean().item()
    return {
        "variant": variant,
        "batch": batch,
        "sec_per_step": elapsed / steps,
        "cpu_sec_per_step": cpu / steps,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "valid_accuracy": accuracy,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def import_time(samples: int = 7) -> dict[str, float]:
    """Median cumulative import seconds, from ``python -X importtime -c "import torch; import luz"``:
    ``torch`` on its own, and ``luz`` once torch is loaded (what pyluz adds)."""
    found: dict[str, list[float]] = {"torch": [], "luz": []}
    for _ in range(samples):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import torch; import luz"],
            capture_output=True,
            text=True,
            check=True,
        ).stderr
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3 and parts[2] in found:
                found[parts[2]].append(int(parts[1]) / 1e6)
    return {name: statistics.median(values) for name, values in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="pyluz overhead benchmark")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, choices=sorted(CONFIGS), action="append")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument(
        "--same-process",
        type=int,
        metavar="PAIRS",
        help="instead: alternate the hand-written DataLoader loop and pyluz on it PAIRS times in "
        "one process (1 epoch each), which removes process-to-process variance",
    )
    parser.add_argument(
        "--pair",
        default="dataloader,luz_dataloader",
        help="with --same-process: the variants to alternate, the first being the baseline "
        "(e.g. floor,luz_tensors)",
    )
    args = parser.parse_args()
    batches = args.batch or sorted(CONFIGS)

    if args.same_process:
        pair = tuple(args.pair.split(","))
        unknown = [v for v in pair if v not in VARIANTS]
        if unknown or len(pair) < 2:
            parser.error(f"--pair takes two or more of {', '.join(VARIANTS)}; got {args.pair!r}")
        for batch in batches:
            same_process(batch, args.same_process, pair)
        return

    if args.variant:  # a child process: one run, JSON on stdout
        print(json.dumps(run_variant(args.variant, batches[0], args.epochs)))
        return

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for batch in batches:
        results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                cmd = [
                    sys.executable,
                    __file__,
                    "--variant",
                    variant,
                    "--batch",
                    str(batch),
                    "--epochs",
                    str(args.epochs),
                ]
                done = subprocess.run(
                    cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
                )
                done.check_returncode()
                out = done.stdout
                results[variant].append(json.loads(out.strip().splitlines()[-1]))
        report(batch, results)
        report(batch, results, key="cpu_sec_per_step")
    times = import_time()
    print(f"\nimport torch: {times['torch']:.3f} s; import luz after torch: +{times['luz']:.3f} s")


def same_process(
    batch: int, pairs: int, variants: tuple[str, ...] = ("dataloader", "luz_dataloader")
) -> None:
    """Alternate ``variants`` (the first is the baseline) in this process and print medians."""
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(pairs):
        for variant in times:
            times[variant].append(run_variant(variant, batch, 1)["sec_per_step"])
    base = statistics.median(times[variants[0]])
    print(f"\nbatch {batch}, one process, {pairs} alternating rounds (1 epoch each)")
    for variant, values in times.items():
        m = statistics.median(values)
        print(f"{variant:<16}{m * 1e3:>9.3f} ms/step (median) {m / base:>6.3f}x  min {min(values) * 1e3:.3f}")


def report(batch: int, results: dict[str, list[dict[str, Any]]], key: str = "sec_per_step") -> None:
    medians = {v: statistics.median(r[key] for r in runs) for v, runs in results.items()}
    base, floor = medians["dataloader"], medians["floor"]
    clock = "wall-clock" if key == "sec_per_step" else "CPU time of the process"
    print(f"\nbatch {batch}, {clock} (median of {len(results['dataloader'])} rounds)")
    print(f"{'variant':<16}{'ms/step':>9}{'vs loop':>9}{'vs floor':>10}{'peak MB':>9}  trained")
    for variant, runs in results.items():
        trained = all(r["last_loss"] < r["first_loss"] and r["valid_accuracy"] > 0.2 for r in runs)
        peak = max(r["peak_rss_mb"] for r in runs)
        m = medians[variant]
        ok = "yes" if trained else "NO"
        print(f"{variant:<16}{m * 1e3:>9.3f}{m / base:>8.2f}x{m / floor:>9.2f}x{peak:>9.0f}  {ok}")


if __name__ == "__main__":
    main()

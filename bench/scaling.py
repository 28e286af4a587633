"""How pyluz's costs grow: per-step time against the number of callbacks and the data size, and
prediction memory against the output size (issue 18, item 4).

1. ``callbacks``: the same fit (an MLP at batch 32, data in memory, one thread) with 0, 10, 100
   extra callbacks that implement only epoch-level hooks: per-step time should stay flat (the
   runner calls a callback only at the breakpoints it implements). For contrast, the same
   counts of callbacks with one empty per-batch hook (``on_train_batch_end``).
2. ``data``: one epoch over 2,048 to 32,768 samples: the epoch time grows linearly, the time per
   step stays flat (batches are gathered by index, no per-epoch copy of the data).
3. ``predict``: peak resident memory of ``predict`` on outputs of 32 to 256 MiB, each in a fresh
   process: it grows linearly, at about twice the output (the per-batch outputs and their
   concatenation exist together once).

Times are process CPU seconds, variants alternating in one process, medians over rounds; on a
shared machine they move by several percent, so each row also gives the Python and C function
calls per step (counted with ``sys.setprofile``), which load cannot change.

Run:  OMP_NUM_THREADS=1 python bench/scaling.py              (all three)
      python bench/scaling.py --only callbacks --rounds 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

import luz

BATCH = 32


class EpochOnly(luz.Callback):
    """A callback with epoch-level hooks only: it costs nothing per batch."""

    def on_epoch_begin(self) -> None:
        self.seen = True

    def on_epoch_end(self) -> None:
        self.seen = False


class PerBatch(luz.Callback):
    """A callback with one empty per-batch hook."""

    def on_train_batch_end(self) -> None:
        pass


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 32, generator=g)
    y = (x @ torch.randn(32, 10, generator=g)).argmax(dim=1)
    return x, y


def _module() -> luz.LuzModule:
    def mlp() -> nn.Module:
        return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    return luz.setup(mlp, loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam)


def seconds_per_step(n: int, callbacks: list[luz.Callback], epochs: int = 1) -> float:
    """CPU seconds per training step of a fit on ``n`` samples (no validation)."""
    x, y = _data(n)
    torch.manual_seed(0)
    start = time.process_time()
    _module().fit((x, y), epochs=epochs, verbose=False, callbacks=callbacks)
    return (time.process_time() - start) / (epochs * (n // BATCH))


class _Window(luz.Callback):
    """Counts calls only during the training batches (first at ``on_train_begin``, last at
    ``on_train_end``), so per-fit set-up does not blur the per-step count."""

    weight = float("inf")  # after every other on_train_begin

    def __init__(self) -> None:
        self.on = False

    def on_train_begin(self) -> None:
        self.on = True

    def on_train_end(self) -> None:
        self.on = False


def calls_per_step(n: int, callbacks: list[luz.Callback]) -> float:
    """Python and C function calls per training step (``n`` samples, one epoch), counted with
    a profile hook during the training batches: a count that machine load cannot change."""
    x, y = _data(n)
    torch.manual_seed(0)
    module = _module()
    window = _Window()
    calls = [0]

    def count(frame: object, event: str, arg: object) -> None:
        if window.on and event in ("call", "c_call"):
            calls[0] += 1

    module.fit((x[:64], y[:64]), epochs=1, verbose=False)  # lazy initialisations, not counted
    sys.setprofile(count)
    try:
        module.fit((x, y), epochs=1, verbose=False, callbacks=[*callbacks, window])
    finally:
        sys.setprofile(None)
    return calls[0] / (n // BATCH)


def _cases(counts: tuple[int, ...]) -> list[tuple[str, type[luz.Callback], int]]:
    return [("epoch hooks", EpochOnly, k) for k in counts] + [
        ("per-batch hook", PerBatch, k) for k in counts if k
    ]


def scaling_callbacks(rounds: int, counts: tuple[int, ...] = (0, 10, 100)) -> dict[str, tuple[float, float]]:
    """For each (kind, count) of extra callbacks: median µs per step and calls per step."""
    cases = _cases(counts)
    times: dict[str, list[float]] = {f"{kind} x{k}": [] for kind, _, k in cases}
    seconds_per_step(2048, [])  # warm-up
    for _ in range(rounds):
        for kind, make, k in cases:
            times[f"{kind} x{k}"].append(seconds_per_step(4096, [make() for _ in range(k)]))
    calls = {f"{kind} x{k}": calls_per_step(4096, [make() for _ in range(k)]) for kind, make, k in cases}
    return {name: (statistics.median(v) * 1e6, calls[name]) for name, v in times.items()}


def scaling_data(rounds: int, sizes: tuple[int, ...] = (2048, 8192, 32768)) -> dict[int, tuple[float, float]]:
    """For each data size (one epoch each): median µs per step and calls per step."""
    times: dict[int, list[float]] = {n: [] for n in sizes}
    seconds_per_step(2048, [])
    for _ in range(rounds):
        for n in sizes:
            times[n].append(seconds_per_step(n, []))
    return {n: (statistics.median(v) * 1e6, calls_per_step(n, [])) for n, v in times.items()}


def predict_peak(mib: int) -> dict[str, float]:
    """In this process: the peak RSS growth of ``predict`` on an output of ``mib`` MiB."""
    n = mib * 2**20 // (256 * 4)  # float32 outputs of 256 columns
    x = torch.randn(n, 8)
    model = nn.Linear(8, 256)
    fitted = luz.setup(lambda: model, loss=nn.MSELoss(), optimizer=torch.optim.SGD).fit(
        (x[:64], torch.zeros(64, 256)), epochs=1, verbose=False
    )
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = fitted.predict(x, dataloader_options={"batch_size": 1024})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert out.shape == (n, 256)
    return {"output_mib": out.numel() * 4 / 2**20, "peak_growth_mib": peak - before}


def scaling_predict(sizes: tuple[int, ...] = (32, 64, 128, 256)) -> list[dict[str, float]]:
    """`predict_peak` for each size, each in a fresh process (the peak RSS never goes down)."""
    rows = []
    for mib in sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--predict-worker", str(mib)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["callbacks", "data", "predict"], action="append")
    parser.add_argument("--predict-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.predict_worker:
        print(json.dumps(predict_peak(args.predict_worker)))
        return
    only = args.only or ["callbacks", "data", "predict"]
    if "callbacks" in only:
        result = scaling_callbacks(args.rounds)
        base, base_calls = result["epoch hooks x0"]
        title = f"4,096 samples, batch {BATCH}, median of {args.rounds}"
        print(f"\nper-step CPU time and function calls vs extra callbacks ({title})")
        for name, (us, calls) in result.items():
            extra = calls - base_calls
            print(f"{name:<22}{us:>9.1f} µs/step {us / base:>7.3f}x {calls:>8.1f} calls/step (+{extra:.1f})")
    if "data" in only:
        per_n = scaling_data(args.rounds)
        base, base_calls = next(iter(per_n.values()))
        print(
            f"\nper-step CPU time and calls vs data size (batch {BATCH}, one epoch, median of {args.rounds})"
        )
        for n, (us, calls) in per_n.items():
            epoch = us * (n // BATCH) / 1e6
            per = f"{us:>9.1f} µs/step {us / base:>7.3f}x {calls:>8.1f} calls/step"
            print(f"{n:>7} samples {per}  epoch {epoch:.3f} s")
    if "predict" in only:
        print("\npredict: peak RSS growth vs output size (fresh process each)")
        for row in scaling_predict():
            ratio = row["peak_growth_mib"] / row["output_mib"]
            out, growth = row["output_mib"], row["peak_growth_mib"]
            print(f"output {out:>6.1f} MiB  peak growth {growth:>7.1f} MiB  {ratio:.2f}x")


if __name__ == "__main__":
    main()

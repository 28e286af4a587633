"""Instructions per training step under callgrind: a noise-free A/B of pyluz's per-step work.

Wall-clock and CPU time on a shared machine move by ±10 % from run to run; the number of
instructions executed does not. This runs the workload of ``peer_overhead.py`` (an MLP
32 -> 64 -> 64 -> 10, Adam, cross-entropy, batch 32, Accuracy, a validation pass per epoch) in
one process under ``valgrind --tool=callgrind``, and counts the instructions of one epoch of each
variant as the difference between a 2-epoch and a 1-epoch run (after a warm-up run of each),
so set-up and imports cancel out:

- ``raw``: a hand-written loop over ``DataLoader(TensorDataset)``, shuffled (the reference);
- ``raw_mem``: a hand-written loop slicing in-memory tensors by a per-epoch permutation (floor);
- ``luz``: pyluz given the tensors; ``luz_dl``: pyluz given the same ``DataLoader`` as ``raw``;
- ``luz_verbose``: ``luz`` with its progress written to a file (one line per epoch).

Instructions are not time (torch's kernels run more instructions per cycle than the
interpreter), but a change that removes Python work per step shows up exactly.

Needs valgrind, its headers (``valgrind/callgrind.h``) and a C compiler. Takes minutes.

Run:  python bench/instructions.py                     (all five variants)
      python bench/instructions.py --variants luz,raw_mem --n-train 4096
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

VARIANTS = ("raw", "raw_mem", "luz", "luz_dl", "luz_verbose")
BATCH = 32
HELPER = """#include <valgrind/callgrind.h>
void cg_on(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_dump(const char *s) { CALLGRIND_DUMP_STATS_AT(s); }
"""


def workload(n_train: int, n_val: int) -> dict[str, Any]:
    """The variants as functions of the number of epochs (data and model as in peer_overhead)."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    import luz

    torch.set_num_threads(1)
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])  # torch's lazy imports, before counting
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_val, 32, generator=g)
    y = (x @ torch.randn(32, 10, generator=g) + torch.randn(n_train + n_val, 10, generator=g)).argmax(1)
    xt, yt, xv, yv = x[:n_train], y[:n_train], x[n_train:], y[n_train:]

    def mlp() -> nn.Module:
        torch.manual_seed(1)
        return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))

    def loaders() -> tuple[DataLoader[Any], DataLoader[Any]]:
        gen = torch.Generator().manual_seed(2)
        train = DataLoader(TensorDataset(xt, yt), batch_size=BATCH, shuffle=True, generator=gen)
        return train, DataLoader(TensorDataset(xv, yv), batch_size=BATCH)

    def raw(epochs: int, in_memory: bool = False) -> None:
        model = mlp()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        train, valid = loaders()
        gen = torch.Generator().manual_seed(2)
        for _ in range(epochs):
            model.train()
            total, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
            if in_memory:
                perm = torch.randperm(n_train, generator=gen)
                xp, yp = xt[perm], yt[perm]
                batches: Any = ((xp[i : i + BATCH], yp[i : i + BATCH]) for i in range(0, n_train, BATCH))
            else:
                batches = train
            for xb, yb in batches:
                opt.zero_grad(set_to_none=True)
                out = model(xb)
                loss = F.cross_entropy(out, yb)
                loss.backward()
                opt.step()
                total += loss.detach() * yb.shape[0]
                correct += (out.argmax(1) == yb).sum()
            model.eval()
            with torch.no_grad():
                vbatches = zip(xv.split(BATCH), yv.split(BATCH), strict=True) if in_memory else valid
                for xb, yb in vbatches:
                    out = model(xb)
                    total += F.cross_entropy(out, yb) * yb.shape[0]
                    correct += (out.argmax(1) == yb).sum()
            total.item()

    def fit(epochs: int, on_loader: bool = False, verbose: bool = False) -> None:
        module = luz.setup(
            mlp(), loss=nn.CrossEntropyLoss(), optimizer=torch.optim.Adam, metrics=[luz.metrics.Accuracy()]
        ).set_opt_hparams(lr=1e-3)
        if on_loader:
            train, valid = loaders()
            module.fit(train, epochs=epochs, valid_data=valid, verbose=False)
            return
        options = {"batch_size": BATCH, "drop_last": False}
        # verbose: the progress output goes to a file, as in peer_overhead's luz_verbose
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stderr(sink),
            contextlib.redirect_stdout(sink),
        ):
            module.fit(
                (xt, yt), epochs=epochs, valid_data=(xv, yv), verbose=verbose, dataloader_options=options
            )

    return {
        "raw": raw,
        "raw_mem": lambda epochs: raw(epochs, in_memory=True),
        "luz": fit,
        "luz_dl": lambda epochs: fit(epochs, on_loader=True),
        "luz_verbose": lambda epochs: fit(epochs, verbose=True),
    }


def worker(helper: str, variants: list[str], n_train: int, n_val: int) -> None:
    """Inside callgrind: warm up, then dump the counts of 1- and 2-epoch runs of each variant."""
    run = workload(n_train, n_val)
    cg = ctypes.CDLL(helper)
    cg.cg_on()
    for name in variants:
        run[name](1)
    for epochs in (1, 2):
        for name in variants:
            cg.cg_dump(b"before")
            run[name](epochs)
            cg.cg_dump(f"ep{epochs}-{name}".encode())


def parse(prefix: str) -> dict[str, int]:
    """``{"ep1-luz": instructions, ...}`` from callgrind's dump files."""
    counts: dict[str, int] = {}
    for path in glob.glob(prefix + "*"):
        with open(path, errors="replace") as f:
            head = f.read(20000)
        label = re.search(r"Client Request: (\S+)", head)
        total = re.search(r"^(?:summary|totals): (\d+)", head, re.MULTILINE)
        if label and total and label.group(1).startswith("ep"):
            counts[label.group(1)] = int(total.group(1))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--n-train", type=int, default=2048)
    parser.add_argument("--n-val", type=int, default=512)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    variants = args.variants.split(",")
    if args.worker:
        worker(args.worker, variants, args.n_train, args.n_val)
        return
    tmp = tempfile.mkdtemp(prefix="luz_callgrind_")
    helper = os.path.join(tmp, "cgctl.so")
    with open(os.path.join(tmp, "cgctl.c"), "w") as f:
        f.write(HELPER)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", helper, f.name], check=True)
    prefix = os.path.join(tmp, "callgrind.out")
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--cache-sim=no",
        "--instr-atstart=no",
        f"--callgrind-out-file={prefix}.%p",
        os.path.realpath(sys.executable),  # the interpreter itself, not a shim script
        __file__,
        "--worker",
        helper,
        "--variants",
        args.variants,
        "--n-train",
        str(args.n_train),
        "--n-val",
        str(args.n_val),
    ]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counts = parse(prefix)
    steps = -(-args.n_train // BATCH)
    per_step = {v: (counts[f"ep2-{v}"] - counts[f"ep1-{v}"]) / steps for v in variants}
    print(
        f"instructions per training step (one epoch incl. validation / {steps} steps), "
        f"{time.perf_counter() - start:.0f} s under callgrind"
    )
    for v in variants:
        bases = [b for b in ("raw", "raw_mem") if b in per_step]
        ratios = "".join(f"  {per_step[v] / per_step[b]:.3f}x {b}" for b in bases)
        print(f"{v:<12}{per_step[v] / 1e3:>10.1f} k{ratios}")


if __name__ == "__main__":
    main()

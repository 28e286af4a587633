"""Train the digits CNN with FSDP2: parameters, gradients and optimizer state sharded across processes.

Run it as a plain script and it starts itself on 2 CPU processes with torchrun (Gloo):

    python examples/fsdp_digits.py            (2 processes, 10 epochs)
    python examples/fsdp_digits.py --quick    (a smoke run: 1 epoch)

or launch it yourself (one GPU per process with NCCL when CUDA is there):

    torchrun --nproc-per-node=2 examples/fsdp_digits.py

``luz.Accelerator(strategy="fsdp")`` shards the model with ``fully_shard`` on each of its
layers that hold parameters, then on the whole model: each process keeps half of every weight
matrix (and of Adam's state) and gathers the rest for each forward pass. Everything else is as
with DDP (``examples/ddp_digits.py``): each process trains on its share of the batches,
metrics are reduced, rank 0 prints and writes. ``AutoResume`` writes a sharded checkpoint
directory (each process its shard); kill the job and rerun it to continue after the last
epoch. ``luz.save`` gathers the full weights on rank 0 into one ordinary file, which
``luz.load`` reads in one process. See ``docs/distributed.md``.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile

import torch
from digits import DigitsCNN, load_data  # the model and data of examples/digits.py
from torch import nn

import luz


def relaunch_with_torchrun(processes: int) -> int:
    """Run this script again on ``processes`` CPU processes with torchrun; its exit status."""
    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={processes}",
        f"--master-port={port}",
        __file__,
        *sys.argv[1:],
    ]
    return subprocess.run(command, check=False).returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--processes", type=int, default=2, help="when not started by torchrun")
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    parser.add_argument("--state", default=os.path.join(tempfile.gettempdir(), "fsdp_digits_state"))
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "fsdp_digits.safetensors"))
    args = parser.parse_args()
    if "LOCAL_RANK" not in os.environ and args.processes > 1:
        sys.exit(relaunch_with_torchrun(args.processes))
    torch.manual_seed(1)

    acc = luz.Accelerator(strategy="fsdp")
    if acc.is_main_process:
        print(f"{acc!r}: {acc.world_size} process(es) x batch {args.batch_size}")

    train, test = load_data()
    fitted = (
        luz.setup(
            DigitsCNN,
            loss=nn.CrossEntropyLoss(),
            optimizer=torch.optim.Adam,
            metrics=[luz.metrics.Accuracy()],
        )
        .set_hparams(num_classes=10)
        .set_opt_hparams(lr=3e-3)
        .fit(
            train,
            epochs=1 if args.quick else args.epochs,
            valid_data=0.2,
            accelerator=acc,
            dataloader_options={"batch_size": args.batch_size},
            callbacks=[luz.callbacks.AutoResume(args.state)],  # a sharded checkpoint directory
        )
    )
    if acc.is_main_process:
        fc1 = fitted.model.fc1.weight
        print(f"fc1.weight: {tuple(fc1.shape)}, this process holds {tuple(fc1.to_local().shape)}")

    evaluation = fitted.evaluate(test, accelerator=acc)  # sharded evaluation, reduced metrics
    predicted = fitted.predict(test[0], accelerator=acc).argmax(dim=1)  # every rank: all of them
    luz.save(fitted, args.out)  # every rank takes part in gathering; rank 0 writes
    if acc.is_main_process:
        print(evaluation)
        accuracy = (predicted == test[1]).double().mean().item()
        reloaded = luz.load(args.out, module=DigitsCNN)  # one process, the full model
        again = reloaded.predict(test[0], accelerator=luz.Accelerator(distributed=False)).argmax(dim=1)
        print(f"luz.load() in one process predicts the same: {bool(torch.equal(again, predicted))}")
        print(f"Test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()

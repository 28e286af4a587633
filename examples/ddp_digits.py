"""Train the digits CNN with DistributedDataParallel: the same script on 1 or N processes.

Launch on 2 processes (CPU with Gloo here; one GPU per process with NCCL when CUDA is there):

    torchrun --nproc-per-node=2 examples/ddp_digits.py
    torchrun --nproc-per-node=2 examples/ddp_digits.py --quick    (a smoke run: 1 epoch)

or run it as a plain script (one process, no DDP):  python examples/ddp_digits.py

pyluz detects torchrun, joins the process group, wraps the model in DDP for training, gives each
process its share of the training data (a ``DistributedSampler``, reshuffled every epoch) and
of the validation/test batches, reduces the metrics across processes, and lets only rank 0
print and write files. Every rank ends with the same fitted model and the same records. The
batch size is per process: with ``--batch-size 32`` on 2 processes each optimizer step sees 64
images. See ``docs/distributed.md``.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import torch
from digits import DigitsCNN, load_data  # the model and data of examples/digits.py
from torch import nn

import luz


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32, help="per process")
    parser.add_argument("--quick", action="store_true", help="one epoch, for smoke tests")
    parser.add_argument("--state", default=os.path.join(tempfile.gettempdir(), "ddp_digits_state.pt"))
    args = parser.parse_args()
    torch.manual_seed(1)

    # Under torchrun this joins the process group (Gloo on CPU, NCCL on cuda:LOCAL_RANK);
    # as a plain script it is an ordinary single-device accelerator.
    acc = luz.Accelerator()
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
            valid_data=0.2,  # the same split on every rank
            accelerator=acc,
            dataloader_options={"batch_size": args.batch_size},
            # Kill the job and rerun the same command: it continues after the last epoch.
            callbacks=[luz.callbacks.AutoResume(args.state)],
        )
    )

    # Every rank evaluates its share of the test batches; the metrics are reduced across ranks.
    evaluation = fitted.evaluate(test, accelerator=acc)
    # Every rank gets all predictions, in order.
    predicted = fitted.predict(test[0], accelerator=acc).argmax(dim=1)
    if acc.is_main_process:
        print(fitted)
        print(evaluation)
        accuracy = (predicted == test[1]).double().mean().item()
        print(f"Test accuracy: {accuracy:.4f}")


if __name__ == "__main__":
    main()

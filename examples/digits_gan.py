"""Generate handwritten digits with a small DCGAN: two named optimizers and no ``forward``.

Shows a model with several optimizers: ``set_optimizers`` returns a dict
``{"discriminator": ..., "generator": ...}``, and for each batch luz's default step runs the
``loss`` method once per optimizer, in that order; the method branches on
``self.ctx.opt_name``. The module has no ``forward``, so luz treats it as the identity and
``ctx.pred`` is the batch of real images. (Each ``loss`` call draws its own noise; the common
PyTorch loop that updates the generator on the fakes the discriminator just judged needs a
``step()`` method instead: docs/gan.md.) A callback draws a grid of generated digits with
matplotlib at the end of training (from ``ctx.model`` on ``ctx.device``) and saves it as a PNG.
Prints the final losses and how a logistic-regression digit classifier, trained on real digits,
reads the generated ones. Data: scikit-learn's bundled 8x8 digits (no download).

Run:  python examples/digits_gan.py                (about 45 s on 2 CPU cores)
      python examples/digits_gan.py --quick        (a smoke run: 1 epoch on 256 images)
      python examples/digits_gan.py --out gan.png  (where to save the grid; default: temp dir)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections import Counter

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt
import torch
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.nn import functional as F

import luz


class Generator(nn.Module):
    """Noise (``latent_dim``) -> 8x8 image in [-1, 1]: a linear layer then two transposed convs."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 64 * 2 * 2),
            nn.Unflatten(1, (64, 2, 2)),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, kernel_size=4, stride=2, padding=1),  # 4x4
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 1, kernel_size=4, stride=2, padding=1),  # 8x8
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    """8x8 image -> one logit (real vs generated): two strided convs and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, kernel_size=4, stride=2, padding=1),  # 4x4
            nn.LeakyReLU(0.2),
            nn.Conv2d(32, 64, kernel_size=4, stride=2, padding=1),  # 2x2
            nn.BatchNorm2d(64),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(64 * 2 * 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


class DCGAN(nn.Module):
    """A generator and a discriminator trained against each other. No ``forward``: luz passes
    the real images through unchanged as ``ctx.pred``."""

    ctx: luz.Context  # set by luz while it fits, evaluates or predicts

    def __init__(self, latent_dim: int = 16) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.generator = Generator(latent_dim)
        self.discriminator = Discriminator()

    def set_optimizers(
        self, lr: float = 2e-3, betas: tuple[float, float] = (0.5, 0.999)
    ) -> dict[str, torch.optim.Optimizer]:
        # The order matters: luz steps the optimizers in dict order for each batch.
        return {
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=lr, betas=betas),
            "generator": torch.optim.Adam(self.generator.parameters(), lr=lr, betas=betas),
        }

    def loss(self, real: torch.Tensor, target: None) -> torch.Tensor:
        """The loss of the optimizer about to step (``self.ctx.opt_name``)."""
        noise = torch.randn(real.shape[0], self.latent_dim, device=real.device)
        fake = self.generator(noise)
        if self.ctx.opt_name == "discriminator":
            # The generator's step last batch also filled the discriminator's gradients, and luz
            # zeroes only the stepped optimizer's: clear them before this step's backward.
            self.discriminator.zero_grad(set_to_none=True)
            real_logits = self.discriminator(real)
            fake_logits = self.discriminator(fake.detach())  # no gradient into the generator
            return F.binary_cross_entropy_with_logits(
                real_logits, torch.ones_like(real_logits)
            ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        # The generator wins when the discriminator calls its images real.
        fake_logits = self.discriminator(fake)
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


@torch.no_grad()
def generate(model: DCGAN, n: int, device: torch.device, seed: int = 0) -> torch.Tensor:
    """``n`` generated images in [0, 1] (eval mode, fixed noise)."""
    was_training = model.training
    model.eval()
    noise = torch.randn(n, model.latent_dim, generator=torch.Generator().manual_seed(seed)).to(device)
    images = (model.generator(noise) + 1) / 2
    model.train(was_training)
    return images.cpu()


class SaveSamples(luz.Callback):
    """At the end of training, saves a grid of generated digits to ``path`` as a PNG."""

    def __init__(self, path: str, rows: int = 6, cols: int = 10) -> None:
        self.path = path
        self.rows = rows
        self.cols = cols

    def on_fit_end(self) -> None:
        ctx = self.context
        images = generate(ctx.model, self.rows * self.cols, ctx.device)  # type: ignore[arg-type]
        fig, axes = plt.subplots(self.rows, self.cols, figsize=(self.cols, self.rows))
        for ax, image in zip(axes.flat, images, strict=True):
            ax.imshow(image[0].numpy(), cmap="gray_r", vmin=0, vmax=1)
            ax.axis("off")
        fig.suptitle(f"Generated digits after {ctx.epoch} epochs")
        fig.savefig(self.path, dpi=80)
        plt.close(fig)
        print(f"Saved {self.rows * self.cols} generated digits to {self.path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--out", default=os.path.join(tempfile.gettempdir(), "gan_digits.png"))
    parser.add_argument("--quick", action="store_true", help="one epoch on 256 images, for smoke tests")
    args = parser.parse_args()
    torch.manual_seed(1)

    digits = load_digits()
    # Scale to [-1, 1] to match the generator's tanh output.
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    if args.quick:
        images = images[:256]
    fitted = luz.setup(DCGAN).fit(
        images,  # a single tensor: batches are 1-tuples, so the target is None
        epochs=1 if args.quick else args.epochs,
        callbacks=[SaveSamples(args.out)],
        dataloader_options={"batch_size": 64},
        verbose=True,
    )
    last = fitted.records["metrics"]["train"][-1]["loss"]
    print(
        f"Final training losses: discriminator {last['discriminator']:.4f}, generator {last['generator']:.4f}"
    )

    # A rough quality check: how a classifier trained on real digits reads the generated ones.
    classifier = LogisticRegression(max_iter=2000).fit(digits.data / 16.0, digits.target)
    fake = generate(fitted.model, 500, fitted.device).reshape(500, 64).numpy()  # type: ignore[arg-type]
    probabilities = classifier.predict_proba(fake)
    counts = Counter(probabilities.argmax(axis=1).tolist())
    print(
        f"A digit classifier reads 500 generated images as {len(counts)} distinct digits "
        f"(most common: {counts.most_common(3)}), mean confidence {probabilities.max(axis=1).mean():.3f}"
    )


if __name__ == "__main__":
    main()

"""A small MNIST digit classifier: reads filled digits in the RePaint benchmark (and the sketch benchmark).

LeNet-style CNN (LeCun et al. 1998, with ReLU, batch norm and dropout): two 3x3 conv pairs with max-pooling,
then a 2-layer head. Input: N x 1 x 28 x 28 float in [0, 1] (white digit on black, as MNIST). ~0.1 M params.

Train (the shipped model, resources/models/mnist-classifier/MODEL_CARD.md):

    python -m engine.ddpm.classifier --out resources/models/mnist-classifier --epochs 3 --threads 1

Use:

    clf = load_classifier()                  # the shipped weights, eval mode, CPU
    labels = predict(clf, images_uint8)      # N x 28 x 28 uint8 -> N int64
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from engine.weights import MODELS_DIR, load_pretrained, save_pretrained

DEFAULT_DIR = MODELS_DIR / "mnist-classifier"


@dataclass
class ClassifierConfig:
    _class_name: str = "DigitClassifier"
    channels: tuple[int, int] = (16, 32)
    hidden: int = 64
    dropout: float = 0.2


class DigitClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or ClassifierConfig()
        c1, c2 = self.config.channels

        def pair(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.MaxPool2d(2))

        self.features = nn.Sequential(pair(1, c1), pair(c1, c2))  # 28 -> 14 -> 7
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(self.config.dropout), nn.Linear(c2 * 49, self.config.hidden),
                                  nn.ReLU(), nn.Dropout(self.config.dropout), nn.Linear(self.config.hidden, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: N x 1 x 28 x 28 in [0, 1] -> logits N x 10."""
        return self.head(self.features((x - 0.1307) / 0.3081))

    def save_pretrained(self, folder: str | Path, training: dict | None = None) -> None:
        save_pretrained(folder, self, self.config, training)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "DigitClassifier":
        return load_pretrained(folder, cls, ClassifierConfig)[0]


def load_classifier(folder: str | Path = DEFAULT_DIR) -> DigitClassifier:
    return DigitClassifier.from_pretrained(folder)


@torch.no_grad()
def predict(net: DigitClassifier, images: np.ndarray, batch: int = 500) -> np.ndarray:
    """N x 28 x 28 uint8 (white on black) -> N predicted labels."""
    net.eval()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).float().div(255).unsqueeze(1)
        out.append(net(x).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 2 pixels (filled digits are sometimes slightly off-centre)."""
    n = x.shape[0]
    pad = F.pad(x, (2, 2, 2, 2))
    dx = torch.randint(0, 5, (n,), generator=g)
    dy = torch.randint(0, 5, (n,), generator=g)
    return torch.stack([pad[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28] for i in range(n)])


def train(out: Path, epochs: int = 3, batch_size: int = 128, lr: float = 3e-3, seed: int = 0, threads: int = 1,
          subset: int = 0) -> dict:
    from engine.datasets import load_mnist

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    xs, ys = load_mnist("train")
    if subset:
        xs, ys = xs[:subset], ys[:subset]
    x = torch.from_numpy(xs).float().div(255).unsqueeze(1)
    y = torch.from_numpy(ys)
    net = DigitClassifier()
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * (len(x) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
    t0 = time.time()
    step = 0
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - batch_size + 1, batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(net(_augment(x[idx], g)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
        print(f"epoch {epoch + 1}/{epochs}: loss {loss.item():.4f}, {time.time() - t0:.0f} s", flush=True)
    net.eval()
    metrics = {"epochs": epochs, "steps": step, "train_images": len(x), "train_time_s": round(time.time() - t0, 1)}
    for split in ("valid", "test"):
        xv, yv = load_mnist(split)
        metrics[f"{split}_accuracy"] = float((predict(net, xv) == yv).mean())
    net.save_pretrained(out, {"metrics": metrics})
    print(json.dumps(metrics), flush=True)
    return metrics


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train the MNIST digit classifier used by the benchmarks")
    p.add_argument("--out", type=Path, default=DEFAULT_DIR)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--subset", type=int, default=0)
    a = p.parse_args(argv)
    train(a.out, a.epochs, a.batch_size, a.lr, a.seed, a.threads, a.subset)


if __name__ == "__main__":
    main()

"""Attribute classifier (smile, glasses) that judges the cVAE's fills in ``benchmarks/face_attributes.py``.

It is trained on procedural portraits from a seed range the cVAE never saw (``data.CLASSIFIER_SEED``), with mild
blur / noise / contrast augmentation so that it reads the attribute rather than the renderer's exact sharpness.
Two independent sigmoid outputs (multi-label), binary cross-entropy.

    python -m engine.face.classifier      # trains it (~3 min on 2 CPU threads)
                                          # into resources/models/face-attr-classifier
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.face.data import CLASSIFIER_SEED, EVAL_SEED, procedural_pool
from engine.weights import MODELS_DIR, load_pretrained, save_pretrained

FOLDER = MODELS_DIR / "face-attr-classifier"


@dataclass
class ClassifierConfig:
    ch: int = 16  # channels of the first conv; the others are 2x, 4x, 4x


class AttributeClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = config or ClassifierConfig()
        ch = self.config.ch
        layers, cin = [], 3
        for c in (ch, ch * 2, ch * 4, ch * 4):
            layers += [nn.Conv2d(cin, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B x 3 x 64 x 64 in [0, 1] -> logits B x 2
        return self.head(self.features(x * 2 - 1).mean((2, 3)))


def to_tensor(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(imgs)).permute(0, 3, 1, 2).float().div_(255.0)


def augment(rng: np.random.Generator, imgs: np.ndarray) -> np.ndarray:
    out = imgs.astype(np.float32)
    for i in range(len(out)):
        if rng.uniform() < 0.5:
            out[i] = cv2.GaussianBlur(out[i], (0, 0), rng.uniform(0.3, 1.2))
        out[i] = (out[i] - 128) * rng.uniform(0.8, 1.2) + 128 + rng.uniform(-20, 20)
    out += rng.normal(0, rng.uniform(0, 6), out.shape).astype(np.float32)
    flip = rng.uniform(size=len(out)) < 0.5
    out[flip] = out[flip, :, ::-1]
    return np.clip(out, 0, 255).astype(np.uint8)


def predict(model: AttributeClassifier, imgs: np.ndarray, batch: int = 256) -> np.ndarray:
    """N x 64 x 64 x 3 uint8 -> N x 2 probabilities (smile, glasses)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(imgs), batch):
            out.append(torch.sigmoid(model(to_tensor(imgs[i:i + batch]).to(device))).cpu().numpy())
    return np.concatenate(out)


def save(model: AttributeClassifier, folder: Path, facts: dict) -> None:
    save_pretrained(folder, model, model.config, facts)


def load(folder: Path = FOLDER) -> AttributeClassifier:
    return load_pretrained(folder, AttributeClassifier, ClassifierConfig)[0]


def train_step(model: AttributeClassifier, opt: torch.optim.Optimizer, rng: np.random.Generator,
               imgs: np.ndarray, labels: np.ndarray) -> float:
    """One augmented multi-label BCE step on N x 64 x 64 x 3 uint8 faces, on the model's device; returns the loss."""
    model.train()
    device = next(model.parameters()).device
    loss = F.binary_cross_entropy_with_logits(model(to_tensor(augment(rng, imgs)).to(device)),
                                              torch.from_numpy(labels).float().to(device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def train(n: int = 8000, steps: int = 900, batch: int = 64, out: Path = FOLDER, log=print) -> AttributeClassifier:
    rng = np.random.default_rng(1)
    torch.manual_seed(1)
    imgs, labels, _, _ = procedural_pool(n, 64, start=CLASSIFIER_SEED, log=log)
    model = AttributeClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    t0 = time.time()
    for step in range(1, steps + 1):
        idx = rng.integers(0, n, batch)
        loss = train_step(model, opt, rng, imgs[idx], labels[idx])
        sched.step()
        if step % 100 == 0:
            log(f"classifier step {step}/{steps} loss {loss:.4f} ({time.time() - t0:.0f} s)")
    ev_imgs, ev_labels, _, _ = procedural_pool(2000, 64, start=EVAL_SEED, log=log)
    acc = ((predict(model, ev_imgs) > 0.5) == (ev_labels > 0.5)).mean(0)
    facts = {"train_seeds": [CLASSIFIER_SEED, CLASSIFIER_SEED + n], "steps": steps, "batch": batch,
             "seconds": round(time.time() - t0), "heldout_accuracy": {"smile": float(acc[0]), "glasses": float(acc[1])},
             "heldout_seeds": [EVAL_SEED, EVAL_SEED + 2000]}
    log(f"held-out accuracy: smile {acc[0]:.4f} glasses {acc[1]:.4f}")
    save(model, out, facts)
    return model


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=8000)
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    train(a.n, a.steps)

"""Training data of the token family (the two domains) and what its two training scripts share.

Domains:
- ``mnist``: MNIST (``engine.datasets.load_mnist``), 28 x 28 grey: the "train" split (50k) to train, "valid" to
  validate; the benchmark reads "test".
- ``face``: the project's procedural portraits (``engine.face.data.procedural_pool``), 64 x 64 RGB. Training seeds
  [0, FACE_TRAIN) lie in the range the face cVAE trains on, apart from the attribute classifier's
  (``CLASSIFIER_SEED``) and the held-out evaluation seeds (``EVAL_SEED``) the benchmarks use; validation seeds
  [FACE_VALID, + 1000) are in the training range but no training face has them.

Distributed training (``torchrun``) goes through ``engine.distributed``: each rank its own shard of the images, only
rank 0 writes; checkpoints through ``engine.weights``' training states.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

FACE_TRAIN = 40_000
FACE_VALID = 9_990_000
DOMAINS = ("mnist", "face")


def domain_images(domain: str, split: str, n: int = 0) -> np.ndarray:
    """N x S x S x C uint8 (C = 1 for MNIST, 3 for faces); ``n`` > 0 keeps the first n."""
    if domain == "mnist":
        from engine.datasets import load_mnist

        images = load_mnist({"train": "train", "valid": "valid", "test": "test"}[split])[0][..., None]
    elif domain == "face":
        from engine.face.data import EVAL_SEED, procedural_pool

        start, count = {"train": (0, FACE_TRAIN), "valid": (FACE_VALID, 1000), "test": (EVAL_SEED, 1000)}[split]
        count = min(count, n) if n else count
        images = procedural_pool(count, 64, start=start, log=None)[0]
    else:
        raise ValueError(f"unknown domain {domain!r} (expected one of {', '.join(DOMAINS)})")
    return images[:n] if n else images


def to_unit(images: np.ndarray):
    """N x S x S x C uint8 -> torch N x C x S x S float in [-1, 1]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def grid_image(rows: list[np.ndarray], scale: int = 2) -> np.ndarray:
    """Rows of N x S x S x C uint8 images -> one picture (grey to RGB), a 2-pixel gap between cells."""
    import cv2

    cols = max(len(r) for r in rows)
    s = rows[0].shape[1]
    out = np.full((len(rows) * (s + 2) + 2, cols * (s + 2) + 2, 3), 40, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            im = np.repeat(im, 3, 2) if im.shape[2] == 1 else im
            out[2 + i * (s + 2):2 + i * (s + 2) + s, 2 + j * (s + 2):2 + j * (s + 2) + s] = im
    return cv2.resize(out, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def save_png(path, rgb: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def save_checkpoint(run, model, opt, step: int, config: dict, elapsed: float, cpu_s: float = 0.0,
                    name: str = "ckpt") -> None:
    """Model, optimiser and RNG state (rank 0 only); ``elapsed`` wall seconds and ``cpu_s`` CPU seconds of the run
    so far, summed over resumed sessions."""
    from engine.weights import save_training_state

    save_training_state(Path(run) / name, {"model": model}, {"opt": opt},
                        {"step": step, "elapsed_s": elapsed, "cpu_s": cpu_s, "config": config})


def load_checkpoint(run, model, opt, name: str = "ckpt") -> tuple[int, float, float]:
    """(step, elapsed wall seconds, CPU seconds) of the run's checkpoint, loaded into ``model`` and ``opt``."""
    from engine.weights import load_training_state

    meta = load_training_state(Path(run) / name, {"model": model}, {"opt": opt})
    return int(meta["step"]), float(meta.get("elapsed_s", 0.0)), float(meta.get("cpu_s", 0.0))

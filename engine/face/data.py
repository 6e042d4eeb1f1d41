"""Training data for the face models: a cached pool of procedural portraits and the four mask regimes.

Seed ranges keep the data sets apart (a portrait is a pure function of its seed):
    cVAE training        [0, pool)
    attribute classifier [CLASSIFIER_SEED, +n)  -- faces the cVAE never saw
    held-out evaluation  [EVAL_SEED, +n)
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.face.generator import make_batch

CLASSIFIER_SEED = 10_000_000
EVAL_SEED = 20_000_000
REGIMES = ("small", "big", "mouth", "eyes")
CACHE = Path(os.environ.get("INPAINT_STUDIO_CACHE", Path.home() / ".cache" / "inpaint-studio"))


def procedural_pool(n: int, res: int = 64, start: int = 0, cache: bool = True, log=print):
    """(images, labels, mouth boxes, eye boxes) for seeds [start, start + n), cached as .npz."""
    path = CACHE / "face" / f"pool_{res}_{start}_{n}.npz"
    if cache and path.exists():
        d = np.load(path)
        return d["images"], d["labels"], d["mouth"], d["eyes"]
    parts = []
    chunk = 2000
    for s in range(start, start + n, chunk):
        parts.append(make_batch(range(s, min(s + chunk, start + n)), res))
        if log:
            log(f"rendered {min(s + chunk, start + n) - start}/{n} faces")
    out = tuple(np.concatenate(p) for p in zip(*parts))
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images=out[0], labels=out[1], mouth=out[2], eyes=out[3])
        tmp.replace(path)
    return out


class PoolSampler:
    """Random batches from an in-memory pool, with horizontal flips (labels are flip-invariant)."""

    def __init__(self, images, labels, mouth, eyes) -> None:
        self.images, self.labels, self.mouth, self.eyes = images, labels, mouth, eyes
        self.res = images.shape[1]

    def batch(self, rng: np.random.Generator, n: int):
        idx = rng.integers(0, len(self.images), n)
        imgs, mouth, eyes = self.images[idx].copy(), self.mouth[idx].copy(), self.eyes[idx].copy()
        flip = rng.uniform(size=n) < 0.5
        imgs[flip] = imgs[flip, :, ::-1]
        for b in (mouth, eyes):
            x0 = b[flip, 0].copy()
            b[flip, 0] = self.res - b[flip, 2]
            b[flip, 2] = self.res - x0
        return imgs, self.labels[idx], mouth, eyes


def box_mask(res: int, box) -> np.ndarray:
    m = np.zeros((res, res), bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    m[max(0, y0):min(res, y1), max(0, x0):min(res, x1)] = True
    return m


def sample_masks(rng: np.random.Generator, res: int, mouth: np.ndarray, eyes: np.ndarray,
                 regimes: np.ndarray) -> np.ndarray:
    """One hole per sample (N x res x res bool) for regime ids 0 small rect, 1 big rect, 2 mouth, 3 eye band.

    Small: sides 10-25 % of the image; big: 30-50 %; anywhere in the central 80 %. Mouth / eyes: the generator's
    (or CelebA's fixed) box, grown by 0-3 pixels on each side so the model does not learn the exact box edges.
    """
    n = len(regimes)
    out = np.zeros((n, res, res), bool)
    lo, hi = int(0.1 * res), int(0.9 * res)
    for i, r in enumerate(regimes):
        if r in (0, 1):
            a, b = (0.10, 0.25) if r == 0 else (0.30, 0.50)
            w, h = (rng.uniform(a, b, 2) * res).astype(int)
            x0 = rng.integers(lo, max(lo + 1, hi - w))
            y0 = rng.integers(lo, max(lo + 1, hi - h))
            out[i, y0:y0 + h, x0:x0 + w] = True
        else:
            box = np.array(mouth[i] if r == 2 else eyes[i], np.int64)
            grow = rng.integers(0, 4, 4) * np.array([-1, -1, 1, 1])
            out[i] = box_mask(res, box + grow)
    return out


def regime_masks(res: int, regime: str, mouth: np.ndarray, eyes: np.ndarray, seed: int = 0) -> np.ndarray:
    """Deterministic evaluation masks for one named regime (benchmarks and the comparison)."""
    rng = np.random.default_rng(seed)
    r = REGIMES.index(regime)
    return sample_masks(rng, res, mouth, eyes, np.full(len(mouth), r))

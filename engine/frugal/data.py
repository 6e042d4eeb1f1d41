"""Training data for single-image learning: random crops from the *known* region only, and synthetic masks.

- Crops (paper Sec. 2.2: "des regions tirees aleatoirement depuis une ou plusieurs images"): a crop position is
  valid only if the crop holds no excluded pixel (the hole, or a held-out test region), so the network never sees
  what it will have to invent. Valid positions come from an integral image of the excluded mask.
- Masks: free-form brush strokes after Yu et al. 2018 ("Free-Form Image Inpainting with Gated Convolution",
  Algorithm 1: random vertices joined by thick lines with round joints), plus rectangles, plus a share of fully
  masked crops (pure texture synthesis: this is what lets a net trained on small crops fill holes larger than its
  receptive field).
"""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def free_form_mask(h: int, w: int, rng: np.random.Generator, max_strokes: int = 4, max_vertex: int = 8,
                   max_width: float = 0.25, max_length: float = 0.4) -> np.ndarray:
    """Yu et al. 2018, Alg. 1: each stroke starts at a random point and walks ``num_vertex`` segments of random
    angle and length, drawn with a brush of random width. Sizes are fractions of min(h, w). Returns bool H x W."""
    mask = np.zeros((h, w), np.uint8)
    side = min(h, w)
    for _ in range(int(rng.integers(1, max_strokes + 1))):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        width = max(2, int(rng.uniform(0.05, max_width) * side))
        angle0 = rng.uniform(0, 2 * math.pi)
        for v in range(int(rng.integers(2, max_vertex + 1))):
            angle = angle0 + rng.uniform(-math.pi / 3, math.pi / 3) + (math.pi if v % 2 else 0.0)
            length = rng.uniform(0.1, max_length) * side
            nx = int(np.clip(x + length * math.cos(angle), 0, w - 1))
            ny = int(np.clip(y + length * math.sin(angle), 0, h - 1))
            cv2.line(mask, (x, y), (nx, ny), 1, width)
            cv2.circle(mask, (nx, ny), width // 2, 1, -1)
            x, y = nx, ny
    return mask.astype(bool)


def rect_mask(h: int, w: int, rng: np.random.Generator, min_frac: float = 0.25, max_frac: float = 0.75) -> np.ndarray:
    """One axis-aligned rectangle with sides in [min_frac, max_frac] of the crop, at a random place."""
    mask = np.zeros((h, w), bool)
    rh = int(rng.uniform(min_frac, max_frac) * h)
    rw = int(rng.uniform(min_frac, max_frac) * w)
    y0 = int(rng.integers(0, h - rh + 1))
    x0 = int(rng.integers(0, w - rw + 1))
    mask[y0:y0 + rh, x0:x0 + rw] = True
    return mask


def training_mask(h: int, w: int, rng: np.random.Generator, p_full: float = 0.15) -> np.ndarray:
    """The training mask mix: p_full fully masked, then free-form, rectangle, or both, in equal shares."""
    u = rng.random()
    if u < p_full:
        return np.ones((h, w), bool)
    kind = rng.integers(0, 3)
    if kind == 0:
        m = free_form_mask(h, w, rng)
    elif kind == 1:
        m = rect_mask(h, w, rng)
    else:
        m = free_form_mask(h, w, rng) | rect_mask(h, w, rng, 0.2, 0.5)
    if not m.any():  # a degenerate stroke: fall back to a rectangle so every sample has a hole
        m = rect_mask(h, w, rng)
    return m


def valid_crop_corners(exclude: np.ndarray, crop: int) -> np.ndarray:
    """Bool map over top-left corners: True where the crop x crop window there holds no excluded pixel.

    A map, not a list of corners: a 12-megapixel photo has 12 million corners (a 190 MB int64 list, 1.7 s)."""
    h, w = exclude.shape
    if h < crop or w < crop:
        return np.zeros((0, 0), bool)
    ii = cv2.integral(exclude.astype(np.uint8), sdepth=cv2.CV_32S)  # (h + 1) x (w + 1) window sums
    return (ii[crop:, crop:] - ii[:-crop, crop:] - ii[crop:, :-crop] + ii[:-crop, :-crop]) == 0


def load_folder(folder: str | Path, limit: int = 16) -> list[np.ndarray]:
    """Up to ``limit`` RGB uint8 images from a folder (sorted by name), for learning from a few images."""
    if not Path(folder).expanduser().is_dir():
        from engine.api import InpaintError

        raise InpaintError(f"also learn from folder: {folder} is not a folder")
    paths = sorted(p for p in Path(folder).expanduser().iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    out = []
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is not None:
            out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


class CropSampler:
    """Draws batches of (crop, mask) pairs from images, each crop free of its image's excluded pixels.

    ``images``: RGB uint8 arrays; ``excludes``: bool arrays of the same H x W (True = never show), or None.
    If no window of size ``crop`` fits anywhere, the crop is shrunk (by multiples of ``multiple``) until one does.
    """

    def __init__(self, images: list[np.ndarray], excludes: list[np.ndarray | None], crop: int, seed: int = 0,
                 multiple: int = 8, p_full: float = 0.15, augment: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.p_full = p_full
        self.augment = augment
        self.images = [np.ascontiguousarray(im) for im in images]
        excludes = [np.zeros(im.shape[:2], bool) if ex is None else ex.astype(bool) for im, ex in zip(images, excludes)]
        size = crop - crop % multiple
        while size >= multiple:
            valid = [valid_crop_corners(ex, size) for ex in excludes]
            counts = np.array([v.sum() for v in valid], np.float64)
            if counts.sum() > 0:
                break
            size -= multiple
        else:
            raise ValueError("no hole-free region of the image is large enough to learn from")
        self.crop = size
        self.valid = valid
        # where at least a quarter of the windows are free, a uniform corner is drawn by rejection (at most 4 draws
        # expected, no list of millions of corners); a mostly excluded image lists its few free corners
        self.sparse = [None if n >= 0.25 * v.size else np.flatnonzero(v) for v, n in zip(valid, counts)]
        self.weights = counts / counts.sum()

    def _corner(self, k: int) -> tuple[int, int]:
        """A uniformly drawn hole-free top-left corner of image ``k``."""
        v = self.valid[k]
        if self.sparse[k] is not None:
            return divmod(int(self.sparse[k][self.rng.integers(0, len(self.sparse[k]))]), v.shape[1])
        while True:
            y, x = int(self.rng.integers(0, v.shape[0])), int(self.rng.integers(0, v.shape[1]))
            if v[y, x]:
                return y, x

    def sample(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        """(batch, crop, crop, 3) uint8 crops and (batch, crop, crop) bool masks."""
        c = self.crop
        crops = np.empty((batch, c, c, 3), np.uint8)
        masks = np.empty((batch, c, c), bool)
        for b in range(batch):
            k = int(self.rng.choice(len(self.images), p=self.weights))
            y, x = self._corner(k)
            crop = self.images[k][y:y + c, x:x + c]
            if self.augment:
                crop = np.flip(crop, axis=1) if self.rng.random() < 0.5 else crop
            crops[b] = crop
            masks[b] = training_mask(c, c, self.rng, self.p_full)
        return crops, masks

"""Training holes: shaped like an editor's (rectangles, brush strokes) and MaskGIT's random token subsets.

Pixel holes (``editor_holes``) are what a person paints: a rectangle (dragged anywhere, often to an edge, so
halves of the image are among them), one to three brush strokes (a random walk drawn with a round brush), or a
rectangle plus a stroke. Token holes are the tokens these touch (``engine.token.fsq.token_hole``).

``training_masks`` builds one batch of token masks for the transformers:

- MaskGIT's schedule (Chang et al. 2022, sec. 3.2): r ~ U(0, 1), mask ratio gamma(r) = cos(pi r / 2), and
  ceil(gamma(r) * n) of the n candidate tokens are masked;
- half of the batch takes all tokens as candidates (the paper's uniform masking), the other half an editor
  hole's tokens: a random gamma(r) share of that hole is masked and the rest of the hole shows its true ids,
  the state of the hole part-way through iterative decoding. For the autoregressive variant (``full_hole``) the
  whole editor hole is masked.

It also gives the pixels nobody knows, for the transformers' known-pixel input (``fsq.known_patches``): a token
at the hole's edge is MASK, but the part of its patch outside the hole is known and tells which way a stroke
leaves the hole.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def rectangle(rng: np.random.Generator, size: int) -> np.ndarray:
    m = np.zeros((size, size), bool)
    w, h = (rng.uniform(0.2, 0.75, 2) * size).astype(int) + 1
    if rng.uniform() < 0.35:  # dragged to an edge: a band or a half of the image
        if rng.uniform() < 0.5:
            h = size if rng.uniform() < 0.5 else h
            w = int(rng.uniform(0.3, 0.65) * size)
        else:
            w = size if rng.uniform() < 0.5 else w
            h = int(rng.uniform(0.3, 0.65) * size)
    x0 = int(rng.integers(0, size - w + 1)) if rng.uniform() > 0.3 else int(rng.choice([0, size - w]))
    y0 = int(rng.integers(0, size - h + 1)) if rng.uniform() > 0.3 else int(rng.choice([0, size - h]))
    m[y0:y0 + h, x0:x0 + w] = True
    return m


def strokes(rng: np.random.Generator, size: int, n: int | None = None) -> np.ndarray:
    """1-3 brush strokes: random walks of 3-8 segments, brush 8-20 % of the side."""
    canvas = np.zeros((size, size), np.uint8)
    for _ in range(n or int(rng.integers(1, 4))):
        pts = [rng.uniform(0, size, 2)]
        angle = rng.uniform(0, 2 * math.pi)
        for _ in range(int(rng.integers(3, 9))):
            angle += rng.normal(0, 0.8)
            step = rng.uniform(0.1, 0.3) * size
            pts.append(np.clip(pts[-1] + step * np.array([math.cos(angle), math.sin(angle)]), 0, size - 1))
        width = max(2, int(rng.uniform(0.08, 0.2) * size))
        cv2.polylines(canvas, [np.round(np.array(pts)).astype(np.int32)], False, 1, width)
    return canvas.astype(bool)


def editor_holes(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """n x size x size bool pixel holes: 45 % rectangles, 40 % strokes, 15 % both."""
    out = np.zeros((n, size, size), bool)
    for i in range(n):
        u = rng.uniform()
        if u < 0.45:
            out[i] = rectangle(rng, size)
        elif u < 0.85:
            out[i] = strokes(rng, size)
        else:
            out[i] = rectangle(rng, size) | strokes(rng, size, 1)
        if not out[i].any():
            out[i, size // 2, size // 2] = True
    return out


def token_holes(pixel_holes: np.ndarray, patch: int) -> np.ndarray:
    """n x S x S pixel holes -> n x g x g bool: tokens touching them (numpy twin of fsq.token_hole)."""
    n, s, _ = pixel_holes.shape
    g = s // patch
    return pixel_holes.reshape(n, g, patch, g, patch).any((2, 4))


def cosine_ratio(r: np.ndarray) -> np.ndarray:
    """MaskGIT's mask schedule gamma(r) = cos(pi r / 2) (Chang et al. 2022, eq. 5 / sec. 3.2)."""
    return np.cos(math.pi * r / 2)


def training_masks(rng: np.random.Generator, n: int, grid: int, patch: int, full_hole: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(masked n x g x g bool: the positions the transformer sees as MASK and is scored on; hole n x g x g: the
    editor hole each sample came from, all True for the uniform half; unknown n x S x S bool: the pixels nobody
    knows, what a token's known-pixel input leaves out: the editor hole itself, or the masked tokens' patches in
    the uniform half)."""
    holes = np.ones((n, grid, grid), bool)
    editor = rng.uniform(size=n) < 0.5
    unknown = np.zeros((n, grid * patch, grid * patch), bool)
    if editor.any():
        unknown[editor] = editor_holes(rng, int(editor.sum()), grid * patch)
        holes[editor] = token_holes(unknown[editor], patch)
    masked = np.zeros_like(holes)
    ratio = cosine_ratio(rng.uniform(size=n))
    for i in range(n):
        cand = np.flatnonzero(holes[i])
        if full_hole and editor[i]:
            k = len(cand)
        else:
            k = min(len(cand), max(1, math.ceil(ratio[i] * len(cand))))
        masked[i].flat[rng.choice(cand, k, replace=False)] = True
    uniform = ~editor
    unknown[uniform] = masked[uniform].repeat(patch, 1).repeat(patch, 2)
    return masked, holes, unknown

"""Pixel-space DDPM side of the sketch family: MNIST training pairs (digits and their edge maps) for the LGP.

The DDPM itself is the one ``engine.ddpm`` loads and caches (``engine.ddpm.pipeline.cached_ddpm``). Images are in
[-1, 1].
"""
from __future__ import annotations

import numpy as np
import torch

from engine.edges import canny_edges, hed_edges, sobel_edges


def to_canvas(digits: np.ndarray, size: int) -> np.ndarray:
    """N x 28 x 28 uint8 MNIST -> N x size x size uint8 (pad with black if larger, area-resize if smaller)."""
    n, h, w = digits.shape
    if size == h:
        return digits
    if size > h:
        p0 = (size - h) // 2
        out = np.zeros((n, size, size), np.uint8)
        out[:, p0:p0 + h, p0:p0 + w] = digits
        return out
    import cv2

    return np.stack([cv2.resize(d, (size, size), interpolation=cv2.INTER_AREA) for d in digits])


def edge_maps(images: np.ndarray, method: str = "canny") -> np.ndarray:
    """N x H x W uint8 grey (or N x H x W x 3) -> N x H x W bool sketches with ``method`` (canny | sobel | hed)."""
    fn = {"canny": canny_edges, "sobel": sobel_edges, "hed": hed_edges}[method]
    out = []
    for im in images:
        rgb = np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im
        out.append(fn(rgb))
    return np.stack(out)


def to_model_range(images_u8: np.ndarray) -> torch.Tensor:
    """N x H x W uint8 -> N x 1 x H x W float in [-1, 1]."""
    return torch.from_numpy(images_u8).float().div(127.5).sub(1.0).unsqueeze(1)


def mnist_pairs(size: int, split: str = "train", limit: int | None = None, method: str = "canny",
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(images N x 1 x S x S in [-1, 1], sketches N x 1 x S x S in {0, 1}, labels) from MNIST."""
    from engine.datasets import load_mnist

    x, y = load_mnist(split)
    if limit is not None and limit < len(x):
        idx = np.random.default_rng(seed).permutation(len(x))[:limit]
        x, y = x[idx], y[idx]
    canvas = to_canvas(x, size)
    sketches = edge_maps(canvas, method)
    return to_model_range(canvas), torch.from_numpy(sketches).float().unsqueeze(1), y

"""The shared crop / resize / paste-back step for models whose working size is smaller than the image.

Crop a box around the mask's bounding box plus context, resize it to the model's square resolution, let the model
fill it, resize the fill back and paste only the hole, with a seam feathered *inward* so that pixels outside the
mask stay bit-identical (``engine.runner.composite`` enforces that again at the end).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1), exclusive ends, of the True pixels."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _fit_axis(lo: int, hi: int, side: int, limit: int) -> tuple[int, int]:
    """An interval of length ``side`` (<= limit) centred on [lo, hi), shifted to lie inside [0, limit)."""
    side = min(side, limit)
    start = (lo + hi - side) // 2
    start = max(0, min(start, limit - side))
    return start, start + side


@dataclass(frozen=True)
class CropPlan:
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in image pixels, inside the image
    size: int  # the model's square working resolution

    @classmethod
    def around_mask(cls, mask: np.ndarray, size: int, context: float = 0.5,
                    region: tuple[int, int, int, int] | None = None) -> "CropPlan":
        """A square box (non-square only when the image is too small) holding the hole plus ``context`` times
        its size on each side; ``region`` (a user-placed box, e.g. the face box) overrides it."""
        h, w = mask.shape
        if region is not None:
            x0, y0, x1, y1 = (int(v) for v in region)
            x0, y0 = max(0, x0), max(0, y0)
            x1, y1 = min(w, x1), min(h, y1)
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                return cls((x0, y0, x1, y1), size)
        bx0, by0, bx1, by1 = mask_bbox(mask)
        side = int(round(max(bx1 - bx0, by1 - by0) * (1 + 2 * context)))
        side = max(side, 8)
        x0, x1 = _fit_axis(bx0, bx1, side, w)
        y0, y1 = _fit_axis(by0, by1, side, h)
        return cls((x0, y0, x1, y1), size)

    @property
    def scale(self) -> float:
        """Image pixels per model pixel (> 1 when the model works at a lower resolution)."""
        x0, y0, x1, y1 = self.box
        return max(x1 - x0, y1 - y0) / self.size

    def crop_image(self, image: np.ndarray) -> np.ndarray:
        """The box resized to size x size; INTER_AREA when shrinking (no aliasing), cubic when growing."""
        x0, y0, x1, y1 = self.box
        patch = image[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if self.scale > 1 else cv2.INTER_CUBIC
        return cv2.resize(patch, (self.size, self.size), interpolation=interp)

    def crop_mask(self, mask: np.ndarray) -> np.ndarray:
        """Model-size mask, conservative: a model pixel is a hole if any image pixel under it is."""
        x0, y0, x1, y1 = self.box
        patch = mask[y0:y1, x0:x1].astype(np.float32)
        small = cv2.resize(patch, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return small > 1e-3

    def paste(self, image: np.ndarray, fill: np.ndarray, mask: np.ndarray, feather: float | None = None) -> np.ndarray:
        """Full-size image with ``fill`` (size x size x C, uint8) resized into the box, blended into the hole
        over ``feather`` pixels from its edge (default: about one model pixel)."""
        x0, y0, x1, y1 = self.box
        bw, bh = x1 - x0, y1 - y0
        big = cv2.resize(fill, (bw, bh), interpolation=cv2.INTER_CUBIC if self.scale > 1 else cv2.INTER_AREA)
        if big.ndim == 2:
            big = big[..., None]
        if big.shape[2] == 1 and image.shape[2] == 3:
            big = np.repeat(big, 3, axis=2)
        out = image.copy()
        hole = mask[y0:y1, x0:x1]
        alpha = feather_alpha(hole, self.scale if feather is None else feather)
        region = out[y0:y1, x0:x1].astype(np.float32)
        blended = region * (1 - alpha[..., None]) + big.astype(np.float32) * alpha[..., None]
        out[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
        return out


def feather_alpha(hole: np.ndarray, feather: float) -> np.ndarray:
    """0 outside the hole, ramping to 1 over ``feather`` pixels inside it (distance to the nearest kept pixel)."""
    hole_u8 = hole.astype(np.uint8)
    if feather <= 1:
        return hole_u8.astype(np.float32)
    # Pad with "hole" so the image border does not count as a kept pixel.
    dist = cv2.distanceTransform(np.pad(hole_u8, 1, constant_values=1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    return np.clip(dist / feather, 0.0, 1.0).astype(np.float32) * hole_u8

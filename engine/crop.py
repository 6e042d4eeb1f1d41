"""The one crop / resize / pad / paste-back step of every job (the runner's; models never crop themselves).

A model declares its ``Geometry`` (engine/api.py): a fixed square working size, or native resolution with a
maximum side, a maximum hole side and a multiple. ``CropPlan.plan`` turns that and the mask into a box of the
image plus a working size; the runner hands the model ``crop_image`` / ``crop_mask`` of the request, maps the
model's previews back with ``image_box``, and puts the fill back with ``paste``: resized to the box and blended
into the hole with a seam feathered *inward*, so pixels outside the mask stay bit-identical
(``engine.runner.composite`` enforces that again at the end). IOPaint's "crop" strategy is the anchor: a hole in
a 24-megapixel photo costs what the same hole costs in a small image.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from engine.api import Geometry

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), exclusive ends, image pixels


def mask_bbox(mask: np.ndarray) -> Box:
    """(x0, y0, x1, y1), exclusive ends, of the non-zero pixels (from the row and column projections: one pass
    over a 24-megapixel mask, no index arrays)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _fit_axis(lo: int, hi: int, side: int, limit: int) -> tuple[int, int]:
    """An interval of length ``side`` (<= limit) centred on [lo, hi), shifted to lie inside [0, limit)."""
    side = min(side, limit)
    start = (lo + hi - side) // 2
    start = max(0, min(start, limit - side))
    return start, start + side


def _clip_region(region: Box, w: int, h: int) -> Box | None:
    x0, y0, x1, y1 = (int(v) for v in region)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    return (x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None


def context_box(mask: np.ndarray, context: float | None, square: bool, min_context: int = 0,
                max_context: int | None = None) -> Box:
    """The hole's bounding box grown by ``context`` hole sizes (at least ``min_context``, at most ``max_context``
    pixels) on each side, inside the image (None: the whole image; no hole: the whole image). ``square``: a square
    of that side centred on the hole, shifted inside the image (non-square only when the image is too small)."""
    h, w = mask.shape
    if context is None or not mask.any():
        return 0, 0, w, h
    bx0, by0, bx1, by1 = mask_bbox(mask)
    hole = max(bx1 - bx0, by1 - by0)
    cap = None if max_context is None else max(max_context, min_context)
    if square:
        side = max(int(round(hole * (1 + 2 * context))), hole + 2 * min_context, 8)
        side = side if cap is None else min(side, max(hole + 2 * cap, 8))
        x0, x1 = _fit_axis(bx0, bx1, side, w)
        y0, y1 = _fit_axis(by0, by1, side, h)
        return x0, y0, x1, y1
    pad = max(int(round(context * hole)), min_context)
    pad = pad if cap is None else min(pad, cap)
    return max(0, bx0 - pad), max(0, by0 - pad), min(w, bx1 + pad), min(h, by1 + pad)


@dataclass(frozen=True)
class CropPlan:
    box: Box  # the part of the image the model sees, in image pixels
    work: tuple[int, int]  # (width, height) it is resized to, before padding
    pad: tuple[int, int] = (0, 0)  # (right, bottom) reflected padding up to the geometry's multiple

    @classmethod
    def plan(cls, geometry: Geometry, mask: np.ndarray, region: Box | None = None) -> "CropPlan":
        """The crop for ``mask`` (H x W bool) under ``geometry``; ``region`` (a user-placed box, e.g. the face box)
        replaces the box around the hole."""
        h, w = mask.shape
        box = _clip_region(region, w, h) if region is not None else None
        if box is None:
            box = context_box(mask, geometry.context, square=geometry.size is not None,
                              min_context=geometry.min_context, max_context=geometry.max_context)
        x0, y0, x1, y1 = box
        bw, bh = x1 - x0, y1 - y0
        if geometry.size is not None:
            work = (geometry.size, geometry.size)
        else:
            scale = 1.0
            if geometry.max_side:
                scale = min(scale, geometry.max_side / max(bw, bh))
            if geometry.max_hole and mask.any():
                hx0, hy0, hx1, hy1 = mask_bbox(mask)
                scale = min(scale, geometry.max_hole / max(hx1 - hx0, hy1 - hy0))
            work = (bw, bh) if scale >= 1.0 else (max(8, round(bw * scale)), max(8, round(bh * scale)))
        m = max(1, geometry.multiple)
        return cls(box, work, ((-work[0]) % m, (-work[1]) % m))

    @classmethod
    def around_mask(cls, mask: np.ndarray, size: int, context: float = 0.5, region: Box | None = None) -> "CropPlan":
        """The fixed-size plan: a square box holding the hole plus ``context`` times its size on each side."""
        return cls.plan(Geometry(size=size, context=context), mask, region)

    @property
    def scale(self) -> float:
        """Image pixels per working pixel (> 1 when the model works at a lower resolution)."""
        x0, y0, x1, y1 = self.box
        return max((x1 - x0) / self.work[0], (y1 - y0) / self.work[1])

    @property
    def resized(self) -> bool:
        x0, y0, x1, y1 = self.box
        return (x1 - x0, y1 - y0) != self.work

    def _pad(self, a: np.ndarray) -> np.ndarray:
        right, bottom = self.pad
        if not right and not bottom:
            return a
        h, w = a.shape[:2]
        mode = "reflect" if min(h, w) > max(right, bottom) else "edge"
        return np.pad(a, ((0, bottom), (0, right)) + ((0, 0),) * (a.ndim - 2), mode=mode)

    def crop_image(self, image: np.ndarray) -> np.ndarray:
        """The box at the working size (INTER_AREA when shrinking: no aliasing; cubic when growing), padded."""
        x0, y0, x1, y1 = self.box
        patch = np.ascontiguousarray(image[y0:y1, x0:x1])
        if self.resized:
            patch = cv2.resize(patch, self.work, interpolation=cv2.INTER_AREA if self.scale > 1 else cv2.INTER_CUBIC)
        return self._pad(patch)

    def crop_mask(self, mask: np.ndarray) -> np.ndarray:
        """Working-size mask, conservative: a working pixel is a hole if any image pixel it was drawn from is (the
        pixels under it when shrinking; the cubic kernel's 4 x 4 taps when growing, so the hole is first grown by
        2 pixels), so no known working pixel carries a hole pixel's colour. The padding is never a hole."""
        x0, y0, x1, y1 = self.box
        patch = mask[y0:y1, x0:x1]
        if self.resized:
            patch = patch.astype(np.float32)
            if self.scale <= 1:
                patch = cv2.dilate(patch, np.ones((5, 5), np.uint8))
            patch = cv2.resize(patch, self.work, interpolation=cv2.INTER_AREA) > 1e-3
        patch = patch.astype(bool, copy=False)
        right, bottom = self.pad
        return np.pad(patch, ((0, bottom), (0, right))) if right or bottom else patch  # a view, as crop_image

    def image_box(self, box: Box | None, shape: tuple[int, ...]) -> tuple[Box, Box] | None:
        """Where a preview of ``box`` (working pixels incl. padding; None = the whole padded crop) whose image has
        ``shape`` lands: (the part of that image inside the unpadded crop, in the image's pixels; that part's box
        in full-image pixels). None when it lies in the padding only."""
        pw, ph = self.work[0] + self.pad[0], self.work[1] + self.pad[1]
        bx0, by0, bx1, by1 = box if box is not None else (0, 0, pw, ph)
        cx1, cy1 = min(bx1, self.work[0]), min(by1, self.work[1])
        if cx1 <= bx0 or cy1 <= by0:
            return None
        ih, iw = shape[:2]
        sub = (0, 0, max(1, round(iw * (cx1 - bx0) / (bx1 - bx0))), max(1, round(ih * (cy1 - by0) / (by1 - by0))))
        x0, y0, x1, y1 = self.box
        kx, ky = (x1 - x0) / self.work[0], (y1 - y0) / self.work[1]
        full = (x0 + int(bx0 * kx), y0 + int(by0 * ky), min(x1, x0 + round(cx1 * kx)), min(y1, y0 + round(cy1 * ky)))
        return sub, full

    def paste(self, image: np.ndarray, fill: np.ndarray, mask: np.ndarray, feather: float | None = None,
              offset: tuple[int, int] = (0, 0)) -> np.ndarray:
        """A copy of ``image`` with ``fill`` (the padded working crop, H x W or H x W x C uint8) resized into the box
        and blended into the hole: by the mask's alpha (bool, or uint8 0-255 for a soft mask) times a seam feathered
        inward over ``feather`` pixels (default: about one working pixel, so a native-resolution fill is pasted
        hard). Pixels the weight leaves at 0 (everything outside the hole) are the original's bit for bit, pixels
        it takes to 1 the fill's bit for bit; only the box is touched. ``offset`` (x, y): ``fill`` is only the part
        of an unresized crop from there on, holding the hole and the pixel around it."""
        x0, y0, x1, y1 = self.box
        out = image.copy()
        box_mask = mask[y0:y1, x0:x1]
        if not box_mask.any():
            return out
        # Only the hole's bounding box is touched (a small hole in a whole-image box costs what the hole costs),
        # grown by the one kept pixel around it that the feather's distance is measured to.
        hx0, hy0, hx1, hy1 = mask_bbox(box_mask)
        hx0, hy0, hx1, hy1 = max(0, hx0 - 1), max(0, hy0 - 1), min(x1 - x0, hx1 + 1), min(y1 - y0, hy1 + 1)
        box_mask = box_mask[hy0:hy1, hx0:hx1]
        hole = box_mask if box_mask.dtype == np.bool_ else box_mask > 0
        ox, oy = offset
        if self.resized:
            if offset != (0, 0):
                raise ValueError("a resized crop is pasted whole: no offset")
            grow = self.scale > 1
            fill = cv2.resize(fill[:self.work[1], :self.work[0]], (x1 - x0, y1 - y0),
                              interpolation=cv2.INTER_CUBIC if grow else cv2.INTER_AREA)
        if hx0 < ox or hy0 < oy or hx1 - ox > fill.shape[1] or hy1 - oy > fill.shape[0]:
            raise ValueError(f"the fill at {offset} does not hold the hole {(hx0, hy0, hx1, hy1)}")
        fill = fill[hy0 - oy:hy1 - oy, hx0 - ox:hx1 - ox]
        if fill.ndim == 2:
            fill = fill[..., None]
        if fill.shape[2] == 1 and image.shape[2] == 3:
            fill = np.repeat(fill, 3, axis=2)
        weight = feather_alpha(hole, self.scale if feather is None else feather)
        if box_mask.dtype != np.bool_:
            weight *= box_mask.astype(np.float32) / 255.0
        region = out[y0 + hy0:y0 + hy1, x0 + hx0:x0 + hx1]
        full = weight >= 1.0
        region[full] = fill[full]
        part = (weight > 0) & ~full
        if part.any():
            w = weight[part][:, None]
            region[part] = np.rint(region[part].astype(np.float32) * (1 - w) + fill[part].astype(np.float32) * w
                                   ).astype(np.uint8)
        return out


def feather_alpha(hole: np.ndarray, feather: float) -> np.ndarray:
    """0 outside the hole, ramping to 1 over ``feather`` pixels inside it (distance to the nearest kept pixel)."""
    hole_u8 = hole.astype(np.uint8)
    if feather <= 1:
        return hole_u8.astype(np.float32)
    # Pad with "hole" so the image border does not count as a kept pixel.
    dist = cv2.distanceTransform(np.pad(hole_u8, 1, constant_values=1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    return np.clip(dist / feather, 0.0, 1.0).astype(np.float32) * hole_u8


def shrink(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` with its longer side at most ``side`` (INTER_AREA), contiguous."""
    h, w = image.shape[:2]
    k = side / max(h, w)
    if k >= 1:
        return np.ascontiguousarray(image)
    return cv2.resize(image, (max(1, int(w * k)), max(1, int(h * k))), interpolation=cv2.INTER_AREA)

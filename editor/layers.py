"""Pixel operations on the document's layers, in numpy and OpenCV only (no Qt): the soft brush dab, mask
grow / shrink / feather on grey levels, and the padding of an Expand canvas.

The mask is uint8 alpha: 0 keeps a pixel, 255 fills it, the levels between blend the fill with the photo
(``engine.runner.composite``). The sketch stays bool.
"""
from __future__ import annotations

import cv2
import numpy as np

Rect = tuple[int, int, int, int]  # (x0, y0, x1, y1), exclusive ends
Pads = tuple[int, int, int, int]  # (left, top, right, bottom) pixels added by an Expand canvas

BORDER_FILLS = {"edge": "Stretch the edge pixels", "grey": "Neutral grey"}
ASPECTS = {"1:1": 1.0, "4:3": 4 / 3, "3:2": 3 / 2, "16:9": 16 / 9, "3:4": 3 / 4, "2:3": 2 / 3, "9:16": 9 / 16}


def dab_alpha(rect: Rect, p0: tuple[float, float], p1: tuple[float, float], diameter: float,
              hardness: float = 1.0) -> np.ndarray:
    """The coverage (float32, 0..1) of a round brush dragged from ``p0`` to ``p1`` over the pixels of ``rect``.

    Pixel (x, y) is covered by its distance d to the segment: fully inside ``hardness`` x radius, then falling
    smoothly (a raised cosine) to 0 at the radius; hardness 1 is a hard disc. Positions are pixel indices and the
    radius reaches half a pixel beyond diameter / 2, as OpenCV's thick lines do, so a stroke along y = 300 with
    diameter 20 covers rows 290..310."""
    x0, y0, x1, y1 = rect
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    ax, ay = p0
    dx, dy = p1[0] - ax, p1[1] - ay
    seg2 = dx * dx + dy * dy
    if seg2 > 1e-9:
        t = np.clip(((xs - ax) * dx + (ys - ay) * dy) / seg2, 0.0, 1.0)
        d = np.hypot(xs - (ax + t * dx), ys - (ay + t * dy))
    else:
        d = np.hypot(xs - ax, ys - ay)
    radius = diameter / 2 + 0.5 if diameter > 2 else 0.75  # a 1-2 px brush: the pixel under it
    hardness = min(1.0, max(0.0, hardness))
    if hardness >= 1.0:
        return (d <= radius).astype(np.float32)
    inner = hardness * radius
    t = np.clip((d - inner) / max(radius - inner, 1e-6), 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def apply_dab(target: np.ndarray, cover: np.ndarray, erase: bool, strength: float = 1.0) -> None:
    """Paint ``cover`` into ``target`` in place: uint8 masks keep the strongest coverage of a stroke (a stroke
    never builds up over itself); erasing lowers to 255 - coverage; bool layers take coverage >= one half."""
    if target.dtype == np.bool_:
        on = cover * strength >= 0.5
        if erase:
            target &= ~on
        else:
            target |= on
        return
    level = np.rint(cover * (255.0 * min(1.0, max(0.0, strength)))).astype(np.uint8)
    if erase:
        np.minimum(target, 255 - level, out=target)
    else:
        np.maximum(target, level, out=target)


def as_alpha(mask: np.ndarray) -> np.ndarray:
    """uint8 alpha from a bool or uint8 mask."""
    return mask.astype(np.uint8) * 255 if mask.dtype == np.bool_ else mask.astype(np.uint8)


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """Dilate (px > 0) or erode (px < 0) with a round kernel; grey levels grow and shrink with their region."""
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(px) + 1, 2 * abs(px) + 1))
    op = cv2.dilate if px > 0 else cv2.erode
    return op(mask, k, borderType=cv2.BORDER_REPLICATE)


def feather(mask: np.ndarray, radius: int) -> np.ndarray:
    """A real soft edge: a Gaussian blur whose ramp runs about ``radius`` px across the outline, half inside and
    half outside; interior and far-away pixels keep 255 and 0."""
    sigma = max(0.5, radius / 2)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    out = np.clip(np.rint(soft), 0, 255).astype(np.uint8)
    out[out < 2] = 0  # the Gaussian's far tail is not a fill
    out[out > 253] = 255
    return out


def outline_mask(mask: np.ndarray) -> np.ndarray:
    """Where the hole's outline is drawn: the half-filled level (or any coverage when nothing reaches it)."""
    half = mask >= 128
    return half if half.any() else mask > 0


def pads_for_aspect(w: int, h: int, aspect: float) -> Pads:
    """The centred border that brings a w x h image to ``aspect`` (width / height) by adding pixels only."""
    if w / h < aspect:
        extra = int(round(h * aspect)) - w
        return extra // 2, 0, extra - extra // 2, 0
    extra = int(round(w / aspect)) - h
    return 0, extra // 2, 0, extra - extra // 2


def pad(arr: np.ndarray, pads: Pads, mode: str = "constant", value: int | bool = 0) -> np.ndarray:
    """``arr`` grown by (left, top, right, bottom): mode "edge" repeats the outermost pixels, "grey" is mid-grey,
    "constant" fills with ``value``."""
    left, top, right, bottom = pads
    width = ((top, bottom), (left, right)) + ((0, 0),) * (arr.ndim - 2)
    if mode == "edge":
        return np.pad(arr, width, mode="edge")
    return np.pad(arr, width, mode="constant", constant_values=128 if mode == "grey" else value)


def unpad(arr: np.ndarray, pads: Pads) -> np.ndarray:
    left, top, right, bottom = pads
    h, w = arr.shape[:2]
    return arr[top:h - bottom, left:w - right].copy()


def border_mask(shape: tuple[int, int], pads: Pads) -> np.ndarray:
    """H x W bool: the pixels an Expand canvas added."""
    left, top, right, bottom = pads
    h, w = shape
    out = np.ones((h, w), bool)
    out[top:h - bottom, left:w - right] = False
    return out

"""Selections that become masks, without Qt: lasso polygons and "select object" (a box plus include / exclude
clicks).

Select object runs OpenCV's GrabCut (Rother et al. 2004, "GrabCut: interactive foreground extraction using
iterated graph cuts"): colour models of the object (inside the box) and of the background (outside it) are fitted
as Gaussian mixtures and a graph cut separates them; include clicks are certain object, exclude clicks certain
background. It needs no weights. No learned segmenter's weights (SAM, MobileSAM, ...) are reachable from this
machine, so none ships; the interface is the one a learned segmenter would fill in: a ``Segmenter`` takes the
image, the box and the clicks and returns a mask, and ``segmenters(folder)`` lists GrabCut plus whatever a family
package's ``discover_segmenters(folder)`` finds in the user's models folder (none does yet).
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import cv2
import numpy as np

Box = tuple[int, int, int, int]  # (x0, y0, x1, y1), exclusive ends, image pixels
Point = tuple[float, float]

NO_WEIGHTS = ("Select object uses OpenCV's GrabCut (colour models and a graph cut, no weights): no learned "
              "segmenter's weights are reachable here. A segmenter found in your models folder is used instead.")


def polygon_mask(shape: tuple[int, int], points: list[Point]) -> np.ndarray:
    """H x W bool: the inside of the closed polygon through ``points`` (image pixels, sub-pixel positions kept)."""
    out = np.zeros(shape[:2], np.uint8)
    if len(points) >= 3:
        pts = np.round(np.asarray(points, np.float64) * 16).astype(np.int32)  # cv2 fixed point, shift=4
        cv2.fillPoly(out, [pts], 1, cv2.LINE_8, shift=4)
    return out.astype(bool)


class Segmenter:
    """Box + clicks -> mask. ``learned`` is True for a network (its weights come from the models folder)."""

    name = "segmenter"
    title = "Segmenter"
    learned = False

    def segment(self, image: np.ndarray, box: Box, include: list[Point] = (), exclude: list[Point] = ()
                ) -> np.ndarray:
        """H x W bool: the object inside ``box`` (an H x W x 3 uint8 image; clicks in image pixels)."""
        raise NotImplementedError


class GrabCut(Segmenter):
    name = "grabcut"
    title = "GrabCut (OpenCV, no weights)"
    MAX_SIDE = 360  # the box plus its margin is cut at most this big: about 0.1-0.3 s on one core
    ITERATIONS = 5

    def segment(self, image: np.ndarray, box: Box, include: list[Point] = (), exclude: list[Point] = ()
                ) -> np.ndarray:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        x0, x1 = sorted((min(max(x0, 0), w), min(max(x1, 0), w)))
        y0, y1 = sorted((min(max(y0, 0), h), min(max(y1, 0), h)))
        out = np.zeros((h, w), bool)
        if x1 - x0 < 4 or y1 - y0 < 4:
            return out
        m = max(8, (x1 - x0 + y1 - y0) // 8)  # a margin of background around the box for the colour model
        cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
        s = min(1.0, self.MAX_SIDE / max(cx1 - cx0, cy1 - cy0))
        crop = image[cy0:cy1, cx0:cx1]
        size = (max(1, round((cx1 - cx0) * s)), max(1, round((cy1 - cy0) * s)))
        small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA) if s < 1 else np.ascontiguousarray(crop)
        gc = np.full(small.shape[:2], cv2.GC_BGD, np.uint8)
        bx0, by0 = int((x0 - cx0) * s), int((y0 - cy0) * s)
        bx1, by1 = max(bx0 + 2, int(np.ceil((x1 - cx0) * s))), max(by0 + 2, int(np.ceil((y1 - cy0) * s)))
        gc[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
        r = max(2, int(round(min(small.shape[:2]) / 60)))
        for pts, label in ((exclude, cv2.GC_BGD), (include, cv2.GC_FGD)):
            for px, py in pts:
                cv2.circle(gc, (int(round((px - cx0) * s)), int(round((py - cy0) * s))), r, int(label), -1)
        if not (gc == cv2.GC_BGD).any():  # the box fills the image: GrabCut needs some background
            gc[[0, -1], :] = cv2.GC_PR_BGD
            gc[:, [0, -1]] = cv2.GC_PR_BGD
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's RNG: the same clicks give the same mask
        try:
            cv2.grabCut(small, gc, None, bgd, fgd, self.ITERATIONS, cv2.GC_INIT_WITH_MASK)
        except cv2.error:  # a degenerate colour model (a flat image): the box itself is the best guess
            gc[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
        fg = ((gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)).astype(np.float32)
        if s < 1:
            fg = cv2.resize(fg, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR)
        sel = fg >= 0.5
        sel = _keep_clicked(sel, [(px - cx0, py - cy0) for px, py in include])
        out[cy0:cy1, cx0:cx1] = sel
        out[:y0] = out[y1:] = False  # the object lies inside the box
        out[:, :x0] = out[:, x1:] = False
        for px, py in include:  # a clicked pixel is always in
            ix, iy = int(px), int(py)
            if 0 <= ix < w and 0 <= iy < h:
                out[iy, ix] = True
        return out


def _keep_clicked(sel: np.ndarray, include: list[Point]) -> np.ndarray:
    """Drop stray islands: keep the components holding an include click, or the largest one when none was made."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(sel.astype(np.uint8), connectivity=8)
    if n <= 2:
        return sel
    keep = {int(labels[int(y), int(x)]) for x, y in include
            if 0 <= int(y) < sel.shape[0] and 0 <= int(x) < sel.shape[1] and labels[int(y), int(x)] > 0}
    if not keep:
        keep = {1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))}
    return np.isin(labels, list(keep))


def segmenters(folder: str | Path | None = None) -> list[Segmenter]:
    """GrabCut, then the learned segmenters family packages find in the user's models folder (first = best)."""
    found: list[Segmenter] = []
    if folder is not None and Path(folder).is_dir():
        import engine

        for m in sorted(pkgutil.iter_modules(engine.__path__), key=lambda m: m.name):
            if not m.ispkg:
                continue
            discover = getattr(importlib.import_module(f"engine.{m.name}"), "discover_segmenters", None)
            if discover is not None:
                try:
                    found.extend(discover(Path(folder)))
                except Exception:  # a broken file must not take the selection tool away: GrabCut remains
                    continue
    return found + [GrabCut()]

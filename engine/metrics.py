"""Image-quality measures, on the whole image or on a region (typically the hole).

All functions take H x W x C (or H x W) arrays of the same shape, uint8 or float, and an optional bool ``mask``
(True = measure here). ``data_range`` defaults to 255 for uint8 and 1.0 for floats.

- ``psnr``: 10 log10(R^2 / MSE), the MSE taken over the masked pixels (all channels).
- ``ssim``: the SSIM map of Wang et al. 2004 (scikit-image, 7x7 uniform windows, computed on the whole image so
  windows straddling the hole border see the real context) averaged over the masked pixels.
- ``detail_ratio``: a blur-sensitive texture measure. High-pass = luminance minus its Gaussian blur (sigma
  ``sigma`` px); the ratio is the mean high-pass energy of ``pred`` over that of ``truth`` inside the mask, eroded
  by 3 sigma so the hole's seam does not count. 1.0 = as much fine detail as the truth, about 0 = flat (Telea),
  > 1 = noisier than the truth. PSNR rewards blur (it is minimised by the conditional mean); this does not.
- ``lpips`` is absent on purpose: its VGG/AlexNet backbones cannot be downloaded in this offline setup.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from skimage.metrics import structural_similarity


def _range(a: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        return float(data_range)
    return 255.0 if a.dtype == np.uint8 else 1.0


def _check(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {truth.shape}")
    if mask is None:
        return np.ones(pred.shape[:2], bool)
    mask = np.asarray(mask).astype(bool)
    if mask.shape != pred.shape[:2]:
        raise ValueError(f"mask {mask.shape} does not match image {pred.shape[:2]}")
    if not mask.any():
        raise ValueError("empty mask")
    return mask


def mse(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    m = _check(pred, truth, mask)
    d = pred.astype(np.float64) - truth.astype(np.float64)
    return float(np.mean(d[m] ** 2))


def psnr(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB over the masked pixels (inf for identical inputs)."""
    e = mse(pred, truth, mask)
    r = _range(truth, data_range)
    return math.inf if e == 0 else 10.0 * math.log10(r * r / e)


def ssim(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None, data_range: float | None = None) -> float:
    """Mean SSIM over the masked pixels (SSIM map of the full images, colour channels averaged)."""
    m = _check(pred, truth, mask)
    kw = {"channel_axis": 2} if pred.ndim == 3 else {}
    _, smap = structural_similarity(truth.astype(np.float64), pred.astype(np.float64), full=True,
                                    data_range=_range(truth, data_range), **kw)
    if smap.ndim == 3:
        smap = smap.mean(axis=2)
    return float(smap[m].mean())


def _luma(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    if a.ndim == 3:
        return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    return a


def high_pass(a: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Luminance minus its Gaussian blur: the fine detail that blur removes."""
    g = _luma(a)
    return g - cv2.GaussianBlur(g, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def detail_ratio(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None, sigma: float = 1.0) -> float:
    """High-frequency energy of ``pred`` over that of ``truth`` inside the (eroded) mask; 1.0 = as detailed."""
    m = _check(pred, truth, mask)
    r = int(math.ceil(3 * sigma))
    inner = cv2.erode(m.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8), borderType=cv2.BORDER_CONSTANT,
                      borderValue=1).astype(bool)
    if inner.any():
        m = inner
    e_pred = float(np.mean(high_pass(pred, sigma)[m] ** 2))
    e_true = float(np.mean(high_pass(truth, sigma)[m] ** 2))
    if e_true == 0:
        return math.inf if e_pred > 0 else 1.0
    return e_pred / e_true


def hole_metrics(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM and detail ratio on the hole: the benchmark's row for one fill."""
    return {"psnr": psnr(pred, truth, mask), "ssim": ssim(pred, truth, mask), "detail": detail_ratio(pred, truth, mask)}

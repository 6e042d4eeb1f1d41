"""numpy <-> QImage for the canvas, the history strip and the clipboard (owned copies, fast formats)."""
from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtGui import QColor, QImage


def rgb_qimage(rgb: np.ndarray) -> QImage:
    """An opaque QImage that owns its pixels, in the raster engine's fast format (RGB888 would be converted on
    every scaled draw)."""
    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format_RGB888).convertToFormat(QImage.Format_RGB32)


def argb_qimage(rgb: np.ndarray, alpha: np.ndarray, blend: bool = False) -> QImage:
    """RGB shown where ``alpha`` > 0, as an owned ARGB32_Premultiplied QImage: opaque there (a result, which holds
    the fill already blended by the mask), or with ``blend`` at the mask's own alpha (a live preview over a soft
    edge). OpenCV does the per-pixel work: a preview of a large crop arrives up to 15 times a second."""
    h, w = alpha.shape
    if alpha.dtype == np.bool_:
        a = alpha.view(np.uint8) * np.uint8(255)
    elif blend:
        a = np.ascontiguousarray(alpha, dtype=np.uint8)
    else:
        a = cv2.compare(alpha, 0, cv2.CMP_GT)  # 0 or 255
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    premultiplied = cv2.multiply(bgr, cv2.merge([a, a, a]), scale=1 / 255)
    bgra = cv2.merge([premultiplied, a])
    return QImage(bgra.data, w, h, 4 * w, QImage.Format_ARGB32_Premultiplied).copy()


def overlay_lut(color: QColor, levels: int = 256) -> np.ndarray:
    """BGRA premultiplied bytes (ARGB32_Premultiplied on little-endian machines) per mask level: level 255 (or 1
    for a bool layer) is the full colour, level 0 transparent."""
    top = levels - 1
    a = np.arange(levels, dtype=np.float32) * (255.0 / top)
    bgra = np.stack([color.blue() * a / 255, color.green() * a / 255, color.red() * a / 255, a], axis=1)
    return np.rint(bgra).astype(np.uint8)


def qimage_rgb(image: QImage) -> tuple[np.ndarray, np.ndarray | None]:
    """A QImage (from the clipboard) as H x W x 3 uint8 RGB and its alpha (None when fully opaque)."""
    img = image.convertToFormat(QImage.Format_RGBA8888)
    w, h = img.width(), img.height()
    arr = np.frombuffer(img.constBits(), np.uint8).reshape(h, img.bytesPerLine())[:, :4 * w].reshape(h, w, 4)
    rgb, alpha = arr[..., :3].copy(), arr[..., 3].copy()
    return rgb, (None if (alpha == 255).all() else alpha)

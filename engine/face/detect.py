"""Face box for the face models: OpenCV's Haar frontal-face cascade (Viola & Jones 2001), no torch.

``detect_face(image)`` returns a square (x0, y0, x1, y1) around the largest face, enlarged to the framing the
models were trained with (the face about 55 % of the box width, centred slightly above the box centre, hair and
chin inside), or None. Boxes may extend past the image; ``engine.crop.CropPlan`` clips them.
"""
from __future__ import annotations

import cv2
import numpy as np

from engine.weights import CACHE

ENLARGE = 1.8  # box side / Haar box side: the procedural faces are ~55 % of the frame wide
SHIFT_DOWN = 0.1  # box centre below the Haar box centre, in Haar box sides

def _load_cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    c = cv2.CascadeClassifier(path)
    if c.empty():
        raise RuntimeError(f"could not load the Haar cascade at {path}")
    return c


def detect_faces(image: np.ndarray, max_side: int = 640) -> list[tuple[int, int, int, int]]:
    """Raw Haar detections (x, y, w, h) in image pixels, largest first. Works on a downscaled grey copy."""
    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    f = min(1.0, max_side / max(h, w))
    small = cv2.resize(grey, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA) if f < 1 else grey
    small = cv2.equalizeHist(small)
    min_side = max(12, int(min(small.shape) * 0.06))
    cascade = CACHE.get("haar-face", _load_cascade)
    found = cascade.detectMultiScale(small, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    boxes = [tuple(int(round(v / f)) for v in b) for b in (found if len(found) else [])]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def face_box(x: int, y: int, w: int, h: int) -> tuple[int, int, int, int]:
    """A Haar box (x, y, w, h) -> the model's square framing (x0, y0, x1, y1)."""
    side = max(w, h) * ENLARGE
    cx, cy = x + w / 2, y + h / 2 + SHIFT_DOWN * max(w, h)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    return x0, y0, x0 + s, y0 + s


def detect_face(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """Square box around the largest frontal face, in the models' training framing; None if there is none."""
    boxes = detect_faces(image)
    return face_box(*boxes[0]) if boxes else None

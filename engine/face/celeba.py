"""CelebA in its published layout, for users who have it (no torch; numpy + OpenCV).

    ROOT/img_align_celeba/000001.jpg ...     178 x 218 aligned faces
    ROOT/list_attr_celeba.txt                line 1: count; line 2: 40 attribute names; then
                                             "000001.jpg -1  1  1 ..." (1 = present, -1 = absent)
    ROOT/list_eval_partition.txt             "000001.jpg 0" (0 = train, 1 = valid, 2 = test)

Images are centre-cropped to a square (the usual 140 x 140 crop around the face, slightly lower than the image
centre) and resized to the model's resolution with INTER_AREA. Labels are (Smiling, Eyeglasses) mapped to 0/1.
Mouth and eye boxes are fixed, since CelebA faces are aligned (eyes and mouth corners at fixed points).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

SPLITS = {"train": 0, "valid": 1, "test": 2}
CROP = 140  # square crop of the 178 x 218 aligned image
CROP_TOP = 48  # top row of the crop (eyes ~ row 112, mouth ~ row 150 in the aligned originals)
# Relative (x0, y0, x1, y1) of the mouth box and the eye band inside the crop, measured on the alignment landmarks.
MOUTH_BOX = (0.28, 0.62, 0.72, 0.86)
EYE_BOX = (0.12, 0.36, 0.88, 0.58)


def read_attributes(path: str | Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """(attribute names, {file name: int8 vector of -1/1}) from list_attr_celeba.txt."""
    lines = Path(path).read_text().splitlines()
    names = lines[1].split()
    table: dict[str, np.ndarray] = {}
    for line in lines[2:]:
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise ValueError(f"{path}: line for {parts[0]} has {len(parts) - 1} values, expected {len(names)}")
        table[parts[0]] = np.array([int(v) for v in parts[1:]], np.int8)
    return names, table


def read_partition(path: str | Path) -> dict[str, int]:
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = int(parts[1])
    return out


def load_aligned(path: str | Path, res: int) -> np.ndarray:
    """One aligned CelebA image -> res x res x 3 uint8 RGB (square face crop)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(path)
    h, w = bgr.shape[:2]
    side = min(CROP, h, w)
    x0 = (w - side) // 2
    y0 = min(max(0, CROP_TOP * h // 218 - (side - CROP) // 2), h - side)
    patch = bgr[y0:y0 + side, x0:x0 + side]
    return cv2.cvtColor(cv2.resize(patch, (res, res), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def fixed_box(rel: tuple[float, float, float, float], res: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = rel
    return int(x0 * res), int(y0 * res), int(np.ceil(x1 * res)), int(np.ceil(y1 * res))


class CelebA:
    """Index of one split; ``batch(rng, n)`` returns what the trainer needs (images, labels, mouth/eye boxes)."""

    def __init__(self, root: str | Path, split: str = "train", res: int = 64,
                 attributes: tuple[str, str] = ("Smiling", "Eyeglasses")) -> None:
        root = Path(root)
        self.root, self.res = root, res
        names, table = read_attributes(root / "list_attr_celeba.txt")
        missing = [a for a in attributes if a not in names]
        if missing:
            raise ValueError(f"list_attr_celeba.txt has no column {missing}")
        cols = [names.index(a) for a in attributes]
        part = read_partition(root / "list_eval_partition.txt")
        want = SPLITS[split]
        self.files = sorted(f for f, p in part.items() if p == want and f in table)
        if not self.files:
            raise ValueError(f"no {split} images listed in {root}")
        self.labels = np.stack([(table[f][cols] > 0).astype(np.float32) for f in self.files])
        self.mouth_box = fixed_box(MOUTH_BOX, res)
        self.eye_box = fixed_box(EYE_BOX, res)

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> np.ndarray:
        return load_aligned(self.root / "img_align_celeba" / self.files[i], self.res)

    def batch(self, rng: np.random.Generator, n: int):
        idx = rng.integers(0, len(self.files), n)
        imgs = np.stack([self.image(int(i)) for i in idx])
        mouth = np.tile(np.array(self.mouth_box, np.int32), (n, 1))
        eyes = np.tile(np.array(self.eye_box, np.int32), (n, 1))
        return imgs, self.labels[idx], mouth, eyes

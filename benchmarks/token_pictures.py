"""Pictures for docs/token.md: fills of held-out digits and faces, and the hole filling token by token.

    python benchmarks/token_pictures.py

Writes docs/images/token_mnist.png, docs/images/token_faces.png and docs/images/token_previews.png: each row one
image; columns input | hole | MaskGIT fill | autoregressive fill | the seed's decoding (argmax, one pass) |
tokenizer reconstruction (the ceiling). The preview strip shows what the editor draws after passes 1, 2, 4, 8
and 12 (MaskGIT) and after each finished row (autoregressive).
"""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.repaint_mnist import make_masks  # noqa: E402
from benchmarks.token_common import model_defaults, reconstruction, token_fill  # noqa: E402
from engine.token.data import grid_image, save_png  # noqa: E402
from engine.weights import MODELS_DIR  # noqa: E402

SEED_STYLE = {"iterations": 1, "temperature": 0.0, "top_k": 0, "confidence_noise": 0.0}


def columns(domain: str, imgs: np.ndarray, masks: np.ndarray, grain: bool) -> list[np.ndarray]:
    from engine.token.fsq import load_tokenizer

    names = ("token-mnist", "token-mnist-ar") if domain == "mnist" else ("token-face", "token-face-ar")
    tok = load_tokenizer(MODELS_DIR / f"token-fsq-{domain}")
    extra = {"grain": True} if grain else {}
    bidir, ar = model_defaults(names[0]), model_defaults(names[1])
    holed = np.where(masks[..., None], 128, imgs).astype(np.uint8)
    fills = [token_fill(MODELS_DIR / names[0], imgs, masks, {**bidir, **extra}, seed=1)[0],
             token_fill(MODELS_DIR / names[1], imgs, masks, {**ar, **extra}, seed=1)[0],
             token_fill(MODELS_DIR / names[0], imgs, masks, SEED_STYLE, seed=1)[0],
             reconstruction(tok, imgs, masks)]
    return [imgs, holed, *fills]


def preview_strip(name: str, image: np.ndarray, mask: np.ndarray, keep: tuple[int, ...]) -> list[np.ndarray]:
    from engine import registry
    from engine.api import Request
    from engine.runner import run_job

    shots, gen = [], run_job(registry.load(name), Request(image, mask, seed=2))
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            shots.append(stop.value.image)
            break
        if p.step in keep:
            full = image.copy()
            x0, y0, x1, y1 = p.box
            patch = cv2.resize(p.image, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
            region = full[y0:y1, x0:x1]
            region[mask[y0:y1, x0:x1]] = patch[mask[y0:y1, x0:x1]]
            shots.append(full)
    return shots


def main() -> None:
    torch.set_num_threads(1)
    from engine.datasets import load_mnist
    from engine.face.data import EVAL_SEED, procedural_pool, regime_masks

    digits = load_mnist("test")[0][:8]
    m = make_masks()
    dmasks = np.stack([list(m.values())[i % 3] for i in range(8)])
    cols = columns("mnist", digits[..., None], dmasks, grain=False)
    rows = [np.stack([c[i] for c in cols]) for i in range(8)]
    save_png(ROOT / "docs" / "images" / "token_mnist.png", grid_image(rows, 3))

    faces, _, mouth, eyes = procedural_pool(8, 64, start=EVAL_SEED + 1000, log=None)
    regimes = ("big", "mouth", "eyes", "small")
    fmasks = np.stack([regime_masks(64, regimes[i % 4], mouth[i:i + 1], eyes[i:i + 1], seed=i)[0] for i in range(8)])
    cols = columns("face", faces, fmasks, grain=True)
    rows = [np.stack([c[i] for c in cols]) for i in range(8)]
    save_png(ROOT / "docs" / "images" / "token_faces.png", grid_image(rows, 2))

    digit = np.repeat(digits[2][..., None], 3, 2)
    face = faces[0]
    strips = [preview_strip("token-mnist", digit, m["left_half"], (1, 2, 4, 8, 12)),
              preview_strip("token-mnist-ar", digit, m["left_half"], tuple(range(1, 8)))]
    strips = [[cv2.resize(s, (64, 64), interpolation=cv2.INTER_NEAREST) for s in row] for row in strips]
    strips += [preview_strip("token-face", face, fmasks[0], (1, 2, 4, 8, 12)),
               preview_strip("token-face-ar", face, fmasks[0], tuple(range(1, 9)))]
    save_png(ROOT / "docs" / "images" / "token_previews.png", grid_image([np.stack(r) for r in strips], 2))
    print("wrote docs/images/token_mnist.png, token_faces.png, token_previews.png")


if __name__ == "__main__":
    main()

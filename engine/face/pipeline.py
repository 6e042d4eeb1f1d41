"""Face cVAE inference: one encoder + decoder pass on the runner's 64 x 64 crop of the face box.

Fast path for the editor's instant attribute toggles: the model is loaded once (``engine.weights.CACHE``), and the
encoder result is kept per (crop, mask), so flipping smile/glasses or moving the variation slider re-runs only the
decoder. Variation: z = mu + sigma * (variation_scale * eps) with eps ~ N(0, I) drawn from ``Request.seed``
(Kingma & Welling 2014 reparameterisation; variation_scale is the sampling temperature, 0 = the posterior mean).
Attribute strength: guidance that contrasts the decoder with each attribute flipped (``model.guided_logits``).
The model stays on the CPU: a 64 px pass answers a toggle in milliseconds there.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np

from engine.api import CancelToken, Inpainter, InpaintError, JobGen, ModelInfo, ModelOutput, Preview, Request
from engine.weights import CACHE, cache_key


class FaceInpainter(Inpainter):
    def __init__(self, info: ModelInfo, folder: str | Path | None = None) -> None:
        super().__init__(info)
        self.folder = Path(folder or info.weights)
        self._lock = threading.Lock()
        self._enc_key: bytes | None = None
        self._enc: tuple | None = None

    def model(self):
        from engine.face.model import from_pretrained

        def load():
            return from_pretrained(self.folder).requires_grad_(False)
        return CACHE.get(cache_key("face", self.folder), load)

    def warm_up(self) -> None:
        self.model()

    def fill(self, crop: np.ndarray, mask: np.ndarray, attrs: dict[str, float], seed: int = 0,
             variation: float = 1.0, strength: float = 0.0) -> np.ndarray:
        """res x res x 3 uint8 crop + res x res bool hole -> the decoder's full res x res x 3 uint8 image."""
        import torch

        from engine.face.model import ATTRIBUTES
        from engine.tensors import to_image, to_tensor

        model = self.model()
        res = model.cfg.res
        if crop.shape != (res, res, 3) or mask.shape != (res, res):
            raise InpaintError(f"face model expects {res}x{res} crops, got {crop.shape}")
        key = hashlib.blake2b(crop.tobytes() + np.packbits(mask).tobytes(), digest_size=16).digest()
        with self._lock, torch.inference_mode():
            if key != self._enc_key:
                m = torch.from_numpy(mask.astype(np.float32))[None, None]
                self._enc, self._enc_key = model.encode(to_tensor(crop, unit=True), m), key
            eps = torch.randn(self._enc.mu.shape, generator=torch.Generator().manual_seed(int(seed)))
            a = torch.tensor([[float(attrs[n]) for n in ATTRIBUTES]], dtype=torch.float32)
            return to_image(model.sample(self._enc, a, eps, float(variation), float(strength)), unit=True)

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        cancel.check()
        filled = self.fill(request.image, request.mask, request.attributes, request.seed,
                           request.params["variation_scale"], request.params["attribute_strength"])
        yield Preview(step=1, total=1, image=np.where(request.mask[..., None], filled, request.image))
        return ModelOutput(filled)

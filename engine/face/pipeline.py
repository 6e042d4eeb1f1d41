"""Face cVAE inference: crop the face box, one encoder + decoder pass at 64 x 64, paste the hole back.

Fast path for the editor's instant attribute toggles: the model is loaded once and cached (thread-safe), input
tensors for the crop are reused between calls while the crop is unchanged, the encoder result is cached per
(crop, mask), so flipping smile/glasses or moving the variation slider re-runs only the decoder.
Variation: z = mu + sigma * (variation_scale * eps) with eps ~ N(0, I) drawn from ``Request.seed``
(Kingma & Welling 2014 reparameterisation; variation_scale is the sampling temperature, 0 = the posterior mean).
Attribute strength: guidance that contrasts the decoder with each attribute flipped (``model.guided_logits``).
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import numpy as np

from engine.api import CancelToken, InpaintError, JobGen, ModelInfo, Preview, Request
from engine.crop import CropPlan

NO_REGION_CONTEXT = 1.0  # without a face box: crop the hole plus this many hole sizes on each side


class FaceInpainter:
    def __init__(self, info: ModelInfo, folder: str | Path | None = None) -> None:
        self.info = info
        self.folder = Path(folder or info.weights)
        self._model = None
        self._lock = threading.Lock()
        self._enc_key: bytes | None = None
        self._enc: tuple | None = None
        self.last_timings: dict[str, float] = {}

    def model(self):
        with self._lock:
            if self._model is None:
                import torch

                from engine.face.model import from_pretrained

                if not (self.folder / "model.safetensors").exists():
                    raise InpaintError(f"model {self.info.name}: weights not found in {self.folder}")
                self._model = from_pretrained(self.folder)
                self._model.requires_grad_(False)
                self._torch = torch
            return self._model

    def fill(self, crop: np.ndarray, mask: np.ndarray, attrs: dict[str, float], seed: int = 0,
             variation: float = 1.0, strength: float = 0.0) -> np.ndarray:
        """res x res x 3 uint8 crop + res x res bool hole -> the decoder's full res x res x 3 uint8 image."""
        from engine.face.model import ATTRIBUTES

        model = self.model()
        torch = self._torch
        res = model.cfg.res
        if crop.shape != (res, res, 3) or mask.shape != (res, res):
            raise InpaintError(f"face model expects {res}x{res} crops, got {crop.shape}")
        key = hashlib.blake2b(crop.tobytes() + np.packbits(mask).tobytes(), digest_size=16).digest()
        with self._lock, torch.inference_mode():
            if key != self._enc_key:
                x = torch.from_numpy(crop).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
                m = torch.from_numpy(mask.astype(np.float32))[None, None]
                self._enc, self._enc_key = model.encode(x, m), key
            eps = torch.randn(self._enc.mu.shape, generator=torch.Generator().manual_seed(int(seed)))
            a = torch.tensor([[float(attrs.get(n, 0.0)) for n in ATTRIBUTES]], dtype=torch.float32)
            out = model.sample(self._enc, a, eps, float(variation), float(strength))
            out = out[0].permute(1, 2, 0).mul(255.0).round_().clamp_(0, 255)
            return out.to(torch.uint8).numpy()

    def plan(self, request: Request) -> CropPlan:
        res = self.info.resolution or 64
        if request.region is not None:
            return CropPlan.around_mask(request.mask, res, region=request.region)
        return CropPlan.around_mask(request.mask, res, context=NO_REGION_CONTEXT)

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        plan = self.plan(request)
        crop = plan.crop_image(request.image)
        cmask = plan.crop_mask(request.mask)
        if not cmask.any():
            raise InpaintError("the mask lies outside the face box: move the box over the hole")
        cancel.check()
        filled = self.fill(crop, cmask, request.attributes, request.seed,
                           float(request.params.get("variation_scale", 1.0)),
                           float(request.params.get("attribute_strength", 0.0)))
        shown = np.where(cmask[..., None], filled, crop)
        yield Preview(step=1, total=1, image=shown, box=plan.box)
        cancel.check()
        return plan.paste(request.image, filled, request.mask)

"""The patch-based model as an engine Inpainter: previews every EM iteration, cancellable between them."""
from __future__ import annotations

import cv2
import numpy as np

from engine.api import CancelToken, InpaintError, JobGen, ModelInfo, Preview, Request
from engine.patch.patchmatch import PatchConfig, inpaint_iter

PREVIEW_SIDE = 384


class PatchInpainter:
    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        p = request.params
        cfg = PatchConfig(patch=int(p["patch"]) | 1, levels=int(p["levels"]), em_iters=int(p["em_iters"]),
                          pm_iters=int(p["pm_iters"]), texture=float(p.get("texture", 1.0)),
                          seed=int(request.seed))
        image, mask = request.image, request.mask.astype(bool)
        h, w = mask.shape
        out = image
        try:
            for step, total, est in inpaint_iter(image, mask, cfg, check=cancel.check):
                out = est
                k = min(1.0, PREVIEW_SIDE / max(est.shape[:2]))
                small = est if k >= 1 else cv2.resize(est, (max(1, int(est.shape[1] * k)),
                                                            max(1, int(est.shape[0] * k))), interpolation=cv2.INTER_AREA)
                yield Preview(step=step, total=total, image=np.ascontiguousarray(small), box=(0, 0, w, h))
        except ValueError as exc:
            raise InpaintError(str(exc)) from None
        return np.where(mask[..., None], out, image)

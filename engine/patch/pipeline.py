"""The patch-based model as an engine Inpainter: previews every EM iteration, cancellable between them."""
from __future__ import annotations

import numpy as np

from engine.api import CancelToken, Inpainter, InpaintError, JobGen, ModelOutput, Preview, Request
from engine.patch.patchmatch import PatchConfig, inpaint_iter

# The hole size above which a scale gets only a detail pass (PatchConfig.max_hole): a 1000 x 800 hole in a 12 MP
# photo is filled fully at half size, then refined once at full size (benchmarks/time_to_result.py).
MAX_HOLE = 512


class PatchInpainter(Inpainter):
    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        p = request.params
        cfg = PatchConfig(patch=int(p["patch"]) | 1, levels=int(p["levels"]), em_iters=int(p["em_iters"]),
                          pm_iters=int(p["pm_iters"]), texture=float(p["texture"]), seed=int(request.seed),
                          max_hole=MAX_HOLE)
        image, mask = request.image, request.mask
        out = image
        try:
            for step, total, est in inpaint_iter(image, mask, cfg, check=cancel.check):
                out = est  # coarse to fine: the whole crop at the current pyramid level
                yield Preview(step=step, total=total, image=est)
        except ValueError as exc:
            raise InpaintError(str(exc)) from None
        return ModelOutput(np.where(mask[..., None], out, image))

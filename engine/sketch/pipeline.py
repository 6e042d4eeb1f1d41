"""Engine inpainters of the sketch family (Voynov et al. 2022 LGP guidance):

``SketchDDPMInpainter``: RePaint over the project's pixel DDPM (the one ``repaint-mnist`` uses, cached once) plus the
LGP guidance hook, the sketch loss weighted to the hole. (The Stable Diffusion inpainters, which use this family's
LGP and guidance, are in ``engine.sd.pipeline``.)

It streams a Preview per network call (the predicted clean image), checks cancellation before every call, and runs
without guidance when no sketch stroke lies in the hole (a message in the first Preview says so).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from engine.api import CancelToken, JobGen, ModelInfo, ModelOutput, Preview, Request, map_yields
from engine.ddpm.pipeline import RePaintInpainter
from engine.device import compute_device
from engine.diffusion.repaint import RePaintConfig, repaint_steps
from engine.diffusion.schedule import strided
from engine.sketch.guidance import SketchGuidance
from engine.sketch.lgp import LatentGuidancePredictor
from engine.tensors import to_image, to_tensor
from engine.weights import CACHE, cache_key


def cached_lgp(folder: str | Path, device: torch.device) -> LatentGuidancePredictor:
    """The LGP of ``folder`` on ``device``, loaded once per process."""
    path = Path(folder).expanduser()
    return CACHE.get(cache_key("lgp", path), lambda: LatentGuidancePredictor.load(path).requires_grad_(False), device)


def _strokes(request: Request) -> tuple[torch.Tensor | None, str]:
    """The sketch as a 1 x 1 x H x W tensor when strokes lie in the hole, else None and why."""
    if request.sketch is None or not request.sketch.any():
        return None, "no sketch: filling without guidance"
    if not (request.sketch & request.mask).any():
        return None, "no sketch strokes inside the hole: filling without guidance"
    return torch.from_numpy(request.sketch).float()[None, None], ""


def sketch_repaint(steps: int, resample: int) -> RePaintConfig:
    """RePaint as the sketch model samples: ``resample`` visits of every level (jumps of one level), and the DDPM
    posterior step with a clipped x0 (guidance pushes x_t where clipping is active: keeping the network's eps there
    overshoots, edge F1 0.86 instead of 0.97 at beta 2 in benchmarks/sketch_guidance.py)."""
    return RePaintConfig(t_T=steps, jump_length=1, jump_n_sample=resample, clipped_eps=True)


class SketchDDPMInpainter(RePaintInpainter):
    """RePaint over the pixel DDPM + the LGP hook. ``ddpm`` and ``lgp`` are the two folders."""

    def __init__(self, info: ModelInfo, ddpm: str | Path, lgp: str | Path) -> None:
        super().__init__(info, checkpoint=ddpm)
        self.lgp_path = Path(lgp)

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        p = request.params
        device = compute_device()
        ddpm = self.ddpm(p, device)
        known = to_tensor(request.image, device, channels=ddpm.channels)
        hole = torch.from_numpy(request.mask).float()[None, None].to(device)
        cfg = sketch_repaint(int(p["steps"]), int(p["resample"]))
        strokes, message = _strokes(request) if p["beta"] > 0 else (None, "")
        t_min = SketchGuidance.t_min_for(strided(ddpm.schedule.num_train_timesteps, cfg.t_T), p["share"])
        guide = None
        if strokes is not None and t_min is not None:
            lgp = cached_lgp(self.lgp_path, device)
            res = lgp.config.resolution
            sk = strokes.to(device)
            target = sk if res == sk.shape[-1] else F.interpolate(sk, size=res, mode="bilinear")
            weight = None if bool(hole.min() > 0) else (
                hole if res == hole.shape[-1] else F.interpolate(hole, size=res, mode="nearest"))
            guide = SketchGuidance(ddpm.unet, lgp, target, ddpm.schedule.alphas_cumprod, p["beta"], t_min, weight)
        generator = torch.Generator().manual_seed(int(request.seed))
        try:
            steps = repaint_steps(ddpm.unet, ddpm.schedule, known, hole, cfg, generator=generator, guidance=guide,
                                  cancel=cancel)
            x = yield from map_yields(steps, lambda s: Preview(step=s.step, total=s.total, image=to_image(s.denoised),
                                                               message=message if s.step == 1 else ""))
        finally:
            if guide is not None:
                guide.close()
        return ModelOutput(to_image(x), unet_calls=cfg.unet_calls)

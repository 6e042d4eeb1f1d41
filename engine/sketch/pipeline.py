"""Engine inpainters of the sketch family (Voynov et al. 2022 LGP guidance):

- ``SketchDDPMInpainter``: the project's pixel DDPM (MNIST digits) + a trained LGP; RePaint known-region
  constraint, sketch loss weighted to the hole; runs on the shared crop/resize/paste-back step.
- ``SketchSDInpainter``: a user's local Stable Diffusion folder (``checkpoint`` parameter) + an LGP trained on it
  (``lgp`` parameter, default ``<checkpoint>/sketch-lgp``); text prompt, latent known-region replacement,
  previews from a fixed linear latent -> RGB projection.

Both stream a Preview per reverse step (the predicted clean image), check cancellation before every UNet call,
and run without guidance when no sketch stroke lies in the hole (a message in the first Preview says so).
"""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.api import CancelToken, InpaintError, JobGen, ModelInfo, Preview, Request, map_yields
from engine.crop import CropPlan
from engine.device import compute_device
from engine.sketch.lgp import LatentGuidancePredictor

REPO = Path(__file__).resolve().parents[2]

_lgp_cache: dict[str, LatentGuidancePredictor] = {}
_lgp_lock = threading.Lock()


def load_lgp_cached(folder: str | Path, device: torch.device) -> LatentGuidancePredictor:
    """The LGP of ``folder`` on ``device``: loaded once per folder, one copy moved in place to the latest job's device."""
    key = str(Path(folder).expanduser().resolve())
    with _lgp_lock:
        if key not in _lgp_cache:
            _lgp_cache[key] = LatentGuidancePredictor.load(folder).requires_grad_(False)
        return _lgp_cache[key].to(device)


def _resolve(path: str | Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO / p


def _crop_sketch(plan: CropPlan, sketch: np.ndarray | None) -> np.ndarray | None:
    if sketch is None or not sketch.any():
        return None
    return plan.crop_mask(sketch)  # a model pixel is a stroke if any image pixel under it is


def _to_u8(x: torch.Tensor) -> np.ndarray:
    """C x H x W in [-1, 1] on any device -> H x W x 3 uint8."""
    a = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


class SketchDDPMInpainter:
    """Pixel DDPM + LGP. ``ddpm`` and ``lgp`` are folders (relative to the repository or absolute)."""

    def __init__(self, info: ModelInfo, ddpm: str, lgp: str) -> None:
        self.info = info
        self.ddpm = _resolve(ddpm)
        self.lgp_path = _resolve(lgp)
        self.last_unet_calls: int | None = None

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        from engine.sketch.guidance import SketchGuide, iter_ddpm
        from engine.sketch.pixel import load_pixel_ddpm, unet_io

        p = request.params
        device = compute_device()
        unet, abar = load_pixel_ddpm(self.ddpm, device)
        size, channels = unet_io(unet)
        plan = CropPlan.around_mask(request.mask, size, region=request.region)
        crop = plan.crop_image(request.image)
        if channels == 1:
            crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None]
        known = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(127.5).sub(1).to(device)
        hole = torch.from_numpy(plan.crop_mask(request.mask)).float()[None, None].to(device)
        sketch = _crop_sketch(plan, request.sketch)
        guide, message = None, ""
        if sketch is not None and p["beta"] > 0:
            sk = torch.from_numpy(sketch).float()[None, None].to(device)
            if (sk * hole).sum() == 0:
                message = "no sketch strokes inside the hole: filling without guidance"
            else:
                lgp = load_lgp_cached(self.lgp_path, device)
                res = lgp.config.resolution
                target = sk if res == size else torch.nn.functional.interpolate(sk, size=res, mode="bilinear")
                weight = hole if res == size else torch.nn.functional.interpolate(hole, size=res, mode="nearest")
                full = bool(hole.min() > 0)
                guide = SketchGuide(lgp, target, beta=float(p["beta"]), share=float(p["share"]),
                                    weight=None if full else weight)
        elif sketch is None:
            message = "no sketch: filling without guidance"
        gen = torch.Generator().manual_seed(int(request.seed))
        steps, resample = int(p["steps"]), int(p["resample"])
        it = iter_ddpm(unet, abar, tuple(known.shape), steps, gen, guide, known, hole, resample, cancel.check)
        x = yield from map_yields(it, lambda s: Preview(step=s[0], total=s[1], image=_to_u8(s[2][0]), box=plan.box,
                                                        message=message if s[0] == 1 else ""))
        self.last_unet_calls = resample * (steps - 1) + 1  # every step resamples except the last
        fill = _to_u8(x[0])
        return plan.paste(request.image, fill, request.mask)


class SketchSDInpainter:
    """Stable Diffusion from the ``checkpoint`` folder parameter + an LGP trained on it."""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self.last_unet_calls: int | None = None

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        from engine.sketch.sd import iter_generate, latent_preview, load_sd_folder

        p = request.params
        device = compute_device()
        comp = load_sd_folder(p["checkpoint"], device=device)
        res = comp.resolution
        plan = CropPlan.around_mask(request.mask, res, region=request.region)
        crop = plan.crop_image(request.image)
        image = torch.from_numpy(crop).permute(2, 0, 1)[None].float().div(127.5).sub(1)
        hole = torch.from_numpy(plan.crop_mask(request.mask)).float()[None, None]
        sketch = _crop_sketch(plan, request.sketch)
        lgp = sk = None
        message = ""
        if sketch is not None and p["beta"] > 0:
            sk = torch.from_numpy(sketch).float()[None, None]
            if (sk * hole).sum() == 0:
                message, sk = "no sketch strokes inside the hole: filling without guidance", None
            else:
                lgp_dir = Path(p["lgp"]).expanduser() if p["lgp"] else comp.folder / "sketch-lgp"
                if not lgp_dir.is_dir():
                    raise InpaintError(f"no LGP for this Stable Diffusion folder at {lgp_dir}: train one with "
                                       f"`python -m engine.sketch.train --sd {comp.folder} --images PHOTOS` "
                                       f"or set the 'lgp' parameter")
                lgp = load_lgp_cached(lgp_dir, device)
                if lgp.config.target != "latent" or lgp.config.resolution != comp.latent_size:
                    raise InpaintError(f"LGP at {lgp_dir} was trained for another model "
                                       f"({lgp.config.unet_kind}, {lgp.config.resolution}px); retrain it on this one")
        elif sketch is None:
            message = "no sketch: filling without guidance"
        cfg = float(p["cfg_scale"])
        it = iter_generate(comp, request.prompt, int(p["steps"]), int(request.seed), cfg, lgp, sk,
                           float(p["beta"]), float(p["share"]), image, hole, cancel.check)
        out = yield from map_yields(it, lambda s: Preview(step=s[0], total=s[1], image=latent_preview(s[2]),
                                                          box=plan.box, message=message if s[0] == 1 else ""))
        self.last_unet_calls = int(p["steps"]) * (2 if cfg > 1 else 1)
        return plan.paste(request.image, _to_u8(out[0]), request.mask)

"""RePaint as an engine Inpainter: crop around the hole, run the sampler, stream predicted-x0 previews, paste back.

    inp = from_pretrained("resources/models/ddpm-mnist")        # or any diffusers DDPM folder / hub id
    result = engine.runner.run_to_end(inp, Request(image, mask, seed=0, params={"fast": True}))

The model works on its UNet's square ``sample_size`` (28 for the shipped MNIST model): the shared crop step
(``engine.crop.CropPlan``) cuts a box around the mask, resizes it, and a 1-channel model sees its luminance.
Its domain is white-on-black 28x28 digits; on a photo it still fills, but with digit-like strokes.
"""
from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from engine.api import CancelToken, InpaintError, JobGen, ModelInfo, Preview, Request, map_yields
from engine.crop import CropPlan
from engine.ddpm import MCG_DEFAULT
from engine.ddpm.repaint import DEFAULT, FAST, RePaintConfig, repaint_steps
from engine.device import compute_device


def config_from_params(params: dict) -> RePaintConfig:
    """The sampler settings a job asks for: fast mode overrides the three schedule parameters."""
    mcg = float(params.get("mcg", MCG_DEFAULT))
    if params.get("fast", False):
        return replace(FAST, mcg=mcg)
    return replace(DEFAULT, t_T=int(params.get("steps", DEFAULT.t_T)),
                   jump_length=int(params.get("jump_length", DEFAULT.jump_length)),
                   jump_n_sample=int(params.get("resamples", DEFAULT.jump_n_sample)), mcg=mcg)


def to_model_space(patch: np.ndarray, channels: int) -> torch.Tensor:
    """size x size x 3 uint8 RGB -> 1 x C x size x size float in [-1, 1] (C = 1: luminance)."""
    if channels == 1:
        arr = cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)[None]
    else:
        arr = patch.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(arr)).float().div(127.5).sub(1).unsqueeze(0)


def to_rgb_uint8(x: torch.Tensor) -> np.ndarray:
    """1 x C x H x W in [-1, 1] -> H x W x 3 uint8."""
    arr = ((x[0].float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else np.ascontiguousarray(arr)


class RePaintInpainter:
    """Inpainter over one DDPM checkpoint (fixed at construction) or the one named by the ``checkpoint`` param."""

    def __init__(self, info: ModelInfo, checkpoint: str | Path | None = None) -> None:
        self.info = info
        self.checkpoint = str(checkpoint) if checkpoint else None
        self.last_unet_calls: int | None = None
        self._cache: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def model(self, checkpoint: str | None = None, device: torch.device | None = None):
        """(unet, schedule) for ``checkpoint`` (default: this model's own) on ``device``: loaded once and cached, one
        copy, moved in place to the device of the latest job (turning the GPU off leaves no second copy there)."""
        from engine.ddpm.model import load_ddpm

        key = checkpoint or self.checkpoint
        if not key:
            raise InpaintError(f"model {self.info.name}: set the 'checkpoint' parameter to a DDPM folder or hub id")
        device = device or torch.device("cpu")
        with self._lock:
            if key not in self._cache:
                try:
                    self._cache[key] = load_ddpm(key, device)
                except (OSError, ValueError, KeyError) as exc:
                    raise InpaintError(f"could not load DDPM checkpoint {key!r}: {str(exc).splitlines()[0]}") from exc
            unet, schedule = self._cache[key]
            return unet.to(device), schedule.to(device)

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        params = request.params
        device = compute_device()
        unet, schedule = self.model(params.get("checkpoint") or None, device)
        size = int(getattr(unet.config, "sample_size", 28) or 28)
        channels = int(getattr(unet.config, "in_channels", 1))
        plan = CropPlan.around_mask(request.mask, size, region=request.region)
        image = to_model_space(plan.crop_image(request.image), channels).to(device)
        mask = torch.from_numpy(plan.crop_mask(request.mask)).float()[None, None].to(device)
        cfg = config_from_params(params)
        generator = torch.Generator().manual_seed(int(request.seed))
        steps = repaint_steps(unet, schedule, image, mask, cfg, generator=generator, cancel=cancel)
        x = yield from map_yields(steps, lambda step: Preview(
            step=step.index, total=step.total, image=to_rgb_uint8(step.x0), box=plan.box, message=f"t = {step.t}"))
        self.last_unet_calls = cfg.unet_calls
        return plan.paste(request.image, to_rgb_uint8(x), request.mask)


def from_pretrained(path_or_id: str | Path, name: str = "ddpm-custom") -> RePaintInpainter:
    """A RePaint inpainter over any diffusers-format DDPM checkpoint (local folder or hub id)."""
    from engine.ddpm import PARAMS

    info = ModelInfo(name=name, title=f"RePaint ({Path(str(path_or_id)).name})", family="ddpm",
                     description="RePaint over a user DDPM checkpoint", domain="whatever the checkpoint was trained on",
                     params=PARAMS, weights=None)
    return RePaintInpainter(info, checkpoint=path_or_id)

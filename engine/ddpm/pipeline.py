"""RePaint as an engine Inpainter: the shared RePaint sampler over a DDPM checkpoint, predicted-x0 previews.

    inp = registry.load("repaint-mnist")                        # or "repaint-ddpm-folder" with checkpoint=DIR
    result = engine.runner.run_to_end(inp, Request(image, mask, seed=0, params={"fast": True}))

The model works on its UNet's square ``sample_size`` (28 for the shipped MNIST model): the runner crops a box
around the hole and resizes it; a 1-channel model sees its luminance. Its domain is white-on-black 28x28 digits;
on a photo it still fills, but with digit-like strokes.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from engine.api import (CancelToken, Geometry, InpaintError, Inpainter, JobGen, ModelInfo, ModelOutput, Preview,
                        Request, map_yields)
from engine.ddpm.model import DDPM, load_ddpm
from engine.device import compute_device
from engine.diffusion.repaint import RePaintConfig, repaint_steps
from engine.tensors import to_image, to_tensor
from engine.weights import CACHE, cache_key

DEFAULT = RePaintConfig(t_T=250, jump_length=10, jump_n_sample=10, mcg=1.0)  # the paper's: 2,410 UNet calls
# Fast mode: 20 DDIM-strided levels (stride 50) with all the resampling spent on one band. Probes on the step-24,000
# weights (docs/ddpm.md, "Fast mode") showed where resampling pays: spreading r = 10 over every 4th level gives
# ~75 %; resampling only t in [0, 200] ~66 %, only t in [400, 800] ~57 %, only the band t in [200, 400] ~83 %.
# The band is visited r = 5 times (36 UNet calls) with a 4x manifold-constraint step: on the validation split that
# reads 0.857, as r = 40 at step 1 (176 calls) did, in a fifth of the time (0.81 s against 4.28 s for one digit;
# benchmarks/repaint_fast_variants.py, docs/ddpm.md "Speed"). r = 10 at step 3 reads 0.877 but takes 1.0-1.4 s.
FAST = RePaintConfig(t_T=20, jump_length=4, jump_n_sample=5, eta=1.0, resample_levels=(4,), mcg=4.0)


def cached_ddpm(folder: str | Path, device: torch.device | None = None) -> DDPM:
    """The DDPM of ``folder``, loaded once per process (RePaint and the sketch family share it), on ``device``."""
    path = Path(folder).expanduser()
    if not str(folder).strip():
        raise InpaintError("no DDPM checkpoint given: set the 'checkpoint' parameter to a DDPM folder")
    return CACHE.get(cache_key("ddpm", path), lambda: load_ddpm(path), device)


def config_from_params(params: dict) -> RePaintConfig:
    """The sampler settings a job asks for: fast mode overrides the three schedule parameters; the ``mcg``
    parameter scales the schedule's own manifold-constraint step (1 = the step measured for it, 0 = none)."""
    if params["fast"]:
        return replace(FAST, mcg=FAST.mcg * float(params["mcg"]))
    return replace(DEFAULT, t_T=int(params["steps"]), jump_length=int(params["jump_length"]),
                   jump_n_sample=int(params["resamples"]), mcg=DEFAULT.mcg * float(params["mcg"]))


class RePaintInpainter(Inpainter):
    """Inpainter over one DDPM checkpoint (fixed at construction) or the one named by the ``checkpoint`` param."""

    def __init__(self, info: ModelInfo, checkpoint: str | Path | None = None) -> None:
        super().__init__(info)
        self.checkpoint = str(checkpoint) if checkpoint else None

    def ddpm(self, params: dict, device: torch.device | None = None) -> DDPM:
        return cached_ddpm(self.checkpoint or params["checkpoint"], device)

    def geometry(self, params: dict) -> Geometry:
        return Geometry(size=self.ddpm(params).sample_size)

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        outs = yield from self._fill([request], cancel, previews=True)
        return outs[0]

    def run_batch(self, requests: list[Request], cancel: CancelToken):
        return (yield from self._fill(requests, cancel, previews=False))

    def _fill(self, requests: list[Request], cancel: CancelToken, previews: bool):
        """One sampler over the stacked crops with a generator per crop (its own seed), so a crop filled in a batch
        gets the fill it gets alone (up to float rounding); previews (the predicted x0) only for a single crop."""
        device = compute_device()
        params = requests[0].params
        ddpm = self.ddpm(params, device)
        image = torch.cat([to_tensor(r.image, device, channels=ddpm.channels) for r in requests])
        mask = torch.from_numpy(np.stack([r.mask for r in requests])).float()[:, None].to(device)
        cfg = config_from_params(params)
        generators = [torch.Generator().manual_seed(int(r.seed)) for r in requests]
        steps = repaint_steps(ddpm.traced, ddpm.schedule, image, mask, cfg, generator=generators, cancel=cancel)
        x = yield from map_yields(steps, lambda s: Preview(
            step=s.step, total=s.total, image=to_image(s.denoised) if previews else None, message=f"t = {s.t}"))
        return [ModelOutput(to_image(x[i]), unet_calls=cfg.unet_calls) for i in range(len(requests))]

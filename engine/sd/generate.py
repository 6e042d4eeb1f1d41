"""The Stable Diffusion fill: one generator from (image, hole, prompt) to the filled image, on the engine's samplers.

Inpainting follows the checkpoint (Rombach et al. 2022, Sec. 4.5 and the SD inpainting model card):

- a 9-channel inpainting UNet sees [z_t, m, E(x * (1 - m))] at every call (latent, the hole downscaled to the
  latent grid, the latent of the image with the hole blanked to grey) and fills by itself;
- an ordinary 4-channel UNet inpaints by latent blending: after every step the known region is replaced by the
  image's latent at the new noise level (RePaint-style replacement, Lugmayr et al. 2022; the DDIM path uses
  ``engine.diffusion.samplers.sample``, the sigma samplers ``engine.diffusion.ksamplers``).

``strength`` < 1 starts from the image itself noised to that fraction of the schedule (SDEdit, Meng et al. 2022,
"SDEdit: Guided Image Synthesis and Editing with Stochastic Differential Equations"), running that fraction of the
steps. A sketch in the hole with no Latent Guidance Predictor for this checkpoint is drawn into the start image as
dark strokes and the run starts at ``sketch_strength`` (SDEdit's stroke-painting input: the noise washes out the
drawing's flatness, the denoiser keeps its layout); with an LGP, the guidance of Voynov et al. 2022
(``engine.sketch.guidance``) steers DDIM steps instead. Classifier-free guidance (Ho & Salimans 2022) combines the
two halves of each UNet call; v-predicting checkpoints (Salimans & Ho 2022) are converted to x0 / eps.

Every tensor stays on the model's device (the meta device included: no value is read back until the decode); the
seed's noise is drawn on the CPU (``engine.device.seeded_noise``), so a seed gives the same noise on any device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generator

import numpy as np
import torch
import torch.nn.functional as F

from engine.device import seeded_noise
from engine.diffusion import ksamplers as ks
from engine.diffusion.samplers import Step, sample
from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig, diffusers_timesteps
from engine.sd.model import SDModel, pixel_to_latent_mask

SCHEDULERS = ("dpm++ 2m karras", "euler a", "ddim", "lcm")
STROKE = -0.8  # the grey level ([-1, 1]) sketch strokes are drawn with into an SDEdit start image


@dataclass
class FillSettings:
    prompt: str = ""
    negative: str = ""
    steps: int = 25
    cfg_scale: float = 7.0
    strength: float = 1.0
    scheduler: str = "dpm++ 2m karras"
    seed: int = 0
    beta: float = 1.0  # LGP guidance strength
    share: float = 0.5  # guided share of the steps
    sketch_strength: float = 0.75  # SDEdit start for sketches without an LGP

    def steps_run(self, strength: float | None = None) -> int:
        """The steps actually run: ``steps`` x ``strength`` (at least one), as diffusers' img2img counts them."""
        s = self.strength if strength is None else strength
        return self.steps if s >= 1.0 else max(1, min(self.steps, int(self.steps * s)))


def sketch_start(image: torch.Tensor, sketch: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """The image with the strokes inside the hole drawn in dark grey (SDEdit's guide image)."""
    strokes = (sketch.to(image) * hole.to(image)).clamp(0, 1)
    return image * (1 - strokes) + STROKE * strokes


def _net(model: SDModel, cond, extra, cfg_scale: float):
    """The UNet's classifier-free-guided output (noise or v) for a batch-1 latent."""
    def net(z: torch.Tensor, t) -> torch.Tensor:
        out = model.unet_out(z, t, cond, extra)
        if cond.guided:
            u, c = out.chunk(2)
            out = u + cfg_scale * (c - u)
        return out
    return net


def fill(model: SDModel, image: torch.Tensor, hole: torch.Tensor, s: FillSettings, sketch: torch.Tensor | None = None,
         lgp=None, cancel=None) -> Generator[Step, None, torch.Tensor]:
    """Yield a ``Step`` per UNet step (``denoised``: the predicted clean latent, for previews); return the filled
    1 x 3 x H x W image in [-1, 1]. ``image`` 1 x 3 x H x W in [-1, 1], ``hole`` and ``sketch`` 1 x 1 x H x W in
    {0, 1} (any device: moved to the model's)."""
    dev = model.device
    image, hole = image.to(dev).float(), hole.to(dev).float()
    sketch = None if sketch is None else sketch.to(dev).float()
    height, width = image.shape[-2:]
    lat_size = (height // model.vae_scale, width // model.vae_scale)
    gen = torch.Generator().manual_seed(int(s.seed))
    cond = model.conditioning(s.prompt, s.negative, s.cfg_scale, (height, width))
    guided_by_lgp = lgp is not None and sketch is not None and s.beta > 0
    strength, start_image = s.strength, image
    if sketch is not None and not guided_by_lgp:
        start_image = sketch_start(image, sketch, hole)
        strength = min(strength, s.sketch_strength)
    known = model.vae_encode(image)
    start = known if start_image is image else model.vae_encode(start_image)
    lat_hole = pixel_to_latent_mask(hole, lat_size)
    extra = None
    if model.inpainting:
        extra = torch.cat([lat_hole, model.vae_encode(image * (1 - hole))], dim=1)
    blend = dict(known=known, mask=lat_hole) if not model.inpainting else dict(known=None, mask=None)
    config = dict(model.scheduler_config)
    if model.kind.flavour:  # few-step distillations start at the last timestep (Lin et al. 2024, "trailing")
        config["timestep_spacing"] = "trailing"
    schedule = NoiseSchedule(ScheduleConfig.from_dict(config)).to(dev)
    v_pred = config.get("prediction_type", "epsilon") == "v_prediction"
    noise = seeded_noise(known.shape, gen, known)
    net = _net(model, cond, extra, s.cfg_scale)
    n_run = s.steps_run(strength)
    if guided_by_lgp or s.scheduler == "ddim":
        return (yield from _ddim(model, config, schedule, net, v_pred, start, noise, s, n_run, strength, blend, gen,
                                 cancel, sketch if guided_by_lgp else None, lgp, lat_hole, cond.guided))
    if s.scheduler not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {s.scheduler!r}")
    if s.scheduler == "dpm++ 2m karras":
        sigmas = ks.karras_sigmas(schedule, s.steps)
        timesteps: list[int] = []
    elif s.scheduler == "euler a":
        timesteps = sorted(diffusers_timesteps(config, s.steps)[0], reverse=True)
        sigmas = ks.timestep_sigmas(schedule, timesteps)
    else:
        timesteps = ks.lcm_timesteps(schedule.num_train_timesteps, s.steps)
        sigmas = ks.timestep_sigmas(schedule, timesteps)
    log_sigmas = np.log(ks.schedule_sigmas(schedule))
    if not timesteps:
        timesteps = [round(ks.sigma_to_t(sig, log_sigmas)) for sig in sigmas[:-1]]
    first = len(sigmas) - 1 - n_run
    sigmas, timesteps = sigmas[first:], timesteps[first:]
    x = noise * math.sqrt(1 + sigmas[0] ** 2) if strength >= 1.0 else start + sigmas[0] * noise

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
        z = x / math.sqrt(1 + sigma * sigma)
        out = net(z, round(ks.sigma_to_t(sigma, log_sigmas)))
        if v_pred:  # Karras et al. 2022, Table 1 with sigma_data = 1: c_skip = 1/(sigma^2+1), c_out = -sigma/sqrt(.)
            return x / (1 + sigma * sigma) - sigma / math.sqrt(1 + sigma * sigma) * out
        return x - sigma * out

    kw = dict(blend, noise=noise, cancel=cancel)
    if s.scheduler == "dpm++ 2m karras":
        steps = ks.sample_dpmpp_2m(denoise, x, sigmas, timesteps=timesteps, **kw)
    elif s.scheduler == "euler a":
        steps = ks.sample_euler_ancestral(denoise, x, sigmas, generator=gen, timesteps=timesteps, **kw)
    else:
        steps = ks.sample_lcm(denoise, x, sigmas, timesteps, generator=gen, **kw)
    with model.on_device(model.unet):  # model CPU offload: the UNet on the GPU for the loop only
        z = yield from steps
    return model.vae_decode(z)


def _ddim(model, config, schedule, net, v_pred, start, noise, s, n_run, strength, blend, gen, cancel, sketch, lgp,
          lat_hole, guided_cfg):
    """DDIM (Song et al. 2021, eta = 0) on the checkpoint's own time grid, with the LGP step when there is one."""
    from engine.sketch.guidance import SketchGuidance

    timesteps, final = diffusers_timesteps(config, s.steps)
    timesteps = timesteps[:n_run]
    t_top = timesteps[-1]
    ab = schedule.alpha_bar(t_top)
    x = noise if strength >= 1.0 else ab.sqrt() * start + (1 - ab).sqrt() * noise

    def denoise(z: torch.Tensor, t: int):
        out = net(z, t)
        if v_pred:
            a = schedule.alpha_bar(t)
            return (1 - a).sqrt() * z + a.sqrt() * out, a.sqrt() * z - (1 - a).sqrt() * out
        return out, schedule.predict_x0(z, t, out)

    guide = None
    t_min = SketchGuidance.t_min_for(timesteps, s.share)
    if sketch is not None and t_min is not None:
        target = model.vae_encode((1.0 - 2.0 * sketch).expand(-1, 3, -1, -1))  # black strokes on white
        res = lgp.config.resolution
        if target.shape[-1] != res:
            target = F.interpolate(target, size=res, mode="bilinear", align_corners=False)
        weight = F.interpolate(lat_hole, size=res, mode="nearest")
        guide = SketchGuidance(model.unet, lgp, target, schedule.alphas_cumprod, s.beta, t_min, weight,
                               conditional_half=guided_cfg)
    try:
        with model.on_device(model.unet):
            z = yield from sample(denoise, x, timesteps, schedule, known=blend["known"], mask=blend["mask"],
                                  eta=0.0, clip=False, guidance=guide, generator=gen, cancel=cancel, final=final)
    finally:
        if guide is not None:
            guide.close()
    return model.vae_decode(z)

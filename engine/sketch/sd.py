"""Stable Diffusion from a local diffusers folder, with LGP sketch guidance and latent RePaint-style inpainting.

Loading: a folder in diffusers layout (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``) is read with ``from_pretrained`` on the local path only (no hub access); any
missing or unreadable part is reported as one ``InpaintError`` line naming it.

Sampling (``iter_generate``): the shared sampler (``engine.diffusion.samplers``) with DDIM (Song et al. 2021,
eta = 0) on the folder's own schedule and time grid (as diffusers' DDIMScheduler builds them), classifier-free
guidance (Ho & Salimans 2022) inside the denoiser when ``cfg_scale > 1``, and on the first ``share`` of the steps
the LGP step of Voynov et al. 2022 (``engine.sketch.guidance``), whose target E(e) is the VAE latent of the sketch
drawn as black strokes on white; features come from the text-conditioned pass. Inpainting replaces the known
region in latent space at every step with the VAE latent of the image (encoded once), forward-noised to the new
level (RePaint, Lugmayr et al. 2022), and the sketch loss is weighted to the hole.

Previews are a fixed linear 4 -> 3 projection of the predicted clean latent (no VAE decode per step).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Generator

import numpy as np
import torch
import torch.nn.functional as F

from engine.api import InpaintError
from engine.device import seeded_noise
from engine.diffusion.samplers import Step, sample
from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig, diffusers_timesteps
from engine.sketch.guidance import SketchGuidance
from engine.sketch.lgp import LatentGuidancePredictor
from engine.weights import CACHE, cache_key

PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")

# Approximate linear map from SD v1 latents (scaled by the VAE scaling factor) to RGB in [-1, 1]: the widely used
# "latent RGB factors" for cheap previews (rows: latent channels, columns: R, G, B).
LATENT_RGB = torch.tensor([[0.3512, 0.2297, 0.3227],
                           [0.3250, 0.4974, 0.2350],
                           [-0.2829, 0.1762, 0.2721],
                           [-0.2120, -0.2616, -0.7177]])


@dataclass
class SDComponents:
    folder: Path
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def resolution(self) -> int:
        return self.latent_size * self.vae_scale

    @property
    def scaling_factor(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def to(self, device: torch.device | str) -> "SDComponents":
        """Move the networks to ``device`` in place: one copy of the weights, on the device of the latest job."""
        for m in (self.unet, self.vae, self.text_encoder):
            m.to(device)
        return self

    @property
    def schedule(self) -> NoiseSchedule:
        """The folder's training schedule (on the CPU: the sampler moves what it uses)."""
        return NoiseSchedule(ScheduleConfig.from_dict(self.scheduler_config))

    def timesteps(self, steps: int) -> tuple[list[int], int | None]:
        """The DDIM grid of ``steps`` levels and the timestep the chain ends at, as the folder's config asks."""
        return diffusers_timesteps(self.scheduler_config, steps)


def check_sd_folder(folder: str | Path) -> Path:
    """The folder as a Path, or InpaintError saying what is missing."""
    if not str(folder).strip():
        raise InpaintError("no Stable Diffusion folder given: set the 'checkpoint' parameter to a local diffusers "
                           "folder (with model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise InpaintError(f"Stable Diffusion folder not found: {path}")
    if not (path / "model_index.json").is_file():
        raise InpaintError(f"{path} is not a diffusers folder: model_index.json is missing")
    missing = [p for p in PARTS if not (path / p).is_dir()]
    if missing:
        raise InpaintError(f"Stable Diffusion folder {path} lacks {', '.join(p + '/' for p in missing)}")
    return path


def load_sd_folder(folder: str | Path, device: torch.device | str | None = None) -> SDComponents:
    """The parts of a local SD folder, frozen, in float32: loaded once per folder (``engine.weights.CACHE``) and
    moved in place to ``device`` (one copy of the weights: SD is GBs)."""
    path = check_sd_folder(folder)
    return CACHE.get(cache_key("sd", path), lambda: _load_parts(path), device)


def _load_parts(path: Path) -> SDComponents:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    part = "?"
    try:
        part = "unet"
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", local_files_only=True,
                                                    use_safetensors=True)
        part = "vae"
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True, use_safetensors=True)
        part = "text_encoder"
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", local_files_only=True,
                                                     use_safetensors=True)
        part = "tokenizer"
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True)
        part = "scheduler"
        sched_cfg = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InpaintError(f"Stable Diffusion folder {path}: could not load {part}/ ({msg})") from None
    for m in (unet, vae, text_encoder):
        m.eval().requires_grad_(False)
    return SDComponents(path, unet, vae, text_encoder, tokenizer, sched_cfg)


@torch.no_grad()
def encode_prompt(comp: SDComponents, prompts: list[str]) -> torch.Tensor:
    tok = comp.tokenizer(prompts, padding="max_length", max_length=comp.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt")
    return comp.text_encoder(tok.input_ids.to(comp.device))[0]


@torch.no_grad()
def vae_encode(comp: SDComponents, images: torch.Tensor) -> torch.Tensor:
    """B x 3 x H x W in [-1, 1] -> scaled latents (the posterior mean, deterministic)."""
    return comp.vae.encode(images).latent_dist.mean * comp.scaling_factor


@torch.no_grad()
def vae_decode(comp: SDComponents, latents: torch.Tensor) -> torch.Tensor:
    return comp.vae.decode(latents / comp.scaling_factor).sample.clamp(-1, 1)


def sketch_to_image_tensor(sketch: torch.Tensor) -> torch.Tensor:
    """B x 1 x H x W in {0, 1} (1 = stroke) -> B x 3 x H x W in [-1, 1]: black strokes on white."""
    return (1.0 - 2.0 * sketch.float()).expand(-1, 3, -1, -1)


def edge_latent(comp: SDComponents, sketch: torch.Tensor) -> torch.Tensor:
    """E(e): the VAE latent of the sketch image (the LGP's target for latent models)."""
    return vae_encode(comp, sketch_to_image_tensor(sketch))


def latent_preview(latents: torch.Tensor) -> np.ndarray:
    """1 x 4 x h x w latent (any device) -> h x w x 3 uint8 through the fixed LATENT_RGB projection (no decode)."""
    rgb = torch.einsum("bchw,cd->bdhw", latents[:, :4].float().cpu(), LATENT_RGB)
    rgb = ((rgb[0].clamp(-1, 1) + 1) * 127.5).round().byte()
    return rgb.permute(1, 2, 0).numpy()


def pixel_to_latent_mask(hole: torch.Tensor, latent_size: int) -> torch.Tensor:
    """B x 1 x H x W hole -> B x 1 x h x w, conservative: a latent cell is hole if any pixel under it is."""
    return (F.adaptive_max_pool2d(hole.float(), latent_size) > 0).float()


def cfg_denoiser(comp: SDComponents, schedule: NoiseSchedule, context: torch.Tensor, cfg_scale: float):
    """The UNet as a denoiser, with classifier-free guidance (Ho & Salimans 2022) when ``cfg_scale`` > 1:
    ``context`` is then [negative prompt, prompt] and eps = eps_u + s (eps_c - eps_u)."""
    do_cfg = cfg_scale > 1.0

    def denoise(z: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        eps = comp.unet(torch.cat([z, z]) if do_cfg else z, t, encoder_hidden_states=context).sample
        if do_cfg:
            eps_u, eps_c = eps.chunk(2)
            eps = eps_u + cfg_scale * (eps_c - eps_u)
        return eps, schedule.predict_x0(z, t, eps)
    return denoise


def iter_generate(comp: SDComponents, prompt: str, num_steps: int = 30, seed: int = 0, cfg_scale: float = 7.5,
                  lgp: LatentGuidancePredictor | None = None, sketch: torch.Tensor | None = None, beta: float = 1.0,
                  share: float = 0.5, image: torch.Tensor | None = None, hole: torch.Tensor | None = None,
                  cancel=None, negative_prompt: str = "") -> Generator[Step, None, torch.Tensor]:
    """Text-to-image (or inpainting, with ``image`` 1 x 3 x R x R in [-1, 1] and ``hole`` 1 x 1 x R x R) with
    optional sketch guidance (``sketch`` 1 x 1 x R x R in {0, 1}). A generator of the sampler's ``Step``s (their
    ``denoised`` is the predicted clean latent, for previews); returns 1 x 3 x R x R in [-1, 1]. Runs on
    ``comp.device``; the inputs are moved there, the noise is drawn on the CPU from ``seed``."""
    device = comp.device
    image, hole, sketch = (None if v is None else v.to(device) for v in (image, hole, sketch))
    size = comp.latent_size
    gen = torch.Generator().manual_seed(int(seed))
    schedule = comp.schedule.to(device)
    timesteps, final = comp.timesteps(num_steps)
    cond = encode_prompt(comp, [prompt])
    context = torch.cat([encode_prompt(comp, [negative_prompt]), cond]) if cfg_scale > 1.0 else cond
    z = seeded_noise((1, comp.unet.config.in_channels, size, size), gen, cond)
    known = lat_hole = None
    if image is not None and hole is not None:
        known = vae_encode(comp, image)
        lat_hole = pixel_to_latent_mask(hole, size)
    guide = None
    t_min = SketchGuidance.t_min_for(timesteps, share)
    if lgp is not None and sketch is not None and beta > 0 and t_min is not None:
        target = edge_latent(comp, sketch)
        if target.shape[-1] != lgp.config.resolution:
            target = F.interpolate(target, size=lgp.config.resolution, mode="bilinear", align_corners=False)
        weight = None if lat_hole is None else F.interpolate(lat_hole, size=lgp.config.resolution, mode="nearest")
        guide = SketchGuidance(comp.unet, lgp, target, schedule.alphas_cumprod, beta, t_min, weight,
                               conditional_half=cfg_scale > 1.0)
    try:
        z = yield from sample(cfg_denoiser(comp, schedule, context, cfg_scale), z, timesteps, schedule, known=known,
                              mask=lat_hole, eta=0.0, clip=False, guidance=guide, generator=gen, cancel=cancel,
                              final=final)
    finally:
        if guide is not None:
            guide.close()
    return vae_decode(comp, z)

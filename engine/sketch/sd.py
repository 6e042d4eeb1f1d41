"""Stable Diffusion from a local diffusers folder, with LGP sketch guidance and latent RePaint-style inpainting.

Loading: a folder in diffusers layout (``model_index.json``, ``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``) is read with ``from_pretrained`` on the local path only (no hub access); any
missing or unreadable part is reported as one ``InpaintError`` line naming it.

Sampling (``generate``): DDIM (Song et al. 2021, eta = 0) over the folder's training schedule, classifier-free
guidance (Ho & Salimans 2022) when ``cfg_scale > 1``, and on the first ``share`` of the steps the LGP step of
Voynov et al. 2022 (arXiv 2211.13752, eq. 4): z~_{t-1} = z_{t-1} - alpha * grad_{z_t} ||LGP(F(z_t|c,t)) - E(e)||^2,
alpha = beta * ||z_t - z_{t-1}|| / ||grad||, where E(e) is the VAE latent of the sketch drawn as black strokes on
white. Features come from the text-conditioned pass. Inpainting replaces the known region in latent space at every
step with the VAE latent of the image (encoded once), forward-noised to the new level (RePaint, Lugmayr et al.
2022), and the sketch loss is weighted to the hole.

Previews are a fixed linear 4 -> 3 projection of the predicted clean latent (no VAE decode per step).
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from engine.api import InpaintError, drive
from engine.device import seeded_noise
from engine.sketch.guidance import apply_guidance, guided_steps
from engine.sketch.lgp import FeatureHooks, LatentGuidancePredictor, edge_loss

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

    def make_scheduler(self):
        from diffusers import DDIMScheduler

        cfg = {k: v for k, v in self.scheduler_config.items() if not k.startswith("_")}
        return DDIMScheduler.from_config(cfg)


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


_cache: dict[str, SDComponents] = {}
_cache_lock = threading.Lock()


def load_sd_folder(folder: str | Path, cache: bool = True, device: torch.device | str | None = None
                   ) -> SDComponents:
    """Load (and cache by resolved path) the parts of a local SD folder, frozen, in float32 on ``device``. One copy
    of the weights (SD is GBs): a cached one moves to ``device`` in place; None: the CPU when loaded, else where it
    is."""
    path = check_sd_folder(folder)
    key = str(path.resolve())
    with _cache_lock:
        if cache and key in _cache:
            return _cache[key] if device is None else _cache[key].to(device)
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    part = "?"
    try:
        part = "unet"
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", local_files_only=True)
        part = "vae"
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True)
        part = "text_encoder"
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", local_files_only=True)
        part = "tokenizer"
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True)
        part = "scheduler"
        sched_cfg = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InpaintError(f"Stable Diffusion folder {path}: could not load {part}/ ({msg})") from None
    for m in (unet, vae, text_encoder):
        m.eval().requires_grad_(False)
    comp = SDComponents(path, unet, vae, text_encoder, tokenizer, sched_cfg).to(device or "cpu")
    if cache:
        with _cache_lock:
            _cache[key] = comp
    return comp


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


def generate(comp: SDComponents, prompt: str, *args, callback: Callable[[int, int, torch.Tensor], None] | None = None,
             **kwargs) -> torch.Tensor:
    """``iter_generate`` run to the end; ``callback(step, total, x0_latent)`` gets each step's clean latent."""
    gen = iter_generate(comp, prompt, *args, **kwargs)
    return drive(gen, None if callback is None else lambda step: callback(*step))


def iter_generate(comp: SDComponents, prompt: str, num_steps: int = 30, seed: int = 0, cfg_scale: float = 7.5,
                  lgp: LatentGuidancePredictor | None = None, sketch: torch.Tensor | None = None, beta: float = 1.0,
                  share: float = 0.5, image: torch.Tensor | None = None, hole: torch.Tensor | None = None,
                  check_cancel: Callable[[], None] | None = None, negative_prompt: str = ""):
    """Text-to-image (or inpainting, with ``image`` 1 x 3 x R x R in [-1, 1] and ``hole`` 1 x 1 x R x R) with
    optional sketch guidance (``sketch`` 1 x 1 x R x R in {0, 1}). A generator: yields ``(step, total,
    x0_latent)`` after each step (the predicted clean latent, for previews); returns 1 x 3 x R x R in [-1, 1].
    Runs on ``comp.device``; the inputs are moved there, the noise is drawn on the CPU from ``seed``."""
    unet = comp.unet
    device = comp.device
    image, hole, sketch = (None if v is None else v.to(device) for v in (image, hole, sketch))
    size = comp.latent_size
    gen = torch.Generator().manual_seed(int(seed))
    sched = comp.make_scheduler()
    sched.set_timesteps(num_steps)
    timesteps = sched.timesteps
    total = len(timesteps)
    abar = sched.alphas_cumprod
    do_cfg = cfg_scale > 1.0
    cond = encode_prompt(comp, [prompt])
    ctx = torch.cat([encode_prompt(comp, [negative_prompt]), cond]) if do_cfg else cond
    shape = (1, unet.config.in_channels, size, size)
    z = seeded_noise(shape, gen, cond) * sched.init_noise_sigma

    use_lgp = lgp is not None and sketch is not None and beta > 0
    n_guided = guided_steps(total, share) if use_lgp else 0
    known = lat_hole = None
    if image is not None and hole is not None:
        known = vae_encode(comp, image)
        lat_hole = pixel_to_latent_mask(hole, size)
    target = weight = None
    if use_lgp:
        target = edge_latent(comp, sketch)
        if target.shape[-1] != lgp.config.resolution:
            target = F.interpolate(target, size=lgp.config.resolution, mode="bilinear", align_corners=False)
        if lat_hole is not None:
            weight = F.interpolate(lat_hole, size=lgp.config.resolution, mode="nearest")
    hooks = FeatureHooks(unet, lgp.config.blocks) if n_guided else None
    try:
        for i, t in enumerate(timesteps):
            if check_cancel is not None:
                check_cancel()
            guided = i < n_guided
            z_in = torch.cat([z, z]) if do_cfg else z
            with torch.set_grad_enabled(guided):
                if guided:
                    z_in = z_in.detach().requires_grad_(True)
                    hooks.clear()
                eps_all = unet(z_in, t, encoder_hidden_states=ctx).sample
                if guided:
                    feats = [f[-1:] for f in hooks.collect()]  # the text-conditioned half
                    nl = (1 - abar[int(t)]).sqrt()
                    loss = edge_loss(lgp(feats, t.reshape(1), nl), target, weight)
                    (grad_all,) = torch.autograd.grad(loss, z_in)
                    grad = grad_all.sum(0, keepdim=True) if do_cfg else grad_all
            eps_all = eps_all.detach()
            if do_cfg:
                eps_u, eps_c = eps_all.chunk(2)
                eps = eps_u + cfg_scale * (eps_c - eps_u)
            else:
                eps = eps_all
            out = sched.step(eps, t, z)
            z_prev, x0 = out.prev_sample, out.pred_original_sample
            if guided:
                z_prev = apply_guidance(z, z_prev, grad, beta)
            if known is not None:
                if i + 1 < total:
                    t_next = timesteps[i + 1]
                    noise = seeded_noise(known.shape, gen, known)
                    known_prev = sched.add_noise(known, noise, t_next.reshape(1))
                else:
                    known_prev = known
                z_prev = lat_hole * z_prev + (1 - lat_hole) * known_prev
                x0 = lat_hole * x0 + (1 - lat_hole) * known
            z = z_prev.detach()
            yield i + 1, total, x0.detach()
    finally:
        if hooks is not None:
            hooks.remove()
    return vae_decode(comp, z)

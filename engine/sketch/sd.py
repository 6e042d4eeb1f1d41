"""Moved to ``engine.sd`` (loading, generation, pipeline); these names stay for older callers."""
from __future__ import annotations

from pathlib import Path

import torch

from engine.sd.generate import FillSettings, fill
from engine.sd.model import SDModel, latent_preview, pixel_to_latent_mask

__all__ = ["load_sd_folder", "iter_generate", "latent_preview", "pixel_to_latent_mask", "SDModel"]


def _load_parts(folder: str | Path) -> SDModel:
    """An uncached SDModel of a diffusers folder or single file."""
    from engine.sd.loading import detect, load_folder, load_single_file

    path = Path(folder).expanduser()
    kind = detect(path)
    return SDModel(path, kind, (load_folder if path.is_dir() else load_single_file)(path, kind))


def load_sd_folder(folder: str | Path, device: torch.device | str | None = None) -> SDModel:
    from engine.sd import model
    from engine.sd.loading import detect

    m = model.load(folder, detect(folder), torch.device(device) if device is not None else None)
    return m.to(device) if device is not None else m


def iter_generate(comp: SDModel, prompt: str, num_steps: int = 30, seed: int = 0, cfg_scale: float = 7.5,
                  lgp=None, sketch: torch.Tensor | None = None, beta: float = 1.0, share: float = 0.5,
                  image: torch.Tensor | None = None, hole: torch.Tensor | None = None, cancel=None,
                  negative_prompt: str = ""):
    """DDIM generation / inpainting with optional LGP guidance (the former API, on ``engine.sd.generate.fill``)."""
    r = comp.resolution
    if image is None:
        image = torch.zeros(1, 3, r, r)
        hole = torch.ones(1, 1, r, r)
    settings = FillSettings(prompt=prompt, negative=negative_prompt, steps=num_steps, cfg_scale=cfg_scale,
                            scheduler="ddim", seed=seed, beta=beta, share=share)
    return fill(comp, image, hole, settings, sketch=sketch, lgp=lgp, cancel=cancel)

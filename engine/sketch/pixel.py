"""Pixel-space DDPM side of the sketch family: loading a DDPM checkpoint folder and MNIST training pairs.

A DDPM folder is what ``engine.ddpm`` ships (flat: ``config.json`` + ``diffusion_pytorch_model.safetensors`` +
``scheduler_config.json``) or a diffusers pipeline folder (``unet/`` + ``scheduler/``); the project's own loader
``engine.ddpm.model.load_ddpm`` is used when present, so its compact UNet loads too. Images are in [-1, 1].
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import torch

from engine.api import InpaintError
from engine.sketch.edges import canny_edges, hed_edges, sobel_edges


def _fallback_load(folder: Path):
    from diffusers import DDPMScheduler, UNet2DModel

    unet_dir = folder / "unet" if (folder / "unet" / "config.json").is_file() else folder
    unet = UNet2DModel.from_pretrained(unet_dir)
    sched_cfg: dict = {}
    for cand in (folder / "scheduler_config.json", folder / "scheduler" / "scheduler_config.json"):
        if cand.is_file():
            sched_cfg = {k: v for k, v in json.loads(cand.read_text()).items() if not k.startswith("_")}
            break
    return unet, DDPMScheduler.from_config(sched_cfg).alphas_cumprod


_cache: dict[str, tuple] = {}  # folder -> (unet, alphas_cumprod)
_lock = threading.Lock()


def load_pixel_ddpm(folder: str | Path, device: torch.device | None = None) -> tuple[torch.nn.Module, torch.Tensor]:
    """(frozen eps-UNet in eval mode on ``device``, alphas_cumprod on the CPU) of a DDPM folder; InpaintError when
    missing/unreadable. Cached per folder: one copy, moved in place to the device of the latest caller."""
    path = Path(folder).expanduser()
    device = torch.device(device or "cpu")
    key = str(path.resolve()) if path.exists() else str(path)
    with _lock:
        if key in _cache:
            unet, abar = _cache[key]
            return unet.to(device), abar
    if not (path / "config.json").is_file() and not (path / "unet" / "config.json").is_file():
        raise InpaintError(f"DDPM checkpoint not found at {path} (expected config.json + "
                           f"diffusion_pytorch_model.safetensors)")
    try:
        try:
            from engine.ddpm.model import load_ddpm  # the project's loader (handles its compact UNet too)
        except ImportError:
            load_ddpm = None
        if load_ddpm is not None:
            unet, schedule = load_ddpm(path)
            abar = schedule.alphas_cumprod.detach().cpu()
        else:
            unet, abar = _fallback_load(path)
    except InpaintError:
        raise
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise InpaintError(f"DDPM checkpoint at {path} could not be loaded ({msg})") from None
    unet.to(device).eval().requires_grad_(False)
    with _lock:
        _cache[key] = (unet, abar)
    return unet, abar


def unet_io(unet) -> tuple[int, int]:
    """(sample_size, in_channels) of a diffusers-like UNet."""
    cfg = unet.config
    get = cfg.get if isinstance(cfg, dict) else (lambda k, d=None: getattr(cfg, k, d))
    return int(get("sample_size", 28)), int(get("in_channels", 1))


def to_canvas(digits: np.ndarray, size: int) -> np.ndarray:
    """N x 28 x 28 uint8 MNIST -> N x size x size uint8 (pad with black if larger, area-resize if smaller)."""
    n, h, w = digits.shape
    if size == h:
        return digits
    if size > h:
        p0 = (size - h) // 2
        out = np.zeros((n, size, size), np.uint8)
        out[:, p0:p0 + h, p0:p0 + w] = digits
        return out
    import cv2

    return np.stack([cv2.resize(d, (size, size), interpolation=cv2.INTER_AREA) for d in digits])


def edge_maps(images: np.ndarray, method: str = "canny") -> np.ndarray:
    """N x H x W uint8 grey (or N x H x W x 3) -> N x H x W bool sketches with ``method`` (canny | sobel | hed)."""
    fn = {"canny": canny_edges, "sobel": sobel_edges, "hed": hed_edges}[method]
    out = []
    for im in images:
        rgb = np.repeat(im[..., None], 3, axis=2) if im.ndim == 2 else im
        out.append(fn(rgb))
    return np.stack(out)


def to_model_range(images_u8: np.ndarray) -> torch.Tensor:
    """N x H x W uint8 -> N x 1 x H x W float in [-1, 1]."""
    return torch.from_numpy(images_u8).float().div(127.5).sub(1.0).unsqueeze(1)


def mnist_pairs(size: int, split: str = "train", limit: int | None = None, method: str = "canny",
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(images N x 1 x S x S in [-1, 1], sketches N x 1 x S x S in {0, 1}, labels) from MNIST."""
    from engine.datasets import load_mnist

    x, y = load_mnist(split)
    if limit is not None and limit < len(x):
        idx = np.random.default_rng(seed).permutation(len(x))[:limit]
        x, y = x[idx], y[idx]
    canvas = to_canvas(x, size)
    sketches = edge_maps(canvas, method)
    return to_model_range(canvas), torch.from_numpy(sketches).float().unsqueeze(1), y

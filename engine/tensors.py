"""The one conversion between images (H x W x 3 uint8 numpy) and tensors (B x C x H x W float torch).

Networks see [-1, 1] (``unit=True``: [0, 1], the face model's range); a 1-channel network sees the luminance
(OpenCV's RGB -> grey weights). Batches move to the device as uint8 (4x fewer bytes) and become floats there, in
the ordinary contiguous N x C x H x W layout: a permuted (channels-last) tensor would pass its layout on to every
tensor mixed with it, and the frugal UNet's convolutions ran 1.6x slower in that layout on this CPU (the sampler
mixes the known image into x_t at every step).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch


def to_tensor(images: np.ndarray, device: torch.device | str | None = None, channels: int = 3,
              unit: bool = False) -> torch.Tensor:
    """(H, W, 3) or (B, H, W, 3) uint8 RGB -> (B, C, H, W) float in [-1, 1] ([0, 1] with ``unit``) on ``device``;
    ``channels`` = 1 gives the luminance."""
    batch = images[None] if images.ndim == 3 else images
    if channels == 1:
        batch = np.stack([cv2.cvtColor(np.ascontiguousarray(im), cv2.COLOR_RGB2GRAY) for im in batch])[..., None]
    # torch.tensor copies: the batch may be a read-only view of a cached image (from_numpy warns on those)
    x = torch.tensor(batch).to(device).permute(0, 3, 1, 2).float().contiguous()
    return x.div_(255.0) if unit else x.div_(127.5).sub_(1.0)


def to_images(x: torch.Tensor, unit: bool = False) -> np.ndarray:
    """(B, C, H, W) in [-1, 1] ([0, 1] with ``unit``), on any device -> (B, H, W, 3) uint8 (grey repeated)."""
    x = x.detach().float()
    x = x.mul(255.0) if unit else (x.clamp(-1, 1) + 1) * 127.5
    arr = x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
    return np.repeat(arr, 3, axis=3) if arr.shape[3] == 1 else arr


def to_image(x: torch.Tensor, unit: bool = False) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) -> (H, W, 3) uint8."""
    return to_images(x if x.dim() == 4 else x[None], unit)[0]

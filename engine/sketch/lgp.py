"""The Latent Guidance Predictor (LGP) of Voynov, Aberman & Cohen-Or 2022, "Sketch-Guided Text-to-Image Diffusion
Models" (arXiv 2211.13752), Sec. 3.1 and Fig. 3.

A frozen denoising UNet is run on a noisy input x_t; forward hooks collect the activations of chosen blocks
{l_1, ..., l_n}. Each activation map is resized (bilinear) to the working resolution and concatenated along the
channel axis, giving F(x_t | c, t) = [l_1, ..., l_n] (the paper's eq. for the LGP input). To this per-pixel feature
vector we append the noise level of step t and a sinusoidal positional encoding of the pixel's (x, y), and a small
MLP, applied independently at every pixel (1x1 convolutions), predicts the edge map there:

- pixel-space models (a DDPM on MNIST): the binary edge map itself, one channel in {0, 1};
- latent models (Stable Diffusion): the VAE latent E(e) of the edge map rendered as an image (4 channels).

Works with diffusers ``UNet2DModel`` and ``UNet2DConditionModel`` (and any module tree addressable by dotted names).
The config (``LGPConfig``) is stored next to the weights (``config.json`` + ``lgp.safetensors``, engine.weights).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from engine.api import InpaintError
from engine.weights import CONFIG_NAME, load_pretrained, save_pretrained

WEIGHTS_NAME = "lgp.safetensors"


def default_blocks(unet: nn.Module) -> list[str]:
    """Outputs of every down block, the mid block and every up block: the paper's choice of "a subset of the
    UNet's decoder and encoder layers" covering all resolutions."""
    names = [f"down_blocks.{i}" for i in range(len(unet.down_blocks))]
    if getattr(unet, "mid_block", None) is not None:
        names.append("mid_block")
    names += [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]
    return names


class FeatureHooks:
    """Forward hooks on named submodules of a UNet; after each forward, ``features`` holds one tensor per block
    (the first element when a block returns a tuple, e.g. a down block's (hidden, residuals)).

    Use as a context manager, or call ``remove()``. Tensors keep their autograd graph, so a loss on the LGP output
    can be differentiated w.r.t. the UNet input x_t (guidance)."""

    def __init__(self, unet: nn.Module, blocks: Sequence[str]):
        self.blocks = list(blocks)
        self.features: dict[str, torch.Tensor] = {}
        self._handles = []
        for name in self.blocks:
            module = unet.get_submodule(name)
            self._handles.append(module.register_forward_hook(self._make_hook(name)))

    def _make_hook(self, name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            if hasattr(output, "sample") and not isinstance(output, torch.Tensor):
                output = output.sample
            self.features[name] = output

        return hook

    def clear(self) -> None:
        self.features = {}

    def collect(self) -> list[torch.Tensor]:
        missing = [b for b in self.blocks if b not in self.features]
        if missing:
            raise RuntimeError(f"hooks did not fire for {missing}: run the UNet forward first")
        return [self.features[b] for b in self.blocks]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.features = {}

    def __enter__(self) -> "FeatureHooks":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


def resize_and_concat(features: Sequence[torch.Tensor], size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize every B x C_i x h_i x w_i map to ``size`` and concatenate: B x sum(C_i) x H x W."""
    hw = (size, size) if isinstance(size, int) else tuple(size)
    out = [f if tuple(f.shape[-2:]) == hw else F.interpolate(f, size=hw, mode="bilinear", align_corners=False)
           for f in features]
    return torch.cat(out, dim=1)


def positional_encoding(height: int, width: int, n_freqs: int, device=None, dtype=None) -> torch.Tensor:
    """1 x 4*n_freqs x H x W: sin/cos of pi * 2^k * coordinate, coordinates in [-1, 1] (k = 0..n_freqs-1)."""
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    chans = []
    for k in range(n_freqs):
        f = math.pi * (2.0 ** k)
        chans += [torch.sin(f * gx), torch.cos(f * gx), torch.sin(f * gy), torch.cos(f * gy)]
    if not chans:
        return torch.zeros(1, 0, height, width, device=device, dtype=dtype)
    return torch.stack(chans, 0).unsqueeze(0)


@dataclass
class LGPConfig:
    """Stored with the weights. ``feature_channels`` is sum(C_i) of the hooked blocks (filled by ``probe``)."""

    blocks: list[str]
    feature_channels: int
    out_channels: int = 1  # 1 = pixel edge map, 4 = SD VAE latent of the edge map
    resolution: int = 32  # working resolution (image side for pixel models, latent side for SD)
    hidden: list[int] = field(default_factory=lambda: [256, 128, 64])
    pos_freqs: int = 4
    num_train_timesteps: int = 1000
    target: str = "pixel"  # "pixel" (edge map in {0,1}) or "latent" (VAE latent of the edge image)
    edge_method: str = "canny"  # how training sketches were made
    unet_kind: str = "UNet2DModel"
    notes: str = ""

    @property
    def in_channels(self) -> int:
        return self.feature_channels + 2 + 4 * self.pos_freqs  # + (t/T, noise level) + positional encoding


class LatentGuidancePredictor(nn.Module):
    """Per-pixel MLP (1x1 convolutions with ReLU, as the paper's pixel-wise MLP) from
    [F(x_t|c,t), t/T, sqrt(1 - abar_t), PE(x, y)] to the edge map (or its latent)."""

    def __init__(self, config: LGPConfig):
        super().__init__()
        self.config = config
        dims = [config.in_channels] + list(config.hidden)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Conv2d(a, b, 1), nn.ReLU(inplace=False)]
        layers.append(nn.Conv2d(dims[-1], config.out_channels, 1))
        self.mlp = nn.Sequential(*layers)

    def build_input(self, features: Sequence[torch.Tensor], t: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        """B x in_channels x R x R from hooked activations, timesteps t (B,) and sqrt(1 - abar_t) (B,)."""
        cfg = self.config
        dtype = self.mlp[0].weight.dtype  # a half-precision UNet's activations meet a float32 predictor
        feats = resize_and_concat([f.to(dtype) for f in features], cfg.resolution)
        b, _, h, w = feats.shape
        dt = feats.dtype
        t = torch.as_tensor(t, device=feats.device).reshape(-1).to(dt)
        nl = torch.as_tensor(noise_level, device=feats.device).reshape(-1).to(dt)
        t = t.expand(b) if t.numel() == 1 else t
        nl = nl.expand(b) if nl.numel() == 1 else nl
        tt = (t / cfg.num_train_timesteps).view(b, 1, 1, 1).expand(b, 1, h, w)
        nn_ = nl.view(b, 1, 1, 1).expand(b, 1, h, w)
        pe = positional_encoding(h, w, cfg.pos_freqs, feats.device, dt).expand(b, -1, h, w)
        return torch.cat([feats, tt, nn_, pe], dim=1)

    def forward(self, features: Sequence[torch.Tensor], t: torch.Tensor, noise_level: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.build_input(features, t, noise_level))

    # --- persistence: engine.weights' folder (config.json + lgp.safetensors), never pickle --------------------
    def save(self, folder: str | Path, training: dict | None = None) -> None:
        save_pretrained(folder, self, self.config, training, weights_name=WEIGHTS_NAME)

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "LatentGuidancePredictor":
        """Raises ``InpaintError`` with a one-line reason naming the file when the folder is missing or unusable."""
        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file() or not (folder / WEIGHTS_NAME).is_file():
            raise InpaintError(f"LGP folder {folder} needs {CONFIG_NAME} and {WEIGHTS_NAME} "
                               f"(train one with `python -m engine.sketch.train`)")
        return load_pretrained(folder, cls, LGPConfig, device, WEIGHTS_NAME)[0]


def probe_channels(unet: nn.Module, blocks: Sequence[str], example_inputs: dict) -> list[int]:
    """Channel count of each hooked block, from one no-grad forward with ``unet(**example_inputs)``."""
    with FeatureHooks(unet, blocks) as hooks, torch.no_grad():
        unet(**example_inputs)
        return [int(f.shape[1]) for f in hooks.collect()]


def edge_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """L(E~, E(e)) = ||E~ - E(e)||^2 (Voynov et al. eq. 3), summed over pixels and averaged over the batch;
    ``weight`` (B x 1 x H x W) restricts it, e.g. to the hole when inpainting."""
    err = (pred - target) ** 2
    if weight is not None:
        err = err * weight
    return err.flatten(1).sum(1).mean()

"""The frugal inpainting UNet of Cherel, Almansa, Gousseau & Newson (GRETSI 2023, arXiv 2406.04206).

A DDPM-style UNet (Ho et al. 2020) stripped to the essentials: residual conv blocks, down/up-sampling and
non-linearities, **no attention**, 32 base channels, 174,636 parameters (the paper: about 160k). Its inputs are
concatenated before the first convolution, as in the paper (Sec. 2.2, Fig. 1):

    f_theta(x_t, y, M, sigma_t^2)      x_t: noisy image, y = x * (1 - M): masked image, M: mask (1 = hole),

and the noise variance sigma_t^2 enters through a small embedding (Fourier features of log sigma_t^2 -> MLP) that
is added as a per-channel bias inside every residual block. The network predicts the clean image x_0 (Eq. 1).

The schedule is the engine's (``engine.diffusion.schedule``, ``beta_schedule="cosine"``): a cosine abar_t (Nichol &
Dhariwal 2021) over T steps ending at exactly 0, so sigma_t^2 = 1 - abar_t covers the paper's range from (nearly) 0
to sigma_T^2 = 1; the network sees sigma_t^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class UNetConfig:
    """Architecture of the frugal UNet (stored in the learned weights' config.json, engine.weights)."""

    in_channels: int = 7  # x_t (3) + y (3) + M (1)
    out_channels: int = 3
    base: int = 32  # channels at full resolution ("nous limitons ainsi le nombre de canaux a 32")
    mults: tuple[int, ...] = (1, 1, 1)  # channel multiplier per resolution level (3 levels: x1, x1/2, x1/4)
    blocks: int = 1  # residual blocks per level, on the way down and on the way up
    emb_dim: int = 32  # width of the sigma_t^2 embedding
    groups: int = 8  # GroupNorm groups; 0 = no normalisation
    precond: bool = False  # EDM-style skip: x0 = c_skip x_t + c_out F(c_in x_t, ...) (see FrugalUNet.forward)
    sigma_data: float = 0.5  # std of the images in [-1, 1], for the preconditioning; <= 0: measured when training
    unshuffle: int = 2  # >1: space-to-depth the input by this factor first (pixel (un)shuffle), 4x fewer FLOPs for 2


def _norm(ch: int, groups: int) -> nn.Module:
    return nn.GroupNorm(min(groups, ch), ch) if groups else nn.Identity()


class ResBlock(nn.Module):
    """norm -> SiLU -> conv3x3 -> (+ emb bias) -> norm -> SiLU -> conv3x3, plus a (1x1 when needed) skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, cout)
        self.norm2 = _norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity: stable fast training
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class SigmaEmbedding(nn.Module):
    """sigma_t^2 -> Fourier features of log(sigma_t^2) -> 2-layer MLP (the paper's time input, Sec. 2.2)."""

    def __init__(self, dim: int, n_freq: int = 8) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(64.0), n_freq)) / 8.0,
                             persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * n_freq, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, sigma2: torch.Tensor) -> torch.Tensor:
        c = torch.log(sigma2.clamp(min=1e-5)).float()[:, None] * self.freqs[None]  # log sigma^2 in [-11.5, 0]
        return self.mlp(torch.cat([torch.sin(c), torch.cos(c)], dim=1))


class FrugalUNet(nn.Module):
    """f_theta(x_t, y, M, sigma_t^2) -> predicted x_0. Fully convolutional: any H, W divisible by 2**(levels-1)."""

    def __init__(self, cfg: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or UNetConfig()
        self.cfg = cfg
        chans = [cfg.base * m for m in cfg.mults]
        self.embed = SigmaEmbedding(cfg.emb_dim)
        r = cfg.unshuffle
        self.conv_in = nn.Conv2d(cfg.in_channels * r * r, chans[0], 3, padding=1)
        # encoder: one residual block per level, its output kept as the skip, then a strided conv
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        ch = chans[0]
        for i, c in enumerate(chans):
            self.down.append(nn.ModuleList([ResBlock(ch if j == 0 else c, c, cfg.emb_dim, cfg.groups)
                                            for j in range(cfg.blocks)]))
            ch = c
            if i < len(chans) - 1:
                self.downsample.append(nn.Conv2d(ch, chans[i + 1], 3, stride=2, padding=1))
                ch = chans[i + 1]
        self.mid = ResBlock(ch, ch, cfg.emb_dim, cfg.groups)
        # decoder: nearest upsampling + conv, concat the skip, one residual block per level
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for i in reversed(range(len(chans) - 1)):
            self.upsample.append(nn.Conv2d(ch, chans[i], 1))
            self.up.append(nn.ModuleList([ResBlock(2 * chans[i] if j == 0 else chans[i], chans[i], cfg.emb_dim,
                                                   cfg.groups) for j in range(cfg.blocks)]))
            ch = chans[i]
        self.norm_out = _norm(ch, cfg.groups)
        self.conv_out = nn.Conv2d(ch, cfg.out_channels * r * r, 3, padding=1)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2 ** (len(self.cfg.mults) - 1) * self.cfg.unshuffle

    def forward(self, x_t: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
        """Predicted x_0. With ``precond`` (Karras et al. 2022, EDM Sec. 5, written for the VP x_t = a x_0 + sigma
        eps, a^2 = 1 - sigma^2, s_d = sigma_data):  x0_hat = c_skip x_t + c_out F(c_in x_t, y, M, sigma^2),
        c_skip = a s_d^2 / (sigma^2 + a^2 s_d^2), c_out = sigma s_d / sqrt(sigma^2 + a^2 s_d^2),
        c_in = 1 / sqrt(sigma^2 + a^2 s_d^2). At low noise the output is x_t itself: the network only learns the
        correction, so near-clean inputs are not blurred by an undertrained net (what made short CPU training work).
        """
        if self.cfg.precond:
            s2 = sigma2.float().view(-1, 1, 1, 1)
            a2 = (1 - s2).clamp(min=0)
            sd2 = self.cfg.sigma_data ** 2
            norm = (s2 + a2 * sd2).clamp(min=1e-8)
            c_skip = a2.sqrt() * sd2 / norm
            c_out = s2.sqrt() * self.cfg.sigma_data / norm.sqrt()
            return c_skip * x_t + c_out * self._net(x_t / norm.sqrt(), y, mask, sigma2)
        return self._net(x_t, y, mask, sigma2)

    def _net(self, x_t: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
        emb = self.embed(sigma2)
        h = torch.cat([x_t, y, mask], dim=1)
        if self.cfg.unshuffle > 1:
            h = F.pixel_unshuffle(h, self.cfg.unshuffle)
        h = self.conv_in(h)
        skips = []
        for i, blocks in enumerate(self.down):
            for blk in blocks:
                h = blk(h, emb)
            if i < len(self.downsample):
                skips.append(h)
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for conv, blocks in zip(self.upsample, self.up):
            h = conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
            h = torch.cat([h, skips.pop()], dim=1)
            for blk in blocks:
                h = blk(h, emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, self.cfg.unshuffle) if self.cfg.unshuffle > 1 else out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

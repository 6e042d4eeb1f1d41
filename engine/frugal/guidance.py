"""Autoguidance for the frugal model: the learned net guided by an early snapshot of itself.

Karras et al. 2024, *Guiding a diffusion model with a bad version of itself* (NeurIPS 2024, Eq. 2), written for
our x_0 predictor:

    D_w(x_t; sigma) = D_bad(x_t; sigma) + w (D_good(x_t; sigma) - D_bad(x_t; sigma)),

with D_bad a weaker model of the same task. Here D_bad is the same Learn's weights at ``TrainConfig.guide_at``
(10 %) of its budget: free to keep, and its errors are the under-training errors the final net still has after
minutes on a CPU, which make the plain fills blurry (docs/frugal.md). w = 1 is the plain model; w > 1 extrapolates
away from the blur. The default w = 1.5 (``DEFAULT_W``) was chosen on the texture benchmark (docs/frugal.md).

Guidance is applied only for noise levels sigma in INTERVAL = (0.1, 0.6], where our diagnostics found the texture
is generated; outside it D_w = D_good. Limiting guidance to an interval follows Kynkaanniemi et al. 2024
(*Applying guidance in a limited interval improves sample and distribution quality*): guided at every level, the
fills' global tone drifted (hubble's grey background went black: SSIM 0.45 -> 0.21 at w = 2).
"""

from __future__ import annotations

import torch
from torch import nn

from engine.frugal.model import FrugalUNet

INTERVAL = (0.1, 0.6)  # sigma range (VP, sigma^2 = 1 - abar) where the guidance acts
DEFAULT_W = 1.5


class AutoGuided(nn.Module):
    """D_bad + w (D_good - D_bad) for sigma in INTERVAL, D_good elsewhere. Saved as one state dict
    (``good.*``, ``bad.*``); ``w`` is a sampling setting, not saved."""

    def __init__(self, good: FrugalUNet, bad: FrugalUNet, w: float = DEFAULT_W) -> None:
        super().__init__()
        self.good, self.bad, self.w = good, bad, float(w)

    @property
    def cfg(self):
        return self.good.cfg

    @property
    def multiple(self) -> int:
        return self.good.multiple

    def forward(self, x_t: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
        d = self.good(x_t, y, mask, sigma2)
        sigma = sigma2.float().sqrt()
        inside = (sigma > INTERVAL[0]) & (sigma <= INTERVAL[1])
        if self.w == 1.0 or not bool(inside.any()):  # the plain model: one network call
            return d
        guided = torch.lerp(self.bad(x_t, y, mask, sigma2), d, self.w)
        return torch.where(inside.view(-1, 1, 1, 1), guided, d)

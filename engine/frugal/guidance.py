"""Autoguidance for the frugal model: the learned net guided by an early snapshot of itself.

Karras et al. 2024, *Guiding a diffusion model with a bad version of itself* (NeurIPS 2024, Eq. 2), written for
our x_0 predictor:

    D_w(x_t; sigma) = D_bad(x_t; sigma) + w (D_good(x_t; sigma) - D_bad(x_t; sigma)),

with D_bad a weaker model of the same task. Here D_bad is the same Learn's weights at ``TrainConfig.guide_at``
(10 %) of its budget: free to keep, and its errors are the under-training errors the final net still has after
minutes on a CPU, which make the plain fills blurry (docs/frugal.md). w = 1 is the plain model; w > 1 extrapolates
away from the blur. The fixed w = 1.5 (``DEFAULT_W``, used with automatic w off) was chosen on the texture benchmark
(docs/frugal.md).

Guidance is applied only for noise levels sigma in INTERVAL = (0.1, 0.6], where our diagnostics found the texture
is generated; outside it D_w = D_good. Limiting guidance to an interval follows Kynkaanniemi et al. 2024
(*Applying guidance in a limited interval improves sample and distribution quality*): guided at every level, the
fills' global tone drifted (hubble's grey background went black: SSIM 0.45 -> 0.21 at w = 2).

Automatic w (``AUTO_WS``, ``match_surroundings``): no single w suits every image (grass needs ~2, a brick wall
~1.5, a photo's smooth areas ~1). Given a tuple of w values, the guided net returns one candidate per value; they
share the sampling path down to the guidance interval (same noise) and branch there, so they differ only in how far
each extrapolates. The fill keeps the candidate whose fine detail (high-pass energy) best matches the known pixels
around the hole, a statistic of the image itself, not of a held-out truth, unless guidance moved that candidate's
low frequencies (tone, colour, shapes) away from the unguided one's (``MAX_DRIFT``): then it is making artefacts,
not detail. When no candidate comes within a factor ``REACH`` of the surroundings' detail, the unguided fill is kept.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import nn

from engine.frugal.model import FrugalUNet
from engine.metrics import high_pass

INTERVAL = (0.1, 0.6)  # sigma range (VP, sigma^2 = 1 - abar) where the guidance acts
DEFAULT_W = 1.5
AUTO_WS = (1.0, 1.5, 1.75, 2.0, 2.5)  # candidates of the automatic w; the first, unguided, is the reference
MAX_DRIFT = 0.5  # how far guidance may move a fill's low frequencies, in standard deviations of its surroundings
REACH = 2.0  # guidance must bring the fill's detail within this factor of its surroundings', or it is not used


def _batch(n: int, *ts: torch.Tensor) -> list[torch.Tensor]:
    """Broadcast batch-1 tensors to a batch of n (the candidates of a tuple w)."""
    return [t.expand(n, *t.shape[1:]) if t.shape[0] == 1 and n > 1 else t for t in ts]


class AutoGuided(nn.Module):
    """D_bad + w (D_good - D_bad) for sigma in INTERVAL, D_good elsewhere. Saved as one state dict
    (``good.*``, ``bad.*``); ``w`` is a sampling setting, not saved.

    ``w`` may be a tuple of K values: a batch-1 input then becomes K candidates at the first guided call (y, mask and
    sigma^2 stay batch 1 and are broadcast), one per value; the sampler carries the K samples on from there."""

    def __init__(self, good: FrugalUNet, bad: FrugalUNet, w: float | tuple[float, ...] = DEFAULT_W) -> None:
        super().__init__()
        self.good, self.bad, self.w = good, bad, w

    @property
    def cfg(self):
        return self.good.cfg

    @property
    def multiple(self) -> int:
        return self.good.multiple

    def forward(self, x_t: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
        y, mask, sigma2 = _batch(x_t.shape[0], y, mask, sigma2)
        d = self.good(x_t, y, mask, sigma2)
        sigma = sigma2.float().sqrt()
        inside = (sigma > INTERVAL[0]) & (sigma <= INTERVAL[1])
        ws = torch.tensor(self.w, dtype=d.dtype, device=d.device).reshape(-1)
        if bool((ws == 1.0).all()) or not bool(inside.any()):  # the plain model: one network call
            return d
        x_t, y, mask, sigma2, d, inside = _batch(len(ws), x_t, y, mask, sigma2, d, inside)
        guided = torch.lerp(self.bad(x_t, y, mask, sigma2), d, ws.view(-1, 1, 1, 1))
        return torch.where(inside.view(-1, 1, 1, 1), guided, d)


def match_surroundings(fills: np.ndarray, hole: np.ndarray, ring: int = 32, target: float = 1.0,
                       max_drift: float = MAX_DRIFT, reach_factor: float = REACH, report: dict | None = None
                       ) -> int | None:
    """Index of the candidate fill (K, H, W, 3), ``fills[0]`` unguided, whose high-pass energy inside ``hole`` is
    closest (in log ratio) to ``target`` times that of the known pixels within ``ring`` px around it.

    Pixels closer than the high-pass kernel's reach to the hole's edge are left out on both sides, so the known side
    never sees the fill. A candidate whose low-pass (sigma 3) colour in the hole strays from the unguided fill's by
    more than ``max_drift`` times the surroundings' standard deviation (RMS over pixels and channels) is out:
    guidance should add detail, not change the fill's tone, colour and shapes. If even the best candidate stays
    more than ``reach_factor`` away from the target, the missing detail is not what guidance adds (the hole holds
    something other than its ring, or the net never learned that texture) and extrapolating further only moves
    colours: the unguided fill (0) is kept. None when there is too little of the hole or its surroundings.
    ``report`` receives ``ratio``: the kept fill's detail over its surroundings' (high-pass energy)."""
    def grow(m: np.ndarray, r: int, op) -> np.ndarray:
        return op(m.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)

    reach = 4  # high_pass(sigma = 1) reaches 3 px
    known = grow(hole, ring, cv2.dilate) & ~grow(hole, reach, cv2.dilate)
    inner = grow(hole, reach, cv2.erode)
    if known.sum() < 64 or inner.sum() < 64:
        return None
    # the known ring is the same pixels in every candidate: its spread and detail are measured once
    spread = max(float(np.sqrt(fills[0][known].astype(np.float64).var(axis=0).mean())), 1e-6)
    e_known = max(float((high_pass(fills[0]) ** 2)[known].mean()), 1e-12)
    low = [cv2.GaussianBlur(f.astype(np.float64), (0, 0), 3) for f in fills]
    score, ratios = [], []
    for f, lo in zip(fills, low):
        drift = float(np.sqrt(np.mean((lo - low[0])[hole] ** 2))) / spread
        ratios.append(float((high_pass(f) ** 2)[inner].mean()) / e_known)
        score.append(math.inf if drift > max_drift else abs(math.log(max(ratios[-1], 1e-12) / target)))
    best = int(np.argmin(score))
    kept = best if score[best] <= math.log(reach_factor) else 0
    if report is not None:
        report["ratio"] = ratios[kept]
    return kept


def describe(w: float, ratio: float | None) -> str:
    """The status line of automatic guidance's choice; a fill far smoother than its surroundings (``ratio``: detail
    over theirs) says what may help, since guidance could not."""
    if w != 1.0:
        return f"automatic guidance: w = {w:g} matches the detail around the hole"
    said = "automatic guidance: the unguided fill kept (w = 1)"
    if ratio is not None and ratio < 1 / REACH:
        said += (f"; it has {ratio:.0%} of the fine detail around the hole: learning longer, or the Patch model, "
                 "may do better")
    return said

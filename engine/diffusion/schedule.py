"""The one noise schedule of every diffusion model in the engine, and the time grids samplers walk.

Forward process (Ho et al. 2020, eqs. 2 and 4), variance preserving:

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I),     q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I),
    abar_t = prod_{s <= t} (1 - beta_s),   t = 0 .. T-1 (diffusers' indexing; t = -1 is the clean image, abar = 1).

``ScheduleConfig`` uses diffusers' field names, so a diffusers ``scheduler_config.json`` loads as it is; the betas
and their cumulative product are computed exactly as diffusers computes them (float32), which keeps the project's
samplers equal to diffusers' to 1e-5. ``beta_schedule="cosine"`` is the frugal model's: abar from Nichol & Dhariwal
2021's f(t) / f(0) directly (float64, no beta cap) and exactly 0 at the last step (zero terminal SNR).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ScheduleConfig:
    num_train_timesteps: int = 1000  # T
    beta_start: float = 1e-4  # beta_0
    beta_end: float = 0.02  # beta_{T-1}
    beta_schedule: str = "linear"  # linear (Ho et al.) | scaled_linear (Stable Diffusion) | squaredcos_cap_v2 | cosine
    cosine_s: float = 0.008  # the offset s of the cosine schedules

    @classmethod
    def from_dict(cls, d: dict) -> "ScheduleConfig":
        """From a diffusers scheduler config (unknown keys, e.g. ``prediction_type``, are the sampler's business)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: d[k] for k in names if k in d})


def make_alphas_cumprod(cfg: ScheduleConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(betas beta_t, alphas_cumprod abar_t), t = 0 .. T-1: float32 as diffusers makes them ("cosine": float64)."""
    T = cfg.num_train_timesteps
    if cfg.beta_schedule == "cosine":
        # abar_t = f(t) / f(0), f(u) = cos^2((u / T + s) / (1 + s) * pi / 2), for levels u = 1 .. T
        u = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((u + cfg.cosine_s) / (1 + cfg.cosine_s) * math.pi / 2) ** 2
        abar = (f / f[0]).clamp(min=0.0, max=1.0)
        abar[-1] = 0.0
        abar = abar[1:]
        return (1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]])).float(), abar
    if cfg.beta_schedule == "linear":
        betas = torch.linspace(cfg.beta_start, cfg.beta_end, T, dtype=torch.float32)
    elif cfg.beta_schedule == "scaled_linear":
        betas = torch.linspace(cfg.beta_start ** 0.5, cfg.beta_end ** 0.5, T, dtype=torch.float32) ** 2
    elif cfg.beta_schedule == "squaredcos_cap_v2":
        # beta_t = 1 - abar(t + 1) / abar(t), capped at 0.999 (Nichol & Dhariwal 2021, eq. 17)
        def f(u: float) -> float:
            return math.cos((u + cfg.cosine_s) / (1 + cfg.cosine_s) * math.pi / 2) ** 2
        betas = torch.tensor([min(1 - f((i + 1) / T) / f(i / T), 0.999) for i in range(T)], dtype=torch.float32)
    else:
        raise ValueError(f"unknown beta_schedule {cfg.beta_schedule!r}")
    return betas, torch.cumprod(1.0 - betas, dim=0)


class NoiseSchedule(nn.Module):
    """The schedule tensors as buffers (moved with ``.to(device)``), with the closed-form helpers samplers use."""

    def __init__(self, cfg: ScheduleConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ScheduleConfig()
        betas, abar = make_alphas_cumprod(self.cfg)
        self.register_buffer("betas", betas, persistent=False)  # beta_t
        self.register_buffer("alphas_cumprod", abar.float(), persistent=False)  # abar_t = prod_{s<=t} (1 - beta_s)
        # sigma_t = sqrt(1 - abar_t), the noise std of x_t (from the double abar: exact near the clean end)
        self.register_buffer("sigmas", (1 - abar.double()).sqrt().float(), persistent=False)

    @property
    def num_train_timesteps(self) -> int:
        return self.cfg.num_train_timesteps

    def alpha_bar(self, t: int) -> torch.Tensor:
        """abar_t, with abar_{-1} = 1 (the clean image) for t < 0."""
        return self.alphas_cumprod[t] if t >= 0 else torch.ones((), device=self.alphas_cumprod.device)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Ho et al. 2020 eq. 4); ``t`` per batch item."""
        ab = self.alphas_cumprod[t].view(-1, *([1] * (x0.dim() - 1)))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def predict_x0(self, x_t: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
        """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (eq. 4 solved for x_0, cf. eq. 15)."""
        ab = self.alpha_bar(t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def predict_eps(self, x_t: torch.Tensor, t: int, x0: torch.Tensor) -> torch.Tensor:
        """eps = (x_t - sqrt(abar_t) x_0) / sqrt(1 - abar_t): the noise an x_0 prediction implies."""
        ab = self.alpha_bar(t)
        return (x_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def to_json(self) -> dict:
        """A diffusers DDPMScheduler config of this schedule (what a DDPM checkpoint folder stores)."""
        return {"_class_name": "DDPMScheduler", **asdict(self.cfg), "prediction_type": "epsilon",
                "clip_sample": True, "variance_type": "fixed_small"}


# ---- time grids: the training timesteps a sampler visits, levels k = 0 .. n-1 (k = 0 the least noisy) ---------
def strided(num_train: int, n: int) -> list[int]:
    """tau_k = k * (T // n), the DDIM sub-sequence (Song et al. 2021, Sec. 4.2) that RePaintScheduler uses."""
    n = max(1, min(int(n), num_train))
    stride = num_train // n
    return [k * stride for k in range(n)]


def spaced(num_train: int, n: int) -> list[int]:
    """n timesteps evenly spread over [0, T-1] (rounded, duplicates dropped), always including both ends."""
    n = max(1, min(int(n), num_train))
    return sorted({int(t) for t in np.linspace(0, num_train - 1, n).round()})


def diffusers_timesteps(config: dict, n: int) -> tuple[list[int], int | None]:
    """The grid diffusers' DDIMScheduler.set_timesteps builds from a scheduler config ("leading" with
    ``steps_offset``, "trailing" or "linspace" spacing), and the timestep whose abar the chain ends at (None: the
    clean image; with ``set_alpha_to_one`` false, 0, as Stable Diffusion's configs ask)."""
    T = int(config.get("num_train_timesteps", 1000))
    spacing = config.get("timestep_spacing", "leading")
    if spacing == "trailing":
        ts = np.round(np.arange(T, 0, -T / n)).astype(np.int64) - 1
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
    else:
        ts = (np.arange(0, n) * (T // n)).round()[::-1].astype(np.int64) + int(config.get("steps_offset", 0))
    final = None if config.get("set_alpha_to_one", True) else 0
    return sorted(int(t) for t in ts), final

"""Sigma-space samplers (k-diffusion style) on the engine's noise schedule: DPM++ 2M, Euler ancestral and LCM.

The variance-exploding view of a variance-preserving model (Karras et al. 2022, "Elucidating the Design Space of
Diffusion-Based Generative Models", Sec. 2 and Table 1): x = x_t / sqrt(abar_t), sigma = sqrt((1 - abar_t) / abar_t),
so x = x_0 + sigma * eps. A sampler here is a plain generator ``(denoise, x, sigmas, ...)`` where
``denoise(x, sigma) -> x0_hat`` is the network in that view (``engine.sd`` wraps a noise- or v-predicting UNet,
with classifier-free guidance and the inpainting channels inside); it yields one ``engine.diffusion.samplers.Step``
per network call, as ``samplers.sample`` does (the DDIM / ancestral / RePaint loop, unchanged), and returns the
sample at the last sigma (0: the clean latent).

- ``karras_sigmas``: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, rho = 7
  (Karras et al. 2022, eq. 5), then 0; ``timestep_sigmas``: the schedule's own sigmas at a timestep grid, then 0.
- ``sample_dpmpp_2m``: DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of
  Diffusion Probabilistic Models", Alg. 2) in lambda = -log sigma: first order on the first and last step.
- ``sample_euler_ancestral``: Euler steps down to sigma_down plus fresh noise of std sigma_up
  (Karras et al. 2022, Alg. 2 with the ancestral split of k-diffusion; Song et al. 2021 for the ancestral step).
- ``sample_lcm``: Latent Consistency Models (Luo et al. 2023, "Latent Consistency Models", Alg. 1): each call maps x
  straight to a consistency estimate (with the boundary scalings c_skip, c_out of Song et al. 2023, "Consistency
  Models", eq. 7) and re-noises it to the next level.

Inpainting by latent blending: with ``known`` and ``mask`` (1 = fill) the known region is put back after every step
at the new noise level, known + sigma_next * noise, with one fixed ``noise`` for the whole run (as diffusers'
inpainting pipelines do for 4-channel UNets; a deterministic multistep solver keeps a consistent trajectory).
Fresh noise (Euler ancestral, LCM) is drawn on the CPU from ``generator`` (``engine.device.seeded_noise``).
These match diffusers' DPMSolverMultistepScheduler (Karras sigmas), EulerAncestralDiscreteScheduler and
LCMScheduler to float precision (tests/test_sd_samplers.py).
"""
from __future__ import annotations

import math
from typing import Callable, Generator, Optional, Sequence

import numpy as np
import torch

from engine.device import seeded_noise
from engine.diffusion.samplers import Step
from engine.diffusion.schedule import NoiseSchedule

SigmaDenoiser = Callable[[torch.Tensor, float], torch.Tensor]  # (x, sigma) -> x0_hat, x = x_0 + sigma * eps


def schedule_sigmas(schedule: NoiseSchedule) -> np.ndarray:
    """sigma_t = sqrt((1 - abar_t) / abar_t), t = 0 .. T-1 (float64)."""
    abar = schedule.alphas_cumprod.detach().double().cpu().numpy()
    return ((1 - abar) / abar) ** 0.5


def sigma_to_t(sigma: float, log_sigmas: np.ndarray) -> float:
    """The (fractional) training timestep of ``sigma``: linear interpolation in log sigma between the schedule's
    levels, clipped to [0, T-1] (k-diffusion's DiscreteSchedule.sigma_to_t; diffusers' _sigma_to_t)."""
    log_sigma = math.log(max(float(sigma), 1e-10))
    low = int(np.clip(np.searchsorted(log_sigmas, log_sigma, side="right") - 1, 0, len(log_sigmas) - 2))
    lo, hi = log_sigmas[low], log_sigmas[low + 1]
    w = float(np.clip((lo - log_sigma) / (lo - hi), 0.0, 1.0))
    return (1 - w) * low + w * (low + 1)


def karras_sigmas(schedule: NoiseSchedule, n: int, rho: float = 7.0) -> list[float]:
    """n Karras sigmas between the schedule's sigma_max and sigma_min (eq. 5), then 0 (float32 values, as diffusers
    keeps them)."""
    s = schedule_sigmas(schedule)
    smin, smax = s[0], s[-1]
    ramp = np.linspace(0, 1, n)
    lo, hi = smin ** (1 / rho), smax ** (1 / rho)
    sig = (hi + ramp * (lo - hi)) ** rho
    return [float(v) for v in np.concatenate([sig, [0.0]]).astype(np.float32)]


def timestep_sigmas(schedule: NoiseSchedule, timesteps: Sequence[int]) -> list[float]:
    """The schedule's sigmas at ``timesteps`` (decreasing), then 0."""
    s = schedule_sigmas(schedule)
    sig = np.interp(np.asarray(timesteps, dtype=np.float64), np.arange(len(s)), s)
    return [float(v) for v in np.concatenate([sig, [0.0]]).astype(np.float32)]


def lcm_timesteps(num_train: int, n: int, original_steps: int = 50, strength: float = 1.0) -> list[int]:
    """The LCM schedule (decreasing): n of the ``original_steps`` distillation timesteps k*c - 1, evenly skipped
    (Luo et al. 2023, Sec. 4.2, "skipping-step"; diffusers' LCMScheduler.set_timesteps)."""
    c = num_train // original_steps
    origin = np.arange(1, int(original_steps * strength) + 1) * c - 1
    n = max(1, min(int(n), len(origin)))
    origin = origin[::-1]
    idx = np.floor(np.linspace(0, len(origin), num=n, endpoint=False)).astype(np.int64)
    return [int(t) for t in origin[idx]]


def _blend(x: torch.Tensor, known: Optional[torch.Tensor], keep: Optional[torch.Tensor], noise: torch.Tensor,
           sigma: float) -> torch.Tensor:
    """The known region put back at noise level ``sigma`` (1 - mask), the generated region as it is."""
    if known is None:
        return x
    return keep * (known + sigma * noise) + (1 - keep) * x


def _setup(known, mask, x, noise):
    keep = None if known is None else 1.0 - mask.to(x.dtype)
    if known is not None and noise is None:
        raise ValueError("inpainting by blending needs the run's fixed noise")
    return keep


@torch.no_grad()
def sample_dpmpp_2m(denoise: SigmaDenoiser, x: torch.Tensor, sigmas: Sequence[float], *,
                    known: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                    noise: Optional[torch.Tensor] = None, cancel=None, timesteps: Sequence[int] = ()
                    ) -> Generator[Step, None, torch.Tensor]:
    """DPM-Solver++(2M), Lu et al. 2022, Alg. 2, with t = -log sigma and h = t_{i+1} - t_i:

        x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h} - 1) D_i,
        D_i = (1 + 1/(2r)) x0_i - 1/(2r) x0_{i-1},  r = h_{i-1} / h_i     (D_i = x0_i on the first and last step).
    """
    keep = _setup(known, mask, x, noise)
    n = len(sigmas) - 1
    old = None
    h_last = None
    for i in range(n):
        if cancel is not None:
            cancel.check()
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoise(x, s)
        if s_next == 0.0:
            x = x0
        else:
            h = math.log(s) - math.log(s_next)
            d = x0
            if old is not None and h_last is not None:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * old
            x = (s_next / s) * x - math.expm1(-h) * d
            h_last = h
        old = x0
        x = _blend(x, known, keep, noise, s_next)
        yield Step(step=i + 1, total=n, t=int(timesteps[i]) if timesteps else i, x=x,
                   denoised=_blend(x0, known, keep, noise, 0.0))
    return x


def ancestral_split(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """(sigma_down, sigma_up): the deterministic step goes to sigma_down, then noise of std sigma_up brings the
    marginal to sigma_next (sigma_down^2 + sigma_up^2 = sigma_next^2)."""
    if sigma_next == 0.0 or eta == 0.0:
        return sigma_next, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
    return math.sqrt(sigma_next ** 2 - up ** 2), up


@torch.no_grad()
def sample_euler_ancestral(denoise: SigmaDenoiser, x: torch.Tensor, sigmas: Sequence[float], *,
                           known: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                           noise: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None,
                           eta: float = 1.0, cancel=None, timesteps: Sequence[int] = ()
                           ) -> Generator[Step, None, torch.Tensor]:
    """Euler ancestral: d = (x - x0_hat) / sigma, x <- x + d (sigma_down - sigma) + sigma_up z, z ~ N(0, I) drawn
    every step (the last one too, as diffusers draws it, so a seed gives the same stream)."""
    keep = _setup(known, mask, x, noise)
    n = len(sigmas) - 1
    for i in range(n):
        if cancel is not None:
            cancel.check()
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoise(x, s)
        down, up = ancestral_split(s, s_next, eta)
        x = x + (x - x0) / s * (down - s)
        z = seeded_noise(x.shape, generator, x)
        if up > 0:
            x = x + z * up
        x = _blend(x, known, keep, noise, s_next)
        yield Step(step=i + 1, total=n, t=int(timesteps[i]) if timesteps else i, x=x,
                   denoised=_blend(x0, known, keep, noise, 0.0))
    return x


def lcm_boundary(t: int, sigma_data: float = 0.5, timestep_scaling: float = 10.0) -> tuple[float, float]:
    """(c_skip, c_out) of the consistency parametrisation f(x, t) = c_skip x + c_out F(x, t) (Song et al. 2023,
    eq. 7, on the scaled discrete timestep, as LCM does)."""
    st = t * timestep_scaling
    return sigma_data ** 2 / (st ** 2 + sigma_data ** 2), st / (st ** 2 + sigma_data ** 2) ** 0.5


@torch.no_grad()
def sample_lcm(denoise: SigmaDenoiser, x: torch.Tensor, sigmas: Sequence[float], timesteps: Sequence[int], *,
               known: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
               noise: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None, cancel=None
               ) -> Generator[Step, None, torch.Tensor]:
    """LCM multistep sampling (Luo et al. 2023, Alg. 1): f = c_skip x_t + c_out x0_hat (in the variance-preserving
    view x_t = x / sqrt(1 + sigma^2)), then x <- f + sigma_next z (no noise after the last step)."""
    keep = _setup(known, mask, x, noise)
    n = len(sigmas) - 1
    for i in range(n):
        if cancel is not None:
            cancel.check()
        s, s_next = float(sigmas[i]), float(sigmas[i + 1])
        x0 = denoise(x, s)
        c_skip, c_out = lcm_boundary(int(timesteps[i]))
        f = c_out * x0 + c_skip * x / math.sqrt(1 + s * s)
        x = f
        if i < n - 1:
            x = x + s_next * seeded_noise(x.shape, generator, x)
        x = _blend(x, known, keep, noise, s_next)
        yield Step(step=i + 1, total=n, t=int(timesteps[i]), x=x, denoised=_blend(f, known, keep, noise, 0.0))
    return x

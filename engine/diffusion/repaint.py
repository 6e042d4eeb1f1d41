"""RePaint (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising Diffusion Probabilistic Models", CVPR;
Algorithm 1 and the jump schedule of its Sec. 4.2 / supplement) on the shared sampler.

One resampled reverse step, t -> t-1 (``engine.diffusion.samplers.sample`` does the arithmetic):

    x_{t-1}^known   = sqrt(abar_{t-1}) x_0 + sqrt(1 - abar_{t-1}) eps,        eps ~ N(0, I)     (Ho et al. eq. 4)
    x_{t-1}^unknown = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1} - sigma_t^2) eps_theta + sigma_t z
    x_{t-1}         = (1 - m) * x_{t-1}^known + m * x_{t-1}^unknown                          (m = 1: fill)
    and, u < U times at every jump point, go back: x_t ~ N(sqrt(1 - beta_t) x_{t-1}, beta_t I)    (eq. 2)

With ``eta = 1`` and stride 1 the unknown update is exactly the DDPM ancestral step of Ho et al. eq. 11, as in the
paper; with a stride > 1 the reverse steps run on the sub-sequence tau_k = k * (T // t_T), as diffusers'
RePaintScheduler does (``engine.diffusion.schedule.strided``).

``RePaintConfig`` is the sampler's settings; ``jump_schedule`` turns them into the plan of transitions. Resampling on
a short strided schedule, spent on one band of noise levels (``resample_levels``), is the time-travel of DDNM+
(Wang, Yu & Zhang 2023, Sec. 3.3) and CoPaint (Zhang et al. 2023); RePaint's own ablation (Sec. 5) finds a fixed
budget better spent on resampling than on more steps.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from engine.api import drive
from engine.device import seeded_noise
from engine.diffusion.samplers import Guidance, Transition, eps_denoiser, sample
from engine.diffusion.schedule import NoiseSchedule, strided


@dataclass(frozen=True)
class RePaintConfig:
    """t_T: reverse steps; jump_length (j in the paper): how far each jump goes back; jump_n_sample (r, the
    number of resamplings): how many times each jump point is visited; resample_levels: the levels that are jump
    points (None: every j-th level, as in the paper); eta: 1 = DDPM noise, 0 = DDIM; mcg: the manifold-constraint
    gradient step (Chung et al. 2022), 0 = plain RePaint."""

    t_T: int = 250
    jump_length: int = 10
    jump_n_sample: int = 10
    eta: float = 1.0
    clip_x0: bool = True
    clipped_eps: bool = False  # re-derive eps from the clipped x0 (the DDPM posterior form; see samplers.sample)
    resample_levels: Optional[tuple[int, ...]] = None
    mcg: float = 0.0

    @property
    def unet_backward(self) -> int:
        """Backward passes through the UNet (one per call with ``mcg`` > 0): an MCG step costs ~3 forward passes."""
        return self.unet_calls if self.mcg > 0 else 0

    @property
    def unet_calls(self) -> int:
        return sum(1 for kind, _ in jump_schedule(self) if kind == "denoise")


def jump_schedule(config: RePaintConfig) -> list[Transition]:
    """The RePaint time schedule as transitions on the grid of levels k = t_T - 1 ... 0 (-1 = clean):

    ("denoise", k): x at level k -> level k - 1 (one UNet call);  ("renoise", k): level k - 1 -> level k.

    Going down, at every jump point (by default k = 0, j, 2j, ... below t_T - j) the chain goes back up j levels
    and comes down again, jump_n_sample - 1 times in all (Lugmayr et al. 2022, Fig. 3 and supplement: "jump
    length" j and "resampling" r). Each visit of a level costs one UNet call.
    """
    t_T, j, r = config.t_T, config.jump_length, config.jump_n_sample
    if t_T < 1 or j < 1 or r < 1:
        raise ValueError("t_T, jump_length and jump_n_sample must be >= 1")
    points = range(0, t_T - j, j) if config.resample_levels is None else config.resample_levels
    if any(not 0 <= k <= t_T - 1 - j for k in points):
        raise ValueError(f"resample levels must lie in [0, t_T - 1 - jump_length] = [0, {t_T - 1 - j}]")
    remaining = {k: r - 1 for k in points}
    out: list[Transition] = []
    k = t_T  # the chain starts at level t_T - 1 (pure noise): the first transition denoises level t_T - 1
    while k >= 1:
        k -= 1
        out.append(("denoise", k))  # level k -> k - 1
        if remaining.get(k, 0) > 0:
            remaining[k] -= 1
            for _ in range(j):
                out.append(("renoise", k))  # level k - 1 -> k
                k += 1
    return out


def repaint_steps(unet: Optional[torch.nn.Module], schedule: NoiseSchedule, image: torch.Tensor, mask: torch.Tensor,
                  config: RePaintConfig = RePaintConfig(), *, generator: Optional[torch.Generator] = None,
                  x_T: Optional[torch.Tensor] = None, denoise=None, guidance: Optional[Guidance] = None,
                  cancel=None, beta_index: str = "exact"):
    """The RePaint generator: a ``Step`` per UNet call, returning the inpainted batch (N x C x H x W in [-1, 1]).

    ``image``: the known image in [-1, 1] (its values under the mask are ignored); ``mask``: 1 = fill;
    ``denoise`` replaces the UNet (any ``(x_t, t) -> (eps, x0)``); ``guidance`` pushes each step (sketch).
    """
    t_T = min(config.t_T, schedule.num_train_timesteps)
    cfg = config if t_T == config.t_T else RePaintConfig(**{**config.__dict__, "t_T": t_T})
    x = x_T if x_T is not None else seeded_noise(image.shape, generator, image)
    return sample(denoise or eps_denoiser(unet, schedule), x, strided(schedule.num_train_timesteps, t_T), schedule,
                  known=image, mask=mask, eta=cfg.eta, clip=cfg.clip_x0, clipped_eps=cfg.clipped_eps,
                  plan=jump_schedule(cfg), mcg=cfg.mcg,
                  guidance=guidance, generator=generator, cancel=cancel, beta_index=beta_index)


def repaint(unet, schedule: NoiseSchedule, image: torch.Tensor, mask: torch.Tensor,
            config: RePaintConfig = RePaintConfig(), **kwargs) -> torch.Tensor:
    """Run ``repaint_steps`` to the end and return the inpainted batch."""
    return drive(repaint_steps(unet, schedule, image, mask, config, **kwargs))

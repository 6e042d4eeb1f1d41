"""The reverse-diffusion loop of every diffusion model in the engine, as a plain generator (k-diffusion style).

``sample(denoise, x, timesteps, schedule, ...)`` walks a time grid and yields one ``Step`` per network call
(step, total, t, x, denoised). Everything a family needs is an argument, not a copy of the loop:

- the update is DDIM's (Song et al. 2021, eq. 12) written with the x_0 prediction,

      x_{t'} = sqrt(abar_{t'}) x0_hat + sqrt(1 - abar_{t'} - sigma^2) eps_hat + sigma z,
      sigma  = eta sqrt((1 - abar_{t'}) / (1 - abar_t)) sqrt(1 - abar_t / abar_{t'})      (eq. 16),

  so ``eta = 1`` is the ancestral DDPM step (Ho et al. 2020, eq. 11, sigma^2 = beta_tilde) and ``eta = 0`` the
  deterministic DDIM step;
- ``denoise(x_t, t) -> (eps_hat, x0_hat)`` adapts any network: noise predictors (``eps_denoiser``, with
  classifier-free guidance inside for Stable Diffusion) and x_0 predictors (the frugal model) alike;
- inpainting: with ``known`` and ``mask`` (1 = fill) the known region is replaced at every step by the known image
  forward-noised to the new level (RePaint, Lugmayr et al. 2022, Alg. 1; one noise draw shared by the known and
  unknown parts, which cover disjoint pixels, as diffusers' RePaintScheduler draws it), the last step pasting the
  clean known image;
- ``plan``: RePaint's jumps back (``engine.diffusion.repaint.jump_schedule``), re-noising x_{t-1} to x_t with
  q(x_t | x_{t-1}) (eq. 2) chained over the betas between the levels;
- ``mcg``: the manifold-constraint gradient step (Chung et al. 2022, Alg. 1, normalised as in DPS):
  x_{t'}^unknown -= zeta * grad_{x_t} || (1 - m) (y - x0_hat(x_t)) ||;
- ``guidance``: a hook that pushes the unknown part of each step, given the step's input with its autograd graph
  (the sketch family's Latent Guidance Predictor step, Voynov et al. 2022, eq. 4).

Noise is drawn on the CPU from ``generator`` and moved (``engine.device.seeded_noise``): a seed means the same
noise on any device. Tensors are N x C x H x W; a denoiser may answer a batch-1 input with K samples (the frugal
model's candidates): the arithmetic broadcasts and the K samples share each step's noise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, Optional, Sequence

import torch

from engine.device import seeded_noise
from engine.diffusion.schedule import NoiseSchedule

Denoiser = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]  # (x_t, t) -> (eps_hat, x0_hat)
Transition = tuple[str, int]  # ("denoise", k): level k -> k - 1 (one network call); ("renoise", k): k - 1 -> k


@dataclass
class Step:
    """What one network call reports: ``denoised`` is the predicted clean sample with the known region pasted in."""

    step: int  # 1-based count of network calls so far
    total: int
    t: int  # the training timestep the network saw
    x: torch.Tensor  # the chain after the step
    denoised: torch.Tensor


class Guidance:
    """A push on the generated part of a reverse step. ``active(t)``: whether to guide at timestep t (the sampler
    then calls the denoiser with gradients); ``__call__(x_in, t, x_t, x_prev)`` returns the pushed x_prev, where
    ``x_in`` is the step's input whose autograd graph holds the network call (x_t is its value)."""

    def active(self, t: int) -> bool:
        return True

    def __call__(self, x_in: torch.Tensor, t: int, x_t: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


def eps_denoiser(unet: torch.nn.Module, schedule: NoiseSchedule) -> Denoiser:
    """A noise-predicting UNet called as ``unet(x, t).sample`` (diffusers' UNet2DModel) as a denoiser."""
    def denoise(x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        eps = unet(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)).sample.to(x.dtype)
        return eps, schedule.predict_x0(x, t, eps)  # eq. 15
    return denoise


def descent(n: int) -> list[Transition]:
    """The plain plan: levels n-1 .. 0, one network call each, ending clean."""
    return [("denoise", k) for k in range(n - 1, -1, -1)]


def diffusers_undo_betas(t: int, num_train: int, stride: int) -> range:
    """The timesteps whose betas diffusers' RePaintScheduler.undo_step chains from a level up to the next: [t, t +
    stride) (kept for the equivalence test; the engine's own jump is one exact draw, see ``sample``)."""
    return range(t, min(t + stride, num_train))


@torch.no_grad()
def sample(denoise: Denoiser, x: torch.Tensor, timesteps: Sequence[int], schedule: NoiseSchedule, *,
           known: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None, eta: float = 1.0,
           clip: bool = True, clipped_eps: bool = False, plan: Optional[Sequence[Transition]] = None, mcg: float = 0.0,
           guidance: Optional[Guidance] = None, generator: Optional[torch.Generator] = None, cancel=None,
           final: Optional[int] = None, beta_index: str = "exact") -> Generator[Step, None, torch.Tensor]:
    """Yield a ``Step`` per network call; return the sample after the last level.

    ``x``: the chain at level n-1 (pure noise, or a forward-noised start for SDEdit-style drafts);
    ``timesteps``: the training timestep of each level k = 0 .. n-1, increasing; ``final``: the timestep whose
    abar the chain ends at (None: the clean image); ``known`` / ``mask``: inpaint (mask 1 = fill);
    ``clip``: clamp x0_hat to [-1, 1]; ``clipped_eps``: then re-derive eps_hat from the clamped x0_hat (diffusers'
    ``use_clipped_model_output``): with eta = 1 the step is then exactly the posterior q(x_{t'} | x_t, x0_hat) of
    Ho et al. eqs. 6-7 with a clipped x0_hat, as the original DDPM sampler; without it, the DDIM direction keeps the
    network's eps (what diffusers' RePaint does); ``cancel``: anything with ``check()``, called before every
    transition.
    """
    n = len(timesteps)
    plan = list(plan) if plan is not None else descent(n)
    total = sum(1 for kind, _ in plan if kind == "denoise")
    fill = keep = None
    if known is not None:
        fill = mask.to(known.dtype)
        keep = 1.0 - fill
    noise_like = known if known is not None else x
    stride = schedule.num_train_timesteps // n
    calls = 0
    for kind, k in plan:
        if cancel is not None:
            cancel.check()
        t = timesteps[k]
        t_prev = timesteps[k - 1] if k > 0 else (-1 if final is None else final)
        if kind == "renoise":
            below = timesteps[k - 1] if k > 0 else -1
            if beta_index == "exact":
                # q(x_t | x_below) = N(sqrt(abar_t / abar_below) x, (1 - abar_t / abar_below) I): the chain of eq. 2
                # over the betas in between, in one draw (a stride of 50 drew 50 times per jump level)
                ratio = schedule.alpha_bar(t) / schedule.alpha_bar(below)
                x = ratio.sqrt() * x + (1 - ratio).sqrt() * seeded_noise(x.shape, generator, x)
                continue
            if beta_index != "diffusers":
                raise ValueError(f"beta_index must be 'exact' or 'diffusers', not {beta_index!r}")
            for s in diffusers_undo_betas(t, schedule.num_train_timesteps, stride):
                beta = schedule.betas[s]
                x = (1 - beta).sqrt() * x + beta.sqrt() * seeded_noise(x.shape, generator, x)
            continue
        ab_t, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
        guided = guidance is not None and guidance.active(t)
        x_in, grad = x, None
        if mcg > 0 or guided:  # the same network call, with the graph kept for the gradient steps
            with torch.enable_grad():
                x_in = x.detach().requires_grad_(True)
                eps, x0_hat = denoise(x_in, t)
                if mcg > 0:
                    residual = (keep * (known - x0_hat)).flatten(1).norm(dim=1)  # ||y - P x0_hat(x_t)|| per image
                    grad = torch.autograd.grad(residual.sum(), x_in, retain_graph=guided)[0]
            eps, x0_hat = eps.detach(), x0_hat.detach()
        else:
            eps, x0_hat = denoise(x, t)
        if clip:
            x0_hat = x0_hat.clamp(-1, 1)
            if clipped_eps:
                eps = schedule.predict_eps(x, t, x0_hat)
        noise = seeded_noise(noise_like.shape, generator, noise_like)
        sigma = eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).sqrt()
        x_unknown = ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps
        if t > 0 and eta > 0:
            x_unknown = x_unknown + sigma * noise
        if grad is not None:
            x_unknown = x_unknown - mcg * grad
        if guided:
            with torch.enable_grad():
                x_unknown = guidance(x_in, t, x, x_unknown).detach()
        if known is None:
            x, denoised = x_unknown, x0_hat
        else:
            x_known = ab_prev.sqrt() * known + (1 - ab_prev).sqrt() * noise if k > 0 else known  # eq. 4
            x = keep * x_known + fill * x_unknown
            denoised = keep * known + fill * x0_hat
        calls += 1
        yield Step(step=calls, total=total, t=t, x=x, denoised=denoised)
    return x


def ddim(denoise: Denoiser, x: torch.Tensor, timesteps: Sequence[int], schedule: NoiseSchedule, **kwargs
         ) -> Generator[Step, None, torch.Tensor]:
    """Deterministic DDIM (eta = 0)."""
    return sample(denoise, x, timesteps, schedule, eta=0.0, **kwargs)


def ancestral(denoise: Denoiser, x: torch.Tensor, timesteps: Sequence[int], schedule: NoiseSchedule, **kwargs
              ) -> Generator[Step, None, torch.Tensor]:
    """Ancestral DDPM sampling (eta = 1; with every timestep, exactly Ho et al.'s Algorithm 2)."""
    return sample(denoise, x, timesteps, schedule, eta=1.0, **kwargs)

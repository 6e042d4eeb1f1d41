"""RePaint: inpainting with an unconditional DDPM (Lugmayr et al. 2022, "RePaint: Inpainting using Denoising
Diffusion Probabilistic Models", CVPR; Algorithm 1 and the jump schedule of its Sec. 4.2 / supplement).

Plain functions in the k-diffusion manner: ``repaint_steps`` is a generator that yields one ``RePaintStep`` per
UNet evaluation (the predicted x_0 with the known region pasted in, ready for a preview) and returns the final
image; ``repaint`` runs it to the end. Tensors are N x C x H x W in [-1, 1]; ``mask`` is N x 1 x H x W with
**1 = fill** (the engine's convention; diffusers' RePaint uses 1 = keep, converted once in the tests/benchmark).

Algorithm 1 (one resampled reverse step, t -> t-1):

    x_{t-1}^known   = sqrt(abar_{t-1}) x_0 + sqrt(1 - abar_{t-1}) eps,        eps ~ N(0, I)     (Ho et al. eq. 4)
    x_{t-1}^unknown = sqrt(abar_{t-1}) x0_hat + sqrt(1 - abar_{t-1} - sigma_t^2) eps_theta + sigma_t z
                      with x0_hat = (x_t - sqrt(1 - abar_t) eps_theta) / sqrt(abar_t)          (eq. 4 / 15)
    x_{t-1}         = (1 - m) * x_{t-1}^known + m * x_{t-1}^unknown                          (m = 1: fill)
    and, u < U times at every jump point, go back: x_t ~ N(sqrt(1 - beta_t) x_{t-1}, beta_t I)    (eq. 2)

The unknown update is written in the DDIM form (Song et al. 2021, eq. 12) so that one function covers both
modes: with ``eta = 1`` and stride 1 it is exactly the DDPM ancestral step of Ho et al. eq. 11 (sigma_t^2 =
beta_tilde_t, eq. 7), as in the paper; with a stride > 1 the reverse steps run on the sub-sequence
tau_k = k * (T // t_T) as diffusers' RePaintScheduler does. The known and unknown parts share one noise draw
per step: they cover disjoint pixels, so this is the same distribution as two draws, and it reproduces
diffusers' random stream exactly.

**Fast mode** (``FAST``): the same loop on a short strided schedule (t_T = 20, stride 50: the DDIM sub-sequence of
Song et al. 2021 Sec. 4.2) with RePaint's resampling spent where it pays, on one band of noise levels: the chain
jumps back from level 4 (t = 200) to level 8 (t = 400) 39 times (j = 4, r = 40, ``resample_levels=(4,)``).
Resampling on a short DDIM schedule is the time-travel of DDNM+ (Wang, Yu & Zhang 2023, ICLR, Sec. 3.3) and
CoPaint (Zhang et al. 2023); RePaint's own ablation (resampling vs. slowing down, Sec. 5) finds a fixed budget
better spent on resampling than on more steps. 176 UNet calls instead of 2,410 for the default (t_T=250, jump 10,
resample 10): 13.7x fewer.

**Manifold constraint** (``mcg`` > 0; Chung, Sim, Ryu & Ye 2022, "Improving Diffusion Models for Inverse Problems
using Manifold Constraints", NeurIPS, Algorithm 1; the step normalised as in DPS, Chung et al. 2023, ICLR):
RePaint's paste makes the known region right, but the generated part only hears of it through the next UNet call.
MCG differentiates the known-region residual of the x_0 prediction with respect to x_t and moves the unknown part
of x_{t-1} down that gradient before the paste:

    x_{t-1}^unknown <- x_{t-1}^unknown - zeta * grad_{x_t} || (1 - m) (x_0 - x0_hat(x_t)) ||

One backward pass through the UNet per call (about three forward passes of compute in all).

Hook points for guidance (e.g. sketch guidance, Voynov et al. 2022): ``model_fn(x_t, t) -> eps`` replaces the
UNet call (wrap it to keep activations or run it with gradients), and ``guidance(x_t, t, x_prev) -> x_prev``
may push the unknown part of x_{t-1} before the known region is pasted in. The loop runs under
``torch.no_grad()``; a hook that needs gradients uses ``torch.enable_grad()`` itself.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Generator, Optional

import torch

from engine.api import drive
from engine.ddpm.model import NoiseSchedule
from engine.device import seeded_noise

ModelFn = Callable[[torch.Tensor, int], torch.Tensor]
Guidance = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RePaintConfig:
    """t_T: reverse steps; jump_length (j in the paper): how far each jump goes back; jump_n_sample (r, the
    number of resamplings): how many times each jump point is visited; resample_levels: the levels that are jump
    points (None: every j-th level, as in the paper); eta: 1 = DDPM noise, 0 = DDIM."""

    t_T: int = 250
    jump_length: int = 10
    jump_n_sample: int = 10
    eta: float = 1.0
    clip_x0: bool = True
    resample_levels: Optional[tuple[int, ...]] = None
    mcg: float = 0.0  # manifold-constraint gradient step (Chung et al. 2022); 0 = plain RePaint

    @property
    def unet_backward(self) -> int:
        """Backward passes through the UNet (one per call with ``mcg`` > 0): an MCG step costs ~3 forward passes."""
        return self.unet_calls if self.mcg > 0 else 0

    @property
    def unet_calls(self) -> int:
        return sum(1 for kind, _ in jump_schedule(self) if kind == "denoise")


DEFAULT = RePaintConfig()
# Fast mode: 20 DDIM-strided levels (stride 50) with all the resampling spent on one band. Probes on the step-24,000
# weights (docs/ddpm.md, "Fast mode") showed where resampling pays: spreading r = 10 over every 4th level gives
# ~75 %; resampling only t in [0, 200] ~66 %, only t in [400, 800] ~57 %, only the band t in [200, 400] ~83 %.
FAST = RePaintConfig(t_T=20, jump_length=4, jump_n_sample=40, eta=1.0, resample_levels=(4,))


def jump_schedule(config: RePaintConfig) -> list[tuple[str, int]]:
    """The RePaint time schedule as a list of transitions on the grid of levels k = t_T - 1 ... 0 (-1 = clean):

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
    out: list[tuple[str, int]] = []
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


def renoise_indices(k: int, stride: int, T: int, beta_index: str = "exact") -> range:
    """The timesteps s whose beta_s carry the chain from level k - 1 to level k (tau_k = k * stride).

    "exact": s in (tau_{k-1}, tau_k], with tau_{-1} = -1 (the clean image), so prod (1 - beta_s) is exactly
    abar_{tau_k} / abar_{tau_{k-1}}; "diffusers": s in [tau_k, tau_k + stride), as RePaintScheduler.undo_step.
    """
    t = k * stride
    if beta_index == "exact":
        return range(max(t - stride + 1, 0), t + 1)
    if beta_index == "diffusers":
        return range(t, min(t + stride, T))
    raise ValueError(f"beta_index must be 'exact' or 'diffusers', not {beta_index!r}")


@dataclass
class RePaintStep:
    """What one UNet step reports: ``x0`` is the predicted clean image with the known region pasted in."""

    index: int  # 1-based count of UNet calls so far
    total: int
    t: int  # training timestep the UNet saw
    x_t: torch.Tensor  # the chain after the step (level t - stride)
    x0: torch.Tensor


@torch.no_grad()
def repaint_steps(unet: Optional[torch.nn.Module], schedule: NoiseSchedule, image: torch.Tensor,
                  mask: torch.Tensor, config: RePaintConfig = DEFAULT, *,
                  generator: Optional[torch.Generator] = None, x_T: Optional[torch.Tensor] = None,
                  model_fn: Optional[ModelFn] = None, guidance: Optional[Guidance] = None,
                  cancel=None, beta_index: str = "exact") -> Generator[RePaintStep, None, torch.Tensor]:
    """Yield a ``RePaintStep`` per UNet call; return the inpainted image (N x C x H x W in [-1, 1]).

    ``image``: the known image in [-1, 1] (its values under the mask are ignored); ``mask``: 1 = fill.
    ``cancel``: anything with ``check()`` (an engine CancelToken), called before every step.
    ``beta_index``: how a strided "renoise" from level k-1 to k picks its per-step betas: "exact" uses
    beta_s for s in (tau_{k-1}, tau_k] (eq. 2 chained, so abar matches the level exactly); "diffusers" uses
    beta_s for s in [tau_k, tau_k + stride) as diffusers' RePaintScheduler.undo_step does (identical when the
    stride is 1). The equivalence test uses "diffusers".
    """
    T = schedule.num_train_timesteps
    t_T = min(config.t_T, T)
    stride = T // t_T
    if model_fn is None:
        def model_fn(x: torch.Tensor, t: int) -> torch.Tensor:
            return unet(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)).sample.to(x.dtype)
    dtype = image.dtype
    known = image
    fill = mask.to(dtype)
    keep = 1.0 - fill
    x = x_T if x_T is not None else seeded_noise(image.shape, generator, image)
    plan = jump_schedule(replace(config, t_T=t_T))
    total = sum(1 for kind, _ in plan if kind == "denoise")
    calls = 0
    for kind, k in plan:
        if cancel is not None:
            cancel.check()
        t = k * stride  # training timestep of level k
        if kind == "renoise":
            # q(x_t | x_{t-1}) = N(sqrt(1 - beta) x, beta I), chained over the stride (eq. 2)
            for s in renoise_indices(k, stride, T, beta_index):
                beta = schedule.betas[s]
                x = (1 - beta).sqrt() * x + beta.sqrt() * seeded_noise(x.shape, generator, x)
            continue
        t_prev = t - stride  # the next level; < 0 means the clean image
        ab_t, ab_prev = schedule.alpha_bar(t), schedule.alpha_bar(t_prev)
        if config.mcg > 0:  # the same UNet call, with the graph kept for the manifold-constraint gradient
            with torch.enable_grad():
                x_in = x.detach().requires_grad_(True)
                eps = model_fn(x_in, t)
                x0_hat = schedule.predict_x0(x_in, t, eps)
                residual = (keep * (known - x0_hat)).flatten(1).norm(dim=1)  # ||y - P x0_hat(x_t)|| per image
                grad = torch.autograd.grad(residual.sum(), x_in)[0]
            eps, x0_hat = eps.detach(), x0_hat.detach()
        else:
            eps = model_fn(x, t)
            x0_hat = schedule.predict_x0(x, t, eps)  # eq. 15
        if config.clip_x0:
            x0_hat = x0_hat.clamp(-1, 1)
        noise = seeded_noise(x.shape, generator, x)
        # sigma_t^2 = eta^2 (1 - abar_prev) / (1 - abar_t) (1 - abar_t / abar_prev)   (DDIM eq. 16; = beta_tilde)
        sigma = config.eta * ((1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)).sqrt()
        x_unknown = ab_prev.sqrt() * x0_hat + (1 - ab_prev - sigma ** 2).clamp(min=0).sqrt() * eps
        if t > 0 and config.eta > 0:
            x_unknown = x_unknown + sigma * noise
        if config.mcg > 0:
            x_unknown = x_unknown - config.mcg * grad
        if guidance is not None:
            x_unknown = guidance(x, t, x_unknown)
        x_known = ab_prev.sqrt() * known + (1 - ab_prev).sqrt() * noise  # eq. 4 at level t_prev
        x = keep * x_known + fill * x_unknown
        calls += 1
        yield RePaintStep(index=calls, total=total, t=t, x_t=x, x0=keep * known + fill * x0_hat)
    return x


def repaint(unet, schedule: NoiseSchedule, image: torch.Tensor, mask: torch.Tensor,
            config: RePaintConfig = DEFAULT, **kwargs) -> torch.Tensor:
    """Run ``repaint_steps`` to the end and return the inpainted batch."""
    return drive(repaint_steps(unet, schedule, image, mask, config, **kwargs))


class CountingUNet(torch.nn.Module):
    """Wraps a UNet and counts forward calls (tests and the benchmark)."""

    def __init__(self, unet: torch.nn.Module) -> None:
        super().__init__()
        self.unet = unet
        self.calls = 0

    @property
    def config(self):
        return self.unet.config

    @property
    def dtype(self):
        return self.unet.dtype

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.unet(*args, **kwargs)

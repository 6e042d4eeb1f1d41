"""Sketch guidance for a pixel-space DDPM, with the RePaint known-region constraint for inpainting.

Guidance step (Voynov et al. 2022, arXiv 2211.13752, Sec. 3.2, eq. 4 and the step-size rule after it): after the
ordinary reverse step x_t -> x_{t-1},

    x~_{t-1} = x_{t-1} - alpha * grad_{x_t} L,     L = ||LGP(F(x_t|c,t), t) - E(e)||^2,
    alpha    = beta * ||x_t - x_{t-1}||_2 / ||grad_{x_t} L||_2,

so beta (order 1) sets the guidance step relative to the size of the denoising step itself. It is applied on the
first ``share`` of the reverse steps (the noisy ones, where layout is decided).

Inpainting (RePaint, Lugmayr et al. 2022, Alg. 1): at every step the known region is replaced by the known image
forward-noised to the new level, x_{t-1} = m * x_{t-1}^unknown + (1 - m) * q_sample(x_0^known, t-1), m = 1 in the
hole; optional resampling repeats each step ``resample`` times, re-noising x_{t-1} back to x_t in between. The
sketch loss is weighted to the hole, so a sketch drawn there shapes the fill while known pixels stay put.

The sampler is a respaced ancestral DDPM (Ho et al. 2020, Alg. 2, with Nichol & Dhariwal 2021's respacing):
any number of steps <= T over the model's training schedule abar_t (``scheduler.alphas_cumprod``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from engine.api import drive
from engine.device import seeded_noise
from engine.sketch.lgp import FeatureHooks, LatentGuidancePredictor, edge_loss


def guidance_alpha(x_t: torch.Tensor, x_prev: torch.Tensor, grad: torch.Tensor, beta: float,
                   eps: float = 1e-12) -> torch.Tensor:
    """alpha = beta * ||x_t - x_{t-1}|| / ||grad L||, one value per batch item (shape B x 1 x 1 x 1)."""
    b = x_t.shape[0]
    step = (x_t - x_prev).reshape(b, -1).norm(dim=1)
    gn = grad.reshape(b, -1).norm(dim=1)
    return (beta * step / (gn + eps)).view(b, *([1] * (x_t.dim() - 1)))


def apply_guidance(x_t: torch.Tensor, x_prev: torch.Tensor, grad: torch.Tensor, beta: float) -> torch.Tensor:
    """x~_{t-1} = x_{t-1} - alpha * grad_{x_t} L (Voynov et al. eq. 4)."""
    return x_prev - guidance_alpha(x_t, x_prev, grad, beta) * grad


def guided_steps(num_steps: int, share: float) -> int:
    """How many of the first (noisiest) reverse steps get guidance."""
    share = min(max(float(share), 0.0), 1.0)
    return int(round(num_steps * share))


@dataclass
class SketchGuide:
    """What guidance needs besides the UNet: the trained LGP, the target E(e) (B x C x R x R), beta, the share of
    steps, and an optional loss weight (B x 1 x R x R, e.g. the hole)."""

    lgp: LatentGuidancePredictor
    target: torch.Tensor
    beta: float = 1.0
    share: float = 0.5
    weight: torch.Tensor | None = None

    def loss_and_grad(self, hooks: FeatureHooks, x_t: torch.Tensor, t: torch.Tensor,
                      noise_level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """L on the features captured by the last forward, and grad_{x_t} L (x_t must require grad)."""
        pred = self.lgp(hooks.collect(), t, noise_level)
        loss = edge_loss(pred, self.target, self.weight)
        (grad,) = torch.autograd.grad(loss, x_t)
        return loss.detach(), grad


def make_guidance_hook(unet, guide: SketchGuide, alphas_cumprod: torch.Tensor, total_steps: int,
                       unet_kwargs: dict | None = None) -> Callable:
    """A ``guidance(x_t, t, x_prev) -> x_prev`` callable for samplers that expose such a per-step hook (e.g. the
    project's RePaint sampler in ``engine/ddpm/repaint.py``). It re-runs the UNet on x_t with gradients (one extra
    forward + backward per guided step) and counts calls, guiding the first ``share`` of them."""
    n_guided = guided_steps(total_steps, guide.share)
    state = {"calls": 0}
    hooks = FeatureHooks(unet, guide.lgp.config.blocks)

    def guidance(x_t: torch.Tensor, t, x_prev: torch.Tensor) -> torch.Tensor:
        state["calls"] += 1
        if state["calls"] > n_guided or guide.beta == 0:
            return x_prev
        tt = torch.as_tensor(t).reshape(-1)
        with torch.enable_grad():
            xg = x_t.detach().clone().requires_grad_(True)
            hooks.clear()
            unet(xg, tt.to(x_t.device).expand(x_t.shape[0]), **(unet_kwargs or {}))
            nl = (1 - alphas_cumprod[tt.long()]).sqrt()
            _, grad = guide.loss_and_grad(hooks, xg, tt, nl)
        return apply_guidance(x_t, x_prev, grad, guide.beta).detach()

    guidance.hooks = hooks  # type: ignore[attr-defined]
    return guidance


def respaced_timesteps(num_train: int, num_steps: int) -> list[int]:
    """num_steps timesteps from T-1 down to 0, evenly spread (always includes 0 and T-1)."""
    num_steps = max(1, min(int(num_steps), num_train))
    ts = torch.linspace(num_train - 1, 0, num_steps).round().long().tolist()
    out: list[int] = []
    for t in ts:
        if not out or t != out[-1]:
            out.append(int(t))
    return out


def q_sample(x0: torch.Tensor, abar: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (Ho et al. eq. 4)."""
    return abar.sqrt() * x0 + (1 - abar).sqrt() * noise


def sample_ddpm(unet, alphas_cumprod: torch.Tensor, shape: tuple[int, ...], num_steps: int = 50,
                generator: torch.Generator | None = None, guide: SketchGuide | None = None,
                known: torch.Tensor | None = None, hole: torch.Tensor | None = None, resample: int = 1,
                callback: Callable[[int, int, torch.Tensor], None] | None = None,
                check_cancel: Callable[[], None] | None = None, clip: bool = True) -> torch.Tensor:
    """``iter_ddpm`` run to the end; ``callback(step, total, x0_hat)`` gets each preview. Returns x_0."""
    gen = iter_ddpm(unet, alphas_cumprod, shape, num_steps, generator, guide, known, hole, resample,
                    check_cancel, clip)
    return drive(gen, None if callback is None else lambda step: callback(*step))


@torch.no_grad()
def iter_ddpm(unet, alphas_cumprod: torch.Tensor, shape: tuple[int, ...], num_steps: int = 50,
              generator: torch.Generator | None = None, guide: SketchGuide | None = None,
              known: torch.Tensor | None = None, hole: torch.Tensor | None = None, resample: int = 1,
              check_cancel: Callable[[], None] | None = None, clip: bool = True):
    """Ancestral DDPM sampling of an epsilon-predicting ``unet(x, t).sample``, with optional sketch guidance and
    RePaint inpainting (``known`` B x C x H x W in [-1, 1], ``hole`` B x 1 x H x W, 1 = generate).

    A generator: yields ``(step, total, x0_hat)`` after each reverse step (the predicted clean image, for the
    Preview stream) and returns x_0 in [-1, 1]. ``check_cancel()`` is called before every UNet evaluation.
    """
    abar_all = alphas_cumprod.to(torch.float32)
    ts = respaced_timesteps(len(abar_all), num_steps)
    total = len(ts)
    n_guided = guided_steps(total, guide.share) if guide is not None and guide.beta > 0 else 0
    dev = next(unet.parameters()).device
    x = seeded_noise(shape, generator, torch.empty((), device=dev))
    hooks = FeatureHooks(unet, guide.lgp.config.blocks) if n_guided else None
    one = torch.ones((), dtype=torch.float32)

    try:
        for i, t in enumerate(ts):
            abar_t = abar_all[t]
            abar_prev = abar_all[ts[i + 1]] if i + 1 < total else one
            beta_t = 1 - abar_t / abar_prev  # respaced beta between the two kept timesteps
            for u in range(max(1, int(resample))):
                if check_cancel is not None:
                    check_cancel()
                tt = torch.full((shape[0],), t, device=dev, dtype=torch.long)
                use_guidance = i < n_guided
                if use_guidance:
                    with torch.enable_grad():
                        x_in = x.detach().requires_grad_(True)
                        hooks.clear()
                        eps = unet(x_in, tt).sample
                        _, grad = guide.loss_and_grad(hooks, x_in, tt, (1 - abar_t).sqrt())
                    eps = eps.detach()
                else:
                    eps = unet(x, tt).sample
                x0_hat = (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
                if clip:
                    x0_hat = x0_hat.clamp(-1, 1)
                # posterior q(x_{t-1} | x_t, x_0) mean and variance (Ho et al. eqs. 6-7)
                coef_x0 = abar_prev.sqrt() * beta_t / (1 - abar_t)
                coef_xt = (1 - beta_t).sqrt() * (1 - abar_prev) / (1 - abar_t)
                mean = coef_x0 * x0_hat + coef_xt * x
                if i + 1 < total:
                    var = beta_t * (1 - abar_prev) / (1 - abar_t)
                    x_prev = mean + var.clamp(min=1e-20).sqrt() * seeded_noise(x.shape, generator, x)
                else:
                    x_prev = mean
                if use_guidance:
                    x_prev = apply_guidance(x, x_prev, grad, guide.beta)
                if known is not None:
                    known_prev = q_sample(known, abar_prev, seeded_noise(known.shape, generator, known)) if i + 1 < total else known
                    x_prev = hole * x_prev + (1 - hole) * known_prev
                if u + 1 < resample and i + 1 < total:
                    # RePaint's "jump back": re-noise x_{t-1} to x_t with the respaced beta, then redo the step
                    x = (1 - beta_t).sqrt() * x_prev + beta_t.sqrt() * seeded_noise(x_prev.shape, generator, x_prev)
                else:
                    x = x_prev
            shown = x0_hat if known is None else hole * x0_hat + (1 - hole) * known
            yield i + 1, total, shown
    finally:
        if hooks is not None:
            hooks.remove()
    return x.clamp(-1, 1) if clip else x

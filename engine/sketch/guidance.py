"""The sketch-guidance step (Voynov et al. 2022, arXiv 2211.13752, Sec. 3.2, eq. 4 and the step-size rule after it),
as a ``Guidance`` hook of the shared sampler (``engine.diffusion.samplers``): after the ordinary reverse step
x_t -> x_{t-1},

    x~_{t-1} = x_{t-1} - alpha * grad_{x_t} L,     L = ||LGP(F(x_t|c,t), t) - E(e)||^2,
    alpha    = beta * ||x_t - x_{t-1}||_2 / ||grad_{x_t} L||_2,

so beta (order 1) sets the guidance step relative to the size of the denoising step itself. It is applied on the
first ``share`` of the reverse steps (the noisy ones, where layout is decided). F(x_t|c,t) are the activations the
UNet produced in the step's own call (forward hooks), so guidance costs one backward pass, not a second forward.
When inpainting, the loss is weighted to the hole, so a sketch drawn there shapes the fill while known pixels stay.
"""
from __future__ import annotations

import torch

from engine.diffusion.samplers import Guidance
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


class SketchGuidance(Guidance):
    """The LGP step on ``unet``'s activations. ``target`` is E(e) (B x C x R x R), ``weight`` an optional loss
    weight (B x 1 x R x R, the hole); guidance acts on timesteps >= ``t_min`` (the first ``share`` of the grid,
    ``t_min_for``; None: nowhere). ``conditional_half``: the UNet ran a classifier-free batch [unconditional,
    conditional] and the LGP reads the conditional half's features. Remove the hooks with ``close()`` (or ``with``)."""

    def __init__(self, unet: torch.nn.Module, lgp: LatentGuidancePredictor, target: torch.Tensor,
                 alphas_cumprod: torch.Tensor, beta: float = 1.0, t_min: int | None = 0,
                 weight: torch.Tensor | None = None, conditional_half: bool = False) -> None:
        self.lgp, self.target, self.weight, self.beta, self.t_min = lgp, target, weight, float(beta), t_min
        self.alphas_cumprod = alphas_cumprod
        self.conditional_half = conditional_half
        self.hooks = FeatureHooks(unet, lgp.config.blocks)

    @staticmethod
    def t_min_for(timesteps: list[int], share: float) -> int | None:
        """The smallest guided timestep when the first ``share`` of ``timesteps`` (increasing) is guided; None: none."""
        n = guided_steps(len(timesteps), share)
        return timesteps[len(timesteps) - n] if n else None

    def active(self, t: int) -> bool:
        return self.beta > 0 and self.t_min is not None and t >= self.t_min

    def __call__(self, x_in: torch.Tensor, t: int, x_t: torch.Tensor, x_prev: torch.Tensor) -> torch.Tensor:
        feats = self.hooks.collect()
        if self.conditional_half:
            feats = [f[-1:] for f in feats]
        noise_level = (1 - self.alphas_cumprod[t]).sqrt()
        loss = edge_loss(self.lgp(feats, torch.tensor([t]), noise_level), self.target, self.weight)
        (grad,) = torch.autograd.grad(loss, x_in)
        return apply_guidance(x_t, x_prev, grad, self.beta)

    def close(self) -> None:
        self.hooks.remove()

    def __enter__(self) -> "SketchGuidance":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

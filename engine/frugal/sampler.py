"""Sampling the frugal model: a strided ancestral sampler with known-pixel replacement.

``sample_inpaint(net, sched, y, mask, steps, eta, gen, callback)`` runs the reverse process on a strided subset of
the T noise levels (DDIM, Song et al. 2021, Eq. 12, written with the x_0 prediction the paper's network makes):

    x0_hat  = M * f_theta(x_t, y, M, sigma_t^2) + (1 - M) * y
    eps_hat = (x_t - sqrt(abar_t) x0_hat) / sigma_t
    x_s     = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - s_eta^2) eps_hat + s_eta z,
    s_eta   = eta * sqrt((1 - abar_s) / (1 - abar_t)) * sqrt(1 - abar_t / abar_s)

(eta = 1: DDPM's ancestral step; eta = 0: deterministic DDIM), then the known pixels are replaced by a forward-noised
copy of the image, x_s <- M * x_s + (1 - M) * q_sample(y, s) (RePaint's replacement, Lugmayr et al. 2022, Eq. 8,
without resampling jumps: the network already sees y and M). ``callback(i, steps, x0_hat)`` sees every step's
predicted clean image; it may raise (cancellation).
"""
from __future__ import annotations

from typing import Callable, Generator

import torch
from torch import nn

from engine.api import drive
from engine.device import seeded_noise
from engine.frugal.model import DiffusionSchedule, FrugalUNet


def timesteps(sched: DiffusionSchedule, steps: int) -> list[int]:
    """``steps`` + 1 evenly spaced, decreasing noise indices from T to 0."""
    steps = max(1, min(int(steps), sched.T))
    return torch.linspace(sched.T, 0, steps + 1).round().long().tolist()


def sample_inpaint_iter(net: nn.Module, sched: DiffusionSchedule, y: torch.Tensor, mask: torch.Tensor,
                        steps: int = 25, eta: float = 1.0, gen: torch.Generator | None = None,
                        draft: torch.Tensor | None = None, strength: float = 1.0
                        ) -> Generator[tuple[int, int, torch.Tensor], None, torch.Tensor]:
    """The sampler as a generator: yields (step, n, x0_hat) after every network call, returns x_0.

    net: a FrugalUNet or any x_0 predictor with its signature (an AutoGuided pair);
    y: (B, 3, H, W) in [-1, 1] (any values in the hole), mask: (B, 1, H, W), 1 = hole; net, sched, y, mask and
    draft on one device; the noise is drawn from ``gen`` (a CPU generator: the same noise on any device).
    A net may answer a batch-1 call with K samples (AutoGuided with K values of w): the arithmetic broadcasts, so
    from there on the K samples are carried together and share each step's noise.
    draft: a first fill of the hole (e.g. the patch method's); sampling then starts from it, forward-noised to the
    first step whose sigma <= ``strength`` (SDEdit, Meng et al. 2022), and runs only the steps below: n <= steps."""
    def level(t: int) -> torch.Tensor:  # the index tensor of noise level t for the batch, on y's device
        return torch.full((b,), t, device=y.device)

    with torch.inference_mode():
        y = y * (1 - mask)
        b = y.shape[0]
        ts = timesteps(sched, steps)
        if draft is not None:
            below = [t for t in ts if float(sched.sigma2[t].sqrt()) <= strength]
            ts = below if len(below) >= 2 else ts[-2:]
            start = mask * draft + (1 - mask) * y
            x = sched.q_sample(start, level(ts[0]), seeded_noise(y.shape, gen, y))
        else:
            x = seeded_noise(y.shape, gen, y)
            x = mask * x + (1 - mask) * sched.q_sample(y, level(ts[0]), seeded_noise(y.shape, gen, y))
        n = len(ts) - 1
    for i, (t, s) in enumerate(zip(ts[:-1], ts[1:])):
        with torch.inference_mode():
            x0_hat = net(x, y, mask, sched.sigma2[level(t)]).clamp(-1, 1)
            x0_hat = mask * x0_hat + (1 - mask) * y
            if s == 0:
                x = x0_hat
            else:
                a_t, a_s = sched.abar[t], sched.abar[s]
                eps = (x - a_t.sqrt() * x0_hat) / (1 - a_t).sqrt()
                s_eta = eta * ((1 - a_s) / (1 - a_t)).sqrt() * (1 - a_t / a_s).clamp(min=0).sqrt()
                dir_coef = (1 - a_s - s_eta ** 2).clamp(min=0).sqrt()
                x = a_s.sqrt() * x0_hat + dir_coef * eps + s_eta * seeded_noise(y.shape, gen, y)
                known = sched.q_sample(y, level(s), seeded_noise(y.shape, gen, y))
                x = mask * x + (1 - mask) * known
        yield i + 1, n, x0_hat
        if s == 0:
            break
    return x


def sample_inpaint(net: nn.Module, sched: DiffusionSchedule, y: torch.Tensor, mask: torch.Tensor, steps: int = 25,
                   eta: float = 1.0, gen: torch.Generator | None = None,
                   callback: Callable[[int, int, torch.Tensor], None] | None = None,
                   draft: torch.Tensor | None = None, strength: float = 1.0) -> torch.Tensor:
    """k-diffusion-style wrapper: ``callback(step, n, x0_hat)`` every step (it may raise to cancel)."""
    it = sample_inpaint_iter(net, sched, y, mask, steps, eta, gen, draft, strength)
    return drive(it, None if callback is None else lambda step: callback(*step))


@torch.inference_mode()
def regress(net: FrugalUNet, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The regression baseline's one-shot fill: f_theta(y, y, M, 0) in the hole, y outside."""
    y = y * (1 - mask)
    pred = net(y, y, mask, torch.zeros(y.shape[0], device=y.device)).clamp(-1, 1)
    return mask * pred + (1 - mask) * y

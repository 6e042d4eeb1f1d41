"""The sigma-space samplers (engine/diffusion/ksamplers.py) against diffusers' schedulers on a tiny random UNet."""
from __future__ import annotations

import math

import pytest
import torch

from engine.diffusion import ksamplers as ks
from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig

SD_SCHEDULE = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


@pytest.fixture(scope="module")
def unet():
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4).eval()


def _eps_denoiser(unet, schedule, rounded=True):
    log_sigmas = __import__("numpy").log(ks.schedule_sigmas(schedule))

    def denoise(x, sigma):
        t = ks.sigma_to_t(sigma, log_sigmas)
        t = round(t) if rounded else t
        eps = unet(x / math.sqrt(1 + sigma ** 2), torch.tensor([t])).sample
        return x - sigma * eps
    return denoise


@torch.no_grad()
def test_dpmpp_2m_karras_matches_diffusers(unet):
    from diffusers import DPMSolverMultistepScheduler

    sched = DPMSolverMultistepScheduler(**SD_SCHEDULE, use_karras_sigmas=True, algorithm_type="dpmsolver++",
                                        solver_order=2)
    n = 6
    sched.set_timesteps(n)
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    z = noise.clone()
    for t in sched.timesteps:
        z = sched.step(unet(z, t).sample, t, z).prev_sample
    schedule = NoiseSchedule(ScheduleConfig(**SD_SCHEDULE))
    sigmas = ks.karras_sigmas(schedule, n)
    assert torch.allclose(torch.tensor(sigmas), sched.sigmas, atol=1e-6)
    x = noise * math.sqrt(1 + sigmas[0] ** 2)  # the same start: the variance-preserving x_T = noise
    steps = list(ks.sample_dpmpp_2m(_eps_denoiser(unet, schedule), x, sigmas))
    assert [s.step for s in steps] == list(range(1, n + 1))
    assert torch.allclose(steps[-1].x, z, atol=1e-5), (steps[-1].x - z).abs().max()


@torch.no_grad()
def test_euler_ancestral_matches_diffusers(unet):
    from diffusers import EulerAncestralDiscreteScheduler

    sched = EulerAncestralDiscreteScheduler(**SD_SCHEDULE, timestep_spacing="leading", steps_offset=1)
    n = 5
    sched.set_timesteps(n)
    gen = torch.Generator().manual_seed(3)
    noise = torch.randn(1, 4, 8, 8, generator=gen)
    z = noise * sched.init_noise_sigma
    for t in sched.timesteps:
        out = unet(sched.scale_model_input(z, t), t).sample
        z = sched.step(out, t, z, generator=gen).prev_sample
    schedule = NoiseSchedule(ScheduleConfig(**SD_SCHEDULE))
    timesteps = [int(t) for t in sched.timesteps]
    sigmas = ks.timestep_sigmas(schedule, timesteps)
    assert torch.allclose(torch.tensor(sigmas), sched.sigmas, atol=1e-5)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 8, 8, generator=gen) * math.sqrt(1 + sigmas[0] ** 2)
    out = list(ks.sample_euler_ancestral(_eps_denoiser(unet, schedule), x, sigmas, generator=gen,
                                         timesteps=timesteps))
    assert torch.allclose(out[-1].x, z, atol=1e-5), (out[-1].x - z).abs().max()


@torch.no_grad()
def test_lcm_matches_diffusers(unet):
    from diffusers import LCMScheduler

    sched = LCMScheduler(**SD_SCHEDULE, clip_sample=False, set_alpha_to_one=True, timestep_spacing="leading")
    n = 4
    sched.set_timesteps(n)
    timesteps = ks.lcm_timesteps(1000, n)
    assert timesteps == [int(t) for t in sched.timesteps]
    gen = torch.Generator().manual_seed(5)
    noise = torch.randn(1, 4, 8, 8, generator=gen)
    z = noise.clone()
    for t in sched.timesteps:
        z = sched.step(unet(z, t).sample, t, z, generator=gen).prev_sample
    schedule = NoiseSchedule(ScheduleConfig(**SD_SCHEDULE))
    sigmas = ks.timestep_sigmas(schedule, timesteps)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 8, 8, generator=gen) * math.sqrt(1 + sigmas[0] ** 2)
    out = list(ks.sample_lcm(_eps_denoiser(unet, schedule), x, sigmas, timesteps, generator=gen))
    assert torch.allclose(out[-1].x, z, atol=1e-5), (out[-1].x - z).abs().max()


def test_sigma_to_t_inverts_the_schedule():
    import numpy as np

    schedule = NoiseSchedule(ScheduleConfig(**SD_SCHEDULE))
    s = ks.schedule_sigmas(schedule)
    for t in (0, 1, 250, 999):
        assert ks.sigma_to_t(s[t], np.log(s)) == pytest.approx(t, abs=1e-6)


@torch.no_grad()
def test_blending_keeps_the_known_region_and_cancel_stops():
    from engine.api import CancelToken, Cancelled

    schedule = NoiseSchedule(ScheduleConfig(**SD_SCHEDULE))
    sigmas = ks.karras_sigmas(schedule, 4)
    known = torch.randn(1, 4, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 2:5] = 1
    noise = torch.randn(1, 4, 8, 8)
    denoise = lambda x, s: x * 0.5  # noqa: E731
    for sampler in (ks.sample_dpmpp_2m, ks.sample_euler_ancestral):
        x = noise * sigmas[0]
        out = list(sampler(denoise, x, sigmas, known=known, mask=mask, noise=noise))
        keep = (1 - mask).bool().expand_as(known)
        assert torch.allclose(out[-1].x[keep], known[keep])
        assert not torch.allclose(out[-1].x[~keep], known[~keep])
    token = CancelToken()
    gen = ks.sample_dpmpp_2m(denoise, noise, sigmas, cancel=token)
    next(gen)
    token.cancel()
    with pytest.raises(Cancelled):
        next(gen)

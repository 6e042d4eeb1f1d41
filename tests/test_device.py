"""Where the learned models compute (engine.device): the INPAINT_STUDIO_DEVICE setting, seeded noise, and device
placement.

No GPU is needed for the placement checks: they run the samplers and losses on torch's "meta" device, which
refuses, as CUDA does, arithmetic between its tensors and CPU tensors that are not scalars, so a noise draw, an
index or a constant made on the CPU where it should be on the model's device fails them. Meta is laxer than CUDA
for some ops (an embedding lookup with CPU token ids passes), and autoguidance reads tensor values, which meta
has not: the end-to-end fills on CUDA below cover those where a GPU is present (``pytest tests/test_device.py``
on a GPU machine) and are skipped elsewhere.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.api import InpaintError, Request, drive
from engine.device import ENV, compute_device, describe, seeded_noise
from tests.test_sketch_core import tiny_lgp, tiny_unet2d

META = torch.device("meta")
has_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def test_the_setting_picks_the_device_and_rejects_what_is_not_there(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert compute_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    monkeypatch.setenv(ENV, " CPU ")
    assert compute_device() == torch.device("cpu")
    assert describe(torch.device("cpu")).startswith("CPU (")
    for bad, said in (("tpu", "expected auto, cpu, cuda"), ("gpu please", "expected auto, cpu, cuda"),
                      ("mps", "expected auto, cpu, cuda")):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(InpaintError, match=said):
            compute_device()
    monkeypatch.setenv(ENV, "cuda:7")
    with pytest.raises(InpaintError, match="CUDA GPU"):
        compute_device()
    assert compute_device("cpu:1") == torch.device("cpu")  # the same CPU: one cache entry, not two


def test_the_editors_choice_wins_over_the_environment_until_withdrawn(monkeypatch):
    from engine import device

    monkeypatch.setenv(ENV, "cuda:7")
    try:
        device.choose("cpu")
        assert device.chosen() == "cpu" and compute_device() == torch.device("cpu")
    finally:
        device.choose(None)
    assert device.chosen() == "cuda:7"


def test_a_job_with_an_impossible_device_fails_with_the_setting_named(monkeypatch, rng):
    from engine import registry
    from engine.runner import run_to_end

    monkeypatch.setenv(ENV, "cuda:7")
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:20, 8:20] = True
    with pytest.raises(InpaintError, match=ENV):
        run_to_end(registry.load("repaint-mnist"), Request(img, mask, params={"fast": True}))


def test_a_gpu_out_of_memory_is_a_clear_error_not_a_crash(rng):
    from engine import registry
    from engine.api import Preview
    from engine.runner import run_to_end

    from engine.api import Inpainter

    class Greedy(Inpainter):
        def run(self, request, cancel):
            yield Preview(step=1, total=2)
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    with pytest.raises(InpaintError, match="GPU ran out of memory.*on the CPU"):
        run_to_end(Greedy(registry.get_info("telea")), Request(img, mask))


def test_seeded_noise_is_the_generators_draw_on_the_target_device_and_dtype():
    like = torch.zeros((), dtype=torch.float64, device=META)
    out = seeded_noise((2, 3), torch.Generator().manual_seed(5), like)
    assert out.device == META and out.dtype == torch.float64
    here = seeded_noise((2, 3), torch.Generator().manual_seed(5), torch.zeros(()))
    assert torch.equal(here, torch.randn((2, 3), generator=torch.Generator().manual_seed(5)))


def test_meta_device_refuses_cpu_tensors_as_cuda_does():
    """What the placement tests below rely on."""
    with pytest.raises(RuntimeError):
        torch.zeros(3, device=META) + torch.zeros(3)


def _frugal_on_meta():
    from engine.diffusion.schedule import NoiseSchedule
    from engine.frugal.model import FrugalUNet, UNetConfig
    from engine.frugal.train import frugal_schedule

    net = FrugalUNet(UNetConfig(base=8, emb_dim=8, groups=4)).to(META)
    x0 = torch.zeros(2, 3, 16, 16, device=META)
    mask = torch.zeros(2, 1, 16, 16, device=META)
    return net, NoiseSchedule(frugal_schedule()).to(META), x0, mask


@pytest.mark.parametrize("edm", [False, True])
def test_frugal_losses_and_sampler_stay_on_the_models_device(edm):
    from engine.diffusion.samplers import sample
    from engine.frugal import train as tr
    from engine.frugal.pipeline import denoiser, level_grid
    from engine.tensors import to_tensor

    net, sched, x0, mask = _frugal_on_meta()
    net.cfg.precond = edm
    gen = torch.Generator().manual_seed(0)
    for weighting in ("uniform", "edm", "min-snr"):
        assert tr.diffusion_loss(net, sched, x0, mask, gen, weighting).device == META
    assert tr.regression_loss(net, x0, mask).device == META
    previews = []
    y, m = x0[:1], mask[:1]
    out = drive(sample(denoiser(net, sched, y, m), torch.zeros_like(y), level_grid(sched, 4), sched, known=y, mask=m,
                       clip=False, generator=gen), previews.append)
    assert out.device == META and len(previews) == 4 and previews[-1].denoised.device == META
    batch = to_tensor(np.zeros((2, 8, 8, 3), np.uint8), META)
    assert batch.device == META and batch.dtype == torch.float32


def test_pixel_ddpm_sketch_guidance_stays_on_the_models_device():
    from engine.diffusion.repaint import RePaintConfig, repaint
    from engine.diffusion.schedule import NoiseSchedule
    from engine.sketch.guidance import SketchGuidance

    unet = tiny_unet2d(16)
    lgp = tiny_lgp(unet, 16).to(META)
    unet = unet.to(META)
    schedule = NoiseSchedule().to(META)
    known = torch.zeros(1, 1, 16, 16, device=META)
    hole = torch.ones(1, 1, 16, 16, device=META)
    with SketchGuidance(unet, lgp, torch.zeros(1, 1, 16, 16, device=META), schedule.alphas_cumprod, 1.0, 0,
                        hole) as guide:
        x = repaint(unet, schedule, known, hole, RePaintConfig(t_T=3, jump_length=1, jump_n_sample=2),
                    generator=torch.Generator().manual_seed(0), guidance=guide)
    assert x.device == META


def test_repaint_sampler_stays_on_the_models_device():
    from engine.diffusion.repaint import RePaintConfig, repaint_steps
    from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig

    unet = tiny_unet2d(16).to(META)
    schedule = NoiseSchedule(ScheduleConfig(1000)).to(META)
    image = torch.zeros(1, 1, 16, 16, device=META)
    mask = torch.ones(1, 1, 16, 16, device=META)
    for mcg in (0.0, 1.0):  # resampling jumps, and the manifold-constraint gradient step
        cfg = RePaintConfig(t_T=6, jump_length=2, jump_n_sample=2, mcg=mcg)
        steps = list(repaint_steps(unet, schedule, image, mask, cfg, generator=torch.Generator().manual_seed(0)))
        assert steps and steps[-1].denoised.device == META


def test_stable_diffusion_sketch_generation_moves_its_inputs_to_the_models_device(tmp_path):
    from engine.sd.generate import FillSettings, fill
    from engine.sd.loading import detect, load_folder
    from engine.sd.model import SDModel
    from engine.sd.tiny import make_tiny_sd_folder

    folder = make_tiny_sd_folder(tmp_path / "sd")
    comp = SDModel(folder, detect(folder), load_folder(folder, detect(folder)))  # not the shared cache: moved to meta
    r, n = comp.resolution, comp.latent_size
    ctx = torch.zeros(1, 77, comp.text_encoder.config.hidden_size)
    example = dict(sample=torch.zeros(1, 4, n, n), timestep=torch.tensor([10]), encoder_hidden_states=ctx)
    lgp = tiny_lgp(comp.unet, n, out_channels=4, example=example).to(META)
    assert comp.to(META).device == META
    image = torch.zeros(1, 3, r, r)  # CPU inputs, as the pipeline makes them
    hole = torch.ones(1, 1, r, r)
    sketch = torch.zeros(1, 1, r, r)
    settings = FillSettings(prompt="a red square", steps=2, cfg_scale=2.0, scheduler="ddim", seed=0, beta=1.0,
                            share=1.0)
    out = drive(fill(comp, image, hole, settings, sketch=sketch, lgp=lgp))
    assert out.device == META


def test_face_training_networks_and_losses_stay_on_the_models_device():
    """The face model fills on the CPU, but ``python -m engine.face.train --device cuda`` learns on a GPU."""
    from engine.face.classifier import AttributeClassifier
    from engine.face.model import Discriminator, FaceConfig, FaceCVAE, kl_divergence, reconstruction_bce

    cfg = FaceConfig(ch=8, z_dim=16, emb_dim=4, disc_ch=8)
    g, d, c = FaceCVAE(cfg).to(META), Discriminator(cfg).to(META), AttributeClassifier().to(META)
    x, m = torch.zeros(2, 3, 64, 64, device=META), torch.zeros(2, 1, 64, 64, device=META)
    a = torch.zeros(2, 2, device=META)
    logits, mu, logvar = g(x, m, a)
    assert reconstruction_bce(logits, x, m, torch.ones(2, 1, 1, 1, device=META)).device == META
    assert kl_divergence(mu, logvar).device == d(x, m, a).device == c(x).device == META


# --- on a GPU: every learned family fills on CUDA and keeps the pixels outside the mask ------------------------

def _fill(model: str, params: dict, img: np.ndarray, device: str, monkeypatch, sketch: bool = False, **extra):
    """(inpainter, result) of one job on ``device``; the pixels outside the mask kept, the hole changed."""
    from engine import registry
    from engine.runner import run_to_end

    monkeypatch.setenv(ENV, device)
    mask = np.zeros(img.shape[:2], bool)
    mask[12:36, 12:36] = True
    strokes = None
    if sketch:
        strokes = np.zeros(img.shape[:2], bool)
        strokes[24, 14:34] = True
    inp = registry.load(model)
    res = run_to_end(inp, Request(img, mask, sketch=strokes, seed=1, params=params, **extra))
    assert np.array_equal(res.image[~mask], img[~mask])
    assert not np.array_equal(res.image[mask], img[mask])
    return inp, res


@has_cuda
def test_repaint_and_sketch_fill_on_cuda(rng, monkeypatch):
    img = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    _fill("repaint-mnist", {"fast": True}, img, "cuda", monkeypatch)
    _fill("sketch-mnist", {"steps": 5}, img, "cuda", monkeypatch, sketch=True)


@has_cuda
def test_frugal_learns_and_fills_on_cuda_and_its_cache_serves_the_cpu(rng, monkeypatch, tmp_path):
    import engine.datasets

    monkeypatch.setattr(engine.datasets, "CACHE", tmp_path / "cache")
    img = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    params = {"iterations": 20, "crop": 16, "batch": 4, "steps": 5, "minutes": 5.0}
    _, res = _fill("frugal", params, img, "cuda", monkeypatch)
    assert res.stats["device"] == "cuda" and res.stats["cached"] is False
    _, res = _fill("frugal", params, img, "cpu", monkeypatch)  # weights learned on the GPU, loaded on the CPU
    assert res.stats["cached"] is True


@has_cuda
def test_stable_diffusion_sketch_fills_on_cuda(tmp_path, rng, monkeypatch):
    from PIL import Image

    from engine.sd.tiny import make_tiny_sd_folder
    from engine.sketch.train import TrainConfig, train

    folder = make_tiny_sd_folder(tmp_path / "sd")
    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(2):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(photos / f"{k}.png")
    train(TrainConfig(sd=str(folder), images=str(photos), steps=2, batch=2, hidden=(16,), log_every=1))
    img = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
    _fill("sd-sketch", {"checkpoint": str(folder), "steps": 2, "beta": 1.0, "share": 1.0, "cfg_scale": 2.0}, img,
          "cuda", monkeypatch, sketch=True, prompt="a red square")

"""DDPM family: RePaint sampler vs diffusers, masks, determinism, cancellation, checkpoints, training, registry.

Everything here uses tiny randomly initialised UNets (a few seconds in all); the test with the shipped weights is
marked slow.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.api import CancelToken, Cancelled, InpaintError, Request, drive
from engine.ddpm.model import CountingUNet, build_unet, load_ddpm, save_ddpm
from engine.ddpm.pipeline import DEFAULT, FAST
from engine.diffusion.repaint import RePaintConfig, jump_schedule, repaint, repaint_steps
from engine.diffusion.samplers import sample
from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny UNets run fastest on one thread (and a shared CPU thrashes with more); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_unet(seed: int = 0, channels: int = 1, size: int = 8):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels, block_out_channels=(8, 8),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4).eval()


def batch(n: int = 2, size: int = 8):
    g = torch.Generator().manual_seed(3)
    image = torch.rand(n, 1, size, size, generator=g) * 2 - 1
    mask = torch.zeros(n, 1, size, size)
    mask[..., :, : size // 2] = 1  # left half: fill
    return image, mask


@pytest.mark.filterwarnings("ignore::FutureWarning")  # diffusers' RePaint preprocess deprecation
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("beta_schedule", ["linear", "squaredcos_cap_v2"])
def test_sampler_matches_diffusers_repaint(eta, beta_schedule):
    from diffusers import RePaintPipeline, RePaintScheduler

    unet = tiny_unet()
    image, mask = batch()
    cfg = RePaintConfig(t_T=20, jump_length=3, jump_n_sample=3, eta=eta)
    scheduler = RePaintScheduler(num_train_timesteps=100, beta_schedule=beta_schedule)
    pipe = RePaintPipeline(unet=unet, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    # diffusers' RePaint mask: 1 = keep, 0 = fill; ours: 1 = fill. Converted here, once.
    ref = pipe(image=image, mask_image=1 - mask, num_inference_steps=cfg.t_T, eta=eta,
               jump_length=cfg.jump_length, jump_n_sample=cfg.jump_n_sample,
               generator=torch.Generator().manual_seed(7), output_type="np").images
    schedule = NoiseSchedule(ScheduleConfig(100, beta_schedule=beta_schedule))
    ours = repaint(unet, schedule, image, mask, cfg, generator=torch.Generator().manual_seed(7),
                   beta_index="diffusers")
    ours = (ours / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_schedule_and_call_counts():
    assert DEFAULT.unet_calls == 2410  # the paper's default: t_T = 250, j = 10, r = 10
    for cfg in (RePaintConfig(t_T=10, jump_length=3, jump_n_sample=2), FAST):
        level = cfg.t_T - 1  # starts at level t_T - 1 (pure noise), walks the grid one level at a time, ends clean
        for kind, k in jump_schedule(cfg):
            if kind == "denoise":  # level k -> k - 1
                assert k == level
                level = k - 1
            else:  # ("renoise", k): level k - 1 -> k
                assert k == level + 1
                level = k
        assert level == -1
    assert FAST.unet_calls * 10 <= DEFAULT.unet_calls
    unet = CountingUNet(tiny_unet())
    image, mask = batch(1)
    repaint(unet, NoiseSchedule(), image, mask, FAST, generator=torch.Generator().manual_seed(0))
    assert unet.calls == FAST.unet_calls


def test_resample_levels_put_every_jump_at_the_named_levels():
    cfg = RePaintConfig(t_T=12, jump_length=3, jump_n_sample=4, resample_levels=(2, 5))
    plan = jump_schedule(cfg)
    jumps_from = [k for (kind, k), (prev, _) in zip(plan[1:], plan) if kind == "renoise" and prev == "denoise"]
    assert sorted(jumps_from) == [2] * 3 + [5] * 3  # r - 1 jumps back from each named level
    assert cfg.unet_calls == 12 + 2 * 3 * 3
    with pytest.raises(ValueError, match="resample levels"):
        jump_schedule(RePaintConfig(t_T=12, jump_length=3, resample_levels=(9,)))  # 9 + 3 > t_T - 1


@pytest.mark.parametrize("t_T", [1000, 250, 50, 7])
def test_renoise_matches_the_level_gap(t_T):
    """A jump from level k-1 to k is one draw from q(x_t | x_below) = N(sqrt(r) x, (1 - r) I), r = abar_t /
    abar_below: the chain of eq. 2 over every beta in between (their product is r), with the right moments."""
    schedule = NoiseSchedule()
    stride = 1000 // t_T
    steps = [k * stride for k in range(t_T)]
    for k in sorted({0, 1, t_T // 2, t_T - 1}):
        below = steps[k - 1] if k else -1
        r = (schedule.alpha_bar(steps[k]) / schedule.alpha_bar(below)).double()
        chained = torch.prod(1 - schedule.betas[below + 1:steps[k] + 1].double())
        assert abs(chained.item() - r.item()) < 1e-5
        x = torch.full((1, 1, 200, 200), 0.5)
        out = drive(sample(None, x, steps, schedule, plan=[("renoise", k)], generator=torch.Generator().manual_seed(k)))
        assert abs(out.mean().item() - 0.5 * r.sqrt().item()) < 0.01
        assert abs(out.std().item() - (1 - r).sqrt().item()) < 0.01


@pytest.mark.parametrize("mcg", [0.0, 1.0])
def test_known_pixels_unchanged_and_deterministic(mcg):
    unet = tiny_unet()
    image, mask = batch()
    schedule = NoiseSchedule(ScheduleConfig(100))
    cfg = RePaintConfig(t_T=10, jump_length=2, jump_n_sample=2, mcg=mcg)
    a = repaint(unet, schedule, image, mask, cfg, generator=torch.Generator().manual_seed(1))
    b = repaint(unet, schedule, image, mask, cfg, generator=torch.Generator().manual_seed(1))
    c = repaint(unet, schedule, image, mask, cfg, generator=torch.Generator().manual_seed(2))
    keep = mask == 0
    assert torch.equal(a[keep], image[keep])  # exact: at the last step the known part is x_0 itself
    assert torch.equal(a, b)
    assert not torch.allclose(a[~keep], c[~keep])


def test_mcg_moves_the_unknown_part_down_the_residual_gradient():
    """One step with mcg = zeta differs from the plain step (same noise) by exactly -zeta * grad_x ||(1-m)(y - x0_hat)||
    in the hole, and not at all outside it. The model mixes neighbouring pixels, so the gradient reaches the hole."""
    kernel = torch.full((1, 1, 3, 3), 0.1)
    model_fn = lambda x, t: torch.nn.functional.conv2d(x, kernel, padding=1)  # noqa: E731
    image, mask = batch(2)
    schedule = NoiseSchedule(ScheduleConfig(100))

    def denoise(x, t):
        eps = model_fn(x, t)
        return eps, schedule.predict_x0(x, t, eps)

    x_T = torch.randn(image.shape, generator=torch.Generator().manual_seed(5))
    first = {}
    for zeta in (0.0, 0.7):
        steps = repaint_steps(None, schedule, image, mask, RePaintConfig(t_T=4, jump_length=1, jump_n_sample=1,
                                                                          mcg=zeta),
                              generator=torch.Generator().manual_seed(9), x_T=x_T, denoise=denoise)
        first[zeta] = next(steps)
    t = first[0.0].t
    x = x_T.clone().requires_grad_(True)
    residual = ((1 - mask) * (image - schedule.predict_x0(x, t, model_fn(x, t)))).flatten(1).norm(dim=1)
    grad = torch.autograd.grad(residual.sum(), x)[0]
    assert (grad * mask).abs().max() > 1e-3  # the test is not vacuous
    torch.testing.assert_close(first[0.7].x - first[0.0].x, -0.7 * mask * grad)
    assert first[0.7].step == first[0.0].step == 1 and RePaintConfig(mcg=0.7).unet_backward == DEFAULT.unet_calls


def test_guidance_and_denoiser_hooks():
    """The guidance hook gets the step's input with its graph (only where ``active``) and pushes only the hole."""
    from engine.diffusion.samplers import Guidance, eps_denoiser

    unet = tiny_unet()
    image, mask = batch(1)
    schedule = NoiseSchedule(ScheduleConfig(100))
    seen, guided = [], []
    plain = eps_denoiser(unet, schedule)

    def denoise(x, t):
        seen.append(t)
        return plain(x, t)

    class Push(Guidance):
        def active(self, t):
            return t >= 40

        def __call__(self, x_in, t, x_t, x_prev):
            guided.append((t, x_in.requires_grad))
            return x_prev + 0.01

    cfg = RePaintConfig(t_T=5, jump_length=2, jump_n_sample=1)
    gen = torch.Generator().manual_seed(0)
    out = repaint(None, schedule, image, mask, cfg, denoise=denoise, guidance=Push(), generator=gen)
    base = repaint(unet, schedule, image, mask, cfg, generator=torch.Generator().manual_seed(0))
    assert seen == [80, 60, 40, 20, 0] and guided == [(80, True), (60, True), (40, True)]
    keep = mask == 0
    assert torch.equal(out[keep], base[keep]) and not torch.equal(out, base)


def test_cancel_stops_promptly():
    unet = CountingUNet(tiny_unet())
    image, mask = batch(1)
    cancel = CancelToken()
    steps = repaint_steps(unet, NoiseSchedule(ScheduleConfig(100)), image, mask, RePaintConfig(t_T=50),
                          generator=torch.Generator().manual_seed(0), cancel=cancel)
    for step in steps:
        if step.step == 3:
            cancel.cancel()
            with pytest.raises(Cancelled):
                next(steps)
            break
    assert unet.calls == 3


@pytest.mark.parametrize("layout", ["flat", "pipeline"])
def test_save_pretrained_roundtrip(tmp_path, layout):
    from diffusers import DDPMPipeline, DDPMScheduler

    unet = tiny_unet(seed=5)
    if layout == "flat":
        save_ddpm(tmp_path, unet, NoiseSchedule(ScheduleConfig(100, beta_schedule="squaredcos_cap_v2")))
    else:  # what diffusers' own DDPM training example writes
        DDPMPipeline(unet=unet, scheduler=DDPMScheduler(100, beta_schedule="squaredcos_cap_v2")).save_pretrained(
            tmp_path)
    assert not list(tmp_path.rglob("*.bin")) and list(tmp_path.rglob("*.safetensors"))
    ddpm = load_ddpm(tmp_path)
    assert ddpm.schedule.num_train_timesteps == 100 and ddpm.schedule.cfg.beta_schedule == "squaredcos_cap_v2"
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(unet(x, 3).sample, ddpm.unet(x, 3).sample, atol=1e-5)


def test_bad_checkpoint_folders_are_one_clear_line(tmp_path):
    """A mistyped folder is "not found" (never a hub download); weights that fill none of the UNet are refused
    instead of running on random weights; a pickle-only folder is refused (safetensors only)."""
    from safetensors.torch import save_file

    with pytest.raises(InpaintError, match="not found"):
        load_ddpm(tmp_path / "no-such-folder")
    save_ddpm(tmp_path / "other", tiny_unet(), NoiseSchedule(ScheduleConfig(100)))
    save_file({"something.else": torch.zeros(3)}, str(tmp_path / "other" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(InpaintError, match="missing"):
        load_ddpm(tmp_path / "other")
    save_ddpm(tmp_path / "pickle", tiny_unet(), NoiseSchedule(ScheduleConfig(100)))
    weights = tmp_path / "pickle" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(InpaintError, match="only safetensors"):
        load_ddpm(tmp_path / "pickle")


def test_compact_unet_roundtrip(tmp_path):
    net = build_unet("compact", block_out_channels=[8, 16], layers_per_block=1, norm_num_groups=4).eval()
    save_ddpm(tmp_path, net, NoiseSchedule(ScheduleConfig(50)))
    loaded = load_ddpm(tmp_path).unet
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(net(x, torch.tensor([4, 9])).sample, loaded(x, torch.tensor([4, 9])).sample, atol=1e-5)


def test_ddpm_folder_inpainter_on_rgb_image(tmp_path):
    from engine import registry
    from engine.runner import run_job

    save_ddpm(tmp_path, tiny_unet(channels=3, size=16), NoiseSchedule(ScheduleConfig(100)))
    inp = registry.load("repaint-ddpm-folder")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    mask = np.zeros((40, 50), bool)
    mask[10:20, 15:30] = True
    req = Request(image=image, mask=mask, seed=3, params={"checkpoint": str(tmp_path), "steps": 10,
                                                         "jump_length": 2, "resamples": 2})
    gen = run_job(inp, req)
    previews = []
    result = drive(gen, previews.append)
    assert len(previews) == RePaintConfig(t_T=10, jump_length=2, jump_n_sample=2).unet_calls == result.unet_calls
    assert previews[-1].box is not None and previews[-1].image.shape[2] == 3
    assert np.array_equal(result.image[~mask], image[~mask])
    assert not np.array_equal(result.image[mask], image[mask])


def test_training_script_runs_and_resumes(tmp_path):
    from engine.ddpm.train import main

    args = ["--out", str(tmp_path), "--subset", "32", "--batch-size", "4", "--channels", "8", "16",
            "--threads", "1", "--val-every", "1", "--sample-every", "2", "--ckpt-every", "1", "--sample-steps", "2"]
    main(args + ["--max-steps", "2"])
    assert json.loads((tmp_path / "ckpt.json").read_text())["step"] == 2
    main(args + ["--max-steps", "3"])
    assert json.loads((tmp_path / "ckpt.json").read_text())["step"] == 3
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # resumed at 2, not restarted
    assert (tmp_path / "samples" / "step_000002.png").exists()
    unet = load_ddpm(tmp_path / "export").unet
    assert unet.config.block_out_channels == [8, 16] or tuple(unet.config.block_out_channels) == (8, 16)


def test_registry_entry_and_lazy_import():
    from engine.registry import get_info

    info = get_info("repaint-mnist")
    assert info.resolution == 28 and info.grey and "28x28" in info.domain
    assert {p.name for p in info.params} >= {"steps", "jump_length", "resamples", "fast"}
    code = "import sys, engine.ddpm; assert 'torch' not in sys.modules, 'engine.ddpm imports torch'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.slow
def test_shipped_weights_fill_a_digit():
    from engine.datasets import load_mnist
    from engine.ddpm import MNIST_DIR
    from engine.ddpm.classifier import load_classifier, predict
    from engine.registry import load
    from engine.runner import run_to_end

    if not (MNIST_DIR / "config.json").exists():
        pytest.skip("shipped MNIST DDPM not present")
    images, labels = load_mnist("test")
    inp = load("repaint-mnist")
    clf = load_classifier()
    hits = 0
    for i in range(5):
        digit = images[i]
        mask = np.zeros((28, 28), bool)
        mask[14:] = True  # bottom half
        rgb = np.repeat(digit[..., None], 3, axis=2)
        result = run_to_end(inp, Request(image=rgb, mask=mask, seed=i, params={"fast": True}))
        assert np.array_equal(result.image[~mask], rgb[~mask])
        hits += int(predict(clf, result.image[None, ..., 0])[0] == labels[i])
    assert hits >= 4


def test_benchmark_neighbour_fills_copy_the_hole_from_the_nearest_training_digits():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.repaint_mnist import make_masks, neighbour_fills

    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    masks = make_masks()
    images = np.stack([train[3], train[7]])
    holes = np.stack([masks["left_half"], masks["centre_14"]])
    fills = neighbour_fills(train, images, holes, k=1)
    assert np.array_equal(fills, images)  # each image's own training copy is its nearest neighbour
    other = images.copy()
    other[0][holes[0]] = 0  # the hole's content is not used to find neighbours
    fills = neighbour_fills(train, other, holes, k=3).reshape(2, 3, 28, 28)
    assert np.array_equal(fills[0, :, ~holes[0]], np.repeat(other[0][~holes[0]][:, None], 3, 1))
    assert any(np.array_equal(f, train[3]) for f in fills[0])


def test_training_runs_data_parallel_under_torchrun_and_resumes(tmp_path):
    """Two CPU processes (gloo): one log, one checkpoint (rank 0 writes), and a resumed run continues the step."""
    args = ["--out", str(tmp_path), "--subset", "32", "--batch-size", "4", "--channels", "8", "16", "--threads", "1",
            "--log-every", "1", "--val-every", "100", "--sample-every", "100", "--ckpt-every", "100",
            "--sample-steps", "2", "--device", "cpu"]
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "engine.ddpm.train"]
    for steps in (2, 3):
        out = subprocess.run(run + args + ["--max-steps", str(steps)], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "ckpt.json").read_text())["step"] == 3
    steps = [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3], "one writer (rank 0), resumed at 2"
    assert json.loads((tmp_path / "export" / "training.json").read_text())["ranks"] == 2
    assert load_ddpm(tmp_path / "export").unet.config.block_out_channels[0] == 8


def test_traced_unet_gives_the_eager_unets_noise_and_gradient(tmp_path):
    """DDPM.traced (RePaint's fast path) is the same function as the UNet, forward and backward (MCG needs both)."""
    save_ddpm(tmp_path, tiny_unet(channels=3, size=16), NoiseSchedule(ScheduleConfig(100)))
    ddpm = load_ddpm(tmp_path)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 40, dtype=torch.long)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    eager, traced = ddpm.unet(xa, t).sample, ddpm.traced(xb, t).sample
    torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-5)
    ga, = torch.autograd.grad(eager.square().sum(), xa)
    gb, = torch.autograd.grad(traced.square().sum(), xb)
    torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-5)
    assert len(ddpm._traces) == 1
    ddpm.traced(x[:1], t[:1])  # another batch size: its own trace, the first is kept
    assert len(ddpm._traces) == 2


def test_a_batch_gives_every_crop_the_fill_it_gets_alone(tmp_path):
    """run_batch (a CLI folder) stacks same-sized crops through one sampler with a generator per crop: each result
    is the single job's, pixel for pixel, with its own seed; crops with other parameters go in their own batch."""
    from engine import registry
    from engine.runner import run_batch, run_to_end

    save_ddpm(tmp_path, tiny_unet(channels=3, size=16), NoiseSchedule(ScheduleConfig(100)))
    inp = registry.load("repaint-ddpm-folder")
    rng = np.random.default_rng(0)
    params = {"checkpoint": str(tmp_path), "steps": 10, "jump_length": 2, "resamples": 2, "mcg": 1.0}
    requests = []
    for i, (h, w) in enumerate([(40, 50), (30, 20), (16, 16), (40, 50)]):  # each crop is the UNet's 16x16
        mask = np.zeros((h, w), bool)
        mask[4 + i:12 + i, 5:13] = True
        requests.append(Request(image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mask=mask, seed=7 + i,
                                params=dict(params, mcg=0.0) if i == 2 else params))
    previews = []
    together = drive(run_batch(inp, requests), previews.append)
    assert previews and all(p.image is None for p in previews)  # progress only: no one hole to show
    assert [r.timings["batch"] for r in together] == [3, 3, 1, 3]  # the one without MCG had its own batch
    for req, res in zip(requests, together):
        alone = run_to_end(inp, req)
        assert np.array_equal(res.image, alone.image) and res.seed == req.seed
        assert np.array_equal(res.image[~req.mask], req.image[~req.mask])


UNET2D_CONFIGS = {
    "shipped": json.loads((ROOT / "resources/models/ddpm-mnist/config.json").read_text()),
    "google-ddpm-like": dict(sample_size=16, in_channels=3, out_channels=3, block_out_channels=[8, 16, 16],
                             layers_per_block=2, norm_num_groups=4, attention_head_dim=None, flip_sin_to_cos=False,
                             freq_shift=1, down_block_types=["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
                             up_block_types=["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"]),
    "scale-shift": dict(sample_size=8, in_channels=1, out_channels=1, block_out_channels=[8, 16], layers_per_block=1,
                        norm_num_groups=4, attention_head_dim=4, resnet_time_scale_shift="scale_shift",
                        mid_block_scale_factor=1.414, downsample_padding=0,
                        down_block_types=["DownBlock2D", "AttnDownBlock2D"], up_block_types=["AttnUpBlock2D", "UpBlock2D"]),
}


@pytest.mark.parametrize("name", list(UNET2D_CONFIGS))
def test_own_unet2d_is_diffusers_unet2dmodel(name):
    """engine.ddpm.unet2d builds diffusers' UNet2DModel from its config: the same parameter names (a strict load of
    diffusers' state dict) and the same noise prediction, also with attention weights under their pre-0.14 names."""
    from diffusers import UNet2DModel

    from engine.ddpm.unet2d import UNet2D, UNet2DConfig, load_state, unsupported

    cfg = UNET2D_CONFIGS[name]
    assert unsupported(cfg) is None
    torch.manual_seed(0)
    ref = UNet2DModel(**{k: v for k, v in cfg.items() if not k.startswith("_")}).eval()
    for p in ref.parameters():  # diffusers zero-initialises some layers: make every weight count
        p.data.normal_(0, 0.2)
    ours = UNet2D(UNet2DConfig.from_dict(cfg)).eval()
    load_state(ours, ref.state_dict())
    size = cfg["sample_size"]
    x, t = torch.randn(2, cfg["in_channels"], size, size), torch.tensor([10, 700])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t).sample, ref(x, t).sample, rtol=1e-4, atol=1e-5)
    old = {k.replace(".to_q.", ".query.").replace(".to_k.", ".key.").replace(".to_v.", ".value.")
           .replace(".to_out.0.", ".proj_attn."): v for k, v in ref.state_dict().items()}
    again = UNet2D(UNet2DConfig.from_dict(cfg)).eval()
    load_state(again, old)
    with torch.no_grad():
        torch.testing.assert_close(again(x, t).sample, ours(x, t).sample)


def test_a_unet2dmodel_config_beyond_the_own_unet_loads_through_diffusers(tmp_path):
    from diffusers import UNet2DModel

    from engine.ddpm.unet2d import unsupported

    net = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), layers_per_block=1,
                      norm_num_groups=4, down_block_types=("DownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "UpBlock2D"), num_class_embeds=3)
    assert "class conditioning" in unsupported(dict(net.config))
    save_ddpm(tmp_path, net, NoiseSchedule(ScheduleConfig(100)))
    assert type(load_ddpm(tmp_path).unet).__name__ == "UNet2DModel"


def test_repaint_mnist_fills_without_importing_diffusers():
    """The shipped DDPM is the project's own UNet2D: a RePaint fill does not import diffusers (whose import pulls
    transformers and torch._dynamo: seconds of start-up for nothing)."""
    code = ("import sys, numpy as np\n"
            "from engine import registry\n"
            "from engine.api import Request\n"
            "from engine.runner import run_to_end\n"
            "m = np.zeros((28, 28), bool); m[14:] = True\n"
            "out = run_to_end(registry.load('repaint-mnist'), Request(np.zeros((28, 28, 3), np.uint8), m, seed=0,\n"
            "                 params={'steps': 10, 'jump_length': 1, 'resamples': 1, 'mcg': 0.0}))\n"
            "assert out.image.shape == (28, 28, 3)\n"
            "heavy = sorted({n.split('.')[0] for n in sys.modules} & {'diffusers', 'transformers'})\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_a_folder_the_own_unet2d_writes_loads_in_diffusers(tmp_path):
    """save_ddpm writes UNet2D in diffusers' own format: diffusers' UNet2DModel loads it with no key left over or
    missing and predicts the same noise."""
    from diffusers import UNet2DModel

    net = build_unet(sample_size=8, channels=(8, 16), groups=4).eval()
    save_ddpm(tmp_path, net, NoiseSchedule(ScheduleConfig(100)))
    ref, info = UNet2DModel.from_pretrained(tmp_path, use_safetensors=True, output_loading_info=True)
    assert info["missing_keys"] == [] and info["unexpected_keys"] == []
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(ref.eval()(x, 5).sample, net(x, 5).sample)

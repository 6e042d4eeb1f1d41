"""Train a DDPM on MNIST (Ho et al. 2020, Algorithm 1: simple loss ||eps - eps_theta(x_t, t)||^2, eq. 14).

One flat script in the minDiffusion / nanoGPT manner. Example (the shipped model, docs/ddpm.md):

    python -m engine.ddpm.train --out runs/ddpm-mnist --max-minutes 28 --threads 2

Writes into ``--out``: ``ckpt.safetensors`` + ``ckpt.json`` (model, EMA, optimiser and RNG state; resumed
automatically when present, or with ``--resume``), ``samples/step_XXXXXX.png`` grids from the EMA weights,
``log.jsonl`` (loss, validation loss, time), and ``export/``: the EMA weights as a diffusers-style folder
(``config.json``, ``diffusion_pytorch_model.safetensors``, ``scheduler_config.json``) that ``load_ddpm`` reads.
Everything is safetensors/JSON: no pickle anywhere.
"""
from __future__ import annotations

import argparse
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

from engine.api import InpaintError, drive
from engine.ddpm.model import build_unet, count_params, save_ddpm
from engine.device import compute_device
from engine.diffusion.samplers import ddim, eps_denoiser
from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig, spaced


@dataclass
class TrainConfig:
    out: str = "runs/ddpm-mnist"
    arch: str = "diffusers"  # diffusers (UNet2DModel) | compact (own depthwise-separable UNet)
    channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    layers_per_block: int = 1
    attention: bool = True  # diffusers arch only: self-attention at the lowest resolution
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
    if cfg.arch == "diffusers":
        return build_unet("diffusers", channels=tuple(cfg.channels), layers_per_block=cfg.layers_per_block,
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


def _state_tensors(model, ema, opt) -> dict[str, torch.Tensor]:
    out = {f"model.{k}": v for k, v in model.state_dict().items()}
    out.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"opt.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    out["rng.cpu"] = torch.get_rng_state()
    return {k: v.detach().contiguous().cpu() for k, v in out.items()}


def save_checkpoint(run: Path, model, ema, opt, step: int, cfg: TrainConfig, elapsed: float) -> None:
    from safetensors.torch import save_file

    tmp = run / "ckpt.safetensors.tmp"
    save_file(_state_tensors(model, ema, opt), tmp)
    tmp.replace(run / "ckpt.safetensors")
    meta = {"step": step, "elapsed_s": elapsed, "config": asdict(cfg),
            "param_groups": opt.state_dict()["param_groups"]}
    (run / "ckpt.json").write_text(json.dumps(meta, indent=2))


def load_checkpoint(run: Path, model, ema, opt) -> tuple[int, float]:
    from safetensors.torch import load_file

    tensors = load_file(run / "ckpt.safetensors")
    meta = json.loads((run / "ckpt.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    return int(meta["step"]), float(meta.get("elapsed_s", 0.0))


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    from engine.datasets import load_mnist

    torch.set_num_threads(cfg.threads)
    try:
        device = compute_device(cfg.device)
    except InpaintError as exc:
        raise SystemExit(f"error: {exc}") from None
    torch.manual_seed(cfg.seed)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)

    images, _ = load_mnist("train")
    if cfg.subset:
        images = images[:cfg.subset]
    data = torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)  # N x 1 x 28 x 28 in [-1, 1]
    val_images, _ = load_mnist("valid")
    val = torch.from_numpy(val_images[:256]).float().div(127.5).sub(1).unsqueeze(1).to(device)
    g_val = torch.Generator().manual_seed(1234)
    val_t = torch.randint(0, cfg.num_train_timesteps, (len(val),), generator=g_val).to(device)
    val_noise = torch.randn(val.shape, generator=g_val).to(device)

    schedule = NoiseSchedule(ScheduleConfig(cfg.num_train_timesteps, beta_schedule=cfg.beta_schedule)).to(device)
    model = build_model(cfg).to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step, elapsed0 = 0, 0.0
    if resume and (run / "ckpt.safetensors").exists():
        step, elapsed0 = load_checkpoint(run, model, ema, opt)
        print(f"resumed from {run} at step {step}", flush=True)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    print(f"{cfg.arch} UNet, {count_params(model) / 1e6:.3f} M params, device {device}, "
          f"{len(data)} images", flush=True)

    use_bf16 = cfg.bf16 and device.type == "cuda"
    t_start = time.time() - elapsed0
    log = open(run / "log.jsonl", "a")
    pbar = tqdm(total=cfg.max_steps, initial=step, dynamic_ncols=True, mininterval=5)
    model.train()
    while step < cfg.max_steps:
        if cfg.max_minutes and time.time() - t_start > cfg.max_minutes * 60:
            break
        idx = torch.randint(0, len(data), (cfg.batch_size,))
        x0 = data[idx].to(device)
        t = torch.randint(0, cfg.num_train_timesteps, (cfg.batch_size,), device=device)
        noise = torch.randn_like(x0)
        x_t = schedule.q_sample(x0, t, noise)  # eq. 4
        for group in opt.param_groups:  # linear warm-up, then cosine decay to 10 % over max_steps
            warm = min(1.0, (step + 1) / max(1, cfg.warmup))
            group["lr"] = cfg.lr * warm * (0.55 + 0.45 * math.cos(math.pi * min(1.0, step / cfg.max_steps)))
        with torch.autocast("cuda", torch.bfloat16, enabled=use_bf16):
            eps = model(x_t, t).sample
        loss = F.mse_loss(eps.float(), noise)  # L_simple, eq. 14
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, model, min(cfg.ema_decay, (1 + step) / (10 + step)))
        pbar.update(1)
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
            save_checkpoint(run, model, ema, opt, step, cfg, time.time() - t_start)
            save_ddpm(run / "export", ema, schedule, {"step": step, "time_s": time.time() - t_start, **asdict(cfg)})
    pbar.close()
    elapsed = time.time() - t_start
    save_checkpoint(run, model, ema, opt, step, cfg, elapsed)
    save_ddpm(run / "export", ema, schedule, {"step": step, "time_s": elapsed, **asdict(cfg)})
    g = torch.Generator().manual_seed(0)
    save_grid(ddim_sample(ema, schedule, 64, cfg.sample_steps, g, device), run / "samples" / "final.png")
    print(f"done: {step} steps in {elapsed / 60:.1f} min -> {run / 'export'}", flush=True)
    log.close()
    return run / "export"


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, f in TrainConfig.__dataclass_fields__.items():
        default = f.default_factory() if callable(f.default_factory) else f.default
        flag = "--" + name.replace("_", "-")
        if isinstance(default, bool):
            p.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes", "on"), default=default)
        elif isinstance(default, list):
            p.add_argument(flag, type=int, nargs="+", default=default)
        else:
            p.add_argument(flag, type=type(default), default=default)
    p.add_argument("--no-resume", action="store_true", help="start fresh even if --out holds a checkpoint")
    a = vars(p.parse_args(argv))
    no_resume = a.pop("no_resume")
    return TrainConfig(**a), not no_resume


def main(argv: list[str] | None = None) -> None:
    cfg, resume = parse_args(argv)
    train(cfg, resume=resume)


if __name__ == "__main__":
    main()

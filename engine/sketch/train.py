"""Train a Latent Guidance Predictor (Voynov et al. 2022, arXiv 2211.13752, Sec. 3.1) on a frozen diffusion model.

For each batch: clean images x_0 and their sketches e (binary edge maps, thresholded as in the seed), a random
timestep t, x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps; the frozen UNet runs on x_t (with the text condition
for Stable Diffusion) while forward hooks collect the chosen blocks' activations; the LGP maps them, with the noise
level and a positional encoding, to the edge map, and only the LGP is trained on ||LGP(F(x_t|c,t)) - E(e)||^2.

Pixel DDPM (MNIST digits, sketches = Canny edges of the digit):

    python -m engine.sketch.train --ddpm resources/models/ddpm-mnist --out resources/models/sketch-lgp-mnist

Stable Diffusion checkpoint: a diffusers folder or a single .safetensors file of SD 1.x, 2.x or XL (images from a
folder, prompt = file name stem, like the paper's ImageNet class names, or one --prompt for all; E(e) = VAE latent
of the sketch drawn black on white). The LGP goes where the fills look for it: <folder>/sketch-lgp, or
<file stem>.sketch-lgp/ next to a single file:

    python -m engine.sketch.train --sd /path/to/models/dreamshaper_8.safetensors --images /path/to/photos \
        --edges hed --steps 2000

``--device`` (default auto: a CUDA GPU when there is one) runs the frozen UNet, the VAE and the LGP there; a
Stable Diffusion UNet at 512 px is a GPU job. Batches are drawn on the CPU from the seed and moved.

Several GPUs (or CPU processes) under torchrun (engine/distributed.py: DDP, each rank its own shard of the images
and its own batch seed, rank 0 writes); a run saves ``<out>/ckpt`` every 500 steps and ``--resume`` continues it:

    torchrun --standalone --nproc_per_node 4 -m engine.sketch.train --sd /models/sd15 --images photos --device cuda
"""
from __future__ import annotations

import argparse
import math
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine import distributed
from engine.api import InpaintError
from engine.device import compute_device, describe, seeded_noise
from engine.sketch.lgp import (FeatureHooks, LatentGuidancePredictor, LGPConfig, default_blocks, edge_loss,
                               probe_channels)
from engine.weights import SAMPLES_DIR, load_training_state, save_training_state

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclass
class TrainConfig:
    ddpm: str = ""
    sd: str = ""
    images: str = ""
    prompt: str = ""
    out: str = ""
    edges: str = "canny"
    steps: int = 2000
    minutes: float = 0.0  # 0 = no time limit
    batch: int = 32
    lr: float = 1e-3
    hidden: tuple[int, ...] = (128, 64)
    pos_freqs: int = 4
    blocks: str = ""  # comma-separated module names; "" = every down/mid/up block
    limit: int = 20000  # training images (MNIST) kept in memory
    threads: int = 1
    seed: int = 0
    log_every: int = 50
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    resume: bool = False  # continue from <out>/ckpt (the optimiser, the step, the batch seed's state)


def _lr_at(step: int, total: int, base: float, warmup: int = 50) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))


# ----------------------------------------------------------------------------------------------------------------
# Data sources: each yields (x_t input kwargs for the UNet, t, noise level, target) batches
# ----------------------------------------------------------------------------------------------------------------
class PixelSource:
    """MNIST digits on the DDPM's canvas; sketch target in pixel space."""

    def __init__(self, cfg: TrainConfig, device: torch.device, d: distributed.Dist = distributed.Dist()):
        from engine.ddpm.pipeline import cached_ddpm
        from engine.sketch.pixel import mnist_pairs

        ddpm = cached_ddpm(cfg.ddpm, device)
        self.unet, self.abar = ddpm.unet, ddpm.schedule.alphas_cumprod.cpu()
        self.size = ddpm.sample_size
        t0 = time.time()
        x0, sketch, _ = mnist_pairs(self.size, "train", cfg.limit, cfg.edges, cfg.seed)
        part = distributed.shard(len(x0), d)
        self.x0, self.sketch = x0[part], sketch[part]
        print(f"data: {len(self.x0)} MNIST digits, {cfg.edges} sketches at {self.size}px "
              f"({time.time() - t0:.1f}s; {self.sketch.mean().item():.3f} stroke pixels)", flush=True)
        self.resolution, self.out_channels, self.target_kind = self.size, 1, "pixel"

    def example(self) -> dict:
        return dict(sample=self.x0[:1], timestep=torch.tensor([10]))

    def batch(self, n: int, gen: torch.Generator):
        idx = torch.randint(0, len(self.x0), (n,), generator=gen)
        x0, target = self.x0[idx], self.sketch[idx]
        t = torch.randint(0, len(self.abar), (n,), generator=gen)
        ab = self.abar[t].view(-1, 1, 1, 1)
        xt = ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn(x0.shape, generator=gen)
        return dict(sample=xt, timestep=t), t, (1 - ab).sqrt().view(-1), target


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS)


class SDSource:
    """Photos from a folder, random square crops at the checkpoint's resolution; target = VAE latent of the edges.
    The checkpoint is a diffusers folder or a single .safetensors file (``engine.sd``); an inpainting UNet sees the
    whole crop as its hole (mask 1, blank masked image), as when it fills from nothing."""

    def __init__(self, cfg: TrainConfig, device: torch.device, d: distributed.Dist = distributed.Dist()):
        from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
        from engine.sd import model as sd_model
        from engine.sd.loading import detect

        try:
            self.comp = sd_model.load(cfg.sd, detect(cfg.sd), device).to(device)
        except InpaintError as exc:
            raise SystemExit(f"error: {exc}") from None
        self.unet = self.comp.unet
        self.size = self.comp.resolution
        self.lat = self.comp.latent_size
        folder = Path(cfg.images) if cfg.images else SAMPLES_DIR
        paths = _list_images(folder)
        if not paths:
            raise SystemExit(f"no images ({', '.join(IMAGE_EXTS)}) under {folder}")
        if len(paths) >= d.world:
            paths = paths[distributed.shard(len(paths), d)]
        from PIL import Image

        self.images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        prompts = [cfg.prompt or p.stem.replace("_", " ").replace("-", " ") for p in paths]
        self.conds = {pr: self.comp.conditioning(pr, "", 1.0, (self.size, self.size)) for pr in set(prompts)}
        self.prompts = prompts
        self.edges = cfg.edges
        self.abar = NoiseSchedule(ScheduleConfig.from_dict(self.comp.scheduler_config)).alphas_cumprod
        self.extra = None
        if self.comp.inpainting:
            blank = torch.zeros(1, 3, self.size, self.size, device=device)
            self.extra = torch.cat([torch.ones(1, 1, self.lat, self.lat, device=device),
                                    self.comp.vae_encode(blank)], dim=1)
        self.resolution, self.out_channels, self.target_kind = self.lat, 4, "latent"
        print(f"data: {len(paths)} images from {folder}, crops {self.size}px, latents {self.lat}px", flush=True)

    def _kwargs(self, z: torch.Tensor, t: torch.Tensor, conds: list) -> dict:
        dtype = self.comp.dtype
        sample = z if self.extra is None else torch.cat([z, self.extra.expand(z.shape[0], -1, -1, -1)], dim=1)
        added = None
        if conds[0].added is not None:
            added = {k: torch.cat([c.added[k] for c in conds]).to(dtype) for k in conds[0].added}
        context = torch.cat([c.context for c in conds]).to(dtype)
        return dict(sample=sample.to(dtype), timestep=t.to(z.device), encoder_hidden_states=context,
                    added_cond_kwargs=added)

    def example(self) -> dict:
        z = torch.zeros(1, 4, self.lat, self.lat, device=self.comp.device)
        return self._kwargs(z, torch.tensor([10]), [next(iter(self.conds.values()))])

    def _crop(self, img: np.ndarray, rng: random.Random) -> np.ndarray:
        import cv2

        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.5, 1.0))
        y0, x0 = rng.randint(0, h - side), rng.randint(0, w - side)
        crop = img[y0:y0 + side, x0:x0 + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return cv2.resize(np.ascontiguousarray(crop), (self.size, self.size), interpolation=cv2.INTER_AREA)

    def batch(self, n: int, gen: torch.Generator):
        from engine.edges import sketch_from_image

        rng = random.Random(int(torch.randint(0, 2 ** 31, (1,), generator=gen)))
        picks = [rng.randrange(len(self.images)) for _ in range(n)]
        crops = [self._crop(self.images[i], rng) for i in picks]
        device = self.comp.device
        imgs = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div(127.5).sub(1).to(device)
        sk = torch.from_numpy(np.stack([sketch_from_image(c, self.edges) for c in crops])).float().unsqueeze(1)
        z0 = self.comp.vae_encode(imgs)
        target = self.comp.vae_encode((1.0 - 2.0 * sk.to(device)).expand(-1, 3, -1, -1))  # black strokes on white
        t = torch.randint(0, len(self.abar), (n,), generator=gen)
        ab = self.abar[t].view(-1, 1, 1, 1).to(device)
        zt = ab.sqrt() * z0 + (1 - ab).sqrt() * seeded_noise(z0.shape, gen, z0)
        kwargs = self._kwargs(zt, t, [self.conds[self.prompts[i]] for i in picks])
        return kwargs, t, (1 - ab).sqrt().view(-1), target


def _to(v, device):
    """Tensors (also inside dicts) moved to ``device``; anything else as it is."""
    if torch.is_tensor(v):
        return v.to(device)
    if isinstance(v, dict):
        return {k: _to(x, device) for k, x in v.items()}
    return v


def train(cfg: TrainConfig) -> Path:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)  # the same LGP initialisation on every rank
    if bool(cfg.ddpm) == bool(cfg.sd):
        raise SystemExit("give exactly one of --ddpm FOLDER or --sd FOLDER")
    try:
        device = compute_device(cfg.device)
    except InpaintError as exc:
        raise SystemExit(f"error: {exc}") from None
    d = distributed.setup(device)
    device = d.device
    source = PixelSource(cfg, device, d) if cfg.ddpm else SDSource(cfg, device, d)
    if cfg.sd:
        from engine.sd.checkpoint import lgp_dir_for

        out = Path(cfg.out) if cfg.out else lgp_dir_for(cfg.sd)
    else:
        out = Path(cfg.out or "sketch-lgp")
    unet = source.unet
    blocks = [b.strip() for b in cfg.blocks.split(",") if b.strip()] or default_blocks(unet)
    channels = probe_channels(unet, blocks, _to(source.example(), device))
    lcfg = LGPConfig(blocks=blocks, feature_channels=sum(channels), out_channels=source.out_channels,
                     resolution=source.resolution, hidden=list(cfg.hidden), pos_freqs=cfg.pos_freqs,
                     num_train_timesteps=len(source.abar), target=source.target_kind, edge_method=cfg.edges,
                     unet_kind=type(unet).__name__)
    lgp = LatentGuidancePredictor(lcfg).to(device)
    n_params = sum(p.numel() for p in lgp.parameters())
    opt = torch.optim.Adam(lgp.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * d.rank)  # each rank its own batches
    ckpt = out / "ckpt"
    step, ema, history, seconds = 0, None, [], 0.0
    if cfg.resume and ckpt.with_suffix(".safetensors").exists():
        meta = load_training_state(ckpt, {"lgp": lgp}, {"opt": opt})
        step, ema, history, seconds = meta["step"], meta["loss_ema"], meta["history"], meta["seconds"]
        gen.set_state(torch.tensor(meta["generators"][d.rank % len(meta["generators"])], dtype=torch.uint8))
    net = distributed.wrap(lgp, d)
    if d.is_main:
        print(f"LGP: blocks {blocks} channels {channels} -> in {lcfg.in_channels}, {n_params} parameters, "
              f"world {d.world}" + (f", resumed at step {step}" if step else ""), flush=True)
    hooks = FeatureHooks(unet, blocks)
    t_start = time.time() - seconds

    def checkpoint() -> None:
        gens = [gen.get_state()]
        if d.active:  # every rank's batch seed, so a resumed run draws what this one would have drawn next
            import torch.distributed as tdist

            gens = [torch.empty_like(gens[0]) for _ in range(d.world)]
            tdist.all_gather_object(gens, gen.get_state())
        if d.is_main:
            extra = _extra(cfg, step, ema, t_start, history, device, d.world)
            lgp.save(out, training=extra)
            save_training_state(ckpt, {"lgp": lgp}, {"opt": opt},
                                {"step": step, "loss_ema": ema, "history": history, "seconds": extra["seconds"],
                                 "generators": [g.tolist() for g in gens]})

    try:
        while step < cfg.steps:
            if distributed.any_rank(bool(cfg.minutes) and time.time() - t_start > cfg.minutes * 60, d):
                break
            step += 1
            kwargs, t, nl, target = (_to(v, device) for v in source.batch(cfg.batch, gen))
            with torch.no_grad():
                hooks.clear()
                unet(**kwargs)
                feats = [f.detach().float() for f in hooks.collect()]
            pred = net(feats, t, nl)
            if pred.shape[-2:] != target.shape[-2:]:
                target = F.interpolate(target, size=pred.shape[-2:], mode="bilinear", align_corners=False)
            loss = edge_loss(pred, target) / target[0].numel()  # per-pixel MSE
            for g in opt.param_groups:
                g["lr"] = _lr_at(step - 1, cfg.steps, cfg.lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # DDP: the gradients are averaged over the ranks here
            opt.step()
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            if d.is_main and (step % cfg.log_every == 0 or step == 1):
                el = time.time() - t_start
                print(f"step {step}/{cfg.steps} loss {loss.item():.4f} ema {ema:.4f} {el:.0f}s", flush=True)
                history.append((step, round(ema, 5), round(el, 1)))
            if step % 500 == 0:
                checkpoint()
    finally:
        hooks.remove()
    checkpoint()
    if d.is_main:
        print(f"saved {out} after {step} steps, {time.time() - t_start:.0f}s, loss ema {ema}", flush=True)
    distributed.teardown(d)
    return out


def weights_digest(folder: str | Path) -> str:
    """sha256 of a diffusers folder's weights file: the LGP reads that exact UNet's activations."""
    import hashlib

    files = sorted(Path(folder).glob("*.safetensors"))
    return hashlib.sha256(files[0].read_bytes()).hexdigest() if files else ""


def _extra(cfg: TrainConfig, step: int, ema, t_start: float, history, device: torch.device, world: int = 1
           ) -> dict:
    return {"train": asdict(cfg), "steps_done": step, "ranks": world, "loss_ema": ema, "seconds": round(time.time() - t_start, 1),
            "ddpm_weights_sha256": weights_digest(cfg.ddpm) if cfg.ddpm else "",
            "hardware": f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
                        f"{torch.get_num_threads()} thread(s), {describe(device)}",
            "command": "python -m engine.sketch.train " + " ".join(sys.argv[1:]), "history": history}


def parse_args(argv=None) -> TrainConfig:
    d = TrainConfig()
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ddpm", default="", help="pixel DDPM checkpoint folder (MNIST)")
    ap.add_argument("--sd", default="", help="Stable Diffusion checkpoint: diffusers folder or .safetensors file")
    ap.add_argument("--images", default="", help="SD only: folder of training photos (default: resources/samples)")
    ap.add_argument("--prompt", default="", help="SD only: one prompt for all images (default: file name stem)")
    ap.add_argument("--out", default="", help="output folder (default: <sd folder>/sketch-lgp, <sd file stem>"
                    ".sketch-lgp, or ./sketch-lgp)")
    ap.add_argument("--edges", default=d.edges, choices=("canny", "sobel", "hed"))
    ap.add_argument("--steps", type=int, default=d.steps)
    ap.add_argument("--minutes", type=float, default=d.minutes, help="stop after this long (0 = no limit)")
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--lr", type=float, default=d.lr)
    ap.add_argument("--hidden", default=",".join(map(str, d.hidden)), help="MLP widths, e.g. 256,128,64")
    ap.add_argument("--pos-freqs", type=int, default=d.pos_freqs)
    ap.add_argument("--blocks", default="", help="UNet modules to hook, comma-separated (default: all blocks)")
    ap.add_argument("--limit", type=int, default=d.limit)
    ap.add_argument("--threads", type=int, default=d.threads)
    ap.add_argument("--seed", type=int, default=d.seed)
    ap.add_argument("--log-every", type=int, default=d.log_every)
    ap.add_argument("--device", default=d.device, help="auto (a CUDA GPU when there is one), cpu, cuda or cuda:N")
    ap.add_argument("--resume", action="store_true", help="continue the run saved in --out (its ckpt)")
    a = ap.parse_args(argv)
    return TrainConfig(ddpm=a.ddpm, sd=a.sd, images=a.images, prompt=a.prompt, out=a.out, edges=a.edges,
                       steps=a.steps, minutes=a.minutes, batch=a.batch, lr=a.lr,
                       hidden=tuple(int(v) for v in a.hidden.split(",") if v), pos_freqs=a.pos_freqs,
                       blocks=a.blocks, limit=a.limit, threads=a.threads, seed=a.seed, log_every=a.log_every,
                       device=a.device, resume=a.resume)


if __name__ == "__main__":
    train(parse_args())

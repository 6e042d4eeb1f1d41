"""Learning the frugal UNet on one image (or a few): the paper's diffusion objective, or plain regression.

Diffusion (paper Eq. 1):  L(theta) = || x - f_theta(x_t, y, M, sigma_t^2) ||^2,  t ~ U{1..T},
                          x_t = sqrt(abar_t) x + sigma_t eps   (DDPM q_sample),
Regression (the fixed-architecture baseline of Sec. 3.1): the same network, no noise input (x_t := y,
sigma^2 := 0), trained with the L2 error on the hole only, L = || M * (x - f_theta(y, y, M, 0)) ||^2.
Both losses are averaged over hole pixels (known pixels are given in y and pasted back at sampling).

CPU choices (measured in docs/frugal.md): small crops (64 px) and batch 8 instead of 256 px x 16, a 2x
space-to-depth input (``UNetConfig.unshuffle``), Adam at 2e-3 with a time-based cosine decay instead of 1e-4
for 15k iterations, and a wall-clock budget (``minutes``) rather than an iteration count.

Autoguidance (``engine.frugal.guidance``): a diffusion Learn keeps its weights at ``guide_at`` of the budget as
the guiding "bad" net; the returned model is then an ``AutoGuided`` pair.

Parallel learning (``Shards``): this net's tensors are too small for torch's intra-op threads to pay (2-core VM:
1 thread 342 iterations in 30 s, 2 threads 313), so the batch is cut into slices whose forward and backward passes
run on their own threads, one core each (torch ops release the GIL): 1.5x the iterations on 2 cores. The number of
slices is timed at the start of every Learn and the fastest kept.

``train`` is a generator: it yields ``(iteration, total_estimate, loss)`` every few iterations, checks the
cancel token every iteration, and returns the trained network. ``save`` / ``load`` keep the weights as an
engine.weights folder (the TrainConfig in config.json, the learning stats as its "training" facts), and
``cache_path`` names the per-image cache folder.
"""
from __future__ import annotations

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Generator

import numpy as np
import torch
import xxhash
from torch import nn

from engine.device import seeded_noise
from engine.diffusion.schedule import NoiseSchedule, ScheduleConfig
from engine.frugal.data import CropSampler
from engine.frugal.guidance import AutoGuided
from engine.frugal.model import FrugalUNet, UNetConfig, count_parameters
from engine.tensors import to_tensor
from engine.weights import WEIGHTS_NAME, config_to_dict, load_weights, read_config, save_pretrained


def frugal_schedule() -> ScheduleConfig:
    """The paper's variance-preserving cosine schedule over T = 1000 steps (sigma_T^2 = 1)."""
    return ScheduleConfig(num_train_timesteps=1000, beta_schedule="cosine")


@dataclass
class TrainConfig:
    """Everything that decides the learned weights, except the image itself (hashed separately)."""

    objective: str = "diffusion"  # "diffusion" | "regression"
    minutes: float = 3.0  # wall-clock budget
    iterations: int = 0  # hard cap on iterations; 0 = only the time budget stops training
    crop: int = 64  # training crop side (paper: 256)
    batch: int = 8  # crops per iteration (paper: 16)
    lr: float = 2e-3  # Adam peak learning rate (paper: 1e-4)
    warmup: int = 20  # linear warm-up iterations
    p_full: float = 0.15  # share of fully masked training crops
    weighting: str = "uniform"  # "uniform": Eq. 1 as in the paper; "edm": 1 / c_out^2; "min-snr": clamp(SNR_t, .05, 5)
    ema: float = 0.0  # decay of an exponential moving average of the weights (0 = off); the EMA is what is kept
    guide_at: float = 0.1  # autoguidance: keep the weights at this share of the budget as the "bad" net (0 = off)
    seed: int = 0
    unet: UNetConfig = field(default_factory=UNetConfig)
    schedule: ScheduleConfig = field(default_factory=frugal_schedule)

    def __post_init__(self) -> None:
        if self.objective == "regression":  # no noise input: the x_t skip of the preconditioning would copy y
            self.unet.precond = False
            self.guide_at = 0.0  # one-shot fill: nothing to guide



def diffusion_loss(net: FrugalUNet, sched: NoiseSchedule, x0: torch.Tensor, mask: torch.Tensor,
                   gen: torch.Generator, weighting: str = "uniform") -> torch.Tensor:
    """Eq. 1 on a batch: noise x0 at t ~ U{0..T-1} (the paper's 1..T), predict x0 from (x_t, y, M, sigma_t^2), L2
    on the hole.

    ``weighting="min-snr"`` multiplies each sample's loss by clamp(SNR_t, 0.05, 5), SNR_t = abar_t / sigma_t^2
    (Min-SNR, Hang et al. 2023, for x0 targets, with a floor so the pure-noise end is still learned): uniform x0
    weights spend most of the gradient on high noise, this moves it to the fine-detail end."""
    b = x0.shape[0]
    t = torch.randint(0, sched.num_train_timesteps, (b,), generator=gen, device=gen.device).to(x0.device)
    noise = seeded_noise(x0.shape, gen, x0)
    x_t = sched.q_sample(x0, t, noise)
    y = x0 * (1 - mask)
    s2 = sched.sigmas[t] ** 2
    pred = net(x_t, y, mask, s2)
    if weighting == "uniform":
        return hole_mse(pred, x0, mask)
    if weighting == "edm":  # lambda = 1 / c_out^2 of the preconditioning, capped at the sigma = 0.02 level
        sd2 = net.cfg.sigma_data ** 2
        w = ((s2 + (1 - s2) * sd2) / (s2 * sd2)).clamp(max=2500.0)
        w = (w / 4.0).view(-1, 1, 1, 1)  # 1 at pure noise
    else:
        snr = sched.alphas_cumprod[t] / s2
        w = snr.clamp(0.05, 5.0).view(-1, 1, 1, 1)
    return (w * (pred - x0) ** 2 * mask).sum() / (mask.sum() * x0.shape[1]).clamp(min=1.0)


def regression_loss(net: FrugalUNet, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The regression baseline: same network, input y only (x_t := y, sigma^2 := 0), L2 on the hole."""
    y = x0 * (1 - mask)
    pred = net(y, y, mask, torch.zeros(x0.shape[0], device=x0.device))
    return hole_mse(pred, x0, mask)


def hole_mse(pred: torch.Tensor, x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return ((pred - x0) ** 2 * mask).sum() / (mask.sum() * x0.shape[1]).clamp(min=1.0)


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]


class Shards:
    """Data parallelism on CPU threads: a batch's loss and gradients computed in ``n`` slices at once.

    Slice k's loss is weighted by its share of the batch's hole pixels, so the slices' losses and gradients sum to
    the whole batch's (``hole_mse`` averages over hole pixels). Each slice draws its noise from its own generator.
    The slice count is chosen while learning: blocks of ``block`` iterations are timed at 1, 2, 4, ... slices (up to
    ``limit``, the caller's torch thread count, and the batch), in an A B .. B A order so that a drift in the
    machine's load cancels out, and the count with the shortest median iteration is kept (a median, so that a
    hiccup, e.g. another program's burst or the GUI repainting, does not decide it). Intra-op threads are set to 1
    meanwhile; ``close()`` restores the caller's count. On a GPU (``device``), one slice: the noise is drawn there."""

    def __init__(self, limit: int, seed: int, block: int = 5, warmup: int = 3,
                 device: torch.device = torch.device("cpu")) -> None:
        self.original = torch.get_num_threads()
        counts = [1 << k for k in range(limit.bit_length()) if 1 << k < limit] + [limit]
        self.order = counts + counts[::-1] if len(counts) > 1 else []
        self.seconds: dict[int, list[float]] = {n: [] for n in counts}  # each timed iteration's duration
        self.n, self.block, self.warmup, self.it, self.t = counts[-1], block, warmup, 0, 0.0
        self.decided_at = warmup + len(self.order) * block  # the iteration at which the count is chosen
        self.gens = [torch.Generator(device).manual_seed(seed + k) for k in range(counts[-1])]
        self.pool = ThreadPoolExecutor(counts[-1]) if counts[-1] > 1 else None
        if self.pool is not None:
            torch.set_num_threads(1)

    def _schedule(self) -> None:
        k, pos = divmod(self.it - self.warmup, self.block)
        if self.order and self.warmup <= self.it <= self.decided_at:
            now = time.perf_counter()
            if self.it > self.warmup:
                self.seconds[self.n].append(now - self.t)
            if pos == 0:
                self.n = self.order[k] if k < len(self.order) else min(self.seconds, key=self._median)
            self.t = now
        self.it += 1

    def _median(self, n: int) -> float:
        return float(np.median(self.seconds[n]))

    def step(self, loss_fn: LossFn, params: list[nn.Parameter], x0: torch.Tensor, mask: torch.Tensor) -> float:
        """Set ``p.grad`` of ``params`` to the batch loss's gradients; return the loss."""
        self._schedule()
        if self.n == 1:
            loss = loss_fn(x0, mask, self.gens[0])
            grads = torch.autograd.grad(loss, params)
        else:
            total = mask.sum().clamp(min=1.0)

            def part(sl: torch.Tensor, m: torch.Tensor, gen: torch.Generator):
                loss = loss_fn(sl, m, gen) * (m.sum() / total)
                return loss.detach(), torch.autograd.grad(loss, params)

            parts = list(self.pool.map(part, x0.chunk(self.n), mask.chunk(self.n), self.gens))
            loss = sum(p[0] for p in parts)
            grads = [sum(g) for g in zip(*(p[1] for p in parts))]
        for p, g in zip(params, grads):
            p.grad = g
        return float(loss.detach())

    def report(self) -> dict:
        """The kept slice count, and the median seconds per iteration of each count once they were all timed."""
        if not self.order or self.it <= self.decided_at:
            return {"slices": self.n}
        return {"slices": self.n, "seconds_per_iteration": {str(n): round(self._median(n), 4) for n in self.seconds}}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        torch.set_num_threads(self.original)


def train(images: list[np.ndarray], excludes: list[np.ndarray | None], cfg: TrainConfig,
          check: Callable[[], None] = lambda: None, report_every: float = 0.5, parallel: bool = True,
          device: torch.device | None = None) -> Generator[tuple[int, int, float], None, tuple[nn.Module, dict]]:
    """Train a FrugalUNet on crops of ``images`` avoiding ``excludes``; yields (it, total_estimate, loss_ema).

    Returns (model in eval mode on ``device``: a FrugalUNet, or an AutoGuided pair when ``cfg.guide_at`` > 0, stats
    dict). ``check`` is called every iteration (cancel.check). ``parallel``: on the CPU, spread each batch over up to
    the caller's torch thread count of threads (``Shards``); False: one pass with the caller's intra-op threads.
    ``device``: where to learn (default the CPU); crops are cut on the CPU and moved as uint8."""
    device = torch.device(device or "cpu")
    limit = min(torch.get_num_threads(), cfg.batch) if parallel and device.type == "cpu" else 1
    shards = Shards(limit, cfg.seed, device=device)
    try:
        result = yield from _train(images, excludes, cfg, check, report_every, shards, device)
    finally:
        shards.close()
    return result


def _train(images: list[np.ndarray], excludes: list[np.ndarray | None], cfg: TrainConfig,
           check: Callable[[], None], report_every: float, shards: Shards, device: torch.device
           ) -> Generator[tuple[int, int, float], None, tuple[nn.Module, dict]]:
    torch.manual_seed(cfg.seed)
    if cfg.unet.precond and cfg.unet.sigma_data <= 0:  # <= 0: measure it on the known pixels of the images
        known = np.concatenate([im[~ex] if ex is not None else im.reshape(-1, 3) for im, ex in zip(images, excludes)])
        cfg.unet.sigma_data = round(max(float(known.std()) / 127.5, 0.05), 4)
    net = FrugalUNet(cfg.unet).to(device)
    bad_state = None
    sched = NoiseSchedule(cfg.schedule).to(device)
    sampler = CropSampler(images, excludes, cfg.crop, seed=cfg.seed, multiple=net.multiple, p_full=cfg.p_full)
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=cfg.lr)
    if cfg.objective == "diffusion":
        def loss_fn(x0: torch.Tensor, m: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            return diffusion_loss(net, sched, x0, m, gen, cfg.weighting)
    else:
        def loss_fn(x0: torch.Tensor, m: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
            return regression_loss(net, x0, m)
    budget = max(cfg.minutes, 1e-3) * 60.0
    cap = cfg.iterations if cfg.iterations > 0 else None
    t0 = time.perf_counter()
    last_report = -1e9
    ema = None
    it = 0
    total = cap or 1
    ema_params = [p.detach().clone() for p in net.parameters()] if cfg.ema > 0 else None
    net.train()
    while True:
        check()
        elapsed = time.perf_counter() - t0
        progress = elapsed / budget
        if cap is not None:
            progress = max(progress, it / cap)
        if cfg.guide_at > 0 and bad_state is None and progress >= cfg.guide_at:
            bad_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if progress >= 1.0:
            break
        # time-based schedule: linear warm-up, then cosine from lr down to lr / 20 at the end of the budget
        lr = cfg.lr * min(1.0, (it + 1) / cfg.warmup) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))
        for g in opt.param_groups:
            g["lr"] = lr
        crops, masks = sampler.sample(cfg.batch)
        x0 = to_tensor(crops, device)
        m = torch.from_numpy(masks)[:, None].to(device).float()
        value = shards.step(loss_fn, params, x0, m)
        opt.step()
        if ema_params is not None:
            decay = min(cfg.ema, (1 + it) / (10 + it))  # short warm-up so early weights do not linger
            with torch.no_grad():
                for e, p in zip(ema_params, net.parameters()):
                    e.lerp_(p.detach(), 1 - decay)
        it += 1
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        now = time.perf_counter()
        if it > 2:  # iterations the budget allows at the measured speed
            est = int(it / max(progress, 1e-6)) if progress > 0 else it
            total = min(cap, est) if cap else est
        if now - last_report >= report_every:
            last_report = now
            yield it, max(total, it), ema
    if ema_params is not None:
        with torch.no_grad():
            for e, p in zip(ema_params, net.parameters()):
                p.copy_(e)
    net.eval()
    stats = {"iterations": it, "seconds": time.perf_counter() - t0, "loss": ema if ema is not None else float("nan"),
             "crop": sampler.crop, "parameters": count_parameters(net), "device": str(device), **shards.report()}
    model: nn.Module = net
    if cfg.guide_at > 0:
        model = build(cfg).to(device)
        model.good.load_state_dict(net.state_dict())
        model.bad.load_state_dict(bad_state)
        model.eval()
    yield it, it, stats["loss"]
    return model, stats


def cache_key(image: np.ndarray, cfg: TrainConfig, extra: str = "") -> str:
    """Content hash of the (working) image plus the mask-independent training config (and ``extra``, e.g. a
    folder). XXH3-128, not a cryptographic hash: the key names a cache entry, it guards nothing, and every refill of
    a 12 MP photo hashes its 36 MB (sha256: ~35 ms here, XXH3: ~8)."""
    h = xxhash.xxh3_128()
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).data)  # the buffer itself: no 36 MB copy of a 12 MP photo
    h.update(json.dumps(config_to_dict(cfg), sort_keys=True).encode())
    h.update(extra.encode())
    return h.hexdigest()[:32]


def cache_path(key: str) -> Path:
    from engine.datasets import CACHE  # honours INPAINT_STUDIO_CACHE

    return CACHE / "frugal" / key


def build(cfg: TrainConfig) -> nn.Module:
    """The network a TrainConfig learns: a FrugalUNet, or the AutoGuided pair when the Learn keeps its snapshot."""
    return AutoGuided(FrugalUNet(cfg.unet), FrugalUNet(cfg.unet)) if cfg.guide_at > 0 else FrugalUNet(cfg.unet)


def save(net: nn.Module, cfg: TrainConfig, stats: dict, folder: Path) -> None:
    """The learned weights as an engine.weights folder: the TrainConfig, the stats as its training facts."""
    save_pretrained(folder, net, cfg, stats)


def load(folder: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, TrainConfig, dict]:
    """(net in eval mode, its TrainConfig, the learning stats); InpaintError naming the file when unusable."""
    cfg, stats = read_config(folder, TrainConfig)
    net = build(cfg)
    load_weights(net, folder / WEIGHTS_NAME, device)
    return net.to(device).eval(), cfg, stats

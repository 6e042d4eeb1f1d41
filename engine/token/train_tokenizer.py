"""Train the FSQ tokenizer of one domain (engine/token/fsq.py): patch-local encoder, FSQ, guided decoder.

One flat script (nanoGPT / minDiffusion manner). Loss: mean squared error plus mean absolute error on the pixels,
the hole's pixels at weight 1 and the known ones at 0.1 (the decoder is shown them); half of the holes are the
whole image (tokens alone), half an editor's (engine/token/masks.py).

A decoder trained on pixel losses alone draws the conditional mean: it blurs what the tokens do not pin down
(eyes, glasses frames), and, having only ever seen an encoder's codes, draws every disagreement between two
sampled neighbours as a step at their border. Options against both, for a second stage that trains the decoder
alone (``--init`` a tokenizer, ``--decoder-only``: the encoder, hence every id its transformers were trained on,
stays bit-identical): conditioning augmentation (``--code-noise``, ``--code-shift``; ``Tokenizer.forward``), an
edge-energy loss (``--detail-weight``; ``detail_loss``) and, as that loss alone is cheapest met by a texture locked
to the token grid, a loss on such a texture (``--pattern-weight``; ``pattern_loss``). From ``--gan-start`` on, a
PatchGAN discriminator (Isola et al. 2017) can join with the hinge loss (VQGAN, Esser et al. 2021, sec. 3.1,
without the perceptual term: no pretrained network is reachable); on faces it painted noise, so no shipped
tokenizer uses it. The shipped tokenizers:

    python -m engine.token.train_tokenizer --domain mnist --out runs/token-fsq-mnist --steps 1500
    python -m engine.token.train_tokenizer --domain face --out runs/token-fsq-face --steps 2000 \
        --levels 7 5 5 5 5 --patch 8 --size 64 --dec-grid 96 --dec-pixel 16 --batch-size 32
    # then the face decoder alone, from that export (its model card):
    python -m engine.token.train_tokenizer --domain face --out runs/token-fsq-face-dec \
        --init runs/token-fsq-face/export --decoder-only true --code-noise 0.5 --code-shift 4 --detail-weight 2 \
        --pattern-weight 2 --steps 1500 --lr 0.0005 --warmup 50 --batch-size 32 --size 64 --patch 8 --levels 7 5 5 5 5

Under torchrun (DDP; gloo on the CPU, nccl on a GPU; each rank its own data shard; rank 0 writes):

    torchrun --standalone --nproc_per_node 2 -m engine.token.train_tokenizer --domain mnist --out runs/t

Writes into ``--out``: ``ckpt.safetensors`` + ``ckpt.json`` (resumed when present), ``samples/step_*.png``
(original | tokens alone | hole | guided decode), ``log.jsonl`` and ``export/`` (config.json with the measured
reconstruction quality, model.safetensors): what ``load_tokenizer`` reads.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine import distributed
from engine.api import InpaintError
from engine.device import compute_device
from engine.token import data as D
from engine.token.fsq import (Tokenizer, TokenizerConfig, count_params, load_tokenizer, save_tokenizer,
                              token_hole)
from engine.token.masks import editor_holes


@dataclass
class TrainConfig:
    domain: str = "mnist"  # mnist | face
    out: str = "runs/token-fsq-mnist"
    size: int = 28
    patch: int = 4
    levels: tuple = (8, 5, 5, 5)
    enc_hidden: int = 256
    dec_grid: int = 64
    dec_pixel: int = 16
    grid_blocks: int = 2
    pixel_blocks: int = 2
    batch_size: int = 64  # per rank
    lr: float = 2e-3
    warmup: int = 100
    steps: int = 1500
    max_minutes: float = 0.0  # 0 = no limit; else stop (and export) after this wall time
    n_train: int = 0  # 0 = the whole training split
    n_valid: int = 512  # validation images
    known_weight: float = 0.1  # loss weight of pixels outside the hole
    gan_start: int = 0  # 0 = pixel losses only; else the step from which the PatchGAN joins
    gan_weight: float = 0.05  # weight of the generator's hinge loss -D(G(x))
    gan_lr: float = 2e-4  # constant learning rate of decoder and discriminator in the adversarial phase
    init: str = ""  # start from this exported tokenizer (its architecture; the flags' shape options are ignored)
    decoder_only: bool = False  # train the decoder alone: the encoder, hence every image's ids, stay as they are
    code_noise: float = 0.0  # share of the hole's tokens replaced by a shifted patch's token (Tokenizer.forward)
    code_shift: int = 0  # ... taken up to this many pixels off
    detail_weight: float = 0.0  # weight of the edge-energy loss (``detail_loss``)
    pattern_weight: float = 0.0  # weight of the token-locked texture loss (``pattern_loss``)
    seed: int = 0
    threads: int = 1
    device: str = "auto"
    bf16: bool = False  # autocast to bfloat16 (on this CPU no faster for these small convolutions)
    log_every: int = 50
    sample_every: int = 500
    ckpt_every: int = 250


class PatchDiscriminator(torch.nn.Module):
    """PatchGAN (Isola et al. 2017): one real/fake logit per overlapping ~22 px patch of a [-1, 1] image."""

    def __init__(self, channels: int, ch: int = 48) -> None:
        super().__init__()
        nn = torch.nn
        self.net = nn.Sequential(nn.Conv2d(channels, ch, 4, 2, 1), nn.LeakyReLU(0.2),
                                 nn.Conv2d(ch, 2 * ch, 4, 2, 1), nn.GroupNorm(8, 2 * ch), nn.LeakyReLU(0.2),
                                 nn.Conv2d(2 * ch, 2 * ch, 3, 1, 1), nn.GroupNorm(8, 2 * ch), nn.LeakyReLU(0.2),
                                 nn.Conv2d(2 * ch, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def edge_energy(x: torch.Tensor) -> torch.Tensor:
    """B x C x S x S -> B x 1 x S x S: Sobel gradient magnitude of the channel mean."""
    g = x.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device) / 8
    k = torch.stack([kx, kx.t()])[:, None]
    d = F.conv2d(F.pad(g, (1, 1, 1, 1), mode="replicate"), k)
    return (d.pow(2).sum(1, keepdim=True) + 1e-6).sqrt()


def detail_loss(y: torch.Tensor, x: torch.Tensor, hole: torch.Tensor, window: int,
                where: torch.Tensor | None = None) -> torch.Tensor:
    """Edge energy per window against the truth's, in the hole: |avgpool(|grad y|) - avgpool(|grad x|)|.

    A decoder trained on pixel losses draws the conditional mean: a thin line whose exact place the tokens do not
    pin down comes out faint or not at all (the seed's "flat colour"). Matching the amount of edge per window,
    wherever it lies inside the window, asks for the line at its likeliest place instead; the pixel loss keeps it
    there. A texture statistic in the manner of Gatys et al. 2015 (matching statistics, not positions), here the
    first moment of the gradient magnitude. ``where`` (B x g x g bool, g = S / window): the windows counted."""
    ey, ex = (F.avg_pool2d(edge_energy(t), window) for t in (y, x))
    w = F.avg_pool2d(hole, window)
    if where is not None:
        w = w * where[:, None].to(w.dtype)
    return ((ey - ex).abs() * w).sum() / w.sum().clamp(min=1)


def token_pattern(x: torch.Tensor, hole: torch.Tensor, patch: int) -> torch.Tensor:
    """p x p: the mean over the tokens wholly inside ``hole`` of each token's grey pixels minus the token's mean."""
    tiles = x.mean(1).unfold(1, patch, patch).unfold(2, patch, patch)  # B x g x g x p x p
    tiles = tiles - tiles.mean((-1, -2), keepdim=True)
    w = (F.avg_pool2d(hole, patch)[:, 0] > 0.999).to(x.dtype)
    return (tiles * w[..., None, None]).sum((0, 1, 2)) / w.sum().clamp(min=1)


def pattern_loss(y: torch.Tensor, x: torch.Tensor, hole: torch.Tensor, patch: int) -> torch.Tensor:
    """|token_pattern(y) - token_pattern(x)|, averaged over the p x p positions.

    The decoder turns each token into its p x p pixels with a pixel shuffle, whose every sub-pixel position has
    weights of its own: it can lay one fixed texture into every token, locked to the token grid (the checkerboard
    artefact of sub-pixel convolution; Odena, Dumoulin & Olah 2016, "Deconvolution and Checkerboard Artifacts";
    Aitken et al. 2017). An edge-energy loss (``detail_loss``) makes that texture the cheapest way to add edges.
    Real content sits at every phase of the grid, so averaged over many tokens it leaves (almost) no pattern: the
    decoder's average token must not have more of one than the truth's."""
    return (token_pattern(y, hole, patch) - token_pattern(x, hole, patch)).abs().mean()


def tokenizer_config(cfg: TrainConfig, channels: int) -> TokenizerConfig:
    return TokenizerConfig(channels=channels, size=cfg.size, patch=cfg.patch, levels=tuple(cfg.levels),
                           enc_hidden=cfg.enc_hidden, dec_grid=cfg.dec_grid, dec_pixel=cfg.dec_pixel,
                           grid_blocks=cfg.grid_blocks, pixel_blocks=cfg.pixel_blocks)


def psnr(a: torch.Tensor, b: torch.Tensor, m: torch.Tensor | None = None) -> float:
    """Mean over images of the PSNR (8-bit scale) of [-1, 1] tensors, on ``m``'s pixels when given."""
    a, b = ((a.clamp(-1, 1) + 1) * 127.5).round(), ((b + 1) * 127.5).round()
    d = (a - b) ** 2
    if m is None:
        mse = d.flatten(1).mean(1)
    else:
        w = m.expand_as(d).flatten(1)
        mse = (d.flatten(1) * w).sum(1) / w.sum(1).clamp(min=1)
    return float((10 * torch.log10(255.0 ** 2 / mse.clamp(min=1e-6))).mean())


@torch.no_grad()
def evaluate(net: Tokenizer, val: torch.Tensor, holes: torch.Tensor) -> dict:
    """Reconstruction quality: the ceiling of every fill. Tokens alone (whole image), and the guided decode on
    the validation holes (PSNR over the hole's pixels); codebook use on the validation images."""
    net.eval()
    ids = net.encode(val)
    alone = net.decode(ids)
    guided = net.decode(ids, val, holes)
    used = torch.bincount(ids.flatten(), minlength=net.config.codebook_size).float()
    p = used / used.sum()
    perplexity = float(torch.exp(-(p[p > 0] * p[p > 0].log()).sum()))
    net.train()
    return {"psnr_tokens_alone": round(psnr(alone, val), 3), "psnr_hole_guided": round(psnr(guided, val, holes), 3),
            "codes_used": int((used > 0).sum()), "codebook_size": net.config.codebook_size,
            "code_perplexity": round(perplexity, 1)}


def sample_grid(net: Tokenizer, val: torch.Tensor, holes: torch.Tensor, path: Path, k: int = 12) -> None:
    with torch.no_grad():
        net.eval()
        x, h = val[:k], holes[:k]
        ids = net.encode(x)
        rows = [x, net.decode(ids), x * (1 - h), net.decode(ids, x, h)]
        net.train()
    to8 = [((r.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy() for r in rows]
    D.save_png(path, D.grid_image(to8))


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    torch.set_num_threads(cfg.threads)
    device = compute_device(cfg.device)
    dist = distributed.setup(device)
    device = dist.device
    torch.manual_seed(cfg.seed + dist.rank)
    rng = np.random.default_rng(cfg.seed + 1000 * dist.rank)
    run = Path(cfg.out)
    if dist.is_main:
        run.mkdir(parents=True, exist_ok=True)

    images = D.domain_images(cfg.domain, "train", cfg.n_train)
    images = images[distributed.shard(len(images), dist)]
    val_images = D.domain_images(cfg.domain, "valid", cfg.n_valid)
    channels = images.shape[3]
    val = D.to_unit(val_images).to(device)
    val_holes = torch.from_numpy(editor_holes(np.random.default_rng(123), len(val), cfg.size)).float()[:, None]
    val_holes = val_holes.to(device)

    if cfg.init:  # e.g. a decoder fine-tuned under a shipped tokenizer whose ids its transformers were trained on
        try:
            net = load_tokenizer(cfg.init, device).requires_grad_(True)
        except InpaintError as exc:
            raise InpaintError(f"--init {cfg.init}: {exc}") from None
    else:
        net = Tokenizer(tokenizer_config(cfg, channels)).to(device)
    if cfg.decoder_only:
        net.encoder.requires_grad_(False)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0, betas=(0.9, 0.99))
    step, elapsed0, cpu0 = 0, 0.0, 0.0
    if resume and (run / "ckpt.safetensors").exists():
        step, elapsed0, cpu0 = D.load_checkpoint(run, net, opt)
        if dist.is_main:
            print(f"resumed from {run} at step {step}", flush=True)
    model = distributed.wrap(net, dist)
    disc, dopt = None, None
    if cfg.gan_start:
        torch.manual_seed(cfg.seed)
        disc = PatchDiscriminator(channels).to(device)
        dopt = torch.optim.AdamW(disc.parameters(), lr=cfg.gan_lr, weight_decay=0.0, betas=(0.5, 0.9))
        if resume and (run / "disc.safetensors").exists():
            D.load_checkpoint(run, disc, dopt, name="disc")
        distributed.broadcast(disc, dist)  # the same D on every rank; its gradients are averaged by hand below
    if dist.is_main:
        (run / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        print(f"tokenizer {count_params(net) / 1e6:.3f} M params, {net.config.codebook_size} codes, "
              f"{net.config.grid}x{net.config.grid} tokens, device {device}, world {dist.world}, "
              f"{len(images)} images on this rank", flush=True)

    t_start, cpu_start = time.time() - elapsed0, time.process_time() - cpu0
    log = open(run / "log.jsonl", "a") if dist.is_main else None
    pbar = tqdm(total=cfg.steps, initial=step, dynamic_ncols=True, mininterval=10, disable=not dist.is_main)
    net.train()
    while step < cfg.steps:
        if distributed.any_rank(bool(cfg.max_minutes) and time.time() - t_start > cfg.max_minutes * 60, dist):
            break  # all ranks together: one alone would leave the others waiting in an all-reduce
        idx = rng.integers(0, len(images), cfg.batch_size)
        x = D.to_unit(images[idx]).to(device)
        holes = editor_holes(rng, cfg.batch_size, cfg.size)
        holes[rng.uniform(size=cfg.batch_size) < 0.5] = True  # tokens alone
        h = torch.from_numpy(holes).float()[:, None].to(device)
        adversarial = disc is not None and step >= cfg.gan_start
        for group in opt.param_groups:
            group["lr"] = cfg.gan_lr if adversarial else distributed.lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
        with torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16):
            replace = None  # drawn only when asked, so the runs without it replay as before
            if cfg.code_noise:
                draw = torch.rand(len(x), net.config.grid, net.config.grid, device=device)
                replace = token_hole(h, net.config.patch) & (draw < cfg.code_noise)
            y = model(x, h, replace, cfg.code_shift)
        w = h + cfg.known_weight * (1 - h)
        y = y.float()
        err = y - x
        loss = ((err ** 2 + err.abs()) * w).sum() / (w.sum() * channels)
        if cfg.detail_weight:  # not on replaced tokens: there the true edges are not where the token says
            loss = loss + cfg.detail_weight * detail_loss(y, x, h, net.config.patch,
                                                     None if replace is None else ~replace)
        if cfg.pattern_weight:
            loss = loss + cfg.pattern_weight * pattern_loss(y, x, h, net.config.patch)
        g_adv = -disc(y).mean() if adversarial else torch.zeros(())
        opt.zero_grad(set_to_none=True)
        (loss + cfg.gan_weight * g_adv).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        d_loss = torch.zeros(())
        if adversarial:  # hinge loss, real = the training images, fake = the decoder's drawings
            logits = disc(torch.cat([x, y.detach()]))
            real, fake = logits[:len(x)], logits[len(x):]
            d_loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
            dopt.zero_grad(set_to_none=True)
            d_loss.backward()
            distributed.average_gradients(disc, dist)  # DDP allows one forward per backward; D has two
            dopt.step()
        step += 1
        pbar.update(1)
        if not dist.is_main:
            continue
        rec: dict = {}
        if step % cfg.log_every == 0:
            rec = {"step": step, "loss": round(loss.item(), 5), "time_s": round(time.time() - t_start, 1)}
            if adversarial:
                rec.update(g_adv=round(g_adv.item(), 4), d_loss=round(d_loss.item(), 4))
            pbar.set_postfix(loss=f"{loss.item():.4f}")
        if step % cfg.sample_every == 0:
            rec.update(step=step, **evaluate(net, val, val_holes))
            sample_grid(net, val, val_holes, run / "samples" / f"step_{step:06d}.png")
        if rec:
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % cfg.ckpt_every == 0:
            D.save_checkpoint(run, net, opt, step, asdict(cfg), time.time() - t_start,
                              time.process_time() - cpu_start)
            if disc is not None:
                D.save_checkpoint(run, disc, dopt, step, asdict(cfg), 0.0, name="disc")
    pbar.close()
    if dist.is_main:
        elapsed = time.time() - t_start
        D.save_checkpoint(run, net, opt, step, asdict(cfg), elapsed, time.process_time() - cpu_start)
        if disc is not None:
            D.save_checkpoint(run, disc, dopt, step, asdict(cfg), 0.0, name="disc")
        metrics = evaluate(net, val, val_holes)
        sample_grid(net, val, val_holes, run / "samples" / "final.png")
        facts = {"domain": cfg.domain, "steps": step, "wall_s": round(elapsed, 1),
                 "cpu_s": round(time.process_time() - cpu_start, 1), "world": dist.world,
                 "device": str(device), "train_config": asdict(cfg), "validation": metrics}
        save_tokenizer(run / "export", net, facts)
        print(f"done: {step} steps in {elapsed / 60:.1f} min; {json.dumps(metrics)} -> {run / 'export'}",
              flush=True)
        log.close()
    distributed.teardown(dist)
    return run / "export"


def main(argv: list[str] | None = None) -> None:
    cfg, resume = distributed.parse_config(TrainConfig, argv, __doc__)
    try:
        train(cfg, resume=resume)
    except InpaintError as exc:  # e.g. a missing --init folder: one line, not a traceback
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()

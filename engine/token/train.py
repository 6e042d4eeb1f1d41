"""Train a token transformer (engine/token/transformer.py) over a trained tokenizer's ids.

One flat script (nanoGPT manner). The training images are tokenized once (the tokenizer is frozen); each step
draws a batch of token grids and masks (engine/token/masks.py: MaskGIT's cosine ratio, half of the holes shaped
like an editor's), and scores cross-entropy with label smoothing on the masked positions only:

- bidirectional: the grid with MASK at the masked positions in, logits at those positions out (MaskGIT);
- autoregressive: the grid with MASK in the hole through the encoder; the hole's true ids in raster order after
  START through the causal decoder (teacher forcing), each input carrying the position it predicts.

The shipped models (docs/token.md; times in the model cards):

    python -m engine.token.train --variant bidirectional --domain mnist --tokenizer resources/models/token-fsq-mnist \
        --out runs/token-mnist --steps 2800 --lr 0.001 --warmup 100 --max-minutes 75
    python -m engine.token.train --variant autoregressive --domain mnist ... --out runs/token-mnist-ar \
        --steps 1400 --lr 0.001 --warmup 100 --decoder-input-dropout 0.6
    python -m engine.token.train --variant bidirectional --domain face ... --out runs/token-face-px \
        --init runs/token-face/export ...   # the face models: fine-tuned from ids-only weights (model cards)

Under torchrun (DDP: gloo on the CPU, nccl on a GPU; each rank its own shard of the images; rank 0 writes):

    torchrun --standalone --nproc_per_node 2 -m engine.token.train --domain mnist --tokenizer ... --out runs/t

Writes ``ckpt.safetensors`` + ``ckpt.json`` (resumed when present), ``samples/step_*.png`` (original | hole |
fill, on validation images with editor holes), ``log.jsonl`` and ``export/`` (the EMA weights: config.json with
the training facts, model.safetensors).
"""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from engine import distributed
from engine.api import InpaintError, drive
from engine.device import compute_device
from engine.token import data as D
from engine.token.fsq import Tokenizer, known_patches, load_tokenizer, token_hole
from engine.token.masks import editor_holes, training_masks
from engine.token.sampling import autoregressive_decode, maskgit_decode
from engine.token.transformer import (TransformerConfig, build, count_params, load_transformer, loss_masked,
                                      raster_order, teacher_forcing)
from engine.weights import save_pretrained


@dataclass
class TrainConfig:
    variant: str = "bidirectional"  # bidirectional | autoregressive
    domain: str = "mnist"  # mnist | face
    tokenizer: str = "resources/models/token-fsq-mnist"
    tokenizer_name: str = ""  # what the exported config calls the tokenizer ("" = the folder's name)
    out: str = "runs/token-mnist"
    width: int = 256
    layers: int = 6
    decoder_layers: int = 3  # autoregressive: decoder blocks among ``layers``
    heads: int = 8
    dropout: float = 0.0
    known_pixels: bool = True  # also feed each position its patch's known pixels (transformer.py)
    init: str = ""  # start from this exported transformer (same shape; ``init_from`` below)
    batch_size: int = 128  # per rank
    lr: float = 6e-4
    weight_decay: float = 0.05
    warmup: int = 150
    steps: int = 1500
    max_minutes: float = 0.0
    label_smoothing: float = 0.1
    decoder_input_dropout: float = 0.0  # autoregressive: share of teacher-forced inputs shown as MASK (below)
    ema_decay: float = 0.999
    flips: bool = False  # also train on the mirrored images (faces: their labels are mirror-invariant)
    n_train: int = 0  # 0 = the whole training split
    n_valid: int = 512  # validation images
    seed: int = 0
    threads: int = 1
    device: str = "auto"
    bf16: bool = True  # autocast to bfloat16: on a CPU with AMX, ~2.7x faster here
    log_every: int = 50
    val_every: int = 250
    sample_every: int = 500
    ckpt_every: int = 250


@torch.no_grad()
def tokenize(tok: Tokenizer, images: np.ndarray, device, batch: int = 1000) -> torch.Tensor:
    """N x S x S x C uint8 -> N x g*g ids (on the CPU)."""
    out = [tok.encode(D.to_unit(images[i:i + batch]).to(device)).flatten(1).cpu() for i in range(0, len(images), batch)]
    return torch.cat(out)


def pixel_input(images: np.ndarray, unknown: np.ndarray, patch: int, device) -> torch.Tensor:
    """The known-pixel input of N x S x S x C uint8 images whose ``unknown`` (N x S x S bool) pixels are hidden."""
    hole = torch.from_numpy(unknown).float()[:, None]
    return known_patches(D.to_unit(images), hole, patch).to(device)


def batch_loss(model, cfg: TransformerConfig, ids: torch.Tensor, masked: torch.Tensor, smoothing: float,
               pixels: torch.Tensor | None = None, input_dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, accuracy) on the masked positions only. ``ids`` B x N true ids, ``masked`` B x N bool, ``pixels``
    the known-pixel input (``fsq.known_patches``) for models that read it. ``input_dropout`` (autoregressive):
    each teacher-forced decoder input is MASK with this probability (word dropout, Bowman et al. 2016, sec. 3.3):
    on true prefixes alone the decoder learned to continue the token before it (background after background) and,
    written freely, left most holes empty; without the prefix it must read the encoder's view of the known
    tokens."""
    inp = torch.where(masked, torch.full_like(ids, cfg.mask_id), ids)
    if cfg.variant == "bidirectional":
        # the head on every position, then the masked ones: a fixed shape per step (a shape that changes every
        # step made oneDNN's bf16 kernel cache grow by ~1 GB a minute with the faces' 4375 codes)
        logits = model(inp, None, pixels)[masked]
        target = ids[masked]
    else:
        where, valid = raster_order(masked, bucket=16)
        prev = teacher_forcing(ids, where, valid, cfg.start_id)
        if input_dropout > 0:
            drop = torch.rand(prev.shape, device=prev.device) < input_dropout
            drop[:, 0] = False  # START stays: it is never a guess
            prev = torch.where(drop, torch.full_like(prev, cfg.mask_id), prev)
        logits = model(inp, prev, where, pixels)[valid]
        target = ids.gather(1, where)[valid]
    return loss_masked(logits, target, smoothing), (logits.argmax(-1) == target).float().mean()


@torch.no_grad()
def fill_grid(net, cfg: TransformerConfig, tok: Tokenizer, x: torch.Tensor, holes: torch.Tensor, seed: int = 0
              ) -> torch.Tensor:
    """Fill ``holes`` (B x 1 x S x S) of images ``x`` ([-1, 1]) with default decoding; returns the composites."""
    g = torch.Generator().manual_seed(seed)
    ids = tok.encode(x).flatten(1)
    th = token_hole(holes, tok.config.patch).flatten(1)
    start = torch.where(th, torch.full_like(ids, cfg.mask_id), ids)
    pixels = known_patches(x, holes, tok.config.patch) if cfg.pixels else None
    if cfg.variant == "bidirectional":
        out = drive(maskgit_decode(lambda i, at: net(i, at, pixels), start, cfg.mask_id, generator=g))
    else:
        out = drive(autoregressive_decode(net, start, cfg.mask_id, cfg.start_id, cfg.grid, generator=g,
                                          pixels=pixels))
    y = tok.decode(out.view(len(x), cfg.grid, cfg.grid), x, holes)
    return torch.where(holes > 0, y, x)


def fill_psnr(net, cfg: TransformerConfig, tok: Tokenizer, x: torch.Tensor, holes: torch.Tensor) -> float:
    """Hole PSNR (dB, pooled over the holes' pixels) of free-running fills, the model writing its own tokens as in
    the editor. The teacher-forced validation loss does not rank autoregressive models (the one that fills better
    can have the higher loss, docs/token.md); this does, for both variants."""
    err = ((fill_grid(net, cfg, tok, x, holes) - x) ** 2 * holes).sum() / (holes.sum() * x.shape[1])
    return 10.0 * math.log10(4.0 / max(err.item(), 1e-12))  # pixels in [-1, 1]: the range is 2


def sample_grid(net, cfg, tok, x, holes, path: Path) -> None:
    rows = [x, x * (1 - holes) - holes * 0.5, fill_grid(net, cfg, tok, x, holes)]
    to8 = [((r.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy() for r in rows]
    D.save_png(path, D.grid_image(to8))


@torch.no_grad()
def ema_update(ema, model, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1 - decay)


def init_from(net, folder: str) -> None:
    """Copy an exported transformer's weights into ``net`` (same variant and sizes). A model trained on ids
    alone may seed one that also reads the known pixels: the pixel layer it lacks starts at zero, so step 0
    computes exactly the old model, and training only adds what the pixels tell."""
    src = load_transformer(folder)
    shape = ("variant", "vocab", "grid", "width", "layers", "decoder_layers", "heads", "mlp")
    diff = [k for k in shape if getattr(src.config, k) != getattr(net.config, k)]
    if diff:
        raise InpaintError(f"--init {folder}: its {', '.join(diff)} differ from this run's")
    missing, unexpected = net.load_state_dict(src.state_dict(), strict=False)
    if unexpected or any(not k.startswith("pixel_in.") for k in missing):
        raise InpaintError(f"--init {folder}: weights do not fit (missing {missing}, unexpected {unexpected})")
    if missing:
        torch.nn.init.zeros_(net.pixel_in.weight)
        torch.nn.init.zeros_(net.pixel_in.bias)


def train(cfg: TrainConfig, resume: bool = True) -> Path:
    torch.set_num_threads(cfg.threads)
    device = compute_device(cfg.device)
    dist = distributed.setup(device)
    device = dist.device
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    rng = np.random.default_rng(cfg.seed + 1000 * dist.rank)
    run = Path(cfg.out)
    if dist.is_main:
        run.mkdir(parents=True, exist_ok=True)

    tok = load_tokenizer(cfg.tokenizer, device)
    tc = tok.config
    images = D.domain_images(cfg.domain, "train", cfg.n_train)
    images = images[distributed.shard(len(images), dist)]
    if cfg.flips:
        images = np.concatenate([images, images[:, :, ::-1]])
    train_ids = tokenize(tok, images, device)
    val_images = D.domain_images(cfg.domain, "valid", cfg.n_valid)
    val_ids = tokenize(tok, val_images, device).to(device)
    vrng = np.random.default_rng(7)
    val_masked, _, val_unknown = training_masks(vrng, len(val_ids), tc.grid, tc.patch, cfg.variant == "autoregressive")
    val_masked = torch.from_numpy(val_masked.reshape(len(val_ids), -1)).to(device)
    val_pixels = pixel_input(val_images, val_unknown, tc.patch, device) if cfg.known_pixels else None
    fill_x = D.to_unit(val_images[:128]).to(device)  # free-running fills scored each validation (fill_psnr)
    fill_holes = torch.from_numpy(editor_holes(np.random.default_rng(6), len(fill_x), tc.size)).float()[:, None]
    fill_holes = fill_holes.to(device)
    show = D.to_unit(val_images[:12]).to(device)
    show_holes = torch.from_numpy(editor_holes(np.random.default_rng(5), 12, tc.size)).float()[:, None].to(device)

    mc = TransformerConfig(variant=cfg.variant, vocab=tc.codebook_size, grid=tc.grid, width=cfg.width,
                           layers=cfg.layers, decoder_layers=cfg.decoder_layers, heads=cfg.heads,
                           dropout=cfg.dropout, tokenizer=cfg.tokenizer_name or Path(cfg.tokenizer).name,
                           pixels=tc.known_pixel_size if cfg.known_pixels else 0)
    net = build(mc).to(device)
    if cfg.init:
        init_from(net, cfg.init)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    step, elapsed0, cpu0 = 0, 0.0, 0.0
    if resume and (run / "ckpt.safetensors").exists():
        step, elapsed0, cpu0 = D.load_checkpoint(run, torch.nn.ModuleDict({"net": net, "ema": ema}), opt)
        if dist.is_main:
            print(f"resumed from {run} at step {step}", flush=True)
    model = distributed.wrap(net, dist)
    if dist.is_main:
        (run / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        print(f"{cfg.variant} transformer {count_params(net) / 1e6:.2f} M params, vocab {mc.vocab}, grid "
              f"{mc.grid}x{mc.grid}, device {device}, world {dist.world}, {len(train_ids)} token grids on this "
              f"rank", flush=True)

    t_start, cpu_start = time.time() - elapsed0, time.process_time() - cpu0
    log = open(run / "log.jsonl", "a") if dist.is_main else None
    pbar = tqdm(total=cfg.steps, initial=step, dynamic_ncols=True, mininterval=10, disable=not dist.is_main)
    net.train()
    while step < cfg.steps:
        if distributed.any_rank(bool(cfg.max_minutes) and time.time() - t_start > cfg.max_minutes * 60, dist):
            break  # all ranks together: one alone would leave the others waiting in an all-reduce
        idx = rng.integers(0, len(train_ids), cfg.batch_size)
        ids = train_ids[torch.from_numpy(idx)].to(device)
        masked, _, unknown = training_masks(rng, cfg.batch_size, tc.grid, tc.patch, cfg.variant == "autoregressive")
        masked = torch.from_numpy(masked.reshape(cfg.batch_size, -1)).to(device)
        pixels = pixel_input(images[idx], unknown, tc.patch, device) if cfg.known_pixels else None
        for group in opt.param_groups:
            group["lr"] = distributed.lr_at(step, cfg.steps, cfg.lr, cfg.warmup)
        with torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16):
            loss, acc = batch_loss(model, mc, ids, masked, cfg.label_smoothing, pixels, cfg.decoder_input_dropout)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        ema_update(ema, net, min(cfg.ema_decay, (1 + step) / (10 + step)))
        pbar.update(1)
        if not dist.is_main:
            continue
        rec: dict = {}
        if step % cfg.log_every == 0:
            rec = {"step": step, "loss": round(loss.item(), 4), "acc": round(acc.item(), 4),
                   "time_s": round(time.time() - t_start, 1)}
            pbar.set_postfix(loss=f"{loss.item():.3f}", acc=f"{acc.item():.3f}")
        if step % cfg.val_every == 0 or step == cfg.steps:
            with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16):
                vl, va = batch_loss(ema, mc, val_ids, val_masked, 0.0, val_pixels)
            fill_db = fill_psnr(ema, mc, tok, fill_x, fill_holes)  # in float32, as the editor fills
            rec.update(step=step, val_loss=round(vl.item(), 4), val_acc=round(va.item(), 4),
                       val_fill_psnr=round(fill_db, 3), time_s=round(time.time() - t_start, 1))
        if rec:
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if step % cfg.sample_every == 0:
            sample_grid(ema, mc, tok, show, show_holes, run / "samples" / f"step_{step:06d}.png")
        if step % cfg.ckpt_every == 0:
            D.save_checkpoint(run, torch.nn.ModuleDict({"net": net, "ema": ema}), opt, step, asdict(cfg),
                              time.time() - t_start, time.process_time() - cpu_start)
    pbar.close()
    if dist.is_main:
        elapsed = time.time() - t_start
        D.save_checkpoint(run, torch.nn.ModuleDict({"net": net, "ema": ema}), opt, step, asdict(cfg), elapsed,
                          time.process_time() - cpu_start)
        sample_grid(ema, mc, tok, show, show_holes, run / "samples" / "final.png")
        with torch.no_grad():
            vl, va = batch_loss(ema, mc, val_ids, val_masked, 0.0, val_pixels)
        facts = {"domain": cfg.domain, "steps": step, "wall_s": round(elapsed, 1),
                 "cpu_s": round(time.process_time() - cpu_start, 1), "world": dist.world,
                 "device": str(device), "train_config": asdict(cfg),
                 "validation": {"loss": round(vl.item(), 4), "token_accuracy": round(va.item(), 4),
                                "fill_psnr": round(fill_psnr(ema, mc, tok, fill_x, fill_holes), 3)}}
        save_pretrained(run / "export", ema, mc, facts, int8=True)  # a quarter of the bytes, same accuracy
        print(f"done: {step} steps in {elapsed / 60:.1f} min, val loss {vl.item():.4f} -> {run / 'export'}",
              flush=True)
        log.close()
    distributed.teardown(dist)
    return run / "export"


def main(argv: list[str] | None = None) -> None:
    cfg, resume = distributed.parse_config(TrainConfig, argv, __doc__)
    try:
        train(cfg, resume=resume)
    except InpaintError as exc:  # a missing tokenizer or --init folder: one line, not a traceback
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()

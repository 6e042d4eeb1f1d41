"""Train the face cVAE inpainter: BCE + 0.5 KL pretraining, discriminator warm-up, adversarial fine-tuning.

    python -m engine.face.train                                   # procedural portraits, all four mask regimes
    python -m engine.face.train --data celeba --root ~/data/celeba --pretrain-minutes 120 --gan-minutes 60
    python -m engine.face.train --tiny --pretrain-steps 2 --gan-steps 2 --out /tmp/face-tiny   # smoke test

Phases (the seed's recipe; Larsen et al. 2016 for the VAE-GAN loss):
  1. pretrain: loss = BCE(x_hat, x) + 0.5 KL(q(z | x_masked, m) || N(0, I)), true attribute labels to the decoder;
  2. discriminator warm-up: D alone for ``--d-warmup`` steps, so its first gradients are informative;
  3. fine-tune: D and G alternate; G adds ``--adv-weight`` x the non-saturating adversarial loss.
Optional attribute classifier C (Bao et al. 2017, CVAE-GAN, sec. 3.2; the cross-entropy form of AC-GAN): with
``--cls-weight`` > 0 a small classifier is first trained on the *training* pool (never on the benchmark's
classifier seeds) and frozen; G then adds ``--cls-weight`` x BCE(C(composite), requested attributes), in both
phases. With ``--flip-prob`` p, that share of the mouth / eye-band samples asks for the opposite of the hidden
attribute (a smile on a closed mouth, glasses off on a face that wears them): those samples have no ground truth
in the hole, so their hole drops out of the reconstruction term and only C (and D) judge it. This trains the
control the editor offers, not just reconstruction with the true label.
Each phase is bounded by steps and/or minutes (whichever comes first), so a CPU run has a known duration.
The generator is written to ``--out`` (config.json with the config and training facts + model.safetensors)
at the end of each phase and every ``--save-every`` steps, with a training state beside it
(``train-state.safetensors`` + ``.json``: both networks, the optimisers, the phase and its step) that ``--resume``
continues from. Under ``torchrun`` it trains data-parallel (engine.distributed: each rank its own shard of the pool,
gradients averaged over the ranks, only rank 0 writes), e.g. on 4 GPUs:

    torchrun --nproc_per_node 4 -m engine.face.train --data celeba --root ~/data/celeba --device cuda
"""
from __future__ import annotations

import argparse
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine import distributed
from engine.api import InpaintError
from engine.device import compute_device, describe
from engine.face.data import REGIMES, PoolSampler, procedural_pool, sample_masks
from engine.face.model import (Discriminator, FaceConfig, FaceCVAE, count_params, kl_divergence,
                               reconstruction_bce, save_pretrained)
from engine.weights import load_training_state, save_training_state


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=("procedural", "celeba"), default="procedural")
    p.add_argument("--root", help="CelebA folder (img_align_celeba/, list_attr_celeba.txt, list_eval_partition.txt)")
    p.add_argument("--out", default="resources/models/face-cvae")
    p.add_argument("--res", type=int, default=64, choices=(64, 128))
    p.add_argument("--ch", type=int, default=16)
    p.add_argument("--z-dim", type=int, default=128)
    p.add_argument("--emb-dim", type=int, default=8)
    p.add_argument("--disc-ch", type=int, default=16)
    p.add_argument("--no-skips", action="store_true", help="the seed's plain bottleneck (no U-Net skips)")
    p.add_argument("--attr-at-z-only", action="store_true", help="attribute embeddings only at z (the seed)")
    p.add_argument("--tiny", action="store_true", help="tiny network and pool (tests)")
    p.add_argument("--pool", type=int, default=12000, help="procedural faces rendered once and cached")
    p.add_argument("--regimes", default=",".join(REGIMES), help="mask regimes to train on, comma-separated")
    p.add_argument("--regime-weights", default="0.15,0.15,0.35,0.35",
                   help="sampling weights of the regimes, in --regimes order (attribute regimes weigh more)")
    p.add_argument("--init", help="start the generator from this model folder (continue a run)")
    p.add_argument("--resume", action="store_true", help="continue the run whose training state is in --out")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--gan-lr", type=float, default=2e-4)
    p.add_argument("--hole-weight", type=float, default=10.0)
    p.add_argument("--kl-weight", type=float, default=0.5)
    p.add_argument("--adv-weight", type=float, default=100.0)
    p.add_argument("--pretrain-steps", type=int, default=10**9)
    p.add_argument("--pretrain-minutes", type=float, default=14.0)
    p.add_argument("--d-warmup", type=int, default=60)
    p.add_argument("--gan-steps", type=int, default=10**9)
    p.add_argument("--gan-minutes", type=float, default=7.0)
    p.add_argument("--cls-weight", type=float, default=0.0, help="weight of the attribute-classifier loss (0 = off)")
    p.add_argument("--cls-steps", type=int, default=600, help="training steps of that classifier before it is frozen")
    p.add_argument("--flip-prob", type=float, default=0.0,
                   help="share of mouth / eye-band samples that request the opposite hidden attribute")
    p.add_argument("--save-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (a CUDA GPU when there is one), cpu, cuda or cuda:N; "
                   "batches are drawn on the CPU and moved")
    return p.parse_args(argv)


def to_tensors(imgs, labels, masks):
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.from_numpy(masks).unsqueeze(1).float()
    return x, m, torch.from_numpy(labels).float()


HIDDEN = {REGIMES.index("mouth"): 0, REGIMES.index("eyes"): 1}  # mask regime -> the attribute its hole hides


def requests(rng, attrs: torch.Tensor, regimes, flip_prob: float, hole_weight: float):
    """What the decoder is asked for: the true attributes, except that a ``flip_prob`` share of the mouth / eye-band
    samples asks for the opposite of the attribute their hole hides. Returns (requested B x 2, hole weight
    B x 1 x 1 x 1): a flipped sample has no ground truth in its hole, so its hole weight is 0."""
    want, hole_w = attrs.clone(), torch.full((len(attrs), 1, 1, 1), float(hole_weight))
    for i, r in enumerate(regimes):
        if int(r) in HIDDEN and rng.uniform() < flip_prob:
            want[i, HIDDEN[int(r)]] = 1.0 - want[i, HIDDEN[int(r)]]
            hole_w[i] = 0.0
    return want, hole_w


def train_classifier(sampler, rng, steps: int, batch: int, device: torch.device, log=print):
    """The CVAE-GAN's classifier C: trained on the cVAE's own training pool, then frozen (a fixed judge for G)."""
    from engine.face.classifier import AttributeClassifier, train_step

    clf, t0 = AttributeClassifier().to(device), time.time()
    opt = torch.optim.Adam(clf.parameters(), lr=2e-3)
    for step in range(1, steps + 1):
        imgs, labels, _, _ = sampler.batch(rng, batch)
        loss = train_step(clf, opt, rng, imgs, labels)
        if step % 100 == 0 or step == steps:
            log(f"classifier C step {step}/{steps} loss {loss:.4f} ({time.time() - t0:.0f} s)", flush=True)
    return clf.eval().requires_grad_(False)


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        d = distributed.setup(compute_device(args.device))
    except InpaintError as exc:
        raise SystemExit(f"error: {exc}") from None
    device = d.device
    log = print if d.is_main else (lambda *a, **k: None)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)  # the same initial networks on every rank
    rng = np.random.default_rng(args.seed + 1000 * d.rank)  # each rank its own batches
    if args.tiny:
        args.ch, args.z_dim, args.emb_dim, args.disc_ch = 8, 16, 4, 8
        args.pool, args.batch = min(args.pool, 64), min(args.batch, 8)
    cfg = FaceConfig(res=args.res, ch=args.ch, z_dim=args.z_dim, emb_dim=args.emb_dim, disc_ch=args.disc_ch,
                     skips=not args.no_skips, attr_everywhere=not args.attr_at_z_only)
    regimes = [REGIMES.index(r.strip()) for r in args.regimes.split(",") if r.strip()]
    weights = ([float(w) for w in args.regime_weights.split(",")] if len(regimes) == len(REGIMES)
               else [1.0] * len(regimes))
    probs = np.array(weights[:len(regimes)]) / sum(weights[:len(regimes)])

    if args.data == "celeba":
        from engine.face.celeba import CelebA

        if not args.root:
            raise SystemExit("--data celeba needs --root DIR")
        full = CelebA(args.root, "train", args.res)
        sampler = CelebA(args.root, "train", args.res)
        part = distributed.shard(len(sampler.files), d)
        sampler.files, sampler.labels = sampler.files[part], sampler.labels[part]
        log(f"CelebA train split: {len(full)} images")
    else:
        if not d.is_main:  # rank 0 renders the pool into the cache first, the others read it
            distributed.barrier(d)
        pool = procedural_pool(args.pool, args.res, cache=not args.tiny, log=log)
        if d.is_main:
            distributed.barrier(d)
        full = PoolSampler(*pool)
        sampler = PoolSampler(*(a[distributed.shard(args.pool, d)] for a in pool))
        log(f"procedural pool: {args.pool} faces at {args.res}px" + (f", {d.world} shards" if d.active else ""))

    G, D = FaceCVAE(cfg), Discriminator(cfg)
    if args.init:
        from engine.face.model import from_pretrained

        G.load_state_dict(from_pretrained(args.init).state_dict())
        log(f"generator initialised from {args.init}")
    G, D = G.to(device), D.to(device)
    distributed.broadcast(G, d)
    distributed.broadcast(D, d)
    log(f"generator {count_params(G) / 1e6:.2f}M params, discriminator {count_params(D) / 1e6:.2f}M")
    opt_g = torch.optim.Adam(G.parameters(), lr=args.lr, betas=(0.9, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=args.gan_lr, betas=(0.5, 0.999))
    state_path = Path(args.out) / "train-state"
    done = {"phase": "pretrain", "step": 0, "seconds": 0.0}  # where a resumed run continues
    if args.resume:
        if not state_path.with_suffix(".json").is_file():
            raise SystemExit(f"error: --resume: no training state in {args.out}")
        done = load_training_state(state_path, {"G": G, "D": D}, {"opt_g": opt_g, "opt_d": opt_d})
        if done["phase"] == "done":
            raise SystemExit(f"{args.out}: this run has finished (nothing to resume)")
        torch.manual_seed(args.seed + 1000 * d.rank + done["step"])
        log(f"resumed {args.out}: {done['phase']} at step {done['step']}")
    facts = {"data": args.data, "regimes": [REGIMES[r] for r in regimes], "regime_probs": probs.round(3).tolist(),
             "init": args.init, "batch": args.batch, "lr": args.lr,
             "hole_weight": args.hole_weight, "kl_weight": args.kl_weight, "adv_weight": args.adv_weight,
             "cls_weight": args.cls_weight, "flip_prob": args.flip_prob,
             "threads": args.threads, "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
             "device": describe(device), "ranks": d.world,
             "torch": torch.__version__, "steps": {}, "seconds": {}}
    facts.update(done.get("facts", {}))

    def get_batch():
        """x, mask, true attributes, requested attributes, per-sample hole weight (0 where the request is flipped)."""
        imgs, labels, mouth, eyes = sampler.batch(rng, args.batch)
        reg = rng.choice(regimes, size=args.batch, p=probs)
        x, m, a = to_tensors(imgs, labels, sample_masks(rng, args.res, mouth, eyes, reg))
        return tuple(v.to(device) for v in (x, m, a) + requests(rng, a, reg, args.flip_prob, args.hole_weight))

    clf = None
    if args.cls_weight > 0:  # the same judge on every rank: the whole pool, the run's seed
        clf = train_classifier(full, np.random.default_rng(args.seed), args.cls_steps, args.batch * 4, device, log)

    def vae_loss(x, m, want, hole_w):
        logits, mu, logvar = G(x, m, want)
        rec = reconstruction_bce(logits, x, m, hole_w).mean()
        kl = kl_divergence(mu, logvar).mean()
        cls = (F.binary_cross_entropy_with_logits(clf(composite(logits, x, m)), want) if clf
               else torch.zeros((), device=x.device))
        return logits, rec, kl, cls

    def save(phase, step, seconds):
        """The generator (what ships) and the training state (to resume), from rank 0 only."""
        if not d.is_main:
            return
        facts["config"] = asdict(cfg)
        facts["process_cpu_seconds"] = round(time.process_time())
        save_pretrained(G, args.out, facts)
        save_training_state(state_path, {"G": G, "D": D}, {"opt_g": opt_g, "opt_d": opt_d},
                            {"phase": phase, "step": step, "seconds": seconds, "facts": facts})
        print(f"[{phase}] saved {args.out}", flush=True)

    def step_g(loss):
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(G, d)
        opt_g.step()

    def composite(logits, x, m):
        return torch.sigmoid(logits) * m + x * (1 - m)

    # ---- 1. pretraining: BCE + 0.5 KL --------------------------------------------------------------------------
    G.train()
    pretraining = done["phase"] == "pretrain"  # not when a resumed run is past it
    step = done["step"]
    t0, avg = time.time() - done["seconds"], None
    while pretraining and not distributed.any_rank(step >= args.pretrain_steps
                                                   or time.time() - t0 >= args.pretrain_minutes * 60, d):
        x, m, a, want, hole_w = get_batch()
        _, rec, kl, cls = vae_loss(x, m, want, hole_w)
        loss = rec + args.kl_weight * kl + args.cls_weight * cls
        step_g(loss)
        step += 1
        cur = np.array([loss.item(), rec.item(), kl.item(), cls.item()])
        avg = cur if avg is None else 0.95 * avg + 0.05 * cur
        if step % args.log_every == 0 or step == 1:
            el = time.time() - t0
            log(f"pretrain step {step} loss {avg[0]:.1f} bce {avg[1]:.1f} kl {avg[2]:.1f} cls {avg[3]:.3f} "
                f"({el / step:.3f} s/step, {el / 60:.1f} min, cpu {time.process_time() / 60:.1f} min)", flush=True)
        if step % args.save_every == 0:
            facts["steps"]["pretrain"], facts["seconds"]["pretrain"] = step, round(time.time() - t0)
            save("pretrain", step, time.time() - t0)
    if pretraining:
        facts["steps"]["pretrain"], facts["seconds"]["pretrain"] = step, round(time.time() - t0)
        save("gan", 0, 0.0)  # pretraining ends: a resume starts the adversarial phase

    if args.gan_steps <= 0 or args.gan_minutes <= 0:
        distributed.teardown(d)
        return
    # ---- 2. discriminator warm-up ---------------------------------------------------------------------------------
    for g in opt_g.param_groups:
        g["lr"], g["betas"] = args.gan_lr, (0.5, 0.999)

    def d_step(x, m, a, want):
        with torch.no_grad():
            logits, _, _ = G(x, m, want)
            fake = composite(logits, x, m)
        # Real: the true image with the same mask channel; fake: the composite. Also a "wrong attribute" real
        # (flipped labels) counts as fake, so the projection term learns to check the attributes.
        flip = a.clone()
        k = torch.randint(0, a.shape[1], (a.shape[0],)).to(a.device)
        rows = torch.arange(a.shape[0], device=a.device)
        flip[rows, k] = 1 - flip[rows, k]
        d_real, d_fake, d_wrong = D(x, m, a), D(fake, m, want), D(x, m, flip)
        loss = (F.softplus(-d_real).mean() + 0.5 * F.softplus(d_fake).mean() + 0.5 * F.softplus(d_wrong).mean())
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(D, d)
        opt_d.step()
        return loss.item(), (d_real > 0).float().mean().item(), (d_fake < 0).float().mean().item()

    resumed = done["phase"] == "gan" and done["step"] > 0
    if not resumed:  # a resumed adversarial phase has its warmed-up D in the training state
        t1 = time.time()
        for i in range(args.d_warmup):
            x, m, a, want, _ = get_batch()
            ld, acc_r, acc_f = d_step(x, m, a, want)
            if (i + 1) % args.log_every == 0:
                log(f"D warm-up {i + 1}/{args.d_warmup} loss {ld:.3f} acc real {acc_r:.2f} fake {acc_f:.2f}",
                    flush=True)
        facts["steps"]["d_warmup"], facts["seconds"]["d_warmup"] = args.d_warmup, round(time.time() - t1)

    # ---- 3. adversarial fine-tuning -------------------------------------------------------------------------------
    step = done["step"] if resumed else 0
    t2, avg = time.time() - (done["seconds"] if resumed else 0.0), None
    while not distributed.any_rank(step >= args.gan_steps or time.time() - t2 >= args.gan_minutes * 60, d):
        x, m, a, want, hole_w = get_batch()
        ld, acc_r, acc_f = d_step(x, m, a, want)
        logits, rec, kl, cls = vae_loss(x, m, want, hole_w)
        adv = F.softplus(-D(composite(logits, x, m), m, want)).mean()  # non-saturating: -log D(G(.))
        loss = rec + args.kl_weight * kl + args.adv_weight * adv + args.cls_weight * cls
        step_g(loss)
        step += 1
        cur = np.array([rec.item(), kl.item(), adv.item(), ld, acc_r, acc_f, cls.item()])
        avg = cur if avg is None else 0.95 * avg + 0.05 * cur
        if step % args.log_every == 0 or step == 1:
            el = time.time() - t2
            log(f"gan step {step} bce {avg[0]:.1f} kl {avg[1]:.1f} adv {avg[2]:.3f} cls {avg[6]:.3f} | "
                f"D loss {avg[3]:.3f} acc real {avg[4]:.2f} fake {avg[5]:.2f} "
                f"({el / step:.3f} s/step, {el / 60:.1f} min, cpu {time.process_time() / 60:.1f} min)", flush=True)
        if step % args.save_every == 0:
            facts["steps"]["gan"], facts["seconds"]["gan"] = step, round(time.time() - t2)
            save("gan", step, time.time() - t2)
    facts["steps"]["gan"], facts["seconds"]["gan"] = step, round(time.time() - t2)
    facts["seconds"]["total"] = round(time.time() - t0)
    save("done", step, time.time() - t2)
    distributed.teardown(d)
    if avg is not None and not math.isfinite(float(avg[0])):
        raise SystemExit("training diverged (non-finite loss)")


if __name__ == "__main__":
    main()

"""Which fast-mode schedule: readable digits against seconds for one digit (issue 25: "a RePaint fast fill of one
digit under 1.5 s").

Fast mode is 20 strided levels with resampling on the band t = 200-400 (j = 4); its cost is the number of times
that band is resampled (r) and whether each UNet call also runs backwards (the manifold constraint, MCG). Each
variant ``r:mcg`` is measured twice, side by side in one run:

- readable: the shipped digit classifier on fills of the first ``--n`` digits of the MNIST *validation* split
  (not the test split the published table uses, so that choosing a schedule here does not tune on it) under the
  three masks of benchmarks/repaint_mnist.py, batched, same noise seed for every variant;
- seconds: one test digit (bottom half masked) at batch 1 through the UNet's trace as the editor runs it, model
  warm, the variants interleaved, median of ``--reps``.

    python benchmarks/repaint_fast_variants.py --n 100 --threads 2

Prints a table and writes benchmarks/results/repaint_fast_variants.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.repaint_mnist import accuracy_by_mask, make_masks, stacked, to_tensor, to_uint8  # noqa: E402
from benchmarks.report import write_report  # noqa: E402
from engine.datasets import load_mnist  # noqa: E402
from engine.ddpm import MNIST_DIR  # noqa: E402
from engine.ddpm.classifier import DEFAULT_DIR as CLASSIFIER_DIR, load_classifier  # noqa: E402
from engine.ddpm.model import load_ddpm  # noqa: E402
from engine.ddpm.pipeline import FAST  # noqa: E402
from engine.diffusion.repaint import repaint  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "repaint_fast_variants.json"


def variant(spec: str):
    """"r:mcg" on fast mode's schedule, or "r:mcg:j" (another jump length), or "r:mcg:j:t_T:level" (t_T strided
    levels, resampling at ``level``)."""
    r, mcg, *rest = spec.split(":")
    cfg = replace(FAST, jump_n_sample=int(r), mcg=float(mcg))
    if rest:
        cfg = replace(cfg, jump_length=int(rest[0]))
    if len(rest) == 3:
        cfg = replace(cfg, t_T=int(rest[1]), resample_levels=(int(rest[2]),))
    return cfg


def readable(ddpm, clf, cfgs: dict, n: int, batch: int) -> dict:
    images, labels = load_mnist("valid")
    imgs, masks, names = stacked(images[:n], make_masks())
    labs = np.tile(labels[:n], len(make_masks()))
    out = {}
    for spec, cfg in cfgs.items():
        filled, t0 = [], time.perf_counter()
        for i in range(0, len(imgs), batch):
            x = repaint(ddpm.traced, ddpm.schedule, to_tensor(imgs[i:i + batch]),
                        torch.from_numpy(masks[i:i + batch]).float().unsqueeze(1), cfg,
                        generator=torch.Generator().manual_seed(i))
            filled.append(to_uint8(x))
        filled = np.where(masks, np.concatenate(filled), imgs)
        out[spec] = accuracy_by_mask(clf, filled, labs, names)
        print(f"  {spec}: readable {out[spec]['mean']:.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def one_digit_seconds(ddpm, cfgs: dict, reps: int) -> dict:
    digits, _ = load_mnist("test")
    image = to_tensor(digits[7:8])
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 14:, :] = 1
    times: dict[str, list[float]] = {}
    for rep in range(reps + 1):  # the first round traces and warms up
        for spec, cfg in cfgs.items():
            t0 = time.perf_counter()
            repaint(ddpm.traced, ddpm.schedule, image, mask, cfg, generator=torch.Generator().manual_seed(0))
            if rep:
                times.setdefault(spec, []).append(time.perf_counter() - t0)
    return {spec: float(np.median(v)) for spec, v in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="40:1,40:0,20:1,20:2,20:0,10:1,10:2,5:2",
                    help="comma-separated r:mcg (resamples of the band : MCG step); 40:1 is the shipped fast mode")
    ap.add_argument("--n", type=int, default=100, help="validation digits per mask")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ddpm = load_ddpm(MNIST_DIR)
    clf = load_classifier(CLASSIFIER_DIR)
    cfgs = {spec: variant(spec) for spec in args.variants.split(",")}
    print(f"readable digits, {args.n} validation digits x 3 masks:", flush=True)
    acc = readable(ddpm, clf, cfgs, args.n, args.batch)
    secs = one_digit_seconds(ddpm, cfgs, args.reps)
    rows = [{"variant": spec, "resamples": cfg.jump_n_sample, "mcg": cfg.mcg, "unet_calls": cfg.unet_calls,
             "unet_backward": cfg.unet_backward, "readable": acc[spec], "one_digit_s": round(secs[spec], 3)}
            for spec, cfg in cfgs.items()]
    print(f"\n{'variant':<12}{'calls':>6}{'back':>6}{'left':>7}{'bottom':>8}{'centre':>8}{'mean':>7}{'s/digit':>9}")
    for r in rows:
        a = r["readable"]
        print(f"{r['variant']:<12}{r['unet_calls']:>6}{r['unet_backward']:>6}{a['left_half']:>7.3f}"
              f"{a['bottom_half']:>8.3f}{a['centre_14']:>8.3f}{a['mean']:>7.3f}{r['one_digit_s']:>9.2f}")
    write_report(args.out, {"rows": rows, "n_per_mask": args.n, "split": "valid", "threads": args.threads},
                 __file__, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

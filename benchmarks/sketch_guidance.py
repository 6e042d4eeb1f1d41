"""Sketch fidelity vs. realism of LGP guidance (Voynov et al. 2022) on the project's MNIST DDPM.

For n test digits: sketch e = Canny edges of the digit (what the LGP was trained on). For each beta the DDPM
samples with guidance towards e (beta = 0: no guidance), then we measure
- edge F1 between e and the Canny edges of the result (a pixel matches within ``--tol`` pixels; per-image F1,
  averaged), and the symmetric chamfer distance (mean nearest-edge distance, both directions, in pixels);
- realism / readability: the share of results that the project's digit classifier reads as the sketched digit.
Modes: "generate" (whole canvas is the hole) and "inpaint" (the bottom half is the hole, the top half is the real
digit; F1 inside the hole only; the RePaint constraint keeps the top half).

    python benchmarks/sketch_guidance.py --n 64 --steps 50 --betas 0,0.5,1,2,4

Prints a table; writes JSON to benchmarks/results/sketch_guidance.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.edges import canny_edges  # noqa: E402
from engine.sketch import DDPM_DIR, LGP_MNIST_DIR  # noqa: E402


def edge_f1(sketch: np.ndarray, result_edges: np.ndarray, tol: int = 1, region: np.ndarray | None = None):
    """(precision, recall, F1) with a match radius of ``tol`` pixels (0 = exact pixel), optionally inside
    ``region`` only."""
    if region is not None:
        sketch, result_edges = sketch & region, result_edges & region
    if tol > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tol + 1, 2 * tol + 1))
        near_s = cv2.dilate(sketch.astype(np.uint8), k) > 0
        near_r = cv2.dilate(result_edges.astype(np.uint8), k) > 0
    else:
        near_s, near_r = sketch, result_edges
    n_r, n_s = int(result_edges.sum()), int(sketch.sum())
    p = float((result_edges & near_s).sum() / n_r) if n_r else 0.0
    r = float((sketch & near_r).sum() / n_s) if n_s else 0.0
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


def chamfer(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Symmetric mean distance (pixels) from each edge pixel of one map to the nearest of the other."""
    if region is not None:
        a, b = a & region, b & region
    if not a.any() or not b.any():
        return float(max(a.shape))
    da = cv2.distanceTransform((~a).astype(np.uint8), cv2.DIST_L2, 3)
    db = cv2.distanceTransform((~b).astype(np.uint8), cv2.DIST_L2, 3)
    return float(0.5 * (db[a].mean() + da[b].mean()))


def load_classifier(which: str = "project", folder: str = ""):
    """The project's digit classifier (engine/ddpm/classifier.py + resources/models/mnist-classifier):
    returns (name, fn: N x 28 x 28 uint8 -> N labels); ("none", None) with ``which="none"`` (smoke runs)."""
    if which == "none":
        return "none", None
    from engine.ddpm.classifier import load_classifier as load, predict

    model = load(folder) if folder else load()
    return "engine.ddpm.classifier", lambda imgs: np.asarray(predict(model, imgs))


def to_28(images_u8: np.ndarray) -> np.ndarray:
    n, s, _ = images_u8.shape
    if s == 28:
        return images_u8
    if s > 28:
        o = (s - 28) // 2
        return images_u8[:, o:o + 28, o:o + 28]
    return np.stack([cv2.resize(im, (28, 28), interpolation=cv2.INTER_CUBIC) for im in images_u8])


def run(args) -> dict:
    """The shipped model's sampler: RePaint (``steps`` strided levels, ``resample`` visits each) with the LGP hook on
    the first ``share`` of the levels; in "generate" mode the whole canvas is the hole."""
    from engine.api import drive
    from engine.ddpm.model import load_ddpm
    from engine.diffusion.repaint import repaint_steps
    from engine.diffusion.schedule import strided
    from engine.sketch.guidance import SketchGuidance
    from engine.sketch.lgp import LatentGuidancePredictor
    from engine.sketch.pipeline import sketch_repaint
    from engine.sketch.pixel import mnist_pairs

    torch.set_num_threads(args.threads)
    ddpm = load_ddpm(ROOT / args.ddpm)
    lgp = LatentGuidancePredictor.load(ROOT / args.lgp)
    size = ddpm.sample_size
    cfg = sketch_repaint(args.steps, args.resample)
    t_min = SketchGuidance.t_min_for(strided(ddpm.schedule.num_train_timesteps, cfg.t_T), args.share)
    x0, sketches, labels = mnist_pairs(size, "test", args.n, lgp.config.edge_method, seed=args.seed)
    clf_name, classify = load_classifier(args.classifier, args.classifier_dir)
    if args.classifier_dir:
        clf_name += f" ({args.classifier_dir})"
    sk_np = sketches[:, 0].numpy() > 0.5
    results = []
    for mode in args.modes.split(","):
        hole = torch.ones(len(x0), 1, size, size)
        region = np.ones((size, size), bool)
        if mode == "inpaint":
            hole[:, :, : size // 2] = 0
            region[: size // 2] = False
        for beta in [float(b) for b in args.betas.split(",")]:
            t0 = time.time()
            out = []
            for s in range(0, len(x0), args.batch):
                sl = slice(s, s + args.batch)
                gen = torch.Generator().manual_seed(args.seed + s)
                weight = hole[sl] if mode == "inpaint" else None
                with SketchGuidance(ddpm.unet, lgp, sketches[sl], ddpm.schedule.alphas_cumprod, beta, t_min,
                                    weight) as g:
                    out.append(drive(repaint_steps(ddpm.unet, ddpm.schedule, x0[sl], hole[sl], cfg, generator=gen,
                                                   guidance=g)))
            x = torch.cat(out)
            imgs = ((x[:, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
            edges = [canny_edges(np.repeat(im[..., None], 3, 2)) for im in imgs]
            prf = np.array([edge_f1(sk_np[i], edges[i], args.tol, region) for i in range(len(imgs))])
            f1_exact = float(np.mean([edge_f1(sk_np[i], edges[i], 0, region)[2] for i in range(len(imgs))]))
            ch = float(np.mean([chamfer(sk_np[i], edges[i], region) for i in range(len(imgs))]))
            pred = classify(to_28(imgs)) if classify is not None else None
            row = {"mode": mode, "beta": beta, "precision": float(prf[:, 0].mean()),
                   "recall": float(prf[:, 1].mean()),
                   "edge_f1": float(prf[:, 2].mean()), "edge_f1_exact": f1_exact, "chamfer_px": ch,
                   "classifier_agreement": None if pred is None else float((pred == labels).mean()),
                   "seconds": round(time.time() - t0, 1)}
            results.append(row)
            print(f"{mode:8s} beta {beta:4.1f}  F1 {row['edge_f1']:.3f}  P {row['precision']:.3f}  "
                  f"R {row['recall']:.3f}  chamfer {ch:.2f}px  agree {_fmt(row['classifier_agreement'])}  "
                  f"{row['seconds']:.0f}s", flush=True)
            if args.save_grid:
                grid = np.concatenate([np.concatenate(list(imgs[:16]), 1),
                                       np.concatenate(list(sk_np[:16].astype(np.uint8) * 255), 1)], 0)
                cv2.imwrite(str(ROOT / "benchmarks" / "results" / f"sketch_{mode}_beta{beta:g}.png"), grid)
    return {"benchmark": "sketch_guidance", "ddpm": str(args.ddpm), "lgp": str(args.lgp), "n": int(len(x0)),
            "steps": args.steps, "share": args.share, "resample": args.resample, "tol_px": args.tol,
            "edge_method": lgp.config.edge_method, "classifier": clf_name,
            "hardware": f"{platform.machine()} CPU, torch {torch.__version__}, {args.threads} thread(s)",
            "command": "python benchmarks/sketch_guidance.py " + " ".join(sys.argv[1:]), "results": results}


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def table(report: dict) -> str:
    lines = [f"{'mode':8s} {'beta':>5s} {'edge F1':>8s} {'F1 tol0':>8s} {'P':>6s} {'R':>6s} {'chamfer':>8s} "
             f"{'agree':>6s}"]
    for r in report["results"]:
        lines.append(f"{r['mode']:8s} {r['beta']:5.1f} {r['edge_f1']:8.3f} {r['edge_f1_exact']:8.3f} "
                     f"{r['precision']:6.3f} {r['recall']:6.3f} {r['chamfer_px']:8.2f} "
                     f"{_fmt(r['classifier_agreement']):>6s}")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ddpm", default=DDPM_DIR)
    ap.add_argument("--lgp", default=LGP_MNIST_DIR)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--share", type=float, default=0.5)
    ap.add_argument("--resample", type=int, default=1)
    ap.add_argument("--betas", default="0,0.5,1,2,4")
    ap.add_argument("--modes", default="generate,inpaint")
    ap.add_argument("--tol", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-grid", action="store_true")
    ap.add_argument("--classifier", default="project", choices=("project", "none"))
    ap.add_argument("--classifier-dir", default="", help="weights folder (default: resources/models/mnist-classifier)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sketch_guidance.json"))
    args = ap.parse_args(argv)
    (ROOT / "benchmarks" / "results").mkdir(parents=True, exist_ok=True)
    report = run(args)
    print(table(report))
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Token transformers on faces: hole quality, attributes, a Frechet distance and the seed's failure modes.

Held-out procedural portraits (seeds from ``engine.face.data.EVAL_SEED``: neither the token models, the face cVAE
nor the attribute classifier saw them), 64 x 64, the face benchmark's four hole regimes (small and big
rectangles, mouth box, eye band; ``regime_masks(..., seed=3)`` as benchmarks/face_attributes.py). Methods:

- ``token-face`` (MaskGIT, defaults), ``token-face-ar`` (raster order, defaults), and the seed's decoding
  (argmax, one pass) on token-face's network;
- ``tokenizer reconstruction (ceiling)``: the true tokens decoded with the same known pixels;
- ``face-cvae``: the shipped cVAE, told the true smile / glasses (variation 0), as in face_attributes.py;
- ``telea``: OpenCV Telea, radius 5.

Measures: hole PSNR / SSIM (face_attributes.hole_metrics); the attribute classifier's agreement with the attribute
the hole covers (smile under the mouth box, glasses under the eye band; the renderer draws each attribute only
inside its box, so a model not told the attribute can only guess it: chance is about 0.5); a Frechet distance
between the composites' and the intact faces' features at the attribute classifier's penultimate layer (the 64
channels averaged over the image, before its linear head), per regime; the failure modes of
benchmarks/token_common.py with their thresholds (fixed before training). Seconds per image: batch wall / size.

    python benchmarks/token_faces.py --n 300 --threads 1

Writes benchmarks/results/token_faces.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.face_attributes import fill_batch, hole_metrics, load_cvae, telea_batch  # noqa: E402
from benchmarks.token_common import (THRESHOLDS, failure_modes, fmt, frechet_distance,  # noqa: E402
                                     model_defaults, passes, reconstruction, token_fill)
from engine.face.data import EVAL_SEED, REGIMES, procedural_pool, regime_masks  # noqa: E402
from engine.weights import MODELS_DIR  # noqa: E402

BIDIR, AR = model_defaults("token-face"), model_defaults("token-face-ar")  # what a user's Fill decodes with
COVERS = {"mouth": 0, "eyes": 1}  # which attribute column a regime's hole hides


@torch.no_grad()
def penultimate(clf, images: np.ndarray) -> np.ndarray:
    from engine.face.classifier import to_tensor

    clf.eval()
    return torch.cat([clf.features(to_tensor(images[i:i + 256]) * 2 - 1).mean((2, 3))
                      for i in range(0, len(images), 256)]).numpy()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=300, help="held-out faces")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default=str(MODELS_DIR))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "token_faces.json"))
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    models = Path(a.models)

    from engine.face.classifier import FOLDER as CLF_DIR, AttributeClassifier, ClassifierConfig, predict
    from engine.token.fsq import load_tokenizer
    from engine.weights import load_pretrained

    clf = load_pretrained(CLF_DIR, AttributeClassifier, ClassifierConfig)[0]
    tok = load_tokenizer(models / "token-fsq-face")
    imgs, labels, mouth, eyes = procedural_pool(a.n, 64, start=EVAL_SEED, log=None)
    masks = {r: regime_masks(64, r, mouth, eyes, seed=3) for r in REGIMES}
    truth_feat = penultimate(clf, imgs)
    all_truth = np.concatenate([imgs] * len(REGIMES))
    all_masks = np.concatenate([masks[r] for r in REGIMES])
    recon = {r: reconstruction(tok, imgs, masks[r]) for r in REGIMES}
    all_recon = np.concatenate([recon[r] for r in REGIMES])
    results: dict = {"setup": {
        "faces": a.n, "heldout_seeds": [EVAL_SEED, EVAL_SEED + a.n], "regimes": list(REGIMES), "threads": a.threads,
        "batch": a.batch, "seed": a.seed, "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "thresholds": THRESHOLDS,
        "fd_features": "face-attr-classifier penultimate layer (64 channels, spatial mean)",
        "token_face_params": BIDIR, "token_face_ar_params": AR,
        "face_cvae": "told the true attributes, variation 0"}, "methods": {}}

    def report(name: str, fills: dict[str, np.ndarray], seconds: float | None = None) -> None:
        entry: dict = {"regimes": {}}
        for r in REGIMES:
            ps, ss = hole_metrics(fills[r], imgs, masks[r])
            pred = predict(clf, fills[r]) > 0.5
            row = {"psnr": round(ps, 3), "ssim": round(ss, 4),
                   "frechet_distance": round(frechet_distance(penultimate(clf, fills[r]), truth_feat), 4),
                   "attributes_agree": round(float((pred == (labels > 0.5)).mean()), 4)}
            if r in COVERS:
                c = COVERS[r]
                row["hidden_attribute_agrees"] = round(float((pred[:, c] == (labels[:, c] > 0.5)).mean()), 4)
            entry["regimes"][r] = row
        for k in ("psnr", "ssim", "frechet_distance"):
            entry[k] = round(float(np.mean([entry["regimes"][r][k] for r in REGIMES])), 4)
        entry["hidden_attribute_agrees"] = round(float(np.mean([entry["regimes"][r]["hidden_attribute_agrees"]
                                                                for r in COVERS])), 4)
        if seconds is not None:
            entry["wall_s_per_image"] = seconds
        all_fills = np.concatenate([fills[r] for r in REGIMES])
        fm = failure_modes(tok, all_fills, all_truth, all_masks, all_recon)
        entry["failure_modes"] = fm
        entry["failure_modes_pass"] = passes(fm, faces=True)
        results["methods"][name] = entry
        print(f"  {name}: PSNR {entry['psnr']:.2f} SSIM {entry['ssim']:.3f} FD {entry['frechet_distance']:.3f} "
              f"{json.dumps(fm)}", flush=True)

    report("intact (upper bound)", {r: imgs for r in REGIMES})
    report("tokenizer reconstruction (ceiling)", recon)
    t0 = time.perf_counter()
    telea = {r: telea_batch(imgs, masks[r]) for r in REGIMES}
    report("telea", telea, (time.perf_counter() - t0) / (a.n * len(REGIMES)))
    cvae = load_cvae(MODELS_DIR / "face-cvae")
    t0 = time.perf_counter()
    filled = {r: fill_batch(cvae, imgs, masks[r], labels, 0.0) for r in REGIMES}
    report("face-cvae (told the attributes)", filled, (time.perf_counter() - t0) / (a.n * len(REGIMES)))
    seed_style = {"iterations": 1, "temperature": 0.0, "top_k": 0, "confidence_noise": 0.0}
    for name, folder, params in (("token-face", "token-face", BIDIR), ("token-face-ar", "token-face-ar", AR),
                                 ("token-face, seed's decoding (argmax, one pass)", "token-face", seed_style)):
        fills, wall = {}, 0.0
        for r in REGIMES:
            fills[r], timing = token_fill(models / folder, imgs, masks[r], params, a.seed, a.batch)
            wall += timing["wall_s"]
        report(name, fills, wall / (a.n * len(REGIMES)))
    print_table(results)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {a.out}")
    return results


def print_table(results: dict) -> None:
    print()
    print("| method | " + " | ".join(f"{r} PSNR / SSIM" for r in REGIMES) + " | mean PSNR / SSIM | FD | hidden attr. "
          "agrees | line rel | detail rel | saturation rel | empty fills | s/img |")
    print("|---|" + "---|" * (len(REGIMES) + 8))
    for name, e in results["methods"].items():
        fm = e["failure_modes"]
        cells = " | ".join(f"{e['regimes'][r]['psnr']:.2f} / {e['regimes'][r]['ssim']:.3f}" for r in REGIMES)
        print(f"| {name} | {cells} | {e['psnr']:.2f} / {e['ssim']:.3f} | {e['frechet_distance']:.3f} | "
              f"{e['hidden_attribute_agrees']:.2f} | {fmt(fm['line_rel'])} | {fmt(fm['detail_rel'])} | "
              f"{fmt(fm.get('saturation_rel'))} | {fm['empty_fills']:.3f} | {fmt(e.get('wall_s_per_image'), 4)} |")


if __name__ == "__main__":
    main()

"""RePaint fast mode where users wait (issue 25): one digit in the editor, and a folder of digits through the CLI.

Two measurements, each side by side in one run (these machines are noisy: compare the ratios):

1. One digit (MNIST test digit 7, bottom half masked, fast mode, seed 0) through the runner, in this process,
   model loaded and warm: the UNet called through diffusers' modules ("eager") against the TorchScript trace the
   pipeline uses (``engine.ddpm.model.DDPM.traced``), with the editor's MCG step (1.0) and without it (0), the four
   settings interleaved, median of ``--reps``.
2. A folder of ``--digits`` digits through ``python main.py inpaint --image DIR`` in fresh processes: ``--batch 1``
   (one at a time, as before) against the model's batch (32), wall time including start-up; the outputs of the two
   should be the same: each digit has its own generator, so they differ only where float sums come out in another
   order at another batch size (with two threads, the manifold constraint's gradient); the table says how many
   differ and by how much.

    python benchmarks/repaint_speed.py --threads 1

Prints two tables and writes benchmarks/results/repaint_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_report  # noqa: E402
OUT = ROOT / "benchmarks" / "results" / "repaint_speed.json"


def one_digit(reps: int) -> list[dict]:
    from engine import registry
    from engine.api import Request
    from engine.datasets import load_mnist
    from engine.ddpm.model import DDPM
    from engine.runner import run_to_end

    digits, _ = load_mnist("test")
    rgb = np.repeat(digits[7][..., None], 3, axis=2)
    mask = np.zeros((28, 28), bool)
    mask[14:] = True
    model = registry.load("repaint-mnist")
    traced = DDPM.traced
    calls = {"eager": lambda self, x, t: self.unet(x, t), "traced": traced}
    times: dict[tuple, list[float]] = {}
    try:
        for rep in range(reps + 1):  # the first round warms up (and traces)
            for mcg in (1.0, 0.0):
                for name, call in calls.items():
                    DDPM.traced = call
                    t0 = time.perf_counter()
                    run_to_end(model, Request(rgb, mask, seed=0, params={"fast": True, "mcg": mcg}))
                    if rep:
                        times.setdefault((name, mcg), []).append(time.perf_counter() - t0)
    finally:
        DDPM.traced = traced
    return [{"unet": name, "mcg": mcg, "median_s": float(np.median(v)), "runs_s": [round(x, 3) for x in v]}
            for (name, mcg), v in times.items()]


def folder(n: int, threads: int) -> list[dict]:
    from PIL import Image

    from engine.datasets import load_mnist

    digits, _ = load_mnist("test")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        img, msk = Path(tmp, "img"), Path(tmp, "mask")
        img.mkdir()
        msk.mkdir()
        m = np.zeros((28, 28), np.uint8)
        m[14:] = 255
        for i in range(n):
            Image.fromarray(digits[i]).save(img / f"{i:03d}.png")
            Image.fromarray(m).save(msk / f"{i:03d}.png")
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        outs = {}
        for batch in (1, 32):
            out = Path(tmp, f"out{batch}")
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, str(ROOT / "main.py"), "inpaint", "--model", "repaint-mnist",
                                   "--param", "fast=1", "--image", str(img), "--mask", str(msk), "--out", f"{out}/",
                                   "--batch", str(batch)], capture_output=True, text=True, env=env, cwd=ROOT)
            wall = time.perf_counter() - t0
            if done.returncode:
                raise SystemExit(f"--batch {batch} failed: {done.stderr.strip().splitlines()[-1]}")
            outs[batch] = [np.asarray(Image.open(p)) for p in sorted(out.iterdir())]
            rows.append({"batch": batch, "digits": n, "wall_s": round(wall, 2), "s_per_digit": round(wall / n, 3)})
        diffs = [int(np.abs(a.astype(int) - b).max()) for a, b in zip(outs[1], outs[32])]
        rows[1].update(identical_to_one_at_a_time=not any(diffs), images_differing=sum(d > 0 for d in diffs),
                       max_abs_difference=max(diffs))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--digits", type=int, default=96, help="folder size (start-up is paid once either way)")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    single = one_digit(args.reps)
    base = {r["mcg"]: r["median_s"] for r in single if r["unet"] == "eager"}
    print(f"\none digit, fast mode, {args.threads} thread(s), median of {args.reps}")
    print(f"{'unet':<8}{'mcg':>5}{'seconds':>9}{'vs eager':>10}")
    for r in single:
        r["speedup_vs_eager"] = round(base[r["mcg"]] / r["median_s"], 2)
        print(f"{r['unet']:<8}{r['mcg']:>5.1f}{r['median_s']:>9.2f}{r['speedup_vs_eager']:>9.2f}x")
    rows = folder(args.digits, args.threads)
    ratio = rows[0]["wall_s"] / rows[1]["wall_s"]
    print(f"\na folder of {args.digits} digits through the CLI (fresh processes, start-up included)")
    print(f"{'--batch':<9}{'wall s':>8}{'s/digit':>9}")
    for r in rows:
        print(f"{r['batch']:<9}{r['wall_s']:>8.1f}{r['s_per_digit']:>9.3f}")
    print(f"throughput, batched / one at a time: {ratio:.2f}x; outputs differing: {rows[1]['images_differing']} of "
          f"{args.digits} (at most {rows[1]['max_abs_difference']} grey levels)")
    report = {"one_digit": single, "folder": rows, "folder_throughput_ratio": round(ratio, 2),
              "threads": args.threads}
    write_report(args.out, report, __file__, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How fast the frugal model learns and fills on this CPU, by the way it uses the cores.

Learning: the default TrainConfig (64 px crops, batch 8) on one texture for ``--seconds`` per run, in three ways:
torch's intra-op threads at 1 and at N (all cores, what torch does by default), and the batch cut into slices
learned on their own threads (``engine.frugal.train.Shards``, the default: it times 1, 2, 4 .. N slices at the start
and keeps the fastest). Runs are interleaved ``--repeats`` times so that a drift in the machine's load hits every
way alike. Filling: the app's default fill (half-size patch draft, automatic guidance, 25 steps) of the 128 px hole
at 1 and N threads, with the net of the last run. Where a CUDA GPU is present, learning and filling on it are one
more row of each table, so the ratio to the CPU comes from one run. Prints a table and writes
benchmarks/results/frugal_speed.json.

    python benchmarks/frugal_speed.py [--seconds 30] [--repeats 2] [--texture grass]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as main.py: idle OpenMP threads must not spin
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.frugal_textures import load_texture, regions  # noqa: E402
from engine.api import drive  # noqa: E402
from engine.registry import get_info  # noqa: E402
from engine.frugal import pipeline, train as tr  # noqa: E402
from engine.frugal.guidance import AUTO_WS  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "frugal_speed.json"


def learn(img: np.ndarray, test: np.ndarray, seconds: float, threads: int, parallel: bool, device: str = "cpu"):
    torch.set_num_threads(threads)
    cfg = tr.TrainConfig(minutes=seconds / 60)
    net, stats = drive(tr.train([img], [test], cfg, parallel=parallel, device=device))
    return net, cfg, stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="learning time per run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--texture", default="grass")
    ap.add_argument("--fills", type=int, default=3, help="fills timed per thread count")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    cores = os.cpu_count() or 1
    img = load_texture(args.texture)
    test, hole = regions(img.shape)
    ways = {"1 thread": (1, False, "cpu"), f"{cores} threads": (cores, False, "cpu"),
            f"slices (up to {cores})": (cores, True, "cpu")}
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    if gpu:
        ways["GPU"] = (cores, False, "cuda")
    runs: dict[str, list[dict]] = {k: [] for k in ways}
    net = cfg = None
    for r in range(args.repeats):
        for name, (threads, parallel, device) in ways.items():
            net, cfg, stats = learn(img, test, args.seconds, threads, parallel, device)
            runs[name].append({"iterations": stats["iterations"], "seconds": stats["seconds"],
                               **{k: stats[k] for k in ("slices", "seconds_per_iteration") if k in stats}})
            print(f"  run {r + 1} {name}: {stats['iterations']} iterations", flush=True)
    base = np.mean([x["iterations"] / x["seconds"] for x in runs["1 thread"]])
    learning = {}
    print(f"\nLearning ({args.texture}, crop {cfg.crop}, batch {cfg.batch}, {args.seconds:g} s per run, "
          f"{args.repeats} runs each, {cores} cores)")
    print(f"{'way':22s} {'it/s':>7s} {'vs 1 thread':>12s} {'3-min Learn':>12s}")
    for name, xs in runs.items():
        rate = float(np.mean([x["iterations"] / x["seconds"] for x in xs]))
        learning[name] = {"iterations_per_second": rate, "vs_1_thread": rate / base, "runs": xs}
        print(f"{name:22s} {rate:7.1f} {rate / base:11.2f}x {rate * 180:12.0f}")
    draft = float(get_info("frugal").param("draft_strength").default)
    filling = {}
    print(f"\nFilling the 128 px hole (default fill, draft {draft:g}, {args.fills} seeds)")
    for threads, device in [(t, "cpu") for t in sorted({1, cores})] + ([(cores, "cuda")] if gpu else []):
        torch.set_num_threads(threads)
        net.to(device)
        key, label = ("GPU", "GPU") if device == "cuda" else (str(threads), f"{threads} thread(s)")
        t0 = time.perf_counter()
        for s in range(args.fills):  # a fill returns numpy: the GPU's work is done when it returns
            drive(pipeline.fill(net, img, hole, AUTO_WS, 25, 1.0, s, None, draft))
        filling[key] = (time.perf_counter() - t0) / args.fills
        print(f"{label}: {filling[key]:.2f} s per fill")
    meta = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cores": cores,
            "torch": torch.__version__, "gpu": gpu, "texture": args.texture, "seconds": args.seconds,
            "repeats": args.repeats,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    Path(args.out).write_text(json.dumps({"meta": meta, "learning": learning, "fill_seconds": filling}, indent=1))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

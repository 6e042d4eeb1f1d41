"""Benchmark: the frugal-diffusion paper's Table 1 / Table 2 protocol on textures, on this CPU.

Per texture (scikit-image's brick, grass, gravel, moon, plus crops of hubble_deep_field and chelsea and a tiled
patch of coffee's wooden table): a 160x160 **test region** at the bottom right is held out (never seen while
learning, paper Fig. 2) and a 128x128 **hole** in its middle is filled by

- Diffusion  : the frugal UNet learned on the known region with the diffusion objective (``--minutes``), sampled
               with ``--eta`` (1 = ancestral) and autoguidance ``--guidance`` (the app's default "auto": w chosen per
               fill to match the detail around the hole; or a fixed weight), started from the patch method's fill
               noised to sigma = ``--draft`` (the app's default "Patch draft strength"; 0 = from pure noise)
- Diffusion-DDIM : the same learned weights sampled deterministically (eta = 0, Song et al. 2021); no extra learning
- Diffusion-noise : the same learned weights and guidance, sampled from pure noise (no draft)
- Diffusion-w1 : the same learned weights from pure noise without guidance (w = 1): the paper's plain sampler
- EDM / EDM-DDIM : with ``--precond``, the diffusion rows of a net learned with EDM preconditioning and loss weights
               (Karras et al. 2022); a separate run, combined with ``--merge``
- Regression : the same UNet learned for the same time by L2 regression on the hole (the paper's baseline)
- Patch      : multi-scale PatchMatch EM (Newson et al.), no learning
- Telea      : OpenCV fast marching, no learning

and measured on the hole, averaged over ``--samples`` sampling seeds for the stochastic methods: PSNR, SSIM
(engine.metrics), and the detail ratio (high-frequency energy of the fill
over that of the truth; 1.0 = as detailed). LPIPS is **not** reported: its VGG/AlexNet backbones cannot be
downloaded here, and no substitute is passed off as LPIPS.

Table 2 (frugality): CPU-core-hours for learning and for one fill (process CPU time, so it does not depend on how
loaded the shared machine was) and an energy estimate = core-hours x ``--watts-per-core`` (stated assumption).

    python benchmarks/frugal_textures.py --minutes 3            # about 7 x 2 x 3 min of learning, one core
    python benchmarks/frugal_textures.py --minutes 3 --threads 2   # learning on both cores, as the editor does
    python benchmarks/frugal_textures.py --minutes 0.2 --textures brick,grass --samples 2   # a smoke run

Prints the tables and writes ``benchmarks/results/frugal_textures.json`` (and per texture a montage PNG next to it:
truth, then one fill per method, of the test region).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.api import drive  # noqa: E402
from engine.classical.pipeline import opencv_inpaint  # noqa: E402
from engine.metrics import hole_metrics  # noqa: E402
from engine.patch.patchmatch import PatchConfig, patch_inpaint  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TEXTURES = ("brick", "grass", "gravel", "moon", "hubble", "chelsea", "wood-tile")


def _rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a[..., :3]


def load_texture(name: str) -> np.ndarray:
    """RGB uint8 texture images built only from images shipped inside scikit-image."""
    from skimage import data

    if name in ("brick", "grass", "gravel", "moon"):
        return _rgb(getattr(data, name)())
    if name == "hubble":  # a star field: stochastic point texture
        return data.hubble_deep_field()[180:692, 240:752].copy()
    if name == "chelsea":  # a photo, not a texture: fur and blurred background
        return data.chelsea().copy()
    if name == "wood-tile":  # a 96x96 piece of the coffee table, mirrored and tiled: a periodic texture
        tile = data.coffee()[300:396, 480:576]
        block = np.concatenate([np.concatenate([tile, tile[:, ::-1]], 1),
                                np.concatenate([tile[::-1], tile[::-1, ::-1]], 1)], 0)
        return np.tile(block, (2, 2, 1))[:384, :384].copy()
    raise KeyError(name)


def regions(shape: tuple[int, ...], test: int = 160, hole: int = 128, margin: int = 24):
    """Held-out test region at the bottom right and the hole centred in it (bool masks)."""
    h, w = shape[:2]
    t = np.zeros((h, w), bool)
    y0, x0 = h - margin - test, w - margin - test
    t[y0:y0 + test, x0:x0 + test] = True
    m = np.zeros((h, w), bool)
    o = (test - hole) // 2
    m[y0 + o:y0 + o + hole, x0 + o:x0 + o + hole] = True
    return t, m


def run_learned(objective: str, img: np.ndarray, test: np.ndarray, hole: np.ndarray, args
                ) -> tuple[list[np.ndarray], dict, dict[str, tuple[list[np.ndarray], dict]]]:
    """(fills, info, {row suffix: (fills, info)}) with ``args.samples`` sampling seeds for diffusion (one learned net;
    sampling is cheap): the extra rows are the eta = 0 fills ("-DDIM"), with a draft the fills from pure noise
    ("-noise"), and the paper's sampler (from noise, unguided: "-w1"); one fill for regression (deterministic, no extra
    rows)."""
    from engine.frugal import train as tr
    from engine.frugal.guidance import AUTO_WS, AutoGuided
    from engine.frugal.pipeline import fill, regress

    cfg = tr.TrainConfig(objective=objective, minutes=args.minutes, iterations=args.iterations, crop=args.crop,
                         batch=args.batch, seed=args.seed, lr=args.lr, ema=args.ema, guide_at=args.guide_at,
                         weighting="edm" if args.precond else "uniform")
    if args.precond and objective == "diffusion":
        cfg.unet.precond = True
    w0, c0 = time.perf_counter(), time.process_time()
    net, stats = drive(tr.train([img], [test], cfg, device=args.device))
    guided = isinstance(net, AutoGuided)
    auto = args.guidance == "auto"
    ws = (AUTO_WS if auto else (float(args.guidance),)) if guided else (1.0,)
    train_wall, train_cpu = time.perf_counter() - w0, time.process_time() - c0
    seeds = [args.seed + k for k in range(args.samples if objective == "diffusion" else 1)]
    n = len(seeds)

    def timed_fills(eta: float, draft: float = 0.0, ws: tuple[float, ...] = ws) -> tuple[list[np.ndarray], dict]:
        """One fill per seed (the hole only; the rest of the image kept), their mean wall / CPU time and the
        guidance weight of each (chosen per fill with automatic w)."""
        w0, c0 = time.perf_counter(), time.process_time()
        fs, chosen = [], []
        for s in seeds:
            if objective == "diffusion":
                out, _, w = drive(fill(net, img, hole, ws, args.steps, eta, s, None, draft))
            else:
                (box_fill, (x0, y0, x1, y1)), w = regress(net, img, hole), None
                out = img.copy()
                out[y0:y1, x0:x1] = box_fill
            fs.append(np.where(hole[..., None], out, img))
            chosen.append(w)
        return fs, {"infer_wall_s": (time.perf_counter() - w0) / n, "infer_cpu_s": (time.process_time() - c0) / n,
                    "guidance": float(np.mean(chosen)) if guided else None, "guidance_per_seed": chosen}

    fills, timing = timed_fills(args.eta, args.draft)
    info = {"train_wall_s": train_wall, "train_cpu_s": train_cpu, **timing, "iterations": stats["iterations"],
            "final_loss": stats["loss"], "params": stats["parameters"], "train_loop_s": stats["seconds"],
            "auto_guidance": guided and auto, "draft": args.draft if objective == "diffusion" else None,
            "slices": stats.get("slices"), "seconds_per_iteration": stats.get("seconds_per_iteration")}
    extra = {}
    if objective == "diffusion":
        fs, timing = timed_fills(0.0, args.draft)
        extra["-DDIM"] = (fs, dict(info, **timing))
        if args.draft > 0:
            fs, timing = timed_fills(args.eta)
            extra["-noise"] = (fs, dict(info, draft=0.0, **timing))
        if guided and ws != (1.0,):
            fs, timing = timed_fills(args.eta, ws=(1.0,))
            extra["-w1"] = (fs, dict(info, auto_guidance=False, draft=0.0, **timing))
    return fills, info, extra


def run_classical(kind: str, img: np.ndarray, hole: np.ndarray, args) -> tuple[list[np.ndarray], dict]:
    """Patch: ``args.samples`` seeds of its random search; Telea: one (deterministic)."""
    w0, c0 = time.perf_counter(), time.process_time()
    if kind == "patch":
        outs = [patch_inpaint(img, hole, PatchConfig(patch=args.patch, seed=args.seed + k))
                for k in range(args.samples)]
    else:
        outs = [opencv_inpaint(img, hole, 5, "telea")]
    return outs, {"train_wall_s": 0.0, "train_cpu_s": 0.0, "infer_wall_s": (time.perf_counter() - w0) / len(outs),
                  "infer_cpu_s": (time.process_time() - c0) / len(outs), "params": 0}


def sample_metrics(fills: list[np.ndarray], img: np.ndarray, hole: np.ndarray) -> dict:
    """Hole metrics averaged over the fills of several sampling seeds, with their per-seed values and sd."""
    per = [hole_metrics(f, img, hole) for f in fills]
    out: dict = {"samples": len(per)}
    for k in per[0]:
        vals = [p[k] for p in per]
        out[k] = float(np.mean(vals))
        out[f"{k}_sd"] = float(np.std(np.minimum(vals, PSNR_CAP) if k == "psnr" else vals))  # an exact copy: inf dB
        out[f"{k}_per_seed"] = vals
    return out


# table rows; -w1.5 and -draft are rows of earlier results (before the draft was the default), kept for --merge
METHODS = tuple(f"{m}{k}" for m in ("Diffusion", "EDM") for k in ("", "-DDIM", "-noise", "-w1.5", "-w1", "-draft")
                ) + ("Regression", "Patch", "Telea")
# --methods: Diffusion brings its DDIM, from-noise and unguided rows (EDM... with --precond)
RUN_METHODS = ("Diffusion", "Regression", "Patch", "Telea")
PSNR_CAP = 60.0  # an exact copy (periodic texture) has infinite PSNR; means use 60 dB for it


def _w(row: dict) -> str:
    """The guidance weight a learned diffusion row was sampled with ('' for the other methods); automatic w: the
    mean of the weights chosen per fill, marked with a leading 'a'."""
    if row.get("guidance") is None:
        return ""
    return f"a{row['guidance']:.2f}" if row.get("auto_guidance") else f"{row['guidance']:g}"


def table1(rows: dict) -> str:
    lines = [f"{'texture':<11}{'method':<15}{'PSNR':>7}{'SSIM':>7}{'+-sd':>6}{'detail':>8}{'+-sd':>6}{'n':>3}"
             f"{'params':>8}{'iters':>7}{'train s':>9}{'infer s':>9}{'w':>6}"]
    for tex, per in rows.items():
        for m in METHODS:
            if m not in per:
                continue
            r = per[m]
            lines.append(f"{tex:<11}{m:<15}{r['psnr']:7.2f}{r['ssim']:7.3f}{r.get('ssim_sd', 0):6.3f}"
                         f"{r['detail']:8.2f}{r.get('detail_sd', 0):6.2f}{r.get('samples', 1):>3}{r['params']:>8}"
                         f"{r.get('iterations', '-'):>7}{r['train_wall_s']:9.1f}{r['infer_wall_s']:9.2f}"
                         f"{_w(r):>6}")
    lines.append("-" * len(lines[0]))
    for m in METHODS:
        rs = [per[m] for per in rows.values() if m in per]
        if rs:
            mean = {k: float(np.mean([min(r[k], PSNR_CAP) if k == "psnr" else r[k] for r in rs]))
                    for k in ("psnr", "ssim", "detail", "train_wall_s", "infer_wall_s")}
            its = [r["iterations"] for r in rs if "iterations" in r]
            its_s = f"{np.mean(its):.0f}" if its else ""
            lines.append(f"{'MEAN':<11}{m:<15}{mean['psnr']:7.2f}{mean['ssim']:7.3f}{'':6}{mean['detail']:8.2f}"
                         f"{'':9}{rs[0]['params']:>8}{its_s:>7}{mean['train_wall_s']:9.1f}{mean['infer_wall_s']:9.2f}")
    lines.append(f"(PSNR of an exact copy is inf; means count it as {PSNR_CAP:g} dB)")
    return "\n".join(lines)


# the rows the targets are about
LEARNED = METHODS[:12]
DETAIL_TARGET, SSIM_SLACK = 0.7, 0.02


def targets(rows: dict) -> tuple[str, dict]:
    """The issue's targets per texture and diffusion row: detail >= 0.7 and hole SSIM >= the patch method's - 0.02.

    Detail is read two ways: the energy ratio of ``engine.metrics.detail_ratio`` (Telea ~0.02 on brick) and its
    square root, the RMS-amplitude ratio (Telea 0.15 on brick: the "Telea gets about 0.15" the issue quotes), each
    averaged over the sampling seeds."""
    lines = [f"{'texture':<11}{'method':<15}{'SSIM-patch':>11}{'energy':>8}{'rms':>6}  both met (energy / rms)"]
    out: dict = {}
    for tex, per in rows.items():
        if "Patch" not in per:
            continue
        for m in LEARNED:
            if m not in per:
                continue
            r = per[m]
            margin = r["ssim"] - per["Patch"]["ssim"]
            rms = float(np.mean(np.sqrt(r.get("detail_per_seed", [r["detail"]]))))
            ok_s = margin >= -SSIM_SLACK
            met = {"energy": bool(ok_s and r["detail"] >= DETAIL_TARGET), "rms": bool(ok_s and rms >= DETAIL_TARGET)}
            out.setdefault(tex, {})[m] = {"ssim_margin": margin, "detail": r["detail"], "detail_rms": rms, **met}
            marks = " / ".join("yes" if met[k] else "no" for k in ("energy", "rms"))
            lines.append(f"{tex:<11}{m:<15}{margin:+11.3f}{r['detail']:8.2f}{rms:6.2f}  {marks}")
    for k in ("energy", "rms"):
        hit = sorted(t for t, per in out.items() if any(v[k] for v in per.values()))
        lines.append(f"met with some diffusion row ({k}): {len(hit)}/{len(out)} {', '.join(hit)}")
    return "\n".join(lines), out


def print_tables(rows: dict, watts: float) -> dict:
    """Tables 1, 2 and the targets; returns what goes into the JSON next to the rows."""
    t2, energy = table2(rows, watts)
    t3, met = targets(rows)
    print("\nTable 1 - hole metrics (held-out test region), this CPU")
    print(table1(rows))
    print("\nTable 2 - frugality (CPU process time, per image)")
    print(t2)
    if met:
        print("\nTargets - detail >= 0.7 and hole SSIM >= patch - 0.02")
        print(t3)
    return {"table2": energy, "targets": met}


def table2(rows: dict, watts: float) -> tuple[str, dict]:
    lines = [f"{'method':<15}{'train core-h':>13}{'infer core-h':>13}{'energy kWh':>12}{'(per image: learn + 1 fill)'}"]
    out = {}
    for m in METHODS:
        rs = [per[m] for per in rows.values() if m in per]
        if not rs:
            continue
        tr_h = float(np.mean([r["train_cpu_s"] for r in rs])) / 3600
        in_h = float(np.mean([r["infer_cpu_s"] for r in rs])) / 3600
        kwh = (tr_h + in_h) * watts / 1000
        out[m] = {"train_core_hours": tr_h, "infer_core_hours": in_h, "energy_kwh": kwh}
        lines.append(f"{m:<15}{tr_h:13.4f}{in_h:13.5f}{kwh:12.5f}")
    lines.append(f"energy = CPU core-hours x {watts:g} W per core (assumption: a busy server core incl. its share "
                 f"of memory/uncore; the paper's GPU row is 0.25 kWh for 1 h of training)")
    return "\n".join(lines), out


def montage(img, fills: dict, test: np.ndarray, path: Path) -> None:
    ys, xs = np.nonzero(test)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    tiles = [img[y0:y1, x0:x1]] + [f[y0:y1, x0:x1] for f in fills.values()]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(tiles, 1), cv2.COLOR_RGB2BGR))


def merge(paths: list[str], out_path: Path, watts: float) -> int:
    rows, metas = {}, []
    for p in paths:
        d = json.loads(Path(p).read_text())
        for tex, per in d["textures"].items():  # parts may hold other methods of the same texture
            rows.setdefault(tex, {}).update(per)
        metas.append(d["meta"])
    extra = print_tables(rows, watts)
    out_path.write_text(json.dumps({"meta": {"parts": metas}, "textures": rows, **extra}, indent=1, default=float))
    print(f"\nwrote {out_path}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="learning time per learned model and texture")
    ap.add_argument("--iterations", type=int, default=0, help="cap on learning iterations (0 = time only)")
    ap.add_argument("--textures", default=",".join(TEXTURES))
    ap.add_argument("--methods", default=",".join(RUN_METHODS))
    ap.add_argument("--crop", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ema", type=float, default=0.0)
    ap.add_argument("--precond", action="store_true", help="EDM preconditioning + EDM loss weighting: the diffusion "
                    "rows are labelled EDM / EDM-DDIM")
    ap.add_argument("--guide-at", type=float, default=0.1, help="autoguidance snapshot as a share of the budget "
                    "(0 = no guidance)")
    ap.add_argument("--guidance", default="auto", type=lambda v: v if v == "auto" else float(v),
                    help="autoguidance: 'auto' (w chosen per fill, the app's default) or a fixed weight w (1 = off)")
    ap.add_argument("--draft", type=float, default=None, help="sampling started from the patch method's fill noised "
                    "to this sigma (default: the app's; 0 = from pure noise, and no Diffusion-noise row)")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--patch", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=int, default=5, help="sampling seeds averaged per learned diffusion model "
                    "and for the patch method's random search (one seed's hole SSIM varies by sd ~0.05)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads; learning cuts batches into up to this many "
                    "slices learned in parallel (the editor uses every core; 1: one process per core)")
    ap.add_argument("--watts-per-core", type=float, default=15.0)
    ap.add_argument("--device", default="cpu", help="where the learned models learn and fill: cpu (the protocol of "
                    "the CPU targets), cuda or cuda:N (e.g. the paper's recipe: --crop 256 --batch 16 --iterations "
                    "15000 --lr 1e-4); Table 2's energy row assumes CPU cores")
    ap.add_argument("--out", default=str(RESULTS / "frugal_textures.json"))
    ap.add_argument("--merge", nargs="+", help="only merge these partial JSON results (e.g. two halves run in "
                    "parallel with --textures) into --out and print the tables")
    args = ap.parse_args(argv)
    if args.draft is None:
        from engine.registry import get_info
        args.draft = float(get_info("frugal").param("draft_strength").default)
    if args.merge:
        return merge(args.merge, Path(args.out), args.watts_per_core)
    import torch

    from engine.api import InpaintError
    from engine.device import compute_device, describe

    try:
        args.device = str(compute_device(args.device))  # a string: the args are written to the JSON
    except InpaintError as exc:
        sys.exit(f"error: {exc}")
    torch.set_num_threads(args.threads)
    asked = {m.strip().lower() for m in args.methods.split(",") if m.strip()}
    unknown = asked - {m.lower() for m in RUN_METHODS}
    if unknown:
        sys.exit(f"error: unknown --methods {', '.join(sorted(unknown))}; choose from {', '.join(RUN_METHODS)}")
    methods = [m for m in RUN_METHODS if m.lower() in asked]
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows: dict = {}
    meta = {"args": vars(args), "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "torch": torch.__version__, "threads": args.threads, "device": describe(torch.device(args.device)),
            "load_before": os.getloadavg(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "lpips": "not reported: LPIPS backbones (VGG/AlexNet) are not downloadable offline"}
    for name in args.textures.split(","):
        img = load_texture(name)
        test, hole = regions(img.shape)
        per, fills = {}, {}
        for m in methods:
            extra: dict = {}
            if m in ("Diffusion", "Regression"):
                outs, info, extra = run_learned(m.lower(), img, test, hole, args)
            else:
                outs, info = run_classical(m.lower(), img, hole, args)
            row = "EDM" if m == "Diffusion" and args.precond else m
            for label, fs, inf in [(row, outs, info)] + [(row + k, fs, inf) for k, (fs, inf) in extra.items()]:
                assert all(np.array_equal(f[~hole], img[~hole]) for f in fs)
                inf.update(sample_metrics(fs, img, hole))
                inf["load"] = os.getloadavg()[0]
                per[label], fills[label] = inf, fs[0]
                print(f"{name:<10} {label:<15} PSNR {inf['psnr']:6.2f} SSIM {inf['ssim']:.3f}+-{inf['ssim_sd']:.3f} "
                      f"detail {inf['detail']:.2f}+-{inf['detail_sd']:.2f} (n={inf['samples']}) train "
                      f"{inf['train_wall_s']:.0f}s infer {inf['infer_wall_s']:.2f}s load {inf['load']:.1f}"
                      + (f" w {_w(inf)}" if inf.get("guidance") else ""), flush=True)
        rows[name] = per
        montage(img, fills, test, out_path.with_name(f"{out_path.stem}_{name}.png"))
        meta["load_after"] = os.getloadavg()
        # after each texture, so that a killed run keeps its rows (--merge derives the tables from them)
        out_path.write_text(json.dumps({"meta": meta, "textures": rows}, indent=1, default=float))
    extra = print_tables(rows, args.watts_per_core)
    out_path.write_text(json.dumps({"meta": meta, "textures": rows, **extra}, indent=1, default=float))
    print(f"\nwrote {out_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

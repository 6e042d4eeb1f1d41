"""RePaint on MNIST: can a digit classifier still read the digit after half of it was erased and filled?

MNIST test split, three fixed masks (left half, bottom half, centre 14x14 box). Fills compared:

- ``telea``: OpenCV Telea (``engine.classical.pipeline.opencv_inpaint``, radius 5);
- ``repaint-default``: our RePaint, t_T = 250, jump_length = 10, resamples = 10 (2,410 UNet calls);
- ``repaint-fast``: our fast mode (DDIM-strided + resampling, ``engine.ddpm.repaint.FAST``);
- ``train-set neighbours (k=10)``: a reference, not a method: for each test digit, the 10 training digits closest
  on the *known* pixels lend their hole pixels (10 fills per digit). This samples roughly from the data's own
  p(hole | known), so its accuracy estimates how often a faithful completion keeps the digit's label at all;
  half a digit is often genuinely ambiguous (the right half of a 3 or an 8, the top of a 4 or a 9);
- ``diffusers-repaint``: diffusers' ``RePaintPipeline`` on the same UNet with the same default schedule, on the
  same images as ``repaint-default``, for a side-by-side time ratio (its own beta indexing, eta = 1).

The shipped classifier (resources/models/mnist-classifier) reads every filled digit. Also reported: its accuracy
on the intact digits (upper bound) and on the masked digits with a black hole (no fill). Images are batched
through the UNet; per-image wall time = batch time / batch size (single thread on a shared CPU unless
``--threads`` says otherwise). Default RePaint costs 2,410 UNet calls per image, so it (and the diffusers run)
use fewer images (``--n-default``); the output says how many.

    python benchmarks/repaint_mnist.py --n 100 --n-default 10 --threads 1

Writes benchmarks/results/repaint_mnist.json and prints a table.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.classical.pipeline import opencv_inpaint  # noqa: E402
from engine.datasets import load_mnist  # noqa: E402
from engine.ddpm import MCG_DEFAULT, MNIST_DIR  # noqa: E402
from engine.ddpm.classifier import DEFAULT_DIR as CLASSIFIER_DIR, load_classifier, predict  # noqa: E402
from engine.ddpm.model import CountingUNet, load_ddpm  # noqa: E402
from engine.ddpm.pipeline import DEFAULT, FAST  # noqa: E402
from engine.diffusion.repaint import RePaintConfig, repaint  # noqa: E402


def make_masks() -> dict[str, np.ndarray]:
    """28 x 28 bool, True = fill."""
    left = np.zeros((28, 28), bool)
    left[:, :14] = True
    bottom = np.zeros((28, 28), bool)
    bottom[14:, :] = True
    centre = np.zeros((28, 28), bool)
    centre[7:21, 7:21] = True
    return {"left_half": left, "bottom_half": bottom, "centre_14": centre}


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div(127.5).sub(1).unsqueeze(1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return ((x[:, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()


def stacked(images: np.ndarray, masks: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every image under every mask: (N*M x 28 x 28 images, N*M x 28 x 28 masks, mask name per row)."""
    imgs, ms, names = [], [], []
    for name, m in masks.items():
        imgs.append(images)
        ms.append(np.broadcast_to(m, images.shape))
        names += [name] * len(images)
    return np.concatenate(imgs), np.concatenate(ms), names


def run_ours(unet, schedule, images: np.ndarray, masks: np.ndarray, cfg: RePaintConfig, seed: int, batch: int):
    """Fill in batches; timing with UNet forward calls and backward passes (MCG) per image."""
    counter = CountingUNet(unet)
    out, t0 = [], time.perf_counter()
    for i in range(0, len(images), batch):
        g = torch.Generator().manual_seed(seed + i)
        x = repaint(counter, schedule, to_tensor(images[i:i + batch]),
                    torch.from_numpy(masks[i:i + batch]).float().unsqueeze(1), cfg, generator=g)
        out.append(to_uint8(x))
    wall = time.perf_counter() - t0
    filled = np.concatenate(out)
    filled = np.where(masks, filled, images)
    calls = counter.calls // max(1, -(-len(images) // batch))
    return filled, {"unet_calls_per_image": calls, "unet_backward_per_image": cfg.unet_backward,
                    "wall_s_per_image": wall / len(images), "wall_s": wall, "batch": batch, "config": str(cfg)}


def row(mode: str, mcg: float, seed: int = 0) -> str:
    """Our sampler's result row: "repaint-default" / "repaint-fast" at the editor's MCG step and noise seed 0, else
    labelled (so that merged runs with other settings sit side by side)."""
    name = f"repaint-{mode}"
    if mcg != MCG_DEFAULT:
        name += ", no MCG (plain RePaint)" if mcg == 0 else f", mcg={mcg:g}"
    return name + (f", noise seed {seed}" if seed else "")


def run_diffusers(folder: str, images: np.ndarray, masks: np.ndarray, cfg: RePaintConfig, seed: int, batch: int,
                  num_train_timesteps: int, beta_schedule: str):
    """diffusers' RePaintPipeline with diffusers' own UNet2DModel, loaded from the same folder as ours."""
    from diffusers import RePaintPipeline, RePaintScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(folder, use_safetensors=True, local_files_only=True).eval()
    pipe = RePaintPipeline(unet=unet, scheduler=RePaintScheduler(
        num_train_timesteps=num_train_timesteps, beta_schedule=beta_schedule))
    calls = [0]
    hook = unet.register_forward_pre_hook(lambda module, args: calls.__setitem__(0, calls[0] + 1))
    pipe.set_progress_bar_config(disable=True)
    out, t0 = [], time.perf_counter()
    for i in range(0, len(images), batch):
        keep = 1 - torch.from_numpy(masks[i:i + batch]).float().unsqueeze(1)  # diffusers: 1 = keep, 0 = fill
        res = pipe(image=to_tensor(images[i:i + batch]), mask_image=keep, num_inference_steps=cfg.t_T, eta=cfg.eta,
                   jump_length=cfg.jump_length, jump_n_sample=cfg.jump_n_sample,
                   generator=torch.Generator().manual_seed(seed + i), output_type="np").images
        out.append(np.clip(np.rint(res[..., 0] * 255), 0, 255).astype(np.uint8))
    wall = time.perf_counter() - t0
    hook.remove()
    filled = np.where(masks, np.concatenate(out), images)
    return filled, {"unet_calls_per_image": calls[0] // max(1, -(-len(images) // batch)),
                    "wall_s_per_image": wall / len(images), "wall_s": wall, "batch": batch}


def neighbour_fills(train_x: np.ndarray, images: np.ndarray, masks: np.ndarray, k: int = 10) -> np.ndarray:
    """k fills per image (k*N x 28 x 28, grouped per image): hole pixels of the k training digits nearest on the
    known pixels (squared L2)."""
    flat = train_x.reshape(len(train_x), -1).astype(np.float32) / 255
    out = np.empty((len(images), k, 28, 28), np.uint8)
    for mask in np.unique(masks.reshape(len(masks), -1), axis=0):  # one distance matrix per distinct mask
        rows = np.nonzero((masks.reshape(len(masks), -1) == mask).all(1))[0]
        hole = mask.reshape(28, 28)
        known = flat[:, ~mask]
        queries = images[rows].reshape(len(rows), -1)[:, ~mask].astype(np.float32) / 255
        d = (known ** 2).sum(1)[None] - 2 * queries @ known.T  # + |q|^2, constant per row
        nearest = np.argpartition(d, k, 1)[:, :k]
        for r, nn in zip(rows, nearest):
            out[r] = images[r]
            out[r][:, hole] = train_x[nn][:, hole]
    return out.reshape(-1, 28, 28)


def accuracy_by_mask(clf, filled: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, float]:
    pred = predict(clf, filled)
    names_arr = np.array(names)
    acc = {m: float((pred[names_arr == m] == labels[names_arr == m]).mean()) for m in dict.fromkeys(names)}
    acc["mean"] = float(np.mean([acc[m] for m in dict.fromkeys(names)]))
    return acc


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100, help="test images per mask for fast mode and Telea")
    p.add_argument("--n-default", type=int, default=10, help="test images per mask for default RePaint + diffusers")
    p.add_argument("--model", default=str(MNIST_DIR))
    p.add_argument("--classifier", default=str(CLASSIFIER_DIR))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip-diffusers", action="store_true")
    p.add_argument("--skip-default", action="store_true")
    p.add_argument("--skip-fast", action="store_true")
    p.add_argument("--default-t-T", type=int, default=DEFAULT.t_T, help="t_T of the default run (smoke tests only)")
    p.add_argument("--mcg", type=float, default=MCG_DEFAULT,
                   help="manifold-constraint strength of our default and fast runs, as the editor's parameter: "
                        "times each schedule's own step (0 = plain RePaint, as diffusers)")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="combine the JSON files of partial runs (e.g. fast and default run as two processes)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "repaint_mnist.json"))
    a = p.parse_args(argv)
    if a.merge:
        return merge(a.merge, a.out)
    torch.set_num_threads(a.threads)
    default = replace(DEFAULT, t_T=a.default_t_T, mcg=DEFAULT.mcg * a.mcg)
    fast = replace(FAST, mcg=FAST.mcg * a.mcg)

    ddpm = load_ddpm(a.model)
    unet, schedule = ddpm.unet, ddpm.schedule
    clf = load_classifier(a.classifier)
    test_x, test_y = load_mnist("test")
    masks = make_masks()
    results: dict = {"setup": {
        "model": str(Path(a.model).relative_to(ROOT)) if Path(a.model).is_relative_to(ROOT) else a.model,
        "images_per_mask": a.n, "images_per_mask_default_and_diffusers": a.n_default,
        "masks": list(masks), "threads": a.threads, "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "fast": str(fast), "seed": a.seed}, "methods": {}}
    results["setup"]["default"] = str(default)

    def report(name: str, filled, labels, names, timing: dict | None = None, n: int = 0) -> None:
        results["methods"][name] = {"accuracy": accuracy_by_mask(clf, filled, labels, names),
                                    "images_per_mask": n, **(timing or {})}
        acc = results["methods"][name]["accuracy"]
        print(f"  {name}: mean accuracy {acc['mean']:.3f} " + " ".join(f"{k}={v:.3f}" for k, v in acc.items()
                                                                        if k != "mean"), flush=True)

    imgs, ms, names = stacked(test_x[:a.n], masks)
    labels = np.tile(test_y[:a.n], len(masks))
    report("intact (upper bound)", imgs, labels, names, n=a.n)
    report("hole left black (no fill)", np.where(ms, 0, imgs).astype(np.uint8), labels, names, n=a.n)

    t0 = time.perf_counter()
    telea = np.stack([opencv_inpaint(np.repeat(im[..., None], 3, 2), m, 5, "telea")[..., 0] for im, m in zip(imgs, ms)])
    report("telea", telea, labels, names, {"unet_calls_per_image": 0,
                                           "wall_s_per_image": (time.perf_counter() - t0) / len(imgs)}, a.n)

    k = 10
    report("train-set neighbours (k=10)", neighbour_fills(load_mnist("train")[0], imgs, ms, k),
           np.repeat(labels, k), [n for n in names for _ in range(k)], n=a.n)

    sub_imgs, sub_ms, sub_names = stacked(test_x[:a.n_default], masks)
    sub_labels = np.tile(test_y[:a.n_default], len(masks))
    if not a.skip_fast:
        print(f"fast mode: {3 * a.n} images ...", flush=True)
        filled, timing = run_ours(unet, schedule, imgs, ms, fast, a.seed, a.batch)
        report(row("fast", a.mcg, a.seed), filled, labels, names, timing, a.n)
    if not a.skip_fast and a.n_default < a.n:  # fast mode on exactly the default's images, for a paired comparison
        names_arr = np.array(names)
        idx = np.concatenate([np.nonzero(names_arr == m)[0][:a.n_default] for m in masks])
        report(row("fast", a.mcg, a.seed) + " (default's subset)", filled[idx], sub_labels, sub_names,
               {"unet_calls_per_image": timing["unet_calls_per_image"]}, a.n_default)
        report("telea (default's subset)", telea[idx], sub_labels, sub_names, {}, a.n_default)
    if not a.skip_default:
        print(f"default RePaint: {3 * a.n_default} images ...", flush=True)
        filled, timing = run_ours(unet, schedule, sub_imgs, sub_ms, default, a.seed, a.batch)
        report(row("default", a.mcg, a.seed), filled, sub_labels, sub_names, timing, a.n_default)
    if not a.skip_diffusers:
        print(f"diffusers RePaintPipeline: {3 * a.n_default} images ...", flush=True)
        filled, timing = run_diffusers(a.model, sub_imgs, sub_ms, default, a.seed, a.batch,
                                       schedule.num_train_timesteps, schedule.cfg.beta_schedule)
        report("diffusers-repaint", filled, sub_labels, sub_names, timing, a.n_default)
        plain = results["methods"].get(row("default", 0.0))  # diffusers has no MCG: time it against plain RePaint
        if plain:
            results["time_ratio_diffusers_over_ours"] = timing["wall_s_per_image"] / plain["wall_s_per_image"]

    print_table(results)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(results, indent=2))
    print(f"wrote {a.out}")
    return results


def merge(paths: list[str], out: str) -> dict:
    """One result from partial runs: setup of the first, methods of all (later files win on a name clash)."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    results = {"setup": {**parts[0]["setup"], "merged_from": [Path(p).name for p in paths]}, "methods": {}}
    for part in parts:  # on a name clash keep the entry measured on more images
        for name, entry in part["methods"].items():
            if entry.get("images_per_mask", 0) >= results["methods"].get(name, {}).get("images_per_mask", 0):
                results["methods"][name] = entry
    for part in parts:  # a ratio measured earlier (e.g. in a merged side-by-side pair) carries over ...
        if "time_ratio_diffusers_over_ours" in part:
            results["time_ratio_diffusers_over_ours"] = part["time_ratio_diffusers_over_ours"]
    ours, theirs = results["methods"].get(row("default", 0.0)), results["methods"].get("diffusers-repaint")
    if ours and theirs and ours["images_per_mask"] == theirs["images_per_mask"]:
        # ... unless these two ran side by side (one core each, same images and batch): they time each other fairly
        results["time_ratio_diffusers_over_ours"] = theirs["wall_s_per_image"] / ours["wall_s_per_image"]
    print_table(results)
    Path(out).write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return results


def print_table(results: dict) -> None:
    print()
    print("| method | images/mask | left half | bottom half | centre 14x14 | mean | UNet calls/img | s/img |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results["methods"].items():
        acc = r["accuracy"]
        calls = r.get("unet_calls_per_image", "")
        if r.get("unet_backward_per_image"):
            calls = f"{calls} + {r['unet_backward_per_image']} backward"
        sec = f"{r['wall_s_per_image']:.3f}" if "wall_s_per_image" in r else ""
        print(f"| {name} | {r['images_per_mask']} | {acc['left_half']:.3f} | {acc['bottom_half']:.3f} | "
              f"{acc['centre_14']:.3f} | **{acc['mean']:.3f}** | {calls} | {sec} |")
    if "time_ratio_diffusers_over_ours" in results:
        print(f"\ndiffusers RePaintPipeline / ours, wall time per image, same UNet, schedule and batch: "
              f"{results['time_ratio_diffusers_over_ours']:.2f}x")


if __name__ == "__main__":
    main()

"""The headless command line: ``python main.py models``, ``python main.py inpaint ...``, ``python main.py learn ...``.

Every failure the user can cause ends in one ``error: ...`` line on stderr and a non-zero exit, never a traceback
(set INPAINT_STUDIO_DEBUG=1 to see one). Exit codes: 0 ok, 1 failed, 2 bad usage, 130 interrupted.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from engine import registry
from engine.api import Cancelled, CancelToken, InpaintError, Request, drive
from engine.imageio import ImageError, list_images, load_image, load_mask, save_image
from engine.metadata import png_metadata


COMMANDS = ("models", "inpaint", "learn")  # main.py hands these to ``main``; anything else opens the editor


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + message
        raise UsageError(message)


def _key_values(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what} {item!r}: expected NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def _region(text: str | None) -> tuple[int, int, int, int] | None:
    if text is None:
        return None
    try:
        x0, y0, x1, y1 = (int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--region {text!r}: expected x0,y0,x1,y1") from None
    if x1 <= x0 or y1 <= y0:
        raise UsageError(f"--region {text!r}: x1 must exceed x0 and y1 exceed y0")
    return x0, y0, x1, y1


DEVICE_HELP = "where learned models compute: auto (a CUDA GPU when there is one), cpu, cuda or cuda:N; default: " \
              "INPAINT_STUDIO_DEVICE, else auto"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="main.py", description="Inpaint Studio: with no command, opens the editor.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    m = sub.add_parser("models", help="list the models, their domain and whether their weights are present")
    m.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i = sub.add_parser("inpaint", help="fill the white area of MASK in IMAGE; files or folders (same file names)")
    i.add_argument("--model", default=registry.DEFAULT_MODEL)
    i.add_argument("--image", required=True, help="image file, or folder of images")
    i.add_argument("--mask", required=True, help="mask file (white = fill), or folder with the same file names")
    i.add_argument("--out", required=True, help="output file, or folder when --image is a folder")
    i.add_argument("--sketch", help="sketch file (white = stroke), or folder with the same file names")
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="model parameter (repeat)")
    i.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE", help="attribute, e.g. smile=1")
    i.add_argument("--prompt", default="", help="text prompt, for models that take one")
    i.add_argument("--region", help="x0,y0,x1,y1 working box for models that use one (e.g. the face box)")
    i.add_argument("--overwrite", action="store_true", help="allow replacing existing output files")
    i.add_argument("--json", action="store_true", help="print one JSON line of timings per image")
    i.add_argument("--device", help=DEVICE_HELP)
    ln = sub.add_parser("learn", help="learn IMAGE now and cache the weights (models that learn the image): a later "
                        "inpaint (or the editor) with the same parameters fills at once")
    ln.add_argument("--model", default="frugal")
    ln.add_argument("--image", required=True, help="image file")
    ln.add_argument("--mask", help="mask file (white = keep out of learning, e.g. the hole to fill later)")
    ln.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="model parameter (repeat)")
    ln.add_argument("--json", action="store_true", help="print the learning stats as one JSON line")
    ln.add_argument("--device", help=DEVICE_HELP)
    for parser in (p, m, i, ln):  # the user's models folder (INPAINT_STUDIO_MODELS by default)
        parser.add_argument("--models-dir", default=argparse.SUPPRESS, metavar="DIR",
                            help="folder of your own models (Stable Diffusion .safetensors / diffusers folders, ONNX)")
    return p


def cmd_models(args) -> int:
    rows = [{"name": m.name, "title": m.title, "domain": m.domain, "weights": m.weights_present,
             "resolution": m.resolution} for m in registry.all_models()]
    if args.json:
        print(json.dumps(rows))
        return 0
    w = max(len(r["name"]) for r in rows)
    print(f"{'NAME':<{w}}  WEIGHTS  DOMAIN")
    for r in rows:
        print(f"{r['name']:<{w}}  {'yes' if r['weights'] else 'MISSING':<7}  {r['domain']}")
    return 0


def _jobs(args) -> list[tuple[Path, Path, Path | None, Path]]:
    """(image, mask, sketch, out) per image; folders are matched by file name."""
    image, mask, out = Path(args.image), Path(args.mask), Path(args.out)
    sketch = Path(args.sketch) if args.sketch else None
    for path, what in ((image, "--image"), (mask, "--mask"), (sketch, "--sketch")):
        if path is not None and not path.exists():
            raise UsageError(f"{what} {path}: no such file or folder")
    if not image.is_dir():
        if mask.is_dir() or (sketch is not None and sketch.is_dir()):
            raise UsageError("--image is a file, so --mask and --sketch must be files too")
        if out.is_dir():
            out = out / (image.stem + ".png")
        return [(image, mask, sketch, out)]
    if not mask.is_dir() or (sketch is not None and not sketch.is_dir()):
        raise UsageError("--image is a folder, so --mask (and --sketch) must be folders with the same file names")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: must be a folder when --image is a folder")
    files = list_images(image)
    if not files:
        raise UsageError(f"--image {image}: the folder has no image files")
    jobs = []
    for f in files:
        m = mask / f.name
        if not m.exists():
            raise UsageError(f"no mask for {f.name} in {mask}")
        s = sketch / f.name if sketch is not None else None
        if s is not None and not s.exists():
            s = None  # a sketch is optional per image
        jobs.append((f, m, s, out / (f.stem + ".png")))
    return jobs


def _progress(preview, name: str) -> None:
    if sys.stderr.isatty():
        stage = "learning" if preview.stage == "train" else "filling"
        loss = f" loss {preview.loss:.4f}" if preview.loss is not None else ""
        print(f"\r{name}: {stage} {preview.step}/{preview.total}{loss}   ", end="", file=sys.stderr, flush=True)


def cmd_inpaint(args) -> int:
    info = registry.get_info(args.model)
    params = _key_values(args.param, "--param")
    attrs = _key_values(args.attr, "--attr")
    info.resolve_params(params)  # fail on a bad parameter before loading anything
    info.resolve_attributes(attrs)
    region = _region(args.region)
    jobs = _jobs(args)
    for src, _, _, out in jobs:
        if out.resolve() == src.resolve():
            raise UsageError(f"--out {out} is the input image itself; choose another name")
        if out.exists() and not args.overwrite:
            raise UsageError(f"{out} exists; pass --overwrite to replace it")
    _set_torch(args.device)
    from engine.runner import run_job  # imports numpy-only; model loading imports torch when needed

    inpainter = registry.load(args.model)
    cancel = CancelToken()
    for src, mask_path, sketch_path, out in jobs:
        loaded = load_image(src)
        mask = load_mask(mask_path, loaded.rgb.shape[:2])
        sketch = load_mask(sketch_path, loaded.rgb.shape[:2], "sketch") if sketch_path else None
        box = region
        if box is None and info.uses_region:  # e.g. the detected face, as the editor pre-places it
            box = registry.suggest_region(args.model, loaded.rgb)
        req = Request(image=loaded.rgb, mask=mask, sketch=sketch, attributes=attrs, seed=args.seed,
                      params=params, region=box, prompt=args.prompt)
        result = drive(run_job(inpainter, req, cancel), lambda p: _progress(p, src.name))
        if sys.stderr.isatty():
            print(file=sys.stderr)
        meta = png_metadata(result, src.name)
        save_image(out, result.image, loaded.alpha, metadata=meta)
        if args.json:
            print(json.dumps({"image": str(src), "out": str(out), "model": result.model, "seed": result.seed,
                              "timings": result.timings, "unet_calls": result.unet_calls, "chosen": result.chosen,
                              "hole_pixels": int(np.count_nonzero(mask))}))
        else:
            chosen = "".join(f", {k} = {v:g} chosen" for k, v in sorted(result.chosen.items()))
            print(f"{out}  ({result.timings['total']:.2f} s{chosen})")
    return 0


def cmd_learn(args) -> int:
    info = registry.get_info(args.model)
    if not info.learns_on_image:
        learners = ", ".join(m.name for m in registry.all_models() if m.learns_on_image)
        raise UsageError(f"model {args.model} does not learn on the image (these do: {learners})")
    params = _key_values(args.param, "--param")
    info.resolve_params(params)
    src = Path(args.image)
    if not src.is_file():
        raise UsageError(f"--image {src}: no such file")
    loaded = load_image(src)
    mask = load_mask(Path(args.mask), loaded.rgb.shape[:2]) if args.mask else np.zeros(loaded.rgb.shape[:2], bool)
    _set_torch(args.device)
    from engine.runner import run_learn

    stats = drive(run_learn(registry.load(args.model), Request(image=loaded.rgb, mask=mask, params=params)),
                  lambda p: _progress(p, src.name))
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if args.json:
        print(json.dumps({"image": str(src), "model": args.model, **stats}))
    else:
        how = "already cached" if stats.get("cached") else f"learned in {stats['wall']:.1f} s"
        print(f"{src.name}: {how}, {stats.get('iterations', '?')} iterations -> {stats.get('cache', '?')}")
    return 0


def _set_torch(device: str | None) -> None:
    """Torch's thread count (INPAINT_STUDIO_THREADS, default every core) and the ``--device``, checked at once."""
    import torch

    from engine import device as devices

    torch.set_num_threads(int(os.environ.get("INPAINT_STUDIO_THREADS", os.cpu_count() or 1)))
    if device:
        devices.compute_device(device)  # a device that is not there: one line naming --device
        devices.choose(device)


def main(argv: list[str]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "models_dir", None):
            for line in registry.set_models_dir(args.models_dir):
                print(f"note: {line}", file=sys.stderr)
        if args.command == "models":
            return cmd_models(args)
        if args.command == "inpaint":
            return cmd_inpaint(args)
        if args.command == "learn":
            return cmd_learn(args)
        parser.print_help()
        return 2
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (InpaintError, ImageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Cancelled):
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # last resort: one line, never a traceback, unless debugging
        if os.environ.get("INPAINT_STUDIO_DEBUG"):
            raise
        print(f"error: internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
              "rerun with INPAINT_STUDIO_DEBUG=1 for details", file=sys.stderr)
        return 1
    finally:
        from engine import device as devices

        devices.choose(None)  # --device is this command's (main may run in a longer-lived process, e.g. tests)

"""The headless command line: ``python main.py models``, ``python main.py inpaint ...``, ``python main.py learn ...``.

Every failure the user can cause ends in one ``error: ...`` line on stderr and a non-zero exit, never a traceback
(set INPAINT_STUDIO_DEBUG=1 to see one). Exit codes: 0 ok, 1 failed (in a batch: any image failed), 2 bad usage,
130 interrupted. Everything that can be checked is checked before a model loads or learns (engine/batch.py has
the batch contract); what was used with a caveat is a ``warning: ...`` line.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from engine import batch, registry
from engine.api import SEED_MAX, Cancelled, CancelToken, InpaintError, Request, drive
from engine.batch import UsageError
from engine.imageio import ImageError, load_image, load_mask, save_image
from engine.metadata import png_metadata


COMMANDS = ("models", "inpaint", "learn")  # main.py hands these to ``main``; anything else opens the editor


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
    i.add_argument("--out", required=True, help="output file, or folder (an existing one, or a name ending in /); "
                   "a batch writes NAME.png there")
    i.add_argument("--sketch", help="sketch file (white = stroke), or folder with the same file names")
    i.add_argument("--seed", type=int, default=0, help="0 to 2147483647: the same seed gives the same fill")
    i.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="model parameter (repeat)")
    i.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE", help="attribute, e.g. smile=1")
    i.add_argument("--prompt", default="", help="text prompt, for models that take one")
    i.add_argument("--region", help="x0,y0,x1,y1 working box for models that use one (e.g. the face box); it may "
                   "reach past the image's edges (--region -20,0,80,100)")
    existing = i.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="allow replacing existing output files")
    existing.add_argument("--resume", action="store_true", help="skip the outputs that already exist and are "
                          "valid (a readable image of the input's size); redo the others")
    i.add_argument("--json", action="store_true", help="print one JSON line of timings per image")
    i.add_argument("--batch", type=int, metavar="N", help="a folder's same-sized images that models which batch "
                   "fill together (default: the model's own number, in `models --json`; 1 = one at a time); each image "
                   "gets the fill it gets alone, up to float rounding")
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
             "resolution": m.resolution, "batch": m.batch} for m in registry.all_models()]
    if args.json:
        _say(json.dumps(rows))
        return 0
    w = max(len(r["name"]) for r in rows)
    _say(f"{'NAME':<{w}}  WEIGHTS  DOMAIN")
    for r in rows:
        _say(f"{r['name']:<{w}}  {'yes' if r['weights'] else 'MISSING':<7}  {r['domain']}")
    return 0


def _say(text: str, stream=None, end: str = "\n") -> None:
    """Print one line whatever the terminal's encoding: a name it cannot show is escaped (a file already written
    must never turn into exit 1 because the console is not UTF-8)."""
    stream = stream or sys.stdout
    try:
        print(text, file=stream, end=end, flush=True)
    except UnicodeEncodeError:
        enc = getattr(stream, "encoding", None) or "ascii"
        print(text.encode(enc, "backslashreplace").decode(enc, "replace"), file=stream, end=end, flush=True)


def _warn(lines: list[str]) -> None:
    for line in lines:
        _say(f"warning: {line}", sys.stderr)


def _progress(preview, name: str) -> None:
    if sys.stderr.isatty():
        stage = "learning" if preview.stage == "train" else "filling"
        loss = f" loss {preview.loss:.4f}" if preview.loss is not None else ""
        _say(f"\r{name}: {stage} {preview.step}/{preview.total}{loss}   ", sys.stderr, end="")


def _end_progress() -> None:
    if sys.stderr.isatty():
        _say("", sys.stderr)


def _check_request(info, args) -> tuple[dict, dict, tuple | None]:
    """(params, attributes, region) as given, after every check that needs no file: names, types, ranges, finite
    values, folders that exist, and options the model would ignore."""
    params = _key_values(args.param, "--param")
    attrs = _key_values(getattr(args, "attr", []), "--attr")
    resolved = info.resolve_params(params)  # fail on a bad parameter before loading anything
    info.resolve_attributes(attrs)
    info.check_params(resolved)
    if getattr(args, "sketch", None) and not info.uses_sketch:
        takers = ", ".join(m.name for m in registry.all_models() if m.uses_sketch) or "none"
        raise UsageError(f"model {info.name} takes no sketch, so --sketch would be ignored (these do: {takers})")
    if getattr(args, "prompt", "") and not info.uses_prompt:
        raise UsageError(f"model {info.name} takes no text prompt, so --prompt would be ignored")
    if not 0 <= getattr(args, "seed", 0) <= SEED_MAX:
        raise UsageError(f"--seed {args.seed}: expected a whole number from 0 to {SEED_MAX}")
    if getattr(args, "batch", None) is not None and args.batch < 1:
        raise UsageError(f"--batch {args.batch}: expected 1 or more images at a time")
    return params, attrs, _region(getattr(args, "region", None))


def _preflight(inpainter, info, params: dict) -> None:
    """Load what the model needs before the first image (a checkpoint folder's weights, the face model), so a bad
    checkpoint is one error, not one per image of a batch."""
    inpainter.geometry(info.resolve_params(params))
    inpainter.warm_up()


def cmd_inpaint(args) -> int:
    info = registry.get_info(args.model)
    params, attrs, region = _check_request(info, args)
    plan = batch.plan(args.image, args.mask, args.sketch, args.out)
    _warn(plan.notes)
    batch.probe_jobs(plan)
    _warn(batch.check_outputs(plan, args.overwrite, args.resume))
    prepared: dict[int, tuple] = {}
    if not plan.folder and not plan.jobs[0].done:  # one image: decode it now, so its problems come before the model
        job = plan.jobs[0]
        if job.problem is not None:
            raise ImageError(job.problem)
        prepared[0] = _prepare(job, info, args, params, attrs, region)
    todo = [j for j in plan.jobs if j.problem is None and not j.done]
    inpainter = None
    if todo:
        _set_torch(args.device)
        inpainter = registry.load(args.model)
        _preflight(inpainter, info, params)
    from engine.runner import run_batch, run_job  # numpy-only; model loading imports torch when needed

    cancel = CancelToken()
    size = (args.batch or info.batch) if plan.folder and info.batch > 1 else 1
    ready: dict[int, tuple] = {}  # id(job) -> (loaded, request, result) filled in an earlier job's batch

    def filled(job: batch.Job) -> tuple:
        """(loaded, request, result) of ``job``: from an earlier batch, alone, or now with up to ``size`` - 1 of the
        jobs after it (those that cannot be prepared wait for their own turn, and report there)."""
        if id(job) in ready:
            return ready.pop(id(job))
        loaded, req = prepared.pop(0, None) or _prepare(job, info, args, params, attrs, region)
        group = [(job, loaded, req)]
        for other in todo[todo.index(job) + 1:]:
            if len(group) >= size:
                break
            if id(other) not in ready:
                try:
                    group.append((other, *_prepare(other, info, args, params, attrs, region)))
                except InpaintError:
                    continue
        if len(group) > 1:
            label = f"{job.image.name} and {len(group) - 1} more"
            try:
                results = drive(run_batch(inpainter, [r for _, _, r in group], cancel), lambda p: _progress(p, label))
            except InpaintError:
                _end_progress()  # one crop the batch cannot take: each alone, so only that one fails
            else:
                for (j, lo, r), res in zip(group[1:], results[1:]):
                    ready[id(j)] = (lo, r, res)
                return loaded, req, results[0]
        return loaded, req, drive(run_job(inpainter, req, cancel), lambda p: _progress(p, job.image.name))

    def fill(job: batch.Job) -> None:
        loaded, req, result = filled(job)
        _end_progress()
        save_image(job.out, result.image, loaded.alpha, metadata=png_metadata(result, job.image.name))
        if args.json:
            _say(json.dumps({"image": str(job.image), "out": str(job.out), "model": result.model, "seed": result.seed,
                             "timings": result.timings, "unet_calls": result.unet_calls, "chosen": result.chosen,
                             "hole_pixels": int(np.count_nonzero(req.mask))}))
        else:
            chosen = "".join(f", {k} = {v:g} chosen" for k, v in sorted(result.chosen.items()))
            together = f", {result.timings['batch']:g} together" if result.timings.get("batch", 1) > 1 else ""
            _say(f"{job.out}  ({result.timings['total']:.2f} s{together}{chosen})")

    def fail(job: batch.Job, message: str) -> None:
        _end_progress()
        named = message if message.startswith(str(job.image)) else f"{job.image}: {message}"
        _say(f"error: {named}", sys.stderr)
        if args.json:
            _say(json.dumps({"image": str(job.image), "out": str(job.out), "error": message}))

    def skip(job: batch.Job) -> None:
        if args.json:
            _say(json.dumps({"image": str(job.image), "out": str(job.out), "skipped": "already done"}))
        else:
            _say(f"{job.out}  (already done)")

    tally = batch.Tally()
    try:
        batch.run(plan, fill, fail, skip, tally)
    except (KeyboardInterrupt, Cancelled):
        if plan.folder:
            _say(f"\n{tally.line(interrupted=True)}", sys.stderr)
        raise
    if plan.folder:
        _say(tally.line(), sys.stderr)
    return 1 if tally.failed else 0


def _prepare(job: batch.Job, info, args, params: dict, attrs: dict, region) -> tuple:
    """(loaded image, Request) for one job: every file decoded and the request validated, no model touched."""
    loaded = load_image(job.image)
    notes = list(loaded.warnings)
    mask = load_mask(job.mask, loaded.rgb.shape[:2], warnings=notes)
    sketch = load_mask(job.sketch, loaded.rgb.shape[:2], "sketch", warnings=notes) if job.sketch else None
    _warn(notes)
    box = region
    if box is None and info.uses_region:  # e.g. the detected face, as the editor pre-places it
        box = registry.suggest_region(info.name, loaded.rgb)
    req = Request(image=loaded.rgb, mask=mask, sketch=sketch, attributes=attrs, seed=args.seed, params=params,
                  region=box, prompt=args.prompt)
    req.validate()
    return loaded, req


def cmd_learn(args) -> int:
    info = registry.get_info(args.model)
    if not info.learns_on_image:
        learners = ", ".join(m.name for m in registry.all_models() if m.learns_on_image)
        raise UsageError(f"model {args.model} does not learn on the image (these do: {learners})")
    params, _, _ = _check_request(info, args)
    src = Path(args.image)
    if not src.is_file():
        raise UsageError(f"--image {src}: no such file")
    if args.mask and not Path(args.mask).is_file():
        raise UsageError(f"--mask {args.mask}: no such file")
    loaded = load_image(src)
    notes = list(loaded.warnings)
    mask = load_mask(Path(args.mask), loaded.rgb.shape[:2], warnings=notes) if args.mask \
        else np.zeros(loaded.rgb.shape[:2], bool)
    _warn(notes)
    req = Request(image=loaded.rgb, mask=mask, params=params)
    req.validate(need_mask=False)
    _set_torch(args.device)
    from engine.runner import run_learn

    stats = drive(run_learn(registry.load(args.model), req), lambda p: _progress(p, src.name))
    _end_progress()
    if args.json:
        _say(json.dumps({"image": str(src), "model": args.model, **stats}))
    else:
        how = "already cached" if stats.get("cached") else f"learned in {stats['wall']:.1f} s"
        _say(f"{src.name}: {how}, {stats.get('iterations', '?')} iterations -> {stats.get('cache', '?')}")
    return 0


def _set_torch(device: str | None) -> None:
    """Torch's thread count (INPAINT_STUDIO_THREADS; torch's default: every core) and the ``--device``, checked at
    once. Torch is imported here only when one of them is given: Telea and patch fills never need it (2 s)."""
    from engine import device as devices

    if os.environ.get("INPAINT_STUDIO_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["INPAINT_STUDIO_THREADS"]))
    if device:
        devices.compute_device(device)  # a device that is not there: one line naming --device
        devices.choose(device)


VALUE_OPTIONS = ("--region", "--prompt")  # their values may start with "-" (a negative x0, a prompt "-like this")


def _join_values(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """``--region -5,0,60,60`` as ``--region=-5,0,60,60``: argparse takes a value that starts with "-" (and is no
    plain negative number) for an option. A value that is itself an option name is left alone."""
    known = {o for a in _all_actions(parser) for o in a.option_strings}
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in VALUE_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-") \
                and argv[i + 1].split("=", 1)[0] not in known:
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _all_actions(parser: argparse.ArgumentParser):
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_actions(sub)


@contextmanager
def _quiet_libraries(debug: bool):
    """Libraries' warnings and log lines (PIL's corrupt EXIF, diffusers' "Some weights ... were not used" before our
    own one-line error) are not the user's business on the command line; INPAINT_STUDIO_DEBUG=1 keeps them."""
    if debug:
        yield
        return
    env = {k: os.environ.get(k) for k in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY")}
    for k in env:
        os.environ.setdefault(k, "error")  # read when the library configures its logger (first import)
    loggers = [logging.getLogger(name) for name in ("diffusers", "transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)  # for a library this process already imported
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        for k, v in env.items():
            if v is None:
                os.environ.pop(k, None)


def main(argv: list[str]) -> int:
    parser = build_parser()
    debug = bool(os.environ.get("INPAINT_STUDIO_DEBUG"))
    try:
        with _quiet_libraries(debug):
            args = parser.parse_args(_join_values(list(argv), parser))
            if getattr(args, "models_dir", None):
                for line in registry.set_models_dir(args.models_dir):
                    _say(f"note: {line}", sys.stderr)
            if args.command == "models":
                return cmd_models(args)
            if args.command == "inpaint":
                return cmd_inpaint(args)
            if args.command == "learn":
                return cmd_learn(args)
            parser.print_help()
            return 2
    except UsageError as exc:
        _say(f"error: {exc}", sys.stderr)
        return 2
    except (InpaintError, ImageError) as exc:
        _say(f"error: {exc}", sys.stderr)
        return 1
    except (KeyboardInterrupt, Cancelled):
        _say("\ninterrupted", sys.stderr)
        return 130
    except Exception as exc:  # last resort: one line, never a traceback, unless debugging
        if debug:
            raise
        _say(f"error: internal error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
             "rerun with INPAINT_STUDIO_DEBUG=1 for details", sys.stderr)
        return 1
    finally:
        from engine import device as devices

        devices.choose(None)  # --device is this command's (main may run in a longer-lived process, e.g. tests)

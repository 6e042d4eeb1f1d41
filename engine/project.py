"""The project file (``.inpaint``): one file holding everything an editing session has, without Qt.

A ZIP archive (readable with any unzip tool) of lossless PNGs plus one JSON manifest:

    project.json            format version, the source file's name, the image size, the border an Expand canvas
                            added (still to fill), and per history result: model, seed, parameters, attributes,
                            prompt, timings, what the model chose, stats, accepted or not, and its box
    image.png               the edited image (RGB)
    original.png            the image as opened (the editor's "hold to see the original")
    alpha.png               the opened file's transparency, when it had one
    mask.png                the mask: grey levels 0 (keep) .. 255 (fill)
    sketch.png              the sketch strokes (white = stroke)
    results/<i>/image.png   result i: the full image the fill made
    results/<i>/mask.png    the (grey) mask it was made for
    results/<i>/base.png    the image it ran on, inside its box

Writes go through engine.atomic (a temporary file in the same folder, then a rename): the file gets the permissions
the user's umask gives a new file, as any editor's save does. Reading checks every size against the manifest, so a
damaged or foreign file is one ``ProjectError`` line, never a crash.
"""
from __future__ import annotations

import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.api import InpaintError, Result
from engine.atomic import write_atomic

SUFFIX = ".inpaint"
FORMAT = "inpaint-studio-project"
VERSION = 1
Box = tuple[int, int, int, int]


class ProjectError(InpaintError):
    pass


@dataclass
class SavedResult:
    """One history entry: the engine's Result plus the editor's bookkeeping."""

    result: Result
    mask: np.ndarray  # uint8 alpha (or bool), the mask the fill was made for
    base_patch: np.ndarray  # the job's input inside ``box``
    box: Box
    accepted: bool = False


@dataclass
class Project:
    image: np.ndarray  # H x W x 3 uint8
    original: np.ndarray
    mask: np.ndarray  # H x W uint8
    sketch: np.ndarray  # H x W bool
    alpha: np.ndarray | None = None
    source: str | None = None  # the opened image's path, as text
    border: Box | None = None  # (left, top, right, bottom) pixels an Expand canvas added and no fill has covered
    results: list[SavedResult] = field(default_factory=list)
    shown: int | None = None


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _jsonable(value: Any) -> Any:
    """Plain JSON values (numpy scalars and arrays, paths and tuples become numbers, strings and lists)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf / nan
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def to_bytes(project: Project) -> bytes:
    h, w = project.image.shape[:2]
    results = []
    files: dict[str, bytes] = {
        "image.png": _png(project.image), "original.png": _png(project.original),
        "mask.png": _png(project.mask.astype(np.uint8) * (255 if project.mask.dtype == np.bool_ else 1)),
        "sketch.png": _png(project.sketch.astype(np.uint8) * 255)}
    if project.alpha is not None:
        files["alpha.png"] = _png(project.alpha)
    for i, item in enumerate(project.results):
        r = item.result
        results.append({"model": r.model, "seed": int(r.seed), "params": _jsonable(r.params),
                        "attributes": _jsonable(r.attributes), "prompt": r.prompt, "timings": _jsonable(r.timings),
                        "unet_calls": r.unet_calls, "chosen": _jsonable(r.chosen), "stats": _jsonable(r.stats),
                        "accepted": bool(item.accepted), "box": [int(v) for v in item.box]})
        mask = item.mask.astype(np.uint8) * (255 if item.mask.dtype == np.bool_ else 1)
        files[f"results/{i}/image.png"] = _png(r.image)
        files[f"results/{i}/mask.png"] = _png(mask)
        files[f"results/{i}/base.png"] = _png(item.base_patch)
    manifest = {"format": FORMAT, "version": VERSION, "width": w, "height": h, "source": project.source,
                "border": list(project.border) if project.border else None, "shown": project.shown,
                "results": results}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("project.json", json.dumps(manifest, indent=1), compress_type=zipfile.ZIP_DEFLATED)
        for name, data in files.items():
            z.writestr(name, data, compress_type=zipfile.ZIP_STORED)  # PNG is compressed already
    return buf.getvalue()


def save(path: str | os.PathLike, project: Project) -> Path:
    p = Path(path)
    try:
        write_atomic(p, lambda fh: fh.write(to_bytes(project)))
    except OSError as exc:
        raise ProjectError(f"{p}: cannot write ({exc.strerror or exc})") from None
    return p


def _read_png(z: zipfile.ZipFile, name: str, shape: tuple[int, ...], path: Path) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(z.read(name))) as im:
            im.load()
            mode = "RGB" if len(shape) == 3 else "L"
            arr = np.asarray(im.convert(mode) if im.mode != mode else im).copy()
    except KeyError:
        raise ProjectError(f"{path}: {name} is missing") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ProjectError(f"{path}: {name} cannot be read ({exc})") from None
    if arr.shape != tuple(shape):
        raise ProjectError(f"{path}: {name} is {arr.shape[1]}x{arr.shape[0]}, expected {shape[1]}x{shape[0]}")
    return arr


def load(path: str | os.PathLike) -> Project:
    p = Path(path)
    try:
        z = zipfile.ZipFile(p)
    except FileNotFoundError:
        raise ProjectError(f"{p}: no such file") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ProjectError(f"{p}: not an Inpaint Studio project ({exc})") from None
    with z:
        try:
            manifest = json.loads(z.read("project.json"))
        except (KeyError, ValueError, UnicodeDecodeError):
            raise ProjectError(f"{p}: not an Inpaint Studio project (project.json is missing or damaged)") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ProjectError(f"{p}: not an Inpaint Studio project")
        if int(manifest.get("version", 0)) > VERSION:
            raise ProjectError(f"{p}: made by a newer Inpaint Studio (format {manifest['version']}); update to open it")
        try:
            h, w = int(manifest["height"]), int(manifest["width"])
            names = set(z.namelist())
            project = Project(
                image=_read_png(z, "image.png", (h, w, 3), p), original=_read_png(z, "original.png", (h, w, 3), p),
                mask=_read_png(z, "mask.png", (h, w), p), sketch=_read_png(z, "sketch.png", (h, w), p) > 127,
                alpha=_read_png(z, "alpha.png", (h, w), p) if "alpha.png" in names else None,
                source=manifest.get("source"),
                border=tuple(int(v) for v in manifest["border"]) if manifest.get("border") else None,
                shown=manifest.get("shown"))
            for i, r in enumerate(manifest.get("results", [])):
                x0, y0, x1, y1 = (int(v) for v in r["box"])
                if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
                    raise ProjectError(f"{p}: result {i + 1} has a box outside the image")
                timings = {k: float(v) for k, v in r.get("timings", {}).items()}
                result = Result(image=_read_png(z, f"results/{i}/image.png", (h, w, 3), p), model=str(r["model"]),
                                seed=int(r["seed"]), params=dict(r.get("params", {})),
                                attributes={k: float(v) for k, v in r.get("attributes", {}).items()},
                                timings=timings, unet_calls=r.get("unet_calls"), chosen=dict(r.get("chosen", {})),
                                stats=dict(r.get("stats", {})), prompt=str(r.get("prompt", "")))
                project.results.append(SavedResult(
                    result=result, mask=_read_png(z, f"results/{i}/mask.png", (h, w), p),
                    base_patch=_read_png(z, f"results/{i}/base.png", (y1 - y0, x1 - x0, 3), p),
                    box=(x0, y0, x1, y1), accepted=bool(r.get("accepted", False))))
        except (KeyError, TypeError, ValueError) as exc:
            raise ProjectError(f"{p}: damaged project ({type(exc).__name__}: {exc})") from None
    if project.shown is not None and not (isinstance(project.shown, int) and 0 <= project.shown < len(project.results)):
        project.shown = None
    return project

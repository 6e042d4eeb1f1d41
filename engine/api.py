"""The engine contract: what a job asks for, what it streams back, and how models describe themselves.

Conventions (converted once at each library boundary, never inside a model):
- images are H x W x 3 uint8 RGB numpy arrays;
- ``mask`` is H x W: bool (**True = fill this pixel**, False = keep) or uint8 alpha 0-255 (a soft mask: a model
  sees alpha > 0 as the hole, and the runner blends its fill by alpha, so alpha-0 pixels stay bit-identical and
  partly masked ones blend);
- ``sketch`` is H x W bool, True = stroke.

A model is an ``Inpainter`` (the base class below): ``run(request, cancel)`` is a generator that yields
``Preview`` objects and finally returns (``return``) one ``ModelOutput``. Callers never call ``run`` directly:
``engine.runner.run_job`` drives it. The runner owns the geometry: it crops the image around the hole as the
model's ``Geometry`` asks (working size, maximum side, multiple), hands the model that crop, maps its previews
back onto the image, pastes the fill back with a feathered seam, makes pixels outside the mask bit-identical to
the input, and builds the ``Result``.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator

import numpy as np


class Cancelled(Exception):
    """Raised inside a job when its CancelToken was set; the job leaves no partial result."""


class InpaintError(Exception):
    """A problem the user can fix (bad input, missing weights); its message is shown as-is, one line."""


class CancelToken:
    """Cooperative cancellation flag shared between the GUI thread and a job. Thread-safe."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Call between steps (and inside long loops): raises Cancelled once cancel() was called."""
        if self._event.is_set():
            raise Cancelled()


@dataclass(frozen=True)
class Param:
    """One entry of a model's parameter schema; the editor builds its parameter panel from these."""

    name: str
    kind: str  # "int" | "float" | "bool" | "choice" | "str" | "folder" (a str naming a folder) | "path" (a file or a
    #            folder: a single-file checkpoint or a diffusers folder); the editor can browse for both
    default: Any
    label: str = ""
    help: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    disables: tuple[str, ...] = ()  # a bool's: the parameters it makes irrelevant while on (the editor greys them)
    remember: bool = False  # the editor keeps the last value across sessions (e.g. where a user's model lives)
    once: bool = False  # a bool that applies to one job (e.g. "relearn"): the editor turns it off once a job used it
    advanced: bool = False  # tuning most users leave alone: the editor folds it under "More settings"

    def parse(self, value: Any) -> Any:
        """Coerce a value (e.g. the string of ``--param k=v``) to this parameter's type; InpaintError if invalid.

        Numbers must be finite (NaN would slip past every range check) and inside [min, max]; an int takes only
        whole numbers ("3", "3.0", "1e3"), never a silently truncated 2.7; a bool takes 1/0, true/false, yes/no,
        on/off; a folder's path is checked for existence where it is used (``check_value``), not here."""
        kind = self.kind
        if kind == "int":
            v: Any = _whole_number(value)
        elif kind == "float":
            v = _finite_number(value)
        elif kind == "bool":
            v = _boolean(value)
        elif kind == "choice":
            v = _text(value)
            if v not in self.choices:
                v = None
        else:
            v = _text(value)
        if v is None:
            raise InpaintError(f"parameter {self.name}={_show(value)}: expected {self._expected()}")
        if kind in ("int", "float"):
            if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                raise InpaintError(f"parameter {self.name}={_num(v)} is outside "
                                   f"[{_bound(self.min, '-inf')}, {_bound(self.max, 'inf')}]")
        return v

    def _expected(self) -> str:
        return {"int": "a whole number", "float": "a finite number", "bool": "1/0, true/false, yes/no or on/off",
                "choice": f"one of {', '.join(self.choices)}"}.get(self.kind, "text")

    @property
    def names_path(self) -> bool:
        """Whether the value is a path on this machine's disk (never taken from a remote client)."""
        return self.kind in ("folder", "path")

    def check_value(self, value: Any) -> None:
        """Checks that need the file system, done before a job's work: a non-empty "folder" must be a folder, a
        non-empty "path" a folder or a .safetensors file."""
        if not self.names_path or not str(value).strip():
            return
        path = Path(str(value)).expanduser()
        if self.kind == "folder" and not path.is_dir():
            what = "not a folder" if path.exists() else "no such folder"
            raise InpaintError(f"parameter {self.name}={str(value)!r}: {what}")
        if not path.exists():
            raise InpaintError(f"parameter {self.name}={str(value)!r}: no such file or folder")
        if path.is_file() and path.suffix.lower() != ".safetensors":  # weights come as safetensors only
            raise InpaintError(f"parameter {self.name}={str(value)!r}: not a checkpoint (a .safetensors file or a "
                               "folder)")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(v: float) -> str:
    """A number for a message: floats as %g, ints in full unless absurdly long."""
    text = f"{v:g}" if isinstance(v, float) else str(v)
    return text if len(text) <= 24 else text[:21] + "..."


def _bound(b: float | None, none: str) -> str:
    return none if b is None else f"{b:g}"


def _number(value: Any) -> float | int | None:
    """A real number from a str / int / float / numpy scalar (not a bool, not a container), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return None
    return None


def _finite_number(value: Any) -> float | None:
    v = _number(value)
    if v is None:
        return None
    try:
        v = float(v)
    except OverflowError:  # an int too large for a float
        return None
    return v if math.isfinite(v) else None


def _whole_number(value: Any) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return int(value)  # a checkbox's value in an int field: 0 or 1
    v = _number(value)
    if isinstance(v, float):
        if not math.isfinite(v) or not v.is_integer():
            return None
        v = int(v)
    return v


def _text(value: Any) -> str | None:
    """A str from a str, path or number; None for anything else and for text holding a NUL (no OS path can)."""
    if isinstance(value, (str, Path, int, float, np.integer, np.floating)) and not isinstance(value, bool):
        text = str(value)
        return None if "\x00" in text else text
    return None


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _boolean(value: Any) -> bool | None:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        low = value.strip().lower()
        return True if low in _TRUE else False if low in _FALSE else None
    v = _number(value)
    return bool(v) if v in (0, 1) else None


@dataclass(frozen=True)
class Attribute:
    """A controllable attribute (e.g. smile, glasses): the editor shows a toggle, the request carries 0.0/1.0."""

    name: str
    label: str
    default: float = 0.0
    help: str = ""
    min: float = 0.0  # the range a request may ask for (0 = without, 1 = with)
    max: float = 1.0

    def parse(self, value: Any) -> float:
        """A finite number in [min, max] (true/false, yes/no, on/off are 1 and 0); InpaintError otherwise."""
        v = _finite_number(value)
        if v is None and isinstance(value, (bool, np.bool_, str)):
            b = _boolean(value)
            v = None if b is None else float(b)
        if v is None:
            raise InpaintError(f"attribute {self.name}={_show(value)}: expected a number from {self.min:g} to "
                               f"{self.max:g}, such as 0 or 1")
        if not self.min <= v <= self.max:
            raise InpaintError(f"attribute {self.name}={v:g} is outside [{self.min:g}, {self.max:g}]")
        return v


@dataclass(frozen=True)
class Geometry:
    """The crop a model works on. The runner cuts it (``engine.geometry.CropPlan``), hands the model that crop, and
    pastes the fill back; models never crop, resize or pad themselves.

    - ``size``: a fixed square working size (the model's training resolution): a square box around the hole with
      ``context`` is cut and resized to size x size (a user-placed region, e.g. the face box, replaces that box);
    - ``size`` None: native resolution: the hole's box plus ``context`` on each side, shrunk only as far as
      ``max_side`` (the crop's longer side) and ``max_hole`` (the hole's longer side) ask;
    - ``context``: hole sizes of context on each side of the hole's bounding box (at least ``min_context``,
      at most ``max_context`` pixels); None = the whole image;
    - ``multiple``: the working crop is padded (reflected) to sides that are multiples of this.
    """

    size: int | None = None
    context: float | None = 0.5
    max_side: int | None = None
    max_hole: int | None = None
    multiple: int = 1
    min_context: int = 0
    max_context: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model without loading it."""

    name: str  # CLI / registry key, e.g. "telea", "repaint-mnist"
    title: str  # shown in the picker
    family: str  # package under engine/, e.g. "classical", "ddpm"
    description: str
    domain: str  # what it was trained on / works on, e.g. "28x28 grey MNIST digits"
    geometry: Geometry = Geometry(context=None)  # the crop it works on (default: the whole image, native size)
    params: tuple[Param, ...] = ()
    attributes: tuple[Attribute, ...] = ()
    uses_sketch: bool = False
    weights: Path | None = None  # folder (or file) that must exist for the model to run; None = needs none
    instant: bool = False  # finishes in well under a second: the editor refills at once when an attribute flips
    grey: bool = False  # works on luminance only (e.g. MNIST): result is grey inside the hole
    uses_region: bool = False  # works on a user-placed box (Request.region), e.g. the face box
    uses_prompt: bool = False  # takes a text prompt (Request.prompt), e.g. Stable Diffusion
    learns_on_image: bool = False  # trains on the opened image first (previews with stage="train", loss set)
    category: str = "photos"  # the picker's group: "photos", "faces", "digits", or "yours" (the user's own models)
    on_photo: str = ""  # one plain sentence: what it does on an ordinary photo (the picker shows it)
    outpaint: bool = False  # can fill a border it has no content beyond (the editor's Expand canvas needs it)
    batch: int = 1  # how many images of a CLI folder it fills together by default (1: one at a time)

    @property
    def resolution(self) -> int | None:
        """The square working size, or None for a model that runs at native resolution."""
        return self.geometry.size

    @property
    def weights_present(self) -> bool:
        return self.weights is None or Path(self.weights).exists()

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise InpaintError(f"model {self.name} has no parameter {name!r} (known: {known})")

    def resolve_params(self, given: dict[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with parsed user values; unknown names are an InpaintError."""
        out = {p.name: p.default for p in self.params}
        for k, v in given.items():
            out[k] = self.param(k).parse(v)
        return out

    def resolve_attributes(self, given: dict[str, Any]) -> dict[str, float]:
        """Defaults overlaid with parsed user values (finite, in the attribute's range); unknown names are an
        InpaintError."""
        out = {a.name: float(a.default) for a in self.attributes}
        known = {a.name: a for a in self.attributes}
        for k, v in given.items():
            if k not in known:
                names = ", ".join(sorted(known)) or "none"
                raise InpaintError(f"model {self.name} has no attribute {k!r} (known: {names})")
            out[k] = known[k].parse(v)
        return out

    def check_params(self, params: dict[str, Any]) -> None:
        """The file-system checks of resolved parameters (a "folder" parameter names an existing folder)."""
        for p in self.params:
            if p.name in params:
                p.check_value(params[p.name])


@dataclass
class Request:
    image: np.ndarray  # H x W x 3 uint8
    mask: np.ndarray  # H x W bool (True = fill) or uint8 alpha (0 keep .. 255 fill)
    sketch: np.ndarray | None = None  # H x W bool, True = stroke
    attributes: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    region: tuple[int, int, int, int] | None = None  # optional (x0, y0, x1, y1) crop box chosen by the user
    prompt: str = ""
    scale: float = 1.0  # image pixels per working pixel: set by the runner (> 1 when the model sees a downscaled crop)

    @property
    def hole(self) -> np.ndarray:
        """H x W bool: the pixels a model fills (alpha > 0)."""
        return self.mask.astype(bool)

    def validate(self, need_mask: bool = True) -> None:
        """Everything a job can check before work: array shapes and dtypes, the seed, the region box, the prompt;
        ``need_mask``: a fill needs a non-empty mask (learning an image does not)."""
        img, m = self.image, self.mask
        if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise InpaintError(f"image must be H x W x 3 uint8, got {_describe(img)}")
        if min(img.shape[:2]) < MIN_SIDE:
            raise InpaintError(f"image is too small ({img.shape[1]}x{img.shape[0]}; at least {MIN_SIDE}x{MIN_SIDE})")
        if not isinstance(m, np.ndarray) or m.dtype not in (np.bool_, np.uint8):
            raise InpaintError(f"mask must be bool or uint8 alpha, got {_describe(m)}")
        if m.shape != img.shape[:2]:
            raise InpaintError(f"mask is {_size(m)} but the image is {img.shape[1]}x{img.shape[0]}")
        if self.sketch is not None:
            sk = self.sketch
            if not isinstance(sk, np.ndarray) or sk.dtype not in (np.bool_, np.uint8):
                raise InpaintError(f"sketch must be bool or uint8, got {_describe(sk)}")
            if sk.shape != img.shape[:2]:
                raise InpaintError(f"sketch is {_size(sk)} but the image is {img.shape[1]}x{img.shape[0]}")
        if isinstance(self.seed, (bool, np.bool_)) or not isinstance(self.seed, (int, np.integer)) \
                or not 0 <= self.seed <= SEED_MAX:
            raise InpaintError(f"seed {_show(self.seed)}: expected a whole number from 0 to {SEED_MAX}")
        if self.region is not None:
            try:
                r = [None if isinstance(v, (bool, np.bool_)) else _whole_number(v) for v in self.region]
            except TypeError:  # not a sequence
                r = []
            if len(r) != 4 or None in r:
                raise InpaintError(f"region {_show(self.region)}: expected four whole numbers x0, y0, x1, y1")
            if r[2] <= r[0] or r[3] <= r[1]:
                raise InpaintError(f"region {tuple(r)}: x1 must exceed x0 and y1 exceed y0")
        if not isinstance(self.prompt, str):
            raise InpaintError(f"prompt must be text, got {type(self.prompt).__name__}")
        if not isinstance(self.params, dict) or not isinstance(self.attributes, dict):
            raise InpaintError("params and attributes must be dicts of NAME: value")
        if need_mask and not m.any():
            raise InpaintError("the mask is empty: paint the area to fill first")


MIN_SIDE = 2  # pixels: the smallest image side a job accepts (as engine.imageio loads)
SEED_MAX = 2**31 - 1  # the editor's seed box goes this far, so every seed the CLI takes can be typed there


def _describe(a: Any) -> str:
    return f"{a.shape} {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__


def _size(a: np.ndarray) -> str:
    return f"{a.shape[1]}x{a.shape[0]}" if a.ndim == 2 else str(a.shape)


@dataclass
class Preview:
    """An intermediate estimate. ``image`` is small RGB uint8 showing the region ``box`` = (x0, y0, x1, y1) (None =
    all of it). A model yields boxes in its working crop's pixels; the runner maps them onto the full image and
    shrinks the image, so callers see image pixels. The editor scales it into the box and shows it inside the hole
    only. ``stage`` is "denoise" for sampling steps, "draft" for a first fill, "train" for on-image learning (then
    ``loss`` is set)."""

    step: int
    total: int
    image: np.ndarray | None = None
    box: tuple[int, int, int, int] | None = None
    stage: str = "denoise"
    loss: float | None = None
    message: str = ""


@dataclass
class ModelOutput:
    """What a model's ``run`` returns (like diffusers' pipeline outputs): the filled working crop and what the job
    measured or decided. Nothing about a job is ever left on the (cached, shared) model object."""

    image: np.ndarray  # the working crop, hole filled (H x W x 3 uint8, or H x W for a grey model); or only ``box``
    unet_calls: int | None = None  # network evaluations (for the benchmark and the CLI's --json)
    chosen: dict[str, float] = field(default_factory=dict)  # settings the model picked itself, e.g. its guidance w
    stats: dict[str, Any] = field(default_factory=dict)  # e.g. what learning did (iterations, cached or not)
    # (x0, y0, x1, y1) in the working crop: ``image`` is that box alone, holding the whole hole; the rest is the
    # crop as given. A model filling a small hole of a whole photo need not copy the photo (12 MP: 36 MB).
    box: tuple[int, int, int, int] | None = None


@dataclass
class Result:
    image: np.ndarray  # full size; outside the mask bit-identical to the request image
    model: str
    seed: int
    params: dict[str, Any]
    attributes: dict[str, float]
    timings: dict[str, float]  # seconds: "total", "first_preview", "model_load", ...
    unet_calls: int | None = None
    chosen: dict[str, float] = field(default_factory=dict)  # settings the model picked itself, e.g. its guidance w
    stats: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""


JobGen = Generator[Preview, None, ModelOutput]


class Inpainter:
    """Base class of every model. ``run`` is the one method a family must write; the optional capabilities have
    their defaults here, so callers never probe for them."""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    def geometry(self, params: dict[str, Any]) -> Geometry:
        """The crop this job works on; a model whose size depends on a checkpoint (or a parameter) overrides it."""
        return self.info.geometry

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        """Fill ``request`` (the runner's working crop, resolved parameters): yield Previews, return a ModelOutput.
        Its arrays may be views of the caller's image and mask (a whole photo goes uncopied): never write into them."""
        raise NotImplementedError

    def run_batch(self, requests: list[Request], cancel: CancelToken) -> Generator[Preview, None, list[ModelOutput]]:
        """Fill several working crops of one shape and the same parameters (``engine.runner.run_batch``); a model
        with ``info.batch`` > 1 runs them through its network together, each with its own seed, so every output is
        the one ``run`` gives alone. This default runs them one after another."""
        outs = []
        for request in requests:
            outs.append((yield from self.run(request, cancel)))
        return outs

    def learn_image(self, request: Request, cancel: CancelToken) -> Generator[Preview, None, dict]:
        """Learn (and cache) the image without filling (``info.learns_on_image``); the request's mask, possibly
        empty, is kept out of learning. Returns the learning stats."""
        raise InpaintError(f"model {self.info.name} does not learn on the image")

    def warm_up(self) -> None:
        """First-use work (imports, allocations) done when the model is picked rather than when a job starts."""


def now() -> float:
    return time.perf_counter()


def drive(gen: Generator, callback: Callable[[Any], None] | None = None) -> Any:
    """Run a generator to its end, passing each yielded item to ``callback``; return the generator's return value.
    Every job, sampler and training loop in the engine is such a generator."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(item)


def map_yields(gen: Generator, fn: Callable[[Any], Any]) -> Generator:
    """Yield ``fn(item)`` for each item of ``gen`` and return its return value: ``x = yield from map_yields(...)``
    turns a sampler's steps into Previews without losing the sampler's result."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        yield fn(item)

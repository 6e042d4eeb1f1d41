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
    kind: str  # "int" | "float" | "bool" | "choice" | "str" | "folder" (a str naming a folder; the editor can browse)
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

    def parse(self, value: Any) -> Any:
        """Coerce a value (e.g. the string of ``--param k=v``) to this parameter's type; InpaintError if invalid."""
        try:
            if self.kind == "int":
                v: Any = int(float(value)) if not isinstance(value, bool) else int(value)
            elif self.kind == "float":
                v = float(value)
            elif self.kind == "bool":
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(value)
                    v = low in ("1", "true", "yes", "on")
                else:
                    v = bool(value)
            elif self.kind == "choice":
                v = str(value)
                if v not in self.choices:
                    raise ValueError(value)
            else:
                v = str(value)
        except (TypeError, ValueError):
            expect = f"one of {', '.join(self.choices)}" if self.kind == "choice" else f"a {self.kind}"
            raise InpaintError(f"parameter {self.name}={value!r}: expected {expect}") from None
        if self.kind in ("int", "float"):
            if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                raise InpaintError(f"parameter {self.name}={v} is outside [{self.min}, {self.max}]")
        return v


@dataclass(frozen=True)
class Attribute:
    """A controllable attribute (e.g. smile, glasses): the editor shows a toggle, the request carries 0.0/1.0."""

    name: str
    label: str
    default: float = 0.0
    help: str = ""


@dataclass(frozen=True)
class Geometry:
    """The crop a model works on. The runner cuts it (``engine.geometry.CropPlan``), hands the model that crop, and
    pastes the fill back; models never crop, resize or pad themselves.

    - ``size``: a fixed square working size (the model's training resolution): a square box around the hole with
      ``context`` is cut and resized to size x size (a user-placed region, e.g. the face box, replaces that box);
    - ``size`` None: native resolution: the hole's box plus ``context`` on each side, shrunk only as far as
      ``max_side`` (the crop's longer side) and ``max_hole`` (the hole's longer side) ask;
    - ``context``: hole sizes of context on each side of the hole's bounding box; None = the whole image;
    - ``multiple``: the working crop is padded (reflected) to sides that are multiples of this.
    """

    size: int | None = None
    context: float | None = 0.5
    max_side: int | None = None
    max_hole: int | None = None
    multiple: int = 1


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
        out = {a.name: float(a.default) for a in self.attributes}
        known = {a.name for a in self.attributes}
        for k, v in given.items():
            if k not in known:
                names = ", ".join(sorted(known)) or "none"
                raise InpaintError(f"model {self.name} has no attribute {k!r} (known: {names})")
            try:
                out[k] = float(v)
            except (TypeError, ValueError):
                raise InpaintError(f"attribute {k}={v!r}: expected a number such as 0 or 1") from None
        return out


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
        """Shapes and dtypes; ``need_mask``: a fill needs a non-empty mask (learning an image does not)."""
        img, m = self.image, self.mask
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise InpaintError(f"image must be H x W x 3 uint8, got {img.shape} {img.dtype}")
        if m.dtype not in (np.bool_, np.uint8):
            raise InpaintError(f"mask must be bool or uint8 alpha, got {m.dtype}")
        if m.shape != img.shape[:2]:
            raise InpaintError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {img.shape[1]}x{img.shape[0]}")
        if self.sketch is not None and self.sketch.shape != img.shape[:2]:
            raise InpaintError("sketch size does not match the image")
        if need_mask and not m.any():
            raise InpaintError("the mask is empty: paint the area to fill first")


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

    image: np.ndarray  # the working crop, hole filled (H x W x 3 uint8, or H x W for a grey model)
    unet_calls: int | None = None  # network evaluations (for the benchmark and the CLI's --json)
    chosen: dict[str, float] = field(default_factory=dict)  # settings the model picked itself, e.g. its guidance w
    stats: dict[str, Any] = field(default_factory=dict)  # e.g. what learning did (iterations, cached or not)


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
        """Fill ``request`` (the runner's working crop, resolved parameters): yield Previews, return a ModelOutput."""
        raise NotImplementedError

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

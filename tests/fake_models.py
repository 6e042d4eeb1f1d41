"""Small test models for the editor tests and the responsiveness benchmark (not shipped in engine/).

``register_fake_models()`` adds them to the registry:
- ``test-slow``: burns CPU in torch for ``step_ms`` per step and yields a preview every step (a long job);
- ``test-train``: like test-slow but ``learns_on_image`` and its previews carry ``stage="train"`` and a loss; it
  can learn without filling (``learn_image``), after which its fills skip training;
- ``test-attr``: instant, with smile/glasses attributes (the toggle -> canvas latency path);
- ``test-region``: uses a user-placed region box, found by a cheap detector (``-nodetect``: no detector);
- ``test-fail``: raises InpaintError on every run;
- ``test-noweights``: declares weights that do not exist;
- ``test-prompt``: takes a text prompt.
The parameter schema of test-slow covers every Param kind so the generated panel is exercised.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine import registry
from engine.api import (Attribute, CancelToken, Geometry, Inpainter, InpaintError, JobGen, ModelInfo, ModelOutput,
                        Param, Preview, Request)
from engine.registry import ModelSpec

HERE = "tests.fake_models"


def _fill_colour(request: Request) -> np.ndarray:
    """A colour that depends on the seed, so different seeds give visibly different results."""
    rng = np.random.default_rng(request.seed)
    return rng.integers(40, 216, size=3).astype(np.float32)


def _burn(ms: float) -> None:
    """Spend about ``ms`` of CPU in torch (small matmuls, so it releases the GIL often like a real model)."""
    import torch

    a = torch.randn(96, 96)
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        a = torch.tanh(a @ a)


class SlowInpainter(Inpainter):
    """Interpolates from noise to a flat seed colour over ``steps`` steps, reporting its working crop as a preview.

    As ``test-train`` (``learns_on_image``) its steps are training steps with a loss, and ``learn_image`` runs them
    alone: an image learned that way is then filled without training (one "loaded from cache" preview, then the
    steps as denoising), like the frugal model's weight cache."""

    learned: set[bytes] = set()  # images learned by learn_image (class-wide, like a cache on disk)

    def learn_image(self, request: Request, cancel: CancelToken) -> JobGen:
        steps, step_ms = int(request.params.get("steps", 40)), float(request.params.get("step_ms", 20.0))
        for i in range(1, steps + 1):
            cancel.check()
            _burn(step_ms)
            yield Preview(step=i, total=steps, stage="train", loss=float(np.exp(-4 * i / steps)),
                          message="learning this image")
        SlowInpainter.learned.add(request.image.tobytes())
        return {"iterations": steps}

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        p = request.params
        steps, step_ms = int(p.get("steps", 40)), float(p.get("step_ms", 20.0))
        crop = request.image.astype(np.float32)
        colour = _fill_colour(request)
        rng = np.random.default_rng(request.seed)
        noise = rng.uniform(0, 255, crop.shape).astype(np.float32)
        learns = self.info.learns_on_image and request.image.tobytes() not in SlowInpainter.learned
        if self.info.learns_on_image and not learns:
            yield Preview(step=1, total=1, stage="train", loss=0.0, message="learned weights loaded from cache")
        for i in range(1, steps + 1):
            cancel.check()
            _burn(step_ms)
            t = i / steps
            est = (1 - t) * noise + t * colour
            yield Preview(step=i, total=steps, image=np.clip(est, 0, 255).astype(np.uint8),
                          stage="train" if learns else "denoise", loss=float(np.exp(-4 * t)) if learns else None,
                          message="learning this image" if learns else "")
        out = request.image.copy()
        out[request.mask] = colour.astype(np.uint8)
        return ModelOutput(out, unet_calls=steps)


class AttributeInpainter(Inpainter):
    """Instant: the hole becomes a colour set by the attributes (red = smile, blue = glasses)."""

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        a = request.attributes
        colour = np.array([60 + 190 * a.get("smile", 0.0), 60, 60 + 190 * a.get("glasses", 0.0)], np.uint8)
        out = request.image.copy()
        out[request.mask] = colour
        yield Preview(step=1, total=1, image=out)
        return ModelOutput(out)


class FailingInpainter(Inpainter):
    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        yield Preview(step=1, total=2)
        raise InpaintError("the test model failed on purpose")


def detect_region(image: np.ndarray) -> tuple[int, int, int, int]:
    """Top-left quarter: a stand-in for a face detector."""
    h, w = image.shape[:2]
    side = min(h, w) // 2
    return (0, 0, side, side)


SLOW_PARAMS = (
    Param("steps", "int", 40, "Steps", "Number of denoising steps", min=1, max=2000, step=1),
    Param("step_ms", "float", 20.0, "Step time (ms)", "CPU time burnt per step", min=0.0, max=1000.0, step=1.0),
    Param("sharpen", "bool", False, "Sharpen", "A boolean parameter"),
    Param("sampler", "choice", "ddpm", "Sampler", "A choice parameter", choices=("ddpm", "ddim")),
    Param("note", "str", "", "Note", "A string parameter"),
)


def _info(name: str, **kw) -> ModelInfo:
    base = dict(name=name, title=f"Test: {name}", family="test", description=f"{name} (a test model)",
                domain="tests only")
    base.update(kw)
    return ModelInfo(**base)


def unregister_fake_models() -> None:
    """Remove them again, so later tests in the same session (e.g. listing models) see only real ones."""
    for name in FAKE_NAMES:
        registry.unregister(name)


FAKE_NAMES = ("test-slow", "test-train", "test-attr", "test-region", "test-region-nodetect", "test-fail",
              "test-noweights", "test-prompt")


def register_fake_models() -> None:
    specs = [
        ModelSpec(_info("test-slow", params=SLOW_PARAMS), f"{HERE}:SlowInpainter", order=900),
        ModelSpec(_info("test-train", params=SLOW_PARAMS, learns_on_image=True), f"{HERE}:SlowInpainter",
                  order=901),
        ModelSpec(_info("test-attr", instant=True, attributes=(Attribute("smile", "Smile"),
                                                               Attribute("glasses", "Glasses"))),
                  f"{HERE}:AttributeInpainter", order=902),
        ModelSpec(_info("test-region", params=SLOW_PARAMS, uses_region=True, geometry=Geometry(size=64)),
                  f"{HERE}:SlowInpainter", order=903, region_detector=f"{HERE}:detect_region"),
        ModelSpec(_info("test-region-nodetect", params=SLOW_PARAMS, uses_region=True, geometry=Geometry(size=32)),
                  f"{HERE}:SlowInpainter", order=903),
        ModelSpec(_info("test-fail"), f"{HERE}:FailingInpainter", order=904),
        ModelSpec(_info("test-noweights", weights=Path("/nonexistent/weights")), f"{HERE}:FailingInpainter",
                  order=905),
        ModelSpec(_info("test-prompt", uses_prompt=True), f"{HERE}:AttributeInpainter", order=906),
    ]
    for s in specs:
        registry.register(s)

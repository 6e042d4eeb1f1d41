"""Model registry: every family package under ``engine/`` that defines ``MODELS`` is discovered here.

A family's ``__init__.py`` must stay cheap to import (no torch at import time): it lists ``ModelSpec``s whose
``factory`` is a "module:attribute" string, imported only when the model is first used. Adding a family therefore
needs no edit to this file or to the editor.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading
from dataclasses import dataclass, field
from typing import Any

from engine.api import Inpainter, InpaintError, ModelInfo

DEFAULT_MODEL = "telea"


@dataclass(frozen=True)
class ModelSpec:
    info: ModelInfo
    factory: str  # "engine.family.pipeline:ClassName", called as factory(info, **kwargs)
    kwargs: dict[str, Any] = field(default_factory=dict)
    order: int = 100  # position in the picker (lower first)
    region_detector: str | None = None  # "module:function", image -> (x0, y0, x1, y1) | None; must not use torch


_lock = threading.Lock()
_specs: dict[str, ModelSpec] | None = None
_loaded: dict[str, Inpainter] = {}


def _discover() -> dict[str, ModelSpec]:
    import engine

    specs: dict[str, ModelSpec] = {}
    for mod in sorted(pkgutil.iter_modules(engine.__path__), key=lambda m: m.name):
        if not mod.ispkg:
            continue
        pkg = importlib.import_module(f"engine.{mod.name}")
        for spec in getattr(pkg, "MODELS", ()):
            if spec.info.name in specs:
                raise RuntimeError(f"model name {spec.info.name!r} registered twice")
            specs[spec.info.name] = spec
    return specs


def _all_specs() -> dict[str, ModelSpec]:
    global _specs
    with _lock:
        if _specs is None:
            _specs = _discover()
        return _specs


def register(spec: ModelSpec) -> None:
    """Add a model at run time (tests use this for tiny models); replaces one of the same name."""
    specs = _all_specs()
    with _lock:
        specs[spec.info.name] = spec
        _loaded.pop(spec.info.name, None)


def unregister(name: str) -> None:
    specs = _all_specs()
    with _lock:
        specs.pop(name, None)
        _loaded.pop(name, None)


def all_models() -> list[ModelInfo]:
    specs = _all_specs()
    return [s.info for s in sorted(specs.values(), key=lambda s: (s.order, s.info.name))]


def get_spec(name: str) -> ModelSpec:
    specs = _all_specs()
    if name not in specs:
        raise InpaintError(f"unknown model {name!r}; run `python main.py models` to list them")
    return specs[name]


def get_info(name: str) -> ModelInfo:
    return get_spec(name).info


def load(name: str) -> Inpainter:
    """The model's inpainter, built once and cached (weights load lazily on first use)."""
    info = get_info(name)
    if not info.weights_present:
        raise InpaintError(f"model {name}: weights not found at {info.weights}")
    with _lock:
        if name not in _loaded:
            spec = _specs[name]  # type: ignore[index]
            module, _, attr = spec.factory.partition(":")
            cls = getattr(importlib.import_module(module), attr)
            _loaded[name] = cls(info, **spec.kwargs)
        return _loaded[name]


def suggest_region(name: str, image) -> tuple[int, int, int, int] | None:
    """Where a ``uses_region`` model's box should start on this image (e.g. a detected face), or None."""
    spec = _all_specs().get(name)
    if spec is None or spec.region_detector is None:
        return None
    module, _, attr = spec.region_detector.partition(":")
    return getattr(importlib.import_module(module), attr)(image)

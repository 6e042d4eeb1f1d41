"""Model registry: every family package under ``engine/`` that defines ``MODELS`` is discovered here.

A family's ``__init__.py`` must stay cheap to import (no torch at import time): it lists ``ModelSpec``s whose
``factory`` is a "module:attribute" string, imported only when the model is first used. Adding a family therefore
needs no edit to this file or to the editor.

A server's models: ``use_server(client)`` lists the models of a ``python main.py serve`` server instead of this
computer's (the editor's "Compute on" setting); its jobs then run through ``server()`` (engine.server.client).

The user's own models: a family may also define ``discover(folder) -> (specs, problems)``, which looks through the
models folder (``set_models_dir``; ``INPAINT_STUDIO_MODELS`` by default) for files it can run and returns a spec per
model plus one line per file it could not use. Those models are listed with the shipped ones.
"""
from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.api import Inpainter, InpaintError, ModelInfo

# The model a photo gets by default: the one that measures best on real photos here (benchmarks/photo_models.py:
# lowest mean rank over PSNR, SSIM and detail on scikit-image photos with object, scribble and scratch holes;
# results in benchmarks/results/photo_models.json).
DEFAULT_MODEL = "patch"  # mean rank 1.69, Navier-Stokes 2.02, Telea 2.30 (December 2026, texture weight 3)
MODELS_DIR_ENV = "INPAINT_STUDIO_MODELS"


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
_models_dir: Path | None = None  # the user's models folder, once set (None: not set, or the environment's)
_user: dict[str, ModelSpec] = {}  # what the families found there
scan_problems: list[str] = []  # one line per file in the models folder that no family could use
_server: Any = None  # the engine.server.client.Client whose models are listed instead of this computer's
_remote: dict[str, ModelSpec] = {}  # what it lists


def _families() -> list:
    import engine

    return [importlib.import_module(f"engine.{m.name}")
            for m in sorted(pkgutil.iter_modules(engine.__path__), key=lambda m: m.name) if m.ispkg]


def _discover() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for pkg in _families():
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
            folder = _models_dir or (Path(os.environ[MODELS_DIR_ENV]) if os.environ.get(MODELS_DIR_ENV) else None)
            if folder is not None:
                _scan(folder)
        return dict(_remote) if _server is not None else {**_specs, **_user}


def _scan(folder: Path) -> None:
    """Ask every family with ``discover`` what it can run in ``folder`` (holding ``_lock``)."""
    _user.clear()
    scan_problems.clear()
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        scan_problems.append(f"models folder {folder}: no such folder")
        return
    for pkg in _families():
        discover = getattr(pkg, "discover", None)
        if discover is None:
            continue
        specs, problems = discover(folder)
        scan_problems.extend(problems)
        for spec in specs:
            if spec.info.name in _specs:  # type: ignore[operator]
                scan_problems.append(f"{spec.info.name}: a shipped model has that name; rename it in {folder}")
                continue
            _user[spec.info.name] = spec
            _loaded.pop(spec.info.name, None)


def set_models_dir(folder: str | Path | None) -> list[str]:
    """Use ``folder`` as the user's models folder (None: the environment's, if any) and list what is in it now;
    returns one line per file that could not be used."""
    global _models_dir
    _all_specs()
    with _lock:
        _models_dir = Path(folder) if folder else None
        _user.clear()
        scan_problems.clear()
        env = os.environ.get(MODELS_DIR_ENV)
        target = _models_dir or (Path(env) if env else None)
        if target is not None:
            _scan(target)
        return list(scan_problems)


def use_server(client: Any) -> None:
    """List the models of the server ``client`` talks to instead of this computer's (None: this computer's again).
    Raises InpaintError, changing nothing, when the server cannot be reached or refuses the token."""
    global _server, _remote
    if client is None:
        with _lock:
            _server, _remote = None, {}
        return
    infos = client.models()  # the network call, outside the lock
    _all_specs()  # this computer's families discovered, for their region detectors
    with _lock:
        local = {**_specs, **_user}  # type: ignore[dict-item]
    specs = {}
    for order, info in enumerate(infos):
        mine = local.get(info.name)  # the box suggestion (a face detector) runs here, as for a local model
        # learning the image happens inside the server's fill job: no separate Learn, whose cache is on the server
        specs[info.name] = ModelSpec(dataclasses.replace(info, learns_on_image=False), factory="", order=order,
                                     region_detector=mine.region_detector if mine else None)
    with _lock:
        _server, _remote = client, specs


def server() -> Any:
    """The client of the server the models run on, or None when they run on this computer."""
    return _server


def register(spec: ModelSpec) -> None:
    """Add a model at run time (tests use this for tiny models); replaces one of the same name."""
    _all_specs()
    with _lock:
        _specs[spec.info.name] = spec  # type: ignore[index]
        _loaded.pop(spec.info.name, None)


def unregister(name: str) -> None:
    _all_specs()
    with _lock:
        _specs.pop(name, None)  # type: ignore[union-attr]
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
    spec = get_spec(name)
    info = spec.info
    if _server is not None:
        raise InpaintError(f"model {name} runs on the server {_server.url}")
    if not info.weights_present:
        raise InpaintError(f"model {name}: weights not found at {info.weights}")
    with _lock:
        if name not in _loaded:
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

"""Where shipped weights live, the one way networks are saved and loaded, and the one cache of loaded models.

A network folder (what ``save_pretrained`` writes and ``load_pretrained`` reads) is, as in diffusers:

    config.json          the network's config dataclass (nested dataclasses and tuples included), plus an
                         optional "training" object (data, command, metrics: what the model card summarises)
    model.safetensors    the state dict (another name where a class says so, e.g. lgp.safetensors)

safetensors only: no pickle is ever read or written. Networks that come from diffusers (UNet2DModel, Stable
Diffusion parts) keep diffusers' own format and loaders. Both files are written atomically (a temporary name,
then a rename), so a crash never leaves a half-written model under its final name.

``CACHE`` holds every loaded model once, keyed by what it was loaded from; a cached model is moved in place to
the device of the latest job (one copy of the weights: Stable Diffusion is gigabytes).
"""
from __future__ import annotations

import dataclasses
import json
import threading
import typing
from pathlib import Path
from typing import Any, Callable, TypeVar

from engine.api import InpaintError
from engine.atomic import write_atomic_path

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
MODELS_DIR = RESOURCES / "models"  # shipped weights: <name>/{config.json, *.safetensors, MODEL_CARD.md}
SAMPLES_DIR = RESOURCES / "samples"

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TRAINING_KEY = "training"

T = TypeVar("T")


def config_to_dict(config: Any) -> dict:
    """A config dataclass as JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """The dataclass ``cls`` from ``data``: nested dataclasses rebuilt, lists turned back into tuples where the
    field is a tuple; an unknown key is an error (a config for another network must not load silently)."""
    if not isinstance(data, dict):
        raise InpaintError(f"{where}: expected a JSON object for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InpaintError(f"{where}: unknown {cls.__name__} field(s) {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        kind = hints.get(name)
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            value = config_from_dict(kind, value, where)
        else:
            if not _fits(value, kind):  # e.g. "ch": "big": the network would fail later with no file named
                raise InpaintError(f"{where}: {cls.__name__}.{name} = {json.dumps(value)[:60]} is not "
                                   f"{_type_name(kind)}")
            if isinstance(value, list) and typing.get_origin(kind) is tuple:
                value = tuple(value)
        values[name] = value
    return cls(**values)


def _fits(value: Any, kind: Any) -> bool:
    """Whether a JSON value can stand for a field of type ``kind`` (unknown or open types always can)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value \
            and abs(value) != float("inf")
    if kind is str:
        return isinstance(value, str)
    if dataclasses.is_dataclass(kind):
        return False  # a nested config must be a JSON object (handled by the caller)
    if origin in (list, tuple):
        if not isinstance(value, list):
            return False
        item = args[0] if args else Any
        return all(_fits(v, item) for v in value)
    if origin is typing.Union or type(kind).__name__ == "UnionType":
        return any(_fits(value, a) or (a is type(None) and value is None) for a in args)
    return True


def _type_name(kind: Any) -> str:
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    if kind in names:
        return names[kind]
    if dataclasses.is_dataclass(kind):
        return f"a JSON object ({kind.__name__})"
    return f"a {getattr(kind, '__name__', None) or kind}"


INT8_SCALE = ".int8_scale"  # suffix of the per-row scale stored beside an int8 matrix


def int8_rows(state: dict) -> dict:
    """``state`` with every large float matrix (>= 64k entries: linear layers, embeddings) stored as int8 rows and a
    float32 scale per row (absmax / 127), a quarter of the bytes; ``load_weights`` restores float32. For networks
    whose file size matters more than the last 0.4 % of a weight's precision (the token transformers ship four)."""
    import torch

    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.dim() == 2 and v.numel() >= 65536:
            scale = v.float().abs().amax(1, keepdim=True).clamp(min=1e-12) / 127.0
            out[k] = torch.round(v.float() / scale).to(torch.int8)
            out[k + INT8_SCALE] = scale
        else:
            out[k] = v
    return out


def save_pretrained(folder: str | Path, net, config: Any, training: dict | None = None,
                    weights_name: str = WEIGHTS_NAME, int8: bool = False) -> Path:
    """Write ``config`` (a dataclass) and ``training`` to config.json and ``net``'s state dict to safetensors
    (``int8``: large matrices as int8 rows, ``int8_rows``)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = config_to_dict(config)
    if training is not None:
        data[TRAINING_KEY] = training
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    if int8:
        state = int8_rows(state)
    write_atomic_path(folder / weights_name, lambda p: save_file(state, str(p)))
    write_atomic_path(folder / CONFIG_NAME, lambda p: p.write_text(json.dumps(data, indent=2) + "\n"))
    return folder


def read_config(folder: str | Path, config_cls: type[T]) -> tuple[T, dict]:
    """(config, training facts) from ``folder``/config.json; InpaintError naming the file when it is unusable."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise InpaintError(f"{path}: no such file (a model folder holds {CONFIG_NAME} and its weights)")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InpaintError(f"{path}: not readable JSON ({exc})") from None
    training = data.pop(TRAINING_KEY, None) if isinstance(data, dict) else None
    try:
        return config_from_dict(config_cls, data, str(path)), training or {}
    except TypeError as exc:
        raise InpaintError(f"{path}: {exc}") from None


def load_weights(net, path: str | Path, device="cpu") -> None:
    """Load a safetensors state dict into ``net`` (strict); InpaintError naming the file on any mismatch."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise InpaintError(f"{path}: no such file")
    try:
        state = load_file(str(path), device=str(device))
    except Exception as exc:  # truncated or not safetensors at all
        raise InpaintError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None
    for k in [k for k in state if k.endswith(INT8_SCALE)]:  # int8 rows (save_pretrained(int8=True)) -> float32
        base = k[:-len(INT8_SCALE)]
        if base in state:
            state[base] = state[base].float() * state.pop(k)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # missing / unexpected keys, wrong shapes: another network's weights
        raise InpaintError(f"{path}: the weights do not fit this network ({_first_line(exc)})") from None


def load_pretrained(folder: str | Path, build: Callable[[Any], T], config_cls: type, device="cpu",
                    weights_name: str = WEIGHTS_NAME) -> tuple[T, dict]:
    """(network in eval mode on ``device``, training facts): ``build(config)`` makes the network, the folder's
    safetensors fill it. Every failure is one InpaintError line naming the file."""
    config, training = read_config(folder, config_cls)
    try:
        net = build(config)
    except Exception as exc:  # values of the right type that make no network (a negative size, ...)
        raise InpaintError(f"{Path(folder) / CONFIG_NAME}: no {config_cls.__name__} network can be built from it "
                           f"({type(exc).__name__}: {_first_line(exc)})") from None
    load_weights(net, Path(folder) / weights_name, device)
    return net.to(device).eval(), training


def save_training_state(path: str | Path, nets: dict[str, Any], optimizers: dict[str, Any], meta: dict) -> None:
    """A training checkpoint (to resume, not to ship): the state dicts of ``nets`` and ``optimizers`` and the CPU
    random state in ``path`` (.safetensors), ``meta`` and the optimizers' param groups in ``path`` (.json)."""
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"{name}.{k}": v for name, net in nets.items() for k, v in net.state_dict().items()}
    groups = {}
    for name, opt in optimizers.items():
        state = opt.state_dict()
        for i, st in state["state"].items():
            for k, v in st.items():
                tensors[f"{name}.state.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
        groups[name] = state["param_groups"]
    tensors["rng.cpu"] = torch.get_rng_state()
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    write_atomic_path(path.with_suffix(".safetensors"), lambda p: save_file(tensors, str(p)))
    write_atomic_path(path.with_suffix(".json"), lambda p: p.write_text(json.dumps({**meta, "param_groups": groups},
                                                                                indent=2)))


def load_training_state(path: str | Path, nets: dict[str, Any], optimizers: dict[str, Any]) -> dict:
    """Restore what ``save_training_state`` wrote into ``nets`` and ``optimizers`` (and the CPU random state);
    returns its ``meta``."""
    import torch
    from safetensors.torch import load_file

    path = Path(path)
    tensors = load_file(str(path.with_suffix(".safetensors")))
    meta = json.loads(path.with_suffix(".json").read_text())
    for name, net in nets.items():
        net.load_state_dict({k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")
                             and not k.startswith(name + ".state.")})
    for name, opt in optimizers.items():
        state: dict[int, dict] = {}
        for k, v in tensors.items():
            if k.startswith(name + ".state."):
                i, key = k[len(name) + 7:].split(".", 1)
                state.setdefault(int(i), {})[key] = v
        opt.load_state_dict({"state": state, "param_groups": meta["param_groups"][name]})
    torch.set_rng_state(tensors["rng.cpu"])
    return meta


def _first_line(exc: BaseException) -> str:
    """The exception's first informative line (torch's "Error(s) in loading state_dict for X:" is a heading)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = [f"{lines[0]} {lines[1]}"]
    return (lines[0] if lines else type(exc).__name__)[:200]


class ModelCache:
    """Every loaded model, once. ``get(key, load, device)`` loads on first use (one lock per key, so a slow load
    does not block other models) and moves the cached object in place to ``device`` (anything with ``.to``)."""

    def __init__(self) -> None:
        self._items: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, load: Callable[[], T], device=None) -> T:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._items:
                self._items[key] = load()
            item = self._items[key]
            if device is not None:
                item.to(device)
            return item

    def drop(self, key: str) -> None:
        with self._guard:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._guard:
            self._items.clear()


CACHE = ModelCache()


def cache_key(*parts: Any) -> str:
    """A cache key from paths (resolved) and other values."""
    return "|".join(str(Path(p).expanduser().resolve()) if isinstance(p, Path) else str(p) for p in parts)


def int8_folder(src: str | Path, dst: str | Path) -> Path:
    """A pretrained folder copied with its large matrices as int8 rows (``int8_rows``); config.json as it is."""
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    state = int8_rows(load_file(str(src / WEIGHTS_NAME)))
    write_atomic_path(dst / WEIGHTS_NAME, lambda p: save_file(state, str(p)))
    text = (src / CONFIG_NAME).read_text()
    write_atomic_path(dst / CONFIG_NAME, lambda p: p.write_text(text))
    return dst


if __name__ == "__main__":  # python -m engine.weights int8 SRC_FOLDER DST_FOLDER
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "int8":
        sys.exit("usage: python -m engine.weights int8 SRC_FOLDER DST_FOLDER")
    print(int8_folder(sys.argv[2], sys.argv[3]))

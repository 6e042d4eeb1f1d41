"""What crosses the wire between ``engine.server.app`` and ``engine.server.client``: model schemas as JSON (so a
client builds its picker and parameter panel from them, as the editor does from the registry), progress events,
and previews as PNG. One module, so the two ends cannot drift apart.
"""
from __future__ import annotations

import base64
import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np

from engine.api import Attribute, Geometry, ModelInfo, Param, Preview

API = "/api/v1"
PREVIEW_FPS = 8  # previews a follower receives per second at most (the newest one; progress events are not capped)


def offered(info: ModelInfo) -> bool:
    """Whether a client may run this model: not one that needs a folder on the server's disk named (where a user's
    model lives: a ``remember`` folder parameter such as a checkpoint); the server's own models folder serves
    those by name instead."""
    return not any(p.names_path and p.remember for p in info.params)


def path_params(info: ModelInfo, given: dict) -> list[str]:
    """The folder parameters a client tried to set: a client never names a path on the server's disk."""
    return [p.name for p in info.params if p.names_path and str(given.get(p.name, "")).strip()]


def model_to_json(info: ModelInfo) -> dict[str, Any]:
    d = {f.name: getattr(info, f.name) for f in dataclasses.fields(info) if f.name not in ("weights", "params",
                                                                                         "attributes", "geometry")}
    d["params"] = [dataclasses.asdict(p) for p in info.params]
    d["attributes"] = [dataclasses.asdict(a) for a in info.attributes]
    d["geometry"] = dataclasses.asdict(info.geometry)
    d["weights_present"] = info.weights_present
    return d


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The fields of ``d`` that ``cls`` has: a newer server may send fields this client does not know yet."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def model_from_json(d: dict[str, Any]) -> ModelInfo:
    """The server's ModelInfo as the client's registry holds it (no weights on this side: the server has them)."""
    fields = {k: v for k, v in _known(ModelInfo, d).items() if k not in ("params", "attributes", "geometry")}
    params = tuple(Param(**{**_known(Param, p), "choices": tuple(p.get("choices", ())),
                            "disables": tuple(p.get("disables", ()))}) for p in d.get("params", ()))
    attributes = tuple(Attribute(**_known(Attribute, a)) for a in d.get("attributes", ()))
    return ModelInfo(**fields, params=params, attributes=attributes,
                     geometry=Geometry(**_known(Geometry, d.get("geometry", {}))), weights=None)


def png_bytes(rgb: np.ndarray, metadata: dict[str, str] | None = None) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for k, v in (metadata or {}).items():
        info.add_text(k, v)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", pnginfo=info, compress_level=1)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def preview_event(p: Preview) -> dict[str, Any]:
    return {"type": "preview", "step": p.step, "total": p.total, "stage": p.stage, "box": list(p.box or ()),
            "png": base64.b64encode(png_bytes(p.image)).decode("ascii")}


def preview_from_event(e: dict[str, Any]) -> Preview:
    return Preview(step=e["step"], total=e["total"], image=decode_png(base64.b64decode(e["png"])),
                   box=tuple(e["box"]) if e["box"] else None, stage=e["stage"])


def mask_png(mask: np.ndarray) -> bytes:
    """A bool or uint8-alpha mask as the grey PNG the server reads (white = fill)."""
    alpha = mask.astype(np.uint8) * 255 if mask.dtype == np.bool_ else mask.astype(np.uint8)
    return png_bytes(np.repeat(alpha[..., None], 3, axis=2))


def source_name(name: str | None) -> str:
    """An uploaded file's name reduced to its last component (it is only written into PNG metadata)."""
    return Path(name or "").name[:200]

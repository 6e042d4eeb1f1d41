"""The user's ONNX erase models (LaMa, MI-GAN exports, as IOPaint users keep them), run through onnxruntime.

Nothing ships here: ``discover(folder)`` lists every ``.onnx`` file in the models folder whose inputs follow one of
the conventions ``engine.onnx.pipeline`` runs (read from the file's graph without onnxruntime, see
``engine.onnx.signature``); anything else is one line in the scan's problems. Cheap to import (no onnxruntime).
"""
from __future__ import annotations

from pathlib import Path

from engine.api import Geometry, ModelInfo, Param
from engine.registry import ModelSpec

MODELS: list = []

LABELS = {"lama": "LaMa-style", "migan-pipeline": "MI-GAN pipeline", "migan": "MI-GAN"}


def geometry(convention: str, side: int | None, context: float = 1.0) -> Geometry:
    """The crop an ONNX model works on: its fixed square input, or (dynamic LaMa) native pixels up to 1024 px,
    padded to a multiple of 8 (IOPaint's pad_mod); MI-GAN works at 512 (its training size) whatever the export."""
    if convention == "migan-pipeline":
        return Geometry(size=side or 512, context=context)
    if side:
        return Geometry(size=side, context=context)
    return Geometry(size=None, context=context, max_side=1024, multiple=8)


def discover(folder: Path) -> tuple[list[ModelSpec], list[str]]:
    from engine.onnx.signature import OnnxError, classify, read_signature
    from engine.sd.checkpoint import walk_models

    specs, problems = [], []
    _, files = walk_models(Path(folder))
    for path in files:
        if path.suffix.lower() != ".onnx":
            continue
        name = path.relative_to(folder).as_posix()
        try:
            convention, side = classify(read_signature(path))
        except OnnxError as exc:
            problems.append(f"{name}: not a usable ONNX inpainting model ({exc})")
            continue
        size = f"{side} px" if side else "any size"
        info = ModelInfo(
            name=name, title=f"{path.stem} ({LABELS[convention]} ONNX, {size})", family="onnx",
            description=f"Your ONNX erase model {name} ({LABELS[convention]} inputs), run by onnxruntime in one "
                        f"pass: removes what is masked and continues the surroundings; no prompt.",
            domain="what it was trained on (LaMa: Places2 scenes; MI-GAN: Places2 or FFHQ faces)",
            geometry=geometry(convention, side),
            params=(Param("context", "float", 1.0, "Context",
                          "How much of the photo around the hole the model sees, in hole sizes on each side",
                          min=0.1, max=4.0, step=0.1),),
            weights=path, category="yours",
            on_photo="Erases what you mask and continues the background, in one pass (an ONNX LaMa / MI-GAN).")
        specs.append(ModelSpec(info, factory="engine.onnx.pipeline:OnnxInpainter",
                               kwargs={"path": str(path), "convention": convention, "side": side},
                               order=300 + len(specs)))
    return specs, problems

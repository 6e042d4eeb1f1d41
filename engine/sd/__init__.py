"""Stable Diffusion checkpoints as artists have them: 1.x, 2.x and XL, ordinary or inpainting, as diffusers folders or
single ``.safetensors`` files, filled from a text prompt (and a sketch) on the user's photos.

Cheap to import (no torch): the registry reads ``MODELS`` and calls ``discover(folder)`` on the models folder, which
reads only safetensors headers and JSON configs (``engine.sd.checkpoint``).
"""
from __future__ import annotations

from pathlib import Path

from engine.api import Attribute, Geometry, ModelInfo, Param
from engine.registry import ModelSpec
from engine.sd.checkpoint import (PICKLE_SUFFIXES, CheckpointError, Kind, detect_folder, detect_single,
                                  refuse_pickle, walk_models)

SCHEDULER_CHOICES = ("dpm++ 2m karras", "euler a", "ddim", "lcm")


def _defaults(kind: Kind | None) -> tuple[int, float, str]:
    """(steps, guidance scale, scheduler) a checkpoint of this type is made for."""
    flavour = kind.flavour if kind else ""
    if flavour == "lcm":
        return 6, 1.5, "lcm"
    if flavour in ("turbo", "lightning", "hyper"):
        return 4 if flavour == "turbo" else 6, 1.0, "euler a"
    return 25, 7.0 if not kind or kind.arch != "sdxl" else 6.0, "dpm++ 2m karras"


def fill_params(kind: Kind | None, sketch: bool = True) -> tuple[Param, ...]:
    steps, cfg, scheduler = _defaults(kind)
    params = [
        Param("negative_prompt", "str", "", "Negative prompt",
              "What the fill should not show, e.g. 'blurry, text, watermark' (used when Prompt strength > 1)"),
        Param("steps", "int", steps, "Steps", "Denoising steps: 20-30 for ordinary checkpoints, 4-8 for LCM / "
              "Turbo / Lightning ones; more is slower, rarely better", min=1, max=150, step=1),
        Param("cfg_scale", "float", cfg, "Prompt strength (CFG)",
              "Classifier-free guidance: how strongly the fill follows the prompt; 1 = off (twice as fast, the "
              "negative prompt is ignored); 5-8 usual, 1-2 for distilled checkpoints", min=1.0, max=20.0, step=0.5),
        Param("strength", "float", 1.0, "Strength",
              "1 = paint the hole anew; lower keeps the layout and colours already in the hole (img2img) and runs "
              "that share of the steps", min=0.05, max=1.0, step=0.05),
        Param("scheduler", "choice", scheduler, "Sampler",
              "DPM++ 2M Karras: sharp in few steps (default); Euler a: varied, for Turbo-style checkpoints; DDIM: "
              "deterministic; LCM: for LCM checkpoints", choices=SCHEDULER_CHOICES),
        Param("context", "float", 0.5, "Context",
              "How much of the photo around the hole the model sees, in hole sizes on each side; the crop is resized "
              "to the checkpoint's native resolution", min=0.1, max=4.0, step=0.1, advanced=True),
    ]
    if sketch:
        params += [
            Param("sketch_strength", "float", 0.75, "Sketch freedom",
                  "Without an LGP for this checkpoint the strokes are drawn into the start image: how much noise "
                  "covers them (SDEdit); lower follows the drawing more literally", min=0.3, max=1.0, step=0.05),
            Param("beta", "float", 1.0, "Sketch strength (LGP)",
                  "With an LGP: guidance step relative to the denoising step (Voynov et al.); 0 = ignore the sketch",
                  min=0.0, max=4.0, step=0.1),
            Param("share", "float", 0.5, "Guided share of steps (LGP)",
                  "With an LGP: guide the first (noisiest) share of the steps", min=0.0, max=1.0, step=0.05,
                  advanced=True),
            Param("lgp", "folder", "", "LGP folder",
                  "Latent Guidance Predictor trained on this checkpoint (default: <folder>/sketch-lgp or "
                  "<file>.sketch-lgp next to it; none: the sketch is drawn into the start image)", remember=True),
        ]
    return tuple(params)


MODELS = [
    ModelSpec(ModelInfo(
        name="sd-sketch", title="Stable Diffusion (a checkpoint you name)", family="sd",
        description="Text-guided Stable Diffusion from a checkpoint on your disk: a diffusers folder or a single "
                    ".safetensors file of SD 1.x, 2.x or XL, ordinary or inpainting. A sketch in the hole is "
                    "followed through an LGP trained on that checkpoint (`python -m engine.sketch.train --sd`) or, "
                    "without one, drawn into the start image. Checkpoints in the models folder appear by name too.",
        domain="whatever your Stable Diffusion checkpoint was trained on (photos); works at its native resolution",
        geometry=Geometry(size=512, context=0.5), uses_sketch=True, uses_prompt=True,
        params=(Param("checkpoint", "path", "", "SD checkpoint",
                      "Local Stable Diffusion checkpoint: a single .safetensors file or a diffusers folder (Browse "
                      "offers both); no weights ship with the app", remember=True),) + fill_params(None),
        weights=None, category="yours", outpaint=True,
        on_photo="Your Stable Diffusion checkpoint fills from a text prompt (and your sketch): photo quality from a "
                 "good checkpoint."),
        factory="engine.sd.pipeline:SketchSDInpainter", order=41),
]


def _info(name: str, path: Path, kind: Kind) -> ModelInfo:
    how = ("an inpainting UNet: it fills with its own mask conditioning" if kind.inpainting else
           "an ordinary UNet: it fills by latent blending (an inpainting checkpoint blends in better)")
    return ModelInfo(
        name=name, title=f"{path.stem if path.is_file() else path.name} ({kind.label})", family="sd",
        description=f"Your Stable Diffusion checkpoint {name}: {kind.label}, {how}. Describe the fill in the prompt; "
                    f"a sketch in the hole shapes it.",
        domain=f"what the checkpoint was trained on; works at {kind.native} px (the hole and its surroundings are "
               f"cropped and resized to that)",
        geometry=Geometry(size=kind.native, context=0.5), params=fill_params(kind), uses_sketch=True,
        uses_prompt=True, weights=path, category="yours", outpaint=True,
        on_photo="Fills the hole from your text prompt with your own Stable Diffusion model.")


def _face_spec(found: dict[str, tuple[str, Kind]]) -> ModelSpec:
    names = tuple(found)
    default = next((n for n in names if found[n][1].inpainting), names[0])
    params = (Param("checkpoint", "choice", default, "Checkpoint",
                    "Which of your Stable Diffusion checkpoints paints the face (an inpainting one blends best)",
                    choices=names, remember=True),) + fill_params(None, sketch=False)[:5]
    return ModelSpec(ModelInfo(
        name="sd-face", title="Face attributes on photos (your SD model)", family="sd",
        description="Smile and glasses on a real face: the face box (placed on the detected face) is filled by your "
                    "Stable Diffusion checkpoint with attribute phrases added to the prompt and negative prompt. "
                    "Mask the mouth or the eye band; flip a toggle and fill again.",
        domain="real photos of faces (whatever your checkpoint knows)",
        geometry=Geometry(size=found[default][1].native, context=1.0), params=params,
        attributes=(Attribute("smile", "Smile", 1.0, "Fill the mouth smiling (1) or neutral (0)"),
                    Attribute("glasses", "Glasses", 0.0, "Fill the eye band with glasses (1) or without (0)")),
        uses_region=True, uses_prompt=True, category="faces",
        on_photo="Paints a smile or glasses on a real face with your own Stable Diffusion model."),
        factory="engine.sd.pipeline:SDFaceInpainter", kwargs={"checkpoints": dict(found)}, order=61,
        region_detector="engine.face.detect:detect_face")


def discover(folder: Path) -> tuple[list[ModelSpec], list[str]]:
    """The Stable Diffusion checkpoints in the models folder (named by their path in it), plus ``sd-face`` when
    there is one; one line per file that cannot be used (pickles, partial downloads, LoRAs, ...)."""
    folder = Path(folder)
    specs: list[ModelSpec] = []
    problems: list[str] = []
    found: dict[str, tuple[str, Kind]] = {}
    folders, files = walk_models(folder)
    candidates = [(d, True) for d in folders] + [(f, False) for f in files]
    for path, is_dir in sorted(candidates, key=lambda c: str(c[0]).lower()):
        name = path.relative_to(folder).as_posix()
        suffix = path.suffix.lower()
        if not is_dir and suffix in PICKLE_SUFFIXES:
            problems.append(refuse_pickle(path).replace(path.name, name, 1))
            continue
        if not is_dir and suffix != ".safetensors":
            continue
        try:
            kind = detect_folder(path) if is_dir else detect_single(path)
        except CheckpointError as exc:
            problems.append(str(exc).replace(path.name, name, 1) if str(exc).startswith(path.name) else
                            f"{name}: {exc}")
            continue
        found[name] = (str(path), kind)
        specs.append(ModelSpec(_info(name, path, kind), factory="engine.sd.pipeline:SDInpainter",
                               kwargs={"path": str(path), "kind": kind}, order=200 + len(specs)))
    if found:
        specs.append(_face_spec(found))
    return specs, problems

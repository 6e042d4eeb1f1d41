"""Engine inpainters of the Stable Diffusion family.

- ``SDInpainter``: one of the user's checkpoints found in the models folder (``path`` and its detected ``kind``);
- ``SketchSDInpainter`` (``sd-sketch``): the checkpoint named by the ``checkpoint`` parameter (folder or file);
- ``SDFaceInpainter`` (``sd-face``): smile / glasses on a real face, through prompt phrases, on the face box.

The runner hands each a crop of the photo at the checkpoint's native resolution (512 SD 1.x, 768 SD 2.x-v,
1024 SDXL). A fill streams one Preview per step (the predicted clean latent through the fixed latent -> RGB map:
no VAE decode per step), checks the CancelToken inside every UNet / VAE block (``cancel_hooks``), and reports in
its first previews where it computes, in which precision, with which memory savers and how fast.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from engine.api import (CancelToken, Geometry, Inpainter, InpaintError, JobGen, ModelInfo, ModelOutput, Preview,
                        Request, map_yields)
from engine.device import compute_device, describe
from engine.sd.checkpoint import Kind, lgp_dir_for
from engine.sd.memory import GB, MemoryPlan, plan_memory, precision
from engine.tensors import to_image, to_tensor

# Attribute phrases (prompt when on, prompt when off) and (negative when on, negative when off).
FACE_PROMPT = "a photo of a person's face, natural skin, detailed"
PHRASES = {"smile": ("smiling, happy expression, teeth", "neutral expression, closed mouth"),
           "glasses": ("wearing eyeglasses", "")}
NEGATIVES = {"smile": ("frowning, sad, closed mouth", "smiling, smile, teeth, grin"),
             "glasses": ("", "glasses, eyeglasses, sunglasses")}


def attribute_prompts(prompt: str, negative: str, attributes: dict[str, float]) -> tuple[str, str]:
    """(prompt, negative prompt) with the phrases of each attribute added: on (>= 0.5) or off."""
    pos, neg = [prompt.strip() or FACE_PROMPT], [negative.strip()]
    for name in sorted(attributes):
        if name in PHRASES:
            on = attributes[name] >= 0.5
            pos.append(PHRASES[name][0 if on else 1])
            neg.append(NEGATIVES[name][0 if on else 1])
    return ", ".join(p for p in pos if p), ", ".join(n for n in neg if n)


def memory_plan(model, device: torch.device, side: int, guided: bool) -> MemoryPlan:
    """The memory savers for this job: none on the CPU; on CUDA from the free memory now."""
    if device.type != "cuda":
        return MemoryPlan()
    free, _ = torch.cuda.mem_get_info(device)
    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision("cuda")]
    on_gpu = model.device.type == "cuda" and not model.plan.offload
    total, unet = model.weights_bytes(dt)
    free += total if on_gpu else 0  # weights already resident count as available to them
    vae_fp32 = dt == torch.float16 and bool(getattr(model.vae.config, "force_upcast", False))
    return plan_memory(free, total, unet, model.kind.arch, side, 2 if guided else 1, vae_fp32)


def _strokes(request: Request) -> tuple[torch.Tensor | None, str]:
    if request.sketch is None or not request.sketch.any():
        return None, ""
    if not (request.sketch & request.mask).any():
        return None, "no sketch strokes inside the hole: the sketch is ignored"
    return torch.from_numpy(request.sketch).float()[None, None], ""


class SDInpainter(Inpainter):
    """A Stable Diffusion checkpoint at ``path`` of type ``kind`` (given by the models-folder scan)."""

    def __init__(self, info: ModelInfo, path: str = "", kind: Kind | None = None) -> None:
        super().__init__(info)
        self.path, self.kind = path, kind

    def source(self, params: dict) -> tuple[Path, Kind]:
        return Path(self.path), self.kind

    def geometry(self, params: dict) -> Geometry:
        _, kind = self.source(params)
        return Geometry(size=kind.native, context=float(params.get("context", 0.5)))

    def prompts(self, request: Request) -> tuple[str, str]:
        return request.prompt, str(request.params.get("negative_prompt", ""))

    def lgp(self, params: dict, path: Path, model, device):
        """The LGP of this checkpoint (``lgp`` parameter, else next to it), or None when there is none."""
        from engine.sketch.pipeline import cached_lgp

        explicit = str(params.get("lgp", "") or "").strip()
        folder = Path(explicit).expanduser() if explicit else lgp_dir_for(path)
        if not folder.is_dir():
            if explicit:
                raise InpaintError(f"no LGP at {folder}: train one with `python -m engine.sketch.train --sd {path} "
                                   f"--images PHOTOS`, or clear the 'lgp' parameter to sketch without one")
            return None
        lgp = cached_lgp(folder, device)
        if lgp.config.target != "latent" or lgp.config.resolution != model.latent_size:
            raise InpaintError(f"the LGP at {folder} was trained for another model ({lgp.config.unet_kind}, "
                               f"{lgp.config.resolution} px latents); retrain it on this checkpoint")
        return lgp

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        from engine.sd import model as sd_model
        from engine.sd.generate import FillSettings, fill

        p = request.params
        path, kind = self.source(p)
        device = compute_device()
        model = sd_model.load(path, kind, device)
        cfg = float(p.get("cfg_scale", 7.0))
        plan = memory_plan(model, device, kind.native, cfg > 1)
        model.place(device, plan)
        prompt, negative = self.prompts(request)
        settings = FillSettings(prompt=prompt, negative=negative, steps=int(p.get("steps", 25)), cfg_scale=cfg,
                                strength=float(p.get("strength", 1.0)),
                                scheduler=str(p.get("scheduler", "dpm++ 2m karras")), seed=int(request.seed),
                                beta=float(p.get("beta", 1.0)), share=float(p.get("share", 0.5)),
                                sketch_strength=float(p.get("sketch_strength", 0.75)))
        strokes, note = _strokes(request) if self.info.uses_sketch else (None, "")
        lgp = self.lgp(p, path, model, device) if strokes is not None and settings.beta > 0 else None
        notes = [f"{describe(device)}, {precision(device.type)}" + (f"; {plan.note}" if plan.note else "")]
        if strokes is not None:
            notes.append("sketch guidance (LGP) with DDIM steps" if lgp is not None else
                         "no LGP for this checkpoint: the sketch is drawn into the start image (SDEdit)")
        if note:
            notes.append(note)
        which = kind.latent_rgb
        clock = [time.perf_counter()]

        def preview(step) -> Preview:
            now = time.perf_counter()
            message = ""
            if step.step == 1:
                message = " · ".join(notes)
            elif step.step == 2:
                per = now - clock[0]
                message = f"{per:.1f} s per step on {describe(device)}, about {per * (step.total - 2):.0f} s left"
            clock[0] = now
            return Preview(step=step.step, total=step.total, image=sd_model.latent_preview(step.denoised, which),
                           message=message)

        image = to_tensor(request.image)
        hole = torch.from_numpy(request.mask).float()[None, None]
        with sd_model.cancel_hooks(model, cancel):
            out = yield from map_yields(fill(model, image, hole, settings, strokes, lgp, cancel), preview)
        runs = settings.steps_run(min(settings.strength, settings.sketch_strength)
                                  if strokes is not None and lgp is None else None)
        stats = {"checkpoint": str(path), "type": kind.label, "device": device.type,
                 "precision": precision(device.type), "memory": plan.note or "-",
                 "scheduler": "ddim" if lgp is not None else settings.scheduler}
        return ModelOutput(to_image(out), unet_calls=runs * (2 if cfg > 1 else 1), stats=stats)


class SketchSDInpainter(SDInpainter):
    """``sd-sketch``: the checkpoint named by the ``checkpoint`` parameter, a diffusers folder or a single file."""

    _kinds: dict[tuple[str, int], Kind] = {}

    def source(self, params: dict) -> tuple[Path, Kind]:
        from engine.sd.loading import detect

        given = str(params.get("checkpoint", "") or "").strip()
        if not given:
            raise InpaintError("no Stable Diffusion checkpoint given: set the 'checkpoint' parameter to a diffusers "
                               "folder or a .safetensors file (or put it in the models folder)")
        path = Path(given).expanduser()
        if not path.exists():
            raise InpaintError(f"Stable Diffusion checkpoint not found: {path}")
        key = (str(path.resolve()), path.stat().st_mtime_ns)
        if key not in self._kinds:
            self._kinds[key] = detect(path)
        return path, self._kinds[key]


class SDFaceInpainter(SDInpainter):
    """``sd-face``: the chosen checkpoint (``checkpoint``, one of the models folder's) on the face box, with the
    smile / glasses attributes turned into prompt phrases."""

    def __init__(self, info: ModelInfo, checkpoints: dict | None = None) -> None:
        super().__init__(info)
        self.checkpoints = checkpoints or {}

    def source(self, params: dict) -> tuple[Path, Kind]:
        name = str(params.get("checkpoint", ""))
        if name not in self.checkpoints:
            raise InpaintError(f"no Stable Diffusion checkpoint {name!r} in the models folder")
        path, kind = self.checkpoints[name]
        return Path(path), kind

    def geometry(self, params: dict) -> Geometry:
        return Geometry(size=self.source(params)[1].native, context=1.0)

    def prompts(self, request: Request) -> tuple[str, str]:
        return attribute_prompts(request.prompt, str(request.params.get("negative_prompt", "")),
                                 request.attributes)


__all__ = ["SDInpainter", "SketchSDInpainter", "SDFaceInpainter", "attribute_prompts", "memory_plan", "GB"]

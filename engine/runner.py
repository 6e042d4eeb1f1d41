"""Drives one inpainting job: validates, seeds, streams previews, enforces the mask, times everything.

Both the editor's worker thread and the CLI call ``run_job``; models only implement ``Inpainter.run``.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Generator

import numpy as np

from engine.api import CancelToken, Inpainter, InpaintError, Preview, Request, Result, drive, now


def composite(original: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill inside the mask, the original bit-for-bit outside it."""
    if filled.shape != original.shape:
        raise InpaintError(f"model returned {filled.shape}, expected {original.shape}")
    if filled.dtype != np.uint8:
        filled = np.clip(np.rint(filled), 0, 255).astype(np.uint8)
    out = original.copy()  # copy + masked assignment: ~4x cheaper than np.where on a full image
    out[mask] = filled[mask]
    return out


def run_job(inpainter: Inpainter, request: Request, cancel: CancelToken | None = None) -> Generator[Preview, None, Result]:
    """Yield the model's previews, then return a Result (``result = yield from run_job(...)``).

    Raises Cancelled (promptly, between previews) when ``cancel`` is set, InpaintError for bad input.
    """
    cancel = cancel or CancelToken()
    info = inpainter.info
    request.validate()
    req = dataclasses.replace(
        request,
        mask=request.mask.astype(bool),
        sketch=None if request.sketch is None else request.sketch.astype(bool),
        params=info.resolve_params(request.params),
        attributes=info.resolve_attributes(request.attributes),
    )
    t0 = now()
    timings: dict[str, float] = {}
    filled = yield from _stream(inpainter.run(req, cancel), cancel, timings)
    if filled is None:
        raise InpaintError(f"model {info.name} returned no image")
    image = composite(req.image, np.asarray(filled), req.mask)
    timings["total"] = now() - t0
    unet_calls = getattr(inpainter, "last_unet_calls", None)
    chosen = dict(getattr(inpainter, "last_chosen", None) or {})
    return Result(image=image, model=info.name, seed=req.seed, params=req.params, attributes=req.attributes,
                  timings=timings, unet_calls=unet_calls, chosen=chosen)


def run_learn(inpainter: Inpainter, request: Request, cancel: CancelToken | None = None
              ) -> Generator[Preview, None, dict]:
    """Learn the request's image without filling (models with ``info.learns_on_image``): yield the training
    previews, return the learning stats plus ``wall``, this job's seconds. The mask may be empty."""
    cancel = cancel or CancelToken()
    if not inpainter.info.learns_on_image:
        raise InpaintError(f"model {inpainter.info.name} does not learn on the image")
    request.validate(need_mask=False)
    req = dataclasses.replace(request, mask=request.mask.astype(bool),
                              params=inpainter.info.resolve_params(request.params))
    t0 = now()
    stats = yield from _stream(inpainter.learn_image(req, cancel), cancel, {})
    return dict(stats, wall=now() - t0)


def _stream(gen: Generator, cancel: CancelToken, timings: dict[str, float]) -> Generator[Preview, None, object]:
    """Pass on a model's previews, checking ``cancel`` before each (and at the end), noting the first one's time.
    A GPU out of memory is something the user can fix: it becomes an InpaintError saying how."""
    t0 = now()
    while True:
        cancel.check()
        out_of_memory = False
        try:
            preview = next(gen)
        except StopIteration as stop:
            cancel.check()
            return stop.value
        except Exception as exc:
            if not _gpu_out_of_memory(exc):
                raise
            out_of_memory = True  # raised below, once the traceback (and the job's tensors it holds) is gone
        if out_of_memory:
            sys.modules["torch"].cuda.empty_cache()  # hand the freed blocks back to the driver
            raise InpaintError("the GPU ran out of memory: compute on the CPU (Fill > Use the GPU when there is one, "
                               "or INPAINT_STUDIO_DEVICE=cpu), or ask for less (frugal: a smaller batch or crop, "
                               "automatic guidance off; Stable Diffusion: no sketch guidance, cfg_scale 1)")
        timings.setdefault("first_preview", now() - t0)
        yield preview


def _gpu_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # only a job that imported torch can have run out of GPU memory
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def run_to_end(inpainter: Inpainter, request: Request, cancel: CancelToken | None = None) -> Result:
    """Run a job ignoring previews (CLI, tests, benchmarks)."""
    return drive(run_job(inpainter, request, cancel))

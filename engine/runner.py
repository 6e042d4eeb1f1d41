"""Drives one job for every model: validates, resolves parameters, crops, streams previews, pastes back, times.

Both the editor's worker thread and the CLI call ``run_job`` / ``run_learn``; models only implement
``Inpainter.run`` (and ``learn_image``) on the working crop the runner gives them (``engine.crop.CropPlan``).
"""
from __future__ import annotations

import dataclasses
import sys
from typing import Generator

import numpy as np

from engine.api import (CancelToken, Inpainter, InpaintError, ModelOutput, Preview, Request, Result, drive, now)
from engine.crop import CropPlan, mask_bbox, shrink

PREVIEW_SIDE = 384  # previews cross to the GUI at most this big: it draws them into the hole's box on screen


def composite(original: np.ndarray, filled: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The fill blended in by the mask's alpha (bool: 0 or 1; uint8: alpha / 255): the original bit-for-bit where
    alpha is 0, the fill bit-for-bit where it is 1, their mix in between."""
    if filled.shape != original.shape:
        raise InpaintError(f"model returned {filled.shape}, expected {original.shape}")
    if filled.dtype != np.uint8:
        filled = np.clip(np.rint(filled), 0, 255).astype(np.uint8)
    out = original.copy()  # copy + masked assignment: ~4x cheaper than np.where on a full image
    full = mask if mask.dtype == np.bool_ else mask == 255
    out[full] = filled[full]
    if mask.dtype != np.bool_:
        part = (mask > 0) & (mask < 255)
        a = mask[part].astype(np.float32)[:, None] / 255.0
        out[part] = np.rint(original[part] * (1 - a) + filled[part] * a).astype(np.uint8)
    return out


def _working_request(inpainter: Inpainter, request: Request, need_mask: bool = True
                     ) -> tuple[Request, CropPlan]:
    """The request as the model sees it: validated, parameters and attributes resolved before the model's geometry
    can load any weights, then cropped to that geometry. (A folder parameter's folder is checked by the model, which
    names what it needs there, and by the CLI before a batch: ``ModelInfo.check_params``.)"""
    info = inpainter.info
    request.validate(need_mask)
    params = info.resolve_params(request.params)
    attributes = info.resolve_attributes(request.attributes)
    plan = CropPlan.plan(inpainter.geometry(params), request.mask, request.region)
    work_mask = plan.crop_mask(request.mask)
    if need_mask and not work_mask.any():
        raise InpaintError("the hole lies outside the working box: move the box over the area to fill")
    sketch = None if request.sketch is None else plan.crop_mask(request.sketch.astype(bool))
    work = dataclasses.replace(request, image=plan.crop_image(request.image), mask=work_mask, sketch=sketch,
                               params=params, attributes=attributes, region=None,
                               scale=plan.scale)
    return work, plan


def run_job(inpainter: Inpainter, request: Request, cancel: CancelToken | None = None
            ) -> Generator[Preview, None, Result]:
    """Yield the model's previews (in image pixels), then return a Result (``result = yield from run_job(...)``).

    Raises Cancelled (promptly, between previews) when ``cancel`` is set, InpaintError for bad input.
    """
    cancel = cancel or CancelToken()
    t0 = now()
    work, plan = _working_request(inpainter, request)
    timings: dict[str, float] = {}
    out = yield from _stream(inpainter.run(work, cancel), cancel, timings, plan)
    result = _result(inpainter, request, work, plan, out, timings)
    result.timings["total"] = now() - t0
    return result


def run_batch(inpainter: Inpainter, requests: list[Request], cancel: CancelToken | None = None
              ) -> Generator[Preview, None, list[Result]]:
    """``run_job`` for several requests (a CLI folder; the caller decides how many): those whose working crops
    share a shape and parameters go through one ``Inpainter.run_batch``. Previews carry progress only (no image:
    there is no one hole to show). Each Result's ``timings["total"]`` is its share of the wall time;
    ``timings["batch"]`` how many were filled together."""
    cancel = cancel or CancelToken()
    prepared = [_working_request(inpainter, r) for r in requests]
    groups: dict[tuple, list[int]] = {}
    for i, (work, _) in enumerate(prepared):
        key = (work.image.shape, repr(sorted(work.params.items())), repr(sorted(work.attributes.items())))
        groups.setdefault(key, []).append(i)
    results: list[Result | None] = [None] * len(requests)
    for members in groups.values():
        t0, timings = now(), {}
        gen = inpainter.run_batch([prepared[i][0] for i in members], cancel)
        outs = yield from _stream(gen, cancel, timings, prepared[members[0]][1], with_images=False)
        if not isinstance(outs, list) or len(outs) != len(members):
            raise InpaintError(f"model {inpainter.info.name} returned no images for a batch of {len(members)}")
        share = (now() - t0) / len(members)
        for i, out in zip(members, outs):
            results[i] = _result(inpainter, requests[i], *prepared[i], out,
                                 dict(timings, total=share, batch=len(members)))
    return results


def _result(inpainter: Inpainter, request: Request, work: Request, plan: CropPlan, out: object,
            timings: dict[str, float]) -> Result:
    """The model's working-crop output pasted into the request's image (outside the hole: bit-identical)."""
    info = inpainter.info
    if not isinstance(out, ModelOutput):
        raise InpaintError(f"model {info.name} returned no image")
    fill, offset = np.asarray(out.image), (0, 0)
    if out.box is None and fill.shape[:2] != work.image.shape[:2]:
        raise InpaintError(f"model {info.name} returned {fill.shape}, expected {work.image.shape}")
    x0, y0, x1, y1 = box = tuple(int(v) for v in out.box or (0, 0, 0, 0))
    bad = InpaintError(f"model {info.name} returned {fill.shape} for the box {box} of its {work.image.shape} "
                       f"crop, which must hold the whole hole and a pixel around it")
    if out.box and fill.shape[:2] != (y1 - y0, x1 - x0):
        raise bad
    if out.box and plan.resized:  # the (small) working crop is resized into the photo as a whole
        if not _holds_hole(box, work.mask):
            raise bad
        full = work.image.copy()
        full[y0:y1, x0:x1] = fill if fill.ndim == 3 else fill[..., None]  # a grey model's fill: every channel
        fill = full
    elif out.box:
        offset = (x0, y0)
    try:  # with an offset, paste checks that the box holds the hole: it finds the hole's box anyway
        image = plan.paste(request.image, fill, request.mask, offset=offset)
    except ValueError:
        if not out.box or plan.resized:
            raise
        raise bad from None
    return Result(image=image, model=info.name, seed=work.seed, params=work.params, attributes=work.attributes,
                  timings=timings, unet_calls=out.unet_calls, chosen=dict(out.chosen), stats=dict(out.stats),
                  prompt=request.prompt)


def _holds_hole(box: tuple[int, int, int, int], mask: np.ndarray) -> bool:
    """Whether ``box`` holds the hole and the one pixel around it (within the crop) that the paste's feather
    measures its distance to."""
    if not mask.any():
        return True
    hx0, hy0, hx1, hy1 = mask_bbox(mask)
    h, w = mask.shape
    x0, y0, x1, y1 = box
    return x0 <= max(0, hx0 - 1) and y0 <= max(0, hy0 - 1) and x1 >= min(w, hx1 + 1) and y1 >= min(h, hy1 + 1)


def run_learn(inpainter: Inpainter, request: Request, cancel: CancelToken | None = None
              ) -> Generator[Preview, None, dict]:
    """Learn the request's image without filling (models with ``info.learns_on_image``): yield the training
    previews, return the learning stats plus ``wall``, this job's seconds. The mask may be empty."""
    cancel = cancel or CancelToken()
    if not inpainter.info.learns_on_image:
        raise InpaintError(f"model {inpainter.info.name} does not learn on the image")
    t0 = now()
    work, plan = _working_request(inpainter, request, need_mask=False)
    stats = yield from _stream(inpainter.learn_image(work, cancel), cancel, {}, plan)
    return dict(stats, wall=now() - t0)


def _stream(gen: Generator, cancel: CancelToken, timings: dict[str, float], plan: CropPlan, with_images: bool = True
            ) -> Generator[Preview, None, object]:
    """Pass on a model's previews mapped onto the image, checking ``cancel`` before each (and at the end), noting
    the first one's time. A GPU out of memory is something the user can fix: it becomes an InpaintError saying how."""
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
        yield _on_image(preview, plan) if with_images else dataclasses.replace(preview, image=None, box=None)


def _on_image(preview: Preview, plan: CropPlan) -> Preview:
    """The preview with its box in image pixels and its image cut to the unpadded crop and shrunk."""
    if preview.image is None:
        return dataclasses.replace(preview, box=None)
    where = plan.image_box(preview.box, preview.image.shape)
    if where is None:
        return dataclasses.replace(preview, image=None, box=None)
    (sx0, sy0, sx1, sy1), box = where
    return dataclasses.replace(preview, image=shrink(preview.image[sy0:sy1, sx0:sx1], PREVIEW_SIDE), box=box)


def _gpu_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # only a job that imported torch can have run out of GPU memory
    return torch is not None and isinstance(exc, torch.cuda.OutOfMemoryError)


def run_to_end(inpainter: Inpainter, request: Request, cancel: CancelToken | None = None) -> Result:
    """Run a job ignoring previews (CLI, tests, benchmarks)."""
    return drive(run_job(inpainter, request, cancel))

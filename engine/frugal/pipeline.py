"""The "Learn this image" inpainters: learn the frugal UNet on the opened image, then fill the hole.

One job = (1) pick a working scale (big holes are learned and filled downscaled, ``max_hole``), (2) load the
weights cached for this image and training config, or train them on crops of the known region, streaming
``Preview(stage="train", loss=...)``, and cache them (with the autoguidance snapshot), (3) fill: diffusion
sampling with known-pixel replacement and autoguidance (``guidance``), streaming ``Preview(stage="denoise")`` of
the predicted x_0 at every step, or the regression net's single pass.
The network is fully convolutional, so it fills a box around the hole at the working resolution.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from torch import nn

from engine.api import CancelToken, InpaintError, JobGen, ModelInfo, Preview, Request, map_yields
from engine.crop import mask_bbox
from engine.device import compute_device
from engine.frugal import train as tr
from engine.frugal.data import load_folder
from engine.frugal.guidance import AUTO_WS, DEFAULT_W, AutoGuided, describe, match_surroundings
from engine.frugal.model import DiffusionSchedule
from engine.frugal.sampler import regress, sample_inpaint_iter
from engine.patch.patchmatch import PatchConfig, inpaint_iter

PREVIEW_SIDE = 256
COARSE_DRAFT = 0.5  # draft strengths from which the patch draft is made at half size
MIN_DRAFT_HOLE = 16  # ... if the hole stays this wide there (about two 7 px patches)


def working_scale(mask: np.ndarray, max_hole: int) -> float:
    """1.0, or the factor that brings the hole's bounding box down to ``max_hole`` pixels."""
    x0, y0, x1, y1 = mask_bbox(mask)
    side = max(x1 - x0, y1 - y0)
    return 1.0 if side <= max_hole else round(max_hole / side, 4)


def resize_pair(image: np.ndarray, mask: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    if scale == 1.0:
        return image, mask
    h, w = mask.shape
    size = (max(8, int(round(w * scale))), max(8, int(round(h * scale))))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    small_mask = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 1e-3
    return small, small_mask


def fill_box(mask: np.ndarray, multiple: int, context: float = 0.25, min_context: int = 16) -> tuple[int, ...]:
    """The hole's bounding box plus context, sides rounded up to ``multiple`` where the image allows."""
    h, w = mask.shape
    x0, y0, x1, y1 = mask_bbox(mask)
    pad = max(min_context, int(context * max(x1 - x0, y1 - y0)))
    box = []
    for lo, hi, limit in ((x0, x1, w), (y0, y1, h)):
        lo, hi = max(0, lo - pad), min(limit, hi + pad)
        side = int(math.ceil((hi - lo) / multiple) * multiple)
        if side > limit:
            side = limit
        lo = max(0, min(lo - (side - (hi - lo)) // 2, limit - side))
        box.append((lo, lo + side))
    (bx0, bx1), (by0, by1) = box
    return bx0, by0, bx1, by1


def pad_to_multiple(a: np.ndarray, multiple: int) -> np.ndarray:
    h, w = a.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return a
    pads = ((0, ph), (0, pw)) + ((0, 0),) * (a.ndim - 2)
    return np.pad(a, pads, mode="reflect" if min(h, w) > max(ph, pw) else "edge")


def small_preview(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    k = PREVIEW_SIDE / max(h, w)
    if k >= 1:
        return np.ascontiguousarray(a)
    return cv2.resize(a, (max(1, int(w * k)), max(1, int(h * k))), interpolation=cv2.INTER_AREA)


class FrugalInpainter:
    """Inpainter for ``objective`` "diffusion" (the paper's model) or "regression" (its fixed-architecture baseline)."""

    def __init__(self, info: ModelInfo, objective: str = "diffusion") -> None:
        self.info = info
        self.objective = objective
        self.last_unet_calls: int | None = None
        self.last_stats: dict = {}
        self.last_chosen: dict = {}  # what the model picked itself: automatic guidance's w

    def warm_up(self) -> None:
        """The first optimizer a process builds imports torch._dynamo (1.7 s here): done when the model is picked, not
        when Learn starts and the user is painting (editor/worker.py)."""
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    def train_config(self, params: dict, scale: float) -> tr.TrainConfig:
        edm = bool(params.get("edm", False)) and self.objective == "diffusion"
        cfg = tr.TrainConfig(objective=self.objective, minutes=float(params["minutes"]),
                             iterations=int(params["iterations"]), crop=int(params["crop"]),
                             batch=int(params["batch"]), scale=scale, weighting="edm" if edm else "uniform")
        cfg.unet.precond = edm
        return cfg

    def learn(self, image: np.ndarray, mask: np.ndarray, cfg: tr.TrainConfig, folder: str, relearn: bool,
              cancel: CancelToken, full_image: np.ndarray) -> JobGen:
        """Cached weights for (image, config, folder), or train them; yields train-stage previews. The net comes back
        on ``compute_device()``; the cache does not depend on the device it was learned on."""
        device = compute_device()
        key = tr.cache_key(full_image, cfg, extra=folder)
        path = tr.cache_path(key)
        if path.exists() and not relearn:
            net, _, stats = tr.load(path)
            self.last_stats = dict(stats, cached=True, cache=str(path))
            yield Preview(step=1, total=1, stage="train", loss=float(stats.get("loss", float("nan"))),
                          message=f"learned weights loaded from cache ({stats.get('iterations', '?')} iterations)")
            return net.to(device)
        images, excludes = [image], [cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)]
        if folder:
            extra = load_folder(folder)
            if not extra:
                raise InpaintError(f"no images found in folder {folder}")
            images += extra
            excludes += [None] * len(extra)
        # a big hole is learned at a smaller size: say so, since weights learned at full size do not serve it
        what = "learning the image"
        if cfg.scale != 1.0:
            what += f" at {cfg.scale:.0%} size (hole wider than max_hole)"
        try:
            gen = tr.train(images, excludes, cfg, check=cancel.check, device=device)
            net, stats = yield from map_yields(gen, lambda s: Preview(
                step=s[0], total=s[1], stage="train", loss=s[2],
                message=f"{what}: iteration {s[0]}/{s[1]}, loss {s[2]:.4f}"))
        except ValueError as exc:  # no hole-free crop fits
            raise InpaintError(str(exc)) from None
        tr.save(net, cfg, stats, path)
        self.last_stats = dict(stats, cached=False, cache=str(path))
        return net

    def learn_image(self, request: Request, cancel: CancelToken) -> JobGen:
        """Learn (or find in the cache) the weights a Fill of this image would use, without filling: the editor's
        "Learn this image" while the mask is still being painted. As for a Fill, the mask so far (possibly empty) is
        kept out of learning and sets the working scale. Returns the learning stats."""
        yield from self._learned(request, cancel)
        return dict(self.last_stats)

    def _learned(self, request: Request, cancel: CancelToken) -> JobGen:
        """(net, cfg, work, work_mask, scale): the request's image at its working scale and the net learned on it."""
        p = request.params
        image, mask = request.image, request.mask
        scale = working_scale(mask, int(p["max_hole"])) if mask.any() else 1.0
        work, work_mask = resize_pair(image, mask, scale)
        cfg = self.train_config(p, scale)
        net = yield from self.learn(work, work_mask, cfg, str(p.get("folder", "")).strip(),
                                    bool(p.get("relearn", False)), cancel, image)
        return net, cfg, work, work_mask, scale

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        p = request.params
        self.last_chosen = {}
        image, mask = request.image, request.mask
        net, cfg, work, work_mask, scale = yield from self._learned(request, cancel)
        auto = isinstance(net, AutoGuided) and bool(p.get("auto_guidance", True))
        if isinstance(net, AutoGuided):
            net.w = AUTO_WS if auto else float(p.get("guidance", DEFAULT_W))
        info: dict = {}
        job = fill(net, cfg, image, mask, work, work_mask, scale, int(p.get("steps", 1)), float(p.get("eta", 1.0)),
                   int(request.seed), cancel, info, draft=float(p.get("draft_strength", 0.0)))
        result = yield from map_yields(job, self._count_calls)
        self.last_stats.update(info)
        if auto:
            self.last_chosen = {"guidance": info["guidance"]}
        return result

    def _count_calls(self, preview: Preview) -> Preview:
        """One denoise preview per network call (one in all for regression): the last total is the call count."""
        self.last_unet_calls = preview.total
        return preview


def patch_draft(work: np.ndarray, work_mask: np.ndarray, seed: int, cancel: CancelToken, scale: float,
                full_shape: tuple[int, ...], strength: float) -> JobGen:
    """``work`` with its hole filled by the patch method, which draws on the hole's neighbourhood only (two hole sizes
    around it: a big photo costs what a small one does); previewed as stage "draft". None (and a message) when too
    little of that neighbourhood is known to copy patches from.

    A draft noised to sigma >= ``COARSE_DRAFT`` keeps little of its finest octave (sqrt(abar) <= 0.87, and the net
    redraws it), so it is drafted at half size: a quarter of the PatchMatch work (128 px hole: 3.5 -> 0.9 s; SSIM and
    detail of the fills the same within the seed spread, docs/frugal.md)."""
    rx0, ry0, rx1, ry1 = fill_box(work_mask, 1, context=2.0)
    region, region_mask = work[ry0:ry1, rx0:rx1], work_mask[ry0:ry1, rx0:rx1]
    rh, rw = region_mask.shape
    x0, y0, x1, y1 = mask_bbox(region_mask)
    k = 2 if strength >= COARSE_DRAFT and min(x1 - x0, y1 - y0) >= 2 * MIN_DRAFT_HOLE else 1
    small, small_mask = resize_pair(region, region_mask, 1 / k)
    h, w = full_shape[:2]
    box = (int(rx0 / scale), int(ry0 / scale), min(w, int(round(rx1 / scale))), min(h, int(round(ry1 / scale))))
    est = small
    try:
        for i, total, est in inpaint_iter(small, small_mask, PatchConfig(seed=seed), check=cancel.check):
            # coarse to fine: est is the whole region at the current pyramid level; the editor scales it into the box
            yield Preview(step=i, total=total, image=small_preview(est), box=box, stage="draft",
                          message="drafting the fill with the patch method")
    except ValueError as exc:  # too few known patches around the hole: the learned net can still fill it
        yield Preview(step=1, total=1, box=box, stage="draft", message=f"no patch draft ({exc}): denoising from noise")
        return None
    if k > 1:
        est = cv2.resize(est, (rw, rh), interpolation=cv2.INTER_CUBIC)
    out = work.copy()
    out[ry0:ry1, rx0:rx1] = np.where(region_mask[..., None], est, region)
    return out


def fill(net: nn.Module, cfg: tr.TrainConfig, image: np.ndarray, mask: np.ndarray, work: np.ndarray,
         work_mask: np.ndarray, scale: float, steps: int, eta: float, seed: int,
         cancel: CancelToken | None = None, info: dict | None = None, draft: float = 0.0) -> JobGen:
    """Fill ``mask`` of ``image`` with a learned net, working on ``work`` / ``work_mask`` (``image`` at ``scale``).

    Diffusion: ``steps`` sampling steps, each yielding a denoise Preview of x0_hat in the hole's box. ``draft`` > 0:
    first the patch method's fill (``patch_draft``), then only the steps from sigma = ``draft`` down, starting from
    that fill noised to it. With a tuple of guidance weights (automatic w) the candidates are sampled together, the
    preview shows the one nearest the default w, and the fill keeps the one that matches the surroundings (its w goes
    to ``info["guidance"]``). Regression: one pass. Returns the full-size image (the hole filled; the runner enforces
    the pixels outside it)."""
    cancel = cancel or CancelToken()
    info = {} if info is None else info
    m = net.multiple
    bx0, by0, bx1, by1 = fill_box(work_mask, m)
    h, w = by1 - by0, bx1 - bx0
    crop = pad_to_multiple(work[by0:by1, bx0:bx1], m)
    crop_mask = pad_to_multiple(work_mask[by0:by1, bx0:bx1].astype(np.uint8), m).astype(bool)
    device = next(net.parameters()).device
    y = tr.to_tensor(crop[None], device)
    mt = torch.from_numpy(crop_mask)[None, None].to(device).float()
    if scale != 1.0:
        fx0, fy0 = int(round(bx0 / scale)), int(round(by0 / scale))
        fx1, fy1 = min(int(round(bx1 / scale)), image.shape[1]), min(int(round(by1 / scale)), image.shape[0])
    else:
        fx0, fy0, fx1, fy1 = bx0, by0, bx1, by1
    box = (fx0, fy0, fx1, fy1)
    if cfg.objective == "diffusion":
        ws = tuple(np.atleast_1d(getattr(net, "w", 1.0)).tolist())
        shown = int(np.argmin([abs(v - DEFAULT_W) for v in ws]))
        start = None
        if draft > 0:
            drafted = yield from patch_draft(work, work_mask, seed, cancel, scale, image.shape, draft)
            if drafted is not None:
                start = tr.to_tensor(pad_to_multiple(drafted[by0:by1, bx0:bx1], m)[None], device)
        sched = DiffusionSchedule(cfg.schedule).to(device)
        it = sample_inpaint_iter(net, sched, y, mt, steps=steps, eta=eta, gen=torch.Generator().manual_seed(seed),
                                 draft=start, strength=draft)
        n = [steps]

        def preview(s: tuple[int, int, torch.Tensor]) -> Preview:  # the runner checks cancellation between previews
            n[0] = s[1]
            x0 = s[2][min(shown, len(s[2]) - 1)]
            return Preview(step=s[0], total=s[1], image=small_preview(tr.to_uint8(x0[None])[0][:h, :w]), box=box,
                           stage="denoise")

        out = yield from map_yields(it, preview)
        candidates = tr.to_uint8(out)[:, :h, :w]
        pick = 0
        if len(candidates) > 1:
            report: dict = {}
            found = match_surroundings(candidates, crop_mask[:h, :w], report=report)
            pick = shown if found is None else found
            yield Preview(step=n[0], total=n[0], image=small_preview(candidates[pick]), box=box, stage="denoise",
                          message=describe(ws[pick], report.get("ratio")))
        info["guidance"] = ws[pick] if len(candidates) == len(ws) else 1.0  # 1.0: sampling never reached the interval
        filled = candidates[pick]
    else:
        cancel.check()
        filled = tr.to_uint8(regress(net, y, mt))[0][:h, :w]
    if scale != 1.0:
        filled = cv2.resize(filled, (fx1 - fx0, fy1 - fy0), interpolation=cv2.INTER_CUBIC)
    if cfg.objective != "diffusion":
        yield Preview(step=1, total=1, image=small_preview(filled), box=box, stage="denoise")
    result = image.copy()
    result[fy0:fy1, fx0:fx1] = np.where(mask[fy0:fy1, fx0:fx1, None], filled, result[fy0:fy1, fx0:fx1])
    return result

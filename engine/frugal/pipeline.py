"""The "Learn this image" inpainters: learn the frugal UNet on the opened image, then fill the hole.

The runner hands the model the whole image at its working scale (``Geometry(context=None, max_hole=...)``: a hole
wider than ``max_hole`` is learned and filled on a downscaled image, then pasted back). One job = (1) load the
weights cached for this (working) image and training config, or train them on crops of the known region, streaming
``Preview(stage="train", loss=...)``, and cache them (with the autoguidance snapshot); (2) fill: for diffusion,
optionally a patch-method draft (stage "draft"), then the shared sampler with known-pixel replacement and
autoguidance, a ``Preview(stage="denoise")`` of the predicted x_0 per network call; for regression one pass. The
network is fully convolutional, so it fills only a box around the hole (plus context), not the whole image.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from engine.api import (CancelToken, Geometry, Inpainter, InpaintError, JobGen, ModelInfo, ModelOutput, Preview,
                        Request, map_yields)
from engine.crop import Box, context_box, mask_bbox
from engine.device import compute_device, seeded_noise
from engine.diffusion.samplers import sample
from engine.diffusion.schedule import NoiseSchedule
from engine.frugal import train as tr
from engine.frugal.data import load_folder
from engine.frugal.guidance import AUTO_WS, DEFAULT_W, AutoGuided, describe, match_surroundings
from engine.frugal.model import FrugalUNet, UNetConfig
from engine.patch.patchmatch import PatchConfig, inpaint_iter
from engine.tensors import to_images, to_tensor
from engine.weights import WEIGHTS_NAME

COARSE_DRAFT = 0.5  # draft strengths from which the patch draft is made at half size
MIN_DRAFT_HOLE = 16  # ... if the hole stays this wide there (about two 7 px patches)
DRAFT_TEXTURE = 1.0  # the patch draft's texture weight: 3 (the patch model's) drafted worse (docs/frugal.md)
MULTIPLE = FrugalUNet(UNetConfig()).multiple  # input sides must be multiples of this


def fill_box(mask: np.ndarray, context: float = 0.25, min_context: int = 16) -> Box:
    """The hole's box plus context (at least ``min_context`` px), sides rounded up to MULTIPLE where the image
    allows (the runner pads the working image to a multiple, so they always can be)."""
    h, w = mask.shape
    x0, y0, x1, y1 = mask_bbox(mask)
    pad = max(min_context, int(context * max(x1 - x0, y1 - y0)))
    box = []
    for lo, hi, limit in ((x0, x1, w), (y0, y1, h)):
        lo, hi = max(0, lo - pad), min(limit, hi + pad)
        side = min(limit, -(-(hi - lo) // MULTIPLE) * MULTIPLE)
        lo = max(0, min(lo - (side - (hi - lo)) // 2, limit - side))
        box.append((lo, lo + side))
    (bx0, bx1), (by0, by1) = box
    return bx0, by0, bx1, by1


class FrugalInpainter(Inpainter):
    """Inpainter for ``objective`` "diffusion" (the paper's model) or "regression" (its fixed-architecture baseline)."""

    def __init__(self, info: ModelInfo, objective: str = "diffusion") -> None:
        super().__init__(info)
        self.objective = objective
        self._loaded: tuple = ()  # (stamp, (net, stats)) of the last cached weights read: a refill skips the disk

    def geometry(self, params: dict) -> Geometry:
        return Geometry(context=None, max_hole=int(params["max_hole"]), multiple=MULTIPLE)

    def warm_up(self) -> None:
        """The first optimizer a process builds imports torch._dynamo (1.7 s here): done when the model is picked, not
        when Learn starts and the user is painting (editor/worker.py)."""
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    def train_config(self, params: dict) -> tr.TrainConfig:
        edm = self.objective == "diffusion" and bool(params["edm"])
        cfg = tr.TrainConfig(objective=self.objective, minutes=float(params["minutes"]),
                             iterations=int(params["iterations"]), crop=int(params["crop"]),
                             batch=int(params["batch"]), weighting="edm" if edm else "uniform")
        cfg.unet.precond = edm
        return cfg

    def learned(self, request: Request, cancel: CancelToken) -> JobGen:
        """(net on ``compute_device()``, its config, stats): the weights cached for this working image, training
        config and folder, or learned now (train-stage previews). The mask (possibly empty) is kept out of learning;
        the cache does not depend on it, nor on the device it was learned on."""
        p = request.params
        cfg = self.train_config(p)
        folder = str(p["folder"]).strip()
        device = compute_device()
        path = tr.cache_path(tr.cache_key(request.image, cfg, extra=folder))
        if path.exists() and not p["relearn"]:
            try:
                net, stats = self._load_cached(path, device)
            except InpaintError as exc:  # a damaged cache (a crash, a full disk): learn again, and say so
                yield Preview(step=1, total=1, stage="train", message=f"discarding unreadable cached weights ({exc})")
            else:
                yield Preview(step=1, total=1, stage="train", loss=float(stats.get("loss", float("nan"))),
                              message=f"learned weights loaded from cache ({stats.get('iterations', '?')} iterations)")
                return net, cfg, dict(stats, cached=True, cache=str(path))
        images = [request.image]
        excludes = [cv2.dilate(request.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)]
        if folder:
            extra = load_folder(folder)
            if not extra:
                raise InpaintError(f"no images found in folder {folder}")
            images += extra
            excludes += [None] * len(extra)
        what = self._learning_what(request)
        try:
            gen = tr.train(images, excludes, cfg, check=cancel.check, device=device)
            net, stats = yield from map_yields(gen, lambda s: Preview(
                step=s[0], total=s[1], stage="train", loss=s[2],
                message=f"{what}: iteration {s[0]}/{s[1]}, loss {s[2]:.4f}"))
        except ValueError as exc:  # no hole-free crop fits
            raise InpaintError(str(exc)) from None
        tr.save(net, cfg, stats, path)
        return net, cfg, dict(stats, cached=False, cache=str(path))

    def _load_cached(self, path: Path, device: torch.device) -> tuple[nn.Module, dict]:
        """The cached weights at ``path``, read again only when the file changed (a Relearn, another process)."""
        stamp = (str(path), str(device), (path / WEIGHTS_NAME).stat().st_mtime_ns)
        if not self._loaded or self._loaded[0] != stamp:
            net, _, stats = tr.load(path, device)
            self._loaded = (stamp, (net, stats))
        return self._loaded[1]

    def _learning_what(self, request: Request) -> str:
        """The learning status line: a big hole is learned at a smaller size, and weights learned before the mask
        was painted serve only holes up to max_hole: say so, since either means learning again for another hole."""
        max_hole = int(request.params["max_hole"])
        if request.scale > 1:
            return f"learning the image at {1 / request.scale:.0%} size (hole wider than {max_hole} px)"
        if not request.mask.any() and max(request.image.shape[:2]) > max_hole:
            return f"learning the image (no mask yet: a hole wider than {max_hole} px is learned again, smaller)"
        return "learning the image"

    def learn_image(self, request: Request, cancel: CancelToken) -> JobGen:
        """Learn (or find in the cache) the weights a Fill of this image would use, without filling: the editor's
        "Learn this image" while the mask is still being painted. Returns the learning stats."""
        _, _, stats = yield from self.learned(request, cancel)
        return stats

    def run(self, request: Request, cancel: CancelToken) -> JobGen:
        p = request.params
        net, cfg, stats = yield from self.learned(request, cancel)
        if self.objective != "diffusion":
            cancel.check()
            out, box = regress(net, request.image, request.mask)  # the hole's box only: no copy of the photo
            yield Preview(step=1, total=1, image=out, box=box, stage="denoise")
            return ModelOutput(out, unet_calls=1, stats=stats, box=box)
        guided = isinstance(net, AutoGuided)
        auto = guided and bool(p["auto_guidance"])
        ws = AUTO_WS if auto else (float(p["guidance"]) if guided else 1.0,)
        out, calls, chosen = yield from fill(net, request.image, request.mask, ws, int(p["steps"]), float(p["eta"]),
                                             int(request.seed), cancel, float(p["draft_strength"]))
        return ModelOutput(out, unet_calls=calls, chosen={"guidance": chosen} if auto else {},
                           stats=dict(stats, guidance=chosen))


@torch.inference_mode()
def regress(net: FrugalUNet, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, Box]:
    """The regression baseline's one-shot fill of the hole's box (``fill_box``): f_theta(y, y, M, 0) in the hole,
    y outside; and that box."""
    x0, y0, x1, y1 = box = fill_box(mask)
    device = next(net.parameters()).device
    y = to_tensor(image[y0:y1, x0:x1], device)
    m = torch.from_numpy(mask[y0:y1, x0:x1])[None, None].to(device).float()
    y = y * (1 - m)
    pred = net(y, y, m, torch.zeros(1, device=device)).clamp(-1, 1)
    out = to_images(m * pred + (1 - m) * y)[0]
    return out, box


def patch_draft(work: np.ndarray, work_mask: np.ndarray, seed: int, cancel: CancelToken, strength: float) -> JobGen:
    """``work`` with its hole filled by the patch method, which draws on the hole's neighbourhood only (two hole sizes
    around it: a big photo costs what a small one does); previewed as stage "draft". None (and a message) when too
    little of that neighbourhood is known to copy patches from.

    A draft noised to sigma >= ``COARSE_DRAFT`` keeps little of its finest octave (sqrt(abar) <= 0.87, and the net
    redraws it), so it is drafted at half size: a quarter of the PatchMatch work (128 px hole: 3.5 -> 0.9 s; SSIM and
    detail of the fills the same within the seed spread, docs/lab/frugal-notebook.md)."""
    box = rx0, ry0, rx1, ry1 = context_box(work_mask, 2.0, square=False)
    region, region_mask = work[ry0:ry1, rx0:rx1], work_mask[ry0:ry1, rx0:rx1]
    rh, rw = region_mask.shape
    x0, y0, x1, y1 = mask_bbox(region_mask)
    k = 2 if strength >= COARSE_DRAFT and min(x1 - x0, y1 - y0) >= 2 * MIN_DRAFT_HOLE else 1
    small, small_mask = region, region_mask
    if k > 1:
        size = (max(8, round(rw / k)), max(8, round(rh / k)))
        small = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        small_mask = cv2.resize(region_mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 1e-3
    est = small
    try:
        cfg = PatchConfig(texture=DRAFT_TEXTURE, seed=seed)
        for i, total, est in inpaint_iter(small, small_mask, cfg, check=cancel.check):
            # coarse to fine: est is the whole region at the current pyramid level; the editor scales it into the box
            yield Preview(step=i, total=total, image=est, box=box, stage="draft",
                          message="drafting the fill with the patch method")
    except ValueError as exc:  # too few known patches around the hole: the learned net can still fill it
        yield Preview(step=1, total=1, box=box, stage="draft", message=f"no patch draft ({exc}): denoising from noise")
        return None
    if k > 1:
        est = cv2.resize(est, (rw, rh), interpolation=cv2.INTER_CUBIC)
    out = work.copy()
    out[ry0:ry1, rx0:rx1] = np.where(region_mask[..., None], est, region)
    return out


def level_grid(schedule: NoiseSchedule, steps: int, strength: float | None = None) -> list[int]:
    """The timesteps of ``steps`` evenly spaced levels (the paper's linspace(T, 0, steps + 1) on levels 1..T, i.e.
    timesteps 0..T-1), increasing; with ``strength`` only those whose sigma <= strength (at least one)."""
    T = schedule.num_train_timesteps
    levels = torch.linspace(T, 0, max(1, min(int(steps), T)) + 1).round().long().tolist()
    grid = sorted({t - 1 for t in levels if t >= 1})
    if strength is not None:
        below = [t for t in grid if float(schedule.sigmas[t]) <= strength]
        grid = below or grid[:1]
    return grid


def denoiser(net: nn.Module, schedule: NoiseSchedule, y: torch.Tensor, mask: torch.Tensor):
    """The x_0-predicting net as the sampler's denoiser: x0_hat = M f(x_t, y, M, sigma_t^2) + (1 - M) y (the paper's
    Eq. 1 network, known pixels given), and the noise it implies. ``y``, ``mask``: batch 1."""
    def denoise(x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        x0 = net(x_t, y, mask, (schedule.sigmas[t] ** 2).expand(1)).clamp(-1, 1)
        x0 = mask * x0 + (1 - mask) * y
        return schedule.predict_eps(x_t, t, x0), x0
    return denoise


def fill(net: nn.Module, image: np.ndarray, mask: np.ndarray, ws: tuple[float, ...], steps: int, eta: float,
         seed: int, cancel: CancelToken | None = None, draft: float = 0.0) -> JobGen:
    """Fill ``mask`` of ``image`` (the working image) with a learned diffusion net; returns (image, network calls,
    the guidance weight kept).

    ``steps`` sampling steps, each a denoise Preview of x0_hat in the hole's box. ``draft`` > 0: first the patch
    method's fill (``patch_draft``), then only the steps from sigma = ``draft`` down, starting from that fill noised
    to it (SDEdit, Meng et al. 2022). With several guidance weights ``ws`` (automatic w) the candidates are sampled
    together (they share the path down to the guidance interval), the preview shows the one nearest the default w,
    and the fill keeps the one that matches the surroundings."""
    cancel = cancel or CancelToken()
    device = next(net.parameters()).device
    if isinstance(net, AutoGuided):
        net.w = ws if len(ws) > 1 else ws[0]
    box = bx0, by0, bx1, by1 = fill_box(mask)
    crop_mask = mask[by0:by1, bx0:bx1]
    y = to_tensor(image[by0:by1, bx0:bx1], device)
    m = torch.from_numpy(crop_mask)[None, None].to(device).float()
    y = y * (1 - m)
    start = None
    if draft > 0:
        drafted = yield from patch_draft(image, mask, seed, cancel, draft)
        if drafted is not None:
            start = m * to_tensor(drafted[by0:by1, bx0:bx1], device) + (1 - m) * y
    schedule = NoiseSchedule(tr.frugal_schedule()).to(device)
    grid = level_grid(schedule, steps, draft if start is not None else None)
    gen = torch.Generator().manual_seed(seed)
    top = torch.full((1,), grid[-1], device=device)
    if start is not None:
        x = schedule.q_sample(start, top, seeded_noise(y.shape, gen, y))
    else:
        x = m * seeded_noise(y.shape, gen, y) + (1 - m) * schedule.q_sample(y, top, seeded_noise(y.shape, gen, y))
    shown = int(np.argmin([abs(v - DEFAULT_W) for v in ws]))

    def preview(s) -> Preview:  # the runner checks cancellation between previews
        x0 = s.denoised[min(shown, len(s.denoised) - 1)]
        return Preview(step=s.step, total=s.total, image=to_images(x0[None])[0], box=box, stage="denoise")

    steps_ = sample(denoiser(net, schedule, y, m), x, grid, schedule, known=y, mask=m, eta=eta, clip=False,
                    generator=gen, cancel=cancel)
    out = yield from map_yields(steps_, preview)
    candidates = to_images(out)
    pick = 0
    if len(candidates) > 1:
        report: dict = {}
        found = match_surroundings(candidates, crop_mask, report=report)
        pick = shown if found is None else found
        yield Preview(step=len(grid), total=len(grid), image=candidates[pick], box=box, stage="denoise",
                      message=describe(ws[pick], report.get("ratio")))
    chosen = ws[pick] if len(candidates) == len(ws) else 1.0  # 1.0: sampling never reached the guidance interval
    result = image.copy()
    result[by0:by1, bx0:bx1] = np.where(crop_mask[..., None], candidates[pick], result[by0:by1, bx0:bx1])
    return result, len(grid), chosen

"""Non-local patch-based inpainting: multi-scale EM over PatchMatch nearest-neighbour fields, in numpy.

The method of Wexler, Shechtman & Irani 2007 ("Space-time completion of video") as organised by Newson, Almansa,
Gousseau & Perez 2014/2017 ("Non-local patch-based image inpainting", IPOL):

    minimise  E(u, phi) = sum_{p in H~} d^2(W_p, W_{p + phi(p)})                    (Newson Eq. 1)

over the hole's pixels u and the shift map phi (the nearest-neighbour field, NNF), where H~ is every patch
centre whose patch overlaps the hole and W_{p + phi(p)} a patch lying entirely in the known region. Alternate:
- **E-step / NNF search**: PatchMatch (Barnes et al. 2009) with all pixels updated in parallel: propagation takes
  the neighbours' shifts at jump distances 8, 4, 2, 1 (a jump-flooding variant of the raster scan), random
  search samples shifts in windows of halving radius;
- **M-step / reconstruction**: every hole pixel becomes the weighted mean of the pixels that the patches covering
  it propose, weights exp(-d^2 / (2 s^2)) with s the 75th percentile of the distances (Wexler Eq. 5, Newson
  Eq. 6); on the finest scale the final pass keeps the single best-matching proposal instead (Newson Sec. 2.4),
  which avoids the blur of averaging.
Coarse to fine: a masked pyramid (each coarse pixel averages the known pixels around it, so the hole shrinks a
pixel a level and the rim's structures reach into it; see ``pyramid``) with as many levels as make the original
hole about two patches wide at the coarsest; what is left of the hole there is initialised by Telea's fast
marching; each finer level starts from the upsampled NNF.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import cv2
import numpy as np


@dataclass
class PatchConfig:
    patch: int = 7  # patch side (odd)
    levels: int = 0  # pyramid levels; 0 = automatic (coarsest hole about 2 patches wide)
    em_iters: int = 6  # EM iterations per level (halved on the finest level, which costs most)
    pm_iters: int = 4  # PatchMatch iterations per E-step
    # weight of Newson's texture features (local mean |grad I|) in the distance; 0 = off. 3, not 1: at 1 the EM
    # still settled on flat sources in grass and gravel (a smooth blotch; |log2 detail| 1.2-1.4 against 0.7-0.8)
    texture: float = 3.0
    seed: int = 0
    max_hole: int = 0  # scales where the hole is longer than this get one cheap detail pass each; 0 = no limit


CHUNK = 1 << 16  # targets searched together (their patches: CHUNK x patch^2 x 5 channels x 4 bytes = 64 MB)
PARALLEL_MIN = 4096  # distance batches at least this long are split across threads (below, the hand-off costs more)
_POOL: list = []  # the lazily made thread pool (none when there is one core)


def _pool() -> ThreadPoolExecutor | None:
    """Threads: INPAINT_STUDIO_THREADS when set (the engine's thread count, as torch's), else every core up to 8."""
    if not _POOL:
        given = os.environ.get("INPAINT_STUDIO_THREADS", "")
        n = int(given) if given.isdigit() and int(given) > 0 else min(os.cpu_count() or 1, 8)
        _POOL.append(ThreadPoolExecutor(n, thread_name_prefix="patchmatch") if n > 1 else None)
    return _POOL[0]


def _disk(k: int) -> np.ndarray:
    return np.ones((k, k), np.uint8)


def resize(a: np.ndarray, size: tuple[int, int], interp: int) -> np.ndarray:
    """cv2.resize for any channel count (INTER_AREA with a non-integer factor takes at most 4 channels)."""
    if a.ndim == 2 or a.shape[2] <= 4:
        return cv2.resize(a, size, interpolation=interp)
    return np.concatenate([cv2.resize(a[..., i:i + 4], size, interpolation=interp).reshape(size[1], size[0], -1)
                           for i in range(0, a.shape[2], 4)], axis=-1)


def pyramid(image: np.ndarray, hole: np.ndarray, levels: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(image, hole)] from fine to coarse. A coarse pixel averages the known fine pixels of a 4x4 window around
    its 2x2 cell and is a hole only where that window has none (Philippeau's masked pyramid, as in PyPatchMatch):
    the hole shrinks by about a pixel a level, so what crosses its rim (a mast, an edge) reaches into it at the
    coarse scales and the patches refine it. Marking every cell that touches the hole instead let the EM settle on
    the flattest source: sky across a rocket, a flat patch on a motorbike (docs/patch.md, "Against its peers")."""
    out = [(np.asarray(image, np.float32), hole.astype(bool))]
    for _ in range(levels - 1):
        im, m = out[-1]
        h, w = max(1, im.shape[0] // 2), max(1, im.shape[1] // 2)
        known = (~m).astype(np.float32)
        num = resize(cv2.blur(im * known[..., None], (4, 4)), (w, h), cv2.INTER_AREA)
        den = cv2.resize(cv2.blur(known, (4, 4)), (w, h), interpolation=cv2.INTER_AREA)
        out.append(((num / np.maximum(den, 1e-6)[..., None]).astype(np.float32), den < 1e-6))
    return out


def texture_features(image: np.ndarray, levels: int, weight: float) -> np.ndarray:
    """Newson et al. Sec. 2.3: (|I_x|, |I_y|) of the luminance averaged over a 2^(L-1) window, times ``weight``.

    Appended to the colour channels, they make flat patches a poor match for textured ones, which stops the EM
    from settling on the smoothest sources (the blur failure mode of plain colour distances)."""
    g = image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    gx = np.abs(cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=1))
    gy = np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=1))
    k = 2 ** max(0, levels - 1)
    feats = np.stack([cv2.blur(gx, (k, k)), cv2.blur(gy, (k, k))], axis=-1)
    return feats * weight


def hole_side(hole: np.ndarray) -> int:
    """The longer side of the hole's bounding box (0 for an empty hole)."""
    ys, xs = np.nonzero(hole)
    return int(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)) if len(ys) else 0


def auto_levels(hole: np.ndarray, patch: int, shape: tuple[int, int], side: int | None = None) -> int:
    """Levels that make the hole (``side``: its longer side, measured here when not given) about two patches wide
    at the coarsest scale, keeping that scale at least four patches across."""
    size = hole_side(hole) if side is None else side
    levels = 1 + max(0, int(math.ceil(math.log2(max(size / (2.0 * patch), 1.0)))))
    while levels > 1 and min(shape) / 2 ** (levels - 1) < 4 * patch:
        levels -= 1
    return min(levels, 7)


class _Level:
    """One scale: the reflect-padded image, its hole, the valid source centres, the target centres and the NNF."""

    def __init__(self, image: np.ndarray, hole: np.ndarray, patch: int, rng: np.random.Generator) -> None:
        self.r = r = patch // 2
        self.rng = rng
        self.h, self.w = hole.shape
        self.img = np.pad(image, ((r, r), (r, r), (0, 0)), mode="reflect") if r else image.copy()
        self.hole = np.pad(hole, r, mode="reflect") if r else hole.copy()
        hp, wp = self.hole.shape
        # valid sources: centres inside the original frame whose whole patch is known
        known_patch = cv2.erode((~self.hole).astype(np.uint8), _disk(patch), borderType=cv2.BORDER_CONSTANT,
                                borderValue=0).astype(bool)
        frame = np.zeros((hp, wp), bool)
        frame[r:r + self.h, r:r + self.w] = True
        self.valid = known_patch & frame
        if not self.valid.any():
            raise ValueError("no fully known patch to copy from: the hole covers too much of the image")
        self.src_y, self.src_x = np.nonzero(self.valid)
        # targets: centres (in the frame) whose patch overlaps the hole
        touch = cv2.dilate(self.hole.astype(np.uint8), _disk(patch)).astype(bool) & frame
        self.ty, self.tx = np.nonzero(touch)
        self.hy, self.hx = np.nonzero(self.hole & frame)
        oy, ox = np.mgrid[-r:r + 1, -r:r + 1]
        self.oy, self.ox = oy.ravel(), ox.ravel()
        self.flat_off = self.oy * wp + self.ox
        # NNF as absolute source centres, stored on the full padded grid (identity where not a target)
        self.ny, self.nx = np.indices((hp, wp), dtype=np.int32)  # int32: a 24 MP grid is 190 MB, not 380
        self.dist = np.full((hp, wp), np.inf, np.float32)

    def random_sources(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.rng.integers(0, len(self.src_y), n)
        return self.src_y[k], self.src_x[k]

    def patches(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """(N, P, C) patches centred at (ys, xs) of the current image (one flat gather: ~3x faster than 2-D)."""
        wp, c = self.img.shape[1], self.img.shape[2]
        idx = (ys * wp + xs)[:, None] + self.flat_off
        return np.take(self.img.reshape(-1, c), idx, axis=0)

    def distances(self, target: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
        """SSD between target patches and the patches at (sy, sx); inf where (sy, sx) is not a valid source.

        Large batches are cut into one slice per worker thread (numpy's gathers and arithmetic release the GIL),
        each writing its own part of the result: the same numbers as one pass, so a seed still gives one fill; a
        whole fill runs 1.15-1.6x faster on 2 cores (docs/patch.md)."""
        d = np.empty(len(sy), np.float32)
        pool = _pool()
        if pool is None or len(sy) < PARALLEL_MIN:
            self._ssd(target, sy, sx, d)
        else:
            cuts = np.linspace(0, len(sy), pool._max_workers + 1).astype(int)
            list(pool.map(lambda a: self._ssd(target[a[0]:a[1]], sy[a[0]:a[1]], sx[a[0]:a[1]], d[a[0]:a[1]]),
                          zip(cuts, cuts[1:])))
        return d

    def _ssd(self, target: np.ndarray, sy: np.ndarray, sx: np.ndarray, out: np.ndarray) -> None:
        hp, wp = self.valid.shape
        inside = (sy >= 0) & (sy < hp) & (sx >= 0) & (sx < wp)
        ok = np.zeros(len(sy), bool)
        ok[inside] = self.valid[sy[inside], sx[inside]]
        out[~ok] = np.inf
        if ok.any():
            diff = target[ok] - self.patches(sy[ok], sx[ok])
            out[ok] = np.einsum("npc,npc->n", diff, diff)

    def _try(self, target: np.ndarray, ty: np.ndarray, tx: np.ndarray, cy: np.ndarray, cx: np.ndarray) -> None:
        d = self.distances(target, cy, cx)
        better = d < self.dist[ty, tx]
        if better.any():
            ty, tx = ty[better], tx[better]
            self.ny[ty, tx], self.nx[ty, tx], self.dist[ty, tx] = cy[better], cx[better], d[better]

    def patchmatch(self, iters: int) -> None:
        """Parallel PatchMatch on the current image: re-score, then propagate + random search ``iters`` times, in
        chunks of ``CHUNK`` targets (a chunk's patches are what is held in memory: 64 MB, not gigabytes for a
        megapixel hole; a later chunk propagates from the earlier chunks' new matches, as a raster scan does)."""
        for start in range(0, len(self.ty), CHUNK):
            self._patchmatch(self.ty[start:start + CHUNK], self.tx[start:start + CHUNK], iters)

    def _patchmatch(self, ty: np.ndarray, tx: np.ndarray, iters: int) -> None:
        target = self.patches(ty, tx)
        self.dist[ty, tx] = self.distances(target, self.ny[ty, tx], self.nx[ty, tx])
        bad = ~np.isfinite(self.dist[ty, tx])
        if bad.any():
            ry, rx = self.random_sources(int(bad.sum()))
            self.ny[ty[bad], tx[bad]], self.nx[ty[bad], tx[bad]] = ry, rx
            self.dist[ty[bad], tx[bad]] = self.distances(target[bad], ry, rx)
        hp, wp = self.valid.shape
        radius0 = max(hp, wp)
        for i in range(iters):
            jump = max(1, 8 >> i) if iters > 1 else 1
            for dy, dx in ((jump, 0), (-jump, 0), (0, jump), (0, -jump)):
                ny = np.clip(ty + dy, 0, hp - 1)
                nx = np.clip(tx + dx, 0, wp - 1)
                self._try(target, ty, tx, self.ny[ny, nx] - (ny - ty), self.nx[ny, nx] - (nx - tx))
            radius = radius0
            while radius >= 1:
                cy = self.ny[ty, tx] + self.rng.integers(-radius, radius + 1, len(ty))
                cx = self.nx[ty, tx] + self.rng.integers(-radius, radius + 1, len(tx))
                self._try(target, ty, tx, cy, cx)
                radius //= 2

    def reconstruct(self, best_only: bool = False) -> None:
        """M-step: each hole pixel from the proposals of every patch covering it (weighted mean, or the best)."""
        d = self.dist[self.ty, self.tx]
        finite = d[np.isfinite(d)]
        s2 = float(np.percentile(finite, 75)) if finite.size else 1.0
        s2 = max(s2, 1e-6)
        acc = np.zeros((len(self.hy), self.img.shape[2]), np.float64)
        wsum = np.zeros(len(self.hy), np.float64)
        best_d = np.full(len(self.hy), np.inf)
        for oy, ox in zip(self.oy, self.ox):
            cy, cx = self.hy - oy, self.hx - ox  # patch centres covering the hole pixel at offset (oy, ox)
            dd = self.dist[cy, cx]
            val = self.img[self.ny[cy, cx] + oy, self.nx[cy, cx] + ox]
            ok = np.isfinite(dd)
            if best_only:
                upd = ok & (dd < best_d)
                acc[upd] = val[upd]
                best_d[upd] = dd[upd]
                wsum[upd] = 1.0
            else:
                wt = np.where(ok, np.exp(-np.where(ok, dd, 0.0) / (2.0 * s2)), 0.0) + 1e-12 * ok
                acc += wt[:, None] * val
                wsum += wt
        have = wsum > 0
        self.img[self.hy[have], self.hx[have]] = (acc[have] / wsum[have, None]).astype(np.float32)

    def image(self) -> np.ndarray:
        r = self.r
        return self.img[r:r + self.h, r:r + self.w]


def inpaint_iter(image: np.ndarray, hole: np.ndarray, cfg: PatchConfig | None = None,
                 check: Callable[[], None] = lambda: None) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield (step, total, current uint8 estimate) after every EM iteration; the last estimate is the result."""
    cfg = cfg or PatchConfig()
    patch = cfg.patch | 1
    hole = hole.astype(bool)
    side = hole_side(hole)  # one pass over a full-size mask, for the levels and the detail passes
    levels = cfg.levels or auto_levels(hole, patch, hole.shape, side)
    work = image.astype(np.float32)
    if cfg.texture > 0:
        work = np.concatenate([work, texture_features(image, levels, cfg.texture)], axis=-1)
    pyr = pyramid(work, hole, levels)
    del work  # pyr[0] is it; each level drops its pyramid entry once it holds its own padded copy
    rng = np.random.default_rng(cfg.seed)
    # Scales where the hole is longer than max_hole are detail passes: the coarser fill's matches, upsampled, are
    # searched once around (PatchMatch propagation and random search) and the best proposal copied, at full
    # resolution. The full schedule there cost 351 s and 4.7 GB for a 1000 x 800 hole in a 12 MP photo; filling
    # at the 512 px scale alone was soft (docs/patch.md, "Large holes").
    detail = 0
    while cfg.max_hole and side / 2 ** detail > cfg.max_hole and detail < levels - 1:
        detail += 1
    iters = [1 if k < detail else max(2, cfg.em_iters // 2) if k == detail else cfg.em_iters for k in range(levels)]
    total, step = sum(iters), 0
    prev: _Level | None = None
    for k in reversed(range(levels)):
        im, m = pyr[k]
        if prev is None:  # coarsest scale: fast-marching initialisation of the hole
            m8 = m.astype(np.uint8) * 255
            init = np.stack([cv2.inpaint(np.clip(im[..., c], 0, 255).astype(np.uint8), m8, 3, cv2.INPAINT_TELEA)
                             for c in range(im.shape[2])], axis=-1)
            im = np.where(m[..., None], init.astype(np.float32), im)
        lev = _Level(im, m, patch, rng)
        pyr[k] = im = m = None  # the level holds its own padded copy (a full-size scale: 20 bytes a pixel)
        if prev is not None:  # upsample the coarser NNF: source 2 * phi(p / 2) + parity, then reconstruct
            r0, r1 = prev.r, lev.r
            py, px = lev.ty - r1, lev.tx - r1
            cy = np.clip(py // 2, 0, prev.h - 1) + r0
            cx = np.clip(px // 2, 0, prev.w - 1) + r0
            lev.ny[lev.ty, lev.tx] = (prev.ny[cy, cx] - r0) * 2 + py % 2 + r1
            lev.nx[lev.ty, lev.tx] = (prev.nx[cy, cx] - r0) * 2 + px % 2 + r1
            up = resize(prev.image(), (lev.w, lev.h), cv2.INTER_LINEAR)
            lev.img[lev.hy, lev.hx] = up[lev.hy - r1, lev.hx - r1]
            del up
            if k >= detail:
                lev.patchmatch(1)
                lev.reconstruct()
        prev = None
        for i in range(iters[k]):
            check()
            lev.patchmatch(cfg.pm_iters if k >= detail else 1)
            lev.reconstruct(best_only=(k <= detail and i == iters[k] - 1))
            step += 1
            yield step, total, np.clip(np.rint(lev.image()[..., :3]), 0, 255).astype(np.uint8)
        prev = lev


def patch_inpaint(image: np.ndarray, hole: np.ndarray, cfg: PatchConfig | None = None) -> np.ndarray:
    """RGB uint8 image, bool hole (True = fill) -> filled RGB uint8 (known pixels unchanged)."""
    out = image
    for _, _, est in inpaint_iter(image, hole, cfg):
        out = est
    return np.where(hole[..., None], out, image)

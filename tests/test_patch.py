"""Patch-based (PatchMatch EM) inpainting: reproduces periodic texture better than Telea; contract; cancel."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from engine import registry
from engine.api import CancelToken, Cancelled, Request, drive
from engine.classical.pipeline import opencv_inpaint
from engine.metrics import detail_ratio, psnr
from engine.runner import run_job, run_to_end


def _periodic(rng, h=96, w=96):
    """Diagonal stripes of period 8 plus a 6x6 dot lattice: structure a smooth fill cannot invent."""
    yy, xx = np.mgrid[0:h, 0:w]
    g = 120 + 70 * np.sin(2 * np.pi * (xx + yy) / 8.0) + 50 * ((yy % 6 < 2) & (xx % 6 < 2))
    img = np.stack([g, 0.7 * g + 30, 255 - g], axis=-1) + rng.normal(0, 3, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def _hole(h=96, w=96):
    m = np.zeros((h, w), bool)
    m[34:62, 30:64] = True
    return m


def test_patch_reproduces_periodic_texture_better_than_telea(rng):
    from engine.patch.patchmatch import PatchConfig, patch_inpaint

    img, hole = _periodic(rng), _hole()
    out = patch_inpaint(img, hole, PatchConfig(patch=7, em_iters=4, pm_iters=3))
    tel = opencv_inpaint(img, hole)
    assert np.array_equal(out[~hole], img[~hole])
    p_patch, p_tel = psnr(out, img, hole), psnr(tel, img, hole)
    assert p_patch > p_tel + 5, (p_patch, p_tel)
    assert abs(detail_ratio(out, img, hole) - 1) < 0.3 < abs(detail_ratio(tel, img, hole) - 1)


def test_grass_is_filled_with_grass_not_a_smooth_blotch():
    """On a stochastic texture the default texture weight keeps the EM off flat sources: the hole is about as
    detailed as the grass around it (measured: 0.68-0.71 over three seeds; at the old weight 1.0, 0.15-0.19, a
    smooth blotch). The editor's default is the engine's."""
    from skimage import data

    from engine.patch.patchmatch import PatchConfig, patch_inpaint

    img = np.repeat(data.grass()[:160, :160, None], 3, axis=2)
    hole = np.zeros((160, 160), bool)
    hole[40:120, 40:120] = True
    out = patch_inpaint(img, hole)
    assert detail_ratio(out, img, hole) > 0.5
    spec = next(p for p in registry.get_info("patch").params if p.name == "texture")
    assert spec.default == PatchConfig().texture


def test_threads_give_the_same_fill_as_one_pass(rng, monkeypatch):
    """Distance batches are split across threads: the fill must be bit-identical to the single-threaded one, so a
    seed gives one result on every machine."""
    from concurrent.futures import ThreadPoolExecutor

    from engine.patch import patchmatch as pm

    img, hole = _periodic(rng), _hole()
    monkeypatch.setattr(pm, "PARALLEL_MIN", 64)  # this small image's batches are split too
    monkeypatch.setattr(pm, "_POOL", [None])
    one = pm.patch_inpaint(img, hole, pm.PatchConfig(em_iters=2, pm_iters=2, seed=5))
    with ThreadPoolExecutor(3) as pool:
        monkeypatch.setattr(pm, "_POOL", [pool])
        split = pm.patch_inpaint(img, hole, pm.PatchConfig(em_iters=2, pm_iters=2, seed=5))
    assert np.array_equal(one, split)


def test_the_thread_count_follows_inpaint_studio_threads(monkeypatch):
    """3 -> three threads; 1 -> none (one pass); not a count -> every core up to 8 (none on one core)."""
    from engine.patch import patchmatch as pm

    every = min(os.cpu_count() or 1, 8)
    for given, want in (("3", 3), ("1", 0), ("zero", every if every > 1 else 0)):
        monkeypatch.setattr(pm, "_POOL", [])
        monkeypatch.setenv("INPAINT_STUDIO_THREADS", given)
        pool = pm._pool()
        assert (pool._max_workers if pool else 0) == want, given
        if pool:
            pool.shutdown()


def test_a_structure_crossing_the_hole_is_continued(rng):
    """A mast through a square hole in a smooth sky (benchmarks/patch_peers.py's rocket case): the fill carries the
    mast across instead of settling on the flattest source (the masked pyramid: the rim reaches into the hole at
    the coarse scales); the sky on either side stays sky."""
    from engine.patch.patchmatch import patch_inpaint

    h, w = 160, 160
    yy, xx = np.mgrid[0:h, 0:w]
    sky = 60 + 0.5 * yy + rng.normal(0, 2, (h, w))
    img = np.where((xx >= 74) & (xx < 86), 220.0, sky)
    img = np.clip(np.stack([img, img, img * 0.9], -1), 0, 255).astype(np.uint8)
    hole = np.zeros((h, w), bool)
    hole[50:110, 50:110] = True
    out = patch_inpaint(img, hole).astype(float)
    mast = out[50:110, 76:84, 0].mean()
    beside = np.r_[out[50:110, 52:70, 0].ravel(), out[50:110, 90:108, 0].ravel()].mean()
    assert mast > 180 and beside < 130, (mast, beside)


def test_pyramid_levels_follow_the_hole_size():
    from engine.patch.patchmatch import auto_levels

    small = np.zeros((512, 512), bool)
    small[100:110, 100:110] = True
    big = np.zeros((512, 512), bool)
    big[100:228, 100:228] = True
    assert auto_levels(small, 7, small.shape) == 1
    assert auto_levels(big, 7, big.shape) == 5  # 128 px -> 8 px at the coarsest scale, about one patch


def test_patch_model_keeps_known_pixels_and_previews(rng):
    img, hole = _periodic(rng), _hole()
    inp = registry.load("patch")
    previews = []
    res = drive(run_job(inp, Request(image=img, mask=hole, params={"em_iters": 2, "pm_iters": 2})), previews.append)
    assert np.array_equal(res.image[~hole], img[~hole])
    assert previews and previews[-1].step == previews[-1].total and previews[-1].image is not None


def test_patch_cancel_is_prompt(rng):
    img = np.ascontiguousarray(np.tile(_periodic(rng), (3, 3, 1)))
    hole = np.zeros(img.shape[:2], bool)
    hole[100:190, 100:190] = True
    cancel = CancelToken()
    gen = run_job(registry.load("patch"), Request(image=img, mask=hole, params={"em_iters": 30}), cancel)
    next(gen)
    cancel.cancel()
    t0 = time.perf_counter()
    with pytest.raises(Cancelled):
        next(gen)
    assert time.perf_counter() - t0 < 0.5


def test_hole_without_any_known_patch_is_a_clear_error(rng):
    from engine.api import InpaintError

    img = _periodic(rng, 12, 12)
    with pytest.raises(InpaintError):
        run_to_end(registry.load("patch"), Request(image=img, mask=np.ones((12, 12), bool)))


def test_odd_sized_image(rng):
    from engine.patch.patchmatch import PatchConfig, patch_inpaint

    img = _periodic(rng, 75, 101)
    hole = np.zeros((75, 101), bool)
    hole[30:50, 40:70] = True
    out = patch_inpaint(img, hole, PatchConfig(em_iters=2, pm_iters=2))
    assert out.shape == img.shape and np.array_equal(out[~hole], img[~hole])


def test_a_hole_longer_than_max_hole_is_refined_at_full_resolution(rng, monkeypatch):
    """Scales where the hole is longer than max_hole get one detail pass each (a search from the upsampled matches,
    best proposal copied) instead of the full schedule: the fill keeps the texture's fine grain, which filling at
    the max_hole scale and scaling up (what the runner did before) loses. Searched in small chunks here, as a
    megapixel hole is, to exercise the chunking."""
    import cv2

    import engine.patch.patchmatch as pm

    monkeypatch.setattr(pm, "CHUNK", 500)
    img = _periodic(rng, 192, 192)
    img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)  # grain only full size has
    hole = np.zeros((192, 192), bool)
    hole[48:144, 40:136] = True  # 96 px: max_hole 24 gives two detail scales
    steps = list(pm.inpaint_iter(img, hole, pm.PatchConfig(max_hole=24)))
    levels = pm.auto_levels(hole, 7, hole.shape)
    assert steps[-1][1] == 2 + max(2, 6 // 2) + 6 * (levels - 3)  # 1 + 1 detail passes, then the full schedule
    full = np.where(hole[..., None], steps[-1][2], img)
    small = cv2.resize(img, (48, 48), interpolation=cv2.INTER_AREA)
    coarse = pm.patch_inpaint(small, cv2.resize(hole.astype(np.uint8), (48, 48)) > 0)
    scaled = np.where(hole[..., None], cv2.resize(coarse, (192, 192), interpolation=cv2.INTER_CUBIC), img)
    assert np.array_equal(full[~hole], img[~hole])
    d_full, d_scaled = detail_ratio(full, img, hole), detail_ratio(scaled, img, hole)
    assert d_full > 0.6 and d_full > 2 * d_scaled, (d_full, d_scaled)

"""Frugal single-image diffusion: data, network, sampler, the Inpainter contract, cancel and cache (tiny configs)."""
from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from engine import registry
from engine.api import CancelToken, Cancelled, Request, drive
from engine.frugal import train as frugal_train
from engine.runner import run_job, run_to_end

TINY = {"iterations": 3, "crop": 16, "batch": 2, "steps": 3, "minutes": 5.0}


@pytest.fixture(autouse=True)
def one_thread_and_scratch_cache(tmp_path, monkeypatch):
    import engine.datasets

    monkeypatch.setattr(engine.datasets, "CACHE", tmp_path / "cache")
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convs: a second thread only adds synchronisation
    yield tmp_path / "cache"
    torch.set_num_threads(n)


def _texture(rng, h=48, w=48):
    yy, xx = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(xx * 2 * np.pi / 8)[..., None] * np.array([1.0, 0.6, 0.3])
    return np.clip(base + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)


def _hole(h=48, w=48):
    m = np.zeros((h, w), bool)
    m[16:30, 18:34] = True
    return m


def test_family_registers_without_importing_torch():
    code = ("import sys, engine.frugal, engine.patch; from engine import registry; "
            "names = [m.name for m in registry.all_models()]; "
            "assert {'frugal', 'frugal-regression', 'patch'} <= set(names), names; "
            "assert registry.get_info('frugal').learns_on_image; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


def test_free_form_masks_are_strokes_of_sensible_size(rng):
    from engine.frugal.data import free_form_mask, rect_mask, training_mask

    fracs = []
    for _ in range(200):
        m = free_form_mask(64, 48, rng)
        assert m.shape == (64, 48) and m.dtype == bool
        fracs.append(m.mean())
    fracs = np.array(fracs)
    assert (fracs > 0).all() and fracs.max() < 1.0
    assert 0.05 < np.median(fracs) < 0.7  # neither specks nor full crops
    r = rect_mask(64, 64, rng, 0.25, 0.5)
    ys, xs = np.nonzero(r)
    assert 16 <= np.ptp(ys) + 1 <= 32 and 16 <= np.ptp(xs) + 1 <= 32 and r.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
    assert all(training_mask(32, 32, rng).any() for _ in range(100))


def test_crops_never_contain_hole_pixels(rng):
    from engine.frugal.data import CropSampler, valid_crop_corners

    img = rng.integers(0, 255, (80, 96, 3), dtype=np.uint8)
    hole = np.zeros((80, 96), bool)
    hole[30:50, 40:70] = True
    hole[5, 5] = True
    valid = valid_crop_corners(hole, 24)
    assert valid.shape == (80 - 23, 96 - 23)
    # exhaustive check: exactly the hole-free windows are marked
    free = np.array([[not hole[y:y + 24, x:x + 24].any() for x in range(96 - 23)] for y in range(80 - 23)])
    assert valid.any() and np.array_equal(valid, free)
    # sampled crops are exact copies of hole-free windows (the hole region has a tell-tale colour)
    img[hole] = (255, 0, 255)
    s = CropSampler([img], [hole], crop=24, seed=1)
    crops, masks = s.sample(64)
    assert crops.shape == (64, 24, 24, 3) and masks.shape == (64, 24, 24)
    assert not np.all(crops == (255, 0, 255), axis=-1).any()


@pytest.mark.parametrize("hole_from, listed", [(70, False), (20, True)])
def test_crop_corners_are_drawn_uniformly_from_the_free_ones(rng, hole_from, listed):
    """A mostly free image draws corners by rejection, a mostly excluded one from a list: both only free corners,
    all of them reachable, none favoured."""
    from engine.frugal.data import CropSampler

    hole = np.zeros((80, 80), bool)
    hole[hole_from:, hole_from:] = True  # 20: 625 free corners of 4,225 (15 %), the crop still fits
    s = CropSampler([np.zeros((80, 80, 3), np.uint8)], [hole], crop=16, seed=3)
    assert s.crop == 16 and (s.sparse[0] is not None) == listed
    counts = np.zeros(s.valid[0].shape)
    for _ in range(20000):
        counts[s._corner(0)] += 1
    free = s.valid[0]
    assert counts[~free].sum() == 0 and (counts[free] > 0).mean() > 0.99
    expected = 20000 / free.sum()  # per free corner; a uniform draw's counts spread like Poisson's, sd sqrt(expected)
    assert counts[free].std() < 1.5 * np.sqrt(expected)


def test_crop_shrinks_to_fit_and_fails_cleanly():
    from engine.frugal.data import CropSampler

    img = np.zeros((40, 40, 3), np.uint8)
    hole = np.zeros((40, 40), bool)
    hole[:, 18:22] = True  # known strips are 18 px wide
    assert CropSampler([img], [hole], crop=32, multiple=8).crop == 16
    with pytest.raises(ValueError):
        CropSampler([img], [np.ones((40, 40), bool)], crop=32)


def test_default_network_has_about_160k_parameters():
    from engine.frugal.model import FrugalUNet, UNetConfig, count_parameters

    net = FrugalUNet(UNetConfig())
    n = count_parameters(net)
    assert 140_000 <= n <= 200_000, n
    x = torch.randn(2, 3, 32, 48)
    out = net(x, x, torch.ones(2, 1, 32, 48), torch.tensor([0.5, 0.01]))
    assert out.shape == (2, 3, 32, 48)
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in net.modules())


def test_schedule_covers_zero_to_one():
    from engine.diffusion.schedule import NoiseSchedule
    from engine.frugal.train import frugal_schedule

    s = NoiseSchedule(frugal_schedule())
    assert float(s.sigmas[0]) < 0.01 and float(s.sigmas[-1]) == 1.0  # the paper's sigma_0^2 ~ 0 ... sigma_T^2 = 1
    assert torch.all(s.sigmas[1:] >= s.sigmas[:-1])
    assert torch.allclose(s.alphas_cumprod, torch.cumprod(1 - s.betas.double(), 0).float(), atol=1e-6)


def test_sampler_keeps_known_pixels_exactly():
    from engine.diffusion.samplers import sample
    from engine.diffusion.schedule import NoiseSchedule
    from engine.frugal.model import FrugalUNet
    from engine.frugal.pipeline import denoiser, level_grid
    from engine.frugal.train import frugal_schedule

    torch.manual_seed(0)
    net = FrugalUNet().eval()
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    m = torch.zeros(1, 1, 16, 16)
    m[..., 4:10, 5:12] = 1
    y = y * (1 - m)
    sched = NoiseSchedule(frugal_schedule())
    seen = []
    out = drive(sample(denoiser(net, sched, y, m), torch.randn(1, 3, 16, 16), level_grid(sched, 4), sched, known=y,
                       mask=m, clip=False), lambda s: seen.append((s.step, s.total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert torch.equal(out * (1 - m), y * (1 - m))


@pytest.mark.parametrize("model,edm", [("frugal", False), ("frugal", True), ("frugal-regression", False)])
def test_fill_keeps_pixels_outside_the_mask(model, edm, rng):
    img, hole = _texture(rng), _hole()
    inp = registry.load(model)
    previews = []
    gen = run_job(inp, Request(image=img, mask=hole, params=dict(TINY, edm=edm) if model == "frugal" else
                               {k: v for k, v in TINY.items() if k != "steps"}))
    res = drive(gen, previews.append)
    assert np.array_equal(res.image[~hole], img[~hole])
    assert res.image.shape == img.shape
    train = [p for p in previews if p.stage == "train"]
    assert train and all(p.loss is not None and np.isfinite(p.loss) for p in train)
    assert train[-1].step == train[-1].total == 3
    if model == "frugal":
        den = [p for p in previews if p.stage == "denoise"]
        n = den[0].total  # the default patch draft skips the noisiest steps
        assert any(p.stage == "draft" for p in previews) and 1 <= n < 3
        # one preview per step, then the candidate that automatic guidance kept
        assert [p.step for p in den] == list(range(1, n + 1)) + [n] and den[-1].image is not None
        assert den[-1].message.startswith("automatic guidance: ")


def test_cancel_during_training_stops_promptly_and_caches_nothing(rng, one_thread_and_scratch_cache):
    inp = registry.load("frugal")
    cancel = CancelToken()
    params = {"minutes": 5.0, "crop": 32, "batch": 4, "steps": 3, "iterations": 0}
    gen = run_job(inp, Request(image=_texture(rng, 64, 64), mask=_hole(64, 64), params=params), cancel)
    p = next(gen)
    assert p.stage == "train"
    cancel.cancel()
    with pytest.raises(Cancelled):  # the very next step: the learning loop checks the token every iteration
        next(gen)
    cache = one_thread_and_scratch_cache / "frugal"
    assert not cache.exists() or not list(cache.iterdir())


def test_a_batch_learned_in_slices_gets_the_whole_batch_loss_and_gradients(rng):
    from engine.frugal.model import FrugalUNet, UNetConfig
    from engine.frugal.train import Shards, regression_loss, to_tensor

    net = FrugalUNet(UNetConfig(base=8, groups=2))
    for prm in net.parameters():  # zero-initialised convs would make most gradients trivially zero
        torch.nn.init.normal_(prm, std=0.1)
    params = list(net.parameters())
    x0 = to_tensor(np.stack([_texture(rng, 16, 16) for _ in range(4)]))
    m = torch.zeros(4, 1, 16, 16)
    for k, side in enumerate((2, 4, 6, 12)):  # unequal holes: slices must be weighted by their hole pixels
        m[k, :, 2:2 + side, 2:2 + side] = 1
    whole = regression_loss(net, x0, m)
    expected = torch.autograd.grad(whole, params)
    shards = Shards(limit=2, seed=0)
    try:
        assert shards.n == 2  # the first iterations run at the largest slice count
        loss = shards.step(lambda a, b, g: regression_loss(net, a, b), params, x0, m)
    finally:
        shards.close()
    assert loss == pytest.approx(float(whole.detach()), rel=1e-5)
    for prm, g in zip(params, expected):
        torch.testing.assert_close(prm.grad, g, rtol=1e-4, atol=1e-6)


def test_learning_keeps_the_faster_slice_count_and_restores_the_thread_count():
    from engine.frugal.train import Shards

    def slow(x0, m, gen):  # 5 ms per sample, GIL released: slices run in parallel like torch ops do
        time.sleep(0.005 * x0.shape[0])
        return (x0 * w).sum()

    w = torch.ones((), requires_grad=True)
    torch.set_num_threads(2)
    shards = Shards(limit=2, seed=0, block=3, warmup=1)
    assert torch.get_num_threads() == 1  # one intra-op thread per slice
    for _ in range(1 + 4 * 3 + 2):
        shards.step(slow, [w], torch.ones(4, 1, 2, 2), torch.ones(4, 1, 2, 2))
    shards.close()
    report = shards.report()
    assert report["slices"] == 2 and shards.n == 2
    assert report["seconds_per_iteration"]["2"] < report["seconds_per_iteration"]["1"]
    assert torch.get_num_threads() == 2


def test_one_slow_iteration_does_not_decide_the_slice_count():
    import itertools

    from engine.frugal.train import Shards

    halves = itertools.count()

    def slow(x0, m, gen):  # 2 slices are twice as fast, but one of their iterations takes a 0.2 s hiccup
        time.sleep(0.005 * x0.shape[0] + (0.2 if x0.shape[0] == 2 and next(halves) == 6 else 0.0))
        return (x0 * w).sum()

    w = torch.ones((), requires_grad=True)
    shards = Shards(limit=2, seed=0, block=3, warmup=1)
    for _ in range(1 + 4 * 3 + 2):
        shards.step(slow, [w], torch.ones(4, 1, 2, 2), torch.ones(4, 1, 2, 2))
    shards.close()
    assert next(halves) > 7, "the hiccup happened while 2 slices were timed"
    assert shards.report()["slices"] == 2, "a sum of block times would have kept 1 slice"


def test_cancel_during_the_draft_stops_before_denoising(rng):
    cancel = CancelToken()
    gen = run_job(registry.load("frugal"), Request(image=_texture(rng, 96, 96), mask=_hole(96, 96), params=TINY),
                  cancel)
    stages = []
    with pytest.raises(Cancelled):
        while True:
            stages.append(next(gen).stage)
            if stages[-1] == "draft":
                cancel.cancel()
    assert stages.count("draft") == 1 and "denoise" not in stages


def test_cache_hit_skips_training(rng, one_thread_and_scratch_cache):
    img, hole = _texture(rng), _hole()
    inp = registry.load("frugal")
    params = dict(TINY, iterations=40)
    first = run_to_end(inp, Request(image=img, mask=hole, params=params, seed=3))
    assert first.stats["cached"] is False and first.stats["iterations"] == 40
    assert len(list((one_thread_and_scratch_cache / "frugal").glob("*/model.safetensors"))) == 1
    other_hole = np.zeros_like(hole)
    other_hole[30:40, 5:15] = True  # the key is mask-independent: another mask reuses the weights
    previews = list(run_job(inp, Request(image=img, mask=other_hole, params=params, seed=3)))
    train = [p for p in previews if p.stage == "train"]
    assert len(train) == 1 and "cache" in train[0].message
    again = run_to_end(inp, Request(image=img, mask=hole, params=params, seed=3))
    assert again.stats["cached"] is True
    assert np.array_equal(again.image, first.image)  # same weights + same seed = same fill
    # a different image (or config) is a miss
    assert run_to_end(inp, Request(image=img[::-1].copy(), mask=hole, params=params)).stats["cached"] is False


def test_refills_read_the_cached_weights_once_until_the_file_changes(rng, one_thread_and_scratch_cache, monkeypatch):
    img, hole = _texture(rng), _hole()
    inp = registry.load("frugal-regression")
    params = {"iterations": 4, "crop": 16, "batch": 2, "minutes": 5.0}
    first = run_to_end(inp, Request(image=img, mask=hole, params=params))
    reads = []
    load = frugal_train.load
    monkeypatch.setattr(frugal_train, "load", lambda *a, **k: reads.append(1) or load(*a, **k))
    for _ in range(3):
        again = run_to_end(inp, Request(image=img, mask=hole, params=params))
        assert again.stats["cached"] is True and np.array_equal(again.image, first.image)
    assert len(reads) == 1, "a refill of the same image reads its weights from disk once"
    (weights,) = (one_thread_and_scratch_cache / "frugal").glob("*/model.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])  # another process rewrote (here: broke) the file
    previews: list = []
    drive(run_job(inp, Request(image=img, mask=hole, params=params)), previews.append)
    assert previews[0].message.startswith("discarding unreadable cached weights")


def test_a_damaged_cache_is_discarded_and_learned_again_saying_so(rng, one_thread_and_scratch_cache):
    img, hole = _texture(rng), _hole()
    inp = registry.load("frugal")
    params = dict(TINY, iterations=4)
    run_to_end(inp, Request(image=img, mask=hole, params=params))
    (weights,) = (one_thread_and_scratch_cache / "frugal").glob("*/model.safetensors")
    weights.write_bytes(weights.read_bytes()[:100])  # a crash or a full disk mid-write
    previews: list = []
    res = drive(run_job(inp, Request(image=img, mask=hole, params=params)), previews.append)
    assert previews[0].message.startswith("discarding unreadable cached weights") and res.stats["cached"] is False
    assert run_to_end(inp, Request(image=img, mask=hole, params=params)).stats["cached"] is True


def test_learning_before_the_mask_is_painted_then_filling_from_the_cache(rng, one_thread_and_scratch_cache):
    from engine.api import InpaintError
    from engine.runner import run_learn

    img, hole = _texture(rng), _hole()
    inp = registry.load("frugal")
    params = dict(TINY, iterations=12)
    no_mask = np.zeros_like(hole)
    cancel = CancelToken()
    gen = run_learn(inp, Request(image=img, mask=no_mask, params=params), cancel)
    next(gen)
    cancel.cancel()
    with pytest.raises(Cancelled):
        next(gen)
    assert not list(one_thread_and_scratch_cache.glob("frugal/*")), "a cancelled Learn caches nothing"
    previews: list = []
    stats = drive(run_learn(inp, Request(image=img, mask=no_mask, params=params)), previews.append)
    assert previews and all(p.stage == "train" and p.loss is not None for p in previews)
    assert stats["iterations"] == 12 and stats["cached"] is False and stats["wall"] > 0
    fill = list(run_job(inp, Request(image=img, mask=hole, params=params, seed=1)))
    train = [p for p in fill if p.stage == "train"]
    assert len(train) == 1 and "cache" in train[0].message, "the Fill after a Learn does not learn again"
    with pytest.raises(InpaintError, match="does not learn"):
        drive(run_learn(registry.load("telea"), Request(image=img, mask=hole)))


def test_big_holes_are_filled_at_a_smaller_working_scale(rng):
    img = _texture(rng, 96, 96)
    h = np.zeros((96, 96), bool)
    h[20:76, 30:60] = True
    previews: list = []
    res = drive(run_job(registry.load("frugal"), Request(image=img, mask=h, params=dict(TINY, max_hole=32))),
                previews.append)
    assert np.array_equal(res.image[~h], img[~h])
    said = {p.message.split(":")[0] for p in previews if p.stage == "train"}
    assert said == {"learning the image at 57% size (hole wider than 32 px)"}, "the user is told why"
    assert max(p.box[2] for p in previews if p.box) <= 96, "previews are in image pixels"


def test_learning_before_any_mask_warns_about_big_holes(rng):
    from engine.runner import run_learn

    img = _texture(rng, 96, 96)
    first = next(run_learn(registry.load("frugal"), Request(image=img, mask=np.zeros((96, 96), bool),
                                                            params=dict(TINY, max_hole=64))))
    assert "a hole wider than 64 px is learned again" in first.message


def test_edm_preconditioning_is_identity_at_zero_noise_and_finite_at_pure_noise():
    from engine.frugal.model import FrugalUNet, UNetConfig

    torch.manual_seed(0)
    net = FrugalUNet(UNetConfig(precond=True)).eval()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    m = torch.ones(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net(x, x * 0, m, torch.zeros(1)), x, atol=1e-5)
        assert torch.isfinite(net(x, x * 0, m, torch.ones(1))).all()


def test_timesteps_span_T_to_zero():
    from engine.diffusion.schedule import NoiseSchedule
    from engine.frugal.pipeline import level_grid
    from engine.frugal.train import frugal_schedule

    s = NoiseSchedule(frugal_schedule())
    assert level_grid(s, 4) == [249, 499, 749, 999]  # the paper's levels 1000, 750, 500, 250 (then clean)
    assert level_grid(s, 10_000) == list(range(1000))  # capped at T steps


def test_a_patch_draft_starts_sampling_at_its_strength_and_keeps_the_known_pixels(rng):
    from engine.diffusion.schedule import NoiseSchedule
    from engine.frugal.pipeline import level_grid
    from engine.frugal.train import frugal_schedule

    sched = NoiseSchedule(frugal_schedule())
    low = level_grid(sched, 10, 0.6)
    assert 1 <= len(low) < 10 and all(float(sched.sigmas[t]) <= 0.6 for t in low)  # only the levels sigma <= 0.6
    assert low == [t for t in level_grid(sched, 10) if float(sched.sigmas[t]) <= 0.6]
    assert level_grid(sched, 10, 0.0) == level_grid(sched, 10)[:1]  # at least one step
    # through the editor's model: the patch method drafts first, then the learned net denoises from it
    img, hole = _texture(rng), _hole()
    inp = registry.load("frugal")
    previews = []
    drafted = drive(run_job(inp, Request(image=img, mask=hole, params=dict(TINY, draft_strength=0.5), seed=2)),
                    previews.append)
    stages = [p.stage for p in previews]
    assert "draft" in stages and stages.index("train") < stages.index("draft") < stages.index("denoise")
    assert stages[-1] == "denoise" and np.array_equal(drafted.image[~hole], img[~hole])
    plain = run_to_end(inp, Request(image=img, mask=hole, params=dict(TINY, draft_strength=0.0), seed=2))
    assert not np.array_equal(drafted.image, plain.image)
    big, big_hole = _texture(rng, 96, 96), np.zeros((96, 96), bool)
    big_hole[20:76, 30:60] = True
    small = run_to_end(inp, Request(image=big, mask=big_hole, params=dict(TINY, draft_strength=0.5, max_hole=32)))
    assert np.array_equal(small.image[~big_hole], big[~big_hole])  # drafted and filled at a smaller working scale


def test_a_strongly_noised_draft_is_drafted_at_half_size(rng):
    """At strength >= COARSE_DRAFT the patch method works on the region halved (its previews are half size); the draft
    is brought back to full size in the hole only. A weak draft, whose detail survives the noise, stays full size."""
    from engine.crop import context_box
    from engine.frugal.pipeline import COARSE_DRAFT, patch_draft

    img, hole = _texture(rng, 96, 96), np.zeros((96, 96), bool)
    hole[30:66, 28:64] = True
    rx0, ry0, rx1, ry1 = context_box(hole, 2.0, square=False)
    sides = {}
    for strength in (COARSE_DRAFT, COARSE_DRAFT - 0.2):
        previews = []
        out = drive(patch_draft(img, hole, 0, CancelToken(), strength), previews.append)
        assert np.array_equal(out[~hole], img[~hole]) and not np.array_equal(out[hole], img[hole])
        assert all(p.stage == "draft" and p.box == (rx0, ry0, rx1, ry1) for p in previews)
        sides[strength] = previews[-1].image.shape[:2]
        # a draft, not a blur: the stripes (period 8 px) carry on through the hole
        inside = out[hole].astype(float)[:, 0]
        assert inside.std() > 25
    assert sides[COARSE_DRAFT - 0.2] == (ry1 - ry0, rx1 - rx0)
    assert sides[COARSE_DRAFT] == ((ry1 - ry0) // 2, (rx1 - rx0) // 2)


def test_a_hole_too_big_to_draft_is_filled_from_noise_with_a_message(rng, monkeypatch):
    """When the patch method refuses the draft (no fully known patch at some scale: since its masked pyramid, only a
    band thinner than a patch), frugal says so and denoises from noise."""
    import engine.frugal.pipeline as frugal_pipeline

    def refuses(*args, **kwargs):
        raise ValueError("no fully known patch to copy from: the hole covers too much of the image")
        yield  # a generator, like inpaint_iter

    monkeypatch.setattr(frugal_pipeline, "inpaint_iter", refuses)
    img, hole = _texture(rng, 128, 128), np.zeros((128, 128), bool)
    hole[10:118, 10:118] = True  # a 10 px known band: 8 px crops to learn from
    previews = []
    res = drive(run_job(registry.load("frugal"), Request(image=img, mask=hole, params=TINY)), previews.append)
    said = [p.message for p in previews if p.stage == "draft"]
    assert said and said[-1].startswith("no patch draft (") and previews[-1].stage == "denoise"
    assert np.array_equal(res.image[~hole], img[~hole]) and not np.array_equal(res.image[hole], img[hole])

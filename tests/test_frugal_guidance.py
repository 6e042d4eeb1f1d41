"""Frugal autoguidance (Karras et al. 2024): the guided pair, its snapshot, the guidance parameter, automatic w."""
from __future__ import annotations

import numpy as np
import torch

from engine import registry
from engine.api import Request, drive
from engine.runner import run_to_end
from tests.test_frugal import TINY, _hole, _texture, one_thread_and_scratch_cache  # noqa: F401 (autouse fixture)


def test_autoguidance_extrapolates_away_from_the_early_snapshot_inside_its_noise_interval():
    from engine.frugal.guidance import INTERVAL, AutoGuided
    from engine.frugal.model import FrugalUNet

    torch.manual_seed(0)
    good, bad = FrugalUNet().eval(), FrugalUNet().eval()
    x, y = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    m = torch.ones(2, 1, 16, 16)
    s2 = torch.tensor([0.3, 0.9])  # sigma 0.55 (inside the interval) and 0.95 (outside)
    assert INTERVAL[0] < 0.3 ** 0.5 <= INTERVAL[1] < 0.9 ** 0.5
    guided = AutoGuided(good, bad, 2.0)
    with torch.no_grad():
        d_good, d_bad = good(x, y, m, s2), bad(x, y, m, s2)
        out = guided(x, y, m, s2)
        assert torch.allclose(out[0], d_bad[0] + 2.0 * (d_good[0] - d_bad[0]), atol=1e-5)
        assert torch.equal(out[1], d_good[1])
        guided.w = 1.0
        bad.forward = None  # w = 1 is the plain model: the snapshot is not even called
        assert torch.equal(guided(x, y, m, s2), d_good)


def test_learning_keeps_an_early_snapshot_and_caches_the_guided_pair(rng, tmp_path):
    from engine.frugal import train as tr
    from engine.frugal.guidance import AutoGuided
    from engine.frugal.model import UNetConfig

    img = _texture(rng, 96, 96)
    test = np.zeros((96, 96), bool)
    test[60:, 60:] = True
    cfg = tr.TrainConfig(iterations=10, crop=16, batch=2, unet=UNetConfig(base=8, groups=4, emb_dim=8))
    model, stats = drive(tr.train([img], [test], cfg))
    assert isinstance(model, AutoGuided)
    good, bad = model.good.state_dict(), model.bad.state_dict()
    assert any(not torch.equal(good[k], bad[k]) for k in good)  # the snapshot is an earlier net
    path = tmp_path / "w"
    tr.save(model, cfg, stats, path)
    again, cfg2, _ = tr.load(path)
    assert isinstance(again, AutoGuided) and cfg2.guide_at == cfg.guide_at
    x, m, s2 = torch.rand(1, 3, 16, 16), torch.ones(1, 1, 16, 16), torch.full((1,), 0.3)
    with torch.no_grad():
        assert torch.equal(model(x, x, m, s2), again(x, x, m, s2))
    # the regression baseline has nothing to guide
    reg, _ = drive(tr.train([img], [test], tr.TrainConfig(objective="regression", iterations=2, crop=16, batch=2)))
    assert not isinstance(reg, AutoGuided)


def test_guidance_parameter_sets_the_weight_without_relearning(rng):
    from engine.frugal.guidance import AUTO_WS

    img, hole = _texture(rng), _hole()
    inp = registry.load("frugal")
    params = dict(TINY, iterations=20)
    auto = run_to_end(inp, Request(image=img, mask=hole, params=params, seed=1))  # the default: automatic w
    chosen = auto.stats["guidance"]
    assert chosen in AUTO_WS and auto.chosen == {"guidance": chosen}  # the result says which w was kept
    fixed = {w: run_to_end(inp, Request(image=img, mask=hole, params=dict(params, auto_guidance=False, guidance=w),
                                        seed=1)) for w in (chosen, 1.0, 3.0)}
    assert all(r.chosen == {} for r in fixed.values())
    assert fixed[3.0].stats["cached"] is True and fixed[3.0].stats["guidance"] == 3.0  # sampling setting: no relearning
    fixed = {w: r.image for w, r in fixed.items()}
    # the kept candidate is the fill sampled with its w alone (same noise; batched convolutions may round apart)
    assert np.abs(auto.image.astype(int) - fixed[chosen]).max() <= 1
    assert not np.array_equal(fixed[1.0], fixed[3.0])
    assert np.array_equal(fixed[3.0][~hole], img[~hole])


def test_automatic_guidance_keeps_the_candidate_as_detailed_as_the_surroundings(rng):
    from engine.frugal.guidance import describe, match_surroundings

    hole = np.zeros((96, 96), bool)
    hole[32:64, 32:64] = True
    base = np.full((96, 96, 3), 120.0)
    grain = rng.normal(0, 10, (96, 96, 1))
    surroundings = base + grain

    def candidate(amp, tone=0.0):
        inside = base + tone + rng.normal(0, amp, (96, 96, 1))
        return np.clip(np.where(hole[..., None], inside, surroundings), 0, 255).astype(np.uint8)

    blurry, matched, noisy = candidate(2), candidate(10), candidate(30)
    report = {}
    assert match_surroundings(np.stack([blurry, matched, noisy]), hole, report=report) == 1
    assert 0.5 < report["ratio"] < 2  # the kept fill is about as detailed as its surroundings
    assert match_surroundings(np.stack([blurry, candidate(8), noisy]), hole) == 1  # within a factor 2 of the ring
    # as detailed, but its tone moved by 4 standard deviations of the surroundings: not kept; the rest are too far
    # from the ring's detail (1/25 and 9x its energy) for guidance to be worth it: the unguided fill stays
    assert match_surroundings(np.stack([blurry, candidate(10, tone=40.0), noisy]), hole, report=report) == 0
    assert report["ratio"] < 0.1  # the blurry one: the status line then says what may help
    assert "learning longer" in describe(1.0, report["ratio"]) and "learning" not in describe(1.0, 0.8)
    assert describe(2.0, 1.1) == "automatic guidance: w = 2 matches the detail around the hole"
    red = np.clip(matched.astype(int) + [60, -20, -20], 0, 255)
    reddened = np.where(hole[..., None], red, matched).astype(np.uint8)
    assert match_surroundings(np.stack([blurry, reddened]), hole) == 0  # a colour shift is drift too
    assert match_surroundings(np.stack([blurry, matched]), np.ones((96, 96), bool)) is None  # nothing around it

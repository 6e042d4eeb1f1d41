"""engine.metrics on inputs whose answers are known."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from engine.metrics import detail_ratio, hole_metrics, mse, psnr, ssim


def test_psnr_known_values(rng):
    a = rng.integers(20, 200, (32, 32, 3)).astype(np.uint8)
    b = a + 10
    assert psnr(a, a) == math.inf
    assert psnr(b, a) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    mask = np.zeros((32, 32), bool)
    mask[:8] = True
    c = a.copy()
    c[8:] = 0  # damage outside the mask does not count
    assert psnr(c, a, mask) == math.inf
    c[:8] = a[:8] + 5
    assert mse(c, a, mask) == pytest.approx(25.0)
    assert psnr(a.astype(np.float32) / 255, (a.astype(np.float32) + 10) / 255) == pytest.approx(psnr(b, a), rel=1e-4)


def test_ssim_is_one_for_identical_and_lower_for_noise(rng):
    a = (rng.random((48, 48, 3)) * 255).astype(np.uint8)
    a = cv2.GaussianBlur(a, (0, 0), 2)
    assert ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((48, 48), bool)
    mask[10:30, 10:30] = True
    assert ssim(noisy, a, mask) < 0.8
    assert ssim(noisy[..., 0], a[..., 0]) < 0.8  # grey images too


def test_detail_ratio_separates_blur_from_texture(rng):
    tex = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    assert detail_ratio(tex, tex, mask) == pytest.approx(1.0)
    flat = tex.copy()
    flat[mask] = 128
    assert detail_ratio(flat, tex, mask) == pytest.approx(0.0, abs=1e-6)
    blurred = cv2.GaussianBlur(tex, (0, 0), 2)
    assert detail_ratio(blurred, tex, mask) < 0.1
    other = (rng.random((64, 64, 3)) * 255).astype(np.uint8)  # a different sample of the same texture
    assert 0.8 < detail_ratio(other, tex, mask) < 1.25
    doubled = np.clip(128 + 2.0 * (tex.astype(float) - 128), 0, 255).astype(np.uint8)
    assert detail_ratio(doubled, tex, mask) > 1.5


def test_hole_metrics_and_errors(rng):
    a = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    m = np.zeros((16, 16), bool)
    m[4:12, 4:12] = True
    r = hole_metrics(a, a, m)
    assert r["psnr"] == math.inf and r["ssim"] == pytest.approx(1.0) and r["detail"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        psnr(a, a[:8])
    with pytest.raises(ValueError):
        psnr(a, a, np.zeros((16, 16), bool))


def test_frugal_benchmark_targets_read_detail_as_energy_and_rms():
    from benchmarks.frugal_textures import targets

    def row(ssim, per_seed):
        return {"ssim": ssim, "detail": float(np.mean(per_seed)), "detail_per_seed": per_seed}

    rows = {"brick": {"Patch": row(0.65, [0.64]), "Diffusion": row(0.64, [0.5, 0.5]),  # rms 0.71, energy 0.5
                      "EDM": row(0.62, [0.9, 0.9])},  # detail met, SSIM 0.03 below the patch method's
            "grass": {"Diffusion": row(0.1, [0.9])}}  # no patch row: not judged
    text, met = targets(rows)
    assert set(met) == {"brick"}
    d = met["brick"]["Diffusion"]
    assert d["detail_rms"] == pytest.approx(0.5 ** 0.5) and d["rms"] and not d["energy"]
    assert not met["brick"]["EDM"]["energy"] and not met["brick"]["EDM"]["rms"]
    assert "(rms): 1/1 brick" in text and "(energy): 0/1" in text

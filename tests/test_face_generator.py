"""The procedural portraits: deterministic, exact labels, attributes confined to their regions, fast enough."""
import time

import numpy as np

from engine.face.data import box_mask, sample_masks
from engine.face.generator import make_batch, make_face


def _diff_box(a, b):
    d = np.abs(a.astype(int) - b.astype(int)).max(2) > 0
    return d


def test_same_seed_same_face():
    a, b = make_face(7), make_face(7)
    assert np.array_equal(a.image, b.image) and a.smile == b.smile and a.glasses == b.glasses


def test_smile_changes_mouth_box_only():
    for seed in range(20):
        on, off = make_face(seed, smile=True, glasses=False), make_face(seed, smile=False, glasses=False)
        assert on.mouth_box == off.mouth_box
        d = _diff_box(on.image, off.image)
        assert d.sum() > 10, "smiling and neutral mouths must differ"
        assert not (d & ~box_mask(64, on.mouth_box)).any(), f"seed {seed}: smile changed pixels outside the mouth box"


def test_glasses_change_eye_band_only():
    for seed in range(20):
        on, off = make_face(seed, smile=True, glasses=True), make_face(seed, smile=True, glasses=False)
        d = _diff_box(on.image, off.image)
        assert d.sum() > 20
        assert not (d & ~box_mask(64, on.eye_box)).any(), f"seed {seed}: glasses changed pixels outside the eye band"


def test_labels_balanced_and_varied():
    imgs, labels, mouth, eyes = make_batch(range(200))
    assert imgs.shape == (200, 64, 64, 3) and imgs.dtype == np.uint8
    assert 0.35 < labels[:, 0].mean() < 0.65 and 0.35 < labels[:, 1].mean() < 0.65
    mouth_cy, eye_cy = (mouth[:, 1] + mouth[:, 3]) / 2, (eyes[:, 1] + eyes[:, 3]) / 2
    assert (mouth_cy > eye_cy + 8).all(), "the mouth box lies well below the eye band"
    # Not a template: the faces differ a lot from one another.
    flat = imgs.reshape(200, -1).astype(np.float32)
    assert np.abs(flat[1:] - flat[:-1]).mean() > 30


def test_128_and_speed():
    t = time.perf_counter()
    make_batch(range(50))
    per_face = (time.perf_counter() - t) / 50
    assert per_face < 0.05, f"{per_face * 1e3:.1f} ms per face"
    assert make_face(3, res=128).image.shape == (128, 128, 3)


def test_mask_regimes():
    rng = np.random.default_rng(0)
    _, _, mouth, eyes = make_batch(range(8))
    masks = sample_masks(rng, 64, mouth, eyes, np.array([0, 1, 2, 3] * 2))
    areas = masks.reshape(8, -1).mean(1)
    assert (areas > 0).all()
    assert areas[0] < areas[1] and areas[4] < areas[5]
    assert masks[2][mouth[2][1]:mouth[2][3], mouth[2][0]:mouth[2][2]].all()

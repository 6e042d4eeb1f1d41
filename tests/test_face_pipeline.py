"""The face model through the engine: registry entry, attribute toggles, pixels outside the mask, detector."""
import dataclasses

import numpy as np
import pytest
import torch

from engine import registry
from engine.api import Request
from engine.face.model import FaceConfig, FaceCVAE, save_pretrained
from engine.runner import run_to_end


@pytest.fixture(scope="module")
def tiny_face_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("face-tiny")
    torch.manual_seed(0)
    save_pretrained(FaceCVAE(FaceConfig(ch=8, z_dim=16, emb_dim=4, disc_ch=8)).eval(), folder)
    spec = registry.get_spec("face-cvae")
    info = dataclasses.replace(spec.info, name="face-cvae-tiny-test", weights=folder)
    registry.register(dataclasses.replace(spec, info=info))
    yield registry.load("face-cvae-tiny-test")
    registry.unregister("face-cvae-tiny-test")


def test_registry_entry_is_cheap_and_declares_controls():
    info = registry.get_info("face-cvae")
    assert {a.name for a in info.attributes} == {"smile", "glasses"}
    assert info.instant and info.uses_region and info.resolution == 64
    assert info.param("variation_scale").default >= 0


def _request(sample_rgb, **kw):
    mask = np.zeros(sample_rgb.shape[:2], bool)
    mask[150:190, 200:260] = True
    return Request(image=sample_rgb, mask=mask, **kw)


def test_outside_mask_unchanged_and_attributes_matter(tiny_face_model, sample_rgb):
    region = (140, 35, 307, 202)
    r0 = run_to_end(tiny_face_model, _request(sample_rgb, region=region, attributes={"smile": 0, "glasses": 0}))
    r1 = run_to_end(tiny_face_model, _request(sample_rgb, region=region, attributes={"smile": 1, "glasses": 0}))
    mask = _request(sample_rgb).mask
    for r in (r0, r1):
        assert np.array_equal(r.image[~mask], sample_rgb[~mask])
    assert np.abs(r0.image.astype(int) - r1.image.astype(int))[mask].max() > 0


def test_seed_and_variation(tiny_face_model, sample_rgb):
    req = lambda seed, v: _request(sample_rgb, seed=seed, params={"variation_scale": v})  # noqa: E731
    a, b = run_to_end(tiny_face_model, req(1, 1.0)).image, run_to_end(tiny_face_model, req(2, 1.0)).image
    c, d = run_to_end(tiny_face_model, req(1, 0.0)).image, run_to_end(tiny_face_model, req(2, 0.0)).image
    assert not np.array_equal(a, b)
    assert np.array_equal(c, d), "variation 0 is the posterior mean, independent of the seed"
    assert np.array_equal(a, run_to_end(tiny_face_model, req(1, 1.0)).image), "same seed, same fill"


def test_no_region_falls_back_to_mask_box(tiny_face_model, sample_rgb):
    from engine.crop import CropPlan

    req = _request(sample_rgb)
    box = CropPlan.plan(tiny_face_model.geometry({}), req.mask).box
    assert box[0] <= 200 and box[2] >= 260 and box[1] <= 150 and box[3] >= 190


def test_detect_face_finds_the_astronaut(sample_rgb):
    from engine.face.detect import detect_face

    box = detect_face(sample_rgb)
    assert box is not None
    x0, y0, x1, y1 = box
    assert x1 - x0 == y1 - y0 and 100 < x1 - x0 < 300
    # The astronaut's face (eyes ~ (205-250, 110), mouth ~ (228, 160)) lies inside the box.
    assert x0 < 200 and x1 > 260 and y0 < 100 and y1 > 175
    assert registry.suggest_region("face-cvae", sample_rgb) == box


def test_detect_face_none_on_noise():
    from engine.face.detect import detect_face

    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    assert detect_face(np.zeros((120, 160, 3), np.uint8)) is None
    assert detect_face(noise) is None

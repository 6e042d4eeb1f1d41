"""The sketch family's LGP on Stable Diffusion (``sd-sketch``, engine/sd), on a tiny random SD folder in diffusers
layout; single files and every type are in tests/test_sd_*.py."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from engine.api import InpaintError, Request, drive


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    from engine.sd.tiny import make_tiny_sd_folder

    return make_tiny_sd_folder(tmp_path_factory.mktemp("sd") / "tiny-sd", latent_size=8)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from PIL import Image

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("a_red_square", "a_blue_disc"):
        img = np.full((40, 48, 3), 30, np.uint8)
        img[8:32, 10:38] = rng.integers(100, 255, 3)
        Image.fromarray(img).save(folder / f"{name}.png")
    return folder


def test_tiny_sd_folder_layout_and_load(sd_folder):
    from engine.sd import model as sd_model
    from engine.sd.loading import detect
    from engine.sd.model import latent_preview

    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (sd_folder / part).is_dir()
    assert json.loads((sd_folder / "model_index.json").read_text())["unet"] == ["diffusers", "UNet2DConditionModel"]
    comp = sd_model.load(sd_folder, detect(sd_folder))
    assert comp.resolution == 16 and comp.latent_size == 8
    assert sd_model.load(sd_folder, detect(sd_folder)) is comp  # cached
    emb, pooled = comp.encode_text(["a red square"])
    assert emb.shape == (1, comp.tokenizer.model_max_length, 16) and pooled is None
    sk = torch.zeros(1, 1, 16, 16)
    sk[..., 8, :] = 1
    assert comp.vae_encode((1.0 - 2.0 * sk).expand(-1, 3, -1, -1)).shape == (1, 4, 8, 8)
    prev = latent_preview(torch.randn(1, 4, 8, 8))
    assert prev.shape == (8, 8, 3) and prev.dtype == np.uint8


def test_missing_and_corrupt_sd_folder_errors(tmp_path, sd_folder):
    from engine.sd import model as sd_model
    from engine.sd.loading import detect

    def load_sd_folder(folder):
        return sd_model.load(folder, detect(folder))

    with pytest.raises(InpaintError, match="not found"):
        load_sd_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InpaintError, match="model_index.json is missing"):
        load_sd_folder(tmp_path / "empty")
    broken = tmp_path / "broken"
    shutil.copytree(sd_folder, broken, ignore=shutil.ignore_patterns("sketch-lgp"))
    shutil.rmtree(broken / "vae")
    with pytest.raises(InpaintError, match="lacks vae/"):
        load_sd_folder(broken)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(sd_folder, corrupt, ignore=shutil.ignore_patterns("sketch-lgp"))
    (corrupt / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InpaintError, match="unet/diffusion_pytorch_model.safetensors: not a safetensors file"):
        detect(corrupt)


def test_train_lgp_on_sd_folder_then_guided_inpainting(sd_folder, photos):
    from engine import registry
    from engine.runner import run_job
    from engine.sketch.lgp import LatentGuidancePredictor
    from engine.sketch.train import TrainConfig, train

    out = train(TrainConfig(sd=str(sd_folder), images=str(photos), steps=2, batch=2, hidden=(16,), log_every=1))
    assert out == sd_folder / "sketch-lgp"
    lgp = LatentGuidancePredictor.load(out)
    assert lgp.config.target == "latent" and lgp.config.out_channels == 4 and lgp.config.resolution == 8
    assert lgp.config.unet_kind == "UNet2DConditionModel"

    model = registry.load("sd-sketch")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (30, 36, 3), dtype=np.uint8)
    mask = np.zeros((30, 36), bool)
    mask[6:22, 8:26] = True
    sketch = np.zeros((30, 36), bool)
    sketch[14, 9:25] = True
    req = Request(img, mask, sketch=sketch, seed=0, prompt="a red square",
                  params={"checkpoint": str(sd_folder), "steps": 2, "beta": 1.0, "share": 1.0, "cfg_scale": 2.0})
    previews = []
    gen = run_job(model, req)
    res = drive(gen, previews.append)
    assert [p.step for p in previews] == [1, 2] and previews[0].total == 2
    assert previews[0].image.shape == (8, 8, 3) and previews[0].box is not None
    assert res.image.shape == img.shape and np.array_equal(res.image[~mask], img[~mask])
    assert res.unet_calls == 4  # 2 steps x (unconditional + text) passes


def test_sd_model_errors_are_clear(tmp_path, sd_folder):
    from engine import registry
    from engine.runner import run_to_end

    model = registry.load("sd-sketch")
    img = np.zeros((16, 16, 3), np.uint8)
    mask = np.ones((16, 16), bool)
    with pytest.raises(InpaintError, match="no Stable Diffusion checkpoint given"):
        run_to_end(model, Request(img, mask))
    with pytest.raises(InpaintError, match="not found"):
        run_to_end(model, Request(img, mask, params={"checkpoint": str(tmp_path / "missing")}))
    sketch = np.zeros((16, 16), bool)
    sketch[8] = True
    with pytest.raises(InpaintError, match="no LGP at"):
        run_to_end(model, Request(img, mask, sketch=sketch,
                                  params={"checkpoint": str(sd_folder), "lgp": str(tmp_path / "nolgp"),
                                          "steps": 2}))

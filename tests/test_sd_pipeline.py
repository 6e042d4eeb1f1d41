"""Prompt fills with the user's Stable Diffusion checkpoints (tiny random ones in every layout), through the registry
and the runner as the editor and the CLI drive them."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.api import Cancelled, CancelToken, InpaintError, Request, drive
from engine.sd import tiny

LAYOUTS = ["sd1.safetensors", "sd1-folder", "sd1-inpainting.safetensors", "sd1-inpainting-folder",
           "sdxl.safetensors", "sdxl-inpainting-folder"]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from engine import registry

    root = tmp_path_factory.mktemp("sdfill")
    for arch, inp in [("sd1", False), ("sd1", True), ("sdxl", False), ("sdxl", True), ("sd2", False)]:
        p = tiny.tiny_parts(arch, inp)
        name = arch + ("-inpainting" if inp else "")
        tiny.write_single_file(p, root / "models" / f"{name}.safetensors")
        if arch != "sd2":
            tiny.write_folder(p, root / "models" / f"{name}-folder")
        tiny.write_configs(p, root / "configs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INPAINT_STUDIO_SD_CONFIGS", str(root / "configs"))
        registry.set_models_dir(root / "models")
        try:
            yield root
        finally:
            registry.set_models_dir(None)


@pytest.fixture
def photo(rng):
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 30:55] = True
    return img, mask


def _fill(name, img, mask, cancel=None, **kw):
    from engine import registry
    from engine.runner import run_job

    previews = []
    params = kw.pop("params", {})
    res = drive(run_job(registry.load(name), Request(img, mask, params=params, **kw), cancel), previews.append)
    return res, previews


@pytest.mark.parametrize("name", LAYOUTS)
def test_every_layout_fills_with_one_preview_per_step_and_keeps_the_rest(models, photo, name):
    img, mask = photo
    res, previews = _fill(name, img, mask, seed=3, prompt="a red brick wall", params={"steps": 3})
    assert [p.step for p in previews] == [1, 2, 3] and {p.total for p in previews} == {3}
    assert all(p.image is not None and p.image.dtype == np.uint8 and p.box is not None for p in previews)
    assert "CPU" in previews[0].message and "s per step" in previews[1].message  # the honest ETA line
    assert np.array_equal(res.image[~mask], img[~mask])
    assert not np.array_equal(res.image[mask], img[mask])
    assert res.unet_calls == 6  # 3 steps x (negative, prompt)
    assert res.stats["type"].startswith("SDXL" if name.startswith("sdxl") else "SD 1.x")


def test_a_seed_repeats_and_another_seed_differs(models, photo):
    img, mask = photo
    a, _ = _fill("sd1.safetensors", img, mask, seed=7, prompt="x", params={"steps": 2})
    b, _ = _fill("sd1.safetensors", img, mask, seed=7, prompt="x", params={"steps": 2})
    c, _ = _fill("sd1.safetensors", img, mask, seed=8, prompt="x", params={"steps": 2})
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("scheduler", ["dpm++ 2m karras", "euler a", "ddim", "lcm"])
def test_schedulers_strength_and_guidance_off(models, photo, scheduler):
    img, mask = photo
    res, previews = _fill("sd1-inpainting.safetensors", img, mask, prompt="sky",
                          params={"steps": 4, "scheduler": scheduler, "strength": 0.5, "cfg_scale": 1.0})
    assert [p.step for p in previews] == [1, 2] and res.unet_calls == 2  # half the steps, no guidance pass
    assert np.array_equal(res.image[~mask], img[~mask])
    assert res.stats["scheduler"] == scheduler


def test_v_prediction_checkpoint_fills(models, photo):
    img, mask = photo
    res, _ = _fill("sd2.safetensors", img, mask, prompt="grass", params={"steps": 2})
    assert res.stats["type"] == "SD 2.x 768 v" and np.array_equal(res.image[~mask], img[~mask])


def test_large_photo_costs_a_native_crop(models, rng, monkeypatch):
    """A small hole in a big photo: the model sees a crop at its native size, not the photo."""
    import engine.sd.generate as generate

    seen = []
    real = generate.fill

    def spy(model, image, hole, *a, **k):
        seen.append(tuple(image.shape[-2:]))
        return (yield from real(model, image, hole, *a, **k))

    monkeypatch.setattr(generate, "fill", spy)
    img = rng.integers(0, 256, (2000, 3000, 3), dtype=np.uint8)
    mask = np.zeros((2000, 3000), bool)
    mask[900:960, 1400:1480] = True
    res, previews = _fill("sd1.safetensors", img, mask, prompt="a window", params={"steps": 2})
    assert seen == [(16, 16)]  # the tiny checkpoint's native side
    x0, y0, x1, y1 = previews[0].box
    assert x0 >= 1300 and x1 <= 1600 and y0 >= 800 and y1 <= 1100
    assert np.array_equal(res.image[~mask], img[~mask])


def test_cancel_lands_within_half_a_second_inside_a_step(models, photo, monkeypatch):
    """The CancelToken is checked before every UNet block: a slow step is interrupted in the middle."""
    from engine import registry
    from engine.runner import run_job

    img, mask = photo
    model = registry.load("sd1.safetensors")
    token = CancelToken()
    unet = __import__("engine.sd.model", fromlist=["x"])
    slow = {"on": False}
    blocks_seen = []

    def slow_block(module, args):
        blocks_seen.append(time.perf_counter())
        if slow["on"]:
            time.sleep(0.2)  # a CPU-sized block

    from engine.sd import model as sd_model
    from engine.sd.checkpoint import detect_single

    m = sd_model.load(models / "models" / "sd1.safetensors", detect_single(models / "models" / "sd1.safetensors"))
    handles = [b.register_forward_pre_hook(slow_block) for b in m.unet.down_blocks]
    result = {}

    def work():
        try:
            drive(run_job(model, Request(img, mask, prompt="x", params={"steps": 40}), token),
                  lambda p: slow.update(on=True))
        except Cancelled:
            result["cancelled"] = time.perf_counter()

    try:
        t = threading.Thread(target=work)
        t.start()
        while not slow["on"]:
            time.sleep(0.01)
        time.sleep(0.1)
        asked = time.perf_counter()
        token.cancel()
        t.join(5)
    finally:
        for h in handles:
            h.remove()
    assert "cancelled" in result and result["cancelled"] - asked < 0.5
    assert unet is not None and blocks_seen


def test_sketch_without_lgp_is_composited_and_with_an_lgp_guides(models, photo, tmp_path):
    from engine.sketch.train import TrainConfig, train

    img, mask = photo
    sketch = np.zeros_like(mask)
    sketch[30, 32:52] = True
    res, previews = _fill("sd1.safetensors", img, mask, sketch=sketch, prompt="a fence", params={"steps": 4})
    assert "SDEdit" in previews[0].message and len(previews) == 3  # min(strength, sketch_strength 0.75) of 4
    assert np.array_equal(res.image[~mask], img[~mask])
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.fromarray(img).save(photos / "a_fence.png")
    out = train(TrainConfig(sd=str(models / "models" / "sd1.safetensors"), images=str(photos), steps=2, batch=2,
                            hidden=(8,), log_every=1))
    assert out == models / "models" / "sd1.sketch-lgp"
    try:
        res, previews = _fill("sd1.safetensors", img, mask, sketch=sketch, prompt="a fence",
                              params={"steps": 3, "share": 1.0})
        assert "LGP" in previews[0].message and res.stats["scheduler"] == "ddim" and len(previews) == 3
        assert np.array_equal(res.image[~mask], img[~mask])
    finally:
        import shutil

        shutil.rmtree(out)


def test_face_attributes_are_prompt_phrases_and_a_toggle_changes_the_fill(models, photo):
    from engine.sd.pipeline import attribute_prompts

    pos, neg = attribute_prompts("", "blurry", {"smile": 1.0, "glasses": 0.0})
    assert "smiling" in pos and "glasses" not in pos and "glasses" in neg and neg.startswith("blurry")
    pos, neg = attribute_prompts("an old man", "", {"smile": 0.0, "glasses": 1.0})
    assert pos.startswith("an old man") and "eyeglasses" in pos and "smiling" in neg
    img, mask = photo
    region = (20, 5, 75, 58)
    a, _ = _fill("sd-face", img, mask, region=region, attributes={"smile": 1, "glasses": 0}, params={"steps": 2})
    b, _ = _fill("sd-face", img, mask, region=region, attributes={"smile": 0, "glasses": 0}, params={"steps": 2})
    assert np.array_equal(a.image[~mask], img[~mask]) and not np.array_equal(a.image, b.image)
    assert "sd1-inpainting" in a.stats["checkpoint"]  # an inpainting checkpoint is the default


def test_sd_sketch_takes_a_single_file_and_errors_are_one_line(models, photo, tmp_path):
    img, mask = photo
    res, _ = _fill("sd-sketch", img, mask, prompt="a door",
                   params={"checkpoint": str(models / "models" / "sdxl.safetensors"), "steps": 2})
    assert res.stats["type"] == "SDXL" and np.array_equal(res.image[~mask], img[~mask])
    (tmp_path / "model.ckpt").write_bytes(b"\x80\x02")
    for params, match in [({}, "no Stable Diffusion checkpoint given"),
                          ({"checkpoint": str(tmp_path / "nope")}, "not found"),
                          ({"checkpoint": str(tmp_path / "model.ckpt")}, "pickles"),
                          ({"checkpoint": str(models / "models" / "sd1.safetensors"), "lgp": str(tmp_path / "no")},
                           "no LGP at")]:
        sketch = np.zeros_like(mask)
        sketch[30, 32:52] = True
        with pytest.raises(InpaintError, match=match) as err:
            _fill("sd-sketch", img, mask, sketch=sketch, params={**params, "steps": 2})
        assert "\n" not in str(err.value)


def test_cli_models_dir_lists_and_fills(models, photo, tmp_path, capsys):
    import json

    from PIL import Image

    from engine.cli import main

    assert main(["--models-dir", str(models / "models"), "models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["sdxl-inpainting-folder"]["resolution"] == 16 and "sd-face" in rows
    img, mask = photo
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "mask.png")
    rc = main(["inpaint", "--models-dir", str(models / "models"), "--model", "sd1-inpainting.safetensors",
               "--prompt", "a bench", "--param", "steps=2", "--param", "scheduler=euler a", "--seed", "2",
               "--image", str(tmp_path / "in.png"), "--mask", str(tmp_path / "mask.png"),
               "--out", str(tmp_path / "out.png")])
    assert rc == 0
    out = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"))
    assert np.array_equal(out[~mask], img[~mask]) and not np.array_equal(out[mask], img[mask])


def test_memory_savers_run_the_same_fill(models, photo):
    """Offload, attention slicing and VAE tiling (on the CPU here: the GPU paths differ only in where parts sit)."""
    import torch

    from engine.api import drive
    from engine.sd import model as sd_model
    from engine.sd.checkpoint import detect_folder
    from engine.sd.generate import FillSettings, fill
    from engine.sd.memory import MemoryPlan
    from engine.tensors import to_tensor

    path = models / "models" / "sdxl-inpainting-folder"
    m = sd_model.load(path, detect_folder(path))
    img, mask = photo
    image = to_tensor(img[:16, :16].copy())
    hole = torch.from_numpy(mask[:16, :16].copy() | True).float()[None, None]
    s = FillSettings(prompt="x", steps=2, seed=1)
    m.place(torch.device("cpu"), MemoryPlan())
    plain = drive(fill(m, image, hole, s))
    m.place(torch.device("cpu"), MemoryPlan(offload=True, attention_slicing=True, vae_tiling=True))
    try:
        saved = drive(fill(m, image, hole, s))
    finally:
        m.place(torch.device("cpu"), MemoryPlan())
    assert torch.allclose(plain, saved, atol=1e-4)

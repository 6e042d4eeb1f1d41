"""Stable Diffusion checkpoints as users have them: type detection, loading both layouts, the models folder, and the
one-line refusals. Tiny random checkpoints are written in every layout (engine/sd/tiny.py); the shipped full-size
configs are checked on the meta device (no weights needed)."""
from __future__ import annotations

import json

import pytest
import torch

from engine.api import InpaintError
from engine.sd import tiny
from engine.sd.checkpoint import CheckpointError, detect_folder, detect_single, kind_from_keys

TYPES = [("sd1", False), ("sd1", True), ("sd2", False), ("sdxl", False), ("sdxl", True)]


def _name(arch, inpainting):
    return arch + ("-inpainting" if inpainting else "")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """models/<type>.safetensors (original layout) and models/<type>-folder (diffusers) for every type, configs/."""
    root = tmp_path_factory.mktemp("sd")
    parts = {}
    for arch, inp in TYPES:
        p = tiny.tiny_parts(arch, inp)
        parts[(arch, inp)] = p
        tiny.write_single_file(p, root / "models" / f"{_name(arch, inp)}.safetensors")
        tiny.write_folder(p, root / "models" / f"{_name(arch, inp)}-folder")
        tiny.write_configs(p, root / "configs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("INPAINT_STUDIO_SD_CONFIGS", str(root / "configs"))
        yield root, parts


@pytest.mark.parametrize("arch,inpainting", TYPES)
def test_type_is_detected_from_keys_and_shapes_in_both_layouts(tiny_models, arch, inpainting):
    root, _ = tiny_models
    for kind in (detect_single(root / "models" / f"{_name(arch, inpainting)}.safetensors"),
                 detect_folder(root / "models" / f"{_name(arch, inpainting)}-folder")):
        assert (kind.arch, kind.inpainting) == (arch, inpainting)
        assert kind.native == 16  # the tiny config's side: 8 latents x a 2-level VAE
        assert kind.prediction == ("v_prediction" if arch == "sd2" and not inpainting else "epsilon")
    label = detect_single(root / "models" / f"{_name(arch, inpainting)}.safetensors").label
    assert label.startswith({"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}[arch])
    assert ("inpainting" in label) == inpainting


@pytest.mark.parametrize("arch,inpainting", [("sd1", True), ("sdxl", False), ("sd2", False)])
def test_single_file_and_folder_load_the_same_networks(tiny_models, arch, inpainting):
    from engine.sd.loading import load_folder, load_single_file

    root, parts = tiny_models
    p = parts[(arch, inpainting)]
    kind = detect_single(root / "models" / f"{_name(arch, inpainting)}.safetensors")
    a = load_single_file(root / "models" / f"{_name(arch, inpainting)}.safetensors", kind)
    b = load_folder(root / "models" / f"{_name(arch, inpainting)}-folder", kind)
    x = torch.randn(1, 9 if inpainting else 4, 8, 8)
    ctx = torch.randn(1, 77, p["unet"].config.cross_attention_dim)
    added = {"text_embeds": torch.randn(1, 24), "time_ids": torch.ones(1, 6)} if arch == "sdxl" else None
    with torch.no_grad():
        ref = p["unet"](x, 10, encoder_hidden_states=ctx, added_cond_kwargs=added).sample
        for got in (a, b):
            out = got["unet"](x, 10, encoder_hidden_states=ctx, added_cond_kwargs=added).sample
            assert torch.allclose(out, ref, atol=2e-2)  # the single file is fp16, as shared files are
        ids = a["tokenizers"][-1](["a red car"], padding="max_length", max_length=77, return_tensors="pt").input_ids
        te_ref = p["text_encoders"][-1](ids, output_hidden_states=True).hidden_states[-2]
        te = a["text_encoders"][-1](ids, output_hidden_states=True).hidden_states[-2]
        assert torch.allclose(te, te_ref, atol=2e-2)
    assert len(a["text_encoders"]) == (2 if arch == "sdxl" else 1)


def test_tokenizer_is_clip_from_the_shipped_vocabulary():
    from engine.sd.loading import clip_tokenizer

    tok = clip_tokenizer()
    assert len(tok) == 49408
    assert tok("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert clip_tokenizer("!")("a", padding="max_length", max_length=5).input_ids == [49406, 320, 49407, 0, 0]


@pytest.mark.parametrize("name,counts,native", [
    ("sd1", (859_520_964, 83_653_863, [123_060_480]), 512),
    ("sd2", (865_910_724, 83_653_863, [340_387_840]), 768),
    ("sdxl-inpainting", (2_567_478_084, 83_653_863, [123_060_480, 694_659_840]), 1024)])
def test_shipped_configs_are_the_real_architectures(name, counts, native, tmp_path, monkeypatch):
    """The shipped configs build networks of the published sizes (on the meta device), whose weights in the
    original layout are detected as the right type and convert back through diffusers' converters."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.sd.checkpoint import CONFIGS_DIR
    from engine.sd.loading import load_single_file

    monkeypatch.delenv("INPAINT_STUDIO_SD_CONFIGS", raising=False)  # the shipped ones
    cfg = CONFIGS_DIR / name
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(cfg, subfolder="unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(cfg, subfolder="vae"))
        tes = [CLIPTextModel(CLIPTextConfig.from_pretrained(cfg / "text_encoder"))]
        if (cfg / "text_encoder_2").is_dir():
            tes.append(CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(cfg / "text_encoder_2")))
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert (size(unet), size(vae), [size(t) for t in tes]) == counts
    arch = name.split("-")[0]
    from diffusers import DDIMScheduler

    parts = dict(arch=arch, inpainting="inpainting" in name, unet=unet, vae=vae, text_encoders=tes,
                 scheduler=DDIMScheduler())
    state = tiny.ldm_state(parts)
    header = {k: {"dtype": "F16", "shape": list(v.shape), "data_offsets": [0, 0]} for k, v in state.items()}
    kind = kind_from_keys(header, {}, tmp_path / f"{name}.safetensors")
    assert (kind.arch, kind.inpainting, kind.native) == (arch, "inpainting" in name, native)
    with pytest.MonkeyPatch.context() as mp:  # the converters on meta tensors: every key accounted for
        mp.setattr("safetensors.torch.load_file", lambda *_a, **_k: state)
        loaded = load_single_file(tmp_path / f"{name}.safetensors", kind, dtype=torch.float16)
    assert sum(p.numel() for p in loaded["unet"].parameters()) == counts[0]


def test_models_folder_lists_each_checkpoint_with_its_type_and_one_line_per_problem(tiny_models, tmp_path):
    import shutil

    from engine import registry

    root, _ = tiny_models
    models = tmp_path / "models"
    shutil.copytree(root / "models", models)
    (models / "old-model.ckpt").write_bytes(b"\x80\x02pickle")
    (models / "big-lama.pt").write_bytes(b"\x80\x02pickle")
    data = (models / "sd1.safetensors").read_bytes()
    (models / "half-downloaded.safetensors").write_bytes(data[: len(data) // 2])
    (models / "notes.safetensors").write_bytes(b"hello")
    from safetensors.torch import save_file

    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(2, 2)}, str(models / "style-lora.safetensors"))
    (models / "sd1-folder" / "sketch-lgp").mkdir()  # an LGP folder is not a model
    shutil.copytree(models / "sd1-folder", models / "pickled-folder")
    for f in (models / "pickled-folder" / "unet").glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    try:
        problems = registry.set_models_dir(models)
        listed = {m.name: m for m in registry.all_models()}
        for arch, inp in TYPES:
            for name in (f"{_name(arch, inp)}.safetensors", f"{_name(arch, inp)}-folder"):
                info = listed[name]
                assert info.category == "yours" and info.family == "sd" and info.uses_prompt
                assert ("inpainting" in info.title) == inp and info.geometry.size == 16
        assert listed["sd-face"].category == "faces" and listed["sd-face"].uses_region
        assert listed["sd-face"].param("checkpoint").default.startswith("sd1-inpainting")
        text = "\n".join(problems)
        assert len(problems) == 6, text
        assert all("\n" not in p for p in problems)
        assert "old-model.ckpt:" in text and "use the .safetensors version" in text and "big-lama.pt:" in text
        assert "half-downloaded.safetensors: truncated" in text
        assert "notes.safetensors: not a safetensors file" in text
        assert "style-lora.safetensors: a LoRA" in text
        assert "holds only .bin" in text
        assert registry.scan_problems == problems
    finally:
        registry.set_models_dir(None)
    assert "sd1.safetensors" not in {m.name for m in registry.all_models()}


def test_pickles_and_broken_files_are_one_clear_error(tiny_models, tmp_path):
    from engine.sd.loading import detect

    root, _ = tiny_models
    (tmp_path / "model.ckpt").write_bytes(b"\x80\x02")
    with pytest.raises(CheckpointError, match=r"^model\.ckpt: .*pickles.*\.safetensors"):
        detect(tmp_path / "model.ckpt")
    data = (root / "models" / "sdxl.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-1000])
    with pytest.raises(CheckpointError, match=r"^cut\.safetensors: truncated, .* of .* present"):
        detect(tmp_path / "cut.safetensors")
    assert issubclass(CheckpointError, InpaintError)
    broken = tmp_path / "broken-folder"
    import shutil

    shutil.copytree(root / "models" / "sd1-folder", broken)
    shutil.rmtree(broken / "vae")
    with pytest.raises(CheckpointError, match="lacks vae/"):
        detect(broken)
    json.loads((broken / "model_index.json").read_text())
    (broken / "model_index.json").unlink()
    with pytest.raises(CheckpointError, match="model_index.json is missing"):
        detect(broken)


def test_names_and_sidecars_decide_what_the_keys_cannot(tiny_models, tmp_path):
    import shutil

    root, _ = tiny_models
    for name, expect in [("v2-1_512-base-ema.safetensors", ("epsilon", 16 * 2 // 3)),
                         ("v2-1_768-ema-pruned.safetensors", ("v_prediction", 16)),
                         ("dreamshaper-lcm.safetensors", None), ("sdxl_turbo.safetensors", None)]:
        src = "sd2.safetensors" if "v2" in name else ("sdxl.safetensors" if "sdxl" in name else "sd1.safetensors")
        shutil.copy(root / "models" / src, tmp_path / name)
        kind = detect_single(tmp_path / name)
        if expect:
            assert (kind.prediction, kind.native) == expect
    assert detect_single(tmp_path / "dreamshaper-lcm.safetensors").flavour == "lcm"
    assert detect_single(tmp_path / "sdxl_turbo.safetensors").flavour == "turbo"
    shutil.copy(root / "models" / "sd2.safetensors", tmp_path / "custom.safetensors")
    (tmp_path / "custom.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert detect_single(tmp_path / "custom.safetensors").prediction == "v_prediction"
    (tmp_path / "custom.yaml").write_text("model:\n  params:\n    linear_start: 0.00085\n    parameterization: eps\n")
    assert detect_single(tmp_path / "custom.safetensors").prediction == "epsilon"


def test_memory_plan_picks_the_cheapest_savers_that_fit():
    from engine.sd.memory import GB, plan_memory

    w, u = 6.9 * GB, 5.1 * GB  # SDXL in fp16
    assert plan_memory(40 * GB, w, u, "sdxl", 1024, vae_fp32=True) == plan_memory(40 * GB, w, u, "sdxl", 1024,
                                                                                  vae_fp32=True)
    fast = plan_memory(40 * GB, w, u, "sdxl", 1024, vae_fp32=True)
    assert not (fast.offload or fast.attention_slicing or fast.vae_tiling)
    mid = plan_memory(11.5 * GB, w, u, "sdxl", 1024, vae_fp32=True)
    assert mid.vae_tiling and not mid.offload
    tight = plan_memory(10.0 * GB, w, u, "sdxl", 1024, vae_fp32=True)
    assert tight.attention_slicing and not tight.offload
    small = plan_memory(6 * GB, w, u, "sdxl", 1024, vae_fp32=True)
    assert small.offload and small.attention_slicing and small.vae_tiling and "one at a time" in small.note
    assert not plan_memory(8 * GB, 2.1 * GB, 1.7 * GB, "sd1", 512).offload  # SD 1.5 fits an 8 GB card as it is

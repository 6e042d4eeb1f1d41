"""Tiny, randomly initialised Stable Diffusion checkpoints in the real on-disk layouts, for tests and smoke runs.

No SD weights are reachable offline, so the loading and sampling code runs on networks with the real classes and
the real layouts but a few hundred thousand parameters (plus CLIP's real 49408-token embedding, so the real
tokenizer fits): SD 1.x, SD 2.x and SDXL, each ordinary or inpainting (9-channel UNet), written as

- a diffusers folder (``write_folder``: model_index.json, unet/, vae/, text_encoder(_2)/, tokenizer(_2)/,
  scheduler/, as ``save_pretrained`` writes them), and
- a single ``.safetensors`` file in the original CompVis / Stability key layout (``write_single_file``:
  ``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.*`` or ``conditioner.embedders.*``), made
  by inverting diffusers' conversion, plus the matching config folder (``write_configs``) that single files need,
  under a root pointed to by ``INPAINT_STUDIO_SD_CONFIGS``.

Their images are noise; only the plumbing is real.   ``python -m engine.sd.tiny OUT_DIR`` writes all of them.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import torch

ARCHS = ("sd1", "sd2", "sdxl")
MAX_LEN = 77


def tiny_parts(arch: str = "sd1", inpainting: bool = False, seed: int = 0, latent_size: int = 8) -> dict:
    """Random diffusers networks of the given type (image side = 2 x latent_size: a two-level VAE)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    te_cfg = dict(vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                  max_position_embeddings=MAX_LEN, bos_token_id=0, eos_token_id=2, pad_token_id=1, projection_dim=16,
                  hidden_act="quick_gelu")
    encoders = [CLIPTextModel(CLIPTextConfig(**{**te_cfg, "hidden_act": "gelu" if arch == "sd2" else "quick_gelu"}))]
    unet_kw = dict(sample_size=latent_size, in_channels=9 if inpainting else 4, out_channels=4, layers_per_block=1,
                   block_out_channels=(16, 32), norm_num_groups=8, attention_head_dim=4, cross_attention_dim=16,
                   down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                   up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    if arch == "sd2":
        unet_kw.update(use_linear_projection=True, upcast_attention=True)
    if arch == "sdxl":
        encoders.append(CLIPTextModelWithProjection(CLIPTextConfig(**{**te_cfg, "hidden_size": 24,
                                                                      "intermediate_size": 48, "hidden_act": "gelu",
                                                                      "projection_dim": 24})))
        unet_kw.update(down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                       up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16 + 24,
                       addition_embed_type="text_time", addition_time_embed_dim=8,
                       projection_class_embeddings_input_dim=24 + 6 * 8, use_linear_projection=True,
                       transformer_layers_per_block=(1, 1))
    unet = UNet2DConditionModel(**unet_kw)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
                        norm_num_groups=4, sample_size=latent_size * 2,
                        scaling_factor=0.13025 if arch == "sdxl" else 0.18215)
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                              beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                              steps_offset=1,
                              prediction_type="v_prediction" if arch == "sd2" and not inpainting else "epsilon")
    return dict(arch=arch, inpainting=inpainting, unet=unet.eval(), vae=vae.eval(),
                text_encoders=[e.eval() for e in encoders], scheduler=scheduler)


def _pipeline_class(parts: dict) -> str:
    base = "StableDiffusionXL" if parts["arch"] == "sdxl" else "StableDiffusion"
    return base + ("InpaintPipeline" if parts["inpainting"] else "Pipeline")


def _tokenizer_files(folder: Path, pad: str) -> None:
    from engine.sd.loading import _vocab_files

    folder.mkdir(parents=True, exist_ok=True)
    vocab, merges = _vocab_files()
    shutil.copy(vocab, folder / "vocab.json")
    shutil.copy(merges, folder / "merges.txt")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_LEN, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "pad_token": pad, "unk_token": "<|endoftext|>", "do_lower_case": True}))


def _write_common(parts: dict, folder: Path, weights: bool) -> None:
    """model_index.json and every part's config (and weights when ``weights``) in diffusers layout."""
    folder.mkdir(parents=True, exist_ok=True)
    xl = parts["arch"] == "sdxl"
    names = ["text_encoder", "text_encoder_2"][:len(parts["text_encoders"])]
    index = {"_class_name": _pipeline_class(parts), "_diffusers_version": "0.35.0",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "scheduler": ["diffusers", "DDIMScheduler"]}
    if xl:
        index.update(text_encoder_2=["transformers", "CLIPTextModelWithProjection"],
                     tokenizer_2=["transformers", "CLIPTokenizer"], force_zeros_for_empty_prompt=True)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    for name, net in [("unet", parts["unet"]), ("vae", parts["vae"]), *zip(names, parts["text_encoders"])]:
        if weights:
            net.save_pretrained(folder / name, safe_serialization=True)
        else:
            (folder / name).mkdir(parents=True, exist_ok=True)
            if hasattr(net.config, "to_json_string"):
                (folder / name / "config.json").write_text(net.config.to_json_string())
            else:
                (folder / name / "config.json").write_text(json.dumps(dict(net.config), indent=2))
    parts["scheduler"].save_pretrained(folder / "scheduler")
    pads = ["!" if parts["arch"] == "sd2" else "<|endoftext|>", "!"]
    for k, name in enumerate(["tokenizer", "tokenizer_2"][:len(parts["text_encoders"])]):
        _tokenizer_files(folder / name, pads[k])


def write_folder(parts: dict, folder: str | Path) -> Path:
    """The checkpoint as a diffusers folder."""
    folder = Path(folder)
    _write_common(parts, folder, weights=True)
    return folder


def write_configs(parts: dict, root: str | Path) -> Path:
    """The configs a single file of this type needs, at ``root/<type>/`` (the layout of resources/configs/sd)."""
    from engine.sd.checkpoint import Kind

    kind = Kind(parts["arch"], parts["inpainting"])
    folder = Path(root) / kind.config_name
    _write_common(parts, folder, weights=False)
    return folder


# --- diffusers -> original (LDM) key layout ---------------------------------------------------------------------
_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))


def _unet_to_ldm(state: dict, layers: int) -> dict:
    top = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
           "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
           "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    out = {}
    ups_with_attn = {k.split(".")[1] for k in state if k.startswith("up_blocks.") and ".attentions." in k}
    for key, v in state.items():
        p = key.split(".")
        new = None
        head = ".".join(p[:2])
        if head in top:
            new = top[head] + "." + ".".join(p[2:])
        elif p[0] in top:
            new = top[p[0]] + "." + ".".join(p[1:])
        elif p[0] == "down_blocks":
            i, kind = int(p[1]), p[2]
            if kind == "downsamplers":
                new = f"input_blocks.{(i + 1) * (layers + 1)}.0.op." + ".".join(p[5:])
            else:
                n = i * (layers + 1) + int(p[3]) + 1
                new = f"input_blocks.{n}.{0 if kind == 'resnets' else 1}." + ".".join(p[4:])
                if kind == "resnets":
                    new = _rename(new, _RESNET)
        elif p[0] == "mid_block":
            n = {("resnets", "0"): 0, ("attentions", "0"): 1, ("resnets", "1"): 2}[(p[1], p[2])]
            new = f"middle_block.{n}." + ".".join(p[3:])
            if p[1] == "resnets":
                new = _rename(new, _RESNET)
        elif p[0] == "up_blocks":
            i, kind = int(p[1]), p[2]
            if kind == "upsamplers":
                new = f"output_blocks.{i * (layers + 1) + layers}.{2 if p[1] in ups_with_attn else 1}.conv." + \
                      ".".join(p[5:])
            else:
                n = i * (layers + 1) + int(p[3])
                new = f"output_blocks.{n}.{0 if kind == 'resnets' else 1}." + ".".join(p[4:])
                if kind == "resnets":
                    new = _rename(new, _RESNET)
        if new is None:
            raise KeyError(f"no original-layout name for UNet key {key}")
        out["model.diffusion_model." + new] = v
    return out


def _rename(key: str, pairs) -> str:
    parts = key.split(".")
    for i, s in enumerate(parts):
        for a, b in pairs:
            if s == a:
                parts[i] = b
    return ".".join(parts)


def _vae_to_ldm(state: dict, levels: int) -> dict:
    out = {}
    for key, v in state.items():
        p = key.split(".")
        side = p[0]
        if p[1] in ("conv_in", "conv_out") or side in ("quant_conv", "post_quant_conv"):
            new = key
        elif p[1] == "conv_norm_out":
            new = f"{side}.norm_out." + ".".join(p[2:])
        elif p[1] in ("down_blocks", "up_blocks"):
            i = int(p[2]) if p[1] == "down_blocks" else levels - 1 - int(p[2])
            where = "down" if p[1] == "down_blocks" else "up"
            if p[3] == "resnets":
                new = f"{side}.{where}.{i}.block.{p[4]}." + ".".join(p[5:]).replace("conv_shortcut", "nin_shortcut")
            else:
                new = f"{side}.{where}.{i}.{'downsample' if where == 'down' else 'upsample'}.conv." + \
                      ".".join(p[6:])
        elif p[1] == "mid_block" and p[2] == "resnets":
            new = f"{side}.mid.block_{int(p[3]) + 1}." + ".".join(p[4:]).replace("conv_shortcut", "nin_shortcut")
        elif p[1] == "mid_block":
            names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
            rest = [names.get(s, s) for s in p[4:]]
            if rest[0] == "proj_out":
                rest = ["proj_out"] + rest[2:]  # to_out.0.weight -> proj_out.weight
            new = f"{side}.mid.attn_1." + ".".join(rest)
            if v.dim() == 2:  # the original attention used 1x1 convolutions
                v = v[:, :, None, None]
        else:
            raise KeyError(f"no original-layout name for VAE key {key}")
        out["first_stage_model." + new] = v
    return out


def _open_clip_to_ldm(state: dict, prefix: str, extra_layer: bool) -> dict:
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    layers = 0
    for key, v in state.items():
        if key == "embeddings.token_embedding.weight":
            out["token_embedding.weight"] = v
        elif key == "embeddings.position_embedding.weight":
            out["positional_embedding"] = v
        elif key.startswith("final_layer_norm."):
            out["ln_final." + key.split(".")[-1]] = v
        elif key == "text_projection.weight":
            out["text_projection"] = v.T.contiguous()
        elif key.startswith("encoder.layers."):
            p = key.split(".")
            n, rest = int(p[2]), ".".join(p[3:])
            layers = max(layers, n + 1)
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                qkv.setdefault(f"{n}.{p[-1]}", {})[rest.split(".")[1]] = v
                continue
            rest = (rest.replace("self_attn.out_proj", "attn.out_proj").replace("layer_norm1", "ln_1")
                    .replace("layer_norm2", "ln_2").replace("mlp.fc1", "mlp.c_fc").replace("mlp.fc2", "mlp.c_proj"))
            out[f"transformer.resblocks.{n}.{rest}"] = v
    for nk, d in qkv.items():
        n, what = nk.split(".")
        out[f"transformer.resblocks.{n}.attn.in_proj_{what}"] = torch.cat([d["q_proj"], d["k_proj"], d["v_proj"]])
    if extra_layer:  # SD 2.x files hold the last OpenCLIP layer too; it is not used (penultimate-layer features)
        for k in [k for k in out if k.startswith(f"transformer.resblocks.{layers - 1}.")]:
            out[k.replace(f"resblocks.{layers - 1}.", f"resblocks.{layers}.")] = torch.randn_like(out[k])
    if "text_projection" not in out:
        width = out["token_embedding.weight"].shape[1]
        out["text_projection"] = torch.randn(width, width)
    return {prefix + k: v for k, v in out.items()}


def ldm_state(parts: dict) -> dict:
    """Every part's weights under the original single-file names."""
    unet, vae, encoders = parts["unet"], parts["vae"], parts["text_encoders"]
    state = _unet_to_ldm(unet.state_dict(), int(unet.config.layers_per_block))
    state.update(_vae_to_ldm(vae.state_dict(), len(vae.config.block_out_channels)))
    te = {("text_model." + k if not k.startswith("text_model.") else k): v
          for k, v in encoders[0].state_dict().items()}
    if parts["arch"] == "sd1":
        state.update({"cond_stage_model.transformer." + k: v for k, v in te.items()})
    elif parts["arch"] == "sd2":
        state.update(_open_clip_to_ldm(te, "cond_stage_model.model.", extra_layer=True))
    else:
        state.update({"conditioner.embedders.0.transformer." + k: v for k, v in te.items()})
        state.update(_open_clip_to_ldm(encoders[1].state_dict(), "conditioner.embedders.1.model.", False))
    state["alphas_cumprod"] = parts["scheduler"].alphas_cumprod.clone()  # as LDM checkpoints carry their schedule
    return state


def write_single_file(parts: dict, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """The checkpoint as one .safetensors file in the original key layout (fp16, as most are shared)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in ldm_state(parts).items()}
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def make_tiny_sd_folder(folder: str | Path, latent_size: int = 8, seed: int = 0) -> Path:
    """A tiny SD 1.x diffusers folder (tests and smoke runs)."""
    return write_folder(tiny_parts("sd1", False, seed, latent_size), folder)


def write_all(out: str | Path) -> Path:
    """Every type in both layouts under ``out`` (models/ and the single files' configs/)."""
    out = Path(out)
    for arch in ARCHS:
        for inpainting in (False, True):
            parts = tiny_parts(arch, inpainting)
            name = arch + ("-inpainting" if inpainting else "")
            write_folder(parts, out / "models" / f"tiny-{name}")
            write_single_file(parts, out / "models" / f"tiny-{name}.safetensors")
            write_configs(parts, out / "configs")
    return out


if __name__ == "__main__":
    print(write_all(sys.argv[1] if len(sys.argv) > 1 else "tiny-sd"))
